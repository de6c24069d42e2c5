"""Metrics: each one against its definition or a closed form, its invariants, and its noise floor."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist, pdist

from diffusion_edu.data import toy2d
from diffusion_edu.metrics import fd_infinity, frechet_distance, kid, mmd, real_floor, sliced_wasserstein


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x[:, 0] += shift
    return x


def with_moments(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """n points whose sample mean and (unbiased) sample covariance are exactly ``mean`` and ``cov``."""
    z = gaussian(n, len(mean), seed)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T  # now cov(z) = I exactly
    return mean + z @ torch.linalg.cholesky(cov).T


# ------------------------------------------------------------------------------------ sliced Wasserstein

def test_sw_of_a_set_with_itself_is_zero_and_sw_is_symmetric():
    a, b = gaussian(300, 3, 0), gaussian(200, 3, 1, shift=1.0)
    assert sliced_wasserstein(a, a) == 0.0
    assert sliced_wasserstein(a, a.repeat(3, 1)) == pytest.approx(0, abs=1e-12)  # same empirical law, sizes differ
    assert sliced_wasserstein(a, b) == pytest.approx(sliced_wasserstein(b, a), rel=1e-12)
    assert sliced_wasserstein(a[:200], b) == sliced_wasserstein(b, a[:200])
    assert sliced_wasserstein(a, b) == sliced_wasserstein(a, b)  # fixed directions: two calls agree


def test_sw_in_1d_integrates_the_quantile_functions_exactly():
    # F_a⁻¹ = 0 on (0, 1/2], 1 after; F_b⁻¹ = 0, 0.5, 1 on thirds: they differ by 0.5 on (1/3, 2/3], W₂² = 1/12
    a, b = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.5, 1.0])
    assert sliced_wasserstein(a, b) == pytest.approx(math.sqrt(1 / 12), rel=1e-12)
    assert sliced_wasserstein(a, a + 3) == pytest.approx(3, rel=1e-12)  # 1-D shift m: W₂ = |m|


@pytest.mark.parametrize("d", [2, 8])
def test_sw_of_a_translate_is_the_shift_over_sqrt_d(d):
    # b = a + m: every projection is a 1-D shift by θ·m, so SW₂² = mean (θ·m)² ≈ |m|² E[(θ·u)²] = |m|²/D
    a = gaussian(200, d, 0)  # any cloud works: the answer does not depend on a
    m = torch.full((d,), 3.0 / math.sqrt(d))  # |m| = 3
    assert sliced_wasserstein(a, a + m, n_projections=4096) == pytest.approx(3 / math.sqrt(d), rel=0.04)


def test_sw_between_shifted_gaussians_samples():
    # N(0, I) vs N(m, I) in 2-D with |m| = 2: SW₂ ≈ 2/√2, up to the noise of 4000 samples and 512 directions
    assert sliced_wasserstein(gaussian(4000, 2, 0), gaussian(4000, 2, 1, shift=2.0)) == pytest.approx(
        math.sqrt(2), rel=0.08)


def test_sw_flattens_images():
    a, b = gaussian(50, 12, 0).reshape(50, 3, 2, 2), gaussian(50, 12, 1).reshape(50, 3, 2, 2)
    assert sliced_wasserstein(a, b) == sliced_wasserstein(a.reshape(50, -1), b.reshape(50, -1))


# ---------------------------------------------------------------------------------------------- MMD

def naive_mmd(a: np.ndarray, b: np.ndarray, bandwidths) -> float:
    """The biased MMD² straight from its definition, with scipy's distances."""
    k = lambda x, y: sum(np.exp(-cdist(x, y, "sqeuclidean") / (2 * h**2)) for h in bandwidths).mean()  # noqa: E731
    return k(a, a) + k(b, b) - 2 * k(a, b)


def test_mmd_matches_its_definition_and_the_median_heuristic():
    a, b = gaussian(60, 3, 0).numpy(), gaussian(40, 3, 1, shift=0.5).numpy()
    assert mmd(a, b, bandwidths=[0.7, 2.0]) == pytest.approx(naive_mmd(a, b, [0.7, 2.0]), rel=1e-10)
    median = np.median(pdist(np.concatenate([a, b])))
    assert mmd(a, b) == pytest.approx(naive_mmd(a, b, [0.5 * median, median, 2 * median]), rel=1e-10)


def test_mmd_is_zero_on_equal_samples_and_grows_with_a_shift():
    a, b = gaussian(500, 2, 0), gaussian(500, 2, 1)
    assert mmd(a, a) == 0.0 and mmd(a, a.clone()) == 0.0
    values = [mmd(a, b + torch.tensor([s, 0.0]), bandwidths=[0.5, 1.0, 2.0]) for s in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert all(v >= 0 for v in values)
    assert values == sorted(values) and values[-1] > 20 * values[0]


def test_mmd_in_blocks_equals_mmd_at_once():
    from diffusion_edu import metrics
    a, b = gaussian(70, 2, 0), gaussian(50, 2, 1)
    h = torch.tensor([1.0], dtype=torch.float64)
    assert metrics._mean_kernel(a, b, h, block_elems=64) == pytest.approx(metrics._mean_kernel(a, b, h), rel=1e-12)


# ------------------------------------------------------------------------------------ Fréchet distance

def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    # diagonal Σ: FD = |Δμ|² + Σ_i (√a_i − √b_i)²
    mu_a, mu_b = torch.tensor([0.0, 1.0, -1.0]).double(), torch.tensor([0.5, 1.0, 1.0]).double()
    var_a, var_b = torch.tensor([1.0, 4.0, 0.25]).double(), torch.tensor([2.0, 1.0, 0.25]).double()
    a = with_moments(500, mu_a, torch.diag(var_a), seed=0)
    b = with_moments(700, mu_b, torch.diag(var_b), seed=1)
    expected = (mu_a - mu_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum()
    assert frechet_distance(a, b, eps=0.0) == pytest.approx(expected.item(), rel=1e-9)
    assert frechet_distance(a, b) == pytest.approx(expected.item(), abs=1e-5)  # eps = 1e-6 barely moves it


def test_frechet_distance_agrees_with_scipy_sqrtm_for_full_covariances():
    a, b = gaussian(400, 5, 0) @ gaussian(5, 5, 2), gaussian(300, 5, 1, shift=1.0) @ gaussian(5, 5, 3)
    mu_a, mu_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a.T.numpy()), np.cov(b.T.numpy())
    expected = ((mu_a - mu_b) ** 2).sum().item() + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b)).real
    assert frechet_distance(a.numpy(), b.numpy(), eps=0.0) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_near_zero_for_the_same_distribution():
    a = gaussian(20_000, 4, 0)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(a, gaussian(20_000, 4, 1)) < 0.01  # only the sampling error of μ and Σ


# -------------------------------------------------------------------------------- FD∞ and KID

def test_fd_infinity_removes_the_1_over_n_bias():
    # a and b from N(0, I_8): the true FD is 0; the plug-in FD at n = 400 is biased up, FD∞ much less so
    ref = gaussian(50_000, 8, 1)
    plug_in, extrapolated = [], []
    for seed in range(4):
        a = gaussian(400, 8, 10 + seed)
        plug_in.append(frechet_distance(a, ref))
        extrapolated.append(fd_infinity(a, ref, draws=8, seed=seed))
    assert min(plug_in) > 0.05  # the bias FD∞ has to remove: ≈ d(d+1)/(4n)-sized at this n
    assert abs(np.mean(extrapolated)) < np.mean(plug_in) / 4


def test_fd_infinity_keeps_a_real_difference():
    ref = gaussian(50_000, 4, 1)  # true FD = 1 (a unit shift of the mean); one draw's own noise is ±0.08
    values = [fd_infinity(gaussian(1000, 4, 2 + seed, shift=1.0), ref) for seed in range(6)]
    assert np.mean(values) == pytest.approx(1.0, abs=0.1)


def naive_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² with k(x, y) = (xᵀy/d + 1)³, written as the definition's sums over pairs i ≠ j, in loops."""
    d, n, m = a.shape[1], len(a), len(b)
    k = lambda x, y: (float(x @ y) / d + 1) ** 3  # noqa: E731
    within_a = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    within_b = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    across = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return within_a + within_b - 2 * across


def test_kid_matches_its_definition():
    a, b = gaussian(30, 5, 0).numpy(), gaussian(20, 5, 1, shift=0.5).numpy()
    assert kid(a, b)[0] == pytest.approx(naive_kid(a, b), rel=1e-10)


def test_kid_is_unbiased_and_its_standard_error_is_honest():
    # Same distribution: KID averages to 0 (unbiased), each within ~2 SE of it, and the SE does not
    # understate the spread. Shifted: KID > 0 by many SE, and the SE matches the spread over draws.
    null = [kid(gaussian(200, 4, 2 * s), gaussian(150, 4, 2 * s + 1), seed=s) for s in range(30)]
    values, ses = np.array([v for v, _ in null]), np.array([se for _, se in null])
    assert abs(values.mean()) < 3 * values.std() / math.sqrt(len(values))
    assert (np.abs(values) < 2 * ses).mean() >= 0.9
    assert 1.0 <= ses.mean() / values.std() < 2.5  # conservative at 0 (≈ √3 in theory), never optimistic
    shifted = [kid(gaussian(200, 4, 2 * s), gaussian(150, 4, 2 * s + 1, shift=1.5), seed=s) for s in range(30)]
    values, ses = np.array([v for v, _ in shifted]), np.array([se for _, se in shifted])
    assert (values > 4 * ses).all()
    assert 0.7 < ses.mean() / values.std() < 1.4


# --------------------------------------------------------------------------------------- noise floor

def test_real_floor_is_positive_and_below_a_real_difference():
    seeds = []

    def draw(n, seed):
        seeds.append(seed)
        return toy2d("moons", n, seed)

    floor = real_floor(sliced_wasserstein, draw, 1000, repeats=3, seed=5)
    assert sorted(seeds) == list(range(5, 11))  # fresh, independent samples: all seeds distinct
    shifted = sliced_wasserstein(toy2d("moons", 1000, 0) + torch.tensor([0.5, 0.0]), toy2d("moons", 1000, 1))
    assert 0 < floor < shifted / 3
    assert 0 < real_floor(mmd, draw, 300, repeats=2) < mmd(toy2d("moons", 300, 0) + 0.5, toy2d("moons", 300, 1))


# -------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("metric", [sliced_wasserstein, mmd, frechet_distance])
def test_metrics_reject_bad_inputs(metric):
    a, b = gaussian(10, 2, 0), gaussian(10, 2, 1)
    first, second = ("feats_a", "feats_b") if metric is frechet_distance else ("a", "b")
    with pytest.raises(ValueError, match=f"{first} contains NaN or inf"):
        metric(torch.cat([a[:9], torch.tensor([[float("nan"), 0.0]])]), b)
    with pytest.raises(ValueError, match=f"{second} contains NaN or inf"):
        metric(a, torch.cat([b[:9], torch.tensor([[0.0, float("inf")]])]))
    with pytest.raises(ValueError, match="same number of features"):
        metric(a, gaussian(10, 3, 1))
    with pytest.raises(ValueError, match=f"{first} must hold at least 2 samples"):
        metric(a[:1], b)


def test_other_arguments_are_checked():
    a = gaussian(10, 2, 0)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(a, a, n_projections=0)
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(a, a, bandwidths=[1.0, -1.0])
    with pytest.raises(ValueError, match="repeats"):
        real_floor(mmd, lambda n, seed: gaussian(n, 2, seed), 10, repeats=0)
    with pytest.raises(ValueError, match="sizes must hold at least 2 distinct"):
        fd_infinity(a, a, sizes=[5, 5])
    with pytest.raises(ValueError, match="sizes must hold"):
        fd_infinity(a, a, sizes=[5, 11])
    with pytest.raises(ValueError, match="kid needs at least 4 samples"):
        kid(a[:3], a)
    with pytest.raises(ValueError, match="halves"):
        kid(a, a, halves=1)
