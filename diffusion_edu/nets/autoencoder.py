"""A KL-regularised convolutional autoencoder (chapter 09), the first stage of latent diffusion.

Rombach et al. (2022), §3 and Appendix G: an encoder E maps an image x (3, H, W) to a diagonal Gaussian
q(z | x) = N(μ(x), diag σ²(x)) over latents z (c_z, H/f, W/f), a decoder D maps z back, and a small KL term
pulls q(z | x) towards N(0, I) so the latent space stays smooth and bounded:

    L = ‖x − D(z)‖² + β · KL(q(z | x) ‖ N(0, I)),     z = μ + σ ⊙ ε (the reparameterisation trick),
    KL = ½ Σ (μ² + σ² − 1 − log σ²)                 (Kingma & Welling 2014, Appendix B)

both sums over an image's pixels (or latent entries), averaged over the batch. Rombach et al. add a
perceptual and a GAN loss for sharp faces; the course's flat-coloured scenes need only the squared error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Block(nn.Module):
    """GroupNorm → SiLU → conv, twice, plus a skip: the U-Net's residual block without a time embedding."""

    def __init__(self, c_in: int, c_out: int, groups: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(min(groups, c_in), c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
                                  nn.GroupNorm(min(groups, c_out), c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag e^logvar) ‖ N(0, I)) per example: ½ Σ (μ² + σ² − 1 − log σ²) over all but the batch dimension."""
    return 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)  # (B,)


class Autoencoder(nn.Module):
    """Encoder and decoder with ``channels[i]`` feature maps at level i (resolution H / 2^i) and ``z_channels``
    latent channels: an image (B, in_channels, H, W) ↔ latents (B, z_channels, H / f, W / f), f = 2^(levels − 1)."""

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (32, 64, 64), z_channels: int = 4,
                 groups: int = 8):
        super().__init__()
        self.in_channels, self.z_channels, self.factor = in_channels, z_channels, 2 ** (len(channels) - 1)
        enc: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 3, padding=1)]
        c = channels[0]
        for level, c_out in enumerate(channels):
            enc.append(Block(c, c_out, groups))
            c = c_out
            if level < len(channels) - 1:
                enc.append(nn.Conv2d(c, c, 3, stride=2, padding=1))  # H → H/2
        enc += [Block(c, c, groups), nn.GroupNorm(min(groups, c), c), nn.SiLU(), nn.Conv2d(c, 2 * z_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(z_channels, c, 3, padding=1), Block(c, c, groups)]
        for level, c_out in reversed(list(enumerate(channels))):
            dec.append(Block(c, c_out, groups))
            c = c_out
            if level > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]  # H/2 → H
        dec += [nn.GroupNorm(min(groups, c), c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | x): its mean and log-variance, each (B, z_channels, H / f, W / f)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W) with H and W divisible by "
                             f"{self.factor}, got {tuple(x.shape)}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # as Rombach et al.'s DiagonalGaussianDistribution: exp() stays finite

    def decode(self, z: Tensor) -> Tensor:
        """D(z): latents (B, z_channels, h, w) → images (B, in_channels, f·h, f·w)."""
        if z.ndim != 4 or z.shape[1] != self.z_channels:
            raise ValueError(f"z must have shape (B, {self.z_channels}, h, w), got {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(D(z), μ, log σ²) with z = μ + σ ⊙ ε drawn from q(z | x) (the reparameterisation trick)."""
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.decode(mean + (0.5 * logvar).exp() * eps), mean, logvar


def autoencoder_loss(ae: Autoencoder, x: Tensor, beta: float,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(L, reconstruction term, KL term) of the module docstring's loss on a batch, each averaged over it."""
    x_hat, mean, logvar = ae(x, generator)
    recon = (x_hat - x).pow(2).flatten(1).sum(1).mean()
    kl = kl_divergence(mean, logvar).mean()
    return recon + beta * kl, recon, kl


@dataclass
class AutoencoderResult:
    model: Autoencoder
    losses: list[tuple[float, float]] = field(default_factory=list)  # (reconstruction, KL) per step
    seconds: float = 0.0


def train_autoencoder(ae: Autoencoder, data: Tensor, *, beta: float = 1e-3, steps: int = 2000, batch_size: int = 64,
                      lr: float = 1e-3, seed: int = 0) -> AutoencoderResult:
    """Minimise ``autoencoder_loss`` with AdamW and a cosine decay of the learning rate; seeded, in eval mode after."""
    if beta < 0:
        raise ValueError(f"beta (the KL weight) must be ≥ 0, got {beta}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be ≥ 1, got steps={steps}, batch_size={batch_size}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    device = next(ae.parameters()).device
    opt = torch.optim.AdamW(ae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    result = AutoencoderResult(ae)
    ae.train()
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (min(batch_size, len(data)),), generator=g)
        loss, recon, kl = autoencoder_loss(ae, data[idx].to(device), beta, g if device.type == "cpu" else None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        result.losses.append((recon.item(), kl.item()))
    result.seconds = time.perf_counter() - start
    ae.eval()
    return result
