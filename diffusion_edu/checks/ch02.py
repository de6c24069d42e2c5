"""Checks of chapter 02, denoising in 2-D: the posterior q(x_{t−1} | x_t, x_0), x̂_0 from ε̂, the ε-loss and one
DDPM update (and the sampler it makes).

Each check probes the learner's function on random inputs against ``forward.q_posterior``, ``forward.x0_from_eps``,
``train.diffusion_loss`` and ``samplers.ddpm`` (Ho et al. 2020, Eqs. 7, 14, 15 and Algorithm 2). Linear functions
are split into their coefficients (the coefficient of x_0 and of x_t, of x_t and of ε̂, the mean and the noise
scale of a step), so that a wrong one is matched against the usual mistakes and named in the message.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..exact import GaussianMixture
from ..forward import q_posterior, x0_from_eps
from ..nets import MLPDenoiser
from ..samplers import ddpm, sample
from ..schedules import NoiseSchedule, linear
from ..train import diffusion_loss
from .base import CheckFailed, checker, close, expect, expect_tensor, ratio
from .mistakes import diagnose, matches

__all__ = ["check_posterior_mean_var", "check_predict_x0", "check_ddpm_loss", "check_ddpm_step",
           "check_ddpm_sampler"]

OK = dict(rtol=1e-3, atol=1e-5)      # accepting: leaves room for coefficients computed in float32
MISTAKE = dict(rtol=2e-3, atol=1e-7)  # recognising a known mistake in a coefficient
T_CASES = (0, 3, 50, 400, 999)       # both ends (t = 0 is the last step), small t where β̃ ≠ β, large t where ᾱ ≪ α
WRAP = ("At t = 0 you used ᾱ_{T−1} as \"ᾱ_{t−1}\": `alpha_bars[t - 1]` at t = 0 is `alpha_bars[-1]`, which Python "
        "wraps around to the LAST step. The level before t = 0 is clean data, where ᾱ = 1.")


def _values(s: NoiseSchedule, t: int) -> dict[str, float]:
    """The schedule's numbers at t as floats; ``abar_prev`` = 1 at t = 0, ``abar_wrap`` what alpha_bars[t − 1] gives."""
    return dict(abar=float(s.alpha_bars[t]), abar_prev=s.alpha_bar(t - 1), abar_wrap=float(s.alpha_bars[t - 1]),
                alpha=float(s.alphas[t]), beta=float(s.betas[t]))


def _scalar_ratio(got: Tensor, base: Tensor, what: str, t: int) -> float:
    """The constant c with got = c·base, or a plain-words failure if there is none."""
    c = ratio(got, base)
    expect(c is not None or bool((got.abs() < 1e-12).all()),
           f"At t = {t}, {what} is not a fixed multiple of its input: the formula is linear, with one coefficient "
           f"per timestep (are you drawing random numbers or mixing up samples?).")
    return 0.0 if c is None else c


def _name(got: float, want: float, mistakes: list[tuple[float, str]], fallback: str) -> None:
    """Return if got ≈ want; else fail with the first mistake that got matches (``mistakes.diagnose``), else ``fallback``."""
    if not matches(got, want, **OK):
        diagnose(got, mistakes, fallback, **MISTAKE)


def _as_variance(var, batch: int, t: int) -> Tensor:
    """The learner's variance as float64 of shape (batch,): a number, or one value per sample."""
    expect(isinstance(var, (int, float, Tensor)), f"The variance should be a number or a tensor, got {type(var).__name__}.")
    v = torch.as_tensor(var, dtype=torch.float64).detach()
    expect(v.numel() in (1, batch), f"At t = {t} the variance has {v.numel()} values: return one number (or one per "
                                    f"sample, shape ({batch}, 1)); it is the same for every coordinate.")
    expect(bool(torch.isfinite(v).all()), f"At t = {t} the variance is NaN or inf.")
    return v.reshape(-1).expand(batch)


# ------------------------------------------------------------------------------------------ the posterior


@checker("posterior_mean_var")
def check_posterior_mean_var(posterior_mean_var) -> None:
    """μ̃ = √ᾱ_{t−1} β_t/(1 − ᾱ_t) x_0 + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) x_t, β̃ = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t (Eqs. 6–7)."""
    s = linear()
    g = torch.Generator().manual_seed(20)
    x0, x_t = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    zero = torch.zeros_like(x0)
    for t in T_CASES:
        out = posterior_mean_var(x0.clone(), x_t.clone(), t, s)
        expect(isinstance(out, tuple) and len(out) == 2, "Return a pair (mean, var), e.g. `return mean, var`.")
        mean, var = out
        expect_tensor(mean, x0.shape, f"The mean at t = {t}")
        v = _values(s, t)
        # The mean is a·x_0 + b·x_t: probe a with x_t = 0 and b with x_0 = 0.
        a = _scalar_ratio(posterior_mean_var(x0.clone(), zero.clone(), t, s)[0], x0, "the coefficient of x_0", t)
        b = _scalar_ratio(posterior_mean_var(zero.clone(), x_t.clone(), t, s)[0], x_t, "the coefficient of x_t", t)
        want_a = math.sqrt(v["abar_prev"]) * v["beta"] / (1 - v["abar"])
        want_b = math.sqrt(v["alpha"]) * (1 - v["abar_prev"]) / (1 - v["abar"])
        wrap_a = math.sqrt(v["abar_wrap"]) * v["beta"] / (1 - v["abar"])
        wrap_b = math.sqrt(v["alpha"]) * (1 - v["abar_wrap"]) / (1 - v["abar"])
        if t == 0 and math.isclose(a, wrap_a, rel_tol=MISTAKE["rtol"]) and math.isclose(b, wrap_b, rel_tol=MISTAKE["rtol"]):
            raise CheckFailed(WRAP)
        swapped = math.isclose(a, want_b, rel_tol=MISTAKE["rtol"], abs_tol=1e-7) and \
            math.isclose(b, want_a, rel_tol=MISTAKE["rtol"], abs_tol=1e-7)
        expect(not swapped or math.isclose(a, want_a, rel_tol=OK["rtol"], abs_tol=OK["atol"]),
               f"The coefficients of x_0 and x_t are swapped (at t = {t}): x_0 gets √ᾱ_{{t−1}} β_t / (1 − ᾱ_t) and x_t "
               f"gets √α_t (1 − ᾱ_{{t−1}}) / (1 − ᾱ_t). At t = 0 the mean must be x_0 itself.")
        _name(a, want_a, [
            (wrap_a, WRAP),
            (v["abar_prev"] * v["beta"] / (1 - v["abar"]),
             "The coefficient of x_0 lacks a square root: it is √ᾱ_{t−1} · β_t / (1 − ᾱ_t)."),
            (math.sqrt(v["abar"]) * v["beta"] / (1 - v["abar"]),
             "In the coefficient of x_0 you used √ᾱ_t where √ᾱ_{t−1} belongs: x_0 reaches x_{t−1} scaled by √ᾱ_{t−1}."),
            (math.sqrt(v["abar_prev"]) * v["beta"] / math.sqrt(1 - v["abar"]),
             "In the coefficient of x_0 you divided by √(1 − ᾱ_t); divide by 1 − ᾱ_t, the variance of x_t given x_0."),
        ], f"At t = {t} the coefficient of x_0 in your mean is {a:.6g}; it should be √ᾱ_{{t−1}} β_t / (1 − ᾱ_t) = "
           f"{want_a:.6g}.")
        _name(b, want_b, [
            (wrap_b, WRAP),
            (v["alpha"] * (1 - v["abar_prev"]) / (1 - v["abar"]),
             "The coefficient of x_t lacks a square root: it is √α_t · (1 − ᾱ_{t−1}) / (1 − ᾱ_t)."),
            (math.sqrt(v["abar"]) * (1 - v["abar_prev"]) / (1 - v["abar"]),
             "In the coefficient of x_t you used √ᾱ_t where √α_t belongs: x_t comes from x_{t−1} by ONE step, "
             "x_t = √α_t x_{t−1} + √β_t ε."),
            (math.sqrt(v["abar_prev"]) * (1 - v["abar_prev"]) / (1 - v["abar"]),
             "In the coefficient of x_t you used √ᾱ_{t−1} where √α_t belongs (one step from x_{t−1} to x_t)."),
        ], f"At t = {t} the coefficient of x_t in your mean is {b:.6g}; it should be √α_t (1 − ᾱ_{{t−1}}) / (1 − ᾱ_t) "
           f"= {want_b:.6g}.")
        ref_mean, ref_var = q_posterior(x0, x_t, t, s)
        expect(close(mean, ref_mean, **OK), f"At t = {t} the mean is not a·x_0 + b·x_t with the coefficients you use "
                                            f"elsewhere: no clipping or extra terms.")
        got_var = _as_variance(var, len(x0), t)
        want_var = v["beta"] * (1 - v["abar_prev"]) / (1 - v["abar"])
        if close(got_var, ref_var.reshape(-1).double(), rtol=OK["rtol"], atol=1e-12):
            continue
        _name(float(got_var[0]), want_var, [
            ((1 - v["abar_wrap"]) / (1 - v["abar"]) * v["beta"], WRAP),
            (v["beta"], "Your variance is β_t, the variance of the forward step q(x_t | x_{t−1}). The posterior knows "
                        "x_0 too, which removes uncertainty: β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t, smaller than β_t."),
            (math.sqrt(want_var), "You returned the standard deviation √β̃_t; return the variance "
                                  "β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t."),
            ((1 - v["abar"]) / (1 - v["abar_prev"]) * v["beta"] if t > 0 else math.nan,
             "Your variance has the ratio upside down: β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t, which is ≤ β_t."),
            (1 - v["abar"], "Your variance is 1 − ᾱ_t, the variance of q(x_t | x_0); the posterior's is "
                            "β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t."),
        ], f"At t = {t} your variance is {float(got_var[0]):.6g}; it should be β̃_t = (1 − ᾱ_{{t−1}}) / (1 − ᾱ_t) · β_t "
           f"= {want_var:.6g}" + (" (0 at t = 0: given x_0, the clean x_{t−1} is known exactly)." if t == 0 else "."))


# ---------------------------------------------------------------------------------------------- x̂_0 from ε̂


@checker("predict_x0")
def check_predict_x0(predict_x0) -> None:
    """x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t: Eq. 4 solved for x_0 (Ho et al. 2020, Eq. 15)."""
    s = linear()
    g = torch.Generator().manual_seed(21)
    x_t, eps = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    zero = torch.zeros_like(x_t)
    for t in T_CASES:
        got = predict_x0(x_t.clone(), t, eps.clone(), s)
        expect_tensor(got, x_t.shape, f"predict_x0(x_t, {t}, eps, schedule)")
        v = _values(s, t)
        abar, alpha, prev = v["abar"], v["alpha"], v["abar_prev"]
        a = _scalar_ratio(predict_x0(x_t.clone(), t, zero.clone(), s), x_t, "the coefficient of x_t", t)
        b = _scalar_ratio(predict_x0(zero.clone(), t, eps.clone(), s), eps, "the coefficient of ε", t)
        common = [
            ((1 / math.sqrt(alpha), -math.sqrt(1 - alpha) / math.sqrt(alpha)),
             "You used α_t where ᾱ_t belongs: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε jumps from x_0 in one go, with the "
             "product ᾱ_t = α_0 ⋯ α_t."),
            ((1 / abar, -(1 - abar) / abar), "You forgot the square roots: x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t."),
            ((1 / math.sqrt(abar), -(1 - abar) / math.sqrt(abar)),
             "The noise term lacks its square root: subtract √(1 − ᾱ_t) ε̂, the standard deviation, not the variance."),
            ((1 / math.sqrt(abar), math.sqrt(1 - abar) / math.sqrt(abar)),
             "The sign of the noise term is flipped: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, so x̂_0 SUBTRACTS the noise."),
            ((math.sqrt(abar), -math.sqrt(1 - abar) * math.sqrt(abar)),
             "You multiplied by √ᾱ_t; divide by it: x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t."),
            ((1.0, -math.sqrt(1 - abar)), "You forgot to divide by √ᾱ_t: x_t − √(1 − ᾱ_t) ε̂ is √ᾱ_t x_0, not x_0."),
            ((1 / math.sqrt(abar), -math.sqrt(1 - abar)),
             "Divide the whole of x_t − √(1 − ᾱ_t) ε̂ by √ᾱ_t, not only x_t (mind the brackets)."),
            ((1 / math.sqrt(prev), -math.sqrt(1 - prev) / math.sqrt(prev)),
             "Off by one: you used ᾱ_{t−1} (at t = 0 that is clean data's ᾱ = 1, so your x̂_0 = x_t). x_t is noised to "
             "level t: use schedule.alpha_bars[t]."),
        ]
        want = (1 / math.sqrt(abar), -math.sqrt(1 - abar) / math.sqrt(abar))
        good = [math.isclose(c, w, rel_tol=OK["rtol"], abs_tol=OK["atol"]) for c, w in zip((a, b), want)]
        if not all(good):
            for (ma, mb), message in common:
                if math.isclose(a, ma, rel_tol=MISTAKE["rtol"]) and math.isclose(b, mb, rel_tol=MISTAKE["rtol"]):
                    raise CheckFailed(message)
            part = "x_t" if not good[0] else "ε̂"
            raise CheckFailed(f"At t = {t} your coefficient of {part} is {(a if not good[0] else b):.6g}; "
                              f"x̂_0 = x_t / √ᾱ_t − √(1 − ᾱ_t)/√ᾱ_t · ε̂ gives "
                              f"{(want[0] if not good[0] else want[1]):.6g}.")
        expect(close(got, x0_from_eps(x_t, t, eps, s), **OK),
               f"At t = {t} x̂_0 is not a·x_t + b·ε̂ with the coefficients you use elsewhere: no clipping or extra terms.")


# ---------------------------------------------------------------------------------------------- the ε-loss


def _loss_model() -> MLPDenoiser:
    torch.manual_seed(22)
    return MLPDenoiser(hidden=16, depth=2, time_dim=8)


def _loss_variants(model, x0: Tensor, s: NoiseSchedule, seed: int) -> dict[str, Tensor]:
    """The usual wrong losses, each drawn from a generator seeded like the learner's."""
    out = {}
    B, D = x0.shape

    def draws(eps_first: bool = False):
        g = torch.Generator().manual_seed(seed)
        if eps_first:
            eps = torch.randn(x0.shape, generator=g)
            return torch.randint(0, s.T, (B,), generator=g), eps
        t = torch.randint(0, s.T, (B,), generator=g)
        return t, torch.randn(x0.shape, generator=g)

    with torch.no_grad():
        t, eps = draws()
        abar = s.alpha_bars[t].float()[:, None]
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        out["x0 target"] = ((model(x_t, t) - x0) ** 2).mean()
        out["no roots"] = ((model(abar * x0 + (1 - abar) * eps, t) - eps) ** 2).mean()
        out["clean input"] = ((model(x0, t) - eps) ** 2).mean()
        out["t/T"] = ((model(x_t, t / s.T) - eps) ** 2).mean()
        out["alpha"] = ((model(s.alphas[t].float()[:, None].sqrt() * x0 + s.betas[t].float()[:, None].sqrt() * eps, t)
                         - eps) ** 2).mean()
        t2, eps2 = draws(eps_first=True)
        abar2 = s.alpha_bars[t2].float()[:, None]
        out["order"] = ((model(abar2.sqrt() * x0 + (1 - abar2).sqrt() * eps2, t2) - eps2) ** 2).mean()
    return out


LOSS_MESSAGES = {
    "x0 target": "You regressed the network onto x_0. In the ε-objective the target is the noise ε that made x_t: "
                 "loss = mean((model(x_t, t) − ε)²).",
    "no roots": "x_t is wrong: it is √ᾱ_t x_0 + √(1 − ᾱ_t) ε, with square roots (you used ᾱ_t and 1 − ᾱ_t).",
    "clean input": "You fed the network x_0; it must see the noisy x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε and predict ε.",
    "t/T": "You passed t/T to the network; pass the integer timesteps t themselves (its embedding expects them).",
    "alpha": "You used α_t where ᾱ_t belongs: one jump x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε goes from x_0 to level t.",
    "order": "You drew ε before t. Draw t first, then ε, from the generator (as de.diffusion_loss does), so that "
             "the same generator gives the same loss.",
}


@checker("ddpm_loss")
def check_ddpm_loss(ddpm_loss) -> None:
    """L_simple = E_{t, ε} ‖ε − ε̂_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² (Ho et al. 2020, Eq. 14), as de.diffusion_loss."""
    s = linear()
    model = _loss_model()
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(23))
    torch.manual_seed(1)
    loss = ddpm_loss(model, x0.clone(), s, torch.Generator().manual_seed(5))
    expect(isinstance(loss, Tensor), f"Return the loss as a torch.Tensor (not a {type(loss).__name__}): "
                                     f"training calls loss.backward().")
    expect(loss.numel() == 1, f"The loss should be one number, the mean over the batch; got shape {tuple(loss.shape)}.")
    expect(loss.requires_grad, "Your loss carries no gradient: don't call .item(), .detach() or torch.no_grad() "
                               "inside, training needs loss.backward().")
    torch.manual_seed(2)
    again = ddpm_loss(model, x0.clone(), s, torch.Generator().manual_seed(5))
    expect(close(loss.detach(), again.detach(), rtol=1e-6, atol=0),
           "Two calls with identically seeded generators gave different losses: draw t and ε with "
           "`generator=generator` (torch.randint(..., generator=generator), torch.randn(..., generator=generator)).")
    for seed in (5, 6):
        got = ddpm_loss(model, x0.clone(), s, torch.Generator().manual_seed(seed)).detach().reshape(())
        want = diffusion_loss(model, x0, s, generator=torch.Generator().manual_seed(seed)).detach()
        if close(got, want, rtol=1e-4, atol=1e-7):
            continue
        for name, value in _loss_variants(model, x0, s, seed).items():
            if close(got, value, rtol=1e-4, atol=1e-7):
                raise CheckFailed(LOSS_MESSAGES[name])
        c = float(got / want)
        B, D = x0.shape
        for factor, message in [(B * D, f"You summed the squared errors; take their mean (over all {B}×{D} "
                                        f"numbers), like de.diffusion_loss."),
                                (D, "You summed over the coordinates and averaged over the batch: a constant factor "
                                    "D, harmless in principle, but take the mean over all numbers like "
                                    "de.diffusion_loss."),
                                (B, "You summed over the batch; take the mean.")]:
            expect(not math.isclose(c, factor, rel_tol=1e-4), message)
        raise CheckFailed(f"Your loss is {float(got):.6f}, de.diffusion_loss gives {float(want):.6f} for the same "
                          f"generator. Draw t = torch.randint(0, T, (B,), generator=generator), then "
                          f"ε = torch.randn(x0.shape, generator=generator), and regress model(x_t, t) onto ε.")


# ------------------------------------------------------------------------------------------ one DDPM step


def _step_model(s: NoiseSchedule):
    """An exact ε-predictor (a two-component Gaussian mixture), so no training stands between us and the formula."""
    return GaussianMixture(torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), 0.3).eps_model(s)


def _ddpm_reference(model, x: Tensor, t: int, s: NoiseSchedule, noise: Tensor) -> Tensor:
    x0 = x0_from_eps(x, t, model(x, t), s)
    mean, var = q_posterior(x0, x, t, s)
    return mean + var.sqrt() * noise if t > 0 else mean


@checker("ddpm_step")
def check_ddpm_step(ddpm_step) -> None:
    """x_{t−1} = (x_t − β_t/√(1 − ᾱ_t) ε̂)/√α_t + √β̃_t z, z = 0 at the last step (Ho et al. 2020, Algorithm 2)."""
    s = linear()
    model = _step_model(s)
    g = torch.Generator().manual_seed(24)
    x, z = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    zero = torch.zeros_like(z)
    for t in T_CASES:
        got = ddpm_step(model, x.clone(), t, s, z.clone())
        expect_tensor(got, x.shape, f"ddpm_step(model, x_t, {t}, schedule, noise)")
        expect(close(ddpm_step(model, x.clone(), t, s, z.clone()), got, rtol=0, atol=1e-6),
               f"Two calls at t = {t} with the same x_t and noise gave different results: use the `noise` argument "
               f"as z, don't draw new noise inside the step.")
        want = _ddpm_reference(model, x, t, s, z)
        if close(got, want, **OK):
            continue
        v = _values(s, t)
        abar, alpha, beta, prev = v["abar"], v["alpha"], v["beta"], v["abar_prev"]
        eps = model(x, t).double()
        xd = x.double()
        mean = ddpm_step(model, x.clone(), t, s, zero.clone()).double()
        means = [
            ((xd - beta / math.sqrt(1 - abar) * eps) / math.sqrt(abar),
             "You divided by √ᾱ_t where the DDPM mean needs √α_t: μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε̂) / √α_t. One "
             "reverse step undoes ONE forward step, which scaled by √α_t."),
            ((xd - beta / math.sqrt(1 - alpha) * eps) / math.sqrt(alpha),
             "Inside the mean you used √(1 − α_t) where √(1 − ᾱ_t) belongs: μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε̂) / √α_t; "
             "ε̂ is the noise of the whole jump from x_0, whose standard deviation is √(1 − ᾱ_t)."),
            ((xd - beta / (1 - abar) * eps) / math.sqrt(alpha),
             "The ε̂ coefficient lacks a square root: μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε̂) / √α_t."),
            ((xd + beta / math.sqrt(1 - abar) * eps) / math.sqrt(alpha),
             "The sign of the ε̂ term is flipped: the mean SUBTRACTS the predicted noise."),
            (xd - beta / math.sqrt(1 - abar) * eps,
             "You forgot to divide by √α_t: μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε̂) / √α_t."),
            ((xd - math.sqrt(1 - abar) * eps) / math.sqrt(abar),
             "You returned x̂_0, the prediction of clean data, as the mean. One step only goes to x_{t−1}: "
             "μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε̂) / √α_t."),
        ]
        want_mean = _ddpm_reference(model, x, t, s, zero).double()
        if not close(mean, want_mean, **OK):
            for value, message in means:
                if close(mean, value, **MISTAKE):
                    raise CheckFailed(message)
            raise CheckFailed(f"At t = {t} (called with noise = 0) your mean differs from μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε̂)"
                              f" / √α_t by up to {float((mean - want_mean).abs().max()):.3g}. Did you call "
                              f"model(x_t, t) and use schedule.alphas[t], betas[t], alpha_bars[t]?")
        scale = ratio(got.double() - mean, z.double())
        expect(scale is not None, f"At t = {t} your step minus its mean is not a multiple of `noise`: add "
                                  f"σ_t · noise, using the `noise` argument rather than drawing new noise.")
        want_var = (1 - prev) / (1 - abar) * beta
        if t == 0:
            _name(scale, 0.0, [(math.sqrt(beta), "You added noise at the last step (t = 0, Algorithm 2's t = 1). It "
                                                 "returns the mean, z = 0: there is no later step to correct it, and "
                                                 "the noise would only blur the samples."),
                               (math.sqrt((1 - v["abar_wrap"]) / (1 - abar) * beta), WRAP)],
                  f"At the last step, t = 0, return the mean without noise (Algorithm 2: z = 0 when t = 1); "
                  f"your noise is scaled by {scale:.4g}.")
        else:
            _name(scale, math.sqrt(want_var), [
                (math.sqrt(beta), "Your noise has variance β_t, Ho et al.'s other choice of σ_t². Use the posterior "
                                  "variance β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t, so your step matches de.ddpm."),
                (want_var, "You scaled the noise by the variance β̃_t; scale it by the standard deviation √β̃_t."),
                (beta, "You scaled the noise by β_t, a variance; use the standard deviation √β̃_t, "
                       "β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t."),
                (-math.sqrt(want_var), "Add the noise, don't subtract it: x_{t−1} = μ_θ + √β̃_t z."),
            ], f"At t = {t} your noise is scaled by {scale:.4g}; it should be √β̃_t = {math.sqrt(want_var):.4g}.")
        raise CheckFailed(f"At t = {t} your step differs from μ_θ + √β̃_t z although both parts look right: "
                          f"no clipping or extra terms.")


@checker("ddpm_sampler")
def check_ddpm_sampler(ddpm_step) -> None:
    """Your step, looped over t = T − 1, …, 0 with fresh noise for t > 0, is de.ddpm (Algorithm 2)."""
    s = linear()
    model = _step_model(s)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(25))
    g = torch.Generator().manual_seed(26)
    x = x_T.clone()
    for t in reversed(range(s.T)):
        noise = torch.randn(x.shape, generator=g) if t > 0 else torch.zeros_like(x)  # as de.ddpm draws it
        x = ddpm_step(model, x, t, s, noise)
        expect(isinstance(x, Tensor) and x.shape == x_T.shape and bool(torch.isfinite(x).all()),
               f"At t = {t} your step returned {'NaN or inf' if isinstance(x, Tensor) else type(x).__name__}.")
    want = sample(ddpm, model, x_T, s, s.T, generator=torch.Generator().manual_seed(26))
    expect(close(x, want, rtol=1e-3, atol=1e-4),
           f"Looped over all {s.T} steps, your ddpm_step ends up to {float((x - want).abs().max()):.3g} away from "
           f"de.ddpm with the same noise: run check_ddpm_step first, it names the mistake.")
