"""Checks for chapter 05 (conditioning): label dropout, classifier-free guidance and classifier guidance.

Each check runs the learner's function on random inputs and compares it with the closed form: label dropout
as ``diffusion_loss`` draws it, ε̃ = (1 + w) ε(x, y) − w ε(x, ∅) (Ho & Salimans 2022, Eq. 6), and
ε̂ = ε − s √(1 − ᾱ_t) ∇ log p(y | x_t) (Dhariwal & Nichol 2021, §4.2, Algorithm 2). When the answer is wrong,
each check names the usual mistake it matches.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import checker, close, expect, expect_tensor
from .mistakes import diagnose
from ..exact import GaussianMixture
from ..schedules import linear

__all__ = ["check_drop_labels", "check_cfg_eps", "check_guided_model", "check_classifier_guidance_eps"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ label dropout

@checker("drop_labels")
def check_drop_labels(drop_labels) -> None:
    """``drop_labels(y, p_uncond, null_class, generator)``: each label becomes ``null_class`` with probability p."""
    n, p, K = 20_000, 0.3, 10
    y = torch.randint(0, K, (n,), generator=_gen(1))
    y_before = y.clone()
    out = drop_labels(y, p, K, _gen(0))
    expect_tensor(out, (n,), "drop_labels(y, ...)")
    expect(torch.equal(y, y_before), "You changed y in place: return a new tensor (e.g. with torch.where) so the "
                                     "caller's labels survive.")
    expect(not out.is_floating_point() and out.dtype != torch.bool,
           f"The labels should stay integers (dtype {y.dtype}, what the label embedding indexes with), "
           f"got {out.dtype}.")
    expect(not (out == -1).any(), "Dropped labels are −1, but the null class ∅ is the extra index `null_class` "
                                  "(= num_classes), the row the label embedding keeps for 'no label'; −1 is not "
                                  "a valid index of that table.")
    dropped, kept = out == K, out == y
    expect(bool((dropped | kept).all()),
           "Some labels became something other than `null_class` or themselves: a dropped label must become "
           f"exactly null_class ({K} here) and a kept one must stay as it was.")
    rate = dropped.float().mean().item()
    expect(abs(rate - (1 - p)) > 0.02,
           f"You drop {rate:.0%} of the labels with p_uncond = {p}: that is 1 − p_uncond. A label is *dropped* "
           "(replaced by ∅) with probability p_uncond, e.g. where torch.rand(...) < p_uncond.")
    expect(abs(rate - p) < 0.02, f"You drop {rate:.1%} of the labels, but p_uncond = {p} asks for about {p:.0%}.")
    expect(torch.equal(drop_labels(y, 0.0, K, _gen(2)), y), "With p_uncond = 0 no label should be dropped.")
    expect(bool((drop_labels(y, 1.0, K, _gen(2)) == K).all()), "With p_uncond = 1 every label should be dropped.")
    small = torch.randint(0, 3, (1000,), generator=_gen(3))
    out3 = drop_labels(small, 0.5, 3, _gen(4))
    expect(bool(((out3 == 3) | (out3 == small)).all()),
           "With null_class = 3 (three classes) dropped labels should be 3: use the `null_class` argument, "
           "don't hard-code it.")
    again = drop_labels(y, p, K, _gen(0))
    expect(torch.equal(out, again), "Two calls with generators seeded alike gave different drops: draw the random "
                                    "numbers with `generator=generator`, so training is reproducible.")
    reference = torch.where(torch.rand(n, generator=_gen(0)) < p, torch.full_like(y, K), y)
    expect(torch.equal(out, reference),
           "The rate and the values are right, but your drops differ from the package's on the same generator. "
           "Draw one uniform number per label, torch.rand(len(y), generator=generator), and drop where it is "
           "< p_uncond: that is what diffusion_loss does, so the two agree draw for draw.")


# ---------------------------------------------------------------------------- classifier-free guidance

def _diagnose_cfg(out: Tensor, eps_c: Tensor, eps_u: Tensor, w: float, what: str) -> None:
    """Fail with the named mistake when ``out`` is not (1 + w) ε_c − w ε_u (w ∉ {0, 1, −1}, so forms differ)."""
    if close(out, (1 + w) * eps_c - w * eps_u):
        return
    mistakes = [
        ((1 - w) * eps_c + w * eps_u,
         "The sign of the guidance term is flipped: you computed ε_c − w (ε_c − ε_u), which pushes samples *away* "
         "from their label. It is ε̃ = ε_c + w (ε_c − ε_u) = (1 + w) ε(x, y) − w ε(x, ∅)."),
        ((1 + w) * eps_u - w * eps_c,
         "You swapped the two predictions: the conditional ε(x, y) gets the weight (1 + w) and the "
         "unconditional ε(x, ∅) the weight −w."),
        (w * eps_c + (1 - w) * eps_u,
         "You used the convention where w = 1 means no guidance, w ε_c + (1 − w) ε_u = ε_u + w (ε_c − ε_u). "
         "This course follows Ho & Salimans (2022), Eq. 6: w = 0 is no guidance, ε̃ = (1 + w) ε_c − w ε_u "
         "(that convention's scale is our 1 + w)."),
        (eps_c - w * eps_u, "The conditional term needs the weight (1 + w), not 1: ε̃ = (1 + w) ε_c − w ε_u."),
        (w * (eps_c - eps_u), "You returned only the guidance term w (ε_c − ε_u); add the conditional ε(x, y) "
                              "to it: ε̃ = ε_c + w (ε_c − ε_u)."),
        (eps_c, "You returned ε(x, y) unchanged: the guidance w (ε_c − ε_u) is missing."),
        (eps_u, "You returned the unconditional ε(x, ∅): that is guidance w = −1, not the w you were given."),
    ]
    diagnose(out, [(wrong, f"{message} (Tested at w = {w:g}.)") for wrong, message in mistakes],
             f"{what} is not (1 + w) ε(x, y) − w ε(x, ∅) (Ho & Salimans 2022, Eq. 6) at w = {w:g}, "
             "and it matches none of the usual mistakes: print both for a few values and compare.", rtol=1e-4, atol=1e-5)


@checker("cfg_eps")
def check_cfg_eps(cfg_eps) -> None:
    """``cfg_eps(eps_cond, eps_uncond, w) = (1 + w) eps_cond − w eps_uncond``."""
    g = _gen(0)
    for shape in ((64, 2), (8, 1, 8, 8)):
        eps_c, eps_u = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        before = (eps_c.clone(), eps_u.clone())
        for w in (2.0, 0.5, 3.5):
            out = expect_tensor(cfg_eps(eps_c, eps_u, w), shape, f"cfg_eps(...) for shape {shape}")
            expect(torch.equal(eps_c, before[0]) and torch.equal(eps_u, before[1]),
                   "You changed eps_cond or eps_uncond in place (e.g. with mul_ or +=): compute a new tensor.")
            _diagnose_cfg(out, eps_c, eps_u, w, "ε̃")
        expect(close(cfg_eps(eps_c, eps_u, 0.0), eps_c),
               "At w = 0 (no guidance, the course convention) ε̃ must be the conditional ε(x, y).")
        expect(close(cfg_eps(eps_c, eps_u, -1.0), eps_u),
               "At w = −1 ε̃ must be the unconditional ε(x, ∅): (1 + w) ε_c − w ε_u with w = −1.")


class _Spy:
    """A conditional model (the exact ε of a 2-D mixture) that records how it is called and refuses bad labels."""

    def __init__(self):
        means = torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.8]])
        self.schedule = linear()
        self.exact = GaussianMixture(means, 0.6).eps_model(self.schedule)
        self.num_classes = 3
        self.calls: list[tuple[Tensor, Tensor | None]] = []

    def __call__(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        self.calls.append((torch.as_tensor(t).clone(), None if y is None else torch.as_tensor(y).clone()))
        if y is not None:
            y = torch.as_tensor(y)
            expect(not y.is_floating_point(), f"The model was called with float labels ({y.dtype}); labels are "
                                              "integer class indices.")
            expect(not (y < 0).any(), "You asked for the unconditional prediction with label −1: the null class ∅ "
                                      "is the index num_classes (or pass y=None, which the model maps to ∅).")
            expect(not (y > self.num_classes).any(),
                   f"The model was called with a label above num_classes = {self.num_classes}, the null class.")
        return self.exact(x, t, y)

    def unconditional(self, y: Tensor | None) -> bool:
        return y is None or bool((y == self.num_classes).all())


@checker("guided_model")
def check_guided_model(guided_model) -> None:
    """``guided_model(model, w)`` returns a model ``guided(x, t, y=None)`` that gives (1 + w) ε(x, y) − w ε(x, ∅)."""
    g = _gen(0)
    spy, w = _Spy(), 2.0
    x = 2 * torch.randn(64, 2, generator=g)
    t = torch.randint(10, spy.schedule.T - 10, (64,), generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    guided = guided_model(spy, w)
    expect(callable(guided), f"guided_model should return a model, a function guided(x, t, y=None); "
                             f"got a {type(guided).__name__}.")
    spy.calls.clear()
    out = expect_tensor(guided(x, t, y), (64, 2), "guided(x, t, y)")
    eps_c, eps_u = spy.exact(x, t, y), spy.exact(x, t, None)
    expect(len(spy.calls) > 0, "Your guided model never called the model it wraps.")
    expect(all(torch.equal(torch.as_tensor(tt).expand(64), t) for tt, _ in spy.calls),
           "Your guided model changed t before calling the model: pass t through unchanged.")
    expect(any(spy.unconditional(yy) for _, yy in spy.calls),
           "Your guided model never asked for the unconditional prediction ε(x, ∅): call model(x, t, None) "
           "(or with the null class, index num_classes) beside model(x, t, y).")
    expect(any(yy is not None and torch.equal(yy, y) for _, yy in spy.calls),
           "Your guided model never asked for the conditional prediction ε(x, y): call model(x, t, y).")
    _diagnose_cfg(out, eps_c, eps_u, w, "guided(x, t, y)")
    other = guided_model(spy, 0.5)
    expect(close(guided(x, t, y), out) and close(other(x, t, y), 1.5 * eps_c - 0.5 * eps_u),
           "Two guided models with different w interfere: keep w inside the closure, not in a global.")
    expect(close(guided_model(spy, 0.0)(x, t, y), eps_c), "With w = 0 the guided model must equal the "
                                                          "conditional model (no guidance).")
    expect(close(guided(x, t, None), eps_u), "Without labels (y=None) the guided model should be the "
                                             "unconditional model ε(x, ∅): there is no class to guide towards.")


# ------------------------------------------------------------------------------------- classifier guidance

@checker("classifier_guidance_eps")
def check_classifier_guidance_eps(classifier_guidance_eps) -> None:
    """``classifier_guidance_eps(eps, grad_log_p_y, abar, s) = eps − s √(1 − ᾱ) ∇ log p(y | x_t)``."""
    g = _gen(0)
    s = 2.0
    for shape in ((64, 2), (8, 1, 8, 8)):
        eps, grad = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        abar = (0.05 + 0.9 * torch.rand(shape[0], generator=g, dtype=torch.float64)).float()
        abar = abar.reshape(-1, *[1] * (len(shape) - 1))  # (B, 1) or (B, 1, 1, 1): broadcasts against eps
        out = expect_tensor(classifier_guidance_eps(eps, grad, abar, s), shape,
                            f"classifier_guidance_eps(...) for shape {shape}")
        if close(out, eps - s * (1 - abar).sqrt() * grad):
            continue
        mistakes = [
            (eps + s * (1 - abar).sqrt() * grad,
             "The sign of the guidance term is flipped: ε points *away* from the data, ε = −√(1 − ᾱ_t) ∇ log p, "
             "so a push up the classifier's log-probability *subtracts* s √(1 − ᾱ_t) ∇ log p(y | x_t) from ε."),
            (eps - s * grad,
             "The gradient is missing the √(1 − ᾱ_t) factor: ∇ log p(y | x_t) is a score, and a score becomes an ε "
             "by multiplying with −√(1 − ᾱ_t). ε̂ = ε − s √(1 − ᾱ_t) ∇ log p(y | x_t)."),
            (eps + s * grad,
             "The gradient is missing the −√(1 − ᾱ_t) factor (both its sign and its size): a score becomes an ε by "
             "multiplying with −√(1 − ᾱ_t). ε̂ = ε − s √(1 − ᾱ_t) ∇ log p(y | x_t)."),
            (eps - s * grad / (1 - abar).sqrt(),
             "You divided the gradient by √(1 − ᾱ_t); ε = −√(1 − ᾱ_t) × score, so multiply by it."),
            (eps - s * (1 - abar) * grad, "You used (1 − ᾱ_t); the factor is its square root, √(1 − ᾱ_t)."),
            (eps - s * abar.sqrt() * grad, "You used √ᾱ_t; the factor is √(1 − ᾱ_t), the noise's standard deviation."),
            (eps - (1 - abar).sqrt() * grad,
             "The guidance scale s is missing: ε̂ = ε − s √(1 − ᾱ_t) ∇ log p(y | x_t)."),
            (eps - s ** 2 * (1 - abar).sqrt() * grad, "The scale enters once, as s, not s²."),
            (eps, "You returned ε unchanged: the classifier's gradient is not used."),
        ]
        for wrong, message in mistakes:
            expect(not close(out, wrong), message)
        expect(False, "ε̂ is not ε − s √(1 − ᾱ_t) ∇ log p(y | x_t) (Dhariwal & Nichol 2021, Algorithm 2) and matches "
                      "none of the usual mistakes: check it by hand for one point.")
    eps, grad = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g)
    try:
        out = classifier_guidance_eps(eps, grad, 0.36, s)
    except (AttributeError, TypeError) as err:
        expect(False, f"With a plain number ᾱ_t = 0.36 your function raised {type(err).__name__} ({err}): accept a "
                      "float too, e.g. with torch.as_tensor(abar).")
    expect(close(out, eps - s * 0.8 * grad),
           "With a plain number ᾱ_t = 0.36 the result should be ε − s · 0.8 · ∇ log p(y | x_t).")
    expect(close(classifier_guidance_eps(eps, grad, 0.36, 0.0), eps), "With s = 0 there is no guidance: return ε.")
