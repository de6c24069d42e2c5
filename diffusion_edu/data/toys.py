"""2-D toy data sets (chapters 02, 04, 06, 07): swiss roll, moons, eight Gaussians, checkerboard, rings.

Toys are float32 (n, 2), centred, and scaled isotropically (shapes are kept: circles stay circles) so that the
mean per-coordinate variance is about 1 — the scale the noise ε ~ N(0, I) of every schedule assumes.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# ---------------------------------------------------------------------------------------------- 2-D toys

TOY2D = ("swiss_roll", "moons", "eight_gaussians", "checkerboard", "rings")

EIGHT_GAUSSIANS_STD = 0.1
# Centres at angles 2πk/8: each coordinate has variance R²/2 + s², so this radius (≈ 1.407) makes it exactly 1.
EIGHT_GAUSSIANS_RADIUS = math.sqrt(2 * (1 - EIGHT_GAUSSIANS_STD**2))


def toy2d(name: str, n: int = 1000, seed: int = 0) -> Tensor:
    """``n`` i.i.d. points, shape (n, 2), float32, from the 2-D toy ``name`` (one of ``TOY2D``).

    The same ``seed`` gives the same points; different seeds give independent draws.
    """
    if name not in TOY2D:
        raise ValueError(f"name must be one of {list(TOY2D)}, got {name!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    sampler = {"swiss_roll": _swiss_roll, "moons": _moons, "eight_gaussians": _eight_gaussians,
               "checkerboard": _checkerboard, "rings": _rings}[name]
    return sampler(n, g).float()


def _swiss_roll(n: int, g: torch.Generator) -> Tensor:
    """Spiral (t cos t, t sin t), t ~ U(1.5π, 4.5π), plus N(0, 0.5²) noise, as in sklearn.make_swiss_roll."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1) + 0.5 * _randn(n, g)
    # E[x] = (2, 2/(3π)) exactly; 6.8 is the RMS per-coordinate std (measured on 10⁷ points).
    return (x - torch.tensor([2.0, 2 / (3 * math.pi)], dtype=torch.float64)) / 6.8


def _moons(n: int, g: torch.Generator) -> Tensor:
    """Two interleaved half circles plus N(0, 0.1²) noise, as in sklearn.make_moons."""
    theta = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper[:, None], torch.stack([theta.cos(), theta.sin()], dim=1),
                    torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)) + 0.1 * _randn(n, g)
    # E[x] = (0.5, 0.25) exactly; 0.71 is the RMS per-coordinate std (measured on 10⁷ points).
    return (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) / 0.71


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    """Equal mixture of N(c_k, s² I), centres c_k = R (cos 2πk/8, sin 2πk/8): the constants above."""
    angle = 2 * math.pi / 8 * torch.randint(8, (n,), generator=g, dtype=torch.float64)
    centres = EIGHT_GAUSSIANS_RADIUS * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centres + EIGHT_GAUSSIANS_STD * _randn(n, g)


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    """Uniform on the 8 dark cells of a 4×4 board on [−√3, √3]², so each marginal is U(−√3, √3): std 1."""
    col = torch.randint(4, (n,), generator=g)
    row = 2 * torch.randint(2, (n,), generator=g) + col % 2  # dark cells: row + col even
    x = torch.stack([col, row], dim=1) + torch.rand(n, 2, generator=g, dtype=torch.float64)  # in [0, 4)²
    return (x - 2) * (math.sqrt(3) / 2)


def _rings(n: int, g: torch.Generator) -> Tensor:
    """Four concentric circles of radii k·a (k = 1…4, equally likely) plus N(0, 0.08²) noise."""
    noise = 0.08
    a = math.sqrt((1 - noise**2) / 3.75)  # per-coordinate variance E[r²]/2 + noise² = 3.75 a² + noise² = 1
    radius = a * (1 + torch.randint(4, (n,), generator=g, dtype=torch.float64))
    angle = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    return radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1) + noise * _randn(n, g)


def _randn(n: int, g: torch.Generator) -> Tensor:
    return torch.randn(n, 2, generator=g, dtype=torch.float64)
