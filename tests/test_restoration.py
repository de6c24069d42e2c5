"""Chapter 08: measurement operators, the exact Gaussian posterior, and every restoration solver against it."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import diffusion_edu as de
from diffusion_edu import pretrained
from diffusion_edu.exact import Gaussian
from diffusion_edu.restoration import (blur, centre_block, consistency, coverage, ddrm, diversity, downsample, dps,
                                       half, mask, posterior_errors, posterior_floor, psnr, random_pixels, region,
                                       repaint, restoration_evaluations, sdedit, ssim, tmpd)
from diffusion_edu.restoration.sr3 import condition, sr3
from diffusion_edu.samplers import ddpm, sample

OPS = [centre_block(), half(), half(side="bottom"), random_pixels(), downsample(), blur()]


@pytest.fixture(scope="module")
def prior():
    return Gaussian.fit(de.digits("train")[0])


@pytest.fixture(scope="module")
def schedule():
    return de.get_schedule("cosine")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ operators

def test_operators_are_the_named_image_operations():
    x = torch.randn(5, 1, 8, 8, generator=gen())
    torch.testing.assert_close(downsample()(x), F.avg_pool2d(x, 2).flatten(1))
    k = torch.exp(-0.5 * torch.arange(-2.0, 3.0) ** 2)
    k2 = (k[:, None] * k[None]) / k.sum() ** 2
    torch.testing.assert_close(blur(width=1.0)(x), F.conv2d(x, k2[None, None], padding=2).flatten(1))
    keep = centre_block().keep[0]
    torch.testing.assert_close(centre_block()(x), x.flatten(1)[:, keep.reshape(-1).bool()])
    assert centre_block().m == 64 - 16 and half().m == 32 and random_pixels(share=0.25).m == 16


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_pinv_project_and_svd(op):
    x, z = torch.randn(2, 4, 1, 8, 8, generator=gen(1), dtype=torch.float64)
    y = op(x)
    torch.testing.assert_close(op(op.pinv(y)), y)  # A A⁺ y = y for y in A's range
    p = op.project(z, y)
    torch.testing.assert_close(op(p), y)  # the merge satisfies the measurement …
    torch.testing.assert_close(op.project(p, y), p)  # … and is a projection
    U, s, V = op.svd
    torch.testing.assert_close(U @ torch.diag(s) @ V[:, :op.m].T, op.matrix)
    if op.keep is not None:  # for a mask, project is RePaint's m ⊙ known + (1 − m) ⊙ unknown
        torch.testing.assert_close(p, op.keep * x + (1 - op.keep) * z)


def test_bad_input_names_the_argument():
    op = centre_block()
    with pytest.raises(ValueError, match="x must be a batch of images"):
        op(torch.zeros(2, 64))
    with pytest.raises(ValueError, match=r"y must be a measurement of .*\(B, 48\)"):
        op.pinv(torch.zeros(2, 16))
    with pytest.raises(ValueError, match="sigma_y must be ≥ 0"):
        op.measure(torch.zeros(2, 1, 8, 8), -0.1)
    with pytest.raises(ValueError, match="keep must hold 0"):
        mask(torch.full((1, 8, 8), 0.5))
    with pytest.raises(ValueError, match="factor must be a positive divisor"):
        downsample(8, 3)
    model = Gaussian(torch.zeros(64), torch.eye(64), (1, 8, 8)).eps_model(de.get_schedule("cosine"))
    with pytest.raises(ValueError, match="y must hold one measurement per sample"):
        next(repaint(model, torch.zeros(4, 1, 8, 8), de.get_schedule("cosine"), 5, y=torch.zeros(3, 48), op=op))
    with pytest.raises(TypeError, match="op must be a restoration.operators.LinearOperator"):
        next(dps(model, torch.zeros(4, 1, 8, 8), de.get_schedule("cosine"), 5, y=torch.zeros(4, 48), op="mask"))


# ---------------------------------------------------------------------------------- the exact Gaussian

def test_gaussian_denoiser_and_posterior_against_joint_conditioning(prior):
    D = 64
    alpha, sigma = 0.6, 0.8
    x_t = torch.randn(3, 1, 8, 8, generator=gen(2), dtype=torch.float64)
    S, mu = prior.cov, prior.mean
    want = mu + (x_t.reshape(3, D) - alpha * mu) @ torch.linalg.solve(alpha**2 * S + sigma**2 * torch.eye(D, dtype=S.dtype),
                                                                      alpha * S)
    torch.testing.assert_close(prior.x0_given(x_t, alpha, sigma).reshape(3, D), want)
    # the posterior by conditioning the joint Gaussian of (x, y) on y (Schur complement), not the gain formula
    for op, sigma_y in [(centre_block(), 0.0), (downsample(), 0.05), (blur(), 0.05)]:
        A = op.matrix
        joint = torch.cat([torch.cat([S, S @ A.T], 1), torch.cat([A @ S, A @ S @ A.T + sigma_y**2 * torch.eye(op.m, dtype=S.dtype)], 1)])
        y = op.measure(de.digits("test")[0][:2].double(), sigma_y, gen(3))
        Sxy, Syy = joint[:D, D:], joint[D:, D:]
        mean = mu + (y - mu @ A.T) @ torch.linalg.inv(Syy) @ Sxy.T
        cov = S - Sxy @ torch.linalg.inv(Syy) @ Sxy.T
        m, C = prior.posterior(op, y, sigma_y)
        torch.testing.assert_close(m.reshape(2, D).double(), mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(C, cov, atol=1e-8, rtol=1e-6)
    m, C = prior.posterior(centre_block(), centre_block()(x_t), 0.0)
    assert C.diagonal()[centre_block().keep.reshape(-1).bool()].abs().max() < 1e-10  # measured pixels are known


def test_coverage_of_exact_posterior_draws_is_the_level(prior):
    op = centre_block()
    truth = de.digits("test")[0][:200]
    y = op(truth)
    m, C = prior.posterior(op, y, 0.0)
    lam, Q = torch.linalg.eigh(C)
    # a "truth" drawn from the posterior itself, and 400 posterior draws, for each of 200 y
    z = torch.randn(401, 200, 64, generator=gen(4), dtype=torch.float64) @ (Q * lam.clamp_min(0).sqrt()).T
    draws = (m.reshape(200, 64).double() + z).reshape(401, 200, 1, 8, 8)
    c = coverage(draws[1:], draws[0], region(op))
    assert abs(c - 0.9) < 0.03, c
    assert diversity(draws[1:], region(op)) == pytest.approx(C.diagonal()[region(op).reshape(-1).bool()].sqrt().mean().item(), rel=0.05)


def test_psnr_ssim():
    x = de.digits("test")[0][:8]
    assert (psnr(x, x) > 100).all() and torch.allclose(ssim(x, x), torch.ones(8))
    noisy = x + 0.1 * torch.randn(x.shape, generator=gen(5))
    assert psnr(noisy, x).mean() == pytest.approx(10 * math.log10(4 / 0.01), abs=0.5)
    assert (ssim(noisy, x) < 1).all() and (ssim(noisy, x) > ssim(noisy + 0.3 * torch.randn(x.shape, generator=gen(6)), x)).all()


# ----------------------------------------------------------------------- solvers on the exact bench

def test_tmpd_with_the_exact_prior_is_ddpm_on_the_exact_posterior(prior, schedule):
    """x₀ | x_t is exactly N(x̂₀, C_t) for a Gaussian prior, so TMPD's Kalman step gives E[x₀ | x_t, y]: the same
    as DDPM run on the posterior's own denoiser, step by step, with the same noise."""
    for op, sigma_y in [(centre_block(), 0.0), (downsample(), 0.05)]:
        y = op.measure(de.digits("test")[0][:1], sigma_y, gen(7)).expand(6, -1)
        m, C = prior.posterior(op, y[:1], sigma_y)
        post = Gaussian(m.reshape(-1), C, (1, 8, 8))
        x_T = torch.randn(6, 1, 8, 8, generator=gen(8))
        ours = [s.x for s in tmpd(prior.eps_model(schedule), x_T, schedule, 20, y=y, op=op, sigma_y=sigma_y, generator=gen(9))]
        want = [s.x for s in ddpm(post.eps_model(schedule), x_T, schedule, 20, generator=gen(9))]
        torch.testing.assert_close(ours[-1], want[-1], atol=2e-3, rtol=0)
        assert max((a - b).abs().max().item() for a, b in zip(ours, want)) < 5e-3


N_BENCH = 2000


@pytest.mark.parametrize("solver, steps, kwargs, tol", [
    # measured at n = 4000 (docs/BENCHMARKS.md): repaint U=20 0.15/0.18, ddrm 0.34/0.16, dps 0.19/0.10
    (repaint, 50, dict(resample=10), (0.35, 0.30)),
    (ddrm, 100, {}, (0.50, 0.30)),
    (dps, 100, dict(scale=0.3), (0.35, 0.25)),
], ids=["repaint", "ddrm", "dps"])
def test_solvers_approach_the_exact_posterior(prior, schedule, solver, steps, kwargs, tol):
    """Each solver's samples of p(x | y) for the centre-block task, against the exact posterior: the mean's miss
    in posterior standard deviations and the covariance's relative error, within the stated tolerances (the
    floor of n exact draws is ≈ 0.02 / 0.07 here), and far better than what a wrong answer, the prior, scores."""
    op = centre_block()
    y = op(de.digits("test")[0][:1]).expand(N_BENCH, -1)
    m, C = prior.posterior(op, y[:1], 0.0)
    out = sample(solver, prior.eps_model(schedule), torch.randn(N_BENCH, 1, 8, 8, generator=gen(10)), schedule, steps,
                 y=y, op=op, generator=gen(11), **kwargs)
    mean_err, cov_err = posterior_errors(out, m, C)
    prior_err = posterior_errors(prior.sample(N_BENCH, gen(12)), m, C)
    assert mean_err < tol[0] and cov_err < tol[1], (mean_err, cov_err)
    assert mean_err < prior_err[0] / 3 and cov_err < prior_err[1] / 3, (mean_err, cov_err, prior_err)
    floor = posterior_floor(m, C, N_BENCH)
    assert floor[0] < 0.05 and floor[1] < 0.1, floor
    if solver in (repaint, ddrm):  # both hold a noise-free measurement exactly
        assert consistency(out, y, op).max() < 1e-4


def test_sdedit_is_a_guide_not_a_posterior_sampler(prior, schedule):
    op = centre_block()
    y = op(de.digits("test")[0][:1]).expand(N_BENCH, -1)
    m, C = prior.posterior(op, y[:1], 0.0)
    out = sample(sdedit, prior.eps_model(schedule), torch.randn(N_BENCH, 1, 8, 8, generator=gen(13)), schedule, 50,
                 y=y, op=op, generator=gen(14), strength=0.5)
    assert posterior_errors(out, m, C)[0] > 0.5  # it forgets y where it noised it, and never pulls back
    assert restoration_evaluations(sdedit, schedule, 50, strength=0.5) == 25
    assert restoration_evaluations(repaint, schedule, 50, resample=4) == 200


def test_repaint_resampling_helps(prior, schedule):
    op = centre_block()
    y = op(de.digits("test")[0][:1]).expand(N_BENCH, -1)
    m, C = prior.posterior(op, y[:1], 0.0)
    errs = [posterior_errors(sample(repaint, prior.eps_model(schedule), torch.randn(N_BENCH, 1, 8, 8, generator=gen(15)),
                                    schedule, 25, y=y, op=op, generator=gen(16), resample=u), m, C) for u in (1, 8)]
    assert errs[1][0] < errs[0][0] / 2 and errs[1][1] < errs[0][1], errs


# ----------------------------------------------------------------------------------- the digits models

def test_sr3_checkpoint_beats_nearest_upsampling_and_is_consistent():
    ck = pretrained.load("digits-sr3")
    op = downsample(**{k: v for k, v in ck.info["task"].items() if k in ("size", "factor")})
    truth = de.digits("test")[0][:32]
    y = op(truth)
    out = sample(sr3, ck.denoiser, torch.randn(truth.shape, generator=gen(17)), ck.schedule, 25, y=y, op=op,
                 generator=gen(18))
    assert psnr(out, truth).mean() > psnr(condition(op, y), truth).mean() + 1.0
    assert consistency(out, y, op).mean() < 0.6 * consistency(condition(op, y) * 0, y, op).mean()


def test_prior_solvers_restore_digits_the_classifier_recognises():
    ck, clf = pretrained.load("digits-uncond"), pretrained.load("digits-classifier").model
    x, labels = de.digits("test")
    x, labels = x[:48], labels[:48]
    op = downsample()
    y = op(x)
    acc_nearest = de.evaluate.accuracy(clf, condition(op, y), labels)
    out = sample(ddrm, ck.denoiser, torch.randn(x.shape, generator=gen(19)), ck.schedule, 25, y=y, op=op, generator=gen(20))
    assert de.evaluate.accuracy(clf, out.clamp(-1, 1), labels) > acc_nearest
    assert consistency(out, y, op).max() < 1e-3
