"""Distances between two sets of samples, for judging a sampler against real data (chapter 02 and the evaluation
chapters).

A distance between two finite samples is never 0, even when both come from the same distribution: it has a
noise floor that shrinks with the sample size. So every number in the course is quoted as a ratio to
``real_floor``, the same metric between two fresh real samples of the same size (a ratio near 1 means
"as good as real data can tell at this n").

Inputs are (N, …) tensors or arrays, flattened to (N, D); all arithmetic is float64 on the device of ``a``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

Samples = Tensor | np.ndarray  # (N, …), batch first


def sliced_wasserstein(a: Samples, b: Samples, n_projections: int = 512, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance SW₂ = (E_θ W₂²(θᵀa, θᵀb))^½, θ uniform on the unit sphere.

    Rabin et al. (2011), "Wasserstein barycenter and its application to texture mixing"; Bonneel et al. (2015),
    "Sliced and Radon Wasserstein barycenters of measures". The expectation is a mean over
    ``n_projections`` directions drawn from ``seed`` (so two calls agree); each 1-D W₂ is exact (``_w2_squared_1d``).
    """
    a, b = _pair(a, b)
    if n_projections < 1:
        raise ValueError(f"n_projections must be at least 1, got {n_projections}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n_projections, a.shape[1], generator=g, dtype=torch.float64).to(a.device)
    theta = theta / theta.norm(dim=1, keepdim=True)  # (P, D): a normalised Gaussian is uniform on the sphere
    return _w2_squared_1d(a @ theta.T, b @ theta.T).mean().sqrt().item()


def _w2_squared_1d(pa: Tensor, pb: Tensor) -> Tensor:
    """W₂² = ∫₀¹ (F_a⁻¹(u) − F_b⁻¹(u))² du between the empirical laws of each column; (N, P), (M, P) → (P,)."""
    pa, pb = pa.sort(dim=0).values, pb.sort(dim=0).values
    if len(pa) == len(pb):  # both quantile functions step at i/N: match the i-th smallest with the i-th smallest
        return (pa - pb).square().mean(dim=0)
    # Otherwise both are constant between consecutive points of the merged grid {i/N} ∪ {j/M}: integrate exactly.
    n, m = len(pa), len(pb)
    grid = torch.cat([torch.arange(n + 1) * m, torch.arange(m + 1) * n]).unique().to(pa.device)  # in units 1/(NM)
    left, width = grid[:-1], (grid[1:] - grid[:-1]).to(torch.float64) / (n * m)
    return ((pa[left // m] - pb[left // n]).square() * width[:, None]).sum(dim=0)  # F⁻¹ at each piece, (K, P)


def mmd(a: Samples, b: Samples, bandwidths: Sequence[float] | None = None) -> float:
    """Squared maximum mean discrepancy, biased (V-statistic) estimate, so always ≥ 0.

    MMD² = mean k(a, a′) + mean k(b, b′) − 2 mean k(a, b) over all pairs, diagonal included: the biased
    statistic MMD_b² of Gretton et al. (2012), "A kernel two-sample test". The kernel is a sum of Gaussians,
    k(x, y) = Σ_h exp(−‖x − y‖² / (2h²)), one per bandwidth h; by default h = (0.5, 1, 2) × the median
    distance between points of the pooled sample a ∪ b (the paper's "median heuristic"; taken over at most
    2000 evenly spaced points). Cost: O((N + M)² D) time; memory is bounded by working in blocks of rows.
    """
    a, b = _pair(a, b)
    if bandwidths is None:
        bandwidths = [f * _median_distance(torch.cat([a, b])) for f in (0.5, 1.0, 2.0)]
    h = torch.as_tensor(bandwidths, dtype=torch.float64, device=a.device).reshape(-1)
    if len(h) == 0 or not (h > 0).all():
        raise ValueError(f"bandwidths must be positive, got {bandwidths}")
    k_aa, k_bb, k_ab = _mean_kernel(a, a, h), _mean_kernel(b, b, h), _mean_kernel(a, b, h)
    return max(k_aa + k_bb - 2 * k_ab, 0.0)  # ≥ 0 in exact arithmetic; clip rounding at the last digit


def _mean_kernel(x: Tensor, y: Tensor, h: Tensor, block_elems: int = 2**22) -> float:
    """Mean of k(x_i, y_j) over all pairs, a block of rows at a time (≈ 32 MB of distances per block)."""
    rows = max(1, block_elems // len(y))
    total = 0.0
    for start in range(0, len(x), rows):
        d2 = torch.cdist(x[start:start + rows], y).square()  # (rows, M)
        total += sum(torch.exp(-d2 / (2 * bandwidth**2)).sum().item() for bandwidth in h)
    return total / (len(x) * len(y))


def _median_distance(z: Tensor, max_points: int = 2000) -> float:
    """Median of ‖z_i − z_j‖, i < j, over at most ``max_points`` evenly spaced rows (enough for a stable median)."""
    if len(z) > max_points:
        z = z[torch.linspace(0, len(z) - 1, max_points, device=z.device).long()]
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    median = torch.cdist(z, z)[i, j].quantile(0.5).item()  # the usual median: mean of the middle two if even
    return median if median > 0 else 1.0  # all points equal: any bandwidth gives the same answer


def energy_distance(a: Samples, b: Samples) -> float:
    """Energy distance E = 2 E‖A − B‖ − E‖A − A′‖ − E‖B − B′‖ between the two empirical laws (chapter 07).

    Székely & Rizzo (2013), "Energy statistics", Eq. 2.1; E ≥ 0, and 0 only for equal laws. This is the
    V-statistic (every pair, diagonal included): the exact energy distance between the two empirical
    measures, so ≥ 0 like ``mmd``. It is MMD² with the kernel −‖x − y‖ (Sejdinovic et al. 2013).
    Cost O((N + M)² D), in blocks of rows.
    """
    a, b = _pair(a, b)
    return max(2 * _mean_distance(a, b) - _mean_distance(a, a) - _mean_distance(b, b), 0.0)


def _mean_distance(x: Tensor, y: Tensor, block_elems: int = 2**22) -> float:
    """Mean of ‖x_i − y_j‖ over all pairs, a block of rows at a time."""
    rows = max(1, block_elems // len(y))
    total = sum(torch.cdist(x[i:i + rows], y, compute_mode="donot_use_mm_for_euclid_dist").sum().item() for i in range(0, len(x), rows))
    return total / (len(x) * len(y))


def frechet_distance(feats_a: Samples, feats_b: Samples, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets: ‖μa − μb‖² + Tr(Σa + Σb − 2(Σa Σb)^½).

    Dowson & Landau (1982); the FID formula of Heusel et al. (2017), applied there to Inception features.
    Tr((Σa Σb)^½) = Σ √λ_i over the eigenvalues λ_i of the symmetric Σa^½ Σb Σa^½ (same spectrum, and
    ``eigh`` is stable); ``eps`` I is added to both covariances, so this is the exact distance between
    N(μa, Σa + εI) and N(μb, Σb + εI). Covariances are unbiased (1/(N − 1)), as in pytorch-fid.
    """
    a, b = _pair(feats_a, feats_b, names=("feats_a", "feats_b"))
    mu_a, mu_b = a.mean(dim=0), b.mean(dim=0)
    eye = eps * torch.eye(a.shape[1], dtype=torch.float64, device=a.device)
    cov_a, cov_b = torch.cov(a.T) + eye, torch.cov(b.T) + eye  # (D, D)
    lam, vec = torch.linalg.eigh(cov_a)
    sqrt_a = vec @ torch.diag(lam.clamp(min=0).sqrt()) @ vec.T  # Σa^½
    lam_ab = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0)  # clip tiny negatives from rounding
    fd = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * lam_ab.sqrt().sum()
    return fd.item()


def fd_infinity(feats_a: Samples, feats_b: Samples, sizes: Sequence[int] | None = None, draws: int = 5,
                seed: int = 0) -> float:
    """FD∞: the Fréchet distance extrapolated to infinitely many samples of ``feats_a`` (Chong & Forsyth 2020).

    The plug-in FD is biased upwards by a term that falls as 1/n in the number n of samples (their Eq. 3 and
    §3): fit FD(n) = FD∞ + k/n by least squares over subsets of a, drawn **without** replacement (duplicates
    would add bias of their own), ``draws`` of each size, and return the intercept. ``sizes`` default to 5
    sizes from half of a to all of it. The reference ``feats_b`` stays whole, so its own finite-size bias
    stays in, the same for every a: compare FD∞ of a model with FD∞ of real data against the same reference.
    """
    a, b = _pair(feats_a, feats_b, names=("feats_a", "feats_b"))
    sizes = list(sizes) if sizes is not None else [round(len(a) * f) for f in (0.5, 0.625, 0.75, 0.875, 1.0)]
    if len(set(sizes)) < 2 or min(sizes) < 2 or max(sizes) > len(a):
        raise ValueError(f"sizes must hold at least 2 distinct sample counts in [2, {len(a)}], got {sizes}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    g = torch.Generator().manual_seed(seed)
    inv_n, fd = [], []
    for n in sizes:
        for _ in range(1 if n == len(a) else draws):  # the whole set has one subset of its size
            subset = a[torch.randperm(len(a), generator=g)[:n].to(a.device)]
            inv_n.append(1.0 / n)
            fd.append(frechet_distance(subset, b))
    design = torch.stack([torch.ones(len(inv_n)), torch.tensor(inv_n)], dim=1).double()
    intercept, _slope = torch.linalg.lstsq(design, torch.tensor(fd).double()[:, None]).solution[:, 0]
    return intercept.item()


def kid(feats_a: Samples, feats_b: Samples, halves: int = 50, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance and its standard error: (KID, SE).

    Bińkowski et al. (2018), "Demystifying MMD GANs", §2.3 and Eq. 2: the unbiased estimate (U-statistic,
    diagonal left out) of MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, d the feature
    dimension. Unbiased, so two samples of one distribution give KID ≈ 0 up to noise, and can give a
    slightly negative number. The SE is the delete-half jackknife (Shao & Wu 1989): the spread of KID over
    ``halves`` random halves of both sets, which for d = n/2 needs no rescaling. It is right for a KID
    well above 0 and errs large near KID = 0 (by about √3: there the variance falls as 1/n², not 1/n), so
    "KID within 2 SE of 0" is a conservative statement of "indistinguishable at this n".
    """
    a, b = _pair(feats_a, feats_b, names=("feats_a", "feats_b"))
    if len(a) < 4 or len(b) < 4:
        raise ValueError(f"kid needs at least 4 samples in each set, got {len(a)} and {len(b)}")
    if halves < 2:
        raise ValueError(f"halves must be at least 2, got {halves}")
    d = a.shape[1]
    k_aa, k_bb, k_ab = ((x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))  # (N, N), (M, M), (N, M)

    def estimate(i: Tensor, j: Tensor) -> float:
        n, m = len(i), len(j)
        kaa, kbb = k_aa[i][:, i], k_bb[j][:, j]
        within = (kaa.sum() - kaa.trace()) / (n * (n - 1)) + (kbb.sum() - kbb.trace()) / (m * (m - 1))
        return (within - 2 * k_ab[i][:, j].mean()).item()

    g = torch.Generator().manual_seed(seed)
    full = estimate(torch.arange(len(a)), torch.arange(len(b)))
    half = torch.tensor([estimate(torch.randperm(len(a), generator=g)[:len(a) // 2],
                                  torch.randperm(len(b), generator=g)[:len(b) // 2]) for _ in range(halves)])
    return full, half.std().item()


def real_floor(metric: Callable[[Tensor, Tensor], float], draw: Callable[[int, int], Tensor], n: int,
               repeats: int = 3, seed: int = 0) -> float:
    """The noise floor of ``metric`` at sample size n: its mean over ``repeats`` pairs of independent real samples.

    ``draw(n, seed)`` returns n real samples; pair r uses seeds ``seed + 2r`` and ``seed + 2r + 1`` (all distinct).
    Quote a model's score as ``metric(generated, real) / real_floor(metric, draw, n)``. Example::

        real_floor(sliced_wasserstein, lambda n, seed: toy2d("moons", n, seed), 2000)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    return sum(metric(draw(n, seed + 2 * r), draw(n, seed + 2 * r + 1)) for r in range(repeats)) / repeats


def _pair(a: Samples, b: Samples, names: tuple[str, str] = ("a", "b")) -> tuple[Tensor, Tensor]:
    """Check two sample sets and return them as float64 (N, D) and (M, D) on a's device."""
    out = []
    for x, name in zip((a, b), names):
        x = torch.as_tensor(x).detach()
        if x.ndim == 0 or len(x) < 2:
            raise ValueError(f"{name} must hold at least 2 samples (batch first), got shape {tuple(x.shape)}")
        x = x.reshape(len(x), -1).to(dtype=torch.float64, device=out[0].device if out else x.device)
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf")
        out.append(x)
    if out[0].shape[1] != out[1].shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same number of features per sample, "
                         f"got {out[0].shape[1]} and {out[1].shape[1]}")
    return out[0], out[1]
