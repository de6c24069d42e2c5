"""Samplers: convergence order against an exact solution, equivalences, reproducibility and bad input."""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu.course.verify import MEAN, STD, fitted_order, smooth_schedule

SAMPLERS = [de.ddpm, de.ddim, de.euler, de.heun, de.dpm_solver_pp]


@pytest.mark.parametrize("sampler, order", [(de.euler, 1), (de.ddim, 1), (de.heun, 2), (de.dpm_solver_pp, 2)])
def test_convergence_order_against_the_exact_flow_of_a_gaussian(sampler, order):
    fitted, errors = fitted_order(sampler, smooth_schedule())
    assert errors[-1] < errors[0] / 2 ** order, errors
    assert abs(fitted - order) <= 0.3, f"{sampler.__name__}: fitted order {fitted:.2f}, errors {errors}"


def test_exact_flow_solution_agrees_with_fine_heun():
    """Sanity of the reference itself: 640 Heun steps land on the closed form (error ~1e-4, shrinking as 1/n²)."""
    schedule = smooth_schedule()
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = de.gaussian_flow_solution(x_T, float(schedule.alpha_bars[-1]), MEAN, STD)
    out = de.sample(de.heun, de.gaussian(MEAN, STD).eps_model(schedule), x_T, schedule, 640)
    assert (out - exact).abs().max() < 3e-4


@pytest.fixture(scope="module")
def gmm_setup():
    schedule = de.linear()
    gmm = de.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), [0.3, 0.5])
    x_T = torch.randn(128, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return schedule, gmm, gmm.eps_model(schedule), x_T


@pytest.mark.parametrize("steps", [1, 7, 25])
def test_ddim_eta0_is_euler_in_sigma_space(gmm_setup, steps):
    """x̃ = x/√ᾱ turns DDIM (η = 0) into Euler on dx̃/dσ = ε̂: the same numbers, step by step."""
    schedule, _, model, x_T = gmm_setup
    for a, b in zip(de.ddim(model, x_T, schedule, steps), de.euler(model, x_T, schedule, steps)):
        assert a.t == b.t
        torch.testing.assert_close(a.x, b.x, rtol=1e-9, atol=1e-9)
        abar = schedule.alpha_bar(a.t)
        torch.testing.assert_close(a.x0, b.x0, rtol=1e-9, atol=1e-9 / math.sqrt(abar))


@pytest.mark.parametrize("steps", [10, 100])
def test_ddim_eta1_is_ddpm(gmm_setup, steps):
    """DDIM's σ_t(η = 1) is DDPM's posterior: with the same noise the two samplers coincide."""
    schedule, _, model, x_T = gmm_setup
    a = de.sample(de.ddpm, model, x_T, schedule, steps, generator=torch.Generator().manual_seed(5))
    b = de.sample(de.ddim, model, x_T, schedule, steps, generator=torch.Generator().manual_seed(5), eta=1.0)
    torch.testing.assert_close(a, b)


def test_samplers_reach_the_data_distribution(gmm_setup):
    """With the exact ε, every sampler lands within 2× the sliced-Wasserstein floor of real data.

    DDPM runs its native 1000 steps: with 50 (or even 200) ancestral steps and β̃ variances its samples are
    measurably too narrow (SW ≈ 2.5× floor at 50 steps), a discretisation error chapter 04 shows.
    """
    schedule, gmm, model, _ = gmm_setup
    x_T = torch.randn(4000, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref, _ = gmm.sample(4000, torch.Generator().manual_seed(6))
    floor = de.sliced_wasserstein(ref, gmm.sample(4000, torch.Generator().manual_seed(7))[0])
    for sampler in SAMPLERS:
        steps = 1000 if sampler is de.ddpm else 50
        x = de.sample(sampler, model, x_T, schedule, steps, generator=torch.Generator().manual_seed(8))
        assert de.sliced_wasserstein(x, ref) < 2 * floor, sampler.__name__


def test_trailing_grid():
    s = de.linear()
    assert de.timesteps(s, 10) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert de.timesteps(s, 1000) == list(range(999, -1, -1))
    assert de.timesteps(s, 1) == [999]
    grid = de.timesteps(s, 30)
    assert grid[0] == 999 and all(a > b for a, b in zip(grid, grid[1:])) and len(set(grid)) == 30


def test_steps_yield_records_and_count_model_calls(gmm_setup):
    schedule, _, model, x_T = gmm_setup
    calls = []
    counting = lambda x, t, y=None: calls.append(int(t[0])) or model(x, t, y)  # noqa: E731
    for sampler in SAMPLERS:
        calls.clear()
        steps = list(sampler(counting, x_T, schedule, 8))
        assert len(steps) == 8 and [s.t for s in steps] == de.timesteps(schedule, 8)
        assert all(s.x.shape == x_T.shape and s.x0.shape == x_T.shape for s in steps)
        assert len(calls) == de.model_evaluations(sampler, 8), sampler.__name__


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_gives_bit_identical_samples(sampler):
    torch.manual_seed(0)
    model = de.MLPDenoiser(hidden=32).eval()
    schedule = de.cosine(200)

    def run():
        g = torch.Generator().manual_seed(11)
        x_T = torch.randn(64, 2, generator=g)
        return de.sample(sampler, model, x_T, schedule, 20, generator=g)

    assert torch.equal(run(), run())


def test_ddpm_depends_on_the_seed(gmm_setup):
    schedule, _, model, x_T = gmm_setup
    a = de.sample(de.ddpm, model, x_T, schedule, 20, generator=torch.Generator().manual_seed(1))
    b = de.sample(de.ddpm, model, x_T, schedule, 20, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_bad_input(sampler, gmm_setup):
    schedule, _, model, x_T = gmm_setup
    with pytest.raises(ValueError, match=r"steps must be in \[1, T=1000\]"):
        de.sample(sampler, model, x_T, schedule, 0)
    with pytest.raises(ValueError, match=r"steps must be in \[1, T=1000\]"):
        de.sample(sampler, model, x_T, schedule, 1001)
    with pytest.raises(TypeError, match="steps must be an int"):
        de.sample(sampler, model, x_T, schedule, 10.0)
    with pytest.raises(ValueError, match="x_T must have a batch dimension"):
        de.sample(sampler, model, torch.randn(2), schedule, 10)
    with pytest.raises(ValueError, match="model output must have the shape of x"):
        de.sample(sampler, lambda x, t, y=None: x[:, :1], x_T, schedule, 10)
    with pytest.raises(ValueError, match="y was given but this model is unconditional"):
        de.sample(sampler, de.MLPDenoiser(), x_T.float(), schedule, 3, y=torch.zeros(len(x_T), dtype=torch.long))


def test_eta_out_of_range(gmm_setup):
    schedule, _, model, x_T = gmm_setup
    for eta in [-0.1, 1.5]:
        with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
            de.sample(de.ddim, model, x_T, schedule, 10, eta=eta)
