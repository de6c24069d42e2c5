"""Classifier-free guidance as a model wrapper (chapter 05): samplers never learn about guidance.

Convention (Ho & Salimans 2022, Eq. 6, used everywhere in the course): **w = 0 means no guidance**, i.e.
the plain conditional model; w > 0 pushes samples towards their label; w = −1 gives the unconditional model.
(Some libraries write the same rule with s = 1 + w, so that their s = 1 is our w = 0.)
"""
from __future__ import annotations

import numbers
from typing import Callable

from torch import Tensor

Model = Callable[..., Tensor]


def cfg(model: Model, w: float) -> Model:
    """ε̃(x, t, y) = (1 + w) ε(x, t, y) − w ε(x, t, ∅): Ho & Salimans (2022), Eq. 6; chapter 05.

    ``model`` must be conditional with a null class (called with y = None for ε(x, t, ∅)). The result is a
    model like any other, ``guided(x, t, y=None)``; without labels it is just the unconditional model.
    """
    if isinstance(w, bool) or not isinstance(w, numbers.Real):
        raise TypeError(f"w must be a real number (0 = no guidance), got {type(w).__name__}")
    if w < -1:
        raise ValueError(f"w must be ≥ −1 (−1 = unconditional, 0 = no guidance), got {w}")
    if getattr(model, "num_classes", None) is None:
        raise ValueError("cfg needs a conditional model (built with num_classes) that accepts y=None")

    def guided(x: Tensor, t, y: Tensor | None = None) -> Tensor:
        if y is None or w == 0:
            return model(x, t, y)
        return (1 + w) * model(x, t, y) - w * model(x, t, None)

    guided.num_classes = model.num_classes
    guided.w = w
    return guided
