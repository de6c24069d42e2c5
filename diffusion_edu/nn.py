"""Building blocks of a denoiser and the 2-D denoiser itself (chapters 02 and 03).

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
    """Sinusoidal features of t followed by a two-layer MLP (Ho et al. 2020, Appendix B)."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        self.dim = dim
        hidden = hidden or 4 * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.out_dim = hidden

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.dim, dtype=self.mlp[0].weight.dtype))  # (B, out_dim)


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


class MLPDenoiser(nn.Module):
    """A time-conditioned MLP for low-dimensional data (chapter 02): model(x, t, y=None) → ε̂, x of shape (B, dim).

    Each hidden layer adds the conditioning vector before its activation, so t (and y) steer every layer.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_dim: int = 32,
                 num_classes: int | None = None):
        super().__init__()
        self.dim, self.num_classes = dim, num_classes
        self.time = TimeEmbedding(time_dim, hidden)
        self.labels = LabelEmbedding(num_classes, hidden) if num_classes else None
        self.inp = nn.Linear(dim, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        c = embed(self.time, self.labels, x, t, y)  # (B, hidden)
        h = nn.functional.silu(self.inp(x) + c)
        for layer in self.hidden:
            h = nn.functional.silu(layer(h) + c)
        return self.out(h)  # (B, dim)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (frozen ones included: a loaded checkpoint has the same count as a fresh model)."""
    return sum(p.numel() for p in model.parameters())
