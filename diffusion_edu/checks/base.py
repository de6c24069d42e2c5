"""Checks for the exercises: each tests a learner's function numerically and says, in plain words, what is wrong.

A check is a function ``check_<task>(learner_fn) -> Result``, written with the ``@checker("task")`` decorator
around a body that raises ``CheckFailed("your variance is off by a factor ᾱ_t")`` on the first problem it
finds. The decorator turns the outcome into a ``Result``: passed, failed (with the message), not done (the
learner's function still raises ``NotImplementedError``) or error (it crashed; the message says how). The
latest result of every task in a kernel is kept in ``RESULTS``. Checks of chapter NN live in
``checks/chNN.py`` and are re-exported by the package; ``mistakes`` names the usual mistake a wrong answer makes.

Two environment variables serve graders. ``DIFFUSION_EDU_GRADER=1`` (set by ``diffusion-edu grade``) makes
every check also emit its result as a display output of MIME type ``RESULT_MIME``, which the grader reads from
the check cell's own outputs: printing "✅" fakes nothing. ``DIFFUSION_EDU_STRICT=1`` makes a check raise
``CheckFailed`` unless it passed, for nbgrader's autograder, which scores a check cell by whether it raised.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

STATUSES = ("passed", "failed", "not done", "error")
RESULT_MIME = "application/vnd.diffusion-edu.check+json"
SYMBOLS = {"passed": "✅", "failed": "❌", "not done": "⏳", "error": "💥"}


class CheckFailed(AssertionError):
    """Raised by a check's body: the message is what the learner reads."""


@dataclass(frozen=True)
class Result:
    """The outcome of one check."""

    task: str
    status: str  # one of STATUSES
    message: str

    def __bool__(self) -> bool:
        return self.status == "passed"

    def __str__(self) -> str:
        return f"{SYMBOLS[self.status]} {self.task}: {self.status}. {self.message}"


RESULTS: dict[str, Result] = {}

try:  # bound now, at import: a learner who later patches IPython.display.display does not reach the verdicts
    from IPython.display import display as _display
except ImportError:  # no IPython, so no kernel and no grader: printing is all there is
    _display = None


def checker(task: str) -> Callable:
    """Make a check function from a body that raises ``CheckFailed``; see the module docstring."""

    def decorate(body: Callable) -> Callable[..., Result]:
        @functools.wraps(body)
        def check(*args, **kwargs) -> Result:
            try:
                body(*args, **kwargs)
                result = Result(task, "passed", "Well done.")
            except NotImplementedError:
                result = Result(task, "not done", "Your function still raises NotImplementedError: "
                                                  "replace `raise NotImplementedError()` with your code.")
            except CheckFailed as failure:
                result = Result(task, "failed", str(failure))
            except Exception as err:  # the learner's code crashed: say how, don't crash the notebook
                result = Result(task, "error", f"Your code raised {type(err).__name__}: {err}")
            RESULTS[task] = result
            print(result)
            if os.environ.get("DIFFUSION_EDU_GRADER") == "1" and _display is not None:
                _display({RESULT_MIME: dataclasses.asdict(result)}, raw=True)
            if os.environ.get("DIFFUSION_EDU_STRICT") == "1" and not result:
                raise CheckFailed(str(result))
            return result

        check.task = task
        return check

    return decorate


def expect(condition: bool, message: str) -> None:
    """Raise ``CheckFailed(message)`` unless ``condition``."""
    if not condition:
        raise CheckFailed(message)


def expect_tensor(value, shape: tuple, name: str) -> Tensor:
    """The learner returned a tensor of the expected shape (else a plain-words failure)."""
    expect(isinstance(value, Tensor), f"{name} should be a torch.Tensor, but it is a {type(value).__name__}.")
    expect(tuple(value.shape) == tuple(shape), f"{name} should have shape {tuple(shape)}, got {tuple(value.shape)}.")
    expect(bool(torch.isfinite(value).all()), f"{name} contains NaN or inf.")
    return value


def close(a: Tensor, b: Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    return bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol))


def ratio(a: Tensor, b: Tensor) -> float | None:
    """The constant c with a ≈ c·b, if there is one (used to name "off by a factor" mistakes), else None."""
    a, b = a.double().flatten(), b.double().flatten()
    mask = b.abs() > 1e-8
    if not mask.any():
        return None
    r = a[mask] / b[mask]
    return float(r.mean()) if float(r.std()) < 1e-4 * max(1.0, abs(float(r.mean()))) else None
