"""Chapter 06's samplers and likelihood state their maths: the SDE–ODE dial at λ = 0 is the probability-flow
ODE, the checks' reference steps loop into the package's samplers, Langevin's stationary law on a Gaussian is the
one its discretisation predicts, the reverse SDE and predictor–corrector reproduce the data's moments, and the
continuous-path likelihood equals the exact log-density of a Gaussian mixture.
"""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu.checks import ch06
from diffusion_edu.likelihood import log_likelihood_path, velocity_divergence
from diffusion_edu.samplers.sde import score_at

GMM = de.GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), [0.5, 0.8], [0.3, 0.7])
PATHS = [de.vp(), de.ve(0.01, 10.0), de.sub_vp(), de.cosine_vp()]


def _x(n=64, seed=0, scale=1.0):
    return scale * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ exact

@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_exact_eps_on_a_path_is_the_discrete_formula_at_abar_equal_alpha_squared(path):
    """On a VP path, E[ε | x_t] at α(t) is chapter 02's formula at ᾱ = α² (σ² = 1 − ᾱ); on others, the score."""
    x, t = _x(), torch.full((64,), 0.4, dtype=torch.float64)
    c = path.coefficients(t, x)
    eps = GMM.path_model(path)(x, t)
    x_auto = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(GMM.log_prob_at(x_auto, c.alpha, c.sigma).sum(), x_auto)[0]
    torch.testing.assert_close(eps, -c.sigma * grad)  # ε̂ = −σ ∇log p_t
    if path.name in ("vp", "cosine_vp"):
        torch.testing.assert_close(eps, GMM.eps(x, c.alpha**2))


def test_entropy_of_a_gaussian_is_the_closed_form():
    std = 0.7
    h, se = de.gaussian(torch.zeros(3), std).entropy(200_000)
    assert abs(h - 1.5 * math.log(2 * math.pi * math.e * std**2)) < 4 * se


# --------------------------------------------------------------------------------------- the SDE–ODE dial

@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_lambda_zero_is_the_probability_flow_ode(path):
    """f x − ½ g² s = α′x̂₀ + σ′ε̂ on every path, so Euler–Maruyama at λ = 0 is ``ode_euler`` step for step."""
    d, times = GMM.denoiser(path), de.uniform_times(12, path.t_min)
    x = de.prior(path, (64, 2), torch.Generator().manual_seed(1), torch.float64)
    for a, b in zip(de.euler_maruyama(d, x, times, lam=0.0), de.ode_euler(d, x, times)):
        torch.testing.assert_close(a.x, b.x)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_reference_reverse_sde_step_loops_into_euler_maruyama(lam):
    path = de.vp()
    d, times = GMM.denoiser(path), de.uniform_times(10, path.t_min)
    x = de.prior(path, (32, 2), torch.Generator().manual_seed(2), torch.float64)
    want = de.sample(de.euler_maruyama, d, x, times, lam=lam, generator=torch.Generator().manual_seed(3))
    g, pairs = torch.Generator().manual_seed(3), list(zip(times.tolist(), times.tolist()[1:]))
    for i, (t, t_next) in enumerate(pairs):
        tt = torch.tensor([t], dtype=torch.float64)
        f, g2 = float(path.drift(tt)), float(path.diffusion2(tt))
        last = i == len(pairs) - 1
        noise = torch.zeros_like(x) if last or lam == 0 else torch.randn(x.shape, generator=g, dtype=x.dtype)
        x = ch06.reverse_sde_step(x, score_at(d, x, t)[1], f, g2, t_next - t, lam, noise)
    torch.testing.assert_close(x, want)


@pytest.mark.parametrize("sampler,kwargs", [(de.euler_maruyama, {}), (de.predictor_corrector, dict(snr=0.1))],
                         ids=["euler_maruyama", "predictor_corrector"])
@pytest.mark.parametrize("path", [de.vp(), de.ve(0.01, 10.0)], ids=lambda p: p.name)
def test_reverse_sde_samples_have_the_data_moments(sampler, kwargs, path):
    """With the exact score the samples' mean and covariance match a Gaussian's, to Monte-Carlo error."""
    mean, std = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.6
    d = de.gaussian(mean, std).denoiser(path)
    x = de.prior(path, (4000, 2), torch.Generator().manual_seed(4), torch.float64)
    out = de.sample(sampler, d, x, de.uniform_times(200, path.t_min), generator=torch.Generator().manual_seed(5),
                    **kwargs)
    assert (out.mean(0) - mean).abs().max() < 5 * std / math.sqrt(4000) + 0.01
    assert (out.std(0) / std - 1).abs().max() < 0.06


# ------------------------------------------------------------------------------------------------ Langevin

def test_reference_langevin_step_loops_into_langevin():
    score = lambda x: GMM.score_at(x, 1.0, 0.0)  # noqa: E731
    x = _x(32, 6)
    want = de.sample(de.langevin, score, x, 0.05, 20, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    for _ in range(20):
        x = ch06.langevin_step(x, score(x), 0.05, torch.randn(x.shape, generator=g, dtype=x.dtype))
    torch.testing.assert_close(x, want)


def test_langevin_on_a_gaussian_has_the_stationary_variance_of_its_discretisation():
    """Unadjusted Langevin on N(0, v): x' = (1 − δ/2v) x + √δ z, whose stationary variance is v/(1 − δ/4v)."""
    v, delta = 2.0, 0.8
    x = torch.zeros(20000, 1, dtype=torch.float64)
    out = de.sample(de.langevin, lambda x: -x / v, x, delta, 200, generator=torch.Generator().manual_seed(8))
    want = v / (1 - delta / (4 * v))
    assert abs(out.var().item() / want - 1) < 0.04 and abs(out.mean().item()) < 0.05


def test_annealed_langevin_uses_song_and_ermons_step_sizes():
    path = de.ve(0.1, 5.0)
    d, levels = GMM.denoiser(path), torch.linspace(0.9, 0.0, 4, dtype=torch.float64)
    x = _x(32, 9)
    want = de.sample(de.annealed_langevin, d, x, levels, steps_per_level=5, epsilon=0.01,
                     generator=torch.Generator().manual_seed(10))
    g = torch.Generator().manual_seed(10)
    for t, alpha in zip(levels.tolist(), ch06.annealed_step_sizes(path.sigma(levels), 0.01).tolist()):
        for _ in range(5):
            x = ch06.langevin_step(x, score_at(d, x, t)[1], alpha, torch.randn(x.shape, generator=g, dtype=x.dtype))
    torch.testing.assert_close(x, want)


def test_annealed_langevin_recovers_mode_weights_that_plain_langevin_misses():
    """Song & Ermon (2019), Fig. 3: w = (0.2, 0.8), modes far apart. Plain Langevin keeps its start's 50/50."""
    gmm = de.GaussianMixture(torch.tensor([[-5.0, -5.0], [5.0, 5.0]]), 1.0, [0.2, 0.8])
    g = torch.Generator().manual_seed(11)
    x = 16 * torch.rand(1000, 2, generator=g, dtype=torch.float64) - 8
    plain = de.sample(de.langevin, lambda z: gmm.score_at(z, 1.0, 0.0), x, 0.1, 200, generator=g)
    path = de.ve(0.01, 20.0)
    levels = path.t_of_lam(-torch.log(torch.logspace(math.log10(20), 0, 10, dtype=torch.float64)))
    annealed = de.sample(de.annealed_langevin, gmm.denoiser(path), x, levels, steps_per_level=100, epsilon=0.2,
                         generator=g)
    assert abs((plain[:, 0] > 0).double().mean() - 0.8) > 0.15
    assert abs((annealed[:, 0] > 0).double().mean() - 0.8) < 0.05


# ----------------------------------------------------------------------------------------------- likelihood

@pytest.mark.parametrize("path", [de.vp(), de.sub_vp()], ids=lambda p: p.name)
def test_path_likelihood_is_the_exact_log_density(path):
    x0, _ = GMM.sample(200, torch.Generator().manual_seed(12))
    ll = log_likelihood_path(GMM.denoiser(path), x0.double(), 100)
    assert (ll - GMM.log_prob(x0.double())).abs().mean() < 0.01


def test_hutchinson_divergence_is_unbiased():
    d, x = GMM.denoiser(de.vp()), _x(8, 13)
    _, exact = velocity_divergence(d, x, 0.3)
    probes = (2 * torch.randint(0, 2, (4000, 8, 2), generator=torch.Generator().manual_seed(14)) - 1).double()
    _, estimate = velocity_divergence(d, x, 0.3, probes=probes)
    assert (estimate - exact).abs().max() < 0.1 * exact.abs().max()


# ----------------------------------------------------------------------------------------------- bad input

def test_bad_arguments_are_named():
    d, x = GMM.denoiser(de.vp()), _x(4)
    with pytest.raises(ValueError, match="lam"):
        next(de.euler_maruyama(d, x, de.uniform_times(3), lam=-1.0))
    with pytest.raises(ValueError, match="times"):
        next(de.euler_maruyama(d, x, torch.tensor([0.1, 0.9])))
    with pytest.raises(ValueError, match="snr"):
        next(de.predictor_corrector(d, x, de.uniform_times(3, 1e-3), snr=0.0))
    with pytest.raises(ValueError, match="step_size"):
        next(de.langevin(lambda z: -z, x, 0.0, 5))
    with pytest.raises(ValueError, match="steps_per_level"):
        next(de.annealed_langevin(d, x, torch.tensor([0.5, 0.1]), steps_per_level=0))
    with pytest.raises(ValueError, match="steps"):
        log_likelihood_path(d, x, 0)
    with pytest.raises(ValueError, match="hutchinson"):
        log_likelihood_path(d, x, 3, hutchinson=-1)


def test_prior_is_the_end_of_the_forward_sde():
    x = de.prior(de.ve(0.01, 10.0), (20000, 2), torch.Generator().manual_seed(15))
    assert abs(x.std().item() / 10.0 - 1) < 0.02
