"""Exact log-likelihood through the probability-flow ODE (chapter 04): how many nats a model gives each point.

The deterministic ODE that DDIM, Euler and Heun solve carries the density p_t along. On a trajectory the
instantaneous change of variables (Chen et al. 2018, Theorem 1) gives d log p(x(φ))/dφ = −∇·f(x(φ), φ), so

    log p_0(x_0) = log p_T(x_T) + ∫_0^{φ_T} ∇·f(x(φ), φ) dφ        (Song et al. 2021, §4.3 and Appendix D.2)

where x_T ends the ODE started at the data point and p_T ≈ N(0, I). For low-dimensional data ∇·f is computed
exactly, with D backward passes (Song et al. use Hutchinson's unbiased estimate, needed for images).

Coordinates: x_t itself, and the angle φ = arctan σ, so x_t = cos φ · x_0 + sin φ · ε (cos φ = √ᾱ_t,
sin φ = √(1 − ᾱ_t)). Then f = dx_t/dφ = cos φ · ε̂ − sin φ · x̂_0 = (ε̂ − sin φ · x_t)/cos φ: the
v-prediction (Salimans & Ho 2022, §4 and Appendix D). It is the samplers' σ-space ODE dx̃/dσ = ε̂ in other
coordinates, x_t = x̃ cos φ and σ = tan φ. Why not step x̃ in σ? There the log-density integrand tends to
D/σ, and even at 1000 steps the trailing grid's last step on the cosine schedule spans σ ≈ 640 → 20 000:
trapezoids there are off by 25 nats (1000 steps) to 150 (200 steps). In (x_t, φ), f and ∇·f stay bounded
up to φ_T < π/2, and no Jacobian is needed: x_t = x_0 at φ = 0 and the prior N(0, I) is a density of x_T.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .forward import check_batch
from .parameterisations import velocity_of
from .samplers.common import Model
from .samplers.discrete import _call, timesteps
from .schedules import NoiseSchedule


def velocity(model: Model, x: Tensor, t: int, schedule: NoiseSchedule, *,
             y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """f = dx_t/dφ = (ε̂ − sin φ · x_t)/cos φ and its exact divergence (tr ∂ε̂/∂x_t − D sin φ)/cos φ.

    The trace takes one backward pass per dimension: ∂(Σ_b ε̂_{b,i})/∂x_{b,i} summed over i, which is exact
    for a model that treats the samples of a batch independently. Shapes: x (B, D) → f (B, D), ∇·f (B,).
    """
    abar = schedule.alpha_bar(t)
    sin, cos = math.sqrt(1 - abar), math.sqrt(abar)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        eps = _call(model, x, t, y)
        tr = sum(torch.autograd.grad(eps[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    x, eps = x.detach(), eps.detach()
    return (eps - sin * x) / cos, (tr - x.shape[1] * sin) / cos


@torch.no_grad()
def log_likelihood(model: Model, x0: Tensor, schedule: NoiseSchedule, steps: int = 200, *,
                   y: Tensor | None = None) -> Tensor:
    """log p_0(x_0) in nats under the probability-flow ODE of an ε-model, Song et al. (2021), §4.3 and D.2.

    Heun's method in φ (module docstring) on the grid ``timesteps(schedule, steps)`` run upwards, from clean
    data (t = −1, φ = 0) to t = T − 1, then log N(x_T; 0, I): 2·steps − 1 model calls, each with D backward
    passes. Derived in chapter 04 and checked there against the exact density of a Gaussian mixture.

    Start: the model has no timestep at φ = 0, but there f = −tan φ · (x_t + ∇log p_t(x_t)) vanishes (for
    data with a smooth density), so the first step is Heun's with a zero left slope, second order like the
    rest. Starting at the grid's smallest t with x ≈ x_0 would skip [0, φ_1]: 3e-3 rather than 1e-3 nats mean
    absolute error (linear schedule, 200 steps). End: N(0, I) ignores the √ᾱ_T E[x_0] left in p_T, an error
    ≈ √ᾱ_T |x_T · E[x_0]| per point and zero on average: 6e-3 |E[x_0]| on the linear schedule (ᾱ_T = 4e-5),
    5e-5 |E[x_0]| on the cosine one. Shapes: x0 (B, D) with D small → (B,).
    """
    check_batch(x0, "x0")
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (B, D) (low-dimensional data), got shape {tuple(x0.shape)}")
    nodes = [-1] + timesteps(schedule, steps)[::-1]  # clean data, t_min, …, T − 1
    x, delta = x0, x0.new_zeros(x0.shape[0])  # delta = ∫ ∇·f dφ, (B,)
    for t, t_next in zip(nodes, nodes[1:]):
        h = _phi(schedule, t_next) - _phi(schedule, t)
        if t == -1:  # clean data: f = 0 (docstring)
            f, div = torch.zeros_like(x), torch.zeros_like(delta)
        else:
            f, div = velocity(model, x, t, schedule, y=y)
        f_next, div_next = velocity(model, x + h * f, t_next, schedule, y=y)  # Euler predictor
        x = x + h * (f + f_next) / 2  # trapezoidal corrector (Karras et al. 2022, Algorithm 1)
        delta = delta + h * (div + div_next) / 2
    log_prior = -0.5 * (x ** 2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)  # log N(x_T; 0, I)
    return log_prior + delta


def _phi(schedule: NoiseSchedule, t: int) -> float:
    """φ_t = arctan σ_t = atan2(√(1 − ᾱ_t), √ᾱ_t), with φ = 0 at clean data (t = −1)."""
    abar = schedule.alpha_bar(t)
    return math.atan2(math.sqrt(1 - abar), math.sqrt(abar))


# ------------------------------------------------------------------------------ on a continuous path (06)

def velocity_divergence(denoiser, x: Tensor, t: float, *, y: Tensor | None = None,
                        probes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """u = α′x̂₀ + σ′ε̂ (the probability-flow ODE's velocity, ``samplers.ode``) and its divergence ∇·u.

    Exact (one backward pass per dimension; for models that treat samples independently) when ``probes`` is
    None; else Hutchinson's estimate mean_k z_kᵀ (∂u/∂x) z_k over the probes (K, B, …) (Hutchinson 1989;
    Grathwohl et al. 2019), one backward pass each, as Song et al. (2021), §4.3, do for images. x (B, …) → (B, …), (B,).
    """
    tt = torch.full((x.shape[0],), t, dtype=torch.float64, device=x.device)
    c = denoiser.path.coefficients(tt, x)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        x0, eps = denoiser(x, tt, y)
        u = velocity_of(x0, eps, c)
        flat = u.flatten(1)
        if probes is None:
            div = sum(torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)[0].flatten(1)[:, i]
                      for i in range(flat.shape[1]))
        else:
            div = sum((torch.autograd.grad((u * z).sum(), x, retain_graph=True)[0] * z).flatten(1).sum(1)
                      for z in probes) / len(probes)
    return u.detach(), div.detach()


@torch.no_grad()
def log_likelihood_path(denoiser, x0: Tensor, steps: int = 100, *, hutchinson: int = 0, y: Tensor | None = None,
                        generator: torch.Generator | None = None) -> Tensor:
    """log p(x₀) in nats through the probability-flow ODE of a ``Denoiser`` on a continuous path (chapter 06).

    d log p_t(x(t))/dt = −∇·u along dx/dt = u (Chen et al. 2018, Theorem 1), so
    log p_{t_min}(x₀) = log N(x(1); 0, σ(1)² I) + ∫_{t_min}^1 ∇·u dt (Song et al. 2021, §4.3, Appendix D.2),
    with x₀ taken as the point at t_min (σ(t_min) ≈ 0.01 on VP) and α(1) x₀ dropped from the prior, as ``prior``
    does. Heun's method upwards on ``steps`` equal steps in t: 2·steps + 1 model calls. ``hutchinson`` = 0: the
    exact divergence (small D); K > 0: K Rademacher probes, fixed along the path. Shapes: (B, …) → (B,).
    """
    check_batch(x0, "x0")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if hutchinson < 0:
        raise ValueError(f"hutchinson must be 0 (exact divergence) or a number of probes, got {hutchinson}")
    path = denoiser.path
    probes = None
    if hutchinson:
        signs = torch.randint(0, 2, (hutchinson, *x0.shape), generator=generator)
        probes = (2 * signs - 1).to(x0)
    times = torch.linspace(path.t_min, 1.0, steps + 1, dtype=torch.float64).tolist()
    x, delta = x0, x0.new_zeros(x0.shape[0])  # delta = ∫ ∇·u dt, (B,)
    u, div = velocity_divergence(denoiser, x, times[0], y=y, probes=probes)
    for t, t_next in zip(times, times[1:]):
        h = t_next - t
        u_next, div_next = velocity_divergence(denoiser, x + h * u, t_next, y=y, probes=probes)  # Euler predictor
        x_next = x + h * (u + u_next) / 2  # trapezoidal corrector
        delta = delta + h * (div + div_next) / 2
        x = x_next
        u, div = velocity_divergence(denoiser, x, t_next, y=y, probes=probes)
    sigma_1 = float(path.sigma(torch.tensor(1.0, dtype=torch.float64)))
    D = x[0].numel()
    log_prior = -0.5 * (x.flatten(1) ** 2).sum(1) / sigma_1**2 - 0.5 * D * math.log(2 * math.pi * sigma_1**2)
    return log_prior + delta
