"""The diffusion transformer (chapter 10): patches and positions, adaLN-Zero's identity start, every
conditioning variant under the model contract, a short training run and the samplers end to end."""
import math

import pytest
import torch

import diffusion_edu as de
from diffusion_edu.nets import DiT
from diffusion_edu.nets.dit import (AdaLNBlock, AdaLNDiT, AdaLNZeroBlock, CrossAttentionDiT, InContextDiT, patchify,
                                    sincos_2d, unpatchify)

VARIANTS = [DiT, AdaLNDiT, CrossAttentionDiT, InContextDiT]


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Leave the zero-init regime (every weight drawn afresh) so that t and y can be seen in the output."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.2)
            torch.nn.init.normal_(m.bias, std=0.2)
    return model


@pytest.mark.parametrize("shape, p", [((2, 1, 8, 8), 1), ((2, 1, 8, 8), 2), ((2, 1, 8, 8), 8),
                                      ((3, 4, 8, 12), 2), ((3, 4, 8, 12), 4), ((1, 3, 6, 9), 3)])
def test_unpatchify_inverts_patchify_exactly(shape, p):
    x = torch.randn(shape)
    B, C, H, W = shape
    tokens = patchify(x, p)
    assert tokens.shape == (B, (H // p) * (W // p), p * p * C)
    assert torch.equal(unpatchify(tokens, p, C, H, W), x)
    assert torch.equal(patchify(unpatchify(tokens, p, C, H, W), p), tokens)


def test_token_k_holds_exactly_the_pixels_of_patch_k():
    x = torch.randn(2, 3, 8, 12)
    p, i, j = 4, 1, 2  # patch row 1, column 2 of a 2 × 3 grid: token k = i · (W/p) + j = 5
    assert torch.equal(patchify(x, p)[:, i * 3 + j], x[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(2, -1))


def test_a_linear_map_of_the_tokens_is_a_strided_convolution():
    """The patch embedding: Linear(p²C → D) on patchify(x) = Conv2d(C → D, kernel = stride = p) on x."""
    torch.manual_seed(0)
    x, p, D = torch.randn(2, 3, 8, 12), 4, 16
    conv = torch.nn.Conv2d(3, D, p, stride=p)
    by_conv = conv(x).flatten(2).transpose(1, 2)  # (B, N, D), tokens in row-major order
    by_tokens = patchify(x, p) @ conv.weight.reshape(D, -1).T + conv.bias
    torch.testing.assert_close(by_tokens, by_conv)


def test_sincos_2d_is_the_1d_sinusoid_of_each_coordinate():
    width, gh, gw = 16, 3, 5
    e = sincos_2d(width, gh, gw)
    assert e.shape == (gh * gw, width)
    assert e.abs().max() <= 1
    assert torch.cdist(e, e).add(torch.eye(gh * gw)).min() > 0.1  # distinct rows: every token its own position
    i, j, m = 2, 3, 1  # token k = i · gw + j; feature 3·width/4 + m is sin(j ω_m), ω_m = 10000^(−m/(width/4))
    assert e[i * gw + j, 3 * width // 4 + m].item() == pytest.approx(math.sin(j * 10_000 ** (-m / (width // 4))))
    assert e[i * gw + j, m].item() == pytest.approx(math.cos(i * 10_000 ** (-m / (width // 4))))
    rows = e[:, : width // 2].reshape(gh, gw, -1)
    assert torch.equal(rows, rows[:, :1].expand_as(rows))  # the first half sees only the row i


def test_adaln_zero_starts_as_the_identity_and_adaln_does_not():
    torch.manual_seed(0)
    h, cond = torch.randn(3, 16, 32), torch.randn(3, 2, 32)
    assert torch.equal(AdaLNZeroBlock(32, 4)(h, cond), h)  # every gate α = 0: exactly the identity
    assert not torch.allclose(AdaLNBlock(32, 4)(h, cond), h, atol=1e-2)
    model = DiT(width=32, depth=3, num_classes=10)
    assert torch.equal(model.trunk(h, cond), h)  # so is the whole stack of blocks


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
def test_every_variant_predicts_exactly_zero_at_init(variant):
    model = variant(width=32, depth=2, num_classes=10)
    out = model(torch.randn(4, 1, 8, 8), torch.randint(0, 1000, (4,)), torch.tensor([0, 3, 9, 10]))
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised final linear layer


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
@pytest.mark.parametrize("num_classes", [None, 10])
@pytest.mark.parametrize("shape, p", [((2, 1, 8, 8), 2), ((2, 4, 8, 8), 2), ((1, 3, 12, 8), 4)])
def test_output_shape_is_the_input_shape(variant, num_classes, shape, p):
    model = perturbed(variant(in_channels=shape[1], patch_size=p, width=32, depth=2, num_classes=num_classes))
    y = None if num_classes is None else torch.randint(0, num_classes, (shape[0],))
    out = model(torch.randn(shape), torch.randint(0, 1000, (shape[0],)), y)
    assert out.shape == shape and torch.isfinite(out).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
def test_time_and_labels_change_the_output_and_the_null_class_is_y_none(variant):
    model = perturbed(variant(width=32, depth=2, num_classes=10))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([100, 100])
    y0, y1 = torch.tensor([0, 0]), torch.tensor([1, 1])
    assert not torch.allclose(model(x, t, y0), model(x, t, y1))
    assert not torch.allclose(model(x, t, y0), model(x, t + 400, y0))
    torch.testing.assert_close(model(x, t, None), model(x, t, torch.full((2,), 10)))
    guided = de.cfg(model, 1.0)  # ε̃ = 2 ε(x, t, y) − ε(x, t, ∅)
    torch.testing.assert_close(guided(x, t, y0), 2 * model(x, t, y0) - model(x, t, None))


def test_a_short_training_run_lowers_the_loss(record_property):
    """150 steps on the 8 × 8 digits (patch 2, 16 tokens, width 32), labels dropped 10% of the time: ~4 s."""
    torch.manual_seed(0)
    x, y = de.data.digits("train")
    result = de.train(DiT(width=32, depth=2, num_classes=10), x, de.linear(), steps=150, batch_size=128,
                      labels=y, p_uncond=0.1, progress=False)
    first, last = sum(result.losses[:20]) / 20, sum(result.losses[-20:]) / 20
    record_property("loss", (round(first, 3), round(last, 3)))
    assert last < 0.5 * first  # measured: 0.98 → 0.20


def test_samplers_run_end_to_end_on_a_dit():
    model = perturbed(DiT(width=32, depth=1, num_classes=10)).eval()
    schedule = de.linear()
    eps_model = de.parameterisations.as_eps_model(model, schedule, de.parameterisations.X0)
    y = torch.tensor([0, 1, 2, 3])
    for net in (eps_model, de.cfg(eps_model, 2.0)):
        x = de.sample(de.ddim, net, torch.randn(4, 1, 8, 8), schedule, 5, y=y)
        assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()


def test_bad_inputs_name_the_argument():
    model = DiT(width=32, patch_size=2)
    with pytest.raises(ValueError, match=r"x must have shape .* divisible by the patch size p = 2"):
        model(torch.randn(1, 1, 7, 8), 0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, H, W\)"):
        model(torch.randn(1, 3, 8, 8), 0)
    with pytest.raises(ValueError, match="y was given but this model is unconditional"):
        model(torch.randn(1, 1, 8, 8), 0, torch.tensor([1]))
    with pytest.raises(ValueError, match=r"y must be in \[0, 10\]"):
        DiT(width=32, num_classes=10)(torch.randn(1, 1, 8, 8), 0, torch.tensor([11]))
    with pytest.raises(ValueError, match=r"width must be divisible by heads \(4\)"):
        DiT(width=30, heads=4)
    with pytest.raises(ValueError, match="by 4"):
        DiT(width=18, heads=3)
    with pytest.raises(ValueError, match="patch_size and depth must be ≥ 1"):
        DiT(patch_size=0)
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, 16, 4\)"):
        unpatchify(torch.randn(1, 16, 8), 2, 1, 8, 8)
    with pytest.raises(ValueError, match="width must be a multiple of 4"):
        sincos_2d(6, 2, 2)
