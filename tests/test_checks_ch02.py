"""Chapter 02's checks accept the reference and name each usual mistake (posterior, x̂_0, ε-loss, DDPM step)."""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu import checks

from checking import assert_names_mistake


def not_done(*args, **kwargs):
    raise NotImplementedError()


# ------------------------------------------------------------------------------------------ the posterior


def posterior_with(a=None, b=None, var=None, wrap=False):
    """posterior_mean_var from coefficient rules (abar, abar_prev, alpha, beta) -> float; None keeps the reference."""
    def fn(x0, x_t, t, s):
        abar, alpha, beta = float(s.alpha_bars[t]), float(s.alphas[t]), float(s.betas[t])
        prev = float(s.alpha_bars[t - 1]) if (t > 0 or wrap) else 1.0
        ca = (a or (lambda ab, p, al, be: math.sqrt(p) * be / (1 - ab)))(abar, prev, alpha, beta)
        cb = (b or (lambda ab, p, al, be: math.sqrt(al) * (1 - p) / (1 - ab)))(abar, prev, alpha, beta)
        v = (var or (lambda ab, p, al, be: (1 - p) / (1 - ab) * be))(abar, prev, alpha, beta)
        return ca * x0 + cb * x_t, v
    return fn


def posterior_float32(x0, x_t, t, s):
    abar = s.alpha_bars.float()[t]
    prev = s.alpha_bars.float()[t - 1] if t > 0 else torch.tensor(1.0)
    beta, alpha = s.betas.float()[t], s.alphas.float()[t]
    mean = prev.sqrt() * beta / (1 - abar) * x0 + alpha.sqrt() * (1 - prev) / (1 - abar) * x_t
    return mean, ((1 - prev) / (1 - abar) * beta).expand(len(x0), 1)


POSTERIOR_MISTAKES = {
    "beta for beta tilde": (posterior_with(var=lambda ab, p, al, be: be), "variance is β_t"),
    "std for variance": (posterior_with(var=lambda ab, p, al, be: math.sqrt((1 - p) / (1 - ab) * be)),
                         "standard deviation"),
    "ratio upside down": (posterior_with(var=lambda ab, p, al, be: (1 - ab) / (1 - p) * be if p < 1 else 0.0),
                          "upside down"),
    "swapped coefficients": (posterior_with(a=lambda ab, p, al, be: math.sqrt(al) * (1 - p) / (1 - ab),
                                            b=lambda ab, p, al, be: math.sqrt(p) * be / (1 - ab)), "swapped"),
    "index wraps at t = 0": (posterior_with(wrap=True), "wraps around"),
    "abar for alpha on x_t": (posterior_with(b=lambda ab, p, al, be: math.sqrt(ab) * (1 - p) / (1 - ab)),
                              "√ᾱ_t where √α_t belongs"),
    "abar_t for abar_prev on x_0": (posterior_with(a=lambda ab, p, al, be: math.sqrt(ab) * be / (1 - ab)),
                                    "√ᾱ_t where √ᾱ_{t−1} belongs"),
    "no root on x_0": (posterior_with(a=lambda ab, p, al, be: p * be / (1 - ab)), "lacks a square root"),
    "no root on x_t": (posterior_with(b=lambda ab, p, al, be: al * (1 - p) / (1 - ab)), "lacks a square root"),
    "not a pair": (lambda x0, x_t, t, s: de.q_posterior(x0, x_t, t, s)[0], "pair"),
}


def test_posterior_accepts_the_package_and_float32():
    assert checks.check_posterior_mean_var(de.q_posterior)
    assert checks.check_posterior_mean_var(posterior_with())
    assert checks.check_posterior_mean_var(posterior_float32)


@pytest.mark.parametrize("name", POSTERIOR_MISTAKES)
def test_posterior_names_the_mistake(name):
    assert_names_mistake(checks.check_posterior_mean_var, *POSTERIOR_MISTAKES[name])


# ---------------------------------------------------------------------------------------------- x̂_0


def x0_with(a, b):
    """predict_x0 from coefficient rules (abar, alpha, abar_prev) -> float for x_t and ε."""
    def fn(x_t, t, eps, s):
        abar, alpha = float(s.alpha_bars[t]), float(s.alphas[t])
        prev = s.alpha_bar(t - 1)
        return a(abar, alpha, prev) * x_t + b(abar, alpha, prev) * eps
    return fn


X0_MISTAKES = {
    "alpha for abar": (x0_with(lambda ab, al, p: 1 / math.sqrt(al), lambda ab, al, p: -math.sqrt(1 - al) / math.sqrt(al)),
                       "α_t where ᾱ_t belongs"),
    "no roots": (x0_with(lambda ab, al, p: 1 / ab, lambda ab, al, p: -(1 - ab) / ab), "square roots"),
    "sign": (x0_with(lambda ab, al, p: 1 / math.sqrt(ab), lambda ab, al, p: math.sqrt(1 - ab) / math.sqrt(ab)),
             "sign"),
    "multiplied": (x0_with(lambda ab, al, p: math.sqrt(ab), lambda ab, al, p: -math.sqrt(1 - ab) * math.sqrt(ab)),
                   "multiplied"),
    "not divided": (x0_with(lambda ab, al, p: 1.0, lambda ab, al, p: -math.sqrt(1 - ab)), "forgot to divide"),
    "brackets": (x0_with(lambda ab, al, p: 1 / math.sqrt(ab), lambda ab, al, p: -math.sqrt(1 - ab)), "brackets"),
    "previous abar": (x0_with(lambda ab, al, p: 1 / math.sqrt(p), lambda ab, al, p: -math.sqrt(1 - p) / math.sqrt(p)),
                      "Off by one"),
    "noisy": (lambda x_t, t, eps, s: de.x0_from_eps(x_t, t, eps, s) + 0.1 * torch.randn_like(x_t), "fixed multiple"),
}


def test_predict_x0_accepts_the_package_and_float32():
    assert checks.check_predict_x0(de.x0_from_eps)
    assert checks.check_predict_x0(lambda x_t, t, eps, s: (x_t - (1 - s.alpha_bars.float()[t]).sqrt() * eps)
                                   / s.alpha_bars.float()[t].sqrt())


@pytest.mark.parametrize("name", X0_MISTAKES)
def test_predict_x0_names_the_mistake(name):
    assert_names_mistake(checks.check_predict_x0, *X0_MISTAKES[name])


# ---------------------------------------------------------------------------------------------- the ε-loss


def loss_with(target="eps", reduce="mean", eps_first=False, roots=True, own_rng=False, model_input="x_t",
              detach=False):
    """The reference loss of Ho et al. (2020), Eq. 14, with one knob turned to a usual mistake."""
    def fn(model, x0, s, generator):
        g = None if own_rng else generator
        if eps_first:
            eps = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, s.T, (len(x0),), generator=g)
        else:
            t = torch.randint(0, s.T, (len(x0),), generator=g)
            eps = torch.randn(x0.shape, generator=g)
        abar = s.alpha_bars.float()[t][:, None]
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps if roots else abar * x0 + (1 - abar) * eps
        inp = {"x_t": x_t, "x0": x0}[model_input]
        err = (model(inp, t) - {"eps": eps, "x0": x0}[target]) ** 2
        loss = {"mean": err.mean(), "sum": err.sum(), "sum over D": err.sum(1).mean()}[reduce]
        return loss.detach() if detach else loss
    return fn


LOSS_MISTAKES = {
    "x0 target": (loss_with(target="x0"), "target is the noise ε"),
    "sum": (loss_with(reduce="sum"), "summed the squared errors"),
    "sum over coordinates": (loss_with(reduce="sum over D"), "summed over the coordinates"),
    "eps drawn first": (loss_with(eps_first=True), "drew ε before t"),
    "no square roots": (loss_with(roots=False), "with square roots"),
    "global RNG": (loss_with(own_rng=True), "generator=generator"),
    "clean input": (loss_with(model_input="x0"), "noisy x_t"),
    "detached": (loss_with(detach=True), "no gradient"),
    "a float": (lambda *args: loss_with()(*args).item(), "torch.Tensor"),
}


def test_ddpm_loss_accepts_the_reference():
    assert checks.check_ddpm_loss(lambda model, x0, s, g: de.diffusion_loss(model, x0, s, generator=g))
    assert checks.check_ddpm_loss(loss_with())


@pytest.mark.parametrize("name", LOSS_MISTAKES)
def test_ddpm_loss_names_the_mistake(name):
    assert_names_mistake(checks.check_ddpm_loss, *LOSS_MISTAKES[name])


# ------------------------------------------------------------------------------------------ one DDPM step


def step_with(outer="alpha", inner="abar", root=True, sign=-1, noise_scale="beta_tilde", skip_last=True,
              wrap=False, mean="mu"):
    """Algorithm 2's update (σ² = β̃_t) with one knob turned to a usual mistake."""
    def fn(model, x, t, s, noise):
        abar, alpha, beta = float(s.alpha_bars[t]), float(s.alphas[t]), float(s.betas[t])
        prev = float(s.alpha_bars[t - 1]) if (t > 0 or wrap) else 1.0
        eps = model(x, torch.full((len(x),), t))
        den = {"abar": 1 - abar, "alpha": 1 - alpha}[inner]
        mu = (x + sign * beta / (math.sqrt(den) if root else den) * eps) / math.sqrt({"alpha": alpha, "abar": abar}[outer])
        if mean == "x0":
            mu = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        var = (1 - prev) / (1 - abar) * beta
        scale = {"beta_tilde": math.sqrt(var), "beta": math.sqrt(beta), "variance": var}[noise_scale]
        if t == 0 and skip_last:
            return mu
        return mu + scale * noise
    return fn


STEP_MISTAKES = {
    "abar where alpha": (step_with(outer="abar"), "√ᾱ_t where the DDPM mean needs √α_t"),
    "alpha inside": (step_with(inner="alpha"), "√(1 − α_t) where √(1 − ᾱ_t)"),
    "no root": (step_with(root=False), "lacks a square root"),
    "sign": (step_with(sign=+1), "sign of the ε̂ term"),
    "x0 as mean": (step_with(mean="x0"), "x̂_0"),
    "beta variance": (step_with(noise_scale="beta"), "Ho et al.'s other choice"),
    "variance as scale": (step_with(noise_scale="variance"), "by the variance β̃_t"),
    "noise at the last step": (step_with(noise_scale="beta", skip_last=False), "noise at the last step"),
    "index wraps at t = 0": (step_with(wrap=True, skip_last=False), "wraps around"),
    "own noise": (lambda model, x, t, s, noise: step_with()(model, x, t, s, torch.randn_like(x)), "`noise` argument"),
}


def reference_step(model, x, t, s, noise):
    x0 = de.x0_from_eps(x, t, model(x, t), s)
    mean, var = de.q_posterior(x0, x, t, s)
    return mean + var.sqrt() * noise


def test_ddpm_step_accepts_the_reference_and_algorithm_2():
    assert checks.check_ddpm_step(reference_step)  # β̃_0 = 0: the noise vanishes at t = 0 by itself
    assert checks.check_ddpm_step(step_with())


@pytest.mark.parametrize("name", STEP_MISTAKES)
def test_ddpm_step_names_the_mistake(name):
    assert_names_mistake(checks.check_ddpm_step, *STEP_MISTAKES[name])


def test_ddpm_sampler_accepts_the_reference_and_rejects_a_wrong_step():
    assert checks.check_ddpm_sampler(step_with())
    assert_names_mistake(checks.check_ddpm_sampler, step_with(noise_scale="beta"), "check_ddpm_step")


@pytest.mark.parametrize("check", [checks.check_posterior_mean_var, checks.check_predict_x0, checks.check_ddpm_loss,
                                   checks.check_ddpm_step, checks.check_ddpm_sampler])
def test_unfinished_tasks_are_not_done(check):
    assert check(not_done).status == "not done"
