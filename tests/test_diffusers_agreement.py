"""Our samplers against an independent implementation: diffusers' schedulers (test-only dependency).

Both sides are driven by the exact ε of a known 2-D Gaussian mixture (no training, so any difference is
the samplers'), start from the same x_T and, for the stochastic ones, draw noise from identically seeded
generators. Configuration traps, each set explicitly below:
- ``clip_sample`` defaults to True in DDPM/DDIM: we never clip, so False.
- DDIM: ``set_alpha_to_one=True`` (the last step lands on ᾱ = 1, clean data) and ``steps_offset=0``.
- ``timestep_spacing="trailing"``: our grid, t_i = round(T − i·T/steps) − 1.
- DDPM: ``variance_type="fixed_small"`` is β̃ (Ho et al. Eq. 7), our posterior variance.
- DPM-Solver++: ``final_sigmas_type="zero"`` (end at σ = 0) and ``lower_order_final=True``.
- Euler lives in σ-space: its sample is x̃ = x_t·√(1 + σ²) = x_t/√ᾱ_t, and the network gets
  ``scale_model_input`` = x̃/√(1 + σ²) = x_t. At σ = 0 both coordinates are x_0. Its ``init_noise_sigma`` with
  trailing spacing is σ_max, not √(1 + σ_max²): starting from x_T·σ_max is off by a relative 1/(2σ_max²) and
  shows as a ~5e-4 gap, so we hand it the exact x̃_T = x_T·√(1 + σ_max²).
"""
import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the test-only oracle (pip install -e .[dev])")

import diffusion_edu as de  # noqa: E402

from diffusion_edu.course.verify import COMMON, T, make_setup, ours, run_diffusers  # noqa: E402,F401

TOL = 1e-4


@pytest.fixture(scope="module")
def setup():
    return make_setup()


@pytest.mark.parametrize("steps", [10, 50])
def test_ddpm(setup, steps):
    schedule, model, x_T = setup
    ref = run_diffusers(diffusers.DDPMScheduler(**COMMON, clip_sample=False, variance_type="fixed_small"),
                        model, x_T, steps, generator=torch.Generator().manual_seed(1))
    assert (ours(de.ddpm, model, x_T, schedule, steps, seed=1) - ref).abs().max() <= TOL


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [10, 50])
def test_ddim(setup, steps, eta):
    schedule, model, x_T = setup
    scheduler = diffusers.DDIMScheduler(**COMMON, clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    ref = run_diffusers(scheduler, model, x_T, steps, generator=torch.Generator().manual_seed(1), eta=eta)
    assert (ours(de.ddim, model, x_T, schedule, steps, seed=1, eta=eta) - ref).abs().max() <= TOL


@pytest.mark.parametrize("steps", [10, 50])
def test_dpm_solver_pp(setup, steps):
    schedule, model, x_T = setup
    scheduler = diffusers.DPMSolverMultistepScheduler(**COMMON, algorithm_type="dpmsolver++", solver_order=2,
                                                      final_sigmas_type="zero", lower_order_final=True)
    ref = run_diffusers(scheduler, model, x_T, steps)
    assert (ours(de.dpm_solver_pp, model, x_T, schedule, steps) - ref).abs().max() <= TOL


@pytest.mark.parametrize("steps", [10, 50])
def test_euler(setup, steps):
    schedule, model, x_T = setup
    ref = run_diffusers(diffusers.EulerDiscreteScheduler(**COMMON), model, x_T, steps, sigma_space=True)
    assert (ours(de.euler, model, x_T, schedule, steps) - ref).abs().max() <= TOL


def test_the_oracle_is_not_trivially_agreeable(setup):
    """The bound means something: two different samplers differ by far more than TOL on the same x_T."""
    schedule, model, x_T = setup
    gap = (ours(de.euler, model, x_T, schedule, 10) - ours(de.dpm_solver_pp, model, x_T, schedule, 10)).abs().max()
    assert gap > 100 * TOL
