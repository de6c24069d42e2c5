"""Restoration by training: SR3, a diffusion model conditioned on the measurement (Saharia et al. 2022), and the
network trained with plain MSE that it is compared with (chapter 08).

SR3 feeds the low-resolution image, up-sampled to the output's size, to the U-Net as extra input channels beside
x_t (Saharia et al. 2022, §2.2, who up-sample bicubically); here the up-sampling is A⁺y, which for average pooling
is nearest-neighbour, so the same code serves any operator. Sampling is any chapter-04 sampler with y = A⁺y:
``sr3`` has the training-free solvers' signature. The MSE network maps A⁺y straight to x̂ and so learns the
conditional mean E[x | y]: the best PSNR, and the blur that the posterior samples do not have.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from ..nets import UNet
from ..parameterisations import Parameterisation, V
from ..samplers.common import Model, Step
from ..samplers.discrete import ddpm
from ..schedules import NoiseSchedule
from ..train import TrainResult, train
from .operators import LinearOperator
from .solvers import _check


def condition(op: LinearOperator, y: Tensor) -> Tensor:
    """SR3's conditioning image A⁺y, (B, *image_shape): what the network sees of the measurement."""
    return op.pinv(y)


def train_sr3(model: UNet, x: Tensor, op: LinearOperator, schedule, *, parameterisation: Parameterisation = V,
              **kwargs) -> TrainResult:
    """Train a U-Net with ``cond_channels`` = C on pairs (x, A⁺A x): ``train`` with the conditioning images as its
    labels y, the model's second input (noise-free measurements: SR3 trains for σ_y = 0)."""
    if getattr(model, "cond_channels", 0) != op.image_shape[0]:
        raise ValueError(f"model must be a UNet with cond_channels={op.image_shape[0]} (the image's channels), "
                         f"got cond_channels={getattr(model, 'cond_channels', None)}")
    return train(model, x, schedule, labels=condition(op, op(x)), parameterisation=parameterisation, **kwargs)


def sr3(model: Model, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, y: Tensor, op: LinearOperator,
        sigma_y: float = 0.0, generator: torch.Generator | None = None,
        sampler: Callable[..., Iterator[Step]] = ddpm) -> Iterator[Step]:
    """Sample the conditional model with ``sampler`` (DDPM, as Saharia et al.) given the measurement y: the
    training-free solvers' signature, so it sits in the same comparison. NFE = steps."""
    y = _check(x_T, y, op, sigma_y)
    yield from sampler(model, x_T, schedule, steps, y=condition(op, y), generator=generator)


class Regressor(nn.Module):
    """x̂ = f(A⁺y): a U-Net run once, at a fixed time, on the conditioning image; trained with plain MSE."""

    def __init__(self, **unet):
        super().__init__()
        self.net = UNet(**unet)

    def forward(self, cond: Tensor) -> Tensor:
        return self.net(cond, torch.zeros(len(cond), dtype=torch.long, device=cond.device))

    def restore(self, y: Tensor, op: LinearOperator) -> Tensor:
        """The restoration of measurements y (B, m), (B, *image_shape)."""
        return self(condition(op, y))


def train_mse(model: Regressor, x: Tensor, op: LinearOperator, **kwargs) -> TrainResult:
    """Fit ``model`` to E[x | y] by minimising ‖f(A⁺A x) − x‖² over the data (``train``'s loop, its ``loss`` hook)."""
    cond = condition(op, op(x))

    def loss(net, x0, idx, generator):
        return ((net(cond[idx].to(x0)) - x0) ** 2).mean()

    return train(model, x, None, loss=loss, **kwargs)
