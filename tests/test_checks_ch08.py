"""Chapter 08's checks: each accepts the reference and a learner-style solution, and names each usual mistake."""
import math

import pytest
import torch
import torch.nn.functional as F

import diffusion_edu as de
from diffusion_edu import checks
from diffusion_edu.checks import ch08
from diffusion_edu.exact import Gaussian
from diffusion_edu.restoration import LinearOperator, centre_block, downsample, dps, sr3

from checking import assert_names_mistake


def not_done(*args):
    raise NotImplementedError()


# -------------------------------------------------------------------------------- Gaussian posterior

def posterior_with(noise=True, transpose_gain=False, transpose_mean=False, innovation=1, cov_sign=-1, prior=False):
    def fn(mu, Sigma, A, y, sigma_y):
        if prior:
            return mu.expand(len(y), -1), Sigma
        S = A @ Sigma @ A.T + (sigma_y**2 if noise else 0) * torch.eye(len(A), dtype=A.dtype)
        K = (A @ Sigma if transpose_gain else Sigma @ A.T) @ torch.linalg.inv(S)
        r = innovation * (y - mu @ A.T)
        return mu + (r @ K if transpose_mean else r @ K.T), Sigma + cov_sign * K @ A @ Sigma
    return fn


def posterior_solution(mu, Sigma, A, y, sigma_y):
    S = A @ Sigma @ A.T + sigma_y**2 * torch.eye(A.shape[0], dtype=A.dtype)
    K = torch.linalg.solve(S, A @ Sigma).T
    return mu + (y - mu @ A.T) @ K.T, Sigma - K @ A @ Sigma


POSTERIOR_MISTAKES = {
    "forgot sigma_y": (posterior_with(noise=False), "Forgot the measurement noise"),
    "A Sigma for Sigma A^T": (posterior_with(transpose_gain=True), "you used A Σ where Σ Aᵀ belongs"),
    "K for K^T": (posterior_with(transpose_mean=True), "multiplied by K itself"),
    "prior": (posterior_with(prior=True), "returned the prior"),
    "innovation sign": (posterior_with(innovation=-1), "Sign of the innovation"),
    "covariance sign": (posterior_with(cov_sign=1), "Covariance sign"),
    "single output": (lambda *a: posterior_solution(*a)[0], "pair (mean, cov)"),
    "mean per pixel only": (lambda *a: (posterior_solution(*a)[0][0], posterior_solution(*a)[1]), "shape"),
}


def test_posterior_check_accepts_the_reference_and_a_solution():
    def package(mu, Sigma, A, y, sigma_y):
        return Gaussian(mu, Sigma).posterior(LinearOperator(A, (len(mu),), "A"), y, sigma_y)
    assert checks.check_gaussian_posterior(package)
    assert checks.check_gaussian_posterior(posterior_solution)
    assert checks.check_gaussian_posterior(posterior_with())
    assert checks.check_gaussian_posterior(lambda *a: tuple(v.float() for v in posterior_solution(*a)))  # float32


@pytest.mark.parametrize("name", POSTERIOR_MISTAKES)
def test_posterior_check_names_each_mistake(name):
    assert_names_mistake(checks.check_gaussian_posterior, *POSTERIOR_MISTAKES[name])


def test_posterior_of_a_mask_keeps_the_measured_pixels_without_noise():
    """With σ_y = 0 a mask's posterior mean equals y on the kept pixels and its covariance is 0 there."""
    x = torch.randn(200, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    prior, op = Gaussian.fit(x, jitter=1e-2), centre_block(4, 2)
    mean, cov = prior.posterior(op, op(x[:3]))
    torch.testing.assert_close(op(mean), op(x[:3]), rtol=1e-4, atol=1e-4)
    assert (op.matrix @ cov @ op.matrix.T).abs().max() < 1e-6


# --------------------------------------------------------------------------------------- RePaint merge

def merge_solution(x_unknown, known, keep):
    return keep * known + (1 - keep) * x_unknown


def noised_solution(y, abar, noise):
    return math.sqrt(abar) * y + math.sqrt(1 - abar) * noise


MERGE_MISTAKES = {
    "mask flipped": ((lambda x, k, m: (1 - m) * k + m * x, noised_solution), "Mask flipped"),
    "unknown not masked": ((lambda x, k, m: m * k + x, noised_solution), "masked too"),
    "known returned": ((lambda x, k, m: k, noised_solution), "returned the known image"),
    "unknown returned": ((lambda x, k, m: x, noised_solution), "x_unknown unchanged"),
    "no square roots": ((merge_solution, lambda y, a, n: a * y + (1 - a) * n), "Square roots"),
    "coefficients swapped": ((merge_solution, lambda y, a, n: math.sqrt(1 - a) * y + math.sqrt(a) * n), "swapped"),
    "not noised": ((merge_solution, lambda y, a, n: y), "forgot to noise"),
    "known not shrunk": ((merge_solution, lambda y, a, n: y + math.sqrt(1 - a) * n), "shrink too"),
    "flattened": ((lambda x, k, m: merge_solution(x, k, m).flatten(1), noised_solution), "shape"),
}


def test_merge_check_accepts_the_reference_and_a_solution():
    assert checks.check_repaint_merge(merge_solution, noised_solution)
    assert checks.check_repaint_merge(lambda x, k, m: torch.where(m.bool(), k, x), noised_solution)


@pytest.mark.parametrize("name", MERGE_MISTAKES)
def test_merge_check_names_each_mistake(name):
    (merge, noised), words = MERGE_MISTAKES[name]
    result = checks.check_repaint_merge(merge, noised)
    assert result.status == "failed" and words in result.message, result.message


def test_the_merge_is_the_packages_projection_for_every_mask():
    """m ⊙ y + (1 − m) ⊙ x = (I − A⁺A) x + A⁺A y for a mask (Lugmayr Eq. 8 = Wang et al. Eq. 11)."""
    x, y = torch.randn(2, 3, 1, 8, 8, dtype=torch.float64)
    for op in (de.restoration.centre_block(), de.restoration.half(), de.restoration.random_pixels()):
        torch.testing.assert_close(merge_solution(x, y, op.keep), op.project(x, op(y)))


# -------------------------------------------------------------------------------------------- DPS step

def dps_solution(x_t, eps_model, t, abar, abar_prev, y, A_fn, scale, noise):
    x_t = x_t.detach().requires_grad_(True)
    x0 = (x_t - math.sqrt(1 - abar) * eps_model(x_t, t)) / math.sqrt(abar)
    norm = torch.linalg.vector_norm(y - A_fn(x0), dim=1)
    grad, = torch.autograd.grad(norm.sum(), x_t)
    beta = 1 - abar / abar_prev
    mean = (math.sqrt(abar_prev) * beta / (1 - abar) * x0 + math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar) * x_t)
    var = (1 - abar_prev) / (1 - abar) * beta
    return (mean + math.sqrt(var) * noise - scale * grad).detach()


def dps_with(**mistake):
    def fn(x_t, eps_model, t, abar, abar_prev, y, A_fn, scale, noise):
        seed = torch.Generator().manual_seed(5)  # the check's noise is this generator's first draw
        assert torch.equal(noise, torch.randn(noise.shape, generator=torch.Generator().manual_seed(5),
                                              dtype=noise.dtype))
        return ch08.dps_step(x_t, eps_model, t, abar, abar_prev, y, A_fn, scale, seed, **mistake)
    return fn


DPS_MISTAKES = {
    "squared norm": (dps_with(squared=True), "Squared norm"),
    "gradient at x0": (dps_with(at_x0=True), "with respect to x_t, through the network"),
    "one norm over the batch": (dps_with(batch_norm=True), "One norm over the whole batch"),
    "step sign": (dps_with(sign=-1.0), "Sign of the step"),
    "no guidance": (dps_with(guide=False), "plain DDPM step"),
    "no noise": (dps_with(noisy=False), "DDPM's noise"),
    "flattened": (lambda *a: dps_solution(*a).flatten(1), "shape"),
}


def test_dps_check_accepts_the_reference_and_a_solution():
    assert checks.check_dps_step(dps_with())
    assert checks.check_dps_step(dps_solution)


@pytest.mark.parametrize("name", DPS_MISTAKES)
def test_dps_check_names_each_mistake(name):
    assert_names_mistake(checks.check_dps_step, *DPS_MISTAKES[name])


def test_reference_dps_step_is_the_first_step_of_the_package_dps():
    schedule = de.linear(T=100)
    net, op = ch08._TinyEps(), LinearOperator(torch.randn(6, 16, dtype=torch.float64), (1, 4, 4), "random")
    x_T = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    y = op(torch.randn(4, 1, 4, 4, dtype=torch.float64))
    first = next(dps(net, x_T, schedule, 4, y=y, op=op, generator=torch.Generator().manual_seed(7), scale=0.3))
    t, abar, abar_prev = de.samplers.discrete.alpha_bar_grid(schedule, 4)[0]
    mine = ch08.dps_step(x_T, net, t, abar, abar_prev, y, op, 0.3, torch.Generator().manual_seed(7))
    torch.testing.assert_close(mine, first.x)


# ------------------------------------------------------------------------------------------- SR3 input

def sr3_solution(x_t, y_low):
    return torch.cat([x_t, F.interpolate(y_low, scale_factor=2, mode="nearest")], dim=1)


SR3_MISTAKES = {
    "order swapped": (lambda x, y: torch.cat([F.interpolate(y, scale_factor=2), x], 1), "Order swapped"),
    "bilinear": (lambda x, y: torch.cat([x, F.interpolate(y, scale_factor=2, mode="bilinear")], 1), "Bilinear"),
    "bicubic": (lambda x, y: torch.cat([x, F.interpolate(y, scale_factor=2, mode="bicubic")], 1), "Bicubic"),
    "adjoint": (lambda x, y: torch.cat([x, F.interpolate(y, scale_factor=2) / 4], 1), "Aᵀy"),
    "batch dimension": (lambda x, y: torch.cat([x, F.interpolate(y, scale_factor=2)], 0), "channel dimension"),
    "width dimension": (lambda x, y: torch.cat([x, F.interpolate(y, scale_factor=2)], 3), "channel dimension"),
    "not up-sampled": (lambda x, y: torch.cat([x, y], 1), "up-sample y_low"),
    "x_t alone": (lambda x, y: x, "shape"),
}


def test_sr3_check_accepts_the_reference_and_a_solution():
    assert checks.check_sr3_input(sr3_solution)
    assert checks.check_sr3_input(lambda x, y: torch.cat([x, y.repeat_interleave(2, 2).repeat_interleave(2, 3)], 1))
    assert checks.check_sr3_input(
        lambda x, y: torch.cat([x, sr3.condition(downsample(8, 2), y.reshape(len(y), -1))], 1))


@pytest.mark.parametrize("name", SR3_MISTAKES)
def test_sr3_check_names_each_mistake(name):
    assert_names_mistake(checks.check_sr3_input, *SR3_MISTAKES[name])


# --------------------------------------------------------------------------------------------- common

@pytest.mark.parametrize("check", [checks.check_gaussian_posterior, checks.check_dps_step, checks.check_sr3_input,
                                   lambda fn: checks.check_repaint_merge(fn, noised_solution)])
def test_unfinished_is_not_done_and_a_crash_is_an_error(check):
    assert check(not_done).status == "not done"
    result = check(lambda *args: 1 / 0)
    assert result.status == "error" and "ZeroDivisionError" in result.message
