"""A small U-Net denoiser for images (chapter 03), in the shape of Ho et al. (2020), Appendix B.

Residual blocks with GroupNorm and a FiLM of the time (and label) embedding, self-attention at chosen
levels, a down path and an up path joined by skip connections. ``model(x, t, y=None) → ε̂`` like every
denoiser in the course (see ``nn``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .embeddings import LabelEmbedding, TimeEmbedding, embed


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, then FiLM by the embedding (h·(1 + scale) + shift), GroupNorm → SiLU → conv, + skip.

    FiLM: Perez et al. (2018); its use here follows Dhariwal & Nichol (2021), §3 ("AdaGN").
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (Goyal et al. 2017)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, c_out, H, W)
        scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # (B, c_out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions, with a residual connection (Vaswani et al. 2017)."""

    def __init__(self, channels: int, groups: int, heads: int = 1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (B, heads, HW, C/heads) each
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √d) v
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj(h)


class UNet(nn.Module):
    """U-Net ε-predictor: ``channels[i]`` feature maps at level i (resolution H / 2^i).

    ``attention_levels`` lists the levels with self-attention (indexed like ``channels``, −1 = deepest); ``num_classes`` makes it class-conditional
    (with a null class for classifier-free guidance). Input (B, in_channels, H, W) with H, W divisible by
    2^(len(channels) − 1); output the same shape. ``cond_channels`` > 0 conditions it on an image instead: y is
    then (B, cond_channels, H, W), concatenated to x as extra input channels (SR3, Saharia et al. 2022, §2.2).
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 64), num_res_blocks: int = 1,
                 attention_levels: tuple[int, ...] = (-1,), num_classes: int | None = None, groups: int = 8,
                 dropout: float = 0.0, heads: int = 1, time_scale: float = 1.0, cond_channels: int = 0):
        super().__init__()
        if cond_channels and num_classes:
            raise ValueError("a UNet is conditioned on labels (num_classes) or on an image (cond_channels), not both")
        if not channels or any(c % min(groups, c) for c in channels):
            raise ValueError(f"channels must be a non-empty tuple of multiples of groups ({groups}), got {channels}")
        if any(not -len(channels) <= a < len(channels) for a in attention_levels):
            raise ValueError(f"attention_levels must index channels (like a list, −1 = deepest), "
                             f"got {attention_levels} for {len(channels)} levels")
        attention_levels = {a % len(channels) for a in attention_levels}
        self.in_channels, self.num_classes, self.levels = in_channels, num_classes, len(channels)
        self.cond_channels = cond_channels
        self.time = TimeEmbedding(channels[0], scale=time_scale)  # time_scale: as TimeEmbedding's
        emb = self.time.out_dim
        self.labels = LabelEmbedding(num_classes, emb) if num_classes else None
        attn = lambda c, level: SelfAttention(c, groups, heads) if level in attention_levels else nn.Identity()  # noqa: E731

        self.conv_in = nn.Conv2d(in_channels + cond_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips, c = [channels[0]], channels[0]  # channel count of every skip, in push order
        for level, c_out in enumerate(channels):
            for _ in range(num_res_blocks):
                self.down.append(nn.ModuleList([ResBlock(c, c_out, emb, groups, dropout), attn(c_out, level)]))
                c = c_out
                skips.append(c)
            if level < self.levels - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))  # H → H/2
                skips.append(c)
        self.mid1 = ResBlock(c, c, emb, groups, dropout)
        self.mid_attn = SelfAttention(c, groups, heads)
        self.mid2 = ResBlock(c, c, emb, groups, dropout)
        self.up = nn.ModuleList()
        for level, c_out in reversed(list(enumerate(channels))):
            for _ in range(num_res_blocks + 1):
                self.up.append(nn.ModuleList([ResBlock(c + skips.pop(), c_out, emb, groups, dropout),
                                              attn(c_out, level)]))
                c = c_out
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, c, 3, padding=1)))  # H/2 → H
        self.norm_out = nn.GroupNorm(min(groups, c), c)
        self.conv_out = nn.Conv2d(c, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # start by predicting ε̂ = 0
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        factor = 2 ** (self.levels - 1)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W) with H and W divisible by "
                             f"{factor}, got {tuple(x.shape)}")
        if self.cond_channels:
            if y is None or y.shape != (x.shape[0], self.cond_channels, *x.shape[2:]):
                raise ValueError(f"y must be the conditioning image, shape {(x.shape[0], self.cond_channels, *x.shape[2:])}, "
                                 f"got {None if y is None else tuple(y.shape)}")
            x, y = torch.cat([x, y.to(x)], dim=1), None  # (B, in + cond channels, H, W)
        emb = embed(self.time, self.labels, x, t, y)  # (B, E)
        h = self.conv_in(x)  # (B, channels[0], H, W)
        skips = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, nn.Conv2d) else layer[1](layer[0](h, emb))
            skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)  # (B, channels[-1], H/factor, W/factor)
        for layer in self.up:
            if isinstance(layer, nn.Sequential):
                h = layer(h)
            else:
                h = layer[1](layer[0](torch.cat([h, skips.pop()], dim=1), emb))
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, in_channels, H, W)
