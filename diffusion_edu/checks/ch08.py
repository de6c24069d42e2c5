"""Checks for chapter 08 (restoration): the Gaussian posterior, RePaint's merge, one DPS step and SR3's input.

Each check compares the learner's function with the package's (``exact.Gaussian.posterior``,
``operators.LinearOperator.project`` of a mask, one step of ``solvers.dps`` built from ``ddpm_step`` and
autograd, ``sr3.condition`` of 2× average pooling) and names the usual mistake it matches with the shared
``mistakes.diagnose``: the missing σ_y² I, a transpose, the innovation's sign, a flipped mask, the squared norm
or the gradient taken at x̂₀ instead of through the network, bilinear up-sampling, …
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import CheckFailed, checker, expect, expect_tensor
from .mistakes import diagnose, matches
from ..exact import Gaussian
from ..restoration.operators import LinearOperator, downsample, mask
from ..restoration.sr3 import condition
from ..samplers.discrete import ddpm_step

__all__ = ["check_gaussian_posterior", "check_repaint_merge", "check_dps_step", "check_sr3_input"]

SHAPE = (4, 1, 4, 4)  # image-shaped, so code that only works for (B, D) data is caught
CLOSE = dict(rtol=1e-4, atol=1e-5)  # a right answer, also in float32


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _maxdiff(a: Tensor, b: Tensor) -> str:
    return f"{(a.double() - b.double()).abs().max().item():.3g}"


# ---------------------------------------------------------------------------------- Gaussian posterior

def _posterior_variants(mu, Sigma, A, y, sigma_y):
    """Reference (mean, cov) with the gain K = Σ Aᵀ S⁻¹, and what each usual mistake returns, as (mean, cov, message)."""
    m = len(A)
    S = A @ Sigma @ A.T + sigma_y**2 * torch.eye(m, dtype=A.dtype)
    K = Sigma @ A.T @ torch.linalg.inv(S)  # (D, m)
    K0 = Sigma @ A.T @ torch.linalg.inv(A @ Sigma @ A.T)  # σ_y forgotten
    r = y - mu @ A.T  # the innovation y − A μ, (B, m)
    prior = (mu.expand(len(y), -1), Sigma)
    wrong = [
        (mu + r @ K0.T, Sigma - K0 @ A @ Sigma,
         "Forgot the measurement noise: S = A Σ Aᵀ + σ_y² I; without σ_y² I the posterior trusts y as if noise-free."),
        (*prior, "You returned the prior (μ, Σ): the measurement y must move the mean, μ + K (y − A μ), and shrink "
                 "the covariance, Σ − K A Σ."),
        (mu - r @ K.T, Sigma - K @ A @ Sigma,
         "Sign of the innovation: the mean is μ + K (y − A μ), moved towards the measurement; you used A μ − y."),
        (mu + r @ K.T, Sigma + K @ A @ Sigma,
         "Covariance sign: measuring removes uncertainty, C = Σ − K A Σ (Bishop 2006, Eq. 2.117); you added it."),
    ]
    if A.shape[0] == A.shape[1]:  # with a square A the transposes run without an error
        Kt = A @ Sigma @ torch.linalg.inv(S)  # A Σ S⁻¹ in place of Σ Aᵀ S⁻¹
        wrong += [(mu + r @ Kt.T, Sigma - Kt @ A @ Sigma,
                   "Transpose: the gain is K = Σ Aᵀ S⁻¹ (D × m); you used A Σ where Σ Aᵀ belongs."),
                  (mu + r @ K, Sigma - K @ A @ Sigma,
                   "Transpose: with y and μ as rows, the mean is μ + (y − A μ) Kᵀ, i.e. `(y - mu @ A.T) @ K.T`; "
                   "you multiplied by K itself.")]
    return (mu + r @ K.T, Sigma - K @ A @ Sigma), wrong


@checker("gaussian_posterior")
def check_gaussian_posterior(posterior: Callable) -> None:
    """``posterior(mu, Sigma, A, y, sigma_y) -> (mean (B, D), cov (D, D))`` of N(μ, Σ) given y = A x + σ_y n."""
    g = _gen(0)
    D, B = 5, 4
    for m, sigma_y in ((5, 0.4), (3, 0.3), (3, 0.0)):  # square A first: there a transpose mistake runs
        L = torch.randn(D, D, generator=g, dtype=torch.float64)
        Sigma = L @ L.T / D + 0.2 * torch.eye(D, dtype=torch.float64)
        mu = torch.randn(D, generator=g, dtype=torch.float64)
        A = torch.randn(m, D, generator=g, dtype=torch.float64)
        y = torch.randn(B, m, generator=g, dtype=torch.float64) * 2
        try:
            out = posterior(mu.clone(), Sigma.clone(), A.clone(), y.clone(), sigma_y)
        except RuntimeError as err:
            if m != D and ("shape" in str(err) or "size" in str(err)):
                raise CheckFailed(f"Your code works for a square A but not for A of shape ({m}, {D}): check each "
                                  f"product's shapes, e.g. the gain K = Σ Aᵀ S⁻¹ is (D, m) ({err}).") from None
            raise
        expect(isinstance(out, tuple) and len(out) == 2, "Return a pair (mean, cov), e.g. `return mean, cov`.")
        mean, cov = expect_tensor(out[0], (B, D), "mean"), expect_tensor(out[1], (D, D), "cov")
        want_mean, want_cov = Gaussian(mu, Sigma).posterior(LinearOperator(A, (D,), "A"), y, sigma_y)
        if matches(mean, want_mean, **CLOSE) and matches(cov, want_cov, **CLOSE):
            continue
        _, wrong = _posterior_variants(mu, Sigma, A, y, sigma_y)
        if not matches(mean, want_mean, **CLOSE):
            diagnose(mean, [(wm, msg) for wm, _, msg in wrong],
                     f"With A of shape ({m}, {D}) and σ_y = {sigma_y}, your mean differs from μ + K (y − A μ), "
                     f"K = Σ Aᵀ (A Σ Aᵀ + σ_y² I)⁻¹ (max |difference| {_maxdiff(mean, want_mean)}).")
        diagnose(cov, [(wc, msg) for _, wc, msg in wrong],
                 f"Your mean is right but the covariance differs from Σ − K A Σ (max |difference| "
                 f"{_maxdiff(cov, want_cov)}).")


# ------------------------------------------------------------------------------------- RePaint's merge

@checker("repaint_merge")
def check_repaint_merge(merge: Callable, noised_known: Callable) -> None:
    """``noised_known(y, abar, noise)`` = √ᾱ y + √(1 − ᾱ) noise and ``merge(x_unknown, known, keep)`` =
    keep ⊙ known + (1 − keep) ⊙ x_unknown (Lugmayr et al. 2022, Eq. 8), on images (B, C, H, W)."""
    g = _gen(1)
    keep = (torch.rand(1, *SHAPE[1:], generator=g) < 0.5).double()
    op = mask(keep[0])
    x, y, noise = torch.randn(3, *SHAPE, generator=g, dtype=torch.float64)
    got = expect_tensor(merge(x.clone(), y.clone(), keep.clone()), SHAPE, "merge(x_unknown, known, keep)")
    want = op.project(x, op(y))  # (I − A⁺A) x + A⁺ A y
    if not matches(got, want, **CLOSE):
        diagnose(got, [
            ((1 - keep) * y + keep * x, "Mask flipped: keep is 1 where the pixel is known, so the known image goes "
                                        "where keep = 1: keep ⊙ known + (1 − keep) ⊙ x_unknown."),
            (keep * y + x, "The unknown sample must be masked too: keep ⊙ known + (1 − keep) ⊙ x_unknown; you "
                           "added all of x_unknown."),
            (y, "You returned the known image: the missing pixels must come from the model's sample x_unknown."),
            (x, "You returned x_unknown unchanged: replace its known pixels by the known image's."),
        ], f"Your merge differs from keep ⊙ known + (1 − keep) ⊙ x_unknown (max |difference| {_maxdiff(got, want)}).")
    for abar in (0.3, 0.9):
        got = expect_tensor(noised_known(y.clone(), abar, noise.clone()), SHAPE, "noised_known(y, abar, noise)")
        want = math.sqrt(abar) * y + math.sqrt(1 - abar) * noise
        if not matches(got, want, **CLOSE):
            diagnose(got, [
                (abar * y + (1 - abar) * noise, "Square roots: the forward process scales by √ᾱ and √(1 − ᾱ) "
                                                "(chapter 01), not by ᾱ and 1 − ᾱ."),
                (math.sqrt(1 - abar) * y + math.sqrt(abar) * noise, "Coefficients swapped: the signal gets √ᾱ and "
                                                                    "the noise √(1 − ᾱ)."),
                (y + math.sqrt(1 - abar) * noise, "The known image must shrink too: √ᾱ y + √(1 − ᾱ) noise."),
                (y, "You forgot to noise the known image: at step t it must be at the noise level of x_{t−1}, "
                    "√ᾱ y + √(1 − ᾱ) noise (Lugmayr et al., Algorithm 1, line 5)."),
            ], f"With ᾱ = {abar}, noised_known differs from √ᾱ y + √(1 − ᾱ) noise "
               f"(max |difference| {_maxdiff(got, want)}).")
    both = merge(x, noised_known(y, 0.5, noise), keep)  # the package's line: project onto noised measurements
    expect(matches(both, op.project(x, math.sqrt(0.5) * op(y) + math.sqrt(0.5) * op(noise)), **CLOSE),
           "Each part is right, but merge(x, noised_known(y, ᾱ, noise), keep) is not RePaint's merged sample.")


# -------------------------------------------------------------------------------------------- DPS step

class _TinyEps(torch.nn.Module):
    """A small non-linear ε-network on SHAPE (fixed weights): its Jacobian is not a multiple of I."""

    def __init__(self):
        super().__init__()
        g, D = _gen(2), math.prod(SHAPE[1:])
        self.W = torch.randn(D, D, generator=g, dtype=torch.float64) / math.sqrt(D)

    def forward(self, x: Tensor, t, y=None) -> Tensor:
        tt = torch.as_tensor(t, dtype=x.dtype).float().mean().to(x.dtype) / 1000
        flat = x.reshape(len(x), -1)
        return (torch.tanh(flat @ self.W.to(x)) * (1 + tt) + 0.3 * flat).reshape(x.shape)


def dps_step(x_t, eps_model, t, abar, abar_prev, y, A_fn, scale, generator, *, squared=False, at_x0=False,
             batch_norm=False, sign=1.0, guide=True, noisy=True):
    """Reference (and, with a flag, each usual mistake): DDPM's step from Tweedie's x̂₀, then
    x_{t−1} − ζ ∇_{x_t} ‖y − A x̂₀(x_t)‖, one norm per sample: one step of ``solvers.dps``."""
    with torch.enable_grad():
        x_in = x_t.detach().requires_grad_(True)
        x0 = (x_in - math.sqrt(1 - abar) * eps_model(x_in, t)) / math.sqrt(abar)  # Tweedie, Ho et al. Eq. 15
        leaf = x0.detach().requires_grad_(True) if at_x0 else x0
        r = y - A_fn(leaf)  # (B, m)
        norm = torch.linalg.vector_norm(r) if batch_norm else torch.linalg.vector_norm(r, dim=1)
        grad, = torch.autograd.grad((norm**2 if squared else norm).sum(), leaf if at_x0 else x_in)
    x_prev = ddpm_step(x_t.detach(), x0.detach(), abar, abar_prev, generator)
    if not noisy:  # the mean μ̃ alone (Ho et al. Eq. 7)
        beta = 1 - abar / abar_prev
        x_prev = (math.sqrt(abar_prev) * beta / (1 - abar) * x0.detach()
                  + math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar) * x_t.detach())
    return x_prev - sign * scale * grad if guide else x_prev


@checker("dps_step")
def check_dps_step(step: Callable) -> None:
    """``dps_step(x_t, eps_model, t, abar, abar_prev, y, A_fn, scale, noise) -> x_prev`` (Chung et al. 2023, Alg. 1)."""
    g = _gen(3)
    net = _TinyEps()
    A = LinearOperator(torch.randn(6, 16, generator=g, dtype=torch.float64), SHAPE[1:], "random 6 × 16")
    x_t = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    noise = torch.randn(SHAPE, generator=_gen(5), dtype=torch.float64)  # ddpm_step's draw from _gen(5)
    y = A(torch.randn(SHAPE, generator=g, dtype=torch.float64)) * torch.tensor([[0.3], [1.0], [2.0], [4.0]],
                                                                                dtype=torch.float64)
    t, abar, abar_prev, scale = 600, 0.3, 0.4, 0.25
    args = (x_t, net, t, abar, abar_prev, y, A, scale)
    got = step(*[a.clone() if isinstance(a, Tensor) else a for a in args], noise.clone())
    got = expect_tensor(got.detach() if isinstance(got, Tensor) else got, SHAPE, "x_prev")
    want = dps_step(*args, _gen(5))
    if matches(got, want, **CLOSE):
        return
    diagnose(got, [
        (dps_step(*args, _gen(5), squared=True), "Squared norm: DPS's code steps along ∇‖y − A x̂₀‖, the norm "
                                                  "itself (the paper's ζ_t = ζ′/‖y − A x̂₀‖ on the square)."),
        (dps_step(*args, _gen(5), at_x0=True), "The gradient must be taken with respect to x_t, through the "
                                                "network: x̂₀(x_t) = (x_t − √(1 − ᾱ) ε̂(x_t))/√ᾱ; you took it "
                                                "with respect to x̂₀ (detached), which skips ∂x̂₀/∂x_t."),
        (dps_step(*args, _gen(5), batch_norm=True), "One norm over the whole batch (as the official code does) "
                                                     "couples the samples; take ‖y − A x̂₀‖ per sample, "
                                                     "vector_norm(..., dim=1), then sum before autograd.grad."),
        (dps_step(*args, _gen(5), sign=-1.0), "Sign of the step: x_{t−1} − ζ ∇‖y − A x̂₀‖ moves down the "
                                               "residual; you added the gradient."),
        (dps_step(*args, _gen(5), guide=False), "That is the plain DDPM step: subtract scale · ∇_{x_t}‖y − A x̂₀‖."),
        (dps_step(*args, _gen(5), noisy=False), "Add DDPM's noise √β̃ · noise to the posterior mean μ̃."),
    ], f"Your step differs from DDPM's step minus scale · ∇_{{x_t}}‖y − A x̂₀‖ (max |difference| "
       f"{_maxdiff(got, want)}).")


# ------------------------------------------------------------------------------------------- SR3 input

@checker("sr3_input")
def check_sr3_input(sr3_input: Callable) -> None:
    """``sr3_input(x_t, y_low) -> (B, 2, 8, 8)``: x_t beside y_low (B, 1, 4, 4) up-sampled 2× nearest-neighbour."""
    g = _gen(4)
    B = 3
    x_t = torch.randn(B, 1, 8, 8, generator=g, dtype=torch.float64)
    y_low = torch.randn(B, 1, 4, 4, generator=g, dtype=torch.float64)
    try:
        out = sr3_input(x_t.clone(), y_low.clone())
    except RuntimeError as err:
        if "size" in str(err).lower() or "shape" in str(err).lower():
            raise CheckFailed("x_t is 8 × 8 and y_low 4 × 4: up-sample y_low to 8 × 8 before concatenating "
                              f"(F.interpolate(y_low, scale_factor=2, mode='nearest')) ({err}).") from None
        raise
    expect(isinstance(out, Tensor), f"Return one tensor, got a {type(out).__name__}.")
    if out.ndim == 4 and tuple(out.shape) != (B, 2, 8, 8) and out.numel() == 2 * x_t.numel():
        raise CheckFailed(f"Concatenate along the channel dimension, torch.cat([...], dim=1): got shape "
                          f"{tuple(out.shape)}, the network wants (B, 2, 8, 8).")
    out = expect_tensor(out, (B, 2, 8, 8), "sr3_input(x_t, y_low)")
    up = condition(downsample(8, 2), y_low.reshape(B, -1))  # A⁺y: nearest-neighbour for average pooling
    want = torch.cat([x_t, up], 1)
    if matches(out, want, **CLOSE):
        return
    bilinear = F.interpolate(y_low, scale_factor=2, mode="bilinear", align_corners=False)
    diagnose(out, [
        (torch.cat([up, x_t], 1), "Order swapped: the network was trained on [x_t, up(y)], x_t in channel 0."),
        (torch.cat([x_t, bilinear], 1), "Bilinear up-sampling: SR3 used bicubic, but this course's network was "
                                        "trained on A⁺y, which for 2 × 2 averaging is nearest-neighbour "
                                        "(mode='nearest')."),
        (torch.cat([bilinear, x_t], 1), "Bilinear up-sampling and the order swapped: [x_t, nearest(y)]."),
        (torch.cat([x_t, F.interpolate(y_low, scale_factor=2, mode="bicubic", align_corners=False)], 1),
         "Bicubic up-sampling (SR3's choice): this course's network was trained on nearest-neighbour, A⁺y."),
        (torch.cat([x_t, up / 4], 1), "That is Aᵀy, a quarter of each value: the up-sampling is A⁺y = 4 Aᵀy, "
                                      "each low-resolution pixel copied into its 2 × 2 block."),
    ], f"Your input differs from [x_t, nearest-neighbour 2× up-sampling of y_low] (max |difference| "
       f"{_maxdiff(out, want)}).")
