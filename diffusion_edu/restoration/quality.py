"""Figures of merit of a restoration, each with the value a perfect one reaches (chapter 08).

- ``psnr`` and ``ssim`` against the truth, on the restored region (a mask's missing pixels, else all): higher
  is better, but the posterior *mean* maximises PSNR, so a sharp posterior sample scores lower than a blur.
- ``consistency``: ‖y − A x̂‖ per restoration; the truth itself scores σ_y√m on average.
- ``coverage``: the share of true pixels inside the samples' central 90 % interval; 0.90 if calibrated.
- ``diversity``: the pixel standard deviation across samples of one y; the posterior's own is the target.
- ``posterior_errors``: samples' mean and covariance against an exact Gaussian posterior (``exact.Gaussian``).
"""
from __future__ import annotations


import torch
from torch import Tensor
from torch.nn import functional as F

from .operators import LinearOperator


def region(op: LinearOperator) -> Tensor:
    """The pixels a restoration must make up, (1, *image_shape) of 0/1: a mask's missing ones, else every pixel."""
    return 1 - op.keep if op.keep is not None else torch.ones(1, *op.image_shape, dtype=torch.float64)


def psnr(x: Tensor, truth: Tensor, where: Tensor | None = None, data_range: float = 2.0) -> Tensor:
    """10 log₁₀(range² / MSE) per image over the pixels where ``where`` is 1 (data in [−1, 1]: range 2). (B,)."""
    w = torch.ones_like(truth[:1]) if where is None else where.to(truth)
    mse = (((x - truth) ** 2) * w).flatten(1).sum(1) / w.sum()
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def ssim(x: Tensor, truth: Tensor, where: Tensor | None = None, data_range: float = 2.0,
         width: float = 1.5, radius: int = 2) -> Tensor:
    """Structural similarity, Wang et al. (2004), Eq. 13 with their Gaussian window (σ = 1.5 px) cut at ``radius``
    to fit 8×8 images and reflect padding, averaged over ``where``. (B,); 1 for identical images."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2  # Wang et al.'s K₁ = 0.01, K₂ = 0.03
    r = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (r / width) ** 2)
    k = (k[:, None] * k[None] / k.sum() ** 2).expand(x.shape[1], 1, -1, -1)
    blur = lambda z: F.conv2d(F.pad(z, [radius] * 4, mode="reflect"), k, groups=x.shape[1])  # noqa: E731
    mx, my = blur(x), blur(truth)
    vx, vy, cxy = blur(x * x) - mx**2, blur(truth * truth) - my**2, blur(x * truth) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))  # (B, C, H, W)
    w = torch.ones_like(truth[:1]) if where is None else where.to(truth)
    return (s * w).flatten(1).sum(1) / w.sum()


def consistency(x: Tensor, y: Tensor, op: LinearOperator) -> Tensor:
    """‖y − A x‖ per restoration, (B,): compare with σ_y√m, the truth's own on average."""
    return torch.linalg.vector_norm(y - op(x), dim=1)


def coverage(samples: Tensor, truth: Tensor, where: Tensor | None = None, level: float = 0.9) -> float:
    """Share of true pixels inside the samples' central ``level`` interval. ``samples`` (S, B, …): S samples of
    each of B restorations; ``truth`` (B, …). A calibrated posterior gives ``level``."""
    lo, hi = torch.quantile(samples.double(), torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64), dim=0)
    inside = ((truth >= lo) & (truth <= hi)).double()
    w = (torch.ones_like(truth[:1]) if where is None else where.to(truth)).double().expand_as(inside)
    return float((inside * w).sum() / w.sum())


def diversity(samples: Tensor, where: Tensor | None = None) -> float:
    """Mean pixel standard deviation across the S samples of each restoration, (S, B, …) → a number."""
    std = samples.double().std(dim=0)
    w = (torch.ones_like(std[:1]) if where is None else where.double()).expand_as(std)
    return float((std * w).sum() / w.sum())


def posterior_errors(samples: Tensor, mean: Tensor, cov: Tensor) -> tuple[float, float]:
    """(mean error, covariance error) of samples (N, …) of one posterior N(m, C): ‖m̂ − m‖/√tr C, the mean's
    miss in units of the posterior's spread, and ‖Ĉ − C‖_F/‖C‖_F. n exact samples score about
    (√(D/n)·…, √(((tr C)² + ‖C‖²_F)/n)/‖C‖_F): compare with ``posterior_floor``."""
    f = samples.reshape(len(samples), -1).double()
    m_hat, c_hat = f.mean(0), torch.cov(f.T)
    return (float((m_hat - mean.reshape(-1).double()).norm() / cov.trace().sqrt()),
            float((c_hat - cov).norm() / cov.norm()))


def posterior_floor(mean: Tensor, cov: Tensor, n: int, draws: int = 5, seed: int = 0) -> tuple[float, float]:
    """``posterior_errors`` of n exact draws from N(m, C), a mean over ``draws``: what a perfect solver scores."""
    g = torch.Generator().manual_seed(seed)
    lam, Q = torch.linalg.eigh(cov.double())
    root = Q * lam.clamp_min(0).sqrt()
    errs = [posterior_errors(mean.reshape(-1).double() + torch.randn(n, len(lam), generator=g, dtype=torch.float64) @ root.T,
                             mean, cov) for _ in range(draws)]
    return tuple(sum(e[i] for e in errs) / draws for i in range(2))
