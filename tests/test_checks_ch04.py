"""Chapter 04's checks accept the reference and name each usual mistake (DDIM, Euler, Heun, DPM-Solver++ steps).

The references in ``checks.ch04`` are themselves tied to the package: looped over a grid they reproduce
``de.ddim``, ``de.euler``, ``de.heun`` and ``de.dpm_solver_pp`` step for step.
"""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu import checks
from diffusion_edu.checks import ch04
from diffusion_edu.samplers import alpha_bar_grid, sigma_grid

from checking import assert_names_mistake


def not_done(*args, **kwargs):
    raise NotImplementedError()


# ------------------------------------------------------------------ the references are the package's updates

@pytest.fixture(scope="module")
def toy():
    schedule = de.linear()
    gmm = de.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), [0.3, 0.5])
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return schedule, gmm.eps_model(schedule), x_T


def _eps(model, x, t):
    return model(x, torch.full((len(x),), t, dtype=torch.long))


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_reference_ddim_step_loops_into_the_package_sampler(toy, eta):
    schedule, model, x = toy
    g = torch.Generator().manual_seed(3)
    want = de.sample(de.ddim, model, x, schedule, 12, eta=eta, generator=torch.Generator().manual_seed(3))
    for t, abar, abar_prev in alpha_bar_grid(schedule, 12):
        sigma = ch04.ddim_sigma(abar, abar_prev, eta)
        noise = torch.randn(x.shape, generator=g, dtype=x.dtype) if sigma > 0 else torch.zeros_like(x)
        x = ch04.ddim_step(x, _eps(model, x, t), abar, abar_prev, eta, noise)
    torch.testing.assert_close(x, want)


def test_reference_euler_step_loops_into_the_package_sampler(toy):
    schedule, model, x = toy
    want = de.sample(de.euler, model, x, schedule, 9)
    for t, sigma, sigma_next in sigma_grid(schedule, 9):
        x = ch04.euler_step(x, _eps(model, x, t), sigma, sigma_next)
    torch.testing.assert_close(x, want)


def test_reference_heun_step_loops_into_the_package_sampler(toy):
    schedule, model, x = toy
    want = de.sample(de.heun, model, x, schedule, 9)
    grid = sigma_grid(schedule, 9)
    t_of = {sigma: t for t, sigma, _ in grid}
    eps_fn = lambda xt, s: _eps(model, xt / math.sqrt(1 + s ** 2), t_of[s])  # noqa: E731
    x_tilde = x * math.sqrt(1 + grid[0][1] ** 2)
    for t, sigma, sigma_next in grid:
        x_tilde = ch04.heun_step(x_tilde, sigma, sigma_next, eps_fn)
    torch.testing.assert_close(x_tilde, want)


def test_reference_dpm_solver_pp_step_loops_into_the_package_sampler(toy):
    schedule, model, x = toy
    want = de.sample(de.dpm_solver_pp, model, x, schedule, 10)
    grid = alpha_bar_grid(schedule, 10)
    x0_prev = h_prev = None
    for i, (t, abar, abar_next) in enumerate(grid):
        x0 = (x - math.sqrt(1 - abar) * _eps(model, x, t)) / math.sqrt(abar)
        if i == len(grid) - 1:  # the final jump to clean data is first order: x = x̂_0
            x = x0
            break
        x = ch04.dpm_solver_pp_2m_step(x, x0, x0_prev, abar, abar_next, h_prev)
        x0_prev, h_prev = x0, ch04.lam(abar_next) - ch04.lam(abar)
    torch.testing.assert_close(x, want)


# ------------------------------------------------------------------------------------------------- DDIM

def ddim_solution(x, eps, abar, abar_prev, eta, noise):
    """As a learner would write it (the solution notebook's code)."""
    x0 = (x - (1 - abar) ** 0.5 * eps) / abar ** 0.5
    sigma = eta * ((1 - abar_prev) / (1 - abar)) ** 0.5 * (1 - abar / abar_prev) ** 0.5
    return abar_prev ** 0.5 * x0 + (1 - abar_prev - sigma ** 2) ** 0.5 * eps + sigma * noise


def ddim_with(direction=None, sigma_rule=None, x0_rule=None, noise_rule=None):
    def fn(x, eps, abar, abar_prev, eta, noise):
        x0 = x0_rule(x, eps, abar) if x0_rule else (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        sigma = sigma_rule(abar, abar_prev, eta) if sigma_rule else ch04.ddim_sigma(abar, abar_prev, eta)
        d = direction(abar, abar_prev, sigma) if direction else math.sqrt(1 - abar_prev - sigma ** 2)
        z = noise_rule(sigma, noise) if noise_rule else sigma * noise
        return math.sqrt(abar_prev) * x0 + d * eps + z
    return fn


def ddim_float32(x, eps, abar, abar_prev, eta, noise):
    abar, abar_prev = torch.tensor(abar, dtype=torch.float32), torch.tensor(abar_prev, dtype=torch.float32)
    x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    return abar_prev.sqrt() * x0 + (1 - abar_prev - sigma ** 2).sqrt() * eps + sigma * noise


DDIM_MISTAKES = {
    "direction with sqrt(1 - abar)": (ddim_with(direction=lambda a, p, s: math.sqrt(1 - a)), "√(1 − ᾱ_t)"),
    "direction without sigma^2": (ddim_with(direction=lambda a, p, s: math.sqrt(1 - p)), "left out −σ_t²"),
    "direction minus sigma": (ddim_with(direction=lambda a, p, s: math.sqrt(1 - p - s)), "not its square"),
    "sigma squared": (ddim_with(noise_rule=lambda s, z: s ** 2 * z), "σ_t² (a variance)"),
    "sigma ratio inverted": (ddim_with(sigma_rule=lambda a, p, e: e * math.sqrt((1 - a) / (1 - p) * (1 - a / p))),
                             "upside down"),
    "sigma without first factor": (ddim_with(sigma_rule=lambda a, p, e: e * math.sqrt(1 - a / p)),
                                   "missing its first factor"),
    "sigma without second factor": (ddim_with(sigma_rule=lambda a, p, e: e * math.sqrt((1 - p) / (1 - a))),
                                    "missing its second factor"),
    "sigma = sqrt(1 - abar)": (ddim_with(sigma_rule=lambda a, p, e: e * math.sqrt(1 - a)), "σ_t is not √(1 − ᾱ_t)"),
    "eta squared": (ddim_with(sigma_rule=lambda a, p, e: e ** 2 * ch04.ddim_sigma(a, p, 1.0)), "not η²"),
    "no eta": (ddim_with(sigma_rule=lambda a, p, e: ch04.ddim_sigma(a, p, 1.0)), "must be multiplied by η"),
    "noise ignored": (ddim_with(noise_rule=lambda s, z: 0 * z), "ignores `noise`"),
    "noise unscaled": (ddim_with(noise_rule=lambda s, z: z), "deterministic"),
    "x0 without sqrt": (ddim_with(x0_rule=lambda x, e, a: (x - (1 - a) * e) / math.sqrt(a)),
                        "subtracts (1 − ᾱ_t) ε̂"),
    "x0 divided by abar": (ddim_with(x0_rule=lambda x, e, a: (x - math.sqrt(1 - a) * e) / a), "divides by ᾱ_t"),
    "swapped abars": (lambda x, e, a, p, eta, z: math.sqrt(a) * (x - math.sqrt(1 - p) * e) / math.sqrt(p)
                      + math.sqrt(1 - a) * e, "swapped ᾱ_t and ᾱ_prev"),
    "returned x0": (lambda x, e, a, p, eta, z: (x - math.sqrt(1 - a) * e) / math.sqrt(a), "returned x̂_0"),
}


def test_ddim_check_accepts_the_reference_and_a_solution():
    assert checks.check_ddim_step(ch04.ddim_step)
    assert checks.check_ddim_step(ddim_solution)
    assert checks.check_ddim_step(ddim_float32)
    assert checks.check_ddim_step(ddim_with())


@pytest.mark.parametrize("name", DDIM_MISTAKES)
def test_ddim_check_names_each_mistake(name):
    assert_names_mistake(checks.check_ddim_step, *DDIM_MISTAKES[name])


def test_ddim_sigma_mistakes_are_called_sigma_formula_wrong():
    result = checks.check_ddim_step(DDIM_MISTAKES["sigma without first factor"][0])
    assert "σ_t(η) formula wrong" in result.message


# ------------------------------------------------------------------------------------------------ Euler

def euler_solution(x, eps, sigma, sigma_next):
    x_tilde = x * (1 + sigma ** 2) ** 0.5
    x_tilde = x_tilde + (sigma_next - sigma) * eps
    return x_tilde / (1 + sigma_next ** 2) ** 0.5


EULER_MISTAKES = {
    "step in x": (lambda x, e, s, n: x + (n - s) * e, "Euler step in x instead of x̃"),
    "no conversion back": (lambda x, e, s, n: x * math.sqrt(1 + s ** 2) + (n - s) * e, "returned x̃_next"),
    "conversions backwards": (lambda x, e, s, n: (x / math.sqrt(1 + s ** 2) + (n - s) * e) * math.sqrt(1 + n ** 2),
                              "conversions run backwards"),
    "sign": (lambda x, e, s, n: (x * math.sqrt(1 + s ** 2) - (n - s) * e) / math.sqrt(1 + n ** 2), "wrong way"),
    "back with old sigma": (lambda x, e, s, n: (x * math.sqrt(1 + s ** 2) + (n - s) * e) / math.sqrt(1 + s ** 2),
                            "new noise level"),
    "sigma not squared": (lambda x, e, s, n: (x * math.sqrt(1 + s) + (n - s) * e) / math.sqrt(1 + n),
                          "with σ squared"),
}


def test_euler_check_accepts_the_reference_and_a_solution():
    assert checks.check_euler_step(ch04.euler_step)
    assert checks.check_euler_step(euler_solution)


@pytest.mark.parametrize("name", EULER_MISTAKES)
def test_euler_check_names_each_mistake(name):
    assert_names_mistake(checks.check_euler_step, *EULER_MISTAKES[name])


def test_euler_step_equals_ddim_eta0():
    """The reason the check can be written at all: Euler in x̃ is DDIM with η = 0 (chapter 04)."""
    x, eps = torch.randn(2, 8, 2, dtype=torch.float64)
    abar, abar_prev = 0.3, 0.7
    sigma, sigma_next = math.sqrt((1 - abar) / abar), math.sqrt((1 - abar_prev) / abar_prev)
    torch.testing.assert_close(ch04.euler_step(x, eps, sigma, sigma_next),
                               ch04.ddim_step(x, eps, abar, abar_prev, 0.0, torch.zeros_like(x)))


# ------------------------------------------------------------------------------------------------- Heun

def heun_solution(x_tilde, sigma, sigma_next, eps_fn):
    d = eps_fn(x_tilde, sigma)
    x_pred = x_tilde + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_pred
    d_next = eps_fn(x_pred, sigma_next)
    return x_tilde + (sigma_next - sigma) * (d + d_next) / 2


def heun_with(combine=None, second_at=None, euler_at_end=True):
    def fn(x, s, n, eps_fn):
        d = eps_fn(x, s)
        pred = x + (n - s) * d
        if n == 0 and euler_at_end:
            return pred
        px, ps = second_at(x, pred, s, n) if second_at else (pred, n)
        d2 = eps_fn(px, ps)
        return combine(x, pred, n - s, d, d2) if combine else x + (n - s) * (d + d2) / 2
    return fn


HEUN_MISTAKES = {
    "euler only": (lambda x, s, n, f: x + (n - s) * f(x, s), "Euler predictor"),
    "end slope only": (heun_with(combine=lambda x, p, h, d, d2: x + h * d2), "only the end slope"),
    "no halving": (heun_with(combine=lambda x, p, h, d, d2: x + h * (d + d2)), "without halving"),
    "from predictor": (heun_with(combine=lambda x, p, h, d, d2: p + h * (d + d2) / 2), "restarts from x̃"),
    "quarter": (heun_with(combine=lambda x, p, h, d, d2: x + h * (d + d2) / 4), "(d + d′)/2"),
    "second slope at sigma": (heun_with(second_at=lambda x, p, s, n: (p, s)), "called the model at σ again"),
    "second slope at x": (heun_with(second_at=lambda x, p, s, n: (x, n)), "Euler predictor x̃_pred"),
    "model at sigma 0": (heun_with(euler_at_end=False), "cannot be evaluated"),
}


def test_heun_check_accepts_the_reference_and_a_solution():
    assert checks.check_heun_step(ch04.heun_step)
    assert checks.check_heun_step(heun_solution)


@pytest.mark.parametrize("name", HEUN_MISTAKES)
def test_heun_check_names_each_mistake(name):
    result = assert_names_mistake(checks.check_heun_step, *HEUN_MISTAKES[name])
    if name not in ("euler only", "model at sigma 0"):
        assert "Heun averaging wrong" in result.message


# ------------------------------------------------------------------------------------------ DPM-Solver++

def dpm_solution(x, x0, x0_prev, abar, abar_next, h_prev):
    lam = lambda a: math.log(math.sqrt(a) / math.sqrt(1 - a))  # noqa: E731
    h = lam(abar_next) - lam(abar)
    if x0_prev is None:
        D = x0
    else:
        r = h_prev / h
        D = x0 + (x0 - x0_prev) / (2 * r)
    return math.sqrt(1 - abar_next) / math.sqrt(1 - abar) * x + math.sqrt(abar_next) * (1 - math.exp(-h)) * D


def dpm_with(D_rule=None, coef=None, x_coef=None, lam_scale=0.5):
    def fn(x, x0, x0_prev, abar, abar_next, h_prev):
        lam = lambda a: lam_scale * math.log(a / (1 - a))  # noqa: E731
        h = lam(abar_next) - lam(abar)
        if x0_prev is None:
            D = x0
        else:
            r = h_prev / h
            D = D_rule(x0, x0_prev, r) if D_rule else (1 + 1 / (2 * r)) * x0 - x0_prev / (2 * r)
        cx = x_coef(abar, abar_next) if x_coef else math.sqrt((1 - abar_next) / (1 - abar))
        cd = coef(h) if coef else -math.expm1(-h)
        return cx * x + math.sqrt(abar_next) * cd * D
    return fn


DPM_MISTAKES = {
    "r inverted": (dpm_with(D_rule=lambda a, b, r: (1 + r / 2) * a - r / 2 * b), "r = h/h_prev inverted"),
    "1/r": (dpm_with(D_rule=lambda a, b, r: (1 + 1 / r) * a - b / r), "Missing the 1/(2r) factor"),
    "weight 1": (dpm_with(D_rule=lambda a, b, r: 2 * a - b), "Missing the 1/(2r) factor"),
    "equal steps": (dpm_with(D_rule=lambda a, b, r: 1.5 * a - 0.5 * b), "assumed equal steps"),
    "correction sign": (dpm_with(D_rule=lambda a, b, r: (1 - 1 / (2 * r)) * a + b / (2 * r)), "wrong sign"),
    "no history": (dpm_with(D_rule=lambda a, b, r: a), "ignored x0_prev"),
    "expm1 sign": (dpm_with(coef=lambda h: math.expm1(-h)), "e^{−h} vs expm1 sign"),
    "exp without -1": (dpm_with(coef=lambda h: -math.exp(-h)), "without the −1"),
    "exp without 1 -": (dpm_with(coef=lambda h: math.exp(-h)), "without the 1 −"),
    "expm1(+h)": (dpm_with(coef=lambda h: -math.expm1(h)), "expm1(+h)"),
    "h sign": (dpm_with(coef=lambda h: math.expm1(h)), "h = λ_next − λ"),
    "lambda without half": (dpm_with(lam_scale=1.0), "dropped the ½"),
    "noise-prediction x factor": (dpm_with(x_coef=lambda a, n: math.sqrt(n / a)), "noise-prediction"),
}


def test_dpm_check_accepts_the_reference_and_a_solution():
    assert checks.check_dpm_solver_pp_2m_step(ch04.dpm_solver_pp_2m_step)
    assert checks.check_dpm_solver_pp_2m_step(dpm_solution)
    assert checks.check_dpm_solver_pp_2m_step(dpm_with())


@pytest.mark.parametrize("name", DPM_MISTAKES)
def test_dpm_check_names_each_mistake(name):
    assert_names_mistake(checks.check_dpm_solver_pp_2m_step, *DPM_MISTAKES[name])


# ------------------------------------------------------------------------------------------------ common

@pytest.mark.parametrize("check", [checks.check_ddim_step, checks.check_euler_step, checks.check_heun_step,
                                   checks.check_dpm_solver_pp_2m_step])
def test_unfinished_is_not_done_and_a_crash_is_an_error(check):
    assert check(not_done).status == "not done"
    result = check(lambda *args: 1 / 0)
    assert result.status == "error" and "ZeroDivisionError" in result.message


def test_wrong_shape_is_named():
    assert_names_mistake(checks.check_euler_step, lambda x, e, s, n: x.flatten(1), "shape")
