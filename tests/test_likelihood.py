"""Likelihood: the probability-flow ODE with the exact ε of a Gaussian mixture returns its exact log-density."""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu.likelihood import log_likelihood, velocity

SCHEDULES = {"linear": de.linear, "cosine": de.cosine, "sigmoid": de.sigmoid}
GMM = de.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]]), [0.3, 0.4, 0.5])


def points(data, n=96, seed=0):
    return data.sample(n, torch.Generator().manual_seed(seed))[0].double()


@pytest.mark.parametrize("name, mean_tol, max_tol", [("linear", 2e-3, 1e-2), ("cosine", 5e-4, 3e-3),
                                                      ("sigmoid", 5e-4, 3e-3)])
def test_mixture_log_likelihood_matches_the_exact_density(name, mean_tol, max_tol):
    """200 Heun steps, mean / max absolute error measured: cosine 6e-5 / 5e-4 nats, sigmoid 2e-4 / 1.3e-3.
    Linear 1.1e-3 / 5.7e-3, a floor that more steps do not lower: its prior N(0, I) ignores the √ᾱ_T E[x_0]
    (6e-3 E[x_0], ᾱ_T = 4e-5) still left in x_T."""
    schedule = SCHEDULES[name]()
    x0 = points(GMM)
    err = log_likelihood(GMM.eps_model(schedule), x0, schedule, 200) - GMM.log_prob(x0)
    assert err.shape == (len(x0),)
    assert err.abs().mean() < mean_tol and err.abs().max() < max_tol, (err.abs().mean(), err.abs().max())


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_smooth_gaussian_is_much_tighter(name):
    """N(0, 0.8² I): a smooth flow, and a prior exact to ~ᾱ_T (no mean left in x_T), so only Heun's error is
    left: max 1.7e-4 nats on linear and 3.7e-5 on cosine at 200 steps."""
    schedule, data = SCHEDULES[name](), de.gaussian(torch.zeros(2), 0.8)
    x0 = points(data, n=64)
    err = log_likelihood(data.eps_model(schedule), x0, schedule, 200) - data.log_prob(x0)
    assert err.abs().max() < 3e-4, err.abs().max()


def test_heun_in_phi_is_second_order_including_the_first_step():
    """Halving the step divides the error by 4 (measured 1.5e-4 → 3.7e-5, cosine, 100 → 200 steps): the zero
    slope assumed at clean data costs no order. (On the linear schedule the ratio is 3.7, then 3.0 and 2.0 as
    the ᾱ_T ≈ 4e-5 floor of the prior comes in.)"""
    schedule, data = de.cosine(), de.gaussian(torch.zeros(2), 0.8)
    x0 = points(data, n=64)
    model, exact = data.eps_model(schedule), data.log_prob(x0)
    errors = [(log_likelihood(model, x0, schedule, n) - exact).abs().max().item() for n in (100, 200)]
    assert 3.5 < errors[0] / errors[1] < 4.5, errors


def test_labels_pass_through_to_the_model():
    """Given y = k the exact model is ε of component k alone, so the likelihood is that of N(μ_k, s_k² I)."""
    schedule = de.cosine()
    x0, y = GMM.sample(64, torch.Generator().manual_seed(1))
    x0 = x0.double()
    conditional = log_likelihood(GMM.eps_model(schedule), x0, schedule, 200, y=y)
    mean, var = GMM.means[y], GMM.stds[y] ** 2  # (B, D), (B,)
    exact = -0.5 * ((x0 - mean) ** 2).sum(1) / var - math.log(2 * math.pi) - var.log()  # log N(x0; μ_y, s_y² I), D = 2
    torch.testing.assert_close(conditional, exact, atol=2e-3, rtol=0)  # measured 7e-4


def test_divergence_of_a_linear_model_is_its_trace():
    """ε̂ = A x: f = (A − sin φ I) x / cos φ, so ∇·f = (tr A − D sin φ)/cos φ for every point, by hand."""
    A = torch.tensor([[0.5, 2.0, -1.0], [0.3, -0.7, 0.4], [1.5, 0.2, 0.9]], dtype=torch.float64)
    model = lambda x, t, y=None: x @ A.T  # noqa: E731
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    schedule = de.linear()
    for t in (0, 500, 999):
        sin, cos = math.sqrt(1 - schedule.alpha_bar(t)), math.sqrt(schedule.alpha_bar(t))
        f, div = velocity(model, x, t, schedule)
        torch.testing.assert_close(f, x @ (A - sin * torch.eye(3, dtype=A.dtype)).T / cos)
        torch.testing.assert_close(div, torch.full((16,), (A.trace().item() - 3 * sin) / cos, dtype=A.dtype))


def test_divergence_of_a_network_is_the_trace_of_its_jacobian():
    """Exact, not estimated: the trace of each sample's full Jacobian, and no gradient leaks into the weights."""
    torch.manual_seed(0)
    net = de.MLPDenoiser(dim=2, hidden=32)
    x, t, schedule = torch.randn(8, 2), 300, de.linear()
    _, div = velocity(net, x, t, schedule)
    sin, cos = math.sqrt(1 - schedule.alpha_bar(t)), math.sqrt(schedule.alpha_bar(t))
    for b in range(8):
        J = torch.autograd.functional.jacobian(lambda v: net(v[None], torch.tensor([t]))[0], x[b])  # (D, D)
        torch.testing.assert_close(div[b], (J.trace() - 2 * sin) / cos)
    out = log_likelihood(net, x, schedule, 5)
    assert out.shape == (8,) and not out.requires_grad
    assert all(p.grad is None for p in net.parameters())


def test_bad_input_is_refused_clearly():
    schedule, model = de.linear(), GMM.eps_model(de.linear())
    with pytest.raises(ValueError, match="x0"):
        log_likelihood(model, torch.zeros(2), schedule)  # no batch dimension
    with pytest.raises(ValueError, match="x0"):
        log_likelihood(model, torch.zeros(4, 1, 2), schedule)  # images are for Hutchinson, not D passes
    with pytest.raises(TypeError, match="x0"):
        log_likelihood(model, torch.zeros(4, 2, dtype=torch.long), schedule)
    for steps in (0, schedule.T + 1):
        with pytest.raises(ValueError, match="steps"):
            log_likelihood(model, torch.zeros(4, 2), schedule, steps)
