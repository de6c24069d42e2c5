"""Chapter 01's checks accept the reference and name each usual mistake (ᾱ, q_sample, one step, cosine, SNR)."""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu import checks

from checking import assert_names_mistake


def _per_sample(c, x):
    return c.view(-1, *[1] * (x.ndim - 1)).to(x)  # (B, 1, …, 1)


def not_done(*args, **kwargs):
    raise NotImplementedError()


# ------------------------------------------------------------------------------------------ ᾱ from β

ALPHA_BAR_MISTAKES = {
    "alphas": (lambda b: 1 - b, "α_t = 1 − β_t itself"),
    "cumsum of alphas": (lambda b: torch.cumsum(1 - b, 0), "cumsum"),
    "one minus sum": (lambda b: 1 - torch.cumsum(b, 0), "first-order"),
    "exp of sum": (lambda b: torch.exp(-torch.cumsum(b, 0)), "exp(−Σ_s β_s)"),
    "product of betas": (lambda b: torch.cumprod(b, 0), "multiplied the β's"),
    "excludes step t": (lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)[:-1]]),
                        "Off by one"),
    "T + 1 values": (lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)]), "T + 1 values"),
    "noise variance": (lambda b: 1 - torch.cumprod(1 - b, 0), "1 − ᾱ_t"),
    "square root": (lambda b: torch.cumprod(1 - b, 0).sqrt(), "√ᾱ_t"),
    "fixed length": (lambda b: torch.cumprod(1 - b[:40], 0), "assume a length"),
}


def test_alpha_bars_accepts_the_reference_in_float64_and_float32():
    assert checks.check_alpha_bars_from_betas(lambda b: torch.cumprod(1 - b, 0))
    assert checks.check_alpha_bars_from_betas(lambda b: torch.cumprod(1 - b.float(), 0))
    assert checks.check_alpha_bars_from_betas(lambda b: de.schedules.NoiseSchedule(b).alpha_bars)


@pytest.mark.parametrize("name", ALPHA_BAR_MISTAKES)
def test_alpha_bars_names_the_mistake(name):
    assert_names_mistake(checks.check_alpha_bars_from_betas, *ALPHA_BAR_MISTAKES[name])


# ------------------------------------------------------------------------------------------ one step


def step_with(signal, noise):
    """forward_step built from two coefficient rules, each (schedule, t) -> (B,)."""
    return lambda x, t, s, eps: _per_sample(signal(s, t), x) * x + _per_sample(noise(s, t), x) * eps


STEP_REFERENCE = step_with(lambda s, t: s.alphas[t].sqrt(), lambda s, t: s.betas[t].sqrt())
STEP_MISTAKES = {
    "alpha without root": (step_with(lambda s, t: s.alphas[t], lambda s, t: s.betas[t].sqrt()), "square root"),
    "abar for alpha": (step_with(lambda s, t: s.alpha_bars[t].sqrt(), lambda s, t: (1 - s.alpha_bars[t]).sqrt()),
                       "ᾱ_t instead of α_t"),
    "variance as std": (step_with(lambda s, t: s.alphas[t].sqrt(), lambda s, t: s.betas[t]), "variance β_t"),
    "one minus root alpha": (step_with(lambda s, t: s.alphas[t].sqrt(), lambda s, t: 1 - s.alphas[t].sqrt()),
                             "1 − √α_t"),
    "not shrunk": (step_with(lambda s, t: torch.ones(len(t)), lambda s, t: s.betas[t].sqrt()), "not scaled"),
    "previous alpha": (step_with(lambda s, t: s.alphas[t - 1].sqrt(), lambda s, t: s.betas[t].sqrt()), "α_{t−1}"),
    "swapped": (step_with(lambda s, t: s.betas[t].sqrt(), lambda s, t: s.alphas[t].sqrt()), "swapped"),
    "own noise": (lambda x, t, s, eps: _per_sample(s.alphas[t].sqrt(), x) * x
                  + _per_sample(s.betas[t].sqrt(), x) * torch.randn_like(x), "noise"),
}


def test_forward_step_accepts_the_reference():
    assert checks.check_forward_step(STEP_REFERENCE)


@pytest.mark.parametrize("name", STEP_MISTAKES)
def test_forward_step_names_the_mistake(name):
    assert_names_mistake(checks.check_forward_step, *STEP_MISTAKES[name])


# ------------------------------------------------------------------------------------- q(x_t | x_0)


def q_with(signal, noise):
    return lambda x0, t, s, eps: _per_sample(signal(s, t), x0) * x0 + _per_sample(noise(s, t), x0) * eps


SQRT_ABAR = lambda s, t: s.alpha_bars[t].sqrt()  # noqa: E731
SQRT_ONE_MINUS_ABAR = lambda s, t: (1 - s.alpha_bars[t]).sqrt()  # noqa: E731
Q_MISTAKES = {
    "alpha for abar": (q_with(lambda s, t: s.alphas[t].sqrt(), lambda s, t: s.betas[t].sqrt()),
                       "You used α_t instead of ᾱ_t"),
    "alpha for abar, signal only": (q_with(lambda s, t: s.alphas[t].sqrt(), SQRT_ONE_MINUS_ABAR),
                                    "Signal: you used α_t instead of ᾱ_t"),
    "variance as std": (q_with(SQRT_ABAR, lambda s, t: 1 - s.alpha_bars[t]), "variance 1 − ᾱ_t as the standard"),
    "no root on signal": (q_with(lambda s, t: s.alpha_bars[t], SQRT_ONE_MINUS_ABAR), "forgot the square root"),
    "abar excludes t": (q_with(lambda s, t: s.alpha_bars[t - 1].sqrt(), lambda s, t: (1 - s.alpha_bars[t - 1]).sqrt()),
                        "Off by one: you used ᾱ_{t−1}"),
    "abar one ahead": (q_with(lambda s, t: s.alpha_bars[t + 1].sqrt(), lambda s, t: (1 - s.alpha_bars[t + 1]).sqrt()),
                       "Off by one: you used ᾱ_{t+1}"),
    "one minus root": (q_with(SQRT_ABAR, lambda s, t: 1 - s.alpha_bars[t].sqrt()), "1 − √ᾱ_t"),
    "swapped": (q_with(SQRT_ONE_MINUS_ABAR, SQRT_ABAR), "You swapped"),
    "first timestep only": (q_with(lambda s, t: s.alpha_bars[t[0]].sqrt().expand(len(t)),
                                   lambda s, t: (1 - s.alpha_bars[t[0]]).sqrt().expand(len(t))), "Every sample got"),
    "no broadcast": (lambda x0, t, s, eps: s.alpha_bars[t].sqrt() * x0 + (1 - s.alpha_bars[t]).sqrt() * eps,
                     "Broadcasting"),
    "fixed rank": (lambda x0, t, s, eps: s.alpha_bars[t].sqrt().view(-1, 1, 1, 1) * x0
                   + (1 - s.alpha_bars[t]).sqrt().view(-1, 1, 1, 1) * eps, "x0's rank"),
    "tuple": (lambda x0, t, s, eps: de.q_sample(x0, t, s, noise=eps), "not a tuple"),
    "own noise": (lambda x0, t, s, eps: de.q_sample(x0, t, s)[0], "noise"),
    "clipped": (lambda x0, t, s, eps: de.q_sample(x0, t, s, noise=eps)[0].clamp(-1, 1), "clipping"),
}


def test_q_sample_accepts_the_reference_and_the_package():
    assert checks.check_q_sample(q_with(SQRT_ABAR, SQRT_ONE_MINUS_ABAR))
    assert checks.check_q_sample(lambda x0, t, s, eps: de.q_sample(x0, t, s, noise=eps)[0])


@pytest.mark.parametrize("name", Q_MISTAKES)
def test_q_sample_names_the_mistake(name):
    assert_names_mistake(checks.check_q_sample, *Q_MISTAKES[name])


def test_q_sample_names_each_coefficient_when_they_differ():
    message = checks.check_q_sample(q_with(lambda s, t: s.alpha_bars[t], lambda s, t: 1 - s.alpha_bars[t])).message
    assert message.startswith("Signal: the coefficient of x_0 is ᾱ_t") and "Noise: you used the variance" in message


# ------------------------------------------------------------------------------------ cosine schedule


def cosine_with(shift=1, square=True, normalise=True, grid="T", fixed_s=None):
    def fn(T, s=0.008):
        s = s if fixed_s is None else fixed_s
        t = torch.arange(T + (1 if grid == "T+1" else 0), dtype=torch.float64)
        tau = (t + shift) / (T - 1 if grid == "T-1" else T)
        f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** (2 if square else 1)  # noqa: E731
        return f(tau) / (f(torch.zeros(())) if normalise else 1)
    return fn


COSINE_MISTAKES = {
    "tau = t/T": (cosine_with(shift=0), "Off by one"),
    "tau = t/(T-1)": (cosine_with(shift=0, grid="T-1"), "t/(T − 1)"),
    "T + 1 values": (cosine_with(shift=0, grid="T+1"), "T + 1"),
    "no f(0)": (cosine_with(normalise=False), "divide by f(0)"),
    "cos not squared": (cosine_with(square=False), "cos²"),
    "s = 0": (cosine_with(fixed_s=0.0), "offset s"),
    "s hard-coded": (cosine_with(fixed_s=0.008), "not a constant"),
    "wrong default": (lambda T, s=0.0: cosine_with()(T, s), "default"),
}


def test_cosine_accepts_the_formula_and_the_clipped_package_schedule():
    assert checks.check_cosine_alpha_bars(cosine_with())
    assert checks.check_cosine_alpha_bars(lambda T, s=0.008: de.cosine(T, s).alpha_bars)
    assert checks.check_cosine_alpha_bars(lambda T, s=0.008: cosine_with()(T, s).float())


@pytest.mark.parametrize("name", COSINE_MISTAKES)
def test_cosine_names_the_mistake(name):
    assert_names_mistake(checks.check_cosine_alpha_bars, *COSINE_MISTAKES[name])


# ------------------------------------------------------------------------------------------------ SNR

SNR_MISTAKES = {
    "inverse": (lambda a: (1 - a) / a, "σ_t²"),
    "amplitude ratio": (lambda a: (a / (1 - a)).sqrt(), "ratio of standard deviations"),
    "sigma": (lambda a: ((1 - a) / a).sqrt(), "σ_t = √"),
    "log": (lambda a: (a / (1 - a)).log(), "log SNR"),
    "abar": (lambda a: a.clone(), "You returned ᾱ_t"),
    "mixed": (lambda a: a.sqrt() / (1 - a), "mixed"),
}


def test_snr_accepts_the_reference_and_one_over_sigma_squared():
    assert checks.check_snr(lambda a: a / (1 - a))
    assert checks.check_snr(lambda a: ((1 - a) / a).sqrt() ** -2)  # 1/σ_t²


@pytest.mark.parametrize("name", SNR_MISTAKES)
def test_snr_names_the_mistake(name):
    assert_names_mistake(checks.check_snr, *SNR_MISTAKES[name])


# -------------------------------------------------------------------------------------- every check


@pytest.mark.parametrize("check", [checks.check_alpha_bars_from_betas, checks.check_forward_step,
                                   checks.check_q_sample, checks.check_cosine_alpha_bars, checks.check_snr])
def test_unfinished_task_is_not_done_and_a_crash_is_an_error(check):
    assert check(not_done).status == "not done"
    assert checks.RESULTS[check.task].status == "not done"
    assert check(lambda *args: 1 / 0).status == "error"
