"""Chapter 09: the KL autoencoder, the latent scale, the attribute judge and FD against its real floor, and the
shipped latent model against its two floors (the real one and the reconstruction floor).

Bars guard the shipped checkpoints (one fixed seed each; figures deterministic on a CPU) and sit ~10–20 % above
what they measure today; the chapter's goals (latent vs pixel at equal FD, three seeds) are the benchmark's.
"""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu import attributes, latent, pretrained
from diffusion_edu.data.shapes import shapes
from diffusion_edu.nets.autoencoder import Autoencoder, autoencoder_loss, kl_divergence, train_autoencoder


GENERATED_BAR = 2.2  # shapes-latent, DPM-Solver++ 20 steps, 500 samples: measured 1.88× (reconstruction floor 0.91×)


@pytest.fixture(scope="module")
def ae():
    return pretrained.load("shapes-autoencoder")


@pytest.fixture(scope="module")
def judge():
    return pretrained.load("shapes-classifier").model


def test_kl_is_the_closed_form_of_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(5, 4, 2, 2, generator=g), torch.randn(5, 4, 2, 2, generator=g)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(kl_divergence(mean, logvar), expected)
    assert kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0  # N(0, 1) against itself


def test_the_loss_is_reconstruction_plus_beta_kl_of_a_reparameterised_sample():
    torch.manual_seed(0)
    net = Autoencoder(channels=(8, 16, 16), z_channels=2)
    x = shapes("test", 4).images
    loss, recon, kl = autoencoder_loss(net, x, 0.5, torch.Generator().manual_seed(3))
    mean, logvar = net.encode(x)
    assert mean.shape == logvar.shape == (4, 2, 8, 8)
    z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(recon, (net.decode(z) - x).pow(2).flatten(1).sum(1).mean())
    torch.testing.assert_close(kl, kl_divergence(mean, logvar).mean())
    torch.testing.assert_close(loss, recon + 0.5 * kl)


def test_training_lowers_the_reconstruction_error():
    net = Autoencoder(channels=(8, 16, 16), z_channels=2)
    run = train_autoencoder(net, shapes("train", 256).images, beta=1e-3, steps=40, batch_size=32, lr=3e-3)
    first, last = sum(r for r, _ in run.losses[:5]) / 5, sum(r for r, _ in run.losses[-5:]) / 5
    assert last < 0.5 * first and not net.training


def test_bad_inputs_are_named():
    net = Autoencoder(channels=(8, 16, 16))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, H, W\) with H and W divisible by 4"):
        net.encode(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 4, h, w\)"):
        net.decode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="beta"):
        train_autoencoder(net, torch.zeros(4, 3, 32, 32), beta=-1.0, steps=1)
    with pytest.raises(ValueError, match="scale must be positive"):
        latent.encode(net, torch.zeros(1, 3, 32, 32), 0.0)


def test_the_scale_gives_unit_variance_and_cancels_in_the_round_trip(ae):
    x = shapes("train", 2000).images
    z = latent.encode(ae.model, x, ae.info["scale"])
    assert z.shape == (2000, 4, 8, 8)
    assert z.std().item() == pytest.approx(1.0, abs=0.03)  # the manifest's s was measured on 20000 scenes
    assert latent.latent_scale(ae.model, x) == pytest.approx(ae.info["scale"], rel=0.03)
    torch.testing.assert_close(latent.decode(ae.model, z[:16], ae.info["scale"]),
                               latent.decode(ae.model, latent.encode(ae.model, x[:16], 1.0), 1.0))


def test_the_shipped_autoencoder_reconstructs_fresh_scenes(ae):
    x = shapes("test", 500, seed=7).images
    rec = latent.decode(ae.model, latent.encode(ae.model, x, ae.info["scale"]), ae.info["scale"])
    psnr = 10 * torch.log10(4 / (rec - x).pow(2).flatten(1).mean(1))
    assert psnr.mean() > 33.0 and psnr.min() > 24.0  # measured 36.6 dB, worst scene 27.8 dB


def test_the_judge_reads_real_scenes_and_their_held_out_pairs():
    for name in ("shapes-classifier", "shapes-classifier-mlp"):
        ckpt = pretrained.load(name)
        for split in ("test", "held-out"):
            real = shapes(split, 500, seed=9)
            acc = attributes.attribute_accuracy(ckpt.model, real.images, real.labels)
            assert acc["layout"] > 0.99 and acc["colour0"] > 0.99  # both read layout and colour
            if name == "shapes-classifier":
                assert acc["scene"] > 0.98  # the ceiling of chapter 11's prompt accuracy


def test_fd_is_at_its_floor_for_real_scenes_and_far_above_for_wrong_ones(judge):
    floor = attributes.fd_floor(judge, 500)
    assert attributes.fd(judge, attributes.real_scenes(500, seed=8)) / floor == pytest.approx(1.0, abs=0.25)
    swapped = attributes.real_scenes(500, seed=8)[:, [2, 0, 1]]  # every colour changed, shapes intact
    assert attributes.fd_ratio(judge, swapped) > 5.0  # measured 24×
    with pytest.raises(ValueError, match="seed must be ≥ 1"):
        attributes.real_scenes(10, seed=0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, 32, 32\)"):
        attributes.fd(judge, torch.zeros(10, 1, 8, 8))


def test_the_shipped_latent_model_sits_between_its_floors(ae, judge):
    """Latent diffusion cannot beat its reconstruction floor; the shipped model is within a bar of it."""
    ckpt = pretrained.load("shapes-latent")
    assert ckpt.info["autoencoder_sha256"] == ae.info["sha256"]  # trained on this autoencoder's latents
    real = attributes.real_scenes(500, seed=6)
    s = ae.info["scale"]
    recon = attributes.fd_ratio(judge, latent.decode(ae.model, latent.encode(ae.model, real, s), s))
    z = de.sample(de.dpm_solver_pp, ckpt.eps_model, torch.randn(500, 4, 8, 8, generator=torch.Generator().manual_seed(0)),
                  ckpt.schedule, 20)
    generated = attributes.fd_ratio(judge, latent.decode(ae.model, z, s))
    assert recon < 1.3 and recon < generated < GENERATED_BAR
