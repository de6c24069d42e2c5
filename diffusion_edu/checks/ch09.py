"""Checks for chapter 09 (latent diffusion): the autoencoder's KL term, the reparameterisation trick, the latent
scale factor, the log-SNR a schedule really gives data of another spread, and decoding a diffusion sample.

Each check compares the learner's function with the package's (``nets.autoencoder.kl_divergence``, the sampling
line of ``Autoencoder.forward``, ``latent.latent_scale``'s 1 / std, ``latent.decode``) or, for the effective
log-SNR, which the package does not need as a function, with the formula written here; and names the usual
mistake it matches with the shared ``mistakes.diagnose``: the missing ½, log σ read for log σ², the variance for
the standard deviation, a scale per channel, the log-SNR shifted by log c instead of 2 log c, z · s for z / s, …

Log-SNR is the course's (chapters 00–01): log SNR = log(α²/σ²) = log(ᾱ / (1 − ᾱ)) = ``schedule.snr.log()``;
``GaussianPath.lam`` = log(α/σ) is half of it.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import CheckFailed, checker, expect, expect_tensor
from .mistakes import diagnose, matches
from ..nets.autoencoder import kl_divergence

__all__ = ["check_kl_divergence", "check_reparameterise", "check_latent_scale", "check_effective_log_snr",
           "check_decode_latents"]

SHAPE = (6, 4, 3, 3)  # latent-shaped (B, C, h, w), B ≠ C, so code that only works for (B, D) or per channel is caught
CLOSE = dict(rtol=1e-4, atol=1e-5)  # a right answer, also in float32


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _maxdiff(a: Tensor, b: Tensor) -> str:
    return f"{(a.double() - b.double()).abs().max().item():.3g}"


def _gaussian(seed: int) -> tuple[Tensor, Tensor]:
    """(μ, log σ²) of a diagonal Gaussian over SHAPE, far from N(0, I) so that every term of the KL counts."""
    g = _gen(seed)
    return (1.5 * torch.randn(SHAPE, generator=g, dtype=torch.float64),
            1.2 * torch.randn(SHAPE, generator=g, dtype=torch.float64))


# --------------------------------------------------------------------------------------------- KL term

def _kl_mistakes(mean: Tensor, logvar: Tensor) -> list[tuple[Tensor, str]]:
    """What each usual mistake returns (per example, (B,)), with its message."""
    def total(terms):
        return terms.flatten(1).sum(1)

    mu2, var = mean**2, logvar.exp()
    return [
        (total(mu2 + var - 1 - logvar), "Missing ½: KL = ½ Σ (μ² + σ² − 1 − log σ²)."),
        (-0.5 * total(mu2 + var - 1 - logvar),
         "Overall sign: a KL divergence is ≥ 0; the ELBO's −KL is ½ Σ (1 + log σ² − μ² − σ²), the KL itself "
         "½ Σ (μ² + σ² − 1 − log σ²)."),
        (0.5 * total(mu2 + (2 * logvar).exp() - 1 - 2 * logvar),
         "logvar is log σ², the log-variance, not log σ: σ² = exp(logvar) and log σ² = logvar (you used "
         "exp(2·logvar) and 2·logvar)."),
        (0.5 * total(mu2 + (2 * logvar).exp() - 1 - logvar),
         "logvar is log σ², not log σ: σ² = exp(logvar), not exp(logvar)² = exp(2·logvar)."),
        (0.5 * total(mu2 + var - 1 - 2 * logvar),
         "logvar is already log σ²: the last term is −logvar, not −2·logvar."),
        (0.5 * total(mu2 + (0.5 * logvar).exp() - 1 - logvar),
         "σ² = exp(logvar): you used exp(½ logvar), which is σ, the standard deviation."),
        (0.5 * (mu2 + var - 1 - logvar).flatten(1).mean(1),
         "You averaged over the latent entries: the KL of a diagonal Gaussian is a *sum* over its dimensions, "
         "`.flatten(1).sum(1)`, not `.mean(1)`."),
        (0.5 * total(mu2 + var + 1 - logvar),
         "Sign of the 1: ½ Σ (μ² + σ² − 1 − log σ²); the −1 is what makes KL = 0 at μ = 0, σ = 1."),
        (0.5 * total(mu2 + var - 1 + logvar), "Sign of log σ²: ½ Σ (μ² + σ² − 1 − log σ²), minus logvar."),
        (0.5 * total(var - 1 - logvar),
         "The mean's term is missing: ½ Σ (μ² + σ² − 1 − log σ²) includes μ²."),
    ]


@checker("kl_divergence")
def check_kl_divergence(kl_fn: Callable) -> None:
    """``kl_divergence(mean, logvar) -> (B,)``: KL(N(μ, diag e^logvar) ‖ N(0, I)) = ½ Σ (μ² + σ² − 1 − log σ²)
    over all but the batch dimension (Kingma & Welling 2014, Appendix B)."""
    B = SHAPE[0]
    for seed in (0, 1):
        mean, logvar = _gaussian(seed)
        got = kl_fn(mean.clone(), logvar.clone())
        want = kl_divergence(mean, logvar)  # (B,)
        per_example = ("Return one KL per example, shape (B,): sum over every dimension but the first, "
                       "`.flatten(1).sum(1)`")
        if isinstance(got, (int, float)) or (isinstance(got, Tensor) and got.numel() == 1):
            which = ("the sum over the batch" if matches(float(got), want.sum()) else
                     "the mean over the batch" if matches(float(got), want.mean()) else "one number")
            raise CheckFailed(f"{per_example}; you returned {which}. (autoencoder_loss averages over the batch "
                              f"itself.)")
        if isinstance(got, Tensor) and tuple(got.shape) == SHAPE:
            raise CheckFailed(f"{per_example}; you returned one value per latent entry, shape {SHAPE}.")
        if isinstance(got, Tensor) and tuple(got.shape) != (B,):
            raise CheckFailed(f"{per_example}, here ({B},); got shape {tuple(got.shape)}.")
        got = expect_tensor(got, (B,), "kl_divergence(mean, logvar)")
        if not matches(got, want, **CLOSE):
            diagnose(got, _kl_mistakes(mean, logvar),
                     f"Your KL differs from ½ Σ (μ² + σ² − 1 − log σ²), σ² = exp(logvar) (max |difference| "
                     f"{_maxdiff(got, want)}).")
    zero = kl_fn(torch.zeros(SHAPE, dtype=torch.float64), torch.zeros(SHAPE, dtype=torch.float64))
    expect(matches(zero, torch.zeros(B, dtype=torch.float64), **CLOSE), "KL(N(0, I) ‖ N(0, I)) should be 0.")


# -------------------------------------------------------------------------------------- reparameterise

@checker("reparameterise")
def check_reparameterise(reparameterise: Callable) -> None:
    """``reparameterise(mean, logvar, eps) -> z = μ + exp(½ logvar) ⊙ ε``, as ``Autoencoder.forward`` samples
    q(z | x) (Kingma & Welling 2014, §2.4)."""
    mean, logvar = _gaussian(2)
    eps = torch.randn(SHAPE, generator=_gen(3), dtype=torch.float64)
    got = expect_tensor(reparameterise(mean.clone(), logvar.clone(), eps.clone()), SHAPE,
                        "reparameterise(mean, logvar, eps)")
    std = (0.5 * logvar).exp()
    want = mean + std * eps
    if matches(got, want, **CLOSE):
        return
    again = reparameterise(mean.clone(), logvar.clone(), eps.clone())
    expect(matches(again, got), "Your function gives a different z each call: use the ε it is given, "
                                "z = μ + σ ⊙ eps; drawing your own noise inside makes the result random.")
    diagnose(got, [
        (mean + logvar.exp() * eps, "exp(logvar) is the variance σ²: scale ε by the standard deviation "
                                    "σ = exp(½ logvar), z = μ + exp(½ logvar) ⊙ ε."),
        (mean + logvar * eps, "logvar is log σ², not σ: the standard deviation is σ = exp(½ logvar)."),
        (mean + logvar.sqrt() * eps, "logvar is log σ², not σ²: the standard deviation is σ = exp(½ logvar)."),
        (mean + (-0.5 * logvar).exp() * eps, "Sign: σ = exp(+½ logvar); exp(−½ logvar) is 1/σ."),
        (std * eps, "Forgot μ: z = μ + σ ⊙ ε, a draw around the encoder's mean."),
        (mean + eps, "ε must be scaled by σ = exp(½ logvar): z = μ + σ ⊙ ε; you added it unscaled."),
        (mean * std + eps, "σ multiplies the noise ε, not the mean: z = μ + σ ⊙ ε."),
    ], f"Your z differs from μ + exp(½ logvar) ⊙ ε (max |difference| {_maxdiff(got, want)}).")


# ----------------------------------------------------------------------------------------- latent scale

def _latents(seed: int, spread: float) -> Tensor:
    """Latents (B, C, h, w) with a different mean and spread per channel, as an autoencoder's are."""
    g = _gen(seed)
    offset = torch.tensor([0.8, -0.5, 0.3, 1.2], dtype=torch.float64).reshape(1, -1, 1, 1)
    spreads = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64).reshape(1, -1, 1, 1)
    return spread * (offset + spreads * torch.randn(SHAPE, generator=g, dtype=torch.float64))


@checker("latent_scale")
def check_latent_scale(latent_scale: Callable) -> None:
    """``latent_scale(latents) -> s = 1 / std`` over every entry of latents (B, C, h, w): one number, torch's default
    (unbiased) std, as ``latent.latent_scale`` computes it from the encoder's means (Rombach et al. 2022, §4.3.2)."""
    B, C = SHAPE[:2]
    for seed, spread in ((4, 0.2), (5, 3.0)):
        z = _latents(seed, spread)
        got = latent_scale(z.clone())
        if isinstance(got, Tensor) and got.numel() > 1:
            where = {(C,): "per channel", (1, C, 1, 1): "per channel", (B,): "per example"}.get(tuple(got.shape))
            raise CheckFailed(f"Return one number for the whole tensor (the std over all its entries, `z.std()`); "
                              f"you returned a tensor of shape {tuple(got.shape)}"
                              + (f", one scale {where}." if where else ".")
                              + " Latent diffusion rescales every latent by the same s, so that it can undo it.")
        expect(isinstance(got, (numbers.Real, Tensor)),
               f"Return one number (a float, e.g. `1 / z.std().item()`), got {type(got).__name__}.")
        got = float(got)
        expect(math.isfinite(got), f"Your scale is {got}: it should be a finite positive number.")
        want = 1.0 / z.std().item()
        if math.isclose(got, want, rel_tol=CLOSE["rtol"]):
            continue
        per_channel = z.std(dim=(0, 2, 3))
        diagnose(got, [
            (z.std().item(), "That is the std itself: s = 1 / std, the number that *multiplies* the latents to "
                             "give them unit standard deviation."),
            (1 / z.var().item(), "1 / variance: the scale is 1 / std, the square root of it; s · z then has std 1."),
            (z.var().item(), "That is the variance: the scale is 1 / std."),
            (1 / z.abs().max().item(), "1 / max |z| squeezes the latents into [−1, 1] (as pixels are); diffusion "
                                       "wants unit *variance*: s = 1 / std."),
            (1 / z.pow(2).mean().sqrt().item(), "1 / √mean(z²) is the root mean square: the std subtracts the mean "
                                                "first, `z.std()`."),
            (1 / z.std(correction=0).item(), "The biased std (dividing by N, NumPy's default): latent.latent_scale "
                                             "uses torch's default `z.std()`, dividing by N − 1."),
            ((1 / per_channel).mean().item(), "The mean of per-channel scales is not one std over all entries: "
                                              "`1 / z.std()`."),
            (1 / per_channel.mean().item(), "The mean of per-channel stds is not one std over all entries: "
                                            "`1 / z.std()`."),
        ], f"Your scale {got:.6g} differs from 1 / std(z) = {want:.6g}.")


# ------------------------------------------------------------------------------------ effective log-SNR

def effective_log_snr(log_snr: Tensor, data_std: float) -> Tensor:
    """λ + 2 log c: x_t = α z + σ ε with std(z) = c has signal variance c²α², so SNR = c² α²/σ² (chapter 09)."""
    return log_snr + 2 * math.log(data_std)


@checker("effective_log_snr")
def check_effective_log_snr(effective: Callable) -> None:
    """``effective_log_snr(log_snr, data_std) -> log_snr + 2 log c``, log SNR = log(α²/σ²) = log(ᾱ/(1 − ᾱ)), for
    data of standard deviation c = data_std."""
    log_snr = torch.linspace(-10, 10, 21, dtype=torch.float64)
    for c in (0.3, 2.5):
        got = effective(log_snr.clone(), c)
        if isinstance(got, (int, float)) or (isinstance(got, Tensor) and got.numel() == 1):
            raise CheckFailed(f"Return the effective log-SNR at every noise level, a tensor shaped like log_snr "
                              f"({len(log_snr)},); got one number.")
        got = expect_tensor(got, log_snr.shape, "effective_log_snr(log_snr, data_std)")
        want = effective_log_snr(log_snr, c)
        if matches(got, want, **CLOSE):
            continue
        log_c = math.log(c)
        diagnose(got, [
            (log_snr + log_c, "That is the shift of λ = log(α/σ), half the log-SNR (processes' `lam`): the log-SNR "
                              "log(α²/σ²) moves by log c² = 2 log c, since the signal's *variance* is c² α²."),
            (log_snr - 2 * log_c, "Sign: data of std c < 1 carry less signal at every noise level, so their log-SNR is "
                                  "lower: λ + 2 log c (negative for c < 1)."),
            (log_snr - log_c, "Sign and factor: the log-SNR moves by +2 log c (the signal's variance is c² α²)."),
            (log_snr + c**2, "c² multiplies the SNR, so it adds log c² = 2 log c to the log-SNR; you added c² itself."),
            (log_snr * c**2, "c² multiplies the SNR, not its log: log(c² · SNR) = λ + 2 log c."),
            (log_snr + 2 * c, "Forgot the log: the SNR is multiplied by c², so the log-SNR gains 2 log c, not 2c."),
            (log_snr + 2 * math.log10(c), "Natural log: log-SNR here is ln(α²/σ²), so the shift is 2 ln c "
                                          "(`math.log`, not `math.log10`)."),
        ], f"With c = {c}, yours differs from λ + 2 log c (max |difference| {_maxdiff(got, want)}).")


# --------------------------------------------------------------------------------------- decode latents

class _TinyDecoder(torch.nn.Module):
    """A fixed non-linear decoder (B, 2, h, w) → (B, 3, 2h, 2w) whose outputs leave [−1, 1]: D(a z) ≠ a D(z)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("W", torch.randn(3, 2, generator=_gen(6), dtype=torch.float64))

    def forward(self, z: Tensor) -> Tensor:
        h = torch.einsum("oc,bchw->bohw", self.W.to(z), z)
        return F.interpolate(2 * torch.tanh(h) + 0.3 * h, scale_factor=2, mode="nearest")


@checker("decode_latents")
def check_decode_latents(decode_latents: Callable) -> None:
    """``decode_latents(decoder, z, scale) -> x = D(z / s)`` clamped to [−1, 1], as ``latent.decode`` (Rombach et al.
    2022, §3.2: the diffusion model's latents are s · μ(x), so the decoder must see z / s)."""
    D = _TinyDecoder()
    z = torch.randn(5, 2, 3, 3, generator=_gen(7), dtype=torch.float64)  # unit std, as scaled latents are
    out_shape = (5, 3, 6, 6)
    for s in (0.4, 2.5):
        got = decode_latents(D, z.clone(), s)
        got = expect_tensor(got.detach() if isinstance(got, Tensor) else got, out_shape,
                            "decode_latents(decoder, z, scale)")
        want = D(z / s).clamp(-1, 1)
        if matches(got, want, **CLOSE):
            continue
        diagnose(got, [
            (D(z * s).clamp(-1, 1), "z · s: the diffusion latents are z = s · μ(x), so undo the scale "
                                    "before decoding, D(z / s)."),
            (D(z).clamp(-1, 1), "The scale is missing: the diffusion model's latents are s · μ(x); decode D(z / s)."),
            (D(z / s), "Clamp the decoded images to the data's range, `.clamp(-1, 1)`: the decoder can overshoot it."),
            (D(z * s), "z · s and no clamp: decode D(z / s), then `.clamp(-1, 1)`."),
            (D(z), "The scale and the clamp are missing: D(z / s), then `.clamp(-1, 1)`."),
            ((D(z) / s).clamp(-1, 1), "Divide the latents by s before decoding, not the image after: D(z / s)."),
            ((D(z) * s).clamp(-1, 1), "Divide the latents by s before decoding: D(z / s), not s · D(z)."),
            (D((z / s).clamp(-1, 1)), "Clamp the decoded image, not the latents: latents are not bounded, pixels are."),
            (D(z / s).clamp(0, 1), "The images live in [−1, 1]: `.clamp(-1, 1)`, not (0, 1)."),
            (torch.tanh(D(z / s)), "Clamp to [−1, 1], `.clamp(-1, 1)`: tanh also changes the pixels inside the range."),
        ], f"With s = {s}, yours differs from D(z / s).clamp(-1, 1) (max |difference| {_maxdiff(got, want)}).")
