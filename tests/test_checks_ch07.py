"""Chapter 07's checks: each accepts the reference and a learner-style solution, and names each usual mistake."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import diffusion_edu as de
from diffusion_edu import checks
from diffusion_edu.checks import ch07

from checking import assert_names_mistake


def not_done(*args):
    raise NotImplementedError()


# ------------------------------------------------------------------------------------------- CFM pair

def cfm_solution(x0, x1, t):
    t = t.reshape(-1, *[1] * (x0.ndim - 1))
    return (1 - t) * x0 + t * x1, x1 - x0


def cfm_with(x_rule=None, u_rule=None):
    def fn(x0, x1, t):
        tb = t.reshape(-1, *[1] * (x0.ndim - 1))
        x_t = x_rule(x0, x1, tb) if x_rule else (1 - tb) * x0 + tb * x1
        return x_t, u_rule(x0, x1, tb) if u_rule else x1 - x0
    return fn


CFM_MISTAKES = {
    "time flipped": (cfm_with(x_rule=lambda a, b, t: t * a + (1 - t) * b), "Time direction flipped"),
    "target sign": (cfm_with(u_rule=lambda a, b, t: a - b), "Target sign"),
    "flow_matching convention": (cfm_with(x_rule=lambda a, b, t: t * a + (1 - t) * b, u_rule=lambda a, b, t: a - b),
                                 "Time direction flipped"),
    "variance exploding": (cfm_with(x_rule=lambda a, b, t: a + t * b), "variance-exploding"),
    "variance preserving": (cfm_with(x_rule=lambda a, b, t: torch.sqrt(1 - t**2) * a + t * b), "variance-preserving"),
    "noise as target": (cfm_with(u_rule=lambda a, b, t: b), "the noise x₁"),
    "u scaled by t": (cfm_with(u_rule=lambda a, b, t: (b - a) * t), "does not depend on t"),
    "no broadcast": (lambda x0, x1, t: ((1 - t) * x0 + t * x1, x1 - x0), "reshape t"),
    "single output": (lambda x0, x1, t: x1 - x0, "pair (x_t, u)"),
}


def test_cfm_check_accepts_the_reference_and_a_solution():
    assert checks.check_cfm_pair(de.cfm_sample)
    assert checks.check_cfm_pair(cfm_solution)
    assert checks.check_cfm_pair(lambda x0, x1, t: tuple(v.float() for v in cfm_solution(x0, x1, t)))  # float32


@pytest.mark.parametrize("name", CFM_MISTAKES)
def test_cfm_check_names_each_mistake(name):
    assert_names_mistake(checks.check_cfm_pair, *CFM_MISTAKES[name])


def test_cfm_target_is_the_velocity_of_the_rectified_path():
    """u = x₁ − x₀ is ``parameterisations.velocity_of`` on α = 1 − t, σ = t: the loss is chapter 06's velocity loss."""
    x0, x1 = torch.randn(2, 8, 3, dtype=torch.float64)
    t = torch.rand(8, dtype=torch.float64)
    c = de.rectified().coefficients(t, x0)
    x_t, u = de.cfm_sample(x0, x1, t)
    torch.testing.assert_close(x_t, de.rectified().sample(x0, t, x1)[0])
    torch.testing.assert_close(u, de.VELOCITY.target(x0, x1, c))


# ---------------------------------------------------------------------------------------- OT coupling

def ot_solution(x0, x1):
    cost = torch.cdist(x0.flatten(1), x1.flatten(1)) ** 2
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(cols)


def nearest(x0, x1):
    return torch.cdist(x0.flatten(1), x1.flatten(1)).argmin(dim=1)


OT_MISTAKES = {
    "identity": (lambda x0, x1: torch.arange(len(x0)), "identity"),
    "argmin": (nearest, "Coupling not a permutation"),
    "maximised": (lambda x0, x1: torch.as_tensor(linear_sum_assignment(-ot_cost(x0, x1))[1]), "maximised"),
    "inverse": (lambda x0, x1: torch.as_tensor(np.argsort(ot_solution(x0, x1).numpy())), "Rows and columns swapped"),
    "distance not squared": (lambda x0, x1: torch.as_tensor(linear_sum_assignment(np.sqrt(ot_cost(x0, x1)))[1]),
                             "not its square"),
    "greedy": (lambda x0, x1: torch.as_tensor(ch07._greedy(ot_cost(x0, x1))), "Greedy"),
    "float indices": (lambda x0, x1: ot_solution(x0, x1).double(), "integer indices"),
    "list": (lambda x0, x1: ot_solution(x0, x1).tolist(), "tensor of indices"),
    "permuted points": (lambda x0, x1: x1[ot_solution(x0, x1)], "shape"),
}


def ot_cost(x0, x1):
    return (torch.cdist(x0.flatten(1), x1.flatten(1)) ** 2).numpy()


def test_ot_check_accepts_the_reference_and_a_solution():
    assert checks.check_ot_permutation(de.ot_permutation)
    assert checks.check_ot_permutation(ot_solution)


@pytest.mark.parametrize("name", OT_MISTAKES)
def test_ot_check_names_each_mistake(name):
    assert_names_mistake(checks.check_ot_permutation, *OT_MISTAKES[name])


def test_ot_permutation_is_optimal_against_every_permutation():
    """On 6 points the optimum can be checked against all 720 permutations."""
    import itertools
    x0, x1 = torch.randn(2, 6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cost = ot_cost(x0, x1)
    best = min(sum(cost[i, p[i]] for i in range(6)) for p in itertools.permutations(range(6)))
    perm = de.ot_permutation(x0, x1)
    assert math.isclose(sum(cost[i, perm[i]] for i in range(6)), best, rel_tol=1e-12)
    a, b = de.ot_coupling(x0, x1)
    assert torch.equal(a, x0) and torch.equal(b, x1[perm])


# --------------------------------------------------------------------------------------- Euler sampler

def euler_solution(velocity, x1, steps):
    x, dt = x1, 1.0 / steps
    for i in range(steps):
        t = 1.0 - i * dt
        x = x - dt * velocity(x, t)
    return x


EULER_MISTAKES = {
    "time flipped": (lambda v, x, n: ch07._euler_variant(v, x, n, order="up"), "Time direction flipped"),
    "step sign": (lambda v, x, n: ch07._euler_variant(v, x, n, sign=-1), "Step sign"),
    "velocity at t_next": (lambda v, x, n: ch07._euler_variant(v, x, n, at="end"), "where the step starts"),
    "up with compensating sign": (lambda v, x, n: ch07._euler_variant(v, x, n, order="up", sign=-1),
                                  "from 0 up to 1"),
    "one step too many": (lambda v, x, n: ch07.flow_euler(v, x, n + 1), "steps instead of"),
    "one step too few": (lambda v, x, n: ch07.flow_euler(v, x, max(n - 1, 1)) if n > 1 else 2 * x, "steps instead of"),
    "flattened": (lambda v, x, n: ch07.flow_euler(v, x, n).flatten(1), "shape"),
}


def test_euler_check_accepts_the_reference_and_a_solution():
    assert checks.check_flow_euler(ch07.flow_euler)
    assert checks.check_flow_euler(euler_solution)


@pytest.mark.parametrize("name", EULER_MISTAKES)
def test_euler_check_names_each_mistake(name):
    assert_names_mistake(checks.check_flow_euler, *EULER_MISTAKES[name])


def test_euler_check_counts_velocity_calls():
    def twice(velocity, x1, steps):
        velocity(x1, 1.0)  # a wasted call: the sample is right, the NFE is not
        return ch07.flow_euler(velocity, x1, steps)
    assert_names_mistake(checks.check_flow_euler, twice, "calls the velocity")


def test_reference_euler_is_the_package_ode_euler():
    """The check's loop is ``samplers.ode_euler`` on a Denoiser whose velocity is the exact Gaussian one."""
    velocity = ch07.gaussian_velocity()

    class Exact(torch.nn.Module):
        def forward(self, x, t, y=None):
            return torch.stack([velocity(xi[None], float(ti))[0] for xi, ti in zip(x, t)])

    denoiser = de.Denoiser(Exact(), de.rectified(), de.VELOCITY)
    x1 = torch.randn(6, 2, dtype=torch.float64)
    for steps in (1, 3, 8):
        torch.testing.assert_close(ch07.flow_euler(velocity, x1, steps),
                                   de.sample(de.ode_euler, denoiser, x1, de.uniform_times(steps)))


def test_exact_gaussian_velocity_carries_noise_to_the_data():
    """Sanity of the check's field: fine Euler from N(0, I) lands on N(0.5, 0.4²)."""
    x = ch07.flow_euler(ch07.gaussian_velocity(0.5, 0.4), torch.randn(20000, 1, generator=torch.Generator().manual_seed(0),
                                                                       dtype=torch.float64), 400)
    assert abs(x.mean() - 0.5) < 0.02 and abs(x.std() - 0.4) < 0.02


# ---------------------------------------------------------------------------------------- straightness

def straightness_solution(xs, times):
    dt = (times[1:] - times[:-1]).reshape(-1, 1, 1)
    u = (xs[1:] - xs[:-1]) / dt
    chord = (xs[-1] - xs[0]) / (times[-1] - times[0])
    return float((((chord - u) ** 2).mean(dim=(1, 2)) * dt.abs().flatten()).sum())


def straightness_with(chord_sign=1, weighted=True, reduce_d="mean", squared=True):
    def fn(xs, times):
        dt = (times[1:] - times[:-1]).reshape(-1, 1, 1)
        u = (xs[1:] - xs[:-1]) / dt
        chord = chord_sign * (xs[-1] - xs[0]) / (times[-1] - times[0])
        diff = chord - u
        e = diff.square() if squared else None
        if not squared:
            per = diff.norm(dim=2).mean(dim=1)
        elif reduce_d == "sum":
            per = e.sum(dim=2).mean(dim=1)
        else:
            per = e.mean(dim=(1, 2))
        return float((per * dt.abs().flatten()).sum()) if weighted else float(per.mean())
    return fn


STRAIGHTNESS_MISTAKES = {
    "chord sign": (straightness_with(chord_sign=-1), "Sign"),
    "unweighted": (straightness_with(weighted=False), "|Δt|"),
    "sum over D": (straightness_with(reduce_d="sum"), "Divide by the dimension D"),
    "norm not squared": (straightness_with(squared=False), "squared norm"),
    "constant": (lambda xs, times: 1.0, "S = 0"),
    "tensor per point": (lambda xs, times: torch.zeros(xs.shape[1]), "one number"),
}


def test_straightness_check_accepts_the_reference_and_a_solution():
    assert checks.check_straightness(de.trajectory_straightness)
    assert checks.check_straightness(straightness_solution)
    assert checks.check_straightness(straightness_with())


@pytest.mark.parametrize("name", STRAIGHTNESS_MISTAKES)
def test_straightness_check_names_each_mistake(name):
    assert_names_mistake(checks.check_straightness, *STRAIGHTNESS_MISTAKES[name])


# --------------------------------------------------------------------------------------------- common

@pytest.mark.parametrize("check", [checks.check_cfm_pair, checks.check_ot_permutation, checks.check_flow_euler,
                                   checks.check_straightness])
def test_unfinished_is_not_done_and_a_crash_is_an_error(check):
    assert check(not_done).status == "not done"
    result = check(lambda *args: 1 / 0)
    assert result.status == "error" and "ZeroDivisionError" in result.message
