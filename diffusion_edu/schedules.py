"""Noise schedules: the β_t of the forward process and everything derived from them (chapter 01).

Notation (the same table is in the README and chapter 00):

=============  ==========  ==========================================================
code           symbol      meaning
=============  ==========  ==========================================================
``betas``      β_t         variance added at step t
``alphas``     α_t         1 − β_t
``alpha_bars`` ᾱ_t         ∏_{s≤t} α_s, so q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)
``sigmas``     σ_t         √((1 − ᾱ_t) / ᾱ_t): the noise level of x_t / √ᾱ_t = x_0 + σ_t ε
``snr``        SNR(t)      ᾱ_t / (1 − ᾱ_t) = 1 / σ_t²
=============  ==========  ==========================================================

Indexing is 0-based, like diffusers: t = 0, …, T − 1, and ``alpha_bars[t]`` is the product up to and
including step t, so t = 0 is already (slightly) noisy. Clean data sits at "t = −1", where ᾱ = 1 and σ = 0.
The paper's t = 1, …, T (Ho et al. 2020) is our t + 1.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


class NoiseSchedule:
    """A discrete noise schedule, held as ``betas`` (float64) plus its derived views (module docstring)."""

    def __init__(self, betas: Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must lie strictly between 0 and 1")
        self.betas = betas
        self.alphas = 1 - betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)
        self.sigmas = ((1 - self.alpha_bars) / self.alpha_bars).sqrt()
        self.snr = self.alpha_bars / (1 - self.alpha_bars)

    @property
    def T(self) -> int:
        return len(self.betas)

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t as a Python float, with ᾱ_{−1} = 1 for clean data (the end of every sampler's grid)."""
        if not -1 <= t < self.T:
            raise ValueError(f"t must be in [-1, {self.T - 1}], got {t}")
        return 1.0 if t == -1 else float(self.alpha_bars[t])

    def __repr__(self) -> str:
        return (f"NoiseSchedule(T={self.T}, beta=[{self.betas[0]:.2e} … {self.betas[-1]:.2e}], "
                f"alpha_bar[T-1]={self.alpha_bars[-1]:.2e})")


def linear(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """β_t linear from ``beta_start`` to ``beta_end``: Ho et al. (2020), §4 (T = 1000, 1e-4 … 0.02)."""
    _check_T(T)
    return NoiseSchedule(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))


def from_alpha_bar(f: Callable[[float], float], T: int, max_beta: float = 0.999) -> NoiseSchedule:
    """Discretise a continuous ᾱ(τ), τ ∈ [0, 1]: β_t = 1 − ᾱ((t+1)/T) / ᾱ(t/T), clipped at ``max_beta``.

    Nichol & Dhariwal (2021), Eq. 17 and the clipping that follows it (β ≤ 0.999 avoids a singular end).
    """
    _check_T(T)
    betas = [min(1 - f((t + 1) / T) / f(t / T), max_beta) for t in range(T)]
    return NoiseSchedule(torch.tensor(betas, dtype=torch.float64))


def cosine(T: int = 1000, s: float = 0.008) -> NoiseSchedule:
    """ᾱ(τ) = cos²(π/2 · (τ + s)/(1 + s)) / cos²(π/2 · s/(1 + s)): Nichol & Dhariwal (2021), Eq. 17."""
    f = lambda tau: math.cos((tau + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return from_alpha_bar(lambda tau: f(tau) / f(0.0), T)


def sigmoid(T: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> NoiseSchedule:
    """ᾱ(τ) = (σ(end/τ') − σ((τ(end − start) + start)/τ')) / (σ(end/τ') − σ(start/τ')), τ' = ``tau``.

    Chen (2023), "On the importance of noise scheduling for diffusion models", Algorithm 1 (sigmoid_schedule).
    """
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    v_start, v_end = sig(start / tau), sig(end / tau)
    return from_alpha_bar(lambda u: (v_end - sig((u * (end - start) + start) / tau)) / (v_end - v_start), T)


SCHEDULES = {"linear": linear, "cosine": cosine, "sigmoid": sigmoid}


def get_schedule(name: str, T: int = 1000, **kwargs) -> NoiseSchedule:
    """Build a schedule by name (for checkpoints and configs): one of ``SCHEDULES``."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule name must be one of {sorted(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name](T, **kwargs)


def _check_T(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
