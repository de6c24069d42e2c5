"""The forward (noising) process q and the conversions between what a network can predict (chapter 01).

Every function takes integer timesteps ``t`` (a Python int, or a tensor of shape (B,)) in the schedule's
0-based indexing (see ``schedules``), and data ``x`` with the batch first: (B, D) or (B, C, H, W).
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import parameterisations as P
from .schedules import NoiseSchedule, check_timesteps  # noqa: F401  (check_timesteps: re-exported)


def check_batch(x: Tensor, name: str = "x") -> None:
    """Raise unless ``x`` is a floating-point tensor with a batch dimension, i.e. rank ≥ 2."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have a batch dimension, shape (B, D) or (B, C, H, W); "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def at(values: Tensor, t, x: Tensor) -> Tensor:
    """``values[t]`` in float64 on the CPU, shaped (B, 1, …, 1) to broadcast against x.

    Coefficients are computed in float64 (1 − ᾱ_0 ≈ 1e-4 loses three digits in float32), then ``like(c, x)``.
    """
    t = check_timesteps(t, len(values), x.shape[0]).cpu()
    return values.double()[t].reshape(-1, *([1] * (x.ndim - 1)))  # (B, 1, …, 1)


def like(c: Tensor, x: Tensor) -> Tensor:
    """A float64 coefficient cast to x's dtype and device."""
    return c.to(device=x.device, dtype=x.dtype)


def q_sample(x0: Tensor, t, schedule: NoiseSchedule, noise: Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Sample x_t ~ q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I); returns (x_t, ε).

    Ho et al. (2020), Eq. 4; derived in chapter 01. Shapes: x0 (B, …), t () or (B,).
    """
    check_batch(x0, "x0")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    elif noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    abar = at(schedule.alpha_bars, t, x0)
    return like(abar.sqrt(), x0) * x0 + like((1 - abar).sqrt(), x0) * noise, noise


def q_posterior(x0: Tensor, x_t: Tensor, t, schedule: NoiseSchedule) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t−1} | x_t, x_0), Ho et al. (2020), Eqs. 6–7; derived in chapter 02.

    μ̃ = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t,
    β̃ = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t.   At t = 0 the previous step is clean data: μ̃ = x_0, β̃ = 0.
    Shapes: x0, x_t (B, …); returns mean (B, …) and variance (B, 1, …, 1).
    """
    check_batch(x0, "x0")
    check_batch(x_t, "x_t")
    abar_prev_all = torch.cat([torch.ones(1, dtype=torch.float64), schedule.alpha_bars[:-1]])
    abar, abar_prev = at(schedule.alpha_bars, t, x_t), at(abar_prev_all, t, x_t)
    beta, alpha = at(schedule.betas, t, x_t), at(schedule.alphas, t, x_t)
    c0 = like(abar_prev.sqrt() * beta / (1 - abar), x_t)
    ct = like(alpha.sqrt() * (1 - abar_prev) / (1 - abar), x_t)
    return c0 * x0 + ct * x_t, like((1 - abar_prev) / (1 - abar) * beta, x_t)


def x0_from_eps(x_t: Tensor, t, eps: Tensor, schedule: NoiseSchedule) -> Tensor:
    """x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t: Eq. 4 solved for x_0 (Ho et al. 2020, Eq. 15)."""
    return P.x0_from_eps(x_t, eps, schedule.coefficients(t, x_t))


def eps_from_x0(x_t: Tensor, t, x0: Tensor, schedule: NoiseSchedule) -> Tensor:
    """ε̂ = (x_t − √ᾱ_t x_0) / √(1 − ᾱ_t): Eq. 4 solved for ε."""
    return P.eps_from_x0(x_t, x0, schedule.coefficients(t, x_t))


def v_target(x0: Tensor, eps: Tensor, t, schedule: NoiseSchedule) -> Tensor:
    """v = √ᾱ_t ε − √(1 − ᾱ_t) x_0: Salimans & Ho (2022), "Progressive distillation", §4."""
    return P.v_of(x0, eps, schedule.coefficients(t, x0))


def eps_from_v(x_t: Tensor, t, v: Tensor, schedule: NoiseSchedule) -> Tensor:
    """ε̂ = √(1 − ᾱ_t) x_t + √ᾱ_t v (invert the definition of v with x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε)."""
    return P.x0_eps_from_v(x_t, v, schedule.coefficients(t, x_t))[1]
