"""Building blocks every denoiser shares: the time and label embeddings (chapters 02, 03 and 05).

Every denoiser follows one contract, ``model(x, t, y=None) -> prediction`` with the prediction shaped like x:
``t`` holds timesteps (a number or a (B,) tensor) and ``y`` optional class labels. A conditional model owns
one extra "null" label, index ``num_classes``, used for y = None and for label dropout (classifier-free
guidance, chapter 05).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sinusoidal embedding of timesteps: [cos(t ω_i), sin(t ω_i)], ω_i = max_period^(−i/(dim/2)).

    Vaswani et al. (2017), §3.5, as used for t by Ho et al. (2020), Appendix B; chapter 03. (B,) → (B, dim).
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)  # (half,)
    angles = t.to(dtype)[:, None] * freqs[None]  # (B, half)
    return torch.cat([angles.cos(), angles.sin()], dim=-1)  # (B, dim)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of ``scale`` · t followed by a two-layer MLP (Ho et al. 2020, Appendix B).

    Discrete steps t ∈ {0, …, 999} use scale 1; continuous times t ∈ [0, 1] (chapters 06–07) scale 1000, so the
    sinusoids resolve them as finely (Song et al. 2021 embed 999 t the same way).
    """

    def __init__(self, dim: int, hidden: int | None = None, scale: float = 1.0):
        super().__init__()
        self.dim, self.scale = dim, scale
        hidden = hidden or 4 * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.out_dim = hidden

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(self.scale * t, self.dim, dtype=self.mlp[0].weight.dtype))  # (B, out_dim)


class LabelEmbedding(nn.Module):
    """A learned vector per class plus one for the null class ∅ (index ``num_classes``).

    The null class lets one network be both p(x | y) and p(x): Ho & Salimans (2022), §3.2; chapter 05.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, y: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        y = torch.as_tensor(y, device=device)
        if y.is_floating_point() or y.shape != (batch,):
            raise ValueError(f"y must be integer labels of shape ({batch},), got {y.dtype} {tuple(y.shape)}")
        if y.min() < 0 or y.max() > self.num_classes:
            raise ValueError(f"y must be in [0, {self.num_classes}] ({self.num_classes} = null class), "
                             f"got values in [{int(y.min())}, {int(y.max())}]")
        return self.table(y.long())  # (B, dim)


def embed(time: TimeEmbedding, labels: LabelEmbedding | None, x: Tensor, t, y) -> Tensor:
    """The conditioning vector of a denoiser: time embedding, plus the label embedding when conditional.

    Also where every denoiser checks its inputs: t broadcast to (B,), y refused by an unconditional model.
    """
    t = torch.as_tensor(t, device=x.device)
    if t.ndim == 0 or t.shape == (1,):
        t = t.reshape(1).expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got shape {tuple(t.shape)}")
    emb = time(t)  # (B, E)
    if labels is None:
        if y is not None:
            raise ValueError("y was given but this model is unconditional (built with num_classes=None)")
        return emb
    return emb + labels(y, x.shape[0], x.device)  # (B, E)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (frozen ones included: a loaded checkpoint has the same count as a fresh model)."""
    return sum(p.numel() for p in model.parameters())
