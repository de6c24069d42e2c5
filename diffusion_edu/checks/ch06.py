"""Checks for chapter 06 (score matching, Langevin, the SDE view): a DSM loss, a Langevin step, annealed step
sizes and one reverse-SDE step.

Each check runs the learner's function on random inputs, compares it with the reference below (the update the
package's loops make: ``samplers.langevin``, ``samplers.annealed_langevin``, ``samplers.euler_maruyama``) and,
when it differs, names the usual mistake it reproduces with the shared matcher (``mistakes.diagnose``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .base import CheckFailed, checker, close, expect, expect_tensor
from .mistakes import diagnose

SHAPE = (16, 1, 4, 4)  # image-shaped, so code that only works for (B, D) data is caught


def _inputs(seed: int, n: int = 3) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(n)]


def _maxdiff(a: Tensor, b: Tensor) -> str:
    return f"{(a.double() - b.double()).abs().max().item():.3g}"


def _per_sample(sigma: Tensor, like: Tensor) -> Tensor:
    return sigma.reshape((-1,) + (1,) * (like.ndim - 1))  # (B,) → (B, 1, …)


# ------------------------------------------------------------------------------- denoising score matching

def dsm_loss(score_fn: Callable, x0: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
    """½ E σ² ‖s(x̃, σ) + (x̃ − x₀)/σ²‖², x̃ = x₀ + σ ε: Vincent (2011), Eq. 9 with Song & Ermon's (2019) λ(σ) = σ²."""
    s = _per_sample(sigma, x0)
    x_noisy = x0 + s * noise
    err = s * score_fn(x_noisy, sigma) + noise  # σ s + ε = σ² (s + (x̃ − x₀)/σ²)
    return 0.5 * (err ** 2).flatten(1).sum(1).mean()


def _toy_score(x: Tensor, sigma: Tensor) -> Tensor:
    """A non-linear score: per pixel, the exact score of ½N(−1, ¼) + ½N(1, ¼) blurred by N(0, σ²)."""
    v = 0.25 + _per_sample(sigma, x) ** 2
    r = torch.sigmoid(2 * x / v)  # p(+ | x)
    return -(x - (2 * r - 1)) / v


@checker("dsm_loss")
def check_dsm_loss(dsm_loss_fn: Callable) -> None:
    """``dsm_loss(score_fn, x0, sigma, noise)``: a scalar, with σ one noise level per example (B,)."""
    x0, noise = _inputs(0, 2)
    sigma = torch.linspace(0.1, 3.0, SHAPE[0], dtype=torch.float64)
    calls = []

    def score_fn(x, sig):
        calls.append(x.detach().clone())
        return _toy_score(x, sig)

    out = dsm_loss_fn(score_fn, x0, sigma, noise)
    expect(isinstance(out, Tensor) and out.numel() == 1,
           f"dsm_loss should return a scalar tensor (the mean over the batch), got "
           f"{type(out).__name__}{'' if not isinstance(out, Tensor) else ' of shape ' + str(tuple(out.shape))}.")
    expect(bool(torch.isfinite(out)), "dsm_loss returned NaN or inf.")
    want = dsm_loss(_toy_score, x0, sigma, noise)
    if close(out, want):
        return
    s = _per_sample(sigma, x0)
    if calls and close(calls[0], x0):
        raise CheckFailed("The score is evaluated at the clean x₀; it must be evaluated at the noisy x̃ = x₀ + σ ε.")
    if calls and close(calls[0], x0 + s ** 2 * noise):
        raise CheckFailed("You noised with σ² ε; σ is the standard deviation: x̃ = x₀ + σ ε.")
    x_noisy = x0 + s * noise
    score = _toy_score(x_noisy, sigma)
    D = x0[0].numel()
    total = lambda e: (e ** 2).flatten(1).sum(1).mean()  # noqa: E731
    diagnose(out, [
        (0.5 * total(s * score - noise), "The target has the wrong sign: ∇ log N(x̃; x₀, σ²I) = −(x̃ − x₀)/σ² = −ε/σ, so "
                                         "the residual is s + ε/σ."),
        (0.5 * total(score + noise / s), "The weighting λ(σ) = σ² is missing: without it small σ's (where the "
                                         "target −ε/σ is huge) dominate the loss (Song & Ermon 2019, Eq. 2)."),
        (0.5 * total(s * (score + noise)), "The target is −ε/σ, not −ε: (x̃ − x₀)/σ² = ε/σ."),
        (0.5 * total(s * score + noise / s), "The target is (x̃ − x₀)/σ² = ε/σ; you divided ε by σ² once more."),
        (total(s * score + noise), "The loss has a ½ in front: ½ σ² ‖s + ε/σ‖²."),
        (0.5 * total(s * score + noise) / D, "Sum the squared error over the dimensions of each example (‖·‖²), "
                                             "then average over the batch; you averaged over every entry."),
        (0.5 * (s ** 2 * (score + noise / s) ** 2).flatten(1).sum(1).sum(),
         "Average over the batch (the expectation), don't sum."),
    ], f"Your loss differs from ½ mean_b σ_b² ‖s(x̃_b, σ_b) + ε_b/σ_b‖² ({float(out):.6g} vs {float(want):.6g}).")


# --------------------------------------------------------------------------------------------- Langevin

def langevin_step(x: Tensor, score: Tensor, step_size: float, noise: Tensor) -> Tensor:
    """x + (δ/2) ∇log p(x) + √δ z: Song & Ermon (2019), Eq. 4 (one iteration of ``samplers.langevin``)."""
    return x + step_size / 2 * score + math.sqrt(step_size) * noise


@checker("langevin_step")
def check_langevin_step(langevin_step_fn: Callable) -> None:
    """``langevin_step(x, score, step_size, noise)``, step_size δ as in Song & Ermon's Eq. 4."""
    x, score, noise = _inputs(1)
    for step in (0.3, 0.02):
        out = expect_tensor(langevin_step_fn(x, score, step, noise), SHAPE, "langevin_step(...)")
        want = langevin_step(x, score, step, noise)
        if close(out, want):
            continue
        r = math.sqrt(step)
        diagnose(out, [
            (x + step * score + math.sqrt(2 * step) * noise,
             "That is Langevin with the other convention, x + δ s + √(2δ) z. Here step_size is Song & Ermon's δ "
             "(Eq. 4): x + (δ/2) s + √δ z."),
            (x + step * score + r * noise, "The drift is (δ/2) ∇log p: you left out the ½."),
            (x + step / 2 * score + step * noise, "The noise is √δ z (a variance δ), not δ z."),
            (x + step / 2 * score + math.sqrt(2 * step) * noise, "The noise is √δ z, not √(2δ) z, with the (δ/2) drift."),
            (x + step / 2 * score + step / 2 * noise, "The noise is √δ z, not (δ/2) z."),
            (x - step / 2 * score + r * noise, "The drift climbs the log-density: + (δ/2) ∇log p, not minus."),
            (x + step / 2 * score, "You left out the noise √δ z: without it Langevin is gradient ascent, and "
                                   "every sample runs to a mode."),
            (x + r * noise, "You left out the drift (δ/2) ∇log p: that is a random walk."),
        ], f"With δ = {step} your step differs from x + (δ/2) s + √δ z (max |difference| {_maxdiff(out, want)}).")


# ---------------------------------------------------------------------------------- annealed step sizes

def annealed_step_sizes(sigmas: Tensor, epsilon: float) -> Tensor:
    """α_i = ε σ_i²/σ_L²: Song & Ermon (2019), Algorithm 1, line 3 (σ_L the last, smallest level)."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    return epsilon * sigmas ** 2 / sigmas[-1] ** 2


@checker("annealed_step_sizes")
def check_annealed_step_sizes(fn: Callable) -> None:
    """``annealed_step_sizes(sigmas, epsilon)`` for a falling list of σ's: one step size per level."""
    sigmas = torch.logspace(1, -2, 7, dtype=torch.float64)  # 10 … 0.01
    eps = 2e-5
    out = fn(sigmas.clone(), eps)
    try:
        out = torch.as_tensor(out, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise CheckFailed(f"annealed_step_sizes should return one step size per level (a tensor or a list of "
                          f"numbers), got {type(out).__name__}.") from None
    expect(out.shape == sigmas.shape, f"annealed_step_sizes should return {len(sigmas)} step sizes (one per σ), "
                                      f"got {out.numel()}.")
    want = annealed_step_sizes(sigmas, eps)
    if close(out, want, rtol=1e-6, atol=0):
        return
    diagnose(out, [
        (eps * sigmas / sigmas[-1], "The step size scales with σ_i², not σ_i: α_i = ε σ_i²/σ_L², so that α_i/σ_i² "
                                    "(the step measured against the level's width) is the same at every level."),
        (eps * sigmas ** 2 / sigmas[0] ** 2, "Divide by the last (smallest) level σ_L², not the first: ε is the step "
                                             "size at the end, α_L = ε."),
        (eps * sigmas[-1] ** 2 / sigmas ** 2, "Your ratio is upside down: big noise levels take big steps, "
                                              "α_i = ε σ_i²/σ_L²."),
        (eps * sigmas ** 2, "Divide by σ_L²: α_i = ε σ_i²/σ_L², so that α_L = ε."),
        (torch.full_like(sigmas, eps), "The step size changes with the level: α_i = ε σ_i²/σ_L²."),
    ], f"Your step sizes differ from ε σ_i²/σ_L² (first: {float(out[0]):.4g} vs {float(want[0]):.4g}).", rtol=1e-6)


# ------------------------------------------------------------------------------------ the reverse SDE

def reverse_sde_step(x: Tensor, score: Tensor, f: float, g2: float, dt: float, lam: float, noise: Tensor) -> Tensor:
    """x + [f x − ((1 + λ²)/2) g² s] dt + λ √(g² |dt|) z, dt < 0: Euler–Maruyama on the reverse SDE with the
    SDE–ODE dial λ (Song et al. 2021, Eq. 6 at λ = 1, Eq. 13 at λ = 0; one step of ``samplers.euler_maruyama``)."""
    return x + (f * x - (1 + lam ** 2) / 2 * g2 * score) * dt + lam * math.sqrt(g2 * abs(dt)) * noise


@checker("reverse_sde_step")
def check_reverse_sde_step(step_fn: Callable) -> None:
    """``reverse_sde_step(x, score, f, g2, dt, lam, noise)``: λ = 0 (the ODE), 1 (the reverse SDE) and 0.5."""
    x, score, noise = _inputs(2)
    f, g2, dt = -3.0, 7.0, -0.02
    for lam in (0.0, 1.0, 0.5):
        out = step_fn(x, score, f, g2, dt, lam, noise)
        if isinstance(out, Tensor) and out.shape == SHAPE and not bool(torch.isfinite(out).all()):
            raise CheckFailed(f"With λ = {lam} your step returned NaN: √(g² dt) of a negative dt? Time runs "
                              "backwards (dt < 0), and the noise has standard deviation λ g √|dt|.")
        expect_tensor(out, SHAPE, "reverse_sde_step(...)")
        want = reverse_sde_step(x, score, f, g2, dt, lam, noise)
        if close(out, want):
            continue
        noise_term = lam * math.sqrt(g2 * -dt) * noise
        drift = lambda k: (f * x - k * g2 * score) * dt  # noqa: E731
        half = (1 + lam ** 2) / 2
        diagnose(out, [
            (x + (f * x + half * g2 * score) * dt + noise_term,
             "The score term has the wrong sign: the reverse drift is f x − ((1 + λ²)/2) g² s; moving back in time "
             "(dt < 0) it climbs the log-density."),
            (x + drift(1.0) + noise_term,
             f"The score's coefficient is (1 + λ²)/2 g², which is g² only at λ = 1; at λ = {lam} it is "
             f"{half:g} g² (λ = 0, the probability-flow ODE: ½ g²)."),
            (x + drift(0.5) + noise_term,
             f"The score's coefficient is (1 + λ²)/2 g², which is ½ g² only at λ = 0; at λ = {lam} it is {half:g} g²."),
            (x + drift((1 + lam) / 2) + noise_term, "The score's coefficient is (1 + λ²)/2 g²: λ squared."),
            (x - drift(half) + noise_term, "You stepped forwards: dt is already negative, x + drift·dt."),
            (x - half * g2 * score * dt + noise_term, "The drift also has the forward SDE's f x term: "
                                                      "[f x − ((1 + λ²)/2) g² s] dt."),
            (x + drift(half) + lam * g2 * math.sqrt(-dt) * noise,
             "The noise is λ g √|dt| z with g = √g²; you multiplied by g² itself."),
            (x + drift(half) + lam * math.sqrt(g2) * (-dt) * noise,
             "The Brownian increment dw̄ has standard deviation √|dt|, not |dt|."),
            (x + drift(half) + lam ** 2 * math.sqrt(g2 * -dt) * noise, "The noise is λ g √|dt| z: λ, not λ²."),
            (x + drift(half) + math.sqrt(g2 * -dt) * noise, "The noise is scaled by λ: at λ = 0 the step is the "
                                                           "deterministic probability-flow ODE."),
            (x + drift(half), "You left out the noise λ g √|dt| z."),
        ], f"With λ = {lam} your step differs from x + [f x − ((1 + λ²)/2) g² s] dt + λ g √|dt| z "
           f"(max |difference| {_maxdiff(out, want)}).")


__all__ = ["check_dsm_loss", "check_langevin_step", "check_annealed_step_sizes", "check_reverse_sde_step"]
