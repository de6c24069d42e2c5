"""Score-based samplers (chapter 06): Langevin dynamics, annealed Langevin, the reverse SDE and predictor–corrector.

A path x_t = α x₀ + σ ε is the SDE dx = f x dt + g dw (``processes``: f = α′/α, g² = 2σσ′ − 2fσ²). Run
backwards in time (Anderson 1982; Song et al. 2021, Eq. 6), and dialled by λ ≥ 0, one family has the same
marginals p_t for every λ:

    dx = [f x − ((1 + λ²)/2) g² ∇log p_t(x)] dt + λ g dw̄

λ = 1 is the reverse SDE, λ = 0 the probability-flow ODE (Song et al. 2021, Eq. 13), whose samplers are
``ode_euler`` … in ``samplers.ode``. The score comes from any ``Denoiser``: ∇log p_t = −ε̂/σ.

Signature: ``sampler(denoiser, x, times, *, y=None, generator=None)``, ``times`` falling from 1 (noise) to
t_min (data), e.g. ``grids.uniform_times(steps, path.t_min)``; each yields a ``Step``. ``langevin`` takes
a plain score function of x instead: it samples one fixed density.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..parameterisations import Denoiser
from ..processes import GaussianPath
from .common import Step, check_output, noise_like, start
from .ode import _pairs


def prior(path: GaussianPath, shape: tuple[int, ...], generator: torch.Generator | None = None,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """A draw of N(0, σ(1)² I), the end of the forward SDE (α(1) x₀ is negligible on VP; VE: σ_max z)."""
    sigma = float(path.sigma(torch.tensor(1.0, dtype=torch.float64)))
    return sigma * torch.randn(shape, generator=generator, dtype=dtype)


def score_at(denoiser: Denoiser, x: Tensor, t: float, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(x̂₀, ∇log p_t(x)) at a float time t from one network call: the score is −ε̂/σ(t) (Vincent 2011)."""
    tt = torch.full((x.shape[0],), t, dtype=torch.float64, device=x.device)
    x0, eps = denoiser(x, tt, y)
    return x0, -check_output(eps, x) / denoiser.path.coefficients(tt, x).sigma


@torch.no_grad()
def euler_maruyama(denoiser: Denoiser, x: Tensor, times: Tensor, *, lam: float = 1.0, y: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Iterator[Step]:
    """Euler–Maruyama on the reverse SDE with the SDE–ODE dial λ (module docstring; Song et al. 2021, Eq. 6 at λ = 1).

    x ← x + [f x − ((1 + λ²)/2) g² s] h + λ g √|h| z with h = t_next − t < 0. The last step adds no noise: it
    returns the drift's mean, as Song et al.'s samplers do. λ = 0 is ``ode_euler`` in other words.
    """
    if lam < 0:
        raise ValueError(f"lam must be ≥ 0 (0: the probability-flow ODE, 1: the reverse SDE), got {lam}")
    x = start(x)
    pairs = _pairs(times)
    for i, (t, t_next) in enumerate(pairs):
        x0, x = _reverse_step(denoiser, x, t, t_next, lam, i < len(pairs) - 1, y, generator)
        yield Step(t, x, x0)


@torch.no_grad()
def predictor_corrector(denoiser: Denoiser, x: Tensor, times: Tensor, *, snr: float = 0.16, corrector_steps: int = 1,
                        y: Tensor | None = None, generator: torch.Generator | None = None) -> Iterator[Step]:
    """Predictor–corrector sampling, Song et al. (2021), Algorithm 1 with Algorithms 4–5's Langevin corrector.

    Predictor: one Euler–Maruyama step of the reverse SDE (λ = 1). Corrector: ``corrector_steps`` Langevin
    steps at t_next, x ← x + ε s + √(2ε) z with ε = 2 (r ‖z‖/‖s‖)², r = ``snr``, each norm the batch's mean
    per-sample norm as in Song et al.'s code (their VP corrector also scales ε by the discrete αᵢ ≈ 1; we don't).
    No corrector after the last step.
    """
    if snr <= 0 or corrector_steps < 0:
        raise ValueError(f"need snr > 0 and corrector_steps ≥ 0, got snr={snr}, corrector_steps={corrector_steps}")
    x = start(x)
    pairs = _pairs(times)
    for i, (t, t_next) in enumerate(pairs):
        x0, x = _reverse_step(denoiser, x, t, t_next, 1.0, i < len(pairs) - 1, y, generator)  # predictor
        if i < len(pairs) - 1:
            for _ in range(corrector_steps):  # corrector: Langevin on p_{t_next}
                _, s = score_at(denoiser, x, t_next, y)
                z = noise_like(x, generator)
                eps = 2 * (snr * _norm(z) / _norm(s)) ** 2  # the step size that sets ‖√(2ε) z‖/‖ε s‖ to 1/r
                x = x + eps * s + math.sqrt(2 * eps) * z
        yield Step(t, x, x0)


@torch.no_grad()
def langevin(score: Callable[[Tensor], Tensor], x: Tensor, step_size: float, steps: int, *,
             generator: torch.Generator | None = None) -> Iterator[Step]:
    """Unadjusted Langevin dynamics x ← x + (δ/2) ∇log p(x) + √δ z (Song & Ermon 2019, Eq. 4; Welling & Teh 2011).

    ``score(x)`` is ∇log p of the one density sampled. Steps are numbered 0 … steps − 1; ``Step.x0`` is x itself.
    """
    if step_size <= 0 or steps < 1:
        raise ValueError(f"need step_size > 0 and steps ≥ 1, got step_size={step_size}, steps={steps}")
    x = start(x)
    for i in range(steps):
        x = x + step_size / 2 * check_output(score(x), x) + math.sqrt(step_size) * noise_like(x, generator)
        yield Step(i, x, x)


@torch.no_grad()
def annealed_langevin(denoiser: Denoiser, x: Tensor, times: Tensor, *, steps_per_level: int = 100,
                      epsilon: float = 2e-5, y: Tensor | None = None,
                      generator: torch.Generator | None = None) -> Iterator[Step]:
    """Annealed Langevin dynamics, Song & Ermon (2019), Algorithm 1: Langevin at each noise level σ_i = σ(t_i) in turn.

    Step size α_i = ε σ_i²/σ_L² (σ_L the last, smallest level), ``steps_per_level`` steps per level, each
    x ← x + (α_i/2) s(x, t_i) + √α_i z. ``times`` lists the levels from the noisiest; a VE path gives NCSN's
    geometric σ's. One ``Step`` per level, with x̂₀ from the last score call of the level.
    """
    if steps_per_level < 1 or epsilon <= 0:
        raise ValueError(f"need steps_per_level ≥ 1 and epsilon > 0, got {steps_per_level}, {epsilon}")
    x = start(x)
    times = torch.as_tensor(times, dtype=torch.float64).flatten()
    sigmas = denoiser.path.sigma(times)
    if len(times) < 1 or not (times.diff() < 0).all():
        raise ValueError(f"times must fall strictly (noisiest level first), got {times.tolist()[:4]}…")
    for t, sigma in zip(times.tolist(), sigmas.tolist()):
        alpha = epsilon * sigma**2 / float(sigmas[-1]) ** 2  # α_i = ε σ_i²/σ_L²
        for _ in range(steps_per_level):
            x0, s = score_at(denoiser, x, t, y)
            x = x + alpha / 2 * s + math.sqrt(alpha) * noise_like(x, generator)
        yield Step(t, x, x0)


def _reverse_step(denoiser: Denoiser, x: Tensor, t: float, t_next: float, lam: float, noisy: bool,
                  y: Tensor | None, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """(x̂₀, x after one Euler–Maruyama step from t to t_next of the dialled reverse SDE); noise only if ``noisy``."""
    h = t_next - t
    f, g2 = _f_g2(denoiser.path, t)
    x0, s = score_at(denoiser, x, t, y)
    x = x + (f * x - (1 + lam**2) / 2 * g2 * s) * h  # the drift, Eq. 6 (λ = 1) and Eq. 13 (λ = 0)
    if lam > 0 and noisy:
        x = x + lam * math.sqrt(g2 * -h) * noise_like(x, generator)  # λ g dw̄, dw̄ ~ N(0, |h|)
    return x0, x


def _f_g2(path: GaussianPath, t: float) -> tuple[float, float]:
    tt = torch.tensor([t], dtype=torch.float64)
    return float(path.drift(tt)), float(path.diffusion2(tt))


def _norm(x: Tensor) -> float:
    """The mean over the batch of each sample's norm ‖x_b‖."""
    return float(x.flatten(1).norm(dim=1).mean())
