"""Time grids for the continuous-time samplers (chapters 06 and 07): uniform in t, and Karras et al.'s in σ.

A grid falls from the start (t = 1, noise) to the end (t_min or 0, data); chapter 04's discrete grids (the
"trailing" ᾱ grid) live in ``samplers.discrete``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .processes import GaussianPath


def uniform_times(steps: int, t_min: float = 0.0, t_max: float = 1.0) -> Tensor:
    """steps + 1 times from t_max down to t_min, equally spaced: the grid of Euler–Maruyama and flow samplers."""
    _check_steps(steps)
    return torch.linspace(t_max, t_min, steps + 1, dtype=torch.float64)


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """σ_i = (σ_max^{1/ρ} + i/(N−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, then σ_N = 0: Karras et al. (2022), Eq. 5.

    These are σ's of x/α = x₀ + σε (chapter 04's σ-space); ``karras_times`` maps them onto a path.
    """
    _check_steps(steps)
    i = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
    sig = (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sig, torch.zeros(1, dtype=torch.float64)])


def karras_times(path: GaussianPath, steps: int, rho: float = 7.0) -> Tensor:
    """Karras's grid on ``path``: steps + 1 times from 1 to t_min whose σ/α are spaced as Eq. 5 (ρ = 7)."""
    ends = torch.tensor([1.0, max(path.t_min, 1e-5)], dtype=torch.float64)
    hi, lo = (path.sigma(ends) / path.alpha(ends)).tolist()
    sig = karras_sigmas(steps + 1, lo, hi, rho)[:-1]  # steps + 1 σ's from hi down to lo
    t = path.t_of_lam(-torch.log(sig)).clamp(ends[1], 1.0)  # λ = −log(σ/α)
    t[0], t[-1] = 1.0, ends[1]  # exactly the ends, not bisection's 1e-18 from them
    return t


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
