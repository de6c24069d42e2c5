"""Chapter 05's checks accept the reference and name each usual mistake (label dropout, CFG, classifier guidance)."""
import pytest
import torch

import diffusion_edu as de
from diffusion_edu import checks

from checking import assert_names_mistake


def not_done(*args, **kwargs):
    raise NotImplementedError()


# ------------------------------------------------------------------------------------------ label dropout

def drop_with(mask, null=lambda k: k):
    """drop_labels built from a rule for the drop mask, (u, p) -> bool, and for the label a dropped entry gets."""
    def drop_labels(y, p_uncond, null_class, generator):
        u = torch.rand(len(y), generator=generator)
        return torch.where(mask(u, p_uncond), torch.full_like(y, null(null_class)), y)
    return drop_labels


def drop_in_place(y, p_uncond, null_class, generator):
    y[torch.rand(len(y), generator=generator) < p_uncond] = null_class
    return y


def drop_global_rng(y, p_uncond, null_class, generator):
    return torch.where(torch.rand(len(y)) < p_uncond, torch.full_like(y, null_class), y)


def drop_exact_share(y, p_uncond, null_class, generator):
    drop = torch.randperm(len(y), generator=generator)[:round(p_uncond * len(y))]
    out = y.clone()
    out[drop] = null_class
    return out


DROP_REFERENCE = drop_with(lambda u, p: u < p)
DROP_MISTAKES = {
    "probability 1 - p": (drop_with(lambda u, p: u >= p), "1 − p_uncond"),
    "label -1": (drop_with(lambda u, p: u < p, null=lambda k: -1), "−1"),
    "label 0": (drop_with(lambda u, p: u < p, null=lambda k: 0), "exactly null_class"),
    "hard-coded 10": (drop_with(lambda u, p: u < p, null=lambda k: 10), "hard-code"),
    "rate p / 2": (drop_with(lambda u, p: u < p / 2), "asks for about"),
    "float labels": (lambda y, p, k, g: DROP_REFERENCE(y, p, k, g).float(), "integers"),
    "in place": (drop_in_place, "in place"),
    "global rng": (drop_global_rng, "generator=generator"),
    "other draws": (drop_exact_share, "draw for draw"),
}


def test_drop_labels_accepts_the_reference_and_the_package_rule():
    assert checks.check_drop_labels(DROP_REFERENCE)


def test_drop_labels_reference_matches_diffusion_loss_on_the_same_generator():
    """The rule the check asks for is the one diffusion_loss draws (t, then noise, then the drops)."""
    seen = []
    model = lambda x, t, y=None: seen.append(y) or torch.zeros_like(x)  # noqa: E731
    model.num_classes = 10
    x0, y = torch.randn(500, 2), torch.randint(0, 10, (500,))
    de.diffusion_loss(model, x0, de.linear(), y=y, p_uncond=0.3, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    torch.randint(0, 1000, (500,), generator=g), torch.randn(x0.shape, generator=g)
    assert torch.equal(seen[0], DROP_REFERENCE(y, 0.3, 10, g))


@pytest.mark.parametrize("name", DROP_MISTAKES)
def test_drop_labels_names_the_mistake(name):
    assert_names_mistake(checks.check_drop_labels, *DROP_MISTAKES[name])


# ---------------------------------------------------------------------------- classifier-free guidance

CFG_REFERENCE = lambda ec, eu, w: (1 + w) * ec - w * eu  # noqa: E731
CFG_MISTAKES = {
    "sign flipped": (lambda ec, eu, w: ec - w * (ec - eu), "sign of the guidance term is flipped"),
    "swapped": (lambda ec, eu, w: (1 + w) * eu - w * ec, "swapped"),
    "w = 1 means none": (lambda ec, eu, w: w * ec + (1 - w) * eu, "w = 1 means no guidance"),
    "weight 1 on cond": (lambda ec, eu, w: ec - w * eu, "weight (1 + w)"),
    "guidance term only": (lambda ec, eu, w: w * (ec - eu), "only the guidance term"),
    "unguided": (lambda ec, eu, w: ec, "unchanged"),
    "unconditional": (lambda ec, eu, w: eu, "w = −1"),
    "in place": (lambda ec, eu, w: ec.mul_(1 + w).sub_(w * eu), "in place"),
    "something else": (lambda ec, eu, w: (1 + w) * ec - w * eu + 0.1, "none of the usual mistakes"),
}


def test_cfg_eps_accepts_the_reference():
    assert checks.check_cfg_eps(CFG_REFERENCE)
    assert checks.check_cfg_eps(lambda ec, eu, w: ec + w * (ec - eu))


@pytest.mark.parametrize("name", CFG_MISTAKES)
def test_cfg_eps_names_the_mistake(name):
    assert_names_mistake(checks.check_cfg_eps, *CFG_MISTAKES[name])


def guided_with(combine=CFG_REFERENCE, null=lambda model, y: None):
    """guided_model built from a combination rule and a way to ask for ε(x, ∅)."""
    def guided_model(model, w):
        def guided(x, t, y=None):
            if y is None:
                return model(x, t, None)
            return combine(model(x, t, y), model(x, t, null(model, y)), w)
        return guided
    return guided_model


def guided_no_uncond(model, w):
    return lambda x, t, y=None: CFG_REFERENCE(model(x, t, y), model(x, t, y), w)


def guided_shifted_t(model, w):
    return lambda x, t, y=None: CFG_REFERENCE(model(x, t - 1, y), model(x, t - 1, None), w)


def guided_not_a_model(model, w):
    return torch.zeros(3)


GLOBAL_W = {}


def guided_global_w(model, w):
    GLOBAL_W["w"] = w
    return lambda x, t, y=None: CFG_REFERENCE(model(x, t, y), model(x, t, None), GLOBAL_W["w"])


def guided_ignores_none(model, w):
    def guided(x, t, y=None):
        y = torch.zeros(len(x), dtype=torch.long) if y is None else y  # "no label" read as class 0
        return CFG_REFERENCE(model(x, t, y), model(x, t, None), w)
    return guided


GUIDED_MISTAKES = {
    "label -1": (guided_with(null=lambda model, y: torch.full_like(y, -1)), "label −1"),
    "sign flipped": (guided_with(CFG_MISTAKES["sign flipped"][0]), "sign of the guidance term is flipped"),
    "w = 1 means none": (guided_with(CFG_MISTAKES["w = 1 means none"][0]), "w = 1 means no guidance"),
    "no unconditional call": (guided_no_uncond, "never asked for the unconditional"),
    "shifted t": (guided_shifted_t, "pass t through"),
    "not a model": (guided_not_a_model, "should return a model"),
    "global w": (guided_global_w, "interfere"),
    "y=None": (guided_ignores_none, "y=None"),
}


def test_guided_model_accepts_the_reference_and_the_package():
    assert checks.check_guided_model(guided_with())
    assert checks.check_guided_model(guided_with(null=lambda model, y: torch.full_like(y, model.num_classes)))
    assert checks.check_guided_model(de.cfg)


@pytest.mark.parametrize("name", GUIDED_MISTAKES)
def test_guided_model_names_the_mistake(name):
    assert_names_mistake(checks.check_guided_model, *GUIDED_MISTAKES[name])


# ------------------------------------------------------------------------------------- classifier guidance

def cg_with(factor):
    """classifier_guidance_eps with ε − factor(s, ᾱ) ∇ log p; ᾱ may be a float or a tensor."""
    return lambda eps, grad, abar, s: eps - factor(s, torch.as_tensor(abar)) * grad


CG_REFERENCE = cg_with(lambda s, a: s * (1 - a).sqrt())
CG_MISTAKES = {
    "sign flipped": (cg_with(lambda s, a: -s * (1 - a).sqrt()), "sign of the guidance term is flipped"),
    "missing sqrt(1 - abar)": (cg_with(lambda s, a: s), "missing the √(1 − ᾱ_t) factor"),
    "missing -sqrt(1 - abar)": (cg_with(lambda s, a: -s), "missing the −√(1 − ᾱ_t) factor"),
    "divided": (cg_with(lambda s, a: s / (1 - a).sqrt()), "divided"),
    "no square root": (cg_with(lambda s, a: s * (1 - a)), "square root"),
    "sqrt(abar)": (cg_with(lambda s, a: s * a.sqrt()), "√ᾱ_t"),
    "no s": (cg_with(lambda s, a: (1 - a).sqrt()), "scale s is missing"),
    "s squared": (cg_with(lambda s, a: s ** 2 * (1 - a).sqrt()), "not s²"),
    "unchanged": (lambda eps, grad, abar, s: eps, "unchanged"),
    "tensor only": (lambda eps, grad, abar, s: eps - s * (1 - abar).sqrt() * grad, "accept a float"),
}


def test_classifier_guidance_eps_accepts_the_reference():
    assert checks.check_classifier_guidance_eps(CG_REFERENCE)
    assert checks.check_classifier_guidance_eps(lambda eps, g, abar, s: eps - s * (1 - abar) ** 0.5 * g)


@pytest.mark.parametrize("name", CG_MISTAKES)
def test_classifier_guidance_eps_names_the_mistake(name):
    assert_names_mistake(checks.check_classifier_guidance_eps, *CG_MISTAKES[name])


# ------------------------------------------------------------------------------------------ not done

@pytest.mark.parametrize("check", [checks.check_drop_labels, checks.check_cfg_eps, checks.check_guided_model,
                                   checks.check_classifier_guidance_eps])
def test_an_unfinished_task_is_not_done(check):
    assert check(not_done).status == "not done"


def test_a_crash_is_reported_as_an_error():
    result = checks.check_cfg_eps(lambda ec, eu, w: ec @ eu)
    assert result.status == "error" and "RuntimeError" in result.message
