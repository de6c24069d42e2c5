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

from .processes import Coefficients, GaussianPath


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

    def coefficients(self, t, like: Tensor) -> Coefficients:
        """α = √ᾱ_t and σ = √(1 − ᾱ_t) at integer steps t, shaped (B, 1, …) to broadcast against ``like``.

        The discrete view of a Gaussian path (``processes``); it has no α′, σ′ (no velocity, no SDE).
        """
        t = check_timesteps(t, self.T, like.shape[0]).cpu()
        abar = self.alpha_bars[t].reshape(-1, *([1] * (like.ndim - 1)))
        return Coefficients(*(c.to(device=like.device, dtype=like.dtype) for c in (abar.sqrt(), (1 - abar).sqrt())))

    def sample_times(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n training steps, uniform on {0, …, T − 1} (Ho et al. 2020, Algorithm 1)."""
        return torch.randint(0, self.T, (n,), generator=generator)

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


def from_path(path: GaussianPath, T: int = 1000) -> NoiseSchedule:
    """A continuous path seen on T steps: ᾱ_k = α(t_k)²/(α(t_k)² + σ(t_k)²), t_k = (k + 1)/T (chapter 07).

    On a variance-preserving path that is α(t_k)²; otherwise it is the ᾱ of x_t/√(α² + σ²), which has the same
    x₀ and ε (a flow-matching model then runs under chapter 04's samplers, ``parameterisations.on_schedule``).
    """
    _check_T(T)
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    a2, s2 = path.alpha(t) ** 2, path.sigma(t) ** 2
    abar = (a2 / (a2 + s2)).clamp(min=1e-12)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return NoiseSchedule((1 - abar / prev).clamp(1e-12, 0.999))


SCHEDULES = {"linear": linear, "cosine": cosine, "sigmoid": sigmoid}


def get_schedule(name: str, T: int = 1000, **kwargs) -> NoiseSchedule:
    """Build a schedule by name (for checkpoints and configs): one of ``SCHEDULES``."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule name must be one of {sorted(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name](T, **kwargs)


def check_timesteps(t, T: int, batch: int) -> Tensor:
    """Return ``t`` as a long tensor of shape (batch,), or raise if it is not an integer in [0, T − 1]."""
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps, got dtype {t.dtype}")
    if t.ndim > 1 or (t.ndim == 1 and len(t) not in (1, batch)):
        raise ValueError(f"t must be a scalar or have shape ({batch},), got shape {tuple(t.shape)}")
    if t.numel() and (t.min() < 0 or t.max() >= T):
        raise ValueError(f"t must be in [0, {T - 1}], got values in [{int(t.min())}, {int(t.max())}]")
    return t.long().expand(batch) if t.ndim == 0 or len(t) == 1 else t.long()


def _check_T(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
