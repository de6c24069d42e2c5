"""The one mistake-matcher every chapter's checks share: name the known mistake a learner's answer reproduces.

A check computes what each usual mistake would return (the swapped coefficients, the missing square root, the
off-by-one step, …) and asks ``which`` of them the learner's value equals; ``diagnose`` turns the first match
into the learner's message. Values may be tensors or numbers; a tensor of another shape matches nothing.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import Tensor

from .base import CheckFailed

MISTAKE = dict(rtol=1e-3, atol=1e-6)  # recognising a known mistake, also when it was made in float32


def matches(got, value, rtol: float = MISTAKE["rtol"], atol: float = MISTAKE["atol"]) -> bool:
    """``got`` equals ``value`` up to the tolerances (same shape for tensors; finite numbers otherwise)."""
    if isinstance(got, Tensor) or isinstance(value, Tensor):
        got, value = torch.as_tensor(got), torch.as_tensor(value)
        return got.shape == value.shape and bool(torch.allclose(got.double(), value.double(), rtol=rtol, atol=atol))
    return math.isclose(float(got), float(value), rel_tol=rtol, abs_tol=atol)


def which(got, mistakes: Iterable[tuple], **tolerance) -> Any | None:
    """The payload of the first ``(value, payload…)`` whose value ``got`` matches, or None.

    The payload is what follows the value: usually the message, or a (key, message) pair to combine findings.
    """
    for value, *payload in mistakes:
        if matches(got, value, **tolerance):
            return payload[0] if len(payload) == 1 else tuple(payload)
    return None


def diagnose(got, mistakes: Iterable[tuple[Any, str]], fallback: str | None = None, **tolerance) -> None:
    """Raise ``CheckFailed`` with the message of the first mistake ``got`` matches; else with ``fallback`` if given."""
    message = which(got, mistakes, **tolerance)
    if message is not None:
        raise CheckFailed(message)
    if fallback is not None:
        raise CheckFailed(fallback)
