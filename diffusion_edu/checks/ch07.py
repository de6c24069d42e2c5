"""Checks for chapter 07 (flow matching): the conditional pair (x_t, u_t), a minibatch OT permutation, an
Euler flow sampler and Liu et al.'s straightness.

Time runs as in the whole course: t = 0 is data, t = 1 is noise, x_t = (1 − t) x₀ + t x₁ (``flow``). Each
check compares the learner's function with the package's (``flow.cfm_sample``, ``flow.ot_permutation``,
``samplers.ode_euler``'s update, ``flow.trajectory_straightness``) and names the usual mistake it matches
with the shared ``mistakes.diagnose``: the time direction flipped (the convention of ``flow_matching`` and
``torchcfm``), the target's sign, a coupling that is not a permutation, …
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .base import CheckFailed, checker, expect, expect_tensor
from .mistakes import diagnose, matches
from ..flow import cfm_sample, ot_permutation, trajectory_straightness

__all__ = ["check_cfm_pair", "check_ot_permutation", "check_flow_euler", "check_straightness"]

SHAPE = (16, 1, 4, 4)  # image-shaped, so code that only works for (B, D) data is caught


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _maxdiff(a: Tensor, b: Tensor) -> str:
    return f"{(a.double() - b.double()).abs().max().item():.3g}"


# ----------------------------------------------------------------------------------- the CFM pair

@checker("cfm_pair")
def check_cfm_pair(cfm_pair: Callable) -> None:
    """``cfm_pair(x0, x1, t) -> (x_t, u)``: x_t = (1 − t) x₀ + t x₁ and u = x₁ − x₀, t of shape (B,)."""
    g = _gen(0)
    x0, x1 = torch.randn(2, *SHAPE, generator=g, dtype=torch.float64)
    t = torch.rand(SHAPE[0], generator=g, dtype=torch.float64) * 0.8 + 0.1  # away from 0, ½ and 1
    try:
        out = cfm_pair(x0, x1, t)
    except RuntimeError as err:
        if "size of tensor" in str(err) or "broadcast" in str(err):
            raise CheckFailed("t has shape (B,) and x₀ has shape (B, C, H, W): reshape t to (B, 1, 1, 1) "
                              f"before multiplying, e.g. t.reshape(-1, *[1] * (x0.ndim - 1)) ({err}).") from None
        raise
    expect(isinstance(out, tuple) and len(out) == 2, "Return a pair (x_t, u), e.g. `return x_t, u`.")
    x_t, u = expect_tensor(out[0], SHAPE, "x_t"), expect_tensor(out[1], SHAPE, "u")
    want_x, want_u = cfm_sample(x0, x1, t)
    tb = t.reshape(-1, 1, 1, 1)
    if not matches(x_t, want_x):
        diagnose(x_t, [
            (tb * x0 + (1 - tb) * x1,
             "Time direction flipped: x_t = t x₀ + (1 − t) x₁ puts the data at t = 1, the convention of "
             "flow_matching and torchcfm. In this course t = 0 is data and t = 1 is noise: x_t = (1 − t) x₀ + t x₁."),
            (x0 + tb * x1, "x_t = x₀ + t x₁ only adds noise (a variance-exploding path); the straight path also "
                           "shrinks the data: x_t = (1 − t) x₀ + t x₁."),
            (torch.sqrt(1 - tb**2) * x0 + tb * x1, "That is a variance-preserving path; flow matching's is the "
                                                    "straight line x_t = (1 − t) x₀ + t x₁."),
            (x1 - x0, "You returned the velocity as x_t; x_t = (1 − t) x₀ + t x₁."),
        ], f"x_t differs from (1 − t) x₀ + t x₁ (max |difference| {_maxdiff(x_t, want_x)}).")
    if not matches(u, want_u):
        diagnose(u, [
            (x0 - x1, "Target sign: with t = 0 data and t = 1 noise, u = dx_t/dt = x₁ − x₀ (noise minus data); "
                      "you returned x₀ − x₁, the velocity of the opposite time direction."),
            (x1, "You returned the noise x₁ (the ε target of chapter 02); the velocity is u = x₁ − x₀."),
            (-x0, "u = x₁ − x₀: you left out x₁."),
            ((x1 - x0) * tb, "u = x₁ − x₀ is the same all along the line: it does not depend on t."),
            ((want_x - x0) / tb, "u = x₁ − x₀ exactly; (x_t − x₀)/t equals it only up to rounding and breaks at t = 0."),
        ], f"u differs from x₁ − x₀ (max |difference| {_maxdiff(u, want_u)}).")
    at_ends = cfm_pair(x0[:2], x1[:2], torch.tensor([0.0, 1.0], dtype=torch.float64))
    expect(matches(at_ends[0][0], x0[0]) and matches(at_ends[0][1], x1[1]),
           "At t = 0 x_t must be the data x₀ and at t = 1 the noise x₁.")


# -------------------------------------------------------------------------------- minibatch OT

def _greedy(cost: np.ndarray) -> np.ndarray:
    """Each x₀ in turn takes its nearest x₁ not yet taken: a common, sub-optimal, shortcut."""
    perm, free = np.empty(len(cost), dtype=int), list(range(len(cost)))
    for i in range(len(cost)):
        j = min(free, key=lambda k: cost[i, k])
        perm[i] = j
        free.remove(j)
    return perm


@checker("ot_permutation")
def check_ot_permutation(ot_perm: Callable) -> None:
    """``ot_permutation(x0, x1) -> perm`` (B,) with x₁[perm] the optimal partner of x₀: min Σ‖x₀ᵢ − x₁_perm(i)‖²."""
    g = _gen(3)
    B = 12
    for shape in ((B, 2), (B, 1, 4, 4)):
        x0, x1 = torch.randn(2, *shape, generator=g, dtype=torch.float64)
        x0 = x0 + 1.5  # the two clouds apart, so that pairing matters
        perm = ot_perm(x0.clone(), x1.clone())
        expect(isinstance(perm, Tensor), f"Return a tensor of indices, got a {type(perm).__name__}.")
        expect(perm.shape == (B,), f"perm should have shape ({B},), one index of x₁ per x₀; got {tuple(perm.shape)}.")
        expect(not perm.is_floating_point(), f"perm should hold integer indices (torch.long), got {perm.dtype}.")
        perm = perm.long().cpu()
        expect(bool(torch.equal(perm.sort().values, torch.arange(B))),
               "Coupling not a permutation: some x₁ is used twice and some never (did you take each x₀'s nearest "
               "x₁ with argmin?). An OT coupling of two minibatches of equal size pairs them one to one.")
        flat0, flat1 = x0.reshape(B, -1), x1.reshape(B, -1)
        sq = torch.cdist(flat0, flat1, compute_mode="donot_use_mm_for_euclid_dist").square().numpy()
        best = ot_permutation(x0, x1)
        cost = lambda p: float(sq[np.arange(B), np.asarray(p)].sum())  # noqa: E731
        if math.isclose(cost(perm), cost(best), rel_tol=1e-9):
            continue
        rows, cols = linear_sum_assignment(np.sqrt(sq))
        wrong = [
            (torch.arange(B), "You returned the identity: that is the independent coupling, not OT. Solve the "
                              "assignment problem on the B × B matrix of squared distances "
                              "(scipy.optimize.linear_sum_assignment)."),
            (torch.as_tensor(linear_sum_assignment(-sq)[1]), "You maximised the cost: linear_sum_assignment "
                                                             "minimises by default, pass the cost itself, not −cost."),
            (torch.as_tensor(np.argsort(best.numpy())), "Rows and columns swapped: perm[i] must be the index of "
                                                        "the x₁ paired with x₀[i], you returned its inverse "
                                                        "(for each x₁ the index of its x₀). Use cost[i, j] = "
                                                        "‖x₀ᵢ − x₁ⱼ‖² and keep the column indices."),
            (torch.as_tensor(cols[np.argsort(rows)]), "Your cost is the distance ‖x₀ − x₁‖, not its square: "
                                                      "the OT path of flow matching minimises the squared "
                                                      "distance (W₂), e.g. torch.cdist(...)**2."),
            (torch.as_tensor(_greedy(sq)), "Greedy matching (each x₀ takes its nearest free x₁) is a permutation but "
                                           "not the optimal one: solve the whole assignment at once with "
                                           "linear_sum_assignment."),
        ]
        diagnose(perm, wrong, f"perm is a permutation, but its total squared distance {cost(perm):.4f} is not the "
                              f"minimum {cost(best):.4f}" + (" on image-shaped inputs: flatten each sample to a "
                                                             "vector first, x.reshape(len(x), -1)."
                                                             if len(shape) > 2 else "."), rtol=0, atol=0)


# ---------------------------------------------------------------------------------- Euler sampler

def gaussian_velocity(mean: float = 0.5, std: float = 0.4) -> Callable[[Tensor, float], Tensor]:
    """The exact marginal velocity u(x, t) = E[x₁ − x₀ | x_t] on the straight path for data N(mean, std²)."""
    def velocity(x: Tensor, t: float) -> Tensor:
        t = float(t)
        var = (1 - t) ** 2 * std**2 + t**2  # Var x_t
        centred = x - (1 - t) * mean
        x0 = mean + (1 - t) * std**2 / var * centred  # E[x₀ | x_t]
        eps = t / var * centred  # E[x₁ | x_t]
        return eps - x0
    return velocity


def flow_euler(velocity: Callable, x1: Tensor, steps: int) -> Tensor:
    """Reference: Euler from t = 1 (noise) to t = 0 (data) on the uniform grid, x ← x + (t_next − t) u(x, t)."""
    times = torch.linspace(1, 0, steps + 1, dtype=torch.float64).tolist()
    x = x1
    for t, t_next in zip(times, times[1:]):
        x = x + (t_next - t) * velocity(x, t)
    return x


def _euler_variant(velocity, x1, steps, order="down", sign=1, at="start"):
    times = torch.linspace(1, 0, steps + 1, dtype=torch.float64).tolist()
    if order == "up":
        times = times[::-1]
    x = x1
    for t, t_next in zip(times, times[1:]):
        x = x + sign * (t_next - t) * velocity(x, t_next if at == "end" else t)
    return x


@checker("flow_euler")
def check_flow_euler(euler_fn: Callable) -> None:
    """``flow_euler(velocity, x1, steps) -> x0``: ``steps`` Euler steps of dx/dt = velocity(x, t) from t = 1 to 0."""
    velocity = gaussian_velocity()
    x1 = torch.randn(SHAPE, generator=_gen(4), dtype=torch.float64)
    for steps in (4, 1):  # 4 first: at 1 step some mistakes coincide (u at t_next = 0 either way)
        calls = []

        def recording(x, t):
            calls.append(float(t))
            return velocity(x, t)

        out = expect_tensor(euler_fn(recording, x1.clone(), steps), SHAPE, f"flow_euler(velocity, x1, {steps})")
        want = flow_euler(velocity, x1, steps)
        if matches(out, want):
            expect(len(calls) == steps, f"With steps = {steps} Euler calls the velocity {steps} times (one per step); "
                                        f"yours called it {len(calls)} times.")
            continue
        diagnose(out, [
            (_euler_variant(velocity, x1, steps, order="up"),
             "Time direction flipped: you integrated from t = 0 up to t = 1. Sampling starts from noise at t = 1 "
             "and runs down to the data at t = 0 (the other convention of flow_matching / torchcfm)."),
            (_euler_variant(velocity, x1, steps, sign=-1),
             "Step sign: x_next = x + (t_next − t)·u, and t_next − t = −1/steps is negative; your step moves "
             "the wrong way along the velocity."),
            (_euler_variant(velocity, x1, steps, at="end"),
             "Euler evaluates the velocity where the step starts, u(x, t), not at t_next."),
            (_euler_variant(velocity, x1, steps, order="up", sign=-1),
             "Your times run from 0 up to 1, with the step's sign flipped to compensate: the velocity must be read "
             "at the times the sample actually has, from t = 1 (noise) down to 0."),
        ] + [(flow_euler(velocity, x1, n), f"You took {n} steps instead of {steps}: the grid has steps + 1 times "
                                           f"from 1 to 0, torch.linspace(1, 0, steps + 1).")
             for n in (steps - 1, steps + 1) if n >= 1],
            f"With steps = {steps} your sampler differs from Euler, x ← x + (t_next − t) u(x, t) on t = 1, …, 0 "
            f"(max |difference| {_maxdiff(out, want)}).")


# ---------------------------------------------------------------------------------- straightness

def _straightness_mistakes(xs: Tensor, times: Tensor) -> list[tuple[float, str]]:
    """What the usual mistakes return on the path ``xs`` at ``times``."""
    dt = times.diff().reshape(-1, 1, 1)
    u = xs.diff(dim=0) / dt
    chord = (xs[-1] - xs[0]) / (times[-1] - times[0])
    err, weights = (chord - u).square(), dt.flatten().abs()
    return [
        (float(((-chord - u).square().mean(dim=(1, 2)) * weights).sum()),
         "Sign: the straight line's velocity is (x_end − x_start)/(t_end − t_start) = x₁ − x₀, and the path's "
         "is (x_{k+1} − x_k)/(t_{k+1} − t_k); you flipped one of them (both t-differences are negative)."),
        (float(err.mean()), "Weight each step by its length |Δt|: S is an integral over t, and these steps are "
                            "not equal."),
        (float((err.sum(dim=2).mean(dim=1) * weights).sum()), "Divide by the dimension D: the task asks for "
                                                              "E‖·‖²/D (mean over coordinates), not the sum."),
        (float(((chord - u).norm(dim=2).mean(dim=1) * weights).sum()), "S uses the squared norm ‖·‖², not ‖·‖."),
    ]


@checker("straightness")
def check_straightness(straightness_fn: Callable) -> None:
    """``straightness(xs, times) -> float``: Liu et al.'s S / D for a path xs (K + 1, B, D) at falling ``times``."""
    g = _gen(5)
    B, D = 32, 3
    times = torch.tensor([1.0, 0.9, 0.6, 0.45, 0.2, 0.0], dtype=torch.float64)  # unequal steps on purpose
    start, end = torch.randn(2, B, D, generator=g, dtype=torch.float64)
    tt = times.reshape(-1, 1, 1)
    line = end + tt * (start - end)  # x(t) on straight lines, constant speed
    got = straightness_fn(line, times)
    expect(isinstance(got, (float, int)) or (isinstance(got, Tensor) and got.numel() == 1),
           f"Return one number (a float), got {type(got).__name__}.")
    if abs(float(got)) > 1e-10:
        diagnose(float(got), _straightness_mistakes(line, times),
                 f"Straight lines followed at constant speed have S = 0; yours gave {float(got):.4g}.")
    bent = line + torch.sin(math.pi * tt) * torch.randn(B, D, generator=g, dtype=torch.float64)  # ends kept
    got = float(straightness_fn(bent, times))
    want = trajectory_straightness(bent, times)
    if not math.isclose(got, want, rel_tol=1e-6):
        diagnose(got, _straightness_mistakes(bent, times),
                 f"Your straightness {got:.6g} differs from ∫ E‖(x₁ − x₀) − u‖²/D dt = {want:.6g}.")
