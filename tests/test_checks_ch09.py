"""Chapter 09's checks: each accepts the reference and a learner-style solution, and names each usual mistake."""
import math

import numpy as np
import pytest
import torch

from diffusion_edu import checks, latent
from diffusion_edu.checks import ch09
from diffusion_edu.nets.autoencoder import Autoencoder, autoencoder_loss, kl_divergence

from checking import assert_names_mistake



def tiny_autoencoder() -> Autoencoder:
    """A seeded, untrained autoencoder on 8×8 images: enough to tie a reference to the package's code."""
    torch.manual_seed(0)
    return Autoencoder(channels=(8, 16), z_channels=2, groups=4).eval()

def not_done(*args):
    raise NotImplementedError()


# ------------------------------------------------------------------------------------------------ KL term

def kl_solution(mean, logvar):
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def kl_with(half=0.5, var=torch.exp, log_term=lambda lv: lv, one=-1, log_sign=-1, mu2=True, reduce="sum"):
    def fn(mean, logvar):
        terms = (mean**2 if mu2 else 0) + var(logvar) + one + log_sign * log_term(logvar)
        flat = terms.flatten(1)
        return half * (flat.sum(1) if reduce == "sum" else flat.mean(1))
    return fn


KL_MISTAKES = {
    "missing half": (kl_with(half=1.0), "Missing ½"),
    "minus KL": (kl_with(half=-0.5), "Overall sign"),
    "logvar as log std": (kl_with(var=lambda lv: (2 * lv).exp(), log_term=lambda lv: 2 * lv), "not log σ"),
    "variance squared": (kl_with(var=lambda lv: lv.exp() ** 2), "not log σ"),
    "log term doubled": (kl_with(log_term=lambda lv: 2 * lv), "already log σ²"),
    "std for variance": (kl_with(var=lambda lv: (0.5 * lv).exp()), "exp(½ logvar), which is σ"),
    "mean over entries": (kl_with(reduce="mean"), "averaged over the latent entries"),
    "sign of the one": (kl_with(one=1), "Sign of the 1"),
    "sign of log sigma^2": (kl_with(log_sign=1), "Sign of log σ²"),
    "no mean term": (kl_with(mu2=False), "mean's term is missing"),
    "scalar: batch mean": (lambda m, lv: kl_solution(m, lv).mean(), "you returned the mean over the batch"),
    "scalar: batch sum": (lambda m, lv: kl_solution(m, lv).sum(), "you returned the sum over the batch"),
    "python float": (lambda m, lv: kl_solution(m, lv).mean().item(), "Return one KL per example"),
    "not reduced": (lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv), "one value per latent entry"),
    "last dimension only": (lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv).sum(-1), "got shape (6, 4, 3)"),
    "garbage": (lambda m, lv: "KL", "should be a torch.Tensor"),
    "nan": (lambda m, lv: kl_solution(m, lv) * float("nan"), "NaN or inf"),
}


def test_kl_check_accepts_the_reference_and_a_solution():
    assert checks.check_kl_divergence(kl_divergence)
    assert checks.check_kl_divergence(kl_solution)
    assert checks.check_kl_divergence(lambda m, lv: kl_solution(m.float(), lv.float()))  # float32
    assert checks.check_kl_divergence(  # summed over the dimensions one at a time
        lambda m, lv: -0.5 * torch.sum(1 + lv - m.pow(2) - lv.exp(), dim=(1, 2, 3)))


@pytest.mark.parametrize("name", KL_MISTAKES)
def test_kl_check_names_each_mistake(name):
    assert_names_mistake(checks.check_kl_divergence, *KL_MISTAKES[name])


def test_kl_is_zero_at_the_prior_and_is_the_autoencoders_term():
    """KL(N(0, I) ‖ N(0, I)) = 0, KL ≥ 0, and autoencoder_loss's KL term is its batch mean."""
    zeros = torch.zeros(3, 4, 2, 2)
    torch.testing.assert_close(kl_divergence(zeros, zeros), torch.zeros(3))
    mean, logvar = ch09._gaussian(0)
    assert (kl_divergence(mean, logvar) >= 0).all()
    ae = tiny_autoencoder()
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    _, _, kl = autoencoder_loss(ae, x, beta=1e-3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(kl, kl_solution(*ae.encode(x)).mean())


# ------------------------------------------------------------------------------------------ reparameterise

def reparameterise_solution(mean, logvar, eps):
    return mean + torch.exp(0.5 * logvar) * eps


REPARAMETERISE_MISTAKES = {
    "variance for std": (lambda m, lv, e: m + lv.exp() * e, "exp(logvar) is the variance"),
    "sigma = logvar": (lambda m, lv, e: m + lv * e, "logvar is log σ², not σ:"),
    "sign of the exponent": (lambda m, lv, e: m + (-0.5 * lv).exp() * e, "exp(−½ logvar) is 1/σ"),
    "forgot the mean": (lambda m, lv, e: (0.5 * lv).exp() * e, "Forgot μ"),
    "eps unscaled": (lambda m, lv, e: m + e, "you added it unscaled"),
    "sigma on the mean": (lambda m, lv, e: m * (0.5 * lv).exp() + e, "σ multiplies the noise"),
    "own noise": (lambda m, lv, e: reparameterise_solution(m, lv, torch.randn_like(m)), "different z each call"),
    "flattened": (lambda m, lv, e: reparameterise_solution(m, lv, e).flatten(1), "shape"),
    "garbage": (lambda m, lv, e: None, "should be a torch.Tensor"),
}


def test_reparameterise_check_accepts_the_reference_and_a_solution():
    assert checks.check_reparameterise(reparameterise_solution)
    assert checks.check_reparameterise(lambda m, lv, e: m + lv.mul(0.5).exp() * e)
    assert checks.check_reparameterise(lambda m, lv, e: torch.addcmul(m, torch.sqrt(torch.exp(lv)), e).float())


@pytest.mark.parametrize("name", REPARAMETERISE_MISTAKES)
def test_reparameterise_check_names_each_mistake(name):
    assert_names_mistake(checks.check_reparameterise, *REPARAMETERISE_MISTAKES[name])


def test_reparameterise_is_how_the_autoencoder_samples():
    """Autoencoder.forward decodes μ + exp(½ log σ²) ε with ε its generator's first draw."""
    ae = tiny_autoencoder()
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        x_hat, mean, logvar = ae(x, torch.Generator().manual_seed(1))
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(ae.decode(reparameterise_solution(mean, logvar, eps)), x_hat)


# ------------------------------------------------------------------------------------------- latent scale

def scale_solution(latents):
    return 1 / latents.std().item()


SCALE_MISTAKES = {
    "std, not 1/std": (lambda z: z.std().item(), "That is the std itself"),
    "1/variance": (lambda z: 1 / z.var().item(), "1 / variance"),
    "variance": (lambda z: z.var().item(), "That is the variance"),
    "1/max|z|": (lambda z: 1 / z.abs().max().item(), "1 / max |z|"),
    "root mean square": (lambda z: 1 / z.pow(2).mean().sqrt().item(), "root mean square"),
    "biased std": (lambda z: 1 / np.std(z.numpy()), "biased std"),
    "per-channel std": (lambda z: 1 / z.std(dim=(0, 2, 3)), "one scale per channel"),
    "per-channel, keepdim": (lambda z: 1 / z.std(dim=(0, 2, 3), keepdim=True), "one scale per channel"),
    "per-example std": (lambda z: 1 / z.flatten(1).std(1), "one scale per example"),
    "mean of per-channel scales": (lambda z: (1 / z.std(dim=(0, 2, 3))).mean().item(), "mean of per-channel scales"),
    "mean of per-channel stds": (lambda z: 1 / z.std(dim=(0, 2, 3)).mean().item(), "mean of per-channel stds"),
    "garbage": (lambda z: "s", "Return one number"),
    "infinite": (lambda z: float("inf"), "finite positive number"),
}


def test_scale_check_accepts_the_reference_and_a_solution():
    assert checks.check_latent_scale(scale_solution)
    assert checks.check_latent_scale(lambda z: 1 / z.std())  # a 0-d tensor is one number too
    assert checks.check_latent_scale(lambda z: 1 / z.float().flatten().std(unbiased=True).item())  # float32
    assert checks.check_latent_scale(lambda z: 1 / np.std(z.numpy(), ddof=1))


@pytest.mark.parametrize("name", SCALE_MISTAKES)
def test_scale_check_names_each_mistake(name):
    assert_names_mistake(checks.check_latent_scale, *SCALE_MISTAKES[name])


def test_the_scale_is_the_packages_and_gives_unit_std_latents():
    """latent.latent_scale is 1 / std of the encoder's means, and latent.encode's latents then have std 1."""
    ae = tiny_autoencoder()
    x = torch.rand(20, 3, 8, 8) * 2 - 1
    s = latent.latent_scale(ae, x, batch_size=7)
    with torch.no_grad():
        assert math.isclose(s, scale_solution(ae.encode(x)[0]), rel_tol=1e-6)
    assert math.isclose(latent.encode(ae, x, s).std().item(), 1.0, rel_tol=1e-5)


# -------------------------------------------------------------------------------------- effective log-SNR

def effective_solution(log_snr, data_std):
    return log_snr + 2 * math.log(data_std)


EFFECTIVE_MISTAKES = {
    "log c, no 2": (lambda l, c: l + math.log(c), "half the log-SNR"),
    "minus 2 log c": (lambda l, c: l - 2 * math.log(c), "Sign"),
    "minus log c": (lambda l, c: l - math.log(c), "Sign and factor"),
    "plus c^2": (lambda l, c: l + c**2, "you added c² itself"),
    "times c^2": (lambda l, c: l * c**2, "not its log"),
    "plus 2c": (lambda l, c: l + 2 * c, "Forgot the log"),
    "log10": (lambda l, c: l + 2 * math.log10(c), "Natural log"),
    "one number": (lambda l, c: 2 * math.log(c), "got one number"),
    "garbage": (lambda l, c: [2 * math.log(c)], "should be a torch.Tensor"),
    "wrong shape": (lambda l, c: effective_solution(l, c)[:-1], "shape"),
}


def test_effective_check_accepts_the_reference_and_a_solution():
    assert checks.check_effective_log_snr(ch09.effective_log_snr)
    assert checks.check_effective_log_snr(effective_solution)
    assert checks.check_effective_log_snr(lambda l, c: torch.log(l.exp() * c**2))
    assert checks.check_effective_log_snr(lambda l, c: (l + math.log(c**2)).float())


@pytest.mark.parametrize("name", EFFECTIVE_MISTAKES)
def test_effective_check_names_each_mistake(name):
    assert_names_mistake(checks.check_effective_log_snr, *EFFECTIVE_MISTAKES[name])


def test_the_effective_snr_is_the_measured_snr_of_scaled_data():
    """x_t = α z + σ ε with std(z) = c: the measured Var(α z)/Var(σ ε) is exp(λ + 2 log c), λ = log(α²/σ²)."""
    g = torch.Generator().manual_seed(0)
    z = 0.3 * torch.randn(200_000, generator=g, dtype=torch.float64)
    abar = 0.7
    alpha, sigma = math.sqrt(abar), math.sqrt(1 - abar)
    measured = (alpha * z).var() / sigma**2
    want = ch09.effective_log_snr(torch.tensor(math.log(abar / (1 - abar)), dtype=torch.float64), z.std().item()).exp()
    assert math.isclose(measured.item(), want.item(), rel_tol=1e-9)


# ------------------------------------------------------------------------------------------ decode latents

def decode_solution(decoder, z, scale):
    return decoder(z / scale).clamp(-1, 1)


DECODE_MISTAKES = {
    "z times s": (lambda d, z, s: d(z * s).clamp(-1, 1), "undo the scale"),
    "no division": (lambda d, z, s: d(z).clamp(-1, 1), "The scale is missing"),
    "no clamp": (lambda d, z, s: d(z / s), "Clamp the decoded images"),
    "z times s, no clamp": (lambda d, z, s: d(z * s), "z · s and no clamp"),
    "nothing": (lambda d, z, s: d(z), "The scale and the clamp are missing"),
    "image divided": (lambda d, z, s: (d(z) / s).clamp(-1, 1), "not the image after"),
    "image multiplied": (lambda d, z, s: (d(z) * s).clamp(-1, 1), "not s · D(z)"),
    "latent clamped": (lambda d, z, s: d((z / s).clamp(-1, 1)), "not the latents"),
    "clamp to [0, 1]": (lambda d, z, s: d(z / s).clamp(0, 1), "not (0, 1)"),
    "tanh": (lambda d, z, s: torch.tanh(d(z / s)), "tanh also changes"),
    "latents returned": (lambda d, z, s: z / s, "shape"),
    "garbage": (lambda d, z, s: 0.0, "should be a torch.Tensor"),
}


def test_decode_check_accepts_the_reference_and_a_solution():
    assert checks.check_decode_latents(decode_solution)
    assert checks.check_decode_latents(lambda d, z, s: torch.clamp(d(z * (1 / s)), min=-1.0, max=1.0).float())


@pytest.mark.parametrize("name", DECODE_MISTAKES)
def test_decode_check_names_each_mistake(name):
    assert_names_mistake(checks.check_decode_latents, *DECODE_MISTAKES[name])


def test_the_checks_decoder_leaves_the_data_range_so_the_clamp_matters():
    z = torch.randn(5, 2, 3, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert ch09._TinyDecoder()(z / 0.4).abs().max() > 1.5


def test_reference_decode_is_the_packages():
    ae = tiny_autoencoder()
    z = 3 * torch.randn(4, 2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(latent.decode(ae, z, 0.5, batch_size=3), decode_solution(ae.decode, z, 0.5))


# --------------------------------------------------------------------------------------------- common

@pytest.mark.parametrize("check", [checks.check_kl_divergence, checks.check_reparameterise, checks.check_latent_scale,
                                   checks.check_effective_log_snr, checks.check_decode_latents])
def test_unfinished_is_not_done_and_a_crash_is_an_error(check):
    assert check(not_done).status == "not done"
    result = check(lambda *args: 1 / 0)
    assert result.status == "error" and "ZeroDivisionError" in result.message
