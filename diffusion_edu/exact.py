"""Exact denoisers: data whose noised marginals are known in closed form (chapters 02, 04 and 06).

For a Gaussian mixture p_0 = Σ_k w_k N(μ_k, s_k² I), the forward process keeps every component Gaussian:
p_t = Σ_k w_k N(√ᾱ_t μ_k, (ᾱ_t s_k² + 1 − ᾱ_t) I). So the ideal ε-predictor, E[ε | x_t] = −√(1 − ᾱ_t) ∇ log p_t(x_t)
(Vincent 2011; Song et al. 2021, Eq. 1 and §3), is a few lines. It is the "perfect network" of the course:
samplers are tested with it (no training, no error but the sampler's own), and it is what training aims at.
On a continuous path x_t = α x₀ + σ ε (chapter 06) the same holds with v_k = α² s_k² + σ²: ``score_at``,
``path_model``, ``denoiser``. ``Gaussian`` (chapter 08) has a full covariance: its denoiser and every linear
restoration posterior p(x | y) are closed-form.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .forward import check_batch, check_timesteps
from .schedules import NoiseSchedule


class GaussianMixture:
    """An isotropic Gaussian mixture in D dimensions. Labels y pick a component (so it can be "conditional")."""

    def __init__(self, means: Tensor, stds, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)  # (K, D)
        if self.means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(self.means.shape)}")
        K = len(self.means)
        self.stds = torch.as_tensor(stds, dtype=torch.float64).expand(K).clone()  # (K,)
        self.weights = (torch.full((K,), 1 / K, dtype=torch.float64) if weights is None
                        else torch.as_tensor(weights, dtype=torch.float64))
        if (self.stds <= 0).any() or (self.weights < 0).any() or self.weights.shape != (K,):
            raise ValueError("stds must be positive and weights non-negative, one per component")
        self.weights = self.weights / self.weights.sum()
        self.num_classes = K

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n samples and the component each came from: ((n, D) float32, (n,) int64)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k, None] * z).float(), k

    def log_prob(self, x: Tensor, abar: float = 1.0) -> Tensor:
        """log p_t(x) of the marginal with signal level ᾱ (ᾱ = 1: the data itself). (B, D) → (B,)."""
        return self._log_joint(x.double(), abar, None).logsumexp(dim=1).to(x.dtype)

    def responsibilities(self, x: Tensor, abar: float = 1.0) -> Tensor:
        """p(k | x_t): the posterior weight of each component, the Bayes-optimal classifier. (B, D) → (B, K)."""
        return self._log_joint(x.double(), abar, None).softmax(dim=1)

    def _log_joint(self, x: Tensor, abar: float | Tensor, y: Tensor | None) -> Tensor:
        """log w_k + log N(x; √ᾱ μ_k, v_k I) for every component, (B, K); given y, only component y is kept."""
        abar = torch.as_tensor(abar, dtype=torch.float64).reshape(-1, 1)  # (B or 1, 1)
        var = abar * self.stds ** 2 + 1 - abar  # (B or 1, K)
        sq = ((x[:, None, :] - abar.sqrt()[..., None] * self.means) ** 2).sum(-1)  # (B, K)
        logp = self.weights.log() - 0.5 * sq / var - 0.5 * self.dim * (2 * math.pi * var).log()
        if y is not None:
            other = (torch.arange(self.num_classes) != y[:, None]) & (y[:, None] < self.num_classes)
            logp = logp.masked_fill(other, -math.inf)  # y = K is the null label: the whole mixture
        return logp

    def eps(self, x: Tensor, abar: float | Tensor, y: Tensor | None = None) -> Tensor:
        """E[ε | x_t] = √(1 − ᾱ) Σ_k r_k (x − √ᾱ μ_k) / v_k, r_k the posterior weight of component k."""
        xd = x.double()
        abar = torch.as_tensor(abar, dtype=torch.float64).reshape(-1, 1)  # (B or 1, 1)
        r = self._log_joint(xd, abar, y).softmax(dim=1)  # (B, K), r_k = p(k | x_t, y)
        var = abar * self.stds ** 2 + 1 - abar  # (B or 1, K)
        diff = xd[:, None, :] - abar.sqrt()[..., None] * self.means  # (B, K, D)
        return ((1 - abar).sqrt() * (r[..., None] * diff / var[..., None]).sum(1)).to(x.dtype)

    def eps_model(self, schedule: NoiseSchedule):
        """The exact ε-predictor as a course model: ``model(x, t, y=None)``, t integer timesteps of ``schedule``."""

        def model(x: Tensor, t, y: Tensor | None = None) -> Tensor:
            check_batch(x)
            if x.ndim != 2 or x.shape[1] != self.dim:
                raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
            t = torch.as_tensor(t)
            if t.is_floating_point():  # diffusers passes float timesteps that are whole numbers
                t = t.round().long()
            t = check_timesteps(t, schedule.T, x.shape[0]).cpu()
            y_cpu = None if y is None else torch.as_tensor(y).cpu()
            # float64 on the CPU (MPS has no float64; the mixture is tiny), then back to x's device
            return self.eps(x.cpu(), schedule.alpha_bars[t], y_cpu).to(x.device)

        model.num_classes = self.num_classes
        return model


    # ------------------------------------------------------------- on a continuous path (chapter 06)
    # x_t = α x₀ + σ ε keeps every component Gaussian: p_t = Σ_k w_k N(α μ_k, (α² s_k² + σ²) I).

    def _log_joint_path(self, x: Tensor, alpha: Tensor, sigma: Tensor, y: Tensor | None) -> Tensor:
        """log w_k + log N(x; α μ_k, v_k I), v_k = α² s_k² + σ², (B, K); α, σ of shape (B or 1, 1)."""
        var = alpha**2 * self.stds**2 + sigma**2  # (B or 1, K)
        sq = ((x[:, None, :] - alpha[..., None] * self.means) ** 2).sum(-1)  # (B, K)
        logp = self.weights.log() - 0.5 * sq / var - 0.5 * self.dim * (2 * math.pi * var).log()
        if y is not None:
            other = (torch.arange(self.num_classes) != y[:, None]) & (y[:, None] < self.num_classes)
            logp = logp.masked_fill(other, -math.inf)
        return logp

    def score_at(self, x: Tensor, alpha, sigma, y: Tensor | None = None) -> Tensor:
        """∇log p_t(x) = −Σ_k r_k (x − α μ_k)/v_k: the exact score of the noised mixture. (B, D) → (B, D)."""
        xd = x.double()
        alpha, sigma = (torch.as_tensor(v, dtype=torch.float64).reshape(-1, 1) for v in (alpha, sigma))
        r = self._log_joint_path(xd, alpha, sigma, y).softmax(dim=1)  # (B, K), p(k | x_t)
        var = alpha**2 * self.stds**2 + sigma**2  # (B or 1, K)
        diff = xd[:, None, :] - alpha[..., None] * self.means  # (B, K, D)
        return (-(r[..., None] * diff / var[..., None]).sum(1)).to(x.dtype)

    def log_prob_at(self, x: Tensor, alpha, sigma) -> Tensor:
        """log p_t(x) of the mixture noised to x_t = α x₀ + σ ε. (B, D) → (B,)."""
        alpha, sigma = (torch.as_tensor(v, dtype=torch.float64).reshape(-1, 1) for v in (alpha, sigma))
        return self._log_joint_path(x.double(), alpha, sigma, None).logsumexp(dim=1).to(x.dtype)

    def path_model(self, path):
        """The exact ε-predictor on a continuous path, ``model(x, t, y=None)`` with float t in [0, 1]:
        ε̂ = −σ ∇log p_t (Vincent 2011). ``Denoiser(gmm.path_model(path), path, EPS)`` is the perfect network."""

        def model(x: Tensor, t, y: Tensor | None = None) -> Tensor:
            check_batch(x)
            if x.ndim != 2 or x.shape[1] != self.dim:
                raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
            c = path.coefficients(t, x.double().cpu())  # (B, 1) each, float64
            y_cpu = None if y is None else torch.as_tensor(y).cpu()
            return (-c.sigma * self.score_at(x.double().cpu(), c.alpha, c.sigma, y_cpu)).to(x.dtype).to(x.device)

        model.num_classes = self.num_classes
        return model

    def denoiser(self, path):
        """The exact ``Denoiser`` on ``path`` (an ε-model, so x̂₀ = (x − σ ε̂)/α = E[x₀ | x_t])."""
        from .parameterisations import EPS, Denoiser
        return Denoiser(self.path_model(path), path, EPS)

    def mode_weights(self, x: Tensor) -> Tensor:
        """The share of samples (N, D) that each component claims (by the largest responsibility p(k | x)), (K,)."""
        k = self.responsibilities(x).argmax(dim=1)
        return torch.bincount(k, minlength=self.num_classes).double() / len(x)

    def mode_weight_error(self, x: Tensor) -> float:
        """½ Σ_k |ŵ_k − w_k|: the total-variation error of the samples' mode weights (chapter 06)."""
        return 0.5 * float((self.mode_weights(x) - self.weights).abs().sum())

    def mode_weight_floor(self, n: int, draws: int = 100_000, seed: int = 0) -> float:
        """The ``mode_weight_error`` a perfect sampler makes with n samples: E ½ Σ_k |c_k/n − w_k| with
        c ~ Multinomial(n, w), a mean over ``draws`` draws (the multinomial noise floor), each drawn as a chain
        of binomials c_k ~ Bin(n − c_1 − … − c_{k−1}, w_k/(w_k + … + w_K))."""
        if n < 1 or draws < 1:
            raise ValueError(f"n and draws must be positive, got n={n}, draws={draws}")
        g = torch.Generator().manual_seed(seed)
        left, rest, counts = torch.full((draws,), float(n), dtype=torch.float64), 1.0, []
        for w in self.weights.tolist():
            c = torch.binomial(left, torch.full_like(left, min(w / rest, 1.0) if rest > 0 else 0.0), generator=g)
            counts.append(c)
            left, rest = left - c, rest - w
        return float(0.5 * (torch.stack(counts, 1) / n - self.weights).abs().sum(1).mean())

    def entropy(self, n: int = 1_000_000, seed: int = 0) -> tuple[float, float]:
        """(H, its standard error) in nats: H = −E log p(x), a Monte-Carlo mean of the exact log-density over
        n samples (a mixture's entropy has no closed form; at n = 10⁶ the error is ~1e-3 nats)."""
        x, _ = self.sample(n, torch.Generator().manual_seed(seed))
        nll = -self.log_prob(x.double())
        return float(nll.mean()), float(nll.std() / math.sqrt(n))


class Gaussian:
    """N(μ, Σ) with a full covariance, over images of shape ``shape`` (D pixels): chapter 08's exact prior.

    Its noised marginals stay Gaussian, p_t = N(α μ, α² Σ + σ² I), so with Σ = Q diag(λ) Qᵀ the ideal denoiser is
    E[x₀ | x_t] = μ + Q diag(αλ/(α²λ + σ²)) Qᵀ (x_t − α μ), and for every linear measurement y = A x + σ_y n the
    posterior p(x | y) is Gaussian too (``posterior``): the answer every restoration solver is checked against.
    """

    def __init__(self, mean: Tensor, cov: Tensor, shape: tuple[int, ...] | None = None):
        self.mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)  # (D,)
        self.cov = torch.as_tensor(cov, dtype=torch.float64)  # (D, D)
        D = len(self.mean)
        if self.cov.shape != (D, D) or not torch.allclose(self.cov, self.cov.T, atol=1e-10):
            raise ValueError(f"cov must be a symmetric ({D}, {D}) matrix, got shape {tuple(self.cov.shape)}")
        self.lam, self.Q = torch.linalg.eigh(self.cov)  # Σ = Q diag(λ) Qᵀ
        if self.lam.min() < -1e-8 * self.lam.max():
            raise ValueError(f"cov must be positive semi-definite, its smallest eigenvalue is {self.lam.min():.3g}")
        self.lam = self.lam.clamp_min(0)
        self.shape = (D,) if shape is None else tuple(shape)
        if math.prod(self.shape) != D:
            raise ValueError(f"shape {self.shape} must hold the mean's {D} entries")
        self.num_classes = None

    @classmethod
    def fit(cls, x: Tensor, jitter: float = 1e-4) -> "Gaussian":
        """The maximum-likelihood Gaussian of a data set (N, *shape), plus ``jitter``·I: digits have pixels that are
        always −1 (zero variance), and the jitter keeps Σ invertible, so posteriors exist even for σ_y = 0."""
        check_batch(x)
        flat = x.reshape(len(x), -1).double()
        cov = torch.cov(flat.T, correction=0) + jitter * torch.eye(flat.shape[1], dtype=torch.float64)
        return cls(flat.mean(0), cov, tuple(x.shape[1:]))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws μ + Q diag(√λ) z, (n, *shape) float32."""
        z = torch.randn(n, len(self.mean), generator=generator, dtype=torch.float64)
        return (self.mean + (z * self.lam.sqrt()) @ self.Q.T).float().reshape(n, *self.shape)

    def x0_given(self, x: Tensor, alpha, sigma) -> Tensor:
        """E[x₀ | x_t = x] for x_t = α x₀ + σ ε, (B, *shape); α, σ scalars or (B,)-shaped."""
        check_batch(x)
        alpha, sigma = (torch.as_tensor(v, dtype=torch.float64).reshape(-1, 1) for v in (alpha, sigma))
        flat = x.reshape(len(x), -1).double() - alpha * self.mean  # (B, D)
        gain = alpha * self.lam / (alpha**2 * self.lam + sigma**2)  # (B or 1, D), the Wiener filter per eigen-direction
        return (self.mean + ((flat @ self.Q) * gain) @ self.Q.T).to(x.dtype).reshape(x.shape)

    def cov_given(self, alpha: float, sigma: float) -> Tensor:
        """Cov[x₀ | x_t] = Q diag(λσ²/(α²λ + σ²)) Qᵀ, (D, D): the same for every x_t (a Gaussian's posterior)."""
        return (self.Q * (self.lam * sigma**2 / (alpha**2 * self.lam + sigma**2))) @ self.Q.T

    def eps_model(self, schedule: NoiseSchedule):
        """The exact ε-predictor on a discrete ``schedule``, ``model(x, t, y=None)``: ε̂ = (x − √ᾱ x̂₀)/√(1 − ᾱ)."""

        def model(x: Tensor, t, y: Tensor | None = None) -> Tensor:
            t = check_timesteps(torch.as_tensor(t).round().long(), schedule.T, x.shape[0]).cpu()
            abar = schedule.alpha_bars[t].reshape(-1, *[1] * (x.ndim - 1))
            x0 = self.x0_given(x.cpu(), abar.sqrt().reshape(-1), (1 - abar).sqrt().reshape(-1))
            return ((x.cpu().double() - abar.sqrt() * x0.double()) / (1 - abar).sqrt()).to(x.dtype).to(x.device)

        model.num_classes = None
        return model

    def posterior(self, op, y: Tensor, sigma_y: float = 0.0) -> tuple[Tensor, Tensor]:
        """p(x | y) = N(m, C) for y = A x + σ_y n (``restoration.operators``): with S = A Σ Aᵀ + σ_y² I and the
        gain K = Σ Aᵀ S⁻¹, m = μ + K (y − A μ) and C = Σ − K A Σ (Bishop 2006, Eqs. 2.113–2.117). Returns m
        (B, *shape) and C (D, D), the same for every y."""
        y = op.check_measurement(y).double()
        A = op.matrix
        S = A @ self.cov @ A.T + sigma_y**2 * torch.eye(op.m, dtype=torch.float64)  # (m, m)
        K = torch.linalg.solve(S, A @ self.cov).T  # (D, m); S is symmetric
        mean = self.mean + (y - self.mean @ A.T) @ K.T  # (B, D)
        cov = self.cov - K @ A @ self.cov
        return mean.float().reshape(len(y), *self.shape), 0.5 * (cov + cov.T)


def gaussian(mean: Tensor, std: float) -> GaussianMixture:
    """A single Gaussian N(mean, std² I): the one data set whose probability-flow ODE is solved in closed form."""
    return GaussianMixture(torch.as_tensor(mean, dtype=torch.float64)[None], std)


def gaussian_flow_solution(x_T: Tensor, abar_T: float, mean: Tensor, std: float) -> Tensor:
    """x_0 reached by the exact probability-flow ODE from x_T, for data N(mean, std² I) (chapter 04).

    In x̃ = x/√ᾱ coordinates the ODE dx̃/dσ = ε̂ keeps (x̃ − μ)/√(s² + σ²) constant, so
    x_0 = μ + (x_T/√ᾱ_T − μ) · s / √(s² + σ_T²).
    """
    sigma_T = math.sqrt((1 - abar_T) / abar_T)
    mean = torch.as_tensor(mean, dtype=x_T.dtype)
    return mean + (x_T / math.sqrt(abar_T) - mean) * std / math.sqrt(std ** 2 + sigma_T ** 2)
