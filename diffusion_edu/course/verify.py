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
from ..samplers import sample
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
