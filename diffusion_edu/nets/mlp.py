"""The 2-D denoiser: a time-conditioned MLP (chapter 02)."""
from __future__ import annotations

from torch import Tensor, nn

from .embeddings import LabelEmbedding, TimeEmbedding, embed


class MLPDenoiser(nn.Module):
    """A time-conditioned MLP for low-dimensional data (chapter 02): model(x, t, y=None) → ε̂, x of shape (B, dim).

    Each hidden layer adds the conditioning vector before its activation, so t (and y) steer every layer.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_dim: int = 32,
                 num_classes: int | None = None, time_scale: float = 1.0):
        super().__init__()
        self.dim, self.num_classes = dim, num_classes
        self.time = TimeEmbedding(time_dim, hidden, time_scale)
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
