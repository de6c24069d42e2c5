"""The agreement and convergence harness that the tests and the benchmark share (chapter 04's verification).

Our samplers against diffusers' schedulers, both driven by the exact ε of a known 2-D Gaussian mixture (no
training, so any difference is the samplers'); and fitted convergence orders against the exact flow of a
Gaussian. tests/test_diffusers_agreement.py and tests/test_samplers.py assert on these; ``bench`` reports them.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import exact
from ..samplers import ddim, ddpm, dpm_solver_pp, euler, heun, sample
from ..schedules import from_alpha_bar, linear

T = 1000
COMMON = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
              timestep_spacing="trailing")  # diffusers' configuration of our linear schedule and trailing grid
MEAN, STD = torch.tensor([0.5, -0.3], dtype=torch.float64), 0.5  # the Gaussian of the convergence orders


def make_setup():
    """The schedule, the exact mixture ε and x_T shared by every comparison."""
    schedule = linear(T)
    gmm = exact.GaussianMixture(torch.tensor([[-1.5, 0.5], [1.0, 1.0], [0.5, -1.5]]), [0.3, 0.2, 0.4],
                                weights=[0.5, 0.3, 0.2])
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return schedule, gmm.eps_model(schedule), x_T


def run_diffusers(scheduler, model, x_T, steps, generator=None, sigma_space=False, **step_kw):
    """A diffusers scheduler's own loop: set_timesteps, then scale_model_input and step at every timestep."""
    scheduler.set_timesteps(steps)
    x = x_T * math.sqrt(1 + float(scheduler.sigmas[0]) ** 2) if sigma_space else x_T  # x̃_T = x_T/√ᾱ_T
    for t in scheduler.timesteps:
        eps = model(scheduler.scale_model_input(x, t), t.expand(len(x)))
        x = scheduler.step(eps, t, x, generator=generator, **step_kw).prev_sample
    return x


def ours(sampler, model, x_T, schedule, steps, seed=None, **kw):
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return sample(sampler, model, x_T, schedule, steps, generator=generator, **kw)


def smooth_schedule(T: int = 1280, sigma_max: float = 80.0, rho: int = 3):
    """σ(τ) = σ_max τ^ρ: smooth at clean data, unlike DDPM's linear β where σ ∝ √t near t = 0.

    That square root makes the very last step to σ = 0 a first-order error for every solver, so orders are
    only visible on a grid smooth in σ. T = 1280 makes every step count below divide T (an even grid).
    """
    return from_alpha_bar(lambda tau: 1 / (1 + (sigma_max * tau ** rho) ** 2), T)


def fitted_order(sampler, schedule, step_counts=(20, 40, 80, 160)):
    """(order, errors): the slope of log max-error against log steps, against the exact flow of a Gaussian."""
    model = exact.gaussian(MEAN, STD).eps_model(schedule)
    x_T = torch.randn(512, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = exact.gaussian_flow_solution(x_T, float(schedule.alpha_bars[-1]), MEAN, STD)
    errors = [(sample(sampler, model, x_T, schedule, n) - want).abs().max().item() for n in step_counts]
    return -np.polyfit(np.log(step_counts), np.log(errors), 1)[0], errors


def sampler_verification() -> dict:
    """Max |ours − diffusers| at 10 and 50 steps, and fitted convergence orders, measured with the harness the
    tests assert on (this module: tests/test_diffusers_agreement.py, tests/test_samplers.py), so the two agree."""
    import diffusers

    schedule, model, x_T = make_setup()
    C, seed = COMMON, lambda: torch.Generator().manual_seed(1)  # noqa: E731
    oracle = {
        "DDPM": (ddpm, {}, lambda n: run_diffusers(diffusers.DDPMScheduler(**C, clip_sample=False, variance_type="fixed_small"), model, x_T, n, generator=seed())),
        "DDIM η = 0": (ddim, {"eta": 0.0}, lambda n: run_diffusers(diffusers.DDIMScheduler(**C, clip_sample=False, set_alpha_to_one=True, steps_offset=0), model, x_T, n, generator=seed(), eta=0.0)),
        "DDIM η = 1": (ddim, {"eta": 1.0}, lambda n: run_diffusers(diffusers.DDIMScheduler(**C, clip_sample=False, set_alpha_to_one=True, steps_offset=0), model, x_T, n, generator=seed(), eta=1.0)),
        "DPM-Solver++(2M)": (dpm_solver_pp, {}, lambda n: run_diffusers(diffusers.DPMSolverMultistepScheduler(**C, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", lower_order_final=True), model, x_T, n)),
        "Euler": (euler, {}, lambda n: run_diffusers(diffusers.EulerDiscreteScheduler(**C), model, x_T, n, sigma_space=True)),
    }
    agreement = [dict(sampler=name, **{f"steps_{n}": float(f"{(ours(fn, model, x_T, schedule, n, seed=1, **kw) - ref(n)).abs().max().item():.1e}") for n in (10, 50)})
                 for name, (fn, kw, ref) in oracle.items()]
    fits = {fn.__name__: fitted_order(fn, smooth_schedule()) for fn in (euler, ddim, heun, dpm_solver_pp)}
    orders = [dict(sampler=name, order=round(float(order), 2), errors=[float(f"{e:.1e}") for e in errors])
              for name, (order, errors) in fits.items()]
    return dict(agreement=agreement, orders=orders, diffusers=diffusers.__version__)
