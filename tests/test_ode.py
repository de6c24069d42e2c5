"""The ODE samplers: exact on a Gaussian, at their orders, and the same on every parameterisation of one model."""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu import parameterisations as P
from diffusion_edu.samplers.ode import ode_euler, ode_evaluations, ode_heun, ode_midpoint

M, S = 0.7, 0.3  # data N(M, S²) in 2-D


def gaussian_x0(path):
    """E[x₀ | x_t] for x₀ ~ N(M, S² I): M + α S² / (α² S² + σ²) (x_t − α M)."""
    def model(x, t, y=None):
        c = path.coefficients(t, x)
        return M + c.alpha * S**2 / (c.alpha**2 * S**2 + c.sigma**2) * (x - c.alpha * M)
    return model


def exact_end(path, x1):
    """The PF-ODE's transport of a Gaussian is affine: x₀ = M + S (x₁ − α₁M)/√(α₁²S² + σ₁²) (x₁ the t = 1 sample)."""
    one = torch.ones(1, dtype=torch.float64)
    a, s = float(path.alpha(one)), float(path.sigma(one))
    return M + S * (x1 - a * M) / math.sqrt(a**2 * S**2 + s**2)


@pytest.mark.parametrize("path", [de.rectified(), de.vp(), de.ve(0.01, 20.0)], ids=["rectified", "vp", "ve"])
def test_second_order_samplers_transport_a_gaussian_exactly(path):
    """Run to t_min, where x_t = α x₀ + σ ε is data to within σ(t_min): the transported point is α(t_min) x₀."""
    x1 = torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x1 = x1 * math.sqrt(float(path.alpha(torch.ones(1, dtype=torch.float64))) ** 2 * S**2
                        + float(path.sigma(torch.ones(1, dtype=torch.float64))) ** 2) + M * float(path.alpha(torch.ones(1, dtype=torch.float64)))
    d = P.Denoiser(gaussian_x0(path), path, P.X0)
    times = de.karras_times(path, 200) if path.name == "ve" else de.uniform_times(200, path.t_min)
    end = torch.tensor([float(times[-1])], dtype=torch.float64)
    a, s = float(path.alpha(end)), float(path.sigma(end))
    for sampler in (ode_heun, ode_midpoint):
        out = de.sample(sampler, d, x1, times)
        want = a * M + math.sqrt(a**2 * S**2 + s**2) * (exact_end(path, x1) - M) / S  # the affine map to t_min
        assert (out - want).abs().max() < 1e-3, (sampler.__name__, (out - want).abs().max())


def test_orders_on_the_straight_path():
    path = de.rectified()
    d = P.Denoiser(gaussian_x0(path), path, P.X0)
    x1 = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want = exact_end(path, x1)
    for sampler, order in ((ode_euler, 1), (ode_heun, 2), (ode_midpoint, 2)):
        errors = [(de.sample(sampler, d, x1, de.uniform_times(n)) - want).abs().max().item() for n in (10, 20, 40)]
        slopes = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
        assert all(s > order - 0.3 for s in slopes), (sampler.__name__, errors, slopes)  # at least its order
    grid = de.uniform_times(10)
    assert ode_evaluations(ode_euler, d, grid) == 10 and ode_evaluations(ode_heun, d, grid) == 19
    assert ode_evaluations(ode_midpoint, d, grid) == 20


def test_every_parameterisation_gives_the_same_trajectory():
    path = de.rectified()
    x0_model = gaussian_x0(path)
    x1 = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    runs = []
    for param in P.PARAMETERISATIONS:
        def model(x, t, y=None, param=param):
            c = path.coefficients(t, x)
            x0 = x0_model(x, t)
            return param.target(x0, P.eps_from_x0(x, x0, c), c)
        runs.append(de.sample(ode_heun, P.Denoiser(model, path, param), x1, de.uniform_times(8, 0.0, 0.999)))
    for run in runs[1:]:
        torch.testing.assert_close(run, runs[0])


def test_bad_grids_are_refused():
    d = P.Denoiser(gaussian_x0(de.rectified()), de.rectified(), P.X0)
    with pytest.raises(ValueError, match="must fall strictly"):
        de.sample(ode_euler, d, torch.zeros(2, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        de.sample(ode_euler, d, torch.zeros(2, 2), torch.tensor([1.0]))
