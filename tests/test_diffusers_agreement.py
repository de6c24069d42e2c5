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

T, TOL = 1000, 1e-4
COMMON = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
              timestep_spacing="trailing")


def make_setup():
    """The schedule, the exact mixture ε and x_T shared by every comparison (also used by diffusion_edu.bench)."""
    schedule = de.linear(T)
    gmm = de.GaussianMixture(torch.tensor([[-1.5, 0.5], [1.0, 1.0], [0.5, -1.5]]), [0.3, 0.2, 0.4],
                             weights=[0.5, 0.3, 0.2])
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return schedule, gmm.eps_model(schedule), x_T


@pytest.fixture(scope="module")
def setup():
    return make_setup()


def run_diffusers(scheduler, model, x_T, steps, generator=None, sigma_space=False, **step_kw):
    scheduler.set_timesteps(steps)
    x = x_T * math.sqrt(1 + float(scheduler.sigmas[0]) ** 2) if sigma_space else x_T  # x̃_T = x_T/√ᾱ_T
    for t in scheduler.timesteps:
        eps = model(scheduler.scale_model_input(x, t), t.expand(len(x)))
        x = scheduler.step(eps, t, x, generator=generator, **step_kw).prev_sample
    return x


def ours(sampler, model, x_T, schedule, steps, seed=None, **kw):
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return de.sample(sampler, model, x_T, schedule, steps, generator=generator, **kw)


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
