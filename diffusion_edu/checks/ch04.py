"""Checks for chapter 04 (samplers): one DDIM, Euler, Heun and DPM-Solver++(2M) update each.

Every check feeds the learner's step random inputs, compares it with the reference update below (the
update the package's sampler loops make, ``samplers.ddim`` … ``samplers.dpm_solver_pp``), and when it
differs tries the usual mistakes one by one, so the message can say which one was made.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .base import CheckFailed, checker, close, expect, expect_tensor, ratio
from .mistakes import diagnose

SHAPE = (16, 1, 4, 4)  # image-shaped, so a step that only works for (B, D) data is caught


def _inputs(seed: int, n: int = 3) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(n)]


def _maxdiff(a: Tensor, b: Tensor) -> str:
    return f"{(a.double() - b.double()).abs().max().item():.3g}"


def _diagnose(out: Tensor, candidates: list[tuple[Tensor, str]]) -> None:
    """Fail with the first candidate mistake ``out`` reproduces, at ``close``'s tolerances (``mistakes.diagnose``)."""
    diagnose(out, candidates, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------- DDIM

def ddim_sigma(abar: float, abar_prev: float, eta: float) -> float:
    """σ_t(η) = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev): Song, Meng & Ermon (2021), Eq. 16."""
    return eta * math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))


def ddim_step(x: Tensor, eps: Tensor, abar: float, abar_prev: float, eta: float, noise: Tensor) -> Tensor:
    """Reference DDIM update, Song, Meng & Ermon (2021), Eq. 12 (one iteration of ``samplers.ddim``)."""
    x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
    sigma = ddim_sigma(abar, abar_prev, eta)
    return math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev - sigma ** 2) * eps + sigma * noise


@checker("ddim_step")
def check_ddim_step(ddim_step_fn: Callable) -> None:
    """``ddim_step(x, eps, abar, abar_prev, eta, noise)`` against Eq. 12 with σ_t(η) of Eq. 16."""
    x, eps, noise = _inputs(0)
    abar, abar_prev = 0.3, 0.7
    x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)

    # 1. η = 0: the deterministic update, x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε̂
    out = expect_tensor(ddim_step_fn(x, eps, abar, abar_prev, 0.0, noise), SHAPE, "ddim_step(...)")
    want = ddim_step(x, eps, abar, abar_prev, 0.0, noise)
    quiet = expect_tensor(ddim_step_fn(x, eps, abar, abar_prev, 0.0, torch.zeros_like(noise)), SHAPE,
                          "ddim_step(...)")
    if not close(out, quiet):  # at η = 0 the noise must drop out
        c = ratio(out - quiet, noise)
        if c is not None and abs(c - ddim_sigma(abar, abar_prev, 1.0)) < 1e-5:
            raise CheckFailed("σ_t(η) formula wrong: at η = 0 your step still adds noise with σ_t(1); "
                              "σ_t(η) must be multiplied by η (Eq. 16), so η = 0 is deterministic.")
        raise CheckFailed("With η = 0 the step is deterministic: the noise is multiplied by σ_t(η), which is 0 "
                          "here" + ("; you added it unscaled." if c is not None and abs(c - 1) < 1e-5 else
                                    f", but your step adds {c if c is not None else 'something'}·noise."))
    if not close(out, want):
        _diagnose(out, [
            (math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar) * eps,
             "With η = 0 your direction term uses √(1 − ᾱ_t): it must carry the noise level of the step you "
             "land on, √(1 − ᾱ_prev − σ_t²) (here σ_t = 0), so that x_prev has the marginal of t_prev."),
            (math.sqrt(abar) * (x - math.sqrt(1 - abar_prev) * eps) / math.sqrt(abar_prev) + math.sqrt(1 - abar) * eps,
             "You swapped ᾱ_t and ᾱ_prev: x̂_0 is computed with ᾱ_t (where x lives), and x_prev is built "
             "with ᾱ_prev (where it lands)."),
            (math.sqrt(abar_prev) * (x - (1 - abar) * eps) / math.sqrt(abar) + math.sqrt(1 - abar_prev) * eps,
             "Your x̂_0 subtracts (1 − ᾱ_t) ε̂; the noise in x_t has standard deviation √(1 − ᾱ_t): "
             "x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t."),
            (math.sqrt(abar_prev) * (x - math.sqrt(1 - abar) * eps) / abar + math.sqrt(1 - abar_prev) * eps,
             "Your x̂_0 divides by ᾱ_t; the signal in x_t is √ᾱ_t x_0: x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t."),
            (abar_prev * x0 + math.sqrt(1 - abar_prev) * eps,
             "You scaled x̂_0 by ᾱ_prev; the signal kept at t_prev is √ᾱ_prev x_0."),
            (x0, "You returned x̂_0; the step lands on x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ_t²) ε̂ + σ_t z."),
        ])
        raise CheckFailed(f"With η = 0 your step differs from Eq. 12, √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε̂ "
                          f"(max |difference| {_maxdiff(out, want)}).")

    # 2. η = 0.2 (small, so that even a wrong σ_t keeps 1 − ᾱ_prev − σ_t² positive), then η = 1
    for eta in (0.2, 1.0):
        sigma = ddim_sigma(abar, abar_prev, eta)
        try:
            with_noise = ddim_step_fn(x, eps, abar, abar_prev, eta, noise)
            without = ddim_step_fn(x, eps, abar, abar_prev, eta, torch.zeros_like(noise))
        except ValueError as err:  # math.sqrt of a negative number
            raise CheckFailed(f"With η = {eta} your code raised ValueError ({err}): a square root of a negative "
                              f"number? √(1 − ᾱ_prev − σ_t²) needs σ_t² ≤ 1 − ᾱ_prev, true for the right "
                              f"σ_t(η) = {sigma:.4f}; check your σ_t.") from None
        expect_tensor(with_noise, SHAPE, "ddim_step(...)")
        expect(not close(with_noise, without),
               f"With η = {eta} your step ignores `noise`: add σ_t(η)·noise, σ_t(η) = {sigma:.4f} here.")
        c = ratio(with_noise - without, noise)
        if c is None:
            raise CheckFailed(f"With η = {eta} the noise should enter as σ_t(η)·noise, a plain multiple of it; "
                              f"yours does not.")
        if abs(c - sigma) > 1e-5:
            beta_jump = 1 - abar / abar_prev
            named = [
                (sigma ** 2, "you multiplied the noise by σ_t² (a variance); use its square root σ_t"),
                (eta * math.sqrt((1 - abar) / (1 - abar_prev) * beta_jump),
                 "the ratio inside σ_t is upside down: (1 − ᾱ_prev)/(1 − ᾱ_t), not (1 − ᾱ_t)/(1 − ᾱ_prev)"),
                (eta * math.sqrt(beta_jump), "σ_t is missing its first factor √((1 − ᾱ_prev)/(1 − ᾱ_t))"),
                (eta * math.sqrt((1 - abar_prev) / (1 - abar)),
                 "σ_t is missing its second factor √(1 − ᾱ_t/ᾱ_prev), the jump's β"),
                (eta * math.sqrt(1 - abar), "σ_t is not √(1 − ᾱ_t): it is η √((1 − ᾱ_prev)/(1 − ᾱ_t)) "
                                            "√(1 − ᾱ_t/ᾱ_prev), the DDPM posterior's standard deviation times η"),
                (eta ** 2 * ddim_sigma(abar, abar_prev, 1.0), "σ_t is proportional to η, not η²"),
                (math.sqrt(eta) * ddim_sigma(abar, abar_prev, 1.0), "σ_t is proportional to η, not √η"),
                (ddim_sigma(abar, abar_prev, 1.0), "σ_t must be multiplied by η"),
            ]
            for value, why in named:
                if abs(c - value) < 1e-5:
                    raise CheckFailed(f"σ_t(η) formula wrong (η = {eta}): {why} (Eq. 16). "
                                      f"Expected σ_t = {sigma:.4f}, yours is {c:.4f}.")
            raise CheckFailed(f"σ_t(η) formula wrong (η = {eta}): expected σ_t = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) "
                              f"√(1 − ᾱ_t/ᾱ_prev) = {sigma:.4f}, your noise is scaled by {c:.4f}.")
        want = ddim_step(x, eps, abar, abar_prev, eta, torch.zeros_like(noise))
        if not close(without, want):
            _diagnose(without, [
                (math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps,
                 f"With η = {eta} the direction term must shrink to √(1 − ᾱ_prev − σ_t²): you left out −σ_t², "
                 f"so x_prev gets variance (1 − ᾱ_prev) + σ_t² instead of 1 − ᾱ_prev."),
                (math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar) * eps,
                 "Your direction term uses √(1 − ᾱ_t); it must be √(1 − ᾱ_prev − σ_t²)."),
                (math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev - sigma) * eps,
                 "The direction term is √(1 − ᾱ_prev − σ_t²): you subtracted σ_t, not its square."),
            ])
            raise CheckFailed(f"With η = {eta} and noise = 0 your step differs from √ᾱ_prev x̂_0 + "
                              f"√(1 − ᾱ_prev − σ_t²) ε̂ (max |difference| {_maxdiff(without, want)}).")


# -------------------------------------------------------------------------------------------- Euler

def euler_step(x: Tensor, eps: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """Reference Euler update on dx̃/dσ = ε̂, taken in x̃ = x_t √(1 + σ²) and returned in x_t (``samplers.euler``)."""
    x_tilde = x * math.sqrt(1 + sigma ** 2)
    return (x_tilde + (sigma_next - sigma) * eps) / math.sqrt(1 + sigma_next ** 2)


@checker("euler_step")
def check_euler_step(euler_step_fn: Callable) -> None:
    """``euler_step(x, eps, sigma, sigma_next)``: x and the result in x_t coordinates, the step in x̃."""
    x, eps = _inputs(1, 2)
    for sigma, sigma_next in ((3.0, 1.2), (0.4, 0.0)):
        out = expect_tensor(euler_step_fn(x, eps, sigma, sigma_next), SHAPE, "euler_step(...)")
        want = euler_step(x, eps, sigma, sigma_next)
        if close(out, want):
            continue
        s, sn, h = math.sqrt(1 + sigma ** 2), math.sqrt(1 + sigma_next ** 2), sigma_next - sigma
        _diagnose(out, [
            (x + h * eps,
             "Euler step in x instead of x̃: the ODE dx̃/dσ = ε̂ holds for x̃ = x_t/√ᾱ_t = x_t·√(1 + σ²). "
             "Convert x to x̃, step, then convert back with x_next = x̃_next/√(1 + σ_next²)."),
            (x * s + h * eps,
             "You returned x̃_next; the sampler works in x_t, so divide by √(1 + σ_next²) (= multiply by "
             "√ᾱ_next) at the end."),
            ((x / s + h * eps) * sn,
             "Your conversions run backwards: x̃ = x_t/√ᾱ = x_t·√(1 + σ²) going in, and x_t = x̃/√(1 + σ²) "
             "coming out."),
            ((x * s - h * eps) / sn,
             "Your step goes the wrong way: x̃_next = x̃ + (σ_next − σ) ε̂, and σ_next − σ is negative."),
            ((x * s + h * eps) / math.sqrt(1 + sigma ** 2),
             "Convert back with the new noise level: x_next = x̃_next/√(1 + σ_next²), not √(1 + σ²)."),
            ((x * math.sqrt(1 + sigma) + h * eps) / math.sqrt(1 + sigma_next),
             "ᾱ = 1/(1 + σ²): the conversion factor is √(1 + σ²), with σ squared."),
        ])
        raise CheckFailed(f"For σ = {sigma} → σ_next = {sigma_next} your step differs from "
                          f"(x·√(1 + σ²) + (σ_next − σ) ε̂)/√(1 + σ_next²) (max |difference| {_maxdiff(out, want)}).")


# --------------------------------------------------------------------------------------------- Heun

def heun_step(x_tilde: Tensor, sigma: float, sigma_next: float, eps_fn: Callable) -> Tensor:
    """Reference Heun update in σ-space, Karras et al. (2022), Algorithm 1 (one iteration of ``samplers.heun``)."""
    d = eps_fn(x_tilde, sigma)
    x_next = x_tilde + (sigma_next - sigma) * d  # Euler predictor
    if sigma_next == 0:
        return x_next
    return x_tilde + (sigma_next - sigma) * (d + eps_fn(x_next, sigma_next)) / 2  # trapezoid


def _sigma_space_eps() -> Callable:
    """A non-linear ε̂(x̃, σ): the exact ε of a two-component mixture per pixel, seen through x_t = x̃/√(1 + σ²)."""
    def eps_fn(x_tilde: Tensor, sigma: float) -> Tensor:
        sigma = float(sigma)
        abar = 1 / (1 + sigma ** 2)
        x = x_tilde / math.sqrt(1 + sigma ** 2)
        v = abar * 0.25 + 1 - abar  # component variance, stds 0.5, means ±1
        logit = 2 * math.sqrt(abar) * x / v  # log r₊ − log r₋
        r = torch.sigmoid(logit)
        mean = math.sqrt(abar) * (2 * r - 1)
        return math.sqrt(1 - abar) * (x - mean) / v
    return eps_fn


@checker("heun_step")
def check_heun_step(heun_step_fn: Callable) -> None:
    """``heun_step(x_tilde, sigma, sigma_next, eps_fn)`` against the trapezoidal rule, Euler at σ_next = 0."""
    (x,) = _inputs(2, 1)
    eps_fn = _sigma_space_eps()
    for sigma, sigma_next in ((2.0, 0.8), (0.3, 0.0)):
        x_tilde = 2 * x * math.sqrt(1 + sigma ** 2)
        calls = []

        def recording(xt, s):
            calls.append((xt.detach().clone(), float(s)))
            return eps_fn(xt, s)

        out = heun_step_fn(x_tilde.clone(), sigma, sigma_next, recording)
        expect_tensor(out, SHAPE, "heun_step(...)")
        if sigma_next == 0:
            expect(all(s != 0 for _, s in calls),
                   "At σ_next = 0 (the last step, to clean data) the model cannot be evaluated: take a plain "
                   "Euler step there, x̃ + (σ_next − σ) ε̂.")
        want = heun_step(x_tilde, sigma, sigma_next, eps_fn)
        if close(out, want):
            continue
        h, d = sigma_next - sigma, eps_fn(x_tilde, sigma)
        pred = x_tilde + h * d
        if sigma_next == 0:
            raise CheckFailed(f"At σ_next = 0 your step should be the Euler step x̃ + (σ_next − σ) ε̂(x̃, σ) "
                              f"(max |difference| {_maxdiff(out, want)}).")
        if len(calls) >= 2 and calls[1][1] == sigma and sigma != sigma_next:
            raise CheckFailed("Heun averaging wrong: the second slope must be evaluated at the end of the step, "
                              "ε̂(x̃_pred, σ_next); you called the model at σ again.")
        if len(calls) >= 2 and close(calls[1][0], x_tilde):
            raise CheckFailed("Heun averaging wrong: evaluate the second slope at the Euler predictor "
                              "x̃_pred = x̃ + (σ_next − σ) ε̂, not at x̃ itself.")
        d2 = eps_fn(pred, sigma_next)
        _diagnose(out, [
            (pred, "You returned the Euler predictor. Heun corrects it: x̃_next = x̃ + (σ_next − σ)·(d + d′)/2, "
                   "with d′ = ε̂(x̃_pred, σ_next)."),
            (x_tilde + h * d2, "Heun averaging wrong: you used only the end slope d′; average it with the "
                               "start slope, (d + d′)/2."),
            (x_tilde + h * (d + d2), "Heun averaging wrong: you added the two slopes without halving, "
                                     "use (d + d′)/2."),
            (pred + h * (d + d2) / 2, "Heun averaging wrong: the corrector restarts from x̃, not from the "
                                      "predictor: x̃_next = x̃ + (σ_next − σ)(d + d′)/2."),
            (x_tilde + h * (d + d2) / 4, "Heun averaging wrong: the average of two slopes is (d + d′)/2."),
        ])
        raise CheckFailed(f"For σ = {sigma} → σ_next = {sigma_next} your step differs from "
                          f"x̃ + (σ_next − σ)(d + d′)/2 (max |difference| {_maxdiff(out, want)}).")


# ------------------------------------------------------------------------------------- DPM-Solver++

def lam(abar: float) -> float:
    """λ = log(√ᾱ/√(1 − ᾱ)) = ½ log(ᾱ/(1 − ᾱ)), half the log-SNR."""
    return 0.5 * math.log(abar / (1 - abar))


def dpm_solver_pp_2m_step(x: Tensor, x0: Tensor, x0_prev: Tensor | None, abar: float, abar_next: float,
                          h_prev: float | None) -> Tensor:
    """Reference DPM-Solver++(2M) update, Lu et al. (2022b), Algorithm 2 (``samplers.dpm_solver_pp``); ᾱ_next < 1."""
    h = lam(abar_next) - lam(abar)
    if x0_prev is None:
        D = x0
    else:
        r = h_prev / h
        D = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
    return math.sqrt((1 - abar_next) / (1 - abar)) * x - math.sqrt(abar_next) * math.expm1(-h) * D


@checker("dpm_solver_pp_2m_step")
def check_dpm_solver_pp_2m_step(step_fn: Callable) -> None:
    """``dpm_solver_pp_2m_step(x, x0, x0_prev, abar, abar_next, h_prev)``: first order, then multistep."""
    x, x0, x0_prev = _inputs(3)
    abar, abar_next = 0.4, 0.6
    h = lam(abar_next) - lam(abar)
    ratio_x, a_next = math.sqrt((1 - abar_next) / (1 - abar)), math.sqrt(abar_next)

    # 1. no history: DPM-Solver++(1), which is DDIM
    out = expect_tensor(step_fn(x, x0, None, abar, abar_next, None), SHAPE,
                        "dpm_solver_pp_2m_step(..., x0_prev=None, ...)")
    want = dpm_solver_pp_2m_step(x, x0, None, abar, abar_next, None)
    if not close(out, want):
        _diagnose(out, [
            (ratio_x * x + a_next * math.expm1(-h) * x0,
             "e^{−h} vs expm1 sign: the data term is −√ᾱ_next·(e^{−h} − 1)·D = +√ᾱ_next·(1 − e^{−h})·D; "
             "your sign is flipped."),
            (ratio_x * x - a_next * math.exp(-h) * x0,
             "e^{−h} vs expm1 sign: the coefficient of D is −√ᾱ_next·(e^{−h} − 1), use math.expm1(-h); "
             "you used e^{−h} without the −1."),
            (ratio_x * x + a_next * math.exp(-h) * x0,
             "e^{−h} vs expm1 sign: the coefficient of D is √ᾱ_next·(1 − e^{−h}) = −√ᾱ_next·expm1(−h); "
             "you used e^{−h} without the 1 −."),
            (ratio_x * x - a_next * math.expm1(h) * x0,
             "e^{−h} vs expm1 sign: the exponent is −h, with h = λ_next − λ > 0; you used expm1(+h)."),
            (ratio_x * x + a_next * math.expm1(h) * x0,
             "e^{−h} vs expm1 sign: h = λ_next − λ (positive: λ grows towards clean data), and the "
             "coefficient of D is −√ᾱ_next·expm1(−h)."),
            (ratio_x * x - a_next * math.expm1(-2 * h) * x0,
             "Your h is twice too large: λ = ½ log(ᾱ/(1 − ᾱ)) = log(√ᾱ/√(1 − ᾱ)); you dropped the ½."),
            (math.sqrt(abar_next / abar) * x - a_next * math.expm1(-h) * x0,
             "x is carried by σ_next/σ = √((1 − ᾱ_next)/(1 − ᾱ)) in the data-prediction (++) solver; "
             "√(ᾱ_next/ᾱ) belongs to the noise-prediction DPM-Solver."),
        ])
        raise CheckFailed(f"Without history (x0_prev = None) your step differs from the first-order update "
                          f"√((1 − ᾱ_next)/(1 − ᾱ))·x − √ᾱ_next·expm1(−h)·x̂_0, which is DDIM "
                          f"(max |difference| {_maxdiff(out, want)}).")

    # 2. with history: the multistep correction D = (1 + 1/(2r)) x̂_0 − x̂_0,prev/(2r), r = h_prev/h
    h_prev = 0.15
    out = expect_tensor(step_fn(x, x0, x0_prev, abar, abar_next, h_prev), SHAPE, "dpm_solver_pp_2m_step(...)")
    want = dpm_solver_pp_2m_step(x, x0, x0_prev, abar, abar_next, h_prev)
    if close(out, want):
        return
    r = h_prev / h
    with_D = lambda D: ratio_x * x - a_next * math.expm1(-h) * D  # noqa: E731
    _diagnose(out, [
        (with_D((1 + r / 2) * x0 - r / 2 * x0_prev),
         "DPM-Solver++ r = h/h_prev inverted: r = h_prev/h (the last step over this one), and the "
         "correction weight is 1/(2r)."),
        (with_D((1 + 1 / r) * x0 - 1 / r * x0_prev),
         "Missing the 1/(2r) factor: the correction is (x̂_0 − x̂_0,prev)/(2r), you used 1/r."),
        (with_D(2 * x0 - x0_prev),
         "Missing the 1/(2r) factor: D = x̂_0 + (x̂_0 − x̂_0,prev)/(2r), you used weight 1."),
        (with_D(1.5 * x0 - 0.5 * x0_prev),
         "Missing the 1/(2r) factor: you assumed equal steps (r = 1); here r = h_prev/h ≠ 1."),
        (with_D((1 - 1 / (2 * r)) * x0 + 1 / (2 * r) * x0_prev),
         "The correction has the wrong sign: D = x̂_0 + (x̂_0 − x̂_0,prev)/(2r) extrapolates away from the "
         "previous prediction."),
        (with_D(x0), "You ignored x0_prev: with history, DPM-Solver++(2M) uses D = (1 + 1/(2r)) x̂_0 − "
                     "x̂_0,prev/(2r), r = h_prev/h."),
        (with_D(x0_prev), "D should combine the current x̂_0 and x0_prev, not use x0_prev alone."),
    ])
    raise CheckFailed(f"With history your step differs from the 2M update with D = (1 + 1/(2r)) x̂_0 − "
                      f"x̂_0,prev/(2r), r = h_prev/h (max |difference| {_maxdiff(out, want)}).")


__all__ = ["check_ddim_step", "check_euler_step", "check_heun_step", "check_dpm_solver_pp_2m_step"]
