"""Schedules and the forward process q: invariants, closed forms and Bayes' rule by brute force."""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu.forward import check_timesteps


@pytest.mark.parametrize("make", [de.linear, de.cosine, de.sigmoid])
def test_schedule_invariants(make):
    s = make(1000)
    assert s.T == 1000
    assert ((s.betas > 0) & (s.betas < 1)).all()
    assert (s.alpha_bars[1:] < s.alpha_bars[:-1]).all(), "ᾱ must decrease strictly"
    torch.testing.assert_close(s.alpha_bars, torch.cumprod(1 - s.betas, 0))
    torch.testing.assert_close(s.sigmas ** 2, (1 - s.alpha_bars) / s.alpha_bars)
    torch.testing.assert_close(s.snr, 1 / s.sigmas ** 2)
    assert s.alpha_bars[0] > 0.99 and s.alpha_bars[-1] < 0.01, "from almost clean to almost pure noise"
    assert s.alpha_bar(-1) == 1.0 and s.alpha_bar(0) == pytest.approx(float(s.alpha_bars[0]))


def test_linear_matches_ho_et_al():
    s = de.linear()
    assert float(s.betas[0]) == pytest.approx(1e-4) and float(s.betas[-1]) == pytest.approx(0.02)
    assert float(s.alpha_bars[-1]) == pytest.approx(4.04e-5, rel=0.01)  # the well-known ᾱ_T of DDPM


def test_cosine_endpoints_follow_nichol_dhariwal():
    T, s_off = 1000, 0.008
    s = de.cosine(T, s_off)
    f = lambda tau: math.cos((tau + s_off) / (1 + s_off) * math.pi / 2) ** 2  # noqa: E731
    # ᾱ_t = f((t+1)/T) / f(0) wherever β was not clipped (all but the very end)
    for t in [0, 1, 250, 500, 900]:
        assert float(s.alpha_bars[t]) == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)
    assert float(s.betas.max()) == pytest.approx(0.999)  # the clip, reached at the end only
    assert float(s.alpha_bars[-1]) < 1e-6


def test_get_schedule_and_bad_names():
    assert de.get_schedule("cosine", 50).T == 50
    with pytest.raises(ValueError, match="schedule name"):
        de.get_schedule("quadratic")
    with pytest.raises(ValueError, match="T must"):
        de.linear(0)


def test_q_sample_moments_match_closed_form():
    s = de.linear()
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[1.5, -2.0]], dtype=torch.float64).expand(200_000, 2).contiguous()
    for t in [0, 100, 500, 999]:
        x_t, _ = de.q_sample(x0, t, s, generator=g)
        abar = float(s.alpha_bars[t])
        se = math.sqrt((1 - abar) / len(x0))  # standard error of the mean
        torch.testing.assert_close(x_t.mean(0), math.sqrt(abar) * x0[0], atol=6 * se, rtol=0)
        torch.testing.assert_close(x_t.var(0), torch.full((2,), 1 - abar, dtype=torch.float64),
                                   rtol=0.02, atol=1e-9)


def test_q_sample_noise_is_returned_and_used():
    s = de.cosine(100)
    x0, noise = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 10, 50, 99])
    x_t, eps = de.q_sample(x0, t, s, noise=noise)
    assert eps is noise
    torch.testing.assert_close(de.x0_from_eps(x_t, t, eps, s), x0)  # float64: 1/√ᾱ_99 amplifies rounding
    torch.testing.assert_close(de.eps_from_x0(x_t, t, x0, s), eps)


def test_v_parameterisation_round_trip():
    s = de.linear(1000)
    x0, eps = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    t = torch.tensor([0, 1, 200, 500, 800, 999])
    x_t, _ = de.q_sample(x0, t, s, noise=eps)
    v = de.v_target(x0, eps, t, s)
    torch.testing.assert_close(de.eps_from_v(x_t, t, v, s), eps)


def test_q_posterior_matches_bayes_rule_by_brute_force():
    """In 1-D with x_0 fixed, q(x_{t−1} | x_t, x_0) ∝ q(x_t | x_{t−1}) q(x_{t−1} | x_0), on a dense grid."""
    s = de.linear(1000)
    x0 = torch.tensor([[0.7]], dtype=torch.float64)
    for t, x_t in [(1, 0.5), (10, -0.3), (300, 1.2), (999, 0.1)]:
        abar_prev, beta = float(s.alpha_bars[t - 1]), float(s.betas[t])
        grid = torch.linspace(-6, 6, 400_001, dtype=torch.float64)
        log_prior = -0.5 * (grid - math.sqrt(abar_prev) * 0.7) ** 2 / (1 - abar_prev)
        log_lik = -0.5 * (x_t - math.sqrt(1 - beta) * grid) ** 2 / beta
        w = torch.softmax(log_prior + log_lik, 0)
        mean_bf = (w * grid).sum()
        var_bf = (w * (grid - mean_bf) ** 2).sum()
        mean, var = de.q_posterior(x0, torch.tensor([[x_t]], dtype=torch.float64), t, s)
        assert float(mean) == pytest.approx(float(mean_bf), abs=1e-6)
        assert float(var) == pytest.approx(float(var_bf), rel=1e-4)


def test_q_posterior_at_t0_is_the_clean_data():
    s = de.linear(10)
    x0, x_t = torch.randn(3, 2), torch.randn(3, 2)
    mean, var = de.q_posterior(x0, x_t, 0, s)
    torch.testing.assert_close(mean, x0)
    assert (var == 0).all()


def test_bad_inputs_name_the_argument():
    s = de.linear(100)
    with pytest.raises(ValueError, match="x0 must have a batch dimension"):
        de.q_sample(torch.randn(5), 3, s)
    with pytest.raises(ValueError, match=r"t must be in \[0, 99\]"):
        de.q_sample(torch.randn(2, 2), 100, s)
    with pytest.raises(ValueError, match=r"t must be in \[0, 99\]"):
        de.q_sample(torch.randn(2, 2), torch.tensor([-1, 3]), s)
    with pytest.raises(TypeError, match="t must hold integer"):
        de.q_sample(torch.randn(2, 2), 0.5, s)
    with pytest.raises(ValueError, match="t must be a scalar or have shape"):
        de.q_sample(torch.randn(2, 2), torch.tensor([1, 2, 3]), s)
    with pytest.raises(ValueError, match="noise must have the shape"):
        de.q_sample(torch.randn(2, 2), 1, s, noise=torch.randn(3, 2))
    with pytest.raises(TypeError, match="x0 must be a floating-point"):
        de.q_sample(torch.ones(2, 2, dtype=torch.long), 1, s)
    assert check_timesteps(5, 10, 4).tolist() == [5, 5, 5, 5]
