"""Samplers on a discrete schedule's ᾱ grid, one short function per algorithm (chapters 02 and 04).

Every sampler here has one signature, ``sampler(model, x_T, schedule, steps, *, y=None, generator=None)``,
and is a generator that yields a ``Step`` after each update; ``sample(sampler, ...)`` runs one to the end.
``model(x, t, y)`` predicts ε at integer steps t, or is a ``parameterisations.Denoiser`` on the schedule (any
parameterisation); ``parameterisations.on_schedule`` brings a continuous-time denoiser onto a schedule.

The time grid is "trailing" (Lin et al. 2024, Table 2): ``timesteps(schedule, steps)`` starts at the last
training step T − 1 and each sampler ends at clean data (t = −1, where ᾱ = 1 and σ = 0).

Two coordinates, one line apart: x_t, what the network sees, and x̃ = x_t / √ᾱ_t = x_0 + σ_t ε (σ-space).
DDPM, DDIM and DPM-Solver++ step in x_t; Euler and Heun step in x̃. ``Step.x`` is always x_t.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..parameterisations import Denoiser
from ..schedules import NoiseSchedule
from .common import Model, Step, check_output, noise_like, start

def timesteps(schedule: NoiseSchedule, steps: int) -> list[int]:
    """The trailing grid t_i = round(T − i·T/steps) − 1, i = 0, …, steps − 1 (diffusers' "trailing")."""
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if not 1 <= steps <= schedule.T:
        raise ValueError(f"steps must be in [1, T={schedule.T}], got {steps}")
    return [round(schedule.T - i * schedule.T / steps) - 1 for i in range(steps)]


def alpha_bar_grid(schedule: NoiseSchedule, steps: int) -> list[tuple[int, float, float]]:
    """(t, ᾱ_t, ᾱ_next) for every update; the last ᾱ_next is 1 (clean data)."""
    ts = timesteps(schedule, steps)
    abars = [schedule.alpha_bar(t) for t in ts + [-1]]
    return list(zip(ts, abars, abars[1:]))


def sigma_grid(schedule: NoiseSchedule, steps: int) -> list[tuple[int, float, float]]:
    """(t, σ_t, σ_next) for every update, σ = √((1 − ᾱ)/ᾱ); the last σ_next is 0."""
    sigma = lambda abar: math.sqrt((1 - abar) / abar)  # noqa: E731
    return [(t, sigma(a), sigma(a_next)) for t, a, a_next in alpha_bar_grid(schedule, steps)]


@torch.no_grad()
def ddpm(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor | None = None,
         generator: torch.Generator | None = None) -> Iterator[Step]:
    """Ancestral sampling, Ho et al. (2020), Algorithm 2 with the posterior of Eqs. 6–7; chapter 02.

    With steps < T a jump t → t' uses β = 1 − ᾱ_t/ᾱ_t' (Nichol & Dhariwal 2021, §4): the same formulas.
    """
    x = start(x_T)
    for t, abar, abar_prev in alpha_bar_grid(schedule, steps):
        eps = _call(model, x, t, y)
        x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)  # Eq. 15
        x = ddpm_step(x, x0, abar, abar_prev, generator)
        yield Step(t, x, x0)


def ddpm_step(x: Tensor, x0: Tensor, abar: float, abar_prev: float, generator: torch.Generator | None) -> Tensor:
    """x_{t−1} ~ q(x_{t−1} | x_t, x̂₀) = N(μ̃, β̃ I), Ho et al. (2020), Eqs. 6–7, with β = 1 − ᾱ_t/ᾱ_{t−1}."""
    beta = 1 - abar / abar_prev
    mean = (math.sqrt(abar_prev) * beta / (1 - abar) * x0
            + math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar) * x)  # μ̃, Eq. 7
    var = (1 - abar_prev) / (1 - abar) * beta  # β̃, Eq. 7
    return mean + math.sqrt(var) * noise_like(x, generator) if var > 0 else mean


@torch.no_grad()
def ddim(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor | None = None,
         generator: torch.Generator | None = None, eta: float = 0.0) -> Iterator[Step]:
    """DDIM, Song, Meng & Ermon (2021), Eq. 12 with σ_t(η) of Eq. 16; η = 0 deterministic, η = 1 DDPM. Chapter 04."""
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM), got {eta}")
    x = start(x_T)
    for t, abar, abar_prev in alpha_bar_grid(schedule, steps):
        eps = _call(model, x, t, y)
        x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)  # "predicted x_0", Eq. 12
        sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))  # Eq. 16
        x = math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev - sigma ** 2) * eps  # Eq. 12
        if sigma > 0:
            x = x + sigma * noise_like(x, generator)
        yield Step(t, x, x0)


@torch.no_grad()
def euler(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor | None = None,
          generator: torch.Generator | None = None) -> Iterator[Step]:
    """Euler steps on the probability-flow ODE dx̃/dσ = ε̂ in σ-space (Karras et al. 2022, Eq. 4 / Algorithm 1
    without its correction; Song et al. 2021, Eq. 13). Chapter 04. The network sees x̃/√(1 + σ²) = x_t."""
    grid = sigma_grid(schedule, steps)
    x = start(x_T) * math.sqrt(1 + grid[0][1] ** 2)  # x̃_T = x_T / √ᾱ_T
    for t, sigma, sigma_next in grid:
        eps = _call(model, x / math.sqrt(1 + sigma ** 2), t, y)  # dx̃/dσ = (x̃ − x̂_0)/σ = ε̂
        x0 = x - sigma * eps
        x = x + (sigma_next - sigma) * eps
        yield Step(t, x / math.sqrt(1 + sigma_next ** 2), x0)


@torch.no_grad()
def heun(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor | None = None,
         generator: torch.Generator | None = None) -> Iterator[Step]:
    """Heun's 2nd-order method on the same ODE, Karras et al. (2022), Algorithm 1 (no churn); chapter 04.

    The last step, to σ = 0, is a plain Euler step, so it costs 2·steps − 1 model evaluations.
    """
    grid = sigma_grid(schedule, steps)
    x = start(x_T) * math.sqrt(1 + grid[0][1] ** 2)
    for i, (t, sigma, sigma_next) in enumerate(grid):
        eps = _call(model, x / math.sqrt(1 + sigma ** 2), t, y)
        x0 = x - sigma * eps
        x_next = x + (sigma_next - sigma) * eps  # Euler predictor
        if sigma_next > 0:  # trapezoidal corrector, Algorithm 1, lines 9–11
            eps_next = _call(model, x_next / math.sqrt(1 + sigma_next ** 2), grid[i + 1][0], y)
            x_next = x + (sigma_next - sigma) * (eps + eps_next) / 2
        x = x_next
        yield Step(t, x / math.sqrt(1 + sigma_next ** 2), x0)


@torch.no_grad()
def dpm_solver_pp(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor | None = None,
                  generator: torch.Generator | None = None) -> Iterator[Step]:
    """DPM-Solver++(2M), Lu et al. (2022b), Algorithm 2, in λ = log(√ᾱ/√(1 − ᾱ)); chapter 04.

    First order at the first step (no history yet) and the last (to σ = 0), like diffusers' lower_order_final.
    """
    x = start(x_T)
    grid = alpha_bar_grid(schedule, steps)
    x0_prev = h_prev = None
    for i, (t, abar, abar_next) in enumerate(grid):
        eps = _call(model, x, t, y)
        x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        h = _lam(abar_next) - _lam(abar)  # step in log-SNR/2
        if x0_prev is None or i == len(grid) - 1:
            D = x0  # DPM-Solver++(1), which is DDIM
        else:
            r = h_prev / h
            D = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev  # multistep 2nd-order correction
        x = math.sqrt((1 - abar_next) / (1 - abar)) * x - math.sqrt(abar_next) * math.expm1(-h) * D
        x0_prev, h_prev = x0, h
        yield Step(t, x, x0)


def model_evaluations(sampler: Callable, steps: int) -> int:
    """Number of network calls (NFE) a sampler makes with ``steps`` updates."""
    return 2 * steps - 1 if sampler is heun else steps


def _lam(abar: float) -> float:
    """λ = log(α/σ_vp) = ½ log(ᾱ / (1 − ᾱ)), +∞ at clean data."""
    return math.inf if abar == 1 else 0.5 * math.log(abar / (1 - abar))


def _call(model: Model | Denoiser, x: Tensor, t: int, y: Tensor | None) -> Tensor:
    """ε̂ = model(x, t, y) with t as a (B,) tensor of timesteps; a ``Denoiser`` on this schedule is asked for its
    ε, whatever its network predicts. Refuses an output not shaped like x."""
    t = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    return check_output(model.eps(x, t, y) if isinstance(model, Denoiser) else model(x, t, y), x)
