"""Flow matching and rectified flow: couplings, the conditional target, reflow and straightness (chapter 07).

The path is ``processes.rectified()``, x_t = (1 − t) x₀ + t x₁ with **t = 0 data and t = 1 noise** (the diffusion
convention of the course). Lipman et al. (2023), Liu et al. (2022), ``flow_matching`` and ``torchcfm`` run time
the other way (t = 0 noise, t = 1 data): their t is our 1 − t, and their velocity is minus ours.

============  ==========================  ========================================================
code          symbol                      meaning
============  ==========================  ========================================================
``x0``        x₀                          data (or, for reflow, the data end of a generated pair)
``x1``        x₁ = ε                      noise, N(0, I)
``u``         u_t = x₁ − x₀               the conditional velocity d x_t / dt on one straight line
``coupling``  π(x₀, x₁)                   how data and noise are paired: independent, minibatch OT
============  ==========================  ========================================================

The network learns the marginal velocity E[x₁ − x₀ | x_t] (Lipman et al. 2023, Theorem 2); the samplers that
integrate it back from t = 1 to t = 0 are ``samplers.ode_euler`` / ``ode_midpoint`` / ``ode_heun``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .forward import check_batch
from .parameterisations import Denoiser
from .grids import uniform_times
from .processes import check_times, rectified
from .samplers import ode_euler, sample
from .train import TrainResult, train

Coupling = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


# ------------------------------------------------------------------------------------------- couplings

def independent_coupling(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """π = p_data × N(0, I): pair each x₀ with whichever x₁ was drawn beside it (Lipman et al. 2023)."""
    _check_pair(x0, x1)
    return x0, x1


def ot_permutation(x0: Tensor, x1: Tensor) -> Tensor:
    """The permutation σ minimising Σᵢ ‖x₀ᵢ − x₁_σ(i)‖² over a minibatch (exact, Hungarian-type algorithm).

    Tong et al. (2024), "Improving and generalizing flow-based generative models with minibatch optimal
    transport", §3.2; Pooladian et al. (2023). Solved by ``scipy.optimize.linear_sum_assignment``.
    """
    _check_pair(x0, x1)
    cost = torch.cdist(x0.reshape(len(x0), -1).double(), x1.reshape(len(x1), -1).double(),
                       compute_mode="donot_use_mm_for_euclid_dist").square()  # (B, B)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(cols[np.argsort(rows)], device=x0.device)


def ot_coupling(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """Minibatch OT coupling: the same x₀ and x₁, with x₁ re-ordered by ``ot_permutation``."""
    return x0, x1[ot_permutation(x0, x1)]


# ------------------------------------------------------------------------------- the conditional target

def cfm_sample(x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(x_t, u_t): x_t = (1 − t) x₀ + t x₁ and its velocity u_t = x₁ − x₀ (Lipman et al. 2023, Eqs. 20–23,
    σ_min = 0, in our time direction; Liu et al. 2022, Eq. 1). ``t`` is (B,), x₀ and x₁ are (B, …)."""
    _check_pair(x0, x1)
    t = check_times(t, len(x0)).to(x0.device, x0.dtype).reshape((-1,) + (1,) * (x0.ndim - 1))  # (B, 1, …)
    return (1 - t) * x0 + t * x1, x1 - x0


def cfm_loss(model: nn.Module, x0: Tensor, x1: Tensor | None = None, coupling: Coupling = independent_coupling,
             generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
    """E_{t, (x₀, x₁) ~ π} ‖v_θ(x_t, t) − (x₁ − x₀)‖²: the conditional flow-matching loss (Lipman et al. 2023,
    Eq. 9) with coupling π. Without ``x1`` the noise is drawn here; reflow passes its fixed pairs."""
    check_batch(x0, "x0")
    if x1 is None:
        x1 = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x0, x1 = coupling(x0, x1)
    t = torch.rand(len(x0), generator=generator, dtype=torch.float64).to(x0.device)
    x_t, u = cfm_sample(x0, x1, t)
    return ((model(x_t, t, y) - u) ** 2).mean()


def train_flow(model: nn.Module, data: Tensor, *, noise: Tensor | None = None,
               coupling: Coupling = independent_coupling, **training) -> TrainResult:
    """Train a velocity network with ``cfm_loss``: ``train.train``'s loop (AdamW, warm-up then cosine decay, EMA)
    and its keyword arguments (``steps``, ``batch_size``, ``lr``, ``warmup``, ``ema_decay``, ``seed``, …).

    ``noise`` (one x₁ per row of ``data``) fixes the pairs: reflow (Liu et al. 2022, Algorithm 1) trains on the
    (x₀, x₁) a previous flow produced. Otherwise fresh noise is drawn for every batch and paired by ``coupling``.
    The result's ``ema`` is the network to sample with: ``Denoiser(result.ema, rectified(), VELOCITY)``.
    """
    check_batch(data, "data")
    if noise is not None and noise.shape != data.shape:
        raise ValueError(f"noise must have the shape of data {tuple(data.shape)}, got {tuple(noise.shape)}")
    if noise is not None and coupling is not independent_coupling:
        raise ValueError("noise fixes the pairs (reflow): leave coupling as independent_coupling")

    def loss(net: nn.Module, x0: Tensor, idx: Tensor, generator: torch.Generator) -> Tensor:
        x1 = None if noise is None else noise[idx].to(x0.device)
        return cfm_loss(net, x0, x1, coupling, generator)

    return train(model, data, rectified(), loss=loss, **training)


# ------------------------------------------------------------------------------------ reflow, straightness

@torch.no_grad()
def reflow_pairs(denoiser: Denoiser, x1: Tensor, steps: int = 32, sampler=ode_euler,
                 batch_size: int = 1000, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(x₀, x₁): each noise x₁ carried to data x₀ by the flow's ODE, ``steps`` steps of ``sampler`` from t = 1
    to 0. Training a new flow on these pairs is reflow (Liu et al. 2022, Algorithm 1, "Reflow"); the pairs
    cross less than independent ones, so the new flow is straighter. Returns x₀ and x₁ on x₁'s device."""
    check_batch(x1, "x1")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    times = uniform_times(steps)
    chunks = [sample(sampler, denoiser, x1[i:i + batch_size], times,
                     y=None if y is None else y[i:i + batch_size]) for i in range(0, len(x1), batch_size)]
    return torch.cat(chunks), x1


@torch.no_grad()
def straightness(denoiser: Denoiser, x1: Tensor, steps: int = 64, y: Tensor | None = None) -> float:
    """S = ∫₀¹ E‖(x₁ − x₀) − u(x_t, t)‖² dt / D along the flow's own paths: 0 exactly when every path is a
    straight line followed at constant speed (Liu et al. 2022, Eq. 3; here divided by the dimension D, so
    2-D points and images compare). Integrated by Euler with ``steps`` steps from x₁ (t = 1) to x₀ (t = 0)."""
    check_batch(x1, "x1")
    times = uniform_times(steps)
    xs = [x1] + [s.x for s in ode_euler(denoiser, x1, times, y=y)]  # x at every time of the grid
    return trajectory_straightness(torch.stack(xs), times)


def trajectory_straightness(xs: Tensor, times: Tensor) -> float:
    """Liu et al.'s S / D from a path stored at ``times`` (falling from 1 to 0): xs is (K + 1, B, …), the
    velocity on step k is (x_{k+1} − x_k)/(t_{k+1} − t_k) and the straight line's is (x_K − x_0)/(t_K − t_0)."""
    times = torch.as_tensor(times, dtype=torch.float64)
    if xs.shape[0] != len(times) or len(times) < 2:
        raise ValueError(f"xs must hold one state per time ({len(times)} times, ≥ 2), got {xs.shape[0]}")
    dt = times.diff().to(xs.dtype).reshape((-1,) + (1,) * (xs.ndim - 1))  # (K, 1, …), negative
    u = xs.diff(dim=0) / dt  # (K, B, …): each step's velocity
    chord = (xs[-1] - xs[0]) / (times[-1] - times[0]).to(xs.dtype)  # (B, …): the straight line's velocity
    per_step = (chord - u).flatten(2).square().mean(dim=(1, 2))  # (K,): E‖·‖²/D on each step
    return float((per_step * dt.flatten().abs()).sum() / dt.abs().sum())


def _check_pair(x0: Tensor, x1: Tensor) -> None:
    check_batch(x0, "x0")
    check_batch(x1, "x1")
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
