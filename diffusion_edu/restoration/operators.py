"""Linear measurements y = A x + σ_y n of an image x: masks, down-sampling and blur (chapter 08).

An image (C, H, W) is a vector of D = C·H·W pixels and every operator here is a dense matrix A of shape (m, D).
At the course's sizes (8×8 digits: D = 64; 16×16: D = 256) a dense matrix is the simplest honest choice: A x,
Aᵀ y, the pseudo-inverse A⁺ and the SVD A = U diag(s) Vᵀ are each one line of linear algebra, the same for
every operator, and the exact Gaussian posterior of ``exact.Gaussian.posterior`` needs the matrix anyway.

========================  ============================================  ===============================
operator                  A                                             m
========================  ============================================  ===============================
``mask(keep)``            the rows of the identity at kept pixels       kept pixels
``centre_block``          ``mask`` without a centred square              D − block²
``half``                  ``mask`` without the right (or lower) half     D / 2
``random_pixels``         ``mask`` keeping a random share                round(share · D)
``downsample(f)``         f×f average pooling (the SR3 / DDRM task)      D / f²
``blur(width)``           convolution with a Gaussian, zero padding      D
========================  ============================================  ===============================
"""
from __future__ import annotations

import math
from functools import cached_property

import torch
from torch import Tensor

from ..forward import check_batch


class LinearOperator:
    """A linear measurement of images of shape ``image_shape``: ``A(x)`` = A x for a batch x (B, *image_shape).

    ``matrix`` is A, (m, D) in float64. ``keep`` is the pixel mask (1, *image_shape) of a masking operator
    (None otherwise): RePaint's merge m ⊙ known + (1 − m) ⊙ unknown is ``project`` for such an A.
    """

    def __init__(self, matrix: Tensor, image_shape: tuple[int, ...], name: str, keep: Tensor | None = None):
        self.matrix = torch.as_tensor(matrix, dtype=torch.float64)
        self.image_shape, self.name, self.keep = tuple(image_shape), name, keep
        D = math.prod(self.image_shape)
        if self.matrix.ndim != 2 or self.matrix.shape[1] != D:
            raise ValueError(f"matrix must have shape (m, {D}) for images {self.image_shape}, "
                             f"got {tuple(self.matrix.shape)}")

    @property
    def m(self) -> int:
        """The number of measurements."""
        return self.matrix.shape[0]

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def __call__(self, x: Tensor) -> Tensor:
        """A x: (B, *image_shape) → (B, m)."""
        return self._flat(x, "x") @ self.matrix.to(x).T

    def adjoint(self, y: Tensor) -> Tensor:
        """Aᵀ y: (B, m) → (B, *image_shape)."""
        return (self.check_measurement(y) @ self.matrix.to(y)).reshape(-1, *self.image_shape)

    def pinv(self, y: Tensor) -> Tensor:
        """A⁺ y, the least-norm x with A x = y (the Moore–Penrose pseudo-inverse): (B, m) → (B, *image_shape)."""
        return (self.check_measurement(y) @ self.pinv_matrix.to(y).T).reshape(-1, *self.image_shape)

    def project(self, x: Tensor, y: Tensor) -> Tensor:
        """(I − A⁺A) x + A⁺ y: x with its measured part replaced by y's (Wang et al. 2023, Eq. 11).

        For a mask, A⁺A = diag(m), so this is RePaint's merge m ⊙ y_image + (1 − m) ⊙ x (Lugmayr et al. 2022, Eq. 8).
        """
        return x - self.pinv(self(x)) + self.pinv(y)

    def measure(self, x: Tensor, sigma_y: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """y = A x + σ_y n, n ~ N(0, I): the measurement of a batch of true images, (B, m)."""
        if sigma_y < 0:
            raise ValueError(f"sigma_y must be ≥ 0 (the measurement noise's standard deviation), got {sigma_y}")
        y = self(x)
        return y + sigma_y * torch.randn(y.shape, generator=generator, dtype=y.dtype) if sigma_y > 0 else y

    def image(self, y: Tensor, fill: float = 0.0) -> Tensor:
        """y as a learner should see it, (B, *image_shape): a mask's kept pixels (``fill`` where missing), a blur's
        output as it is, a down-sampled image up-sampled nearest-neighbour (Aᵀ y over A's column sums)."""
        y = self.check_measurement(y)
        if self.keep is not None:
            return self.pinv(y) + fill * (1 - self.keep.to(y))
        if self.m == self.dim:
            return y.reshape(-1, *self.image_shape)
        A = self.matrix.to(y)
        return (y @ A / A.sum(0)).reshape(-1, *self.image_shape)

    @cached_property
    def pinv_matrix(self) -> Tensor:
        return torch.linalg.pinv(self.matrix)  # (D, m)

    @cached_property
    def svd(self) -> tuple[Tensor, Tensor, Tensor]:
        """A = U diag(s) Vᵀ: U (m, m), s (m,) descending, V (D, D) (its first m columns pair with s)."""
        U, s, Vh = torch.linalg.svd(self.matrix, full_matrices=True)
        return U, s, Vh.T

    def check_measurement(self, y: Tensor) -> Tensor:
        check_batch(y, "y")
        if y.ndim != 2 or y.shape[1] != self.m:
            raise ValueError(f"y must be a measurement of {self.name}, shape (B, {self.m}); got {tuple(y.shape)}. "
                             "Measure with op(x) or op.measure(x, sigma_y)")
        return y

    def _flat(self, x: Tensor, name: str) -> Tensor:
        check_batch(x, name)
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"{name} must be a batch of images of shape (B, {', '.join(map(str, self.image_shape))}) "
                             f"for {self.name}, got {tuple(x.shape)}")
        return x.reshape(len(x), -1)

    def __repr__(self) -> str:
        return f"{self.name}: {self.dim} pixels → {self.m} measurements"


# ---------------------------------------------------------------------------------------------- masks

def mask(keep: Tensor, name: str = "mask") -> LinearOperator:
    """Keep the pixels where ``keep`` is 1 (a 0/1 tensor of one image's shape, (C, H, W))."""
    keep = torch.as_tensor(keep)
    if keep.ndim != 3:
        raise ValueError(f"keep must be one image's mask of shape (C, H, W), got {tuple(keep.shape)}")
    if not ((keep == 0) | (keep == 1)).all() or keep.sum() == 0:
        raise ValueError("keep must hold 0 (missing) and 1 (kept) only, with at least one pixel kept")
    rows = torch.eye(keep.numel(), dtype=torch.float64)[keep.reshape(-1).bool()]
    return LinearOperator(rows, tuple(keep.shape), name, keep=keep.to(torch.float64)[None])


def centre_block(size: int = 8, block: int = 4, channels: int = 1) -> LinearOperator:
    """A mask missing the centred block×block square (inpainting)."""
    if not 0 < block < size:
        raise ValueError(f"block must be in (0, size={size}), got {block}")
    keep = torch.ones(channels, size, size)
    lo = (size - block) // 2
    keep[:, lo:lo + block, lo:lo + block] = 0
    return mask(keep, f"centre {block}×{block} block missing")


def half(size: int = 8, side: str = "right", channels: int = 1) -> LinearOperator:
    """A mask missing the right (or ``side="bottom"``) half of the image."""
    keep = torch.ones(channels, size, size)
    if side == "right":
        keep[:, :, size // 2:] = 0
    elif side == "bottom":
        keep[:, size // 2:, :] = 0
    else:
        raise ValueError(f"side must be 'right' or 'bottom', got {side!r}")
    return mask(keep, f"{side} half missing")


def random_pixels(size: int = 8, share: float = 0.25, seed: int = 0, channels: int = 1) -> LinearOperator:
    """A mask keeping round(share·H·W) pixels chosen at random (seeded), the same in every channel."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1] (the share of pixels kept), got {share}")
    g = torch.Generator().manual_seed(seed)
    n = max(1, round(share * size * size))
    keep = torch.zeros(size * size)
    keep[torch.randperm(size * size, generator=g)[:n]] = 1
    return mask(keep.reshape(1, size, size).expand(channels, -1, -1).clone(), f"{n} random pixels kept")


# ----------------------------------------------------------------------------------- resampling, blur

def downsample(size: int = 8, factor: int = 2, channels: int = 1) -> LinearOperator:
    """factor×factor average pooling: (C, size, size) → (C, size/factor, size/factor) (super-resolution)."""
    if factor < 1 or size % factor:
        raise ValueError(f"factor must be a positive divisor of size={size}, got {factor}")
    eye = torch.eye(channels * size * size, dtype=torch.float64).reshape(-1, channels, size, size)
    A = torch.nn.functional.avg_pool2d(eye, factor).reshape(channels * size * size, -1).T  # (m, D)
    return LinearOperator(A, (channels, size, size), f"{factor}× average down-sampling")


def blur(size: int = 8, width: float = 1.0, radius: int | None = None, channels: int = 1) -> LinearOperator:
    """Convolution with a normalised Gaussian of standard deviation ``width`` pixels (zero padding, so edge pixels
    lose light), truncated at ``radius`` (default ⌈2·width⌉)."""
    if width <= 0:
        raise ValueError(f"width must be > 0 (the Gaussian's standard deviation in pixels), got {width}")
    radius = math.ceil(2 * width) if radius is None else radius
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k1 = torch.exp(-0.5 * (r / width) ** 2)
    kernel = (k1[:, None] * k1[None]) / k1.sum() ** 2  # (2r + 1, 2r + 1), sums to 1
    eye = torch.eye(channels * size * size, dtype=torch.float64).reshape(-1, channels, size, size)
    weight = kernel.expand(channels, 1, -1, -1)
    A = torch.nn.functional.conv2d(eye, weight, padding=radius, groups=channels).reshape(channels * size * size, -1).T
    return LinearOperator(A, (channels, size, size), f"Gaussian blur (width {width:g} px)")
