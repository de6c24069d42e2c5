"""ODE samplers in continuous time: the probability-flow ODE of chapter 06 is the flow of chapter 07.

On any Gaussian path the probability-flow ODE dx/dt = f x − ½ g² ∇log p_t (Song et al. 2021, Eq. 13) has the
velocity u = α′ x̂₀ + σ′ ε̂ (``parameterisations.velocity_of``): with f = α′/α and g² = 2σσ′ − 2(α′/α)σ²,
f x + (g²/2σ) ε̂ = α′ x̂₀ + σ′ ε̂. So one ``denoiser.velocity`` serves a diffusion model and a flow-matching
model alike, and these samplers are the flow samplers of Lipman et al. (2023) on the straight path.

Signature: ``sampler(denoiser, x, times, *, y=None)``, ``times`` falling from the start (1: noise) to the end
(t_min or 0: data), e.g. ``grids.uniform_times(steps)``; each yields a ``Step`` after every update.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from ..parameterisations import Denoiser, velocity_of
from .common import Step, check_output, start


@torch.no_grad()
def ode_euler(denoiser: Denoiser, x: Tensor, times: Tensor, *, y: Tensor | None = None) -> Iterator[Step]:
    """Euler's method on dx/dt = u(x, t): x ← x + (t_next − t) u. One network call per step."""
    x = start(x)
    for t, t_next in _pairs(times):
        x0, u = _velocity(denoiser, x, t, y)
        x = x + (t_next - t) * u
        yield Step(t, x, x0)


@torch.no_grad()
def ode_midpoint(denoiser: Denoiser, x: Tensor, times: Tensor, *, y: Tensor | None = None) -> Iterator[Step]:
    """The explicit midpoint method (second order): u at x + (h/2) u(x, t), t + h/2. Two calls per step."""
    x = start(x)
    for t, t_next in _pairs(times):
        h = t_next - t
        _, u = _velocity(denoiser, x, t, y)
        x0, u_mid = _velocity(denoiser, x + h / 2 * u, t + h / 2, y)
        x = x + h * u_mid
        yield Step(t, x, x0)


@torch.no_grad()
def ode_heun(denoiser: Denoiser, x: Tensor, times: Tensor, *, y: Tensor | None = None) -> Iterator[Step]:
    """Heun's method (trapezoidal, second order; Karras et al. 2022, Algorithm 1): two calls per step, one on a
    last step that ends at σ = 0, where ε (so the velocity) is undefined and Algorithm 1 keeps Euler's step."""
    x = start(x)
    for t, t_next in _pairs(times):
        h = t_next - t
        x0, u = _velocity(denoiser, x, t, y)
        x_euler = x + h * u
        if _clean(denoiser, t_next):
            x = x_euler
        else:
            _, u_next = _velocity(denoiser, x_euler, t_next, y)
            x = x + h / 2 * (u + u_next)
        yield Step(t, x, x0)


def ode_evaluations(sampler, denoiser: Denoiser, times: Tensor) -> int:
    """Network calls (NFE) of an ODE sampler on the grid ``times``."""
    steps = len(times) - 1
    if sampler is ode_euler:
        return steps
    return 2 * steps - (sampler is ode_heun and _clean(denoiser, float(times[-1])))


def _clean(denoiser: Denoiser, t: float) -> bool:
    """σ(t) = 0: the sample there is data, and ε is undefined."""
    return float(denoiser.path.sigma(torch.tensor([t], dtype=torch.float64))) == 0


def _velocity(denoiser: Denoiser, x: Tensor, t: float, y: Tensor | None) -> tuple[Tensor, Tensor]:
    """(x̂₀, u) at x and time t, from one network call; u = α′ x̂₀ + σ′ ε̂."""
    tt = torch.full((x.shape[0],), t, dtype=torch.float64, device=x.device)
    c = denoiser.path.coefficients(tt, x)
    x0, eps = denoiser(x, tt, y)
    return x0, check_output(velocity_of(x0, eps, c), x)


def _pairs(times: Tensor) -> list[tuple[float, float]]:
    """Consecutive (t, t_next) of a falling grid, as Python floats."""
    times = torch.as_tensor(times, dtype=torch.float64).flatten()
    if len(times) < 2:
        raise ValueError(f"times must hold at least 2 points (start and end), got {len(times)}")
    if not (times.diff() < 0).all() or times.min() < 0 or times.max() > 1:
        raise ValueError("times must fall strictly, from the start (noise, near 1) to the end (data, near 0), "
                         f"inside [0, 1]; got {times.tolist()[:4]}…")
    values = times.tolist()
    return list(zip(values, values[1:]))
