"""Denoisers: shapes for several configurations, conditioning that matters, the model contract's errors."""
import pytest
import torch

import diffusion_edu as de
from diffusion_edu.nets.unet import ResBlock, SelfAttention


@pytest.mark.parametrize("kw, shape", [
    (dict(), (3, 1, 8, 8)),
    (dict(channels=(16, 32), attention_levels=()), (2, 1, 8, 8)),
    (dict(in_channels=3, channels=(16, 32, 32), num_res_blocks=2, attention_levels=(1, 2), heads=4), (2, 3, 16, 16)),
    (dict(channels=(8, 16, 16, 32), attention_levels=(3,), groups=4), (1, 1, 32, 32)),
    (dict(num_classes=10, dropout=0.1), (4, 1, 8, 8)),
])
def test_unet_output_shape_and_parameter_count(kw, shape, record_property):
    torch.manual_seed(0)
    model = de.UNet(**kw)
    out = model(torch.randn(shape), torch.randint(0, 1000, (shape[0],)))
    assert out.shape == shape
    n = de.count_parameters(model)
    record_property("parameters", n)
    assert 10_000 < n < 5_000_000


def test_default_unet_size_is_reported():
    """The digits U-Net: 1.19 M parameters. A change here moves every timing in docs/BENCHMARKS.md."""
    assert de.count_parameters(de.UNet()) == 1_191_233


def test_unet_starts_as_zero_predictor_and_time_matters_after_a_step():
    torch.manual_seed(0)
    model = de.UNet(channels=(16, 32), attention_levels=(1,))
    x = torch.randn(4, 1, 8, 8)
    assert model(x, 5).abs().max() == 0  # zero-initialised output convolution
    for m in model.modules():  # leave the zero-init regime so the test can see t and y
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1)
    assert not torch.allclose(model(x, 5), model(x, 500))


def test_conditioning_changes_the_output():
    torch.manual_seed(0)
    for model, x in [(de.UNet(channels=(16, 32), num_classes=10), torch.randn(2, 1, 8, 8)),
                     (de.MLPDenoiser(num_classes=3), torch.randn(2, 2))]:
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.normal_(m.weight, std=0.2)
        t = torch.tensor([100, 100])
        y0, y1 = torch.tensor([0, 0]), torch.tensor([1, 1])
        assert not torch.allclose(model(x, t, y0), model(x, t, y1))
        torch.testing.assert_close(model(x, t, None), model(x, t, torch.full((2,), model.num_classes)))


def test_model_contract_errors_name_the_argument():
    unet, mlp = de.UNet(channels=(16, 32)), de.MLPDenoiser()
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, H, W\)"):
        unet(torch.randn(1, 8, 8), 0)
    with pytest.raises(ValueError, match="divisible by 2"):
        unet(torch.randn(1, 1, 7, 7), 0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        mlp(torch.randn(4, 3), 0)
    with pytest.raises(ValueError, match="y was given but this model is unconditional"):
        mlp(torch.randn(4, 2), 0, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="t must be a scalar or have shape"):
        mlp(torch.randn(4, 2), torch.zeros(3))
    cond = de.MLPDenoiser(num_classes=3)
    with pytest.raises(ValueError, match=r"y must be in \[0, 3\]"):
        cond(torch.randn(2, 2), 0, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="y must be integer labels"):
        cond(torch.randn(2, 2), 0, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="attention_levels"):
        de.UNet(channels=(16, 32), attention_levels=(2,))


def test_timestep_embedding_is_sinusoidal():
    t = torch.tensor([0, 1, 10])
    e = de.timestep_embedding(t, 8)
    assert e.shape == (3, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    torch.testing.assert_close(e[:, :4] ** 2 + e[:, 4:] ** 2, torch.ones(3, 4))  # cos² + sin² = 1
    assert e[2, 0] == pytest.approx(torch.cos(torch.tensor(10.0)).item())  # ω_0 = 1


def test_blocks_keep_shapes_and_start_as_identity():
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(SelfAttention(16, 8, heads=2)(x), x)  # zero-initialised projection
    block = ResBlock(16, 16, emb_dim=32, groups=8)
    torch.testing.assert_close(block(x, torch.randn(2, 32)), x)
