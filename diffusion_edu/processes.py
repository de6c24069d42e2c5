"""Gaussian paths in continuous time: x_t = α(t) x₀ + σ(t) ε, t ∈ [0, 1] (chapters 06 and 07).

Every diffusion of the course is one of these, told apart only by α(t) and σ(t):

============  =================================  ==================================  =====================
path          α(t)                               σ(t)                                source
============  =================================  ==================================  =====================
``vp``        exp(−½ B(t)), B = ∫₀ᵗ β            √(1 − α²)                           Song et al. 2021, Eq. 11
``cosine_vp`` cos(π/2 (t+s)/(1+s)) / cos(…s…)    √(1 − α²)                           Nichol & Dhariwal 2021
``sub_vp``    exp(−½ B(t))                       1 − α²                              Song et al. 2021, Eq. 12
``ve``        1                                  σ_min (σ_max/σ_min)ᵗ                Song et al. 2021, Eq. 9
``rectified`` 1 − t                              t                                   Liu et al. 2022; Lipman 2023
``from_schedule`` √ᾱ, log-linear between steps   √(1 − α²)                           chapter 01's discrete ᾱ
============  =================================  ==================================  =====================

From α and σ follow the log-SNR λ = log(α/σ) (Kingma et al. 2021), and the SDE dx = f(t) x dt + g(t) dw whose
marginals are the path: f = α′/α and g² = (σ²)′ − 2 f σ² (Kingma et al. 2021, Appendix; Song et al. 2021,
Eq. 5). The probability-flow ODE and the reverse SDE (chapter 06) need only f, g² and the score.

Discrete schedules and paths are two views of one process: ``schedules.from_path(path, T)`` is the
``NoiseSchedule`` with ᾱ_k = α(t_k)², t_k = (k + 1)/T, and ``from_schedule(schedule)`` the path through its ᾱ grid.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor



class Coefficients(NamedTuple):
    """α, σ (and α′, σ′ where the path is continuous) at a batch of times, each shaped to broadcast with x."""

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor | None = None
    d_sigma: Tensor | None = None


class GaussianPath:
    """x_t = α(t) x₀ + σ(t) ε. Subclasses define ``alpha``, ``sigma`` and their derivatives; t ∈ [t_min, 1]."""

    name = "path"
    t_min = 1e-3  # training and sampling stop here: at σ → 0 the score −ε/σ blows up (Song et al. 2021, App. C)

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def lam(self, t: Tensor) -> Tensor:
        """λ(t) = log(α/σ), the log signal-to-noise ratio (Kingma et al. 2021)."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def snr(self, t: Tensor) -> Tensor:
        """SNR(t) = α²/σ² = exp(2λ)."""
        return (self.alpha(t) / self.sigma(t)) ** 2

    def drift(self, t: Tensor) -> Tensor:
        """f(t) = α′/α: the forward SDE is dx = f x dt + g dw."""
        return self.d_alpha(t) / self.alpha(t)

    def diffusion2(self, t: Tensor) -> Tensor:
        """g(t)² = (σ²)′ − 2 f σ² = 2σσ′ − 2(α′/α)σ²: the SDE's squared diffusion coefficient."""
        s = self.sigma(t)
        return 2 * s * self.d_sigma(t) - 2 * self.drift(t) * s**2

    def coefficients(self, t: Tensor, like: Tensor) -> Coefficients:
        """α, σ, α′, σ′ at times ``t`` (B,), shaped (B, 1, …) to broadcast against ``like`` (B, …)."""
        t = check_times(t, like.shape[0]).to(like.device, torch.float64)
        shape = (-1,) + (1,) * (like.ndim - 1)
        return Coefficients(*(f(t).reshape(shape).to(like.dtype)
                              for f in (self.alpha, self.sigma, self.d_alpha, self.d_sigma)))

    def sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(x_t, ε) with x_t = α(t) x₀ + σ(t) ε: the forward process in one line."""
        noise = torch.randn_like(x0) if noise is None else noise
        c = self.coefficients(t, x0)
        return c.alpha * x0 + c.sigma * noise, noise

    def sample_times(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n training times, uniform on [t_min, 1] (float64, on the CPU)."""
        return self.t_min + (1 - self.t_min) * torch.rand(n, generator=generator, dtype=torch.float64)

    def t_of_lam(self, lam: Tensor, iterations: int = 60) -> Tensor:
        """The t with λ(t) = ``lam``, by bisection (λ decreases in t on every path here)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo, hi = torch.zeros_like(lam), torch.ones_like(lam)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            later = self.lam(mid.clamp(1e-12, 1 - 1e-12)) > lam  # λ(mid) still too high: t lies later
            lo, hi = torch.where(later, mid, lo), torch.where(later, hi, mid)
        return (lo + hi) / 2

    params: tuple[str, ...] = ()  # the constructor's arguments, for ``repr`` and ``describe``

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)}' for k in self.params)})"


class VP(GaussianPath):
    """Variance preserving, β(t) linear from β_min to β_max: DDPM's continuous limit (Song et al. 2021, Eq. 11)."""

    name, params = "vp", ("beta_min", "beta_max")

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 < beta_min < beta_max:
            raise ValueError(f"need 0 < beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t: Tensor) -> Tensor:
        """B(t) = ∫₀ᵗ β(s) ds."""
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)

    def alpha(self, t):
        return torch.exp(-0.5 * self.integral(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(-self.integral(t)))  # √(1 − α²), accurate near t = 0

    def d_alpha(self, t):
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t):
        return 0.5 * self.beta(t) * self.alpha(t) ** 2 / self.sigma(t)



class SubVP(VP):
    """Sub-VP: α as VP, σ = 1 − α², whose variance stays below VP's (Song et al. 2021, Eq. 12)."""

    name = "sub_vp"  # params: VP's

    def sigma(self, t):
        return -torch.expm1(-self.integral(t))

    def d_sigma(self, t):
        return self.beta(t) * self.alpha(t) ** 2



class CosineVP(GaussianPath):
    """Variance preserving with α(t) = cos(π/2 (t+s)/(1+s)) / cos(π/2 s/(1+s)) (Nichol & Dhariwal 2021, Eq. 17)."""

    name, params = "cosine_vp", ("s",)

    def __init__(self, s: float = 0.008, t_max: float = 0.9946):
        self.s, self.t_max = s, t_max  # t_max: α(1) = 0 exactly, so 1 maps to t_max, where α ≈ 0.0085 (β ≤ 0.999)

    def _phase(self, t):
        return math.pi / 2 * (t * self.t_max + self.s) / (1 + self.s)

    def alpha(self, t):
        return torch.cos(self._phase(t)) / math.cos(math.pi / 2 * self.s / (1 + self.s))

    def sigma(self, t):
        return torch.sqrt(1 - self.alpha(t) ** 2)

    def d_alpha(self, t):
        rate = math.pi / 2 * self.t_max / (1 + self.s)
        return -rate * torch.sin(self._phase(t)) / math.cos(math.pi / 2 * self.s / (1 + self.s))

    def d_sigma(self, t):
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)


class VE(GaussianPath):
    """Variance exploding: α = 1, σ(t) = σ_min (σ_max/σ_min)ᵗ (Song et al. 2021, Eq. 9; SMLD's geometric σ's)."""

    name, params = "ve", ("sigma_min", "sigma_max")

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.t_min = 0.0  # σ(0) = σ_min > 0 already

    def alpha(self, t):
        return torch.ones_like(t)

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def d_alpha(self, t):
        return torch.zeros_like(t)

    def d_sigma(self, t):
        return self.sigma(t) * math.log(self.sigma_max / self.sigma_min)



class Rectified(GaussianPath):
    """The straight path α = 1 − t, σ = t of rectified flow and conditional OT flow matching (chapter 07).

    Liu et al. (2022), Eq. 1; Lipman et al. (2023), Eq. 20 with σ_min = 0.
    """

    name = "rectified"
    t_min = 0.0

    def alpha(self, t):
        return 1 - t

    def sigma(self, t):
        return t

    def d_alpha(self, t):
        return -torch.ones_like(t)

    def d_sigma(self, t):
        return torch.ones_like(t)


class FromSchedule(GaussianPath):
    """The VP path through a discrete schedule's ᾱ: α(t_k)² = ᾱ_k at t_k = (k + 1)/T, log ᾱ linear between."""

    name = "from_schedule"

    def __init__(self, schedule):  # a schedules.NoiseSchedule
        self.schedule = schedule
        self.log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), schedule.alpha_bars.log()])  # at k/T

    def _log_abar(self, t):
        T = self.schedule.T
        u = (t * T).clamp(0, T)
        k = u.floor().clamp(max=T - 1).long()
        return torch.lerp(self.log_abar[k], self.log_abar[k + 1], (u - k).to(self.log_abar.dtype))

    def alpha(self, t):
        return torch.exp(0.5 * self._log_abar(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(self._log_abar(t)))

    def d_alpha(self, t):
        T = self.schedule.T
        k = (t * T).clamp(0, T).floor().clamp(max=T - 1).long()
        slope = (self.log_abar[k + 1] - self.log_abar[k]) * T  # d log ᾱ / dt on this piece
        return 0.5 * slope * self.alpha(t)

    def d_sigma(self, t):
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def __repr__(self):
        return f"FromSchedule({self.schedule!r})"


def vp(beta_min: float = 0.1, beta_max: float = 20.0) -> VP:
    return VP(beta_min, beta_max)


def sub_vp(beta_min: float = 0.1, beta_max: float = 20.0) -> SubVP:
    return SubVP(beta_min, beta_max)


def cosine_vp(s: float = 0.008) -> CosineVP:
    return CosineVP(s)


def ve(sigma_min: float = 0.01, sigma_max: float = 50.0) -> VE:
    return VE(sigma_min, sigma_max)


def rectified() -> Rectified:
    return Rectified()


def from_schedule(schedule) -> FromSchedule:
    return FromSchedule(schedule)


PATHS = {"vp": VP, "sub_vp": SubVP, "cosine_vp": CosineVP, "ve": VE, "rectified": Rectified}


def build(spec: dict) -> GaussianPath:
    """A path from its stored description, ``{"name": "ve", "sigma_max": 20.0}`` (checkpoint manifests)."""
    args = {k: v for k, v in spec.items() if k != "name"}
    if spec.get("name") not in PATHS:
        raise ValueError(f"path name must be one of {sorted(PATHS)}, got {spec.get('name')!r}")
    return PATHS[spec["name"]](**args)


def describe(path: GaussianPath) -> dict:
    """The inverse of ``build``: the name and constructor arguments of a path."""
    if path.name not in PATHS:
        raise ValueError(f"only the paths of {sorted(PATHS)} can be stored, got {path!r}")
    return dict(name=path.name, **{k: getattr(path, k) for k in path.params})


def check_times(t, batch: int) -> Tensor:
    """t as a float tensor of shape (batch,), each in [0, 1]; a scalar is broadcast."""
    t = torch.as_tensor(t)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must be real times in [0, 1], got dtype {t.dtype}")
    if t.ndim == 0 or t.shape == (1,):
        t = t.reshape(1).expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must be a scalar or have shape ({batch},), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"t must be float times in [0, 1] on a continuous path, got integer dtype {t.dtype} "
                        "(integer steps belong to a discrete NoiseSchedule)")
    if (t < 0).any() or (t > 1).any():
        raise ValueError(f"t must lie in [0, 1], got values in [{float(t.min()):.4g}, {float(t.max()):.4g}]")
    return t
