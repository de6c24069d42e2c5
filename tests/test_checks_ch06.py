"""Chapter 06's checks accept the reference and a learner's solution, and name each usual mistake.

The references themselves are tied to the package in tests/test_sde.py: looped, they reproduce
``de.langevin``, ``de.annealed_langevin`` and ``de.euler_maruyama`` step for step. Here the DSM reference is
tied to the package's loss: ½ σ² ‖s + ε/σ‖² with s = −ε̂/σ is ½ ‖ε̂ − ε‖², D/2 times the ε-MSE.
"""
import math

import pytest
import torch

from diffusion_edu import checks
from diffusion_edu.checks import ch06

from checking import assert_names_mistake


def not_done(*args, **kwargs):
    raise NotImplementedError()


def _col(sigma, x):
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


# ------------------------------------------------------------------------------------------------- DSM

def dsm_solution(score_fn, x0, sigma, noise):
    s = sigma.view(-1, *([1] * (x0.ndim - 1)))
    x_noisy = x0 + s * noise
    target = -(x_noisy - x0) / s ** 2
    per_example = (s ** 2 * (score_fn(x_noisy, sigma) - target) ** 2).flatten(1).sum(dim=1)
    return 0.5 * per_example.mean()


def dsm_with(noised=None, at=None, residual=None, reduce=None):
    def fn(score_fn, x0, sigma, noise):
        s = _col(sigma, x0)
        x_noisy = noised(x0, s, noise) if noised else x0 + s * noise
        score = score_fn(at(x0, x_noisy) if at else x_noisy, sigma)
        e = residual(score, s, noise) if residual else s * score + noise
        return reduce(e) if reduce else 0.5 * (e ** 2).flatten(1).sum(1).mean()
    return fn


DSM_MISTAKES = {
    "target sign": (dsm_with(residual=lambda sc, s, z: s * sc - z), "wrong sign"),
    "no weighting": (dsm_with(residual=lambda sc, s, z: sc + z / s), "weighting λ(σ) = σ² is missing"),
    "target -eps": (dsm_with(residual=lambda sc, s, z: s * (sc + z)), "not −ε"),
    "target eps/sigma^2": (dsm_with(residual=lambda sc, s, z: s * sc + z / s), "divided ε by σ² once more"),
    "no half": (dsm_with(reduce=lambda e: (e ** 2).flatten(1).sum(1).mean()), "½ in front"),
    "mean over entries": (dsm_with(reduce=lambda e: 0.5 * (e ** 2).mean()), "averaged over every entry"),
    "sum over batch": (dsm_with(reduce=lambda e: 0.5 * (e ** 2).sum()), "don't sum"),
    "score at x0": (dsm_with(at=lambda x0, xn: x0), "clean x₀"),
    "noised with variance": (dsm_with(noised=lambda x0, s, z: x0 + s ** 2 * z), "σ² ε"),
}


def test_dsm_check_accepts_the_reference_and_a_solution():
    assert checks.check_dsm_loss(ch06.dsm_loss)
    assert checks.check_dsm_loss(dsm_solution)


@pytest.mark.parametrize("name", DSM_MISTAKES)
def test_dsm_check_names_each_mistake(name):
    assert_names_mistake(checks.check_dsm_loss, *DSM_MISTAKES[name])


def test_dsm_check_wants_a_scalar():
    assert_names_mistake(checks.check_dsm_loss, lambda f, x0, s, z: (s * 0).reshape(-1), "scalar")


def test_dsm_with_score_from_eps_is_half_the_summed_eps_error():
    """s = −ε̂/σ turns ½ σ² ‖s + ε/σ‖² into ½ ‖ε̂ − ε‖²: denoising score matching is the ε loss (D/2 × its MSE)."""
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 8, 3, generator=g, dtype=torch.float64)
    sigma = torch.rand(8, generator=g, dtype=torch.float64) + 0.1
    eps_hat = lambda x, s: torch.tanh(x) * 0.3  # noqa: E731
    score = lambda x, s: -eps_hat(x, s) / _col(s, x)  # noqa: E731
    x_noisy = x0 + _col(sigma, x0) * noise
    torch.testing.assert_close(ch06.dsm_loss(score, x0, sigma, noise),
                               0.5 * 3 * ((eps_hat(x_noisy, sigma) - noise) ** 2).mean())


# -------------------------------------------------------------------------------------------- Langevin

def langevin_solution(x, score, step_size, noise):
    return x + 0.5 * step_size * score + step_size ** 0.5 * noise


LANGEVIN_MISTAKES = {
    "other convention": (lambda x, s, d, z: x + d * s + math.sqrt(2 * d) * z, "other convention"),
    "no half": (lambda x, s, d, z: x + d * s + math.sqrt(d) * z, "left out the ½"),
    "noise delta": (lambda x, s, d, z: x + d / 2 * s + d * z, "not δ z"),
    "noise sqrt(2 delta)": (lambda x, s, d, z: x + d / 2 * s + math.sqrt(2 * d) * z, "not √(2δ) z"),
    "noise delta/2": (lambda x, s, d, z: x + d / 2 * s + d / 2 * z, "not (δ/2) z"),
    "descends": (lambda x, s, d, z: x - d / 2 * s + math.sqrt(d) * z, "not minus"),
    "no noise": (lambda x, s, d, z: x + d / 2 * s, "gradient ascent"),
    "no drift": (lambda x, s, d, z: x + math.sqrt(d) * z, "random walk"),
}


def test_langevin_check_accepts_the_reference_and_a_solution():
    assert checks.check_langevin_step(ch06.langevin_step)
    assert checks.check_langevin_step(langevin_solution)


@pytest.mark.parametrize("name", LANGEVIN_MISTAKES)
def test_langevin_check_names_each_mistake(name):
    assert_names_mistake(checks.check_langevin_step, *LANGEVIN_MISTAKES[name])


# ---------------------------------------------------------------------------------- annealed step sizes

def step_sizes_solution(sigmas, epsilon):
    return [epsilon * (s / sigmas[-1]) ** 2 for s in sigmas]


STEP_MISTAKES = {
    "not squared": (lambda s, e: e * s / s[-1], "not σ_i"),
    "by the first level": (lambda s, e: e * s ** 2 / s[0] ** 2, "not the first"),
    "upside down": (lambda s, e: e * s[-1] ** 2 / s ** 2, "upside down"),
    "no division": (lambda s, e: e * s ** 2, "Divide by σ_L²"),
    "constant": (lambda s, e: torch.full_like(s, e), "changes with the level"),
    "one number": (lambda s, e: e, "(one per σ)"),
}


def test_step_size_check_accepts_the_reference_and_a_solution():
    assert checks.check_annealed_step_sizes(ch06.annealed_step_sizes)
    assert checks.check_annealed_step_sizes(step_sizes_solution)


@pytest.mark.parametrize("name", STEP_MISTAKES)
def test_step_size_check_names_each_mistake(name):
    assert_names_mistake(checks.check_annealed_step_sizes, *STEP_MISTAKES[name])


# --------------------------------------------------------------------------------------- reverse SDE step

def sde_solution(x, score, f, g2, dt, lam, noise):
    drift = f * x - 0.5 * (1 + lam ** 2) * g2 * score
    return x + drift * dt + lam * (g2 * abs(dt)) ** 0.5 * noise


def sde_with(k=None, sign=1.0, fx=True, noise_rule=None, direction=1.0):
    def fn(x, s, f, g2, dt, lam, z):
        kk = k(lam) if k else (1 + lam ** 2) / 2
        drift = (f * x if fx else 0) - sign * kk * g2 * s
        n = noise_rule(lam, g2, dt, z) if noise_rule else lam * math.sqrt(g2 * abs(dt)) * z
        return x + direction * drift * dt + n
    return fn


SDE_MISTAKES = {
    "score sign": (sde_with(sign=-1.0), "wrong sign"),
    "g2 s at every lambda": (sde_with(k=lambda lam: 1.0), "only at λ = 1"),
    "half g2 s at every lambda": (sde_with(k=lambda lam: 0.5), "only at λ = 0"),
    "lambda not squared": (sde_with(k=lambda lam: (1 + lam) / 2), "λ squared"),
    "forwards": (sde_with(direction=-1.0), "stepped forwards"),
    "no f x": (sde_with(fx=False), "f x term"),
    "g2 not rooted": (sde_with(noise_rule=lambda lam, g2, dt, z: lam * g2 * math.sqrt(-dt) * z), "g² itself"),
    "|dt| not rooted": (sde_with(noise_rule=lambda lam, g2, dt, z: lam * math.sqrt(g2) * (-dt) * z), "not |dt|"),
    "lambda squared noise": (sde_with(noise_rule=lambda lam, g2, dt, z: lam ** 2 * math.sqrt(g2 * -dt) * z),
                             "λ, not λ²"),
    "noise not dialled": (sde_with(noise_rule=lambda lam, g2, dt, z: math.sqrt(g2 * -dt) * z), "scaled by λ"),
    "no noise": (sde_with(noise_rule=lambda lam, g2, dt, z: 0 * z), "left out the noise"),
    "sqrt of negative dt": (sde_with(noise_rule=lambda lam, g2, dt, z: lam * torch.sqrt(torch.tensor(g2 * dt)) * z
                                     if lam > 0 else 0 * z), "negative dt"),
}


def test_sde_check_accepts_the_reference_and_a_solution():
    assert checks.check_reverse_sde_step(ch06.reverse_sde_step)
    assert checks.check_reverse_sde_step(sde_solution)


@pytest.mark.parametrize("name", SDE_MISTAKES)
def test_sde_check_names_each_mistake(name):
    assert_names_mistake(checks.check_reverse_sde_step, *SDE_MISTAKES[name])


# ----------------------------------------------------------------------------------------------- common

@pytest.mark.parametrize("check", [checks.check_dsm_loss, checks.check_langevin_step, checks.check_annealed_step_sizes,
                                   checks.check_reverse_sde_step])
def test_unfinished_is_not_done_and_a_crash_is_an_error(check):
    assert check(not_done).status == "not done"
    result = check(lambda *args: 1 / 0)
    assert result.status == "error" and "ZeroDivisionError" in result.message


def test_wrong_shape_is_named():
    assert_names_mistake(checks.check_langevin_step, lambda x, s, d, z: x.flatten(1), "shape")
