"""Latent diffusion (chapter 09): diffuse in an autoencoder's latent space, then decode.

Rombach et al. (2022), §3.2: train any diffusion model on z = s · μ(x), the encoder's mean scaled by one
number s, sample z₀ with any sampler, and decode x = D(z₀ / s). The **scale factor** s = 1 / std(μ(x)) over
the training latents (their §4.3.2 and Appendix G; Stable Diffusion's 0.18215 is this number for its
autoencoder): the forward process q(z_t | z₀) = N(α z₀, σ² I) and its prior N(0, I) assume unit-variance
data, and latents of standard deviation s⁻¹ shift every noise level's signal-to-noise ratio by s⁻², so the
schedule spends its steps in the wrong place (chapter 09 measures it).

The diffusion model, its training and its samplers are the course's own, unchanged: only the data differ.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .nets.autoencoder import Autoencoder


@torch.no_grad()
def latent_scale(ae: Autoencoder, data: Tensor, batch_size: int = 500) -> float:
    """s = 1 / std(μ(x)) over ``data``: the number that gives the latents unit variance (one scalar, all entries)."""
    mean = torch.cat([ae.encode(x)[0] for x in data.split(batch_size)])
    return 1.0 / mean.std().item()


@torch.no_grad()
def encode(ae: Autoencoder, x: Tensor, scale: float, batch_size: int = 500) -> Tensor:
    """Images → diffusion data: z = s · μ(x), (B, z_channels, H / f, W / f)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive (1 / std of the latents), got {scale}")
    return torch.cat([ae.encode(b)[0] for b in x.split(batch_size)]) * scale


@torch.no_grad()
def decode(ae: Autoencoder, z: Tensor, scale: float, batch_size: int = 500) -> Tensor:
    """Diffusion samples → images: x = D(z / s), clamped to the data's range [−1, 1]."""
    if scale <= 0:
        raise ValueError(f"scale must be positive (1 / std of the latents), got {scale}")
    return torch.cat([ae.decode(b / scale) for b in z.split(batch_size)]).clamp(-1, 1)
