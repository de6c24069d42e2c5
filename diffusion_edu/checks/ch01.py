"""Checks of chapter 01, the forward process: ᾱ from β, one noising step, the closed form q(x_t | x_0),
the cosine schedule and the SNR.

Each check probes the learner's function on random inputs and compares it with the closed forms that
``schedules`` and ``forward`` implement (Ho et al. 2020, Eqs. 2 and 4; Nichol & Dhariwal 2021, Eq. 17).
A wrong coefficient is matched against the usual mistakes (α_t for ᾱ_t, a variance used as a standard
deviation, a missing square root, ᾱ_t shifted by one step, a sum for a product) and named in the message.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..schedules import NoiseSchedule, cosine, linear
from .base import CheckFailed, checker, close, expect, expect_tensor
from .mistakes import diagnose, which

__all__ = ["check_alpha_bars_from_betas", "check_forward_step", "check_q_sample", "check_cosine_alpha_bars",
           "check_snr"]

OK = dict(rtol=1e-4, atol=1e-6)        # accepting: leaves room for a learner who computes in float32
ZERO_BASED = ("In this course t is 0-based and ᾱ_t includes step t: ᾱ_t = α_0 α_1 ⋯ α_t, so ᾱ_0 = 1 − β_0 "
              "(clean data is \"t = −1\", where ᾱ = 1).")


def _random_betas(T: int, seed: int, high: float = 0.3) -> Tensor:
    """β_t drawn uniformly in [0.01, high] (float64): large enough that every usual mistake shows."""
    g = torch.Generator().manual_seed(seed)
    return 0.01 + (high - 0.01) * torch.rand(T, generator=g, dtype=torch.float64)


def _first_difference(got: Tensor, want: Tensor) -> int:
    return int(((got.double() - want.double()).abs() > OK["atol"] + OK["rtol"] * want.double().abs())
               .nonzero()[0, 0])


# ------------------------------------------------------------------------------------------ ᾱ from β


@checker("alpha_bars_from_betas")
def check_alpha_bars_from_betas(alpha_bars_from_betas) -> None:
    """ᾱ_t = ∏_{s≤t} (1 − β_s) on random β, then on the linear schedule of Ho et al. (2020)."""
    betas = _random_betas(40, seed=1)
    got = alpha_bars_from_betas(betas.clone())
    if isinstance(got, Tensor) and got.shape == (41,):
        raise CheckFailed("You returned T + 1 values. Return the T values ᾱ_0 … ᾱ_{T−1}, one per step. " + ZERO_BASED)
    expect_tensor(got, (40,), "alpha_bars_from_betas(betas)")
    alphas = 1 - betas
    want = torch.cumprod(alphas, 0)
    if not close(got, want, **OK):
        k = _first_difference(got, want)
        diagnose(got, [
            (alphas, "You returned α_t = 1 − β_t itself. ᾱ_t is the running product of all the α's so far: "
                     "ᾱ_t = α_0 α_1 ⋯ α_t (`torch.cumprod`)."),
            (torch.cumsum(alphas, 0), "You added the α's up (cumsum). Every step multiplies the signal by √α_t, "
                                      "so the factors multiply: use the cumulative product, cumprod."),
            (1 - torch.cumsum(betas, 0), "You used 1 − Σ_s β_s (cumsum of the β's). That is only the first-order "
                                         "approximation of ∏_s (1 − β_s): it is off when β is large and can even go "
                                         "negative. Use the cumulative product, cumprod."),
            (torch.exp(-torch.cumsum(betas, 0)), "You used exp(−Σ_s β_s), which equals ∏_s (1 − β_s) only for tiny "
                                                 "β. Use the exact cumulative product, cumprod."),
            (torch.cumprod(betas, 0), "You multiplied the β's. ᾱ is the product of the α_t = 1 − β_t."),
            (torch.cat([torch.ones(1, dtype=want.dtype), want[:-1]]),
             "Off by one: your ᾱ_0 is 1, so your ᾱ_t leaves out step t (that is ᾱ_{t−1}). " + ZERO_BASED),
            (1 - want, "You returned 1 − ᾱ_t, the variance of the noise. Return ᾱ_t itself."),
            (want.sqrt(), "You returned √ᾱ_t, the coefficient of x_0. Return ᾱ_t itself, without the square root."),
        ], f"ᾱ_t should be ∏_(s≤t) (1 − β_s). At t = {k} you return {float(got[k]):.6f}, "
           f"expected {float(want[k]):.6f}.")
    s = linear(1000)
    got = alpha_bars_from_betas(s.betas.clone())
    expect(isinstance(got, Tensor) and got.shape == (1000,) and close(got, s.alpha_bars, **OK),
           "Right on 40 random β, wrong on the 1000 β of `de.linear()`: does your code assume a length?")


# ------------------------------------------------------------------- one step, and the jump to step t


def _coefficients(fn, x: Tensor, t: Tensor, schedule: NoiseSchedule, noise: Tensor, call: str,
                  clean: str) -> tuple[Tensor, Tensor]:
    """Probe fn(x, t, schedule, noise) = a·x + b·noise and return the per-sample (a, b), each of shape (B,)."""
    try:
        full = fn(x.clone(), t.clone(), schedule, noise.clone())
    except RuntimeError as err:
        if "must match the size" in str(err) or "size of tensor" in str(err):
            raise CheckFailed(f"Broadcasting failed ({err}). schedule.<values>[t] has shape (B,), one value per "
                              f"sample, while {clean} has shape {tuple(x.shape)}. Reshape the coefficient to "
                              f"(B, 1, …, 1), e.g. `c.view(-1, *[1] * ({clean}.ndim - 1))`.") from None
        raise
    if isinstance(full, tuple):
        raise CheckFailed(f"{call} should return x_t alone, a tensor, not a tuple.")
    expect_tensor(full, x.shape, call)
    expect(close(fn(x.clone(), t.clone(), schedule, noise.clone()), full, rtol=0, atol=1e-12),
           f"Calling {call} twice gave two different x_t. Use the `noise` argument instead of drawing new noise.")
    signal = fn(x.clone(), t.clone(), schedule, torch.zeros_like(noise))
    dims = tuple(range(1, x.ndim))
    a = (signal * x).sum(dims) / (x * x).sum(dims)
    b_part = fn(torch.zeros_like(x), t.clone(), schedule, noise.clone())
    b = (b_part * noise).sum(dims) / (noise * noise).sum(dims)
    shape = (-1,) + (1,) * (x.ndim - 1)
    expect(close(signal, a.view(shape) * x, **OK),
           f"With noise = 0, x_t should be a multiple of {clean} (each sample scaled by its own coefficient); "
           f"yours is not. Are you drawing your own noise instead of using the `noise` argument, or clipping x_t?")
    expect(close(b_part, b.view(shape) * noise, **OK),
           f"With {clean} = 0, x_t should be a multiple of the noise (no clipping, no extra terms); yours is not.")
    expect(close(full, signal + b_part, **OK),
           "x_t should be the sum of a signal term and a noise term (no clipping, no extra terms); yours is not.")
    return a, b


def _probe(schedule: NoiseSchedule, seed: int, image: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Random x (6, 1, 8, 8) or (6, 2), noise like it, and 6 distinct timesteps away from both ends."""
    g = torch.Generator().manual_seed(seed)
    shape = (6, 1, 8, 8) if image else (6, 2)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    t = 1 + torch.randperm(schedule.T - 2, generator=g)[:6]
    return x, noise, t


def _schedule_values(s: NoiseSchedule, t: Tensor) -> dict[str, Tensor]:
    prev, after = s.alpha_bars[t - 1], s.alpha_bars[(t + 1).clamp(max=s.T - 1)]
    return dict(abar=s.alpha_bars[t], alpha=s.alphas[t], beta=s.betas[t], abar_prev=prev, abar_next=after,
                alpha_prev=s.alphas[t - 1], beta_prev=s.betas[t - 1], one=torch.ones(len(t), dtype=torch.float64),
                abar_first=s.alpha_bars[t[:1]].expand(len(t)))


@checker("forward_step")
def check_forward_step(forward_step) -> None:
    """x_t = √α_t x_{t−1} + √β_t ε (Ho et al. 2020, Eq. 2), probed coefficient by coefficient."""
    s = NoiseSchedule(_random_betas(50, seed=2, high=0.08))
    x, noise, t = _probe(s, seed=3)
    a, b = _coefficients(forward_step, x, t, s, noise, "forward_step(x_prev, t, schedule, noise)", "x_prev")
    v = _schedule_values(s, t)
    k = 0
    if not close(a, v["alpha"].sqrt(), **OK):
        diagnose(a, [
            (v["alpha"], "You forgot the square root on the signal: one step scales x_{t−1} by √α_t, not α_t."),
            (v["abar"].sqrt(), "You used ᾱ_t instead of α_t. √ᾱ_t scales x_0 in the jump from clean data; a "
                               "single step from x_{t−1} scales by √α_t only."),
            (v["alpha_prev"].sqrt(), "Off by one: you used α_{t−1}. Step t uses α_t = schedule.alphas[t]."),
            (v["one"], "x_{t−1} is not scaled. Shrink it by √α_t: otherwise the variance grows by β_t at "
                       "every step instead of staying at 1."),
            (v["beta"].sqrt(), "You swapped the coefficients: x_{t−1} gets √α_t and the noise gets √β_t."),
        ], f"The coefficient of x_prev at t = {int(t[k])} is {float(a[k]):.4f}; it should be "
           f"√α_t = {float(v['alpha'][k].sqrt()):.4f}.")
    if not close(b, v["beta"].sqrt(), **OK):
        diagnose(b, [
            (v["beta"], "You used the variance β_t as the standard deviation: scale the noise by √β_t."),
            ((1 - v["abar"]).sqrt(), "You used ᾱ_t instead of α_t: √(1 − ᾱ_t) is the noise of the jump from "
                                     "x_0; one step adds √β_t ε."),
            (1 - v["alpha"].sqrt(), "Your noise coefficient is 1 − √α_t. It must be √β_t = √(1 − α_t), so that the "
                                    "variances add up: α_t · 1 + β_t = 1."),
            (v["beta_prev"].sqrt(), "Off by one: you used β_{t−1}. Step t uses β_t = schedule.betas[t]."),
            (v["one"], "The noise is not scaled: multiply ε by √β_t."),
            (v["alpha"].sqrt(), "You swapped the coefficients: x_{t−1} gets √α_t and the noise gets √β_t."),
        ], f"The coefficient of the noise at t = {int(t[k])} is {float(b[k]):.4f}; it should be "
           f"√β_t = {float(v['beta'][k].sqrt()):.4f}.")
    x2, noise2, _ = _probe(s, seed=4, image=False)
    t2 = torch.tensor([0, s.T - 1, 0, s.T - 1, 7, 7])
    want = s.alphas[t2].sqrt()[:, None] * x2 + s.betas[t2].sqrt()[:, None] * noise2
    got = forward_step(x2, t2, s, noise2)
    expect_tensor(got, x2.shape, "forward_step on 2-D points (6, 2)")
    expect(close(got, want, **OK), "Right on images, wrong on 2-D points or at t = 0 / t = T − 1. "
                                   "Does your code assume 4-D input, or treat the first or last step apart?")


# Mistakes that spoil both coefficients of q_sample the same way get one message (else "Signal: … Noise: …").
BOTH = {
    "alpha": "You used α_t instead of ᾱ_t: after steps 0 … t, x_0 is scaled by √ᾱ_t = √(α_0 ⋯ α_t), not by the "
             "last step's √α_t alone, and the noise has grown from one step's √β_t to √(1 − ᾱ_t).",
    "prev": "Off by one: you used ᾱ_{t−1} where ᾱ_t belongs. " + ZERO_BASED,
    "next": "Off by one: you used ᾱ_{t+1} where ᾱ_t belongs. " + ZERO_BASED,
    "swap": "You swapped the coefficients: x_0 gets √ᾱ_t and the noise gets √(1 − ᾱ_t).",
    "first": "Every sample got the ᾱ of the first sample's timestep: index alpha_bars with the whole tensor t, "
             "one ᾱ_t per sample.",
}


@checker("q_sample")
def check_q_sample(q_sample) -> None:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Ho et al. 2020, Eq. 4), probed coefficient by coefficient."""
    s = NoiseSchedule(_random_betas(50, seed=5, high=0.08))
    x, noise, t = _probe(s, seed=6)
    a, b = _coefficients(q_sample, x, t, s, noise, "q_sample(x0, t, schedule, noise)", "x0")
    v = _schedule_values(s, t)
    found = {}
    if not close(a, v["abar"].sqrt(), **OK):
        found["Signal"] = which(a, [
            (v["abar"], "root", "the coefficient of x_0 is ᾱ_t: you forgot the square root on the signal, "
                                "it is √ᾱ_t."),
            (v["alpha"].sqrt(), "alpha", "you used α_t instead of ᾱ_t: x_0 is scaled by √ᾱ_t."),
            (v["alpha"], "alpha_root", "you used α_t instead of ᾱ_t, and without the square root: use √ᾱ_t."),
            (v["abar_prev"].sqrt(), "prev", "off by one: √ᾱ_{t−1} instead of √ᾱ_t."),
            (v["abar_next"].sqrt(), "next", "off by one: √ᾱ_{t+1} instead of √ᾱ_t."),
            ((1 - v["abar"]).sqrt(), "swap", "you swapped the coefficients."),
            (v["abar_first"].sqrt(), "first", "every sample got the first sample's ᾱ_t."),
            (v["one"], "one", "x_0 is not scaled: multiply it by √ᾱ_t."),
        ]) or ("other", f"the coefficient of x_0 at t = {int(t[0])} is {float(a[0]):.4f}; it should be "
                        f"√ᾱ_t = {float(v['abar'][0].sqrt()):.4f}.")
    if not close(b, (1 - v["abar"]).sqrt(), **OK):
        found["Noise"] = which(b, [
            (1 - v["abar"], "variance", "you used the variance 1 − ᾱ_t as the standard deviation: scale the "
                                        "noise by √(1 − ᾱ_t)."),
            (v["beta"].sqrt(), "alpha", "you used α_t instead of ᾱ_t: √β_t is one step's noise, after steps "
                                        "0 … t it has grown to √(1 − ᾱ_t)."),
            (v["beta"], "alpha_variance", "you used α_t instead of ᾱ_t, and the variance as the standard "
                                          "deviation: use √(1 − ᾱ_t)."),
            ((1 - v["abar_prev"]).sqrt(), "prev", "off by one: √(1 − ᾱ_{t−1}) instead of √(1 − ᾱ_t)."),
            ((1 - v["abar_next"]).sqrt(), "next", "off by one: √(1 − ᾱ_{t+1}) instead of √(1 − ᾱ_t)."),
            (1 - v["abar"].sqrt(), "one_minus_root", "your noise coefficient is 1 − √ᾱ_t; it is √(1 − ᾱ_t): "
                                                     "the variances, not the standard deviations, add up to 1."),
            (v["abar"].sqrt(), "swap", "you swapped the coefficients."),
            ((1 - v["abar_first"]).sqrt(), "first", "every sample got the first sample's ᾱ_t."),
            (v["one"], "one", "the noise is not scaled: multiply ε by √(1 − ᾱ_t)."),
        ]) or ("other", f"the coefficient of the noise at t = {int(t[0])} is {float(b[0]):.4f}; it should be "
                        f"√(1 − ᾱ_t) = {float((1 - v['abar'][0]).sqrt()):.4f}.")
    keys = {key for key, _ in found.values()}
    if len(found) == 2 and len(keys) == 1 and keys <= set(BOTH):
        raise CheckFailed(BOTH[keys.pop()])
    if found:
        raise CheckFailed(" ".join(f"{part}: {message}" for part, (_, message) in found.items()))
    s = linear(1000)
    x2, noise2, _ = _probe(s, seed=7, image=False)
    t2 = torch.tensor([0, 999, 0, 999, 500, 500])
    want = s.alpha_bars[t2].sqrt()[:, None] * x2 + (1 - s.alpha_bars[t2]).sqrt()[:, None] * noise2
    got = q_sample(x2, t2, s, noise2)
    expect(isinstance(got, Tensor) and got.shape == x2.shape,
           f"On 2-D points x0 of shape (6, 2), x_t should have shape (6, 2), got "
           f"{tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}: reshape the coefficient to "
           f"x0's rank, `c.view(-1, *[1] * (x0.ndim - 1))`, rather than to a fixed (B, 1, 1, 1).")
    expect(close(got, want, **OK), "Right on images, wrong on 2-D points or at t = 0 / t = T − 1 of `de.linear()`. "
                                   "Does your code treat the first or last step apart?")


# -------------------------------------------------------------------------------- the cosine schedule


def _cosine_f(tau: Tensor, s: float) -> Tensor:
    return torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2


@checker("cosine_alpha_bars")
def check_cosine_alpha_bars(cosine_alpha_bars) -> None:
    """ᾱ_t = f((t + 1)/T) / f(0), f(τ) = cos²(π/2 · (τ + s)/(1 + s)): Nichol & Dhariwal (2021), Eq. 17."""
    for T, s in [(37, 0.05), (100, 0.008)]:
        got = cosine_alpha_bars(T, s)
        tau = (torch.arange(T, dtype=torch.float64) + 1) / T
        f0 = float(_cosine_f(torch.zeros(()), s))
        if isinstance(got, Tensor) and got.shape == (T + 1,):
            raise CheckFailed(f"You returned T + 1 = {T + 1} values (τ = 0 … 1 inclusive). The first, τ = 0, is clean "
                              f"data (\"t = −1\"); return the T values at τ = (t + 1)/T for t = 0 … T − 1.")
        expect_tensor(got, (T,), f"cosine_alpha_bars({T}, {s})")
        want = _cosine_f(tau, s) / f0
        if close(got, want, rtol=OK["rtol"], atol=1e-5):  # atol: allows clipping β at 0.999 as de.cosine does
            continue
        grid = torch.arange(T, dtype=torch.float64)
        k = _first_difference(got, want)
        diagnose(got, [
            (_cosine_f(grid / T, s) / f0, "Off by one: your ᾱ_0 = 1, which is clean data (\"t = −1\"). With 0-based t, "
                                          "ᾱ_t = f((t + 1)/T) / f(0): ᾱ_0 is just below 1 and ᾱ_{T−1} ≈ 0."),
            (_cosine_f(grid / (T - 1), s) / f0, "Your τ grid is t/(T − 1), from 0 to 1 over T points. ᾱ_t belongs at "
                                                "τ = (t + 1)/T: t = 0 is already one step of noise."),
            (_cosine_f(tau, s), f"You forgot to divide by f(0): your ᾱ is off by the constant factor f(0) = {f0:.4f}, "
                                f"so clean data would not have ᾱ = 1."),
            (_cosine_f(tau, s).sqrt() / math.sqrt(f0), "You used cos(·), not cos²(·). ᾱ is the squared cosine; "
                                                        "the cosine itself is √ᾱ, the coefficient of x_0."),
            (_cosine_f(tau, 0.0), f"Your ᾱ ignores the offset s (it is the formula with s = 0); use the argument s "
                                  f"(here s = {s})."),
            (_cosine_f(tau, 0.008) / float(_cosine_f(torch.zeros(()), 0.008)),
             f"Called with s = {s}, you returned the schedule for s = 0.008: use the argument s, not a constant."),
            (1 - want, "You returned 1 − ᾱ_t, the noise variance. Return ᾱ_t itself."),
        ], f"At t = {k} (T = {T}, s = {s}) you return {float(got[k]):.6f}, expected "
           f"f((t + 1)/T) / f(0) = {float(want[k]):.6f}.")
    got = cosine_alpha_bars(1000)
    expect(isinstance(got, Tensor) and got.shape == (1000,) and close(got, cosine(1000).alpha_bars, rtol=OK["rtol"],
                                                                      atol=1e-5),
           "Right when s is given, but cosine_alpha_bars(1000) does not match `de.cosine(1000)`: the default "
           "offset is s = 0.008 (Nichol & Dhariwal 2021).")


# ------------------------------------------------------------------------------------------------ SNR


@checker("snr")
def check_snr(snr) -> None:
    """SNR(t) = ᾱ_t / (1 − ᾱ_t), the signal variance over the noise variance (Kingma et al. 2021, VDM)."""
    g = torch.Generator().manual_seed(8)
    abar = torch.rand(30, generator=g, dtype=torch.float64).sort(descending=True).values * 0.98 + 0.01
    got = snr(abar.clone())
    expect_tensor(got, (30,), "snr(alpha_bars)")
    want = abar / (1 - abar)
    if not close(got, want, **OK):
        diagnose(got, [
            ((1 - abar) / abar, "You returned (1 − ᾱ_t)/ᾱ_t = σ_t², the inverse of the SNR. The SNR is the signal "
                                "variance over the noise variance: ᾱ_t / (1 − ᾱ_t)."),
            (want.sqrt(), "You returned √(ᾱ_t / (1 − ᾱ_t)), a ratio of standard deviations. The SNR is a ratio of "
                          "variances: drop the square root."),
            (((1 - abar) / abar).sqrt(), "You returned σ_t = √((1 − ᾱ_t)/ᾱ_t) = 1/√SNR. The SNR is ᾱ_t / (1 − ᾱ_t)."),
            (want.log(), "You returned log SNR. Return the SNR itself; we take the log only to plot it."),
            (abar, "You returned ᾱ_t: divide the signal variance ᾱ_t by the noise variance 1 − ᾱ_t."),
            (abar.sqrt() / (1 - abar), "You mixed a standard deviation (√ᾱ_t) with a variance (1 − ᾱ_t): "
                                       "SNR = ᾱ_t / (1 − ᾱ_t)."),
        ], "SNR(t) should be ᾱ_t / (1 − ᾱ_t).")
    s = linear(1000)
    got = snr(s.alpha_bars.clone())
    expect(isinstance(got, Tensor) and close(got, s.snr, **OK),
           "Right on random ᾱ, wrong on `de.linear().alpha_bars`: compare with `schedule.snr`.")
