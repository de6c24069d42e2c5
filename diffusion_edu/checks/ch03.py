"""Checks of chapter 03 (the U-Net): the sinusoidal time embedding, a residual block's forward with FiLM,
scaled dot-product attention, and the v-parameterisation (Salimans & Ho 2022, §4).

Each check runs the learner's code on random inputs, compares it with the package (``nn.timestep_embedding``,
``unet.ResBlock``) or a closed form, and on a mismatch tries the common mistakes one by one, so the message
names the one that was made.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import CheckFailed, checker, close, expect, expect_tensor
from .mistakes import diagnose
from ..nets import timestep_embedding
from ..nets.unet import ResBlock

__all__ = ["check_sinusoidal_embedding", "check_resblock_forward", "check_attention", "check_v_target_abar",
           "check_eps_from_v_abar"]


def _first_match(out: Tensor, variants: dict[str, Tensor], atol: float = 1e-4) -> None:
    """Fail with the message of the first variant that ``out`` equals (``mistakes.diagnose``); else return."""
    diagnose(out, [(value, message) for message, value in variants.items()], rtol=1e-3, atol=atol)


# ------------------------------------------------------------------------------------ time embedding

def _embedding(t: Tensor, freqs: Tensor, layout: str = "cos-sin") -> Tensor:
    angles = t.double()[:, None] * freqs[None]  # (B, half)
    if layout == "sin-cos":
        return torch.cat([angles.sin(), angles.cos()], dim=-1)
    if layout == "interleaved":
        return torch.stack([angles.cos(), angles.sin()], dim=-1).flatten(1)
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def _frequencies(out: Tensor) -> Tensor:
    """The ω_i of a [cos(t ω), sin(t ω)] embedding evaluated at t = 1 (angles in (−π, π])."""
    half = out.shape[-1] // 2
    return torch.atan2(out[0, half:].double(), out[0, :half].double())


@checker("sinusoidal_embedding")
def check_sinusoidal_embedding(sinusoidal_embedding) -> None:
    """``sinusoidal_embedding(t, dim, max_period=10000.)`` returns [cos(t ω_i), sin(t ω_i)], ω_i = P^(−i/(dim/2))."""
    g = torch.Generator().manual_seed(3)
    t = torch.cat([torch.tensor([0, 1, 7, 50, 999]), torch.randint(0, 1000, (5,), generator=g)])
    dim, P = 16, 10_000.0
    half = dim // 2
    out = expect_tensor(sinusoidal_embedding(t, dim), (len(t), dim), f"sinusoidal_embedding(t, {dim})")
    expect(out.is_floating_point(), f"the embedding should be floating point, got dtype {out.dtype}.")
    ref = timestep_embedding(t, dim).double()
    if not close(out, ref, rtol=1e-3, atol=1e-4):
        i = torch.arange(half, dtype=torch.float64)
        freqs = P ** (-i / half)
        _first_match(out, {
            "The two halves are swapped: the first half should be cos(t·ω_i) and the second sin(t·ω_i) "
            "(at t = 0 the first half is all ones).": _embedding(t, freqs, "sin-cos"),
            "You interleaved cos and sin (cos, sin, cos, sin, …): put all the cosines first, then all the "
            "sines, torch.cat([cos, sin], dim=-1), as the package does.": _embedding(t, freqs, "interleaved"),
            "Your frequencies grow with i (a wrong sign in the exponent, or t divided by ω_i): the angle is "
            "t·ω_i with ω_i = max_period^(−i/(dim/2)), falling from 1 to about 1/max_period.":
                _embedding(t, 1 / freqs),
            "Your exponent divides by dim/2 − 1 instead of dim/2: use ω_i = max_period^(−i/(dim/2)), "
            "i = 0 … dim/2 − 1 (the package's convention, Vaswani et al. 2017 §3.5).":
                _embedding(t, P ** (-i / (half - 1))),
            "Your exponent divides by dim instead of dim/2: use ω_i = max_period^(−i/(dim/2)) with "
            "i = 0 … dim/2 − 1.": _embedding(t, P ** (-i / dim)),
            "Your index i starts at 1: the first frequency must be ω_0 = max_period^0 = 1 (i = 0 … dim/2 − 1).":
                _embedding(t, P ** (-(i + 1) / half)),
        })
        expect(close(out[0, :half], torch.ones(half), atol=1e-4) and close(out[0, half:], torch.zeros(half),
                                                                            atol=1e-4),
               "At t = 0 every angle is 0, so the first half (cosines) should be all 1 and the second (sines) "
               "all 0; yours is not. Is t multiplied into the angles?")
        omega = _frequencies(sinusoidal_embedding(torch.tensor([1]), dim))  # ω_i, read off at t = 1
        steps = omega[1:] / omega[:-1]
        expect(abs(float(omega[0]) - 1) < 1e-3, f"The first frequency should be ω_0 = 1; yours is "
                                                f"{float(omega[0]):.4f}.")
        expect(float(steps.std()) < 1e-3 * float(steps.mean().abs()),
               "Your frequencies are not geometric: each ω_(i+1) should be ω_i times the same factor, "
               "ω_i = max_period^(−i/(dim/2)); yours are " + ", ".join(f"{w:.3f}" for w in omega[:4].tolist())
               + ", … (evenly spaced instead?).")
        effective = float(steps.mean()) ** (-half)  # the max_period that would give this common ratio
        raise CheckFailed(f"Your frequencies are geometric but fall too {'fast' if effective > P else 'slowly'}: "
                          f"they match max_period = {effective:.4g} instead of {P:.0f}. Use "
                          "ω_i = max_period^(−i/(dim/2)) with the max_period argument.")
    small = sinusoidal_embedding(t, dim, max_period=100.0)
    expect(close(small, timestep_embedding(t, dim, max_period=100.0).double(), rtol=1e-3, atol=1e-4),
           "Your function is right for the default max_period = 10000 but ignores the max_period argument: "
           "use it in ω_i = max_period^(−i/(dim/2)).")
    wide = expect_tensor(sinusoidal_embedding(t, 6), (len(t), 6), "sinusoidal_embedding(t, 6)")
    expect(close(wide, timestep_embedding(t, 6).double(), rtol=1e-3, atol=1e-4),
           "Right for dim = 16 but not for dim = 6: compute half = dim // 2 from the argument.")


# ------------------------------------------------------------------------------------ residual block

def _resblock_variants(ref: ResBlock, x: Tensor, emb: Tensor) -> dict[str, Tensor]:
    """The reference output with one common mistake each, keyed by the message that names it."""
    h = ref.conv1(F.silu(ref.norm1(x)))
    scale, shift = ref.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
    scale_raw, shift_raw = ref.film(emb)[:, :, None, None].chunk(2, dim=1)
    tail = lambda z: ref.conv2(F.silu(z)) + ref.skip(x)  # noqa: E731
    n = ref.norm2(h)
    return {
        "FiLM should be h·(1 + scale) + shift; you used h·scale + shift. With the plain product a scale of 0 "
        "(what an untrained film layer gives) wipes the features out, while 1 + scale starts as the identity.":
            tail(n * scale + shift),
        "Scale and shift are swapped: the first half of self.film(silu(emb)) is the scale, the second the "
        "shift (scale, shift = ….chunk(2, dim=1)).": tail(n * (1 + shift) + scale),
        "You applied FiLM before norm2: GroupNorm then normalises away the shift and scale you just added. "
        "Normalise first, then modulate: norm2(h)·(1 + scale) + shift.": tail(ref.norm2(h * (1 + scale) + shift)),
        "Apply SiLU to the embedding before the film layer: self.film(F.silu(emb)).":
            tail(n * (1 + scale_raw) + shift_raw),
        "You forgot the residual connection: return h + self.skip(x).": ref.conv2(F.silu(n * (1 + scale) + shift)),
        "The SiLU between FiLM and conv2 is missing: h = conv2(dropout(silu(h))).":
            ref.conv2(n * (1 + scale) + shift) + ref.skip(x),
        "The SiLU between norm1 and conv1 is missing: h = conv1(silu(norm1(x))).":
            tail(ref.norm2(ref.conv1(ref.norm1(x))) * (1 + scale) + shift),
        "You skipped norm2: the FiLM acts on norm2(h), the normalised output of conv1.": tail(h * (1 + scale) + shift),
    }


def _randomised_resblock(c_in: int, c_out: int, emb_dim: int, groups: int, seed: int) -> ResBlock:
    """A package ResBlock with every weight random (its conv2 starts at zero, which would hide mistakes)."""
    ref = ResBlock(c_in, c_out, emb_dim, groups).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            base = 1.0 if name.startswith("norm") and name.endswith("weight") else 0.0  # GroupNorm gains near 1
            p.copy_(base + 0.3 * torch.randn(p.shape, generator=g))
    return ref


@checker("resblock_forward")
def check_resblock_forward(block_class) -> None:
    """``block_class(c_in, c_out, emb_dim, groups)`` with the given ``__init__`` computes the package ResBlock."""
    g = torch.Generator().manual_seed(0)
    for c_in, c_out in ((8, 16), (16, 16)):
        ref = _randomised_resblock(c_in, c_out, 12, 4, seed=c_in)
        block = block_class(c_in, c_out, 12, 4).eval()
        try:
            block.load_state_dict(ref.state_dict())
        except RuntimeError as err:
            raise CheckFailed("Your class's layers differ from the skeleton's (keep __init__ as given, write only "
                              f"forward): {str(err).splitlines()[0]}") from None
        x, emb = torch.randn(3, c_in, 5, 5, generator=g), torch.randn(3, 12, generator=g)
        with torch.no_grad():
            out = expect_tensor(block(x, emb), (3, c_out, 5, 5), f"forward(x, emb) with c_in={c_in}, c_out={c_out}")
            if close(out, ref(x, emb), rtol=1e-4, atol=1e-4):
                continue
            _first_match(out, _resblock_variants(ref, x, emb))
            delta = float((out - ref(x, emb)).abs().max())
        raise CheckFailed(f"Your output differs from the reference block (max |Δ| = {delta:.3g}, c_in={c_in}, "
                          f"c_out={c_out}). The order is: norm1 → SiLU → conv1 → norm2 → FiLM h·(1 + scale) + "
                          "shift with (scale, shift) from film(silu(emb)) → SiLU → dropout → conv2, then + skip(x).")


# ----------------------------------------------------------------------------------------- attention

@checker("attention")
def check_attention(attention) -> None:
    """``attention(q, k, v)`` = softmax(q kᵀ / √d) v over the last two axes, (…, N, d) → (…, N, d_v)."""
    g = torch.Generator().manual_seed(1)
    B, heads, N, d, d_v = 2, 3, 7, 5, 6  # N ≠ d ≠ d_v, so a transposed product shows up in the shape
    q, k, v = (torch.randn(B, heads, N, n, generator=g) * 1.5 for n in (d, d, d_v))
    out = attention(q, k, v)
    expect(not (hasattr(out, "shape") and tuple(out.shape) == (B, heads, N, N)),
           "You returned the attention weights (…, N, N): multiply them by v to get the output (…, N, d_v).")
    out = expect_tensor(out, (B, heads, N, d_v), "attention(q, k, v)")
    logits = q @ k.transpose(-1, -2)  # (B, heads, N, N)
    ref = torch.softmax(logits / math.sqrt(d), dim=-1) @ v
    if close(out, ref, rtol=1e-4, atol=1e-5):
        return
    _first_match(out, {
        "You forgot the 1/√d scaling: q·k sums d products, so its spread grows like √d and the softmax "
        "saturates; use softmax(q kᵀ / √d).": torch.softmax(logits, dim=-1) @ v,
        "You divided by d instead of √d: softmax(q kᵀ / √d), with d = q.shape[-1].":
            torch.softmax(logits / d, dim=-1) @ v,
        "You multiplied by √d: divide, softmax(q kᵀ / √d).": torch.softmax(logits * math.sqrt(d), dim=-1) @ v,
        "You scaled by 1/√N (the number of positions) instead of 1/√d (the feature size, q.shape[-1]).":
            torch.softmax(logits / math.sqrt(N), dim=-1) @ v,
        "The softmax is over the wrong axis: each query's weights over the keys (the last axis of q kᵀ) "
        "must sum to 1, softmax(…, dim=-1); you normalised over the queries.":
            torch.softmax(logits / math.sqrt(d), dim=-2) @ v,
        "You transposed the weights before multiplying by v: the output is weights @ v, where row i of the "
        "weights says how much query i takes from each key.":
            torch.softmax(logits / math.sqrt(d), dim=-1).transpose(-1, -2) @ v,
    }, atol=1e-5)
    raise CheckFailed(f"Your output differs from softmax(q kᵀ / √d) v (max |Δ| = {float((out - ref).abs().max()):.3g}).")


# --------------------------------------------------------------------------------- v-parameterisation

def _v_inputs():
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    abar = torch.tensor([0.999, 0.9, 0.6, 0.3, 0.05, 0.002]).reshape(6, 1, 1, 1)  # (B, 1, 1, 1), broadcasts
    return x0, eps, abar


@checker("v_target")
def check_v_target_abar(v_target) -> None:
    """``v_target(x0, eps, abar)`` = √ᾱ ε − √(1 − ᾱ) x0 (Salimans & Ho 2022, §4)."""
    x0, eps, abar = _v_inputs()
    out = expect_tensor(v_target(x0, eps, abar), x0.shape, "v_target(x0, eps, abar)")
    a, s = abar.sqrt(), (1 - abar).sqrt()
    if close(out, a * eps - s * x0):
        return
    _first_match(out, {
        "The sign is flipped: v = √ᾱ·ε − √(1−ᾱ)·x0; you returned its negative.": s * x0 - a * eps,
        "You swapped x0 and ε: v = √ᾱ·ε − √(1−ᾱ)·x0 (ε gets √ᾱ, x0 gets −√(1−ᾱ)).": a * x0 - s * eps,
        "The coefficients are swapped: √ᾱ multiplies ε and √(1−ᾱ) multiplies x0, v = √ᾱ·ε − √(1−ᾱ)·x0.":
            s * eps - a * x0,
        "The x0 term needs a minus sign: v = √ᾱ·ε − √(1−ᾱ)·x0.": a * eps + s * x0,
        "You forgot the square roots: v = √ᾱ·ε − √(1−ᾱ)·x0, not ᾱ·ε − (1−ᾱ)·x0.": abar * eps - (1 - abar) * x0,
        "That is x_t = √ᾱ·x0 + √(1−ᾱ)·ε, the noisy sample; v is √ᾱ·ε − √(1−ᾱ)·x0.": a * x0 + s * eps,
    })
    raise CheckFailed("Your v differs from √ᾱ·ε − √(1−ᾱ)·x0 (check that abar broadcasts as given, (B, 1, 1, 1)).")


@checker("eps_from_v")
def check_eps_from_v_abar(eps_from_v) -> None:
    """``eps_from_v(x_t, v, abar)`` = √(1 − ᾱ) x_t + √ᾱ v inverts x_t = √ᾱ x0 + √(1−ᾱ) ε and v."""
    x0, eps, abar = _v_inputs()
    a, s = abar.sqrt(), (1 - abar).sqrt()
    x_t, v = a * x0 + s * eps, a * eps - s * x0
    out = expect_tensor(eps_from_v(x_t, v, abar), x0.shape, "eps_from_v(x_t, v, abar)")
    if close(out, eps, atol=1e-4):
        return
    _first_match(out, {
        "You returned x̂0 = √ᾱ·x_t − √(1−ᾱ)·v, not ε̂: the noise is ε̂ = √(1−ᾱ)·x_t + √ᾱ·v.": a * x_t - s * v,
        "The sign of the v term is flipped: ε̂ = √(1−ᾱ)·x_t + √ᾱ·v.": s * x_t - a * v,
        "The coefficients are swapped: ε̂ = √(1−ᾱ)·x_t + √ᾱ·v (x_t gets √(1−ᾱ), v gets √ᾱ).": a * x_t + s * v,
        "You forgot the square roots: ε̂ = √(1−ᾱ)·x_t + √ᾱ·v.": (1 - abar) * x_t + abar * v,
        "You solved x_t = √ᾱ·x0 + √(1−ᾱ)·ε for ε with v in place of x0; v is not x0. Write x_t and v as a "
        "rotation of (x0, ε) and invert it: ε̂ = √(1−ᾱ)·x_t + √ᾱ·v.": (x_t - a * v) / s,
    })
    raise CheckFailed("Your ε̂ does not recover the noise used to make x_t and v: ε̂ should be "
                      "√(1−ᾱ)·x_t + √ᾱ·v (check that abar broadcasts as given, (B, 1, 1, 1)).")
