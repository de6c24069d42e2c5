"""Chapter 03's checks accept the reference and name each common mistake (the U-Net's pieces and v)."""
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import diffusion_edu as de
from diffusion_edu import checks
from diffusion_edu.nets.unet import ResBlock

from checking import assert_names_mistake


def not_done(*args, **kwargs):
    raise NotImplementedError()


# ------------------------------------------------------------------------------------ time embedding

def embedding(t, dim, max_period=10_000.0, *, layout="cos-sin", freqs=None):
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64)
    w = max_period ** (-i / half) if freqs is None else freqs(i, half, max_period)
    angles = t.double()[:, None] * w[None] if layout != "added" else t.double()[:, None] + w[None]
    if layout == "sin-cos":
        return torch.cat([angles.sin(), angles.cos()], -1)
    if layout == "interleaved":
        return torch.stack([angles.cos(), angles.sin()], -1).flatten(1)
    return torch.cat([angles.cos(), angles.sin()], -1)


def test_embedding_check_accepts_the_package_and_a_float64_version():
    assert checks.check_sinusoidal_embedding(de.timestep_embedding)
    assert checks.check_sinusoidal_embedding(embedding)
    assert checks.check_sinusoidal_embedding(not_done).status == "not done"


@pytest.mark.parametrize("wrong, message", [
    (lambda t, d, P=1e4: embedding(t, d, P, layout="sin-cos"), "halves are swapped"),
    (lambda t, d, P=1e4: embedding(t, d, P, layout="interleaved"), "interleaved"),
    (lambda t, d, P=1e4: embedding(t, d, P, freqs=lambda i, h, P: 1 - i / h), "not geometric"),
    (lambda t, d, P=1e4: embedding(t, d, P, freqs=lambda i, h, P: 1 / (1 + i)), "not geometric"),
    (lambda t, d, P=1e4: embedding(t, d, 1000.0), "max_period = 1000 instead of 10000"),
    (lambda t, d, P=1e4: embedding(t, d, 1e5), "fall too fast"),
    (lambda t, d, P=1e4: embedding(t, d, P, freqs=lambda i, h, P: P ** (-i / (h - 1))), "dim/2 − 1"),
    (lambda t, d, P=1e4: embedding(t, d, P, freqs=lambda i, h, P: P ** (-i / (2 * h))), "divides by dim instead"),
    (lambda t, d, P=1e4: embedding(t, d, P, freqs=lambda i, h, P: P ** (i / h)), "grow with i"),
    (lambda t, d, P=1e4: embedding(t, d, P, freqs=lambda i, h, P: P ** ((i + 1) / -h)), "starts at 1"),
    (lambda t, d, max_period=1e4: embedding(t, d), "ignores the max_period"),
    (lambda t, d, P=1e4: embedding(t, d, P, layout="added"), "At t = 0"),
    (lambda t, d, P=1e4: embedding(t, d, P)[:, :8], "should have shape"),
])
def test_embedding_check_names_each_mistake(wrong, message):
    assert_names_mistake(checks.check_sinusoidal_embedding, wrong, message)


def test_embedding_check_catches_a_hard_coded_dim():
    def fixed_half(t, dim, max_period=10_000.0):
        return embedding(t, 16, max_period)[:, list(range(dim // 2)) + list(range(8, 8 + dim // 2))]

    assert_names_mistake(checks.check_sinusoidal_embedding, fixed_half, "dim = 6")


# ------------------------------------------------------------------------------------ residual block

class Block(ResBlock):
    """The package block with its forward replaced by one of the mistakes (``mistake=None`` is correct)."""

    mistake = None

    def forward(self, x, emb):
        m = self.mistake
        h = self.conv1(self.norm1(x) if m == "no-silu-1" else F.silu(self.norm1(x)))
        e = emb if m == "no-silu-emb" else F.silu(emb)
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        if m == "swapped":
            scale, shift = shift, scale
        if m == "film-first":
            h = self.norm2(h * (1 + scale) + shift)
        elif m == "no-norm2":
            h = h * (1 + scale) + shift
        else:
            h = self.norm2(h) * (scale if m == "no-one" else 1 + scale) + shift
        h = self.conv2(h if m == "no-silu-2" else F.silu(h))
        return h if m == "no-skip" else h + self.skip(x)


def block_with(mistake):
    return type(f"Block_{mistake}", (Block,), {"mistake": mistake})


def test_resblock_check_accepts_the_package_block():
    assert checks.check_resblock_forward(ResBlock)
    assert checks.check_resblock_forward(block_with(None))

    class Todo(ResBlock):
        def forward(self, x, emb):
            raise NotImplementedError()

    assert checks.check_resblock_forward(Todo).status == "not done"


@pytest.mark.parametrize("mistake, message", [
    ("no-one", "h·(1 + scale) + shift; you used h·scale"),
    ("swapped", "Scale and shift are swapped"),
    ("film-first", "FiLM before norm2"),
    ("no-silu-emb", "SiLU to the embedding"),
    ("no-skip", "residual connection"),
    ("no-silu-2", "between FiLM and conv2"),
    ("no-silu-1", "between norm1 and conv1"),
    ("no-norm2", "skipped norm2"),
])
def test_resblock_check_names_each_mistake(mistake, message):
    assert_names_mistake(checks.check_resblock_forward, block_with(mistake), message)


def test_resblock_check_reports_changed_layers_and_unknown_errors():
    class Renamed(nn.Module):
        def __init__(self, c_in, c_out, emb_dim, groups):
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

        def forward(self, x, emb):
            return self.conv(x)

    assert_names_mistake(checks.check_resblock_forward, Renamed, "keep __init__ as given")

    class Doubled(ResBlock):
        def forward(self, x, emb):
            return 2 * super().forward(x, emb)

    assert_names_mistake(checks.check_resblock_forward, Doubled, "The order is")


# ----------------------------------------------------------------------------------------- attention

def attention(q, k, v, scale=None, dim=-1):
    d = q.shape[-1]
    return torch.softmax(q @ k.transpose(-1, -2) * (scale if scale is not None else 1 / math.sqrt(d)), dim=dim) @ v


def test_attention_check_accepts_the_reference():
    assert checks.check_attention(attention)
    assert checks.check_attention(F.scaled_dot_product_attention)
    assert checks.check_attention(not_done).status == "not done"


@pytest.mark.parametrize("wrong, message", [
    (lambda q, k, v: attention(q, k, v, scale=1.0), "forgot the 1/√d"),
    (lambda q, k, v: attention(q, k, v, scale=1 / q.shape[-1]), "divided by d instead of √d"),
    (lambda q, k, v: attention(q, k, v, scale=math.sqrt(q.shape[-1])), "multiplied by √d"),
    (lambda q, k, v: attention(q, k, v, scale=1 / math.sqrt(q.shape[-2])), "1/√N"),
    (lambda q, k, v: attention(q, k, v, dim=-2), "wrong axis"),
    (lambda q, k, v: torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1).transpose(-1, -2) @ v,
     "transposed the weights"),
    (lambda q, k, v: torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1), "attention weights"),
    (lambda q, k, v: attention(q, k, v) + 0.1, "differs from softmax"),
])
def test_attention_check_names_each_mistake(wrong, message):
    assert_names_mistake(checks.check_attention, wrong, message)


def test_attention_check_reports_a_crash_as_an_error():
    result = checks.check_attention(lambda q, k, v: torch.softmax(q @ k / math.sqrt(q.shape[-1]), -1) @ v)
    assert result.status == "error" and "RuntimeError" in result.message


# --------------------------------------------------------------------------------- v-parameterisation

def test_v_target_check_accepts_the_reference_and_agrees_with_the_package():
    def v_target(x0, eps, abar):
        return abar.sqrt() * eps - (1 - abar).sqrt() * x0

    assert checks.check_v_target_abar(v_target)
    assert checks.check_v_target_abar(not_done).status == "not done"
    schedule = de.cosine()
    t = torch.tensor([0, 400, 999])
    x0, eps = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    abar = schedule.alpha_bars[t].float().reshape(3, 1, 1, 1)
    torch.testing.assert_close(v_target(x0, eps, abar), de.v_target(x0, eps, t, schedule))


@pytest.mark.parametrize("wrong, message", [
    (lambda x0, e, a: (1 - a).sqrt() * x0 - a.sqrt() * e, "sign is flipped"),
    (lambda x0, e, a: a.sqrt() * x0 - (1 - a).sqrt() * e, "swapped x0 and ε"),
    (lambda x0, e, a: (1 - a).sqrt() * e - a.sqrt() * x0, "coefficients are swapped"),
    (lambda x0, e, a: a.sqrt() * e + (1 - a).sqrt() * x0, "needs a minus sign"),
    (lambda x0, e, a: a * e - (1 - a) * x0, "square roots"),
    (lambda x0, e, a: a.sqrt() * x0 + (1 - a).sqrt() * e, "That is x_t"),
    (lambda x0, e, a: e - x0, "differs from"),
])
def test_v_target_check_names_each_mistake(wrong, message):
    assert_names_mistake(checks.check_v_target_abar, wrong, message)


def test_eps_from_v_check_accepts_the_reference_and_agrees_with_the_package():
    def eps_from_v(x_t, v, abar):
        return (1 - abar).sqrt() * x_t + abar.sqrt() * v

    assert checks.check_eps_from_v_abar(eps_from_v)
    assert checks.check_eps_from_v_abar(not_done).status == "not done"
    schedule = de.cosine()
    t = torch.tensor([0, 400, 999])
    x_t, v = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    abar = schedule.alpha_bars[t].float().reshape(3, 1, 1, 1)
    torch.testing.assert_close(eps_from_v(x_t, v, abar), de.eps_from_v(x_t, t, v, schedule))


@pytest.mark.parametrize("wrong, message", [
    (lambda x, v, a: a.sqrt() * x - (1 - a).sqrt() * v, "returned x̂0"),
    (lambda x, v, a: (1 - a).sqrt() * x - a.sqrt() * v, "sign of the v term"),
    (lambda x, v, a: a.sqrt() * x + (1 - a).sqrt() * v, "coefficients are swapped"),
    (lambda x, v, a: (1 - a) * x + a * v, "square roots"),
    (lambda x, v, a: (x - a.sqrt() * v) / (1 - a).sqrt(), "v is not x0"),
    (lambda x, v, a: x - v, "does not recover the noise"),
])
def test_eps_from_v_check_names_each_mistake(wrong, message):
    assert_names_mistake(checks.check_eps_from_v_abar, wrong, message)
