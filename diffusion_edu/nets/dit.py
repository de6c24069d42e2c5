"""The diffusion transformer (chapter 10): Peebles & Xie (2023), "Scalable Diffusion Models with Transformers".

An image becomes a sequence of patch tokens (``patchify``), a fixed 2-D sin-cos position is added
(``sincos_2d``), transformer blocks that see the conditioning c = e_t + e_y (time and label embeddings) turn the
sequence into one of the same length, and a final layer maps each token back to its patch (``unpatchify``).
``model(x, t, y=None) → prediction shaped like x``, like every denoiser in the course (``embeddings``).

The paper's ablation (§3.2, Fig. 5) asks *where c enters*. Each answer is a class: ``DiT`` (adaLN-Zero, the
paper's model), ``AdaLNDiT``, ``CrossAttentionDiT`` and ``InContextDiT`` subclass it and swap only what differs,
their block and final layer, and for in-context conditioning the way the sequence is assembled (``trunk``).
Classes rather than a ``conditioning="…"`` string: in-context conditioning changes the sequence, not just the
block, and the final layer changes with the block, so a name would need a switch in three places;
a subclass names the three things in one place, cannot be misspelt at run time, and keeps the
adaLN-Zero path free of the other variants' branches. All variants take the conditioning as tokens
(B, K, D): e_t, then e_y when the model is conditional (the paper's "two additional tokens"); the adaLN
blocks use their sum. Every variant starts by predicting 0 (a zero-initialised output layer, as the U-Net).

Notation: B batch, C channels, H × W image, p patch size, N = (H/p)(W/p) tokens, D width, K conditioning tokens.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .embeddings import LabelEmbedding, TimeEmbedding, embed, timestep_embedding


def patchify(x: Tensor, p: int) -> Tensor:
    """Cut an image into non-overlapping p × p patches, each flattened (channel, row, column) into a token.

    Dosovitskiy et al. (2021), §3.1 (ViT); Peebles & Xie (2023), §3.1; chapter 10. (B, C, H, W) → (B, N, p²C),
    token k = i · (W/p) + j holding x[:, :, ip:(i+1)p, jp:(j+1)p]. A linear map of the tokens is a Conv2d
    with kernel = stride = p.
    """
    if x.ndim != 4 or x.shape[2] % p or x.shape[3] % p:
        raise ValueError(f"x must have shape (B, C, H, W) with H and W divisible by the patch size p = {p}, "
                         f"got {tuple(x.shape)}")
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)  # (B, C, H/p, p, W/p, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, p²C)


def unpatchify(tokens: Tensor, p: int, channels: int, h: int, w: int) -> Tensor:
    """Put the patches back where ``patchify`` took them from: its exact inverse (chapter 10).

    (B, N, p²C) → (B, C, h, w), with h, w the image's height and width in pixels.
    """
    if h % p or w % p or tokens.ndim != 3 or tokens.shape[1:] != ((h // p) * (w // p), p * p * channels):
        raise ValueError(f"tokens must have shape (B, {(h // p) * (w // p)}, {p * p * channels}) for {channels} "
                         f"channels of {h}×{w} with p = {p} (h, w divisible by p), got {tuple(tokens.shape)}")
    B = tokens.shape[0]
    x = tokens.reshape(B, h // p, w // p, channels, p, p)  # (B, H/p, W/p, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, H/p, p, W/p, p)
    return x.reshape(B, channels, h, w)  # (B, C, H, W)


def sincos_2d(width: int, grid_h: int, grid_w: int, device: torch.device | None = None) -> Tensor:
    """Fixed 2-D positions: the first width/2 features embed the row i, the last width/2 the column j.

    Each half is the 1-D sinusoid of Vaswani et al. (2017), §3.5 (``timestep_embedding``) of one coordinate,
    as DiT's ``get_2d_sincos_pos_embed`` (MAE's; Peebles & Xie 2023, §3.1; DiT puts j first). Chapter 10.
    → (grid_h · grid_w, width), row k = i · grid_w + j: the order of ``patchify``'s tokens.
    """
    if width % 4:
        raise ValueError(f"width must be a multiple of 4 (a cos and a sin half for each axis), got {width}")
    i, j = torch.meshgrid(torch.arange(grid_h, device=device), torch.arange(grid_w, device=device), indexing="ij")
    return torch.cat([timestep_embedding(i.flatten(), width // 2),
                      timestep_embedding(j.flatten(), width // 2)], dim=1)  # (N, width)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x · (1 + γ) + β: adaptive layer norm's affine step, γ and β regressed from c (Peebles & Xie 2023, §3.2)."""
    return x * (1 + scale) + shift


def _zero(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Attention(nn.Module):
    """Multi-head attention from tokens x to tokens ``context`` (x itself by default): Vaswani et al. (2017), §3.2.

    (B, L, D), context (B, M, D) → (B, L, D).
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.heads = heads
        self.q, self.kv, self.proj = nn.Linear(width, width), nn.Linear(width, 2 * width), nn.Linear(width, width)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        B, L, D = x.shape
        q = self.q(x).reshape(B, L, self.heads, D // self.heads).transpose(1, 2)  # (B, heads, L, D/heads)
        kv = self.kv(context).reshape(B, -1, 2, self.heads, D // self.heads)  # (B, M, 2, heads, D/heads)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, M, D/heads) each
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √d) v
        return self.proj(h.transpose(1, 2).reshape(B, L, D))  # (B, L, D)


def mlp(width: int, ratio: float) -> nn.Sequential:
    """The transformer's position-wise MLP, width → ratio · width → width with GELU (tanh form, as DiT)."""
    hidden = int(width * ratio)
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))


class AdaLNZeroBlock(nn.Module):
    """DiT block: h + α₁ · attn(modulate(LN(h), β₁, γ₁)), then h + α₂ · mlp(modulate(LN(h), β₂, γ₂)).

    Peebles & Xie (2023), §3.2, Fig. 3 (adaLN-Zero): the six vectors are a linear map of SiLU(c), c = e_t + e_y,
    zero-initialised so that every gate α starts at 0 and the block at the identity. h (B, L, D), cond (B, K, D).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)  # γ, β come from c instead
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(width, mlp_ratio)
        self.modulation = _zero(nn.Linear(width, 6 * width))  # the "Zero": α = β = γ = 0 at init

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        c = cond.sum(dim=1)  # (B, D): e_t + e_y
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c))[:, None].chunk(6, dim=-1)
        h = h + gate1 * self.attn(modulate(self.norm1(h), shift1, scale1))  # (B, 1, D) vectors broadcast over L
        return h + gate2 * self.mlp(modulate(self.norm2(h), shift2, scale2))


class AdaLNBlock(AdaLNZeroBlock):
    """The ablation's adaLN block: γ, β regressed from c, but no gate α and no zero init (Peebles & Xie 2023, §3.2).

    It does not start as the identity. h (B, L, D), cond (B, K, D).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__(width, heads, mlp_ratio)
        self.modulation = nn.Linear(width, 4 * width)  # β, γ for each sub-layer; PyTorch's default init

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        shift1, scale1, shift2, scale2 = self.modulation(F.silu(cond.sum(dim=1)))[:, None].chunk(4, dim=-1)
        h = h + self.attn(modulate(self.norm1(h), shift1, scale1))
        return h + self.mlp(modulate(self.norm2(h), shift2, scale2))


class Block(nn.Module):
    """Pre-LN transformer block, h + attn(LN(h)) then h + mlp(LN(h)): ViT (Dosovitskiy et al. 2021), Eq. 2–3.

    It ignores ``cond``: the in-context DiT carries the conditioning in h. h (B, L, D).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width, eps=1e-6), Attention(width, heads)
        self.norm2, self.mlp = nn.LayerNorm(width, eps=1e-6), mlp(width, mlp_ratio)

    def forward(self, h: Tensor, cond: Tensor | None = None) -> Tensor:
        h = h + self.attn(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class CrossAttentionBlock(Block):
    """A standard block with multi-head cross-attention to the conditioning tokens after self-attention.

    Peebles & Xie (2023), §3.2, Fig. 3 (cross-attention block). h (B, L, D), cond (B, K, D).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__(width, heads, mlp_ratio)
        self.norm_cross, self.cross = nn.LayerNorm(width, eps=1e-6), Attention(width, heads)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        h = h + self.attn(self.norm1(h))
        h = h + self.cross(self.norm_cross(h), cond)  # queries: the image tokens; keys, values: the K tokens of c
        return h + self.mlp(self.norm2(h))


class FinalLayer(nn.Module):
    """DiT's final layer: LN → modulate by c → linear to the p²C values of a patch, all zero-initialised.

    Peebles & Xie (2023), §3.2 ("Transformer decoder"). (B, N, D), cond (B, K, D) → (B, N, p²C).
    """

    def __init__(self, width: int, out: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = _zero(nn.Linear(width, 2 * width))
        self.linear = _zero(nn.Linear(width, out))  # the network starts by predicting 0

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        shift, scale = self.modulation(F.silu(cond.sum(dim=1)))[:, None].chunk(2, dim=-1)  # (B, 1, D) each
        return self.linear(modulate(self.norm(h), shift, scale))


class PlainFinalLayer(nn.Module):
    """LN → linear to the p²C values of a patch, zero-initialised: the decoder of the variants without adaLN (§3.2).

    (B, N, D) → (B, N, p²C); ``cond`` is ignored.
    """

    def __init__(self, width: int, out: int):
        super().__init__()
        self.norm, self.linear = nn.LayerNorm(width, eps=1e-6), _zero(nn.Linear(width, out))

    def forward(self, h: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.linear(self.norm(h))


class DiT(nn.Module):
    """Diffusion transformer with adaLN-Zero blocks: Peebles & Xie (2023), §3, Fig. 3; chapter 10.

    ``width`` is D, ``depth`` the number of blocks; ``num_classes`` makes it class-conditional (with a null class
    for classifier-free guidance), ``time_scale`` is as TimeEmbedding's. Input (B, in_channels, H, W) with H, W
    divisible by ``patch_size``, any such size (the positions are computed, not learned); output the same shape.
    Subclasses swap ``block`` and ``final_layer`` (and ``trunk``) for the paper's other conditioning designs.
    """

    block: type[nn.Module] = AdaLNZeroBlock
    final_layer: type[nn.Module] = FinalLayer

    def __init__(self, in_channels: int = 1, patch_size: int = 2, width: int = 64, depth: int = 4, heads: int = 4,
                 mlp_ratio: float = 4.0, num_classes: int | None = None, time_scale: float = 1.0):
        super().__init__()
        if patch_size < 1 or depth < 1:
            raise ValueError(f"patch_size and depth must be ≥ 1, got patch_size={patch_size}, depth={depth}")
        if width % heads or width % 4:
            raise ValueError(f"width must be divisible by heads ({heads}) and by 4 (sincos_2d), got {width}")
        self.in_channels, self.patch_size, self.num_classes = in_channels, patch_size, num_classes
        patch = patch_size * patch_size * in_channels  # p²C values per token
        self.patch = nn.Linear(patch, width)  # the patch embedding (DiT: a Conv2d with kernel = stride = p)
        self.time = TimeEmbedding(width, width, time_scale)
        self.labels = LabelEmbedding(num_classes, width) if num_classes else None
        self.blocks = nn.ModuleList(self.block(width, heads, mlp_ratio) for _ in range(depth))
        self.final = self.final_layer(width, patch)

    def conditioning(self, x: Tensor, t, y: Tensor | None) -> Tensor:
        """The conditioning tokens (B, K, D): e_t, then e_y when the model is conditional (K = 2)."""
        if self.labels is None:
            return embed(self.time, None, x, t, y)[:, None]  # (B, 1, D); refuses a y
        return torch.stack([embed(self.time, None, x, t, None), self.labels(y, x.shape[0], x.device)], dim=1)

    def trunk(self, h: Tensor, cond: Tensor) -> Tensor:
        for block in self.blocks:
            h = block(h, cond)  # (B, N, D)
        return h

    def forward(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        B, C, H, W = x.shape
        p = self.patch_size
        h = self.patch(patchify(x, p))  # (B, N, D)
        h = h + sincos_2d(h.shape[-1], H // p, W // p, x.device).to(h.dtype)
        cond = self.conditioning(x, t, y).to(h.dtype)  # (B, K, D)
        h = self.trunk(h, cond)  # (B, N, D)
        return unpatchify(self.final(h, cond), p, C, H, W)  # (B, N, p²C) → (B, C, H, W)


class AdaLNDiT(DiT):
    """The ablation's adaLN DiT: blocks modulated by c without gates or zero init (Peebles & Xie 2023, §3.2)."""

    block = AdaLNBlock


class CrossAttentionDiT(DiT):
    """The ablation's cross-attention DiT: standard blocks that cross-attend to the tokens (e_t, e_y), §3.2."""

    block, final_layer = CrossAttentionBlock, PlainFinalLayer


class InContextDiT(DiT):
    """The ablation's in-context DiT: (e_t, e_y) appended to the sequence as tokens, standard blocks, §3.2.

    "After the final block, we remove the conditioning tokens from the sequence" (Peebles & Xie 2023).
    """

    block, final_layer = Block, PlainFinalLayer

    def trunk(self, h: Tensor, cond: Tensor) -> Tensor:
        N = h.shape[1]
        h = super().trunk(torch.cat([h, cond], dim=1), cond)  # (B, N + K, D): treated like image tokens
        return h[:, :N]  # (B, N, D)
