"""What every sampler shares: the step record, the one call that runs a sampler to the end, and noise."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..forward import check_batch

Model = Callable[..., Tensor]


@dataclass
class Step:
    """One sampler update: the time the model was called at, the new sample, and the model's x̂_0.

    ``t`` is an integer step on a discrete schedule and a float time in [0, 1] on a continuous path.
    """

    t: int | float
    x: Tensor   # the sample after the update (B, …)
    x0: Tensor  # the prediction of clean data made at t (B, …)


def sample(sampler: Callable[..., Iterator[Step]], *args, **kwargs) -> Tensor:
    """Run ``sampler(*args, **kwargs)`` to the end and return its last sample,
    e.g. ``sample(ddim, model, x_T, schedule, 50, eta=0.0)`` or ``sample(euler_maruyama, denoiser, x_1, times)``."""
    step = None
    for step in sampler(*args, **kwargs):
        pass
    if step is None:
        raise ValueError(f"{getattr(sampler, '__name__', sampler)} made no update: its grid has no steps")
    return step.x


def start(x_T: Tensor) -> Tensor:
    check_batch(x_T, "x_T")
    return x_T


def check_output(out: Tensor, x: Tensor) -> Tensor:
    if out.shape != x.shape:
        raise ValueError(f"model output must have the shape of x {tuple(x.shape)}, got {tuple(out.shape)}")
    return out


def noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise like x, drawn on the generator's device (as diffusers' randn_tensor does)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
