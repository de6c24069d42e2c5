"""The peer comparison (diffusion_edu.course.peer): each recipe trains and samples, and each variant changes what it says.

Tiny networks and step budgets keep it to seconds on one thread; no clocks, no golden numbers.
"""
import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="the peer recipe is diffusers' (pip install -e .[dev])")

from diffusion_edu.course import peer as P  # noqa: E402
from diffusion_edu.data import digits  # noqa: E402
from diffusion_edu.forward import v_target  # noqa: E402
from diffusion_edu.schedules import cosine  # noqa: E402
from diffusion_edu.train import train  # noqa: E402
from diffusion_edu.nets.unet import UNet  # noqa: E402
from diffusion_edu.parameterisations import V  # noqa: E402

TINY_PEER = dict(P.PEER_UNET, block_out_channels=(16, 16), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
TINY_OURS = dict(channels=(16, 16), attention_levels=(-1,))
X = digits("train")[0]


def x_T(n=4, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_peer_trains_with_a_step_budget():
    run = P.train_for(P.peer(unet=TINY_PEER, batch_size=16), steps=20, data=X)
    assert run.steps == len(run.losses) == 20 and run.params == sum(p.numel() for p in run.model.parameters())
    assert all(torch.isfinite(torch.tensor(run.losses)))
    assert sum(run.losses[-5:]) < sum(run.losses[:5])


def test_a_time_budget_runs_until_spent():
    run = P.train_for(P.peer(unet=TINY_PEER, batch_size=8), 1e-9, data=X)  # any step overspends 1 ns
    assert run.steps == 1 and run.seconds > 0
    with pytest.raises(ValueError, match="one budget"):
        P.train_for(P.peer(unet=TINY_PEER), 1.0, steps=1)


def test_ours_with_a_step_budget_is_train_train():
    """The benchmark trains the shipped recipe: same seed, same steps → train.train's EMA weights exactly."""
    recipe = P.ours(unet=TINY_OURS, batch_size=16)
    got = P.train_for(recipe, steps=3, seed=5, data=X).model
    torch.manual_seed(5)
    ref = train(UNet(**TINY_OURS), X, cosine(), steps=3, batch_size=16, lr=recipe.lr, parameterisation=V,
                warmup=recipe.warmup, seed=5, progress=False).ema
    torch.testing.assert_close(weights(got), weights(ref), rtol=0, atol=0)


def test_samplers_return_finite_samples_of_the_right_shape():
    peer_run = P.train_for(P.peer(unet=TINY_PEER, batch_size=16), steps=2, data=X)
    ours_recipe = P.ours(unet=TINY_OURS, batch_size=16)
    ours_run = P.train_for(ours_recipe, steps=2, data=X)
    ddpm = diffusers.DDPMScheduler(**P.PEER_SCHEDULER)
    outs = [P.scheduler_sample(peer_run.model, ddpm, x_T(), 10, torch.Generator().manual_seed(1)),
            P.peer(unet=TINY_PEER).samplers["diffusers dpm_solver-20"](peer_run.model, x_T(), None),
            P.peer(unet=TINY_PEER).samplers["dpm_solver_pp-20"](peer_run.model, x_T(), None),
            ours_recipe.samplers["dpm_solver_pp-10"](ours_run.model, x_T(), None)]
    for x in outs:
        assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_dpm_solver_is_built_from_the_ddpm_config(prediction_type):
    ddpm = diffusers.DDPMScheduler(**P.PEER_SCHEDULER, prediction_type=prediction_type)
    dpm = P.dpm_scheduler(ddpm)
    assert isinstance(dpm, diffusers.DPMSolverMultistepScheduler)
    assert torch.equal(dpm.betas, ddpm.betas) and torch.equal(dpm.alphas_cumprod, ddpm.alphas_cumprod)
    assert dpm.config.prediction_type == prediction_type


def test_the_peer_schedule_is_our_cosine():
    ddpm = diffusers.DDPMScheduler(**P.PEER_SCHEDULER)
    torch.testing.assert_close(ddpm.betas.double(), cosine().betas, rtol=0, atol=1e-6)  # float32 vs float64


def test_v_prediction_regresses_onto_v_not_eps():
    x0, eps, t = X[:8], torch.randn(8, 1, 8, 8), torch.randint(0, 1000, (8,))
    v_sched = diffusers.DDPMScheduler(**P.PEER_SCHEDULER, prediction_type="v_prediction")
    v = P.peer_target(v_sched, x0, eps, t)
    torch.testing.assert_close(v.double(), v_target(x0.double(), eps.double(), t, cosine()), rtol=0, atol=1e-5)
    assert not torch.allclose(v, eps)
    assert torch.equal(P.peer_target(diffusers.DDPMScheduler(**P.PEER_SCHEDULER), x0, eps, t), eps)
    v_recipe = P.peer(unet=TINY_PEER, prediction_type="v_prediction")
    assert v_recipe.config["scheduler"]["prediction_type"] == "v_prediction"


def test_ema_returns_averaged_weights():
    """EMA draws no randomness, so the run without it holds the raw weights of the same seeded training."""
    raw = P.train_for(P.peer(unet=TINY_PEER, batch_size=8), steps=3, data=X).model
    ema = P.train_for(P.peer(unet=TINY_PEER, batch_size=8, ema_decay=0.999), steps=3, data=X).model
    assert not torch.allclose(weights(raw), weights(ema))


def test_no_clip_turns_off_x0_clipping_only():
    recipe = P.peer(unet=TINY_PEER)
    assert recipe.config["scheduler"]["clip_sample"] is True  # the peer's default, as a learner gets it
    unet = P.train_for(recipe, steps=1, data=X).model
    clip = diffusers.DDPMScheduler(**P.PEER_SCHEDULER)
    no_clip = diffusers.DDPMScheduler.from_config(clip.config, clip_sample=False)
    assert no_clip.config.clip_sample is False and torch.equal(no_clip.betas, clip.betas)
    a, b = (P.scheduler_sample(unet, s, x_T(), 10, torch.Generator().manual_seed(1)) for s in (clip, no_clip))
    assert not torch.allclose(a, b)  # an untrained x̂_0 leaves [−1, 1]


def test_comparison_interleaves_and_reports():
    variants = {"ours": P.ours(unet=TINY_OURS, batch_size=8), "peer": P.peer(unet=TINY_PEER, batch_size=8)}
    rows = P.comparison(None, {"dpm_solver_pp-10": 3, "diffusers dpm_solver-20": 3}, lambda x: {"n_scored": len(x)},
                        seeds=(0, 1), variants=variants, steps=2, data=X)
    assert [(r["variant"], r["seed"]) for r in rows] == [("ours", 0), ("peer", 0), ("peer", 1), ("ours", 1)]
    for r in rows:
        assert r["steps"] == 2 and r["params"] > 0 and r["n"] == r["n_scored"] == 3
        assert {"train_seconds", "sampler", "loss", "sample_seconds"} <= set(r)
    assert set(P.VARIANTS) >= {"ours", "peer"}


def test_missing_diffusers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    monkeypatch.delitem(sys.modules, "diffusion_edu.course.peer")
    with pytest.raises(ImportError, match="pip install diffusers"):
        importlib.import_module("diffusion_edu.course.peer")


def test_no_module_imports_peer_at_import_time():
    """diffusers stays optional: only indented (function-local) imports of peer elsewhere in the package."""
    top_level = re.compile(r"^(from\s+(\.|diffusion_edu)\S*\s+import\s+.*\bpeer\b|from\s+(\.|diffusion_edu\.)peer\b"
                           r"|import\s+diffusion_edu\.peer\b)", re.M)
    package = Path(P.__file__).parent
    assert [p.name for p in package.rglob("*.py") if p.name != "peer.py" and top_level.search(p.read_text())] == []
