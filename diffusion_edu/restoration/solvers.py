"""Training-free restoration: sample p(x | y) for y = A x + σ_y n with an unconditional diffusion prior (chapter 08).

Every solver has one signature, ``solver(model, x_T, schedule, steps, *, y, op, sigma_y=0.0, generator=None)``,
chapter 04's sampler signature plus the measurement: ``y`` (B, m) is what was measured through ``op`` (a
``operators.LinearOperator``) with noise σ_y, in the data's own units ([−1, 1] for digits). ``model`` is the
*unconditional* prior (an ε-model or a ``Denoiser`` on ``schedule``). Each is a generator of ``Step``s on the
trailing grid of ``samplers.timesteps``; ``samplers.sample`` runs one to the end.

==========  ================================================  ==========================================
solver      how y enters                                      source
==========  ================================================  ==========================================
``sdedit``  start from A⁺y noised to t₀, then plain DDPM       Meng et al. 2022, §3 (Algorithm 1)
``repaint`` replace the measured part by y noised to t − 1,    Lugmayr et al. 2022, Algorithm 1
            and resample (go back a step) U times
``dps``     a gradient step on ‖y − A x̂₀(x_t)‖ after DDPM's    Chung et al. 2023, Algorithm 1
``ddrm``    DDIM in A's SVD basis: measured directions are     Kawar et al. 2022, Eqs. 7–8
            pulled to ȳ = Σ⁺Uᵀy by their noise level
``tmpd``    a Kalman update of x̂₀ by y, with Tweedie's        Boys et al. 2023
            covariance C_t = (σ²/α) ∂x̂₀/∂x_t
==========  ================================================  ==========================================
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from ..samplers.common import Model, Step, noise_like, start
from ..samplers.discrete import _call, alpha_bar_grid, ddpm_step, sigma_grid, timesteps
from ..schedules import NoiseSchedule
from .operators import LinearOperator


def _x0(x: Tensor, eps: Tensor, abar: float) -> Tensor:
    return (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)  # Tweedie's x̂₀, Ho et al. (2020), Eq. 15


def _check(x_T: Tensor, y: Tensor, op: LinearOperator, sigma_y: float) -> Tensor:
    start(x_T)
    if not isinstance(op, LinearOperator):
        raise TypeError(f"op must be a restoration.operators.LinearOperator, got {type(op).__name__}")
    if tuple(x_T.shape[1:]) != op.image_shape:
        raise ValueError(f"x_T must be a batch of images of shape (B, {', '.join(map(str, op.image_shape))}) "
                         f"for {op.name}, got {tuple(x_T.shape)}")
    y = op.check_measurement(y)
    if len(y) != len(x_T):
        raise ValueError(f"y must hold one measurement per sample: x_T has {len(x_T)}, y has {len(y)} "
                         "(repeat y, e.g. y.expand(len(x_T), -1), to draw several samples of one posterior)")
    if sigma_y < 0:
        raise ValueError(f"sigma_y must be ≥ 0 (the measurement noise's standard deviation), got {sigma_y}")
    return y.to(x_T)


@torch.no_grad()
def sdedit(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor, op: LinearOperator,
           sigma_y: float = 0.0, generator: torch.Generator | None = None, strength: float = 0.5) -> Iterator[Step]:
    """SDEdit, Meng et al. (2022), Algorithm 1: x_{t₀} = √ᾱ A⁺y + √(1 − ᾱ) x_T, then DDPM from t₀ to 0.

    t₀ is the first step of the ``steps``-step grid at or below ``strength``·T, so it makes about strength·steps
    updates. A guide, not a posterior sampler: nothing holds the result to y (a small ``strength`` stays
    faithful to the guess A⁺y, a large one forgets it).
    """
    y = _check(x_T, y, op, sigma_y)
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1] (t₀ = strength·T), got {strength}")
    grid = [g for g in alpha_bar_grid(schedule, steps) if g[0] < strength * schedule.T] or alpha_bar_grid(schedule, steps)[-1:]
    abar0 = grid[0][1]
    x = math.sqrt(abar0) * op.pinv(y) + math.sqrt(1 - abar0) * x_T  # q(x_{t₀} | A⁺y), chapter 01
    for t, abar, abar_prev in grid:
        x0 = _x0(x, _call(model, x, t, None), abar)
        x = ddpm_step(x, x0, abar, abar_prev, generator)
        yield Step(t, x, x0)


@torch.no_grad()
def repaint(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor, op: LinearOperator,
            sigma_y: float = 0.0, generator: torch.Generator | None = None, resample: int = 10) -> Iterator[Step]:
    """RePaint, Lugmayr et al. (2022), Algorithm 1: after each DDPM step the measured part of x is replaced by
    y noised to the same level, x ← (I − A⁺A) x + A⁺(√ᾱ y + √(1 − ᾱ) A ε) (for a mask, Eq. 8's merge
    m ⊙ known + (1 − m) ⊙ unknown), and each step is redone ``resample`` times (U), going back by a fresh
    forward step x_t ~ q(x_t | x_{t−1}) in between, so the unknown part can adjust to the known. Treats y as
    noise-free. NFE = ``resample``·steps.
    """
    y = _check(x_T, y, op, sigma_y)
    if resample < 1:
        raise ValueError(f"resample must be ≥ 1 (U, the passes over each step), got {resample}")
    x = x_T
    for t, abar, abar_prev in alpha_bar_grid(schedule, steps):
        for u in range(resample):
            x0 = _x0(x, _call(model, x, t, None), abar)
            unknown = ddpm_step(x, x0, abar, abar_prev, generator)  # Algorithm 1, line 7
            known = math.sqrt(abar_prev) * y + math.sqrt(1 - abar_prev) * op(noise_like(x, generator))  # line 5
            x_prev = op.project(unknown, known)  # line 8
            if u < resample - 1 and abar_prev < 1:  # lines 9–10: back to t, x_t ~ N(√(1 − β) x_{t−1}, β I)
                beta = 1 - abar / abar_prev
                x = math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * noise_like(x, generator)
        x = x_prev
        yield Step(t, x, x0)


def dps(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor, op: LinearOperator,
        sigma_y: float = 0.0, generator: torch.Generator | None = None, scale: float = 1.0) -> Iterator[Step]:
    """Diffusion posterior sampling, Chung et al. (2023), Algorithm 1: a DDPM step, then
    x_{t−1} ← x_{t−1} − ζ ∇_{x_t} ‖y − A x̂₀(x_t)‖, the gradient through the network of Tweedie's x̂₀.

    Where the paper and its code differ (DPS2022/diffusion-posterior-sampling, issues 6 and 20), this follows
    the code: the norm is not squared, which is the paper's ζ_t = ζ′/‖y − A x̂₀‖ on the squared norm with
    ``scale`` = 2ζ′ (its "normalised step"); but each sample has its own norm (the code takes one norm over the
    whole batch, which couples the samples). σ_y is in the data's units: the code's σ_y = 0.05 is on [−1, 1]
    images, i.e. 0.025 on the paper's [0, 1]. σ_y itself does not enter the step. NFE = steps (plus a backward
    pass through the network each).
    """
    y = _check(x_T, y, op, sigma_y)
    x = x_T
    for t, abar, abar_prev in alpha_bar_grid(schedule, steps):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0 = _x0(x_in, _call(model, x_in, t, None), abar)
            residual = torch.linalg.vector_norm(y - op(x0), dim=1)  # ‖y − A x̂₀‖ per sample, (B,)
            grad, = torch.autograd.grad(residual.sum(), x_in)
        with torch.no_grad():
            x = ddpm_step(x, x0.detach(), abar, abar_prev, generator) - scale * grad
        yield Step(t, x, x0.detach())


@torch.no_grad()
def ddrm(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor, op: LinearOperator,
         sigma_y: float = 0.0, generator: torch.Generator | None = None, eta: float = 0.85,
         eta_b: float = 1.0) -> Iterator[Step]:
    """Denoising diffusion restoration models, Kawar et al. (2022), Eqs. 7–8 (their defaults η = 0.85, η_b = 1).

    In σ-space x̃ = x₀ + σε and A's SVD basis, x̄ = Vᵀx̃ and ȳ = Σ⁺Uᵀy (so ȳ_i = x̄₀_i + (σ_y/s_i) n_i for
    s_i > 0): a direction A does not see takes a DDIM step (η); a measured one whose noise σ_y/s_i is above
    the next σ is pulled to ȳ; one below it is ȳ plus just the noise still missing. NFE = steps.
    """
    y = _check(x_T, y, op, sigma_y).double()
    if not (0 <= eta <= 1 and 0 <= eta_b <= 1):
        raise ValueError(f"eta and eta_b must be in [0, 1], got eta={eta}, eta_b={eta_b}")
    U, s, V = op.svd  # float64; s (m,), V (D, D)
    D, seen = op.dim, s > 1e-6 * s.max()
    s_full = torch.zeros(D, dtype=torch.float64)
    s_full[:len(s)][seen] = s[seen]
    measured = s_full > 0  # (D,): directions of Vᵀx that y sees
    y_bar = torch.zeros(len(y), D, dtype=torch.float64)
    y_bar[:, :len(s)][:, seen] = (y @ U)[:, seen] / s[seen]  # ȳ = Σ⁺Uᵀy
    noise_y = torch.where(measured, sigma_y / s_full.clamp_min(1e-300), torch.inf)  # σ_y/s_i, ∞ where unseen
    grid = sigma_grid(schedule, steps)
    shape, dtype = x_T.shape, x_T.dtype
    flat = lambda x: x.reshape(len(x), -1).double()  # noqa: E731
    z = flat(x_T) @ V  # the start's noise in the SVD basis (V is orthogonal: still N(0, I))
    sigma_T = grid[0][1]
    x_bar = torch.where(measured, y_bar + (sigma_T**2 - noise_y.clamp(max=sigma_T)**2).sqrt() * z, sigma_T * z)  # Eq. 7
    for t, sigma, sigma_next in grid:
        x_t = (x_bar @ V.T).to(dtype).reshape(shape) / math.sqrt(1 + sigma**2)  # x̃ back to what the network sees
        x0 = x_t * math.sqrt(1 + sigma**2) - sigma * _call(model, x_t, t, None)  # x̂₀ = x̃ − σ ε̂
        x0_bar, z = flat(x0) @ V, flat(noise_like(x_T, generator)) @ V
        unseen = x0_bar + math.sqrt(1 - eta**2) * sigma_next * (x_bar - x0_bar) / sigma + eta * sigma_next * z
        noisier = x0_bar + math.sqrt(1 - eta**2) * sigma_next * (y_bar - x0_bar) / noise_y + eta * sigma_next * z
        cleaner = ((1 - eta_b) * x0_bar + eta_b * y_bar
                   + (sigma_next**2 - eta_b**2 * noise_y.clamp(max=sigma_next)**2).clamp_min(0).sqrt() * z)  # Eq. 8
        x_bar = torch.where(~measured, unseen, torch.where(sigma_next < noise_y, noisier, cleaner))
        yield Step(t, (x_bar @ V.T).to(dtype).reshape(shape) / math.sqrt(1 + sigma_next**2), x0)


def tmpd(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor, op: LinearOperator,
         sigma_y: float = 0.0, generator: torch.Generator | None = None) -> Iterator[Step]:
    """Tweedie moment projection, Boys et al. (2023): treat x₀ | x_t as N(x̂₀, C_t) with Tweedie's covariance
    C_t = (σ²/α) ∂x̂₀/∂x_t, so y updates x̂₀ as a Kalman step, x̂₀ ← x̂₀ + C_t Aᵀ (A C_t Aᵀ + σ_y² I)⁻¹ (y − A x̂₀),
    then DDPM steps with it. Exact for a Gaussian prior (then x₀ | x_t *is* that Gaussian), so it is the
    reference of chapter 08's test bench. A C_t is m vector–Jacobian products: NFE = steps, plus m backward
    passes per step.
    """
    y = _check(x_T, y, op, sigma_y).double()
    A = op.matrix.to(x_T)  # (m, D)
    x = x_T
    for t, abar, abar_prev in alpha_bar_grid(schedule, steps):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0 = _x0(x_in, _call(model, x_in, t, None), abar).reshape(len(x), -1)  # (B, D)
            AJ = torch.stack([torch.autograd.grad((x0 @ a).sum(), x_in, retain_graph=True)[0].reshape(len(x), -1)
                              for a in A], 1).double()  # (B, m, D): row i is a_iᵀ ∂x̂₀/∂x_t, per sample
        AC = (1 - abar) / math.sqrt(abar) * AJ  # A C_t, C_t = (σ²/α) J
        S = AC @ A.double().T + sigma_y**2 * torch.eye(op.m, dtype=torch.float64)  # A C_t Aᵀ + σ_y² I, (B, m, m)
        r = y - x0.detach().double() @ A.double().T  # y − A x̂₀, (B, m)
        x0 = x0.detach().double() + (AC.transpose(1, 2) @ torch.linalg.solve(S, r[..., None]))[..., 0]
        x0 = x0.to(x.dtype).reshape(x.shape)
        x = ddpm_step(x, x0, abar, abar_prev, generator)
        yield Step(t, x, x0)


SOLVERS = (sdedit, repaint, dps, ddrm, tmpd)


def restoration_evaluations(solver, schedule: NoiseSchedule, steps: int, **kwargs) -> int:
    """Network calls (NFE) one restoration makes with these keyword arguments: RePaint's resampling multiplies
    them, SDEdit's t₀ cuts them; DPS makes a backward pass beside each (not counted here)."""
    if solver is repaint:
        return steps * kwargs.get("resample", 10)
    if solver is sdedit:
        return max(1, sum(t < kwargs.get("strength", 0.5) * schedule.T for t in timesteps(schedule, steps)))
    return steps
