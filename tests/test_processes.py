"""Continuous-time paths and parameterisations: derivatives, SDE coefficients, views and conversions."""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu import parameterisations as P
from diffusion_edu import processes
from diffusion_edu.schedules import from_path

PATHS = [de.vp(), de.sub_vp(), de.cosine_vp(), de.ve(), de.rectified(), de.from_schedule(de.cosine())]
IDS = [p.name for p in PATHS]
T = torch.linspace(0.0205, 0.9805, 49, dtype=torch.float64)  # off the knots k/1000 of from_schedule


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_derivatives_match_finite_differences(path):
    h = 1e-6
    for f, df in ((path.alpha, path.d_alpha), (path.sigma, path.d_sigma)):
        numeric = (f(T + h) - f(T - h)) / (2 * h)
        torch.testing.assert_close(df(T), numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_sde_has_the_paths_marginals(path):
    """The SDE dx = f x dt + g dw moves the mean as α and the variance of x₀ = 0 as σ²: α′ = f α, (σ²)′ = 2fσ² + g²."""
    h = 1e-6
    var = lambda t: path.sigma(t) ** 2  # noqa: E731
    torch.testing.assert_close(path.d_alpha(T), path.drift(T) * path.alpha(T))
    torch.testing.assert_close((var(T + h) - var(T - h)) / (2 * h), 2 * path.drift(T) * var(T) + path.diffusion2(T),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_lambda_decreases_and_inverts(path):
    lam = path.lam(T)
    assert (lam.diff() < 0).all()
    torch.testing.assert_close(path.t_of_lam(lam), T, rtol=0, atol=1e-9)


def test_known_closed_forms():
    t = torch.tensor([0.3], dtype=torch.float64)
    vp = de.vp(0.1, 20.0)
    assert math.isclose(float(vp.alpha(t)), math.exp(-0.5 * (0.1 * 0.3 + 0.5 * 0.09 * 19.9)))
    assert math.isclose(float(vp.diffusion2(t)), 0.1 + 0.3 * 19.9)  # g² = β(t) (Song et al. 2021, Eq. 11)
    assert float(de.ve().drift(t)) == 0
    assert math.isclose(float(de.rectified().diffusion2(t)), 2 * 0.3 / 0.7)  # 2σσ′ − 2(α′/α)σ² = 2t/(1 − t)


def test_discrete_schedule_and_path_are_two_views():
    schedule = de.cosine()
    path = de.from_schedule(schedule)
    k = torch.arange(schedule.T)
    torch.testing.assert_close(path.alpha((k + 1).double() / schedule.T) ** 2, schedule.alpha_bars)
    torch.testing.assert_close(from_path(path, schedule.T).alpha_bars, schedule.alpha_bars, rtol=1e-6, atol=1e-12)
    # DDPM's linear β is a discretisation of VP with β_min = T β_1, β_max = T β_T (Song et al. 2021, App. B)
    linear, cont = de.linear(), from_path(de.vp(0.1, 20.0), 1000)
    assert (linear.alpha_bars - cont.alpha_bars).abs().max() < 2e-3


def test_karras_grid():
    s = de.karras_sigmas(5, 0.002, 80.0)
    assert s[0] == 80.0 and math.isclose(float(s[-2]), 0.002) and s[-1] == 0 and (s.diff() < 0).all()
    path = de.vp()
    t = de.karras_times(path, 10)
    assert len(t) == 11 and t[0] == 1.0 and t[-1] == path.t_min and (t.diff() < 0).all()
    edm = path.sigma(t) / path.alpha(t)
    torch.testing.assert_close(edm, de.karras_sigmas(11, float(edm[-1]), float(edm[0]))[:-1], rtol=1e-6, atol=0)


def test_times_are_checked():
    with pytest.raises(TypeError, match="integer"):
        de.vp().coefficients(torch.tensor([3]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        de.vp().coefficients(torch.tensor([1.5]), torch.zeros(1, 2))


# ------------------------------------------------------------------------------------ parameterisations

@pytest.mark.parametrize("path", [de.vp(), de.ve(), de.rectified(), de.sub_vp()], ids=["vp", "ve", "rectified", "sub_vp"])
@pytest.mark.parametrize("param", P.PARAMETERISATIONS, ids=lambda p: p.name)
def test_every_parameterisation_round_trips(path, param):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(64, 3, generator=g, dtype=torch.float64), torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(64, generator=g, dtype=torch.float64)
    c = path.coefficients(t, x0)
    x_t = c.alpha * x0 + c.sigma * eps
    got_x0, got_eps = param.to_x0_eps(param.target(x0, eps, c), x_t, c)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, eps)
    oracle = P.Denoiser(lambda x, tt, y=None: param.target(x0, eps, c), path, param)
    torch.testing.assert_close(oracle.eps(x_t, t), eps)
    torch.testing.assert_close(oracle.score(x_t, t), -eps / c.sigma)
    torch.testing.assert_close(oracle.velocity(x_t, t), c.d_alpha * x0 + c.d_sigma * eps)


def test_velocity_needs_a_continuous_path():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="continuous-time path"):
        P.VELOCITY.target(x, x, de.linear().coefficients(torch.tensor([1, 2]), x))
    with pytest.raises(TypeError, match="Parameterisation"):
        P.Denoiser(lambda x, t, y=None: x, de.vp(), "v")


def test_discrete_conversions_agree_with_chapter_01():
    schedule, g = de.cosine(), torch.Generator().manual_seed(1)
    x0, eps = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)
    x_t, _ = de.q_sample(x0, t, schedule, noise=eps)
    c = schedule.coefficients(t, x0)
    torch.testing.assert_close(P.x0_from_eps(x_t, eps, c), x0, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(P.V.target(x0, eps, c), de.v_target(x0, eps, t, schedule))


def test_on_schedule_runs_a_chapter_04_sampler_on_a_continuous_model():
    """Data = {0}: the exact velocity u = σ′ε = x/t on the rectified path, seen on a grid, is the exact ε = x_k/√(1 − ᾱ_k)
    of the discretised schedule, and DDIM on it lands on 0."""
    path, T = de.rectified(), 1000
    exact_velocity = lambda x, t, y=None: x / path.coefficients(t, x).sigma  # noqa: E731  (x_t = t ε, u = ε)
    eps_model, schedule = P.on_schedule(P.Denoiser(exact_velocity, path, P.VELOCITY), T)
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    abar = schedule.alpha_bars[600]
    torch.testing.assert_close(eps_model(x, torch.full((16,), 600)), x / (1 - abar).sqrt())
    out = de.sample(de.ddim, eps_model, x, schedule, 20)
    assert out.abs().max() < 1e-9


def test_continuous_training_loss_is_zero_for_the_exact_target():
    path, g = de.rectified(), torch.Generator().manual_seed(0)
    x0 = torch.randn(32, 2, generator=g)
    state = {}

    def oracle(x_t, t, y=None):  # recovers ε from the generator's draws: the loss sees its own target
        return state["target"]

    gen = torch.Generator().manual_seed(5)
    t = path.sample_times(32, gen)
    eps = torch.randn(x0.shape, generator=gen)
    state["target"] = P.VELOCITY.target(x0, eps, path.coefficients(t, x0))
    assert de.diffusion_loss(oracle, x0, path, de.VELOCITY, generator=torch.Generator().manual_seed(5)) < 1e-12
    assert processes.check_times(0.5, 3).shape == (3,)


def test_discrete_samplers_take_a_denoiser_of_any_parameterisation():
    """ddim(Denoiser(v-network)) is ddim(as_eps_model(v-network)): one interface, every model."""
    schedule = de.cosine(100)
    gmm = de.gaussian(torch.tensor([0.5, -0.3], dtype=torch.float64), 0.4)
    eps_model = gmm.eps_model(schedule)

    def v_net(x, t, y=None):  # the same exact model, predicting v
        c = schedule.coefficients(t, x)
        eps = eps_model(x, t)
        return P.V.target(P.x0_from_eps(x, eps, c), eps, c)

    x_T = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    want = de.sample(de.ddim, eps_model, x_T, schedule, 10)
    torch.testing.assert_close(de.sample(de.ddim, P.Denoiser(v_net, schedule, P.V), x_T, schedule, 10), want)
    torch.testing.assert_close(de.sample(de.ddim, de.as_eps_model(v_net, schedule, P.V), x_T, schedule, 10), want)


@pytest.mark.parametrize("path", [p for p in PATHS if p.name != "from_schedule"], ids=lambda p: p.name)
def test_paths_are_stored_and_rebuilt(path):
    rebuilt = processes.build(processes.describe(path))
    assert repr(rebuilt) == repr(path)
    torch.testing.assert_close(rebuilt.sigma(T), path.sigma(T))
    with pytest.raises(ValueError, match="path name must be one of"):
        processes.build({"name": "vpp"})
