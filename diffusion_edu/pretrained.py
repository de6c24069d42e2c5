"""Pretrained checkpoints: recipes that make them, and a loader that checks them (chapters 03–05).

Each checkpoint is one file in ``diffusion_edu/weights/`` (shipped as package data, so a wheel or a Colab
install has it) plus an entry in ``weights/manifest.json``: its SHA-256, the recipe that made it (re-run with
``diffusion-edu pretrain NAME``), the network's configuration, its training time and quality figures.
``load(NAME)`` verifies the checksum, loads with ``torch.load(..., weights_only=True)`` and turns a missing
or corrupt file into a ``CheckpointError`` that names the recipe to re-run.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import evaluate
from .data import digits, toy2d, TOY2D
from .metrics import real_floor, sliced_wasserstein
from .nets import MLPDenoiser
from .samplers import dpm_solver_pp, ode_midpoint, sample
from .schedules import NoiseSchedule, get_schedule
from . import processes
from .parameterisations import Denoiser, as_eps_model, named
from .processes import GaussianPath
from .train import rank_and_world_size, train
from .nets import UNet

WEIGHTS = Path(__file__).parent / "weights"
MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or unknown; the message says which recipe makes it."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network (eval mode), and for denoisers the schedule and objective it was trained with.

    ``schedule`` is a discrete ``NoiseSchedule`` (chapters 02–05) or, for a manifest entry with a ``path``, a
    continuous ``processes.GaussianPath`` (chapters 06 on); ``denoiser`` serves either to any sampler.
    """

    name: str
    model: nn.Module
    info: dict = field(default_factory=dict)
    schedule: NoiseSchedule | GaussianPath | None = None
    objective: str | None = None

    @property
    def denoiser(self) -> Denoiser:
        """The network behind the one interface every sampler calls (``parameterisations.Denoiser``)."""
        if self.schedule is None:
            raise AttributeError(f"{self.name} is not a denoiser")
        return Denoiser(self.model, self.schedule, named(self.objective))

    @property
    def eps_model(self):
        """The network as an ε-predictor, what every sampler expects."""
        if self.schedule is None:
            raise AttributeError(f"{self.name} is not a denoiser")
        return as_eps_model(self.model, self.schedule, named(self.objective))

    @property
    def parameterisation(self):
        """What the network predicts (``parameterisations``), from the manifest's ``objective`` name."""
        return None if self.objective is None else named(self.objective)


# ----------------------------------------------------------------------------------------------- recipes
# A recipe trains one network from a fixed seed and returns it with its configuration and figures.

# Chosen by measurement (docs/BENCHMARKS.md): with 1200 steps (~75 s on 2 cores), cosine + v-prediction reaches
# FDD ≈ 1.0× floor with DPM-Solver++ at 10–20 steps; linear + ε 1.4× / 1.0×, linear + v 1.6× / 1.1×, and
# cosine + ε diverges: ᾱ_{T−1} ≈ 2e-9 there, so x̂_0 = (x − √(1−ᾱ) ε̂)/√ᾱ multiplies ε̂'s error by 2e4.
DIGITS_UNET = dict(channels=(32, 64, 64), attention_levels=(-1,))
DIGITS_TRAINING = dict(steps=1200, batch_size=128, lr=2e-3, objective="v", warmup=100)
# The "train it yourself" recipe, held to the 2-minute goal in the benchmark. Today the shipped checkpoints use
# it too; a longer shipped recipe (the benchmark allows ~15 min) would change DIGITS_TRAINING alone.
DIGITS_QUICK = DIGITS_TRAINING
DIGITS_SCHEDULE = "cosine"
DIGITS_P_UNCOND = 0.1  # label dropout of the conditional model (Ho & Salimans 2022 use 0.1–0.2)


def training_args(recipe: dict) -> dict:
    """A stored recipe (``objective`` as a name, as the manifest keeps it) as ``train``'s keyword arguments."""
    args = {k: v for k, v in recipe.items() if k != "objective"}
    return dict(args, parameterisation=named(recipe["objective"])) if "objective" in recipe else args


def _digits_unet(name: str, conditional: bool, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    x, y = digits("train")
    config = dict(DIGITS_UNET, num_classes=10 if conditional else None)
    torch.manual_seed(0)
    model = UNet(**config).to(device)
    extra = dict(labels=y, p_uncond=DIGITS_P_UNCOND) if conditional else {}
    result = train(model, x, get_schedule(DIGITS_SCHEDULE), seed=0, progress=False, **training_args(DIGITS_TRAINING), **extra)
    training = dict(DIGITS_TRAINING, p_uncond=DIGITS_P_UNCOND) if conditional else DIGITS_TRAINING
    result.ema.cpu()  # in place: the weights are saved from the CPU
    return result.ema, dict(kind="unet", config=config, schedule=DIGITS_SCHEDULE,
                            objective=DIGITS_TRAINING["objective"], training=training,
                            train_seconds=round(result.seconds, 1))


def _classifier(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:  # trains on the CPU
    """The feature network of FDD (a CNN, shift augmentation), or the second feature space (an MLP, none)."""
    start = time.perf_counter()
    if name == "digits-classifier-mlp":
        kind, (model, acc) = "mlp-classifier", evaluate.train_classifier(evaluate.DigitsMLP(), seed=1, shifts=False)
    else:
        kind, (model, acc) = "classifier", evaluate.train_classifier(seed=0)
    return model, dict(kind=kind, config={}, train_seconds=round(time.perf_counter() - start, 1),
                       test_accuracy=round(acc, 4))


TOY_MLP = dict(hidden=256, depth=4)  # swiss_roll needs the width: 128×3 reaches 1.5× floor only after 8000 steps
TOY_TRAINING = dict(steps=6000, batch_size=256, lr=2e-3, objective="eps", warmup=100)
TOY_SCHEDULE = "linear"
TOY_EVAL = dict(n=2000, steps=50)  # DPM-Solver++ steps: at 20, eight_gaussians' sharp modes leave stragglers


def _toy(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    data_name = name.removeprefix("toy-")
    torch.manual_seed(0)
    model = MLPDenoiser(**TOY_MLP).to(device)
    schedule = get_schedule(TOY_SCHEDULE)
    result = train(model, toy2d(data_name, 8000, seed=0), schedule, seed=0, progress=False, **training_args(TOY_TRAINING))
    result.ema.cpu()  # in place: the weights are saved, and evaluated, on the CPU
    return result.ema, dict(kind="mlp", config=TOY_MLP, schedule=TOY_SCHEDULE, objective="eps",
                            training=TOY_TRAINING, train_seconds=round(result.seconds, 1),
                            sw_ratio=round(toy_sw_ratio(result.ema, schedule, data_name), 3))


def toy_sw_ratio(model, schedule: NoiseSchedule, data_name: str, n: int = TOY_EVAL["n"]) -> float:
    """Sliced Wasserstein / its real floor for a toy model: n samples (DPM-Solver++, TOY_EVAL steps), fixed seeds."""
    x = sample(dpm_solver_pp, model, torch.randn(n, 2, generator=torch.Generator().manual_seed(1)), schedule,
               TOY_EVAL["steps"])
    floor = real_floor(sliced_wasserstein, lambda m, seed: toy2d(data_name, m, seed + 100), n)
    return sliced_wasserstein(x, toy2d(data_name, n, 7)) / floor


# Chapter 06: the same U-Net in continuous time on a VP and a VE path, ε-objective (denoising score matching with
# Song & Ermon's λ(σ) = σ² weighting), DIGITS_TRAINING's budget. VE's σ_max = 10 ≥ the largest distance between two
# train digits (9.6): Song & Ermon (2020), Technique 1. Raw x_t goes in (no input scaling), as in NCSN.
SDE_PATHS = {"digits-vp": dict(name="vp"), "digits-ve": dict(name="ve", sigma_min=0.01, sigma_max=10.0)}
SDE_UNET = dict(DIGITS_UNET, time_scale=1000.0)
SDE_TRAINING = dict(DIGITS_TRAINING, objective="eps")


def _digits_sde(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    path = processes.build(SDE_PATHS[name])
    torch.manual_seed(0)
    model = UNet(**SDE_UNET).to(device)
    result = train(model, digits("train")[0], path, seed=0, progress=False, **training_args(SDE_TRAINING))
    result.ema.cpu()
    return result.ema, dict(kind="unet", config=SDE_UNET, path=processes.describe(path),
                            objective=SDE_TRAINING["objective"], training=SDE_TRAINING, stored="float16",
                            train_seconds=round(result.seconds, 1))


# Chapter 07: flows on the straight path x_t = (1 − t) x₀ + t ε (``processes.rectified``), trained with ``flow.train_flow``
# on the velocity u = ε − x₀. Three of each: independent coupling ("flow"), minibatch OT ("flow-ot"), and reflow
# of the first, fine-tuned from its weights on (x₀, ε) pairs that it generated itself, seeded (Liu et al. 2022).
FLOW_UNET = dict(DIGITS_UNET, time_scale=1000.0)  # continuous t ∈ [0, 1], embedded as 1000 t
FLOW_TRAINING = dict(steps=1200, batch_size=128, lr=2e-3, warmup=100)
FLOW_REFLOW = dict(pairs=8000, pair_steps=8, steps=2400, batch_size=128, lr=1e-3, warmup=50)  # midpoint steps (16 NFE)
TOY_FLOW_MLP = dict(hidden=128, depth=3, time_scale=1000.0)
TOY_FLOW_TRAINING = dict(steps=3000, batch_size=256, lr=2e-3, warmup=100)
TOY_FLOW_REFLOW = dict(pairs=8000, pair_steps=16, steps=3000, batch_size=256, lr=1e-3, warmup=100)
FLOW_DATA = "moons"  # the 2-D set of chapter 07


def _flow(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Recipes ``digits-flow[-ot|-reflow]`` and ``moons-flow[-ot|-reflow]`` (2-D: ``FLOW_DATA``)."""
    from . import flow  # chapter 07's module
    digits_net = name.startswith("digits-")
    base = name.removesuffix("-ot").removesuffix("-reflow")
    kind, config = ("unet", FLOW_UNET) if digits_net else ("mlp", TOY_FLOW_MLP)
    data = digits("train")[0] if digits_net else toy2d(FLOW_DATA, 8000, seed=0)
    training = FLOW_TRAINING if digits_net else TOY_FLOW_TRAINING
    extra, info = {}, {}
    if name.endswith("-reflow"):  # pairs from the base flow, then fine-tune its weights on them
        training = FLOW_REFLOW if digits_net else TOY_FLOW_REFLOW
        teacher = load(base, device=device)
        noise = torch.randn((training["pairs"],) + tuple(data.shape[1:]), generator=torch.Generator().manual_seed(5))
        start = time.perf_counter()
        data, noise = flow.reflow_pairs(teacher.denoiser, noise.to(device), training["pair_steps"], ode_midpoint)
        model = teacher.model.train().requires_grad_(True)
        extra = dict(noise=noise)
        info = dict(reflow_of=base, pair_seconds=round(time.perf_counter() - start, 1))
    else:
        torch.manual_seed(0)
        model = (UNet if digits_net else MLPDenoiser)(**config).to(device)
        if name.endswith("-ot"):
            extra = dict(coupling=flow.ot_coupling)
    args = {k: v for k, v in training.items() if k not in ("pairs", "pair_steps")}
    result = flow.train_flow(model, data.to(device), seed=0, progress=False, **args, **extra)
    result.ema.cpu()
    coupling = "reflow" if name.endswith("-reflow") else "ot" if name.endswith("-ot") else "independent"
    return result.ema, dict(info, kind=kind, config=config, path=processes.describe(processes.rectified()),
                            objective="velocity", coupling=coupling, training=training,
                            data="digits" if digits_net else FLOW_DATA, train_seconds=round(result.seconds, 1),
                            **({"stored": "float16"} if digits_net else {}))


# Chapter 08: SR3 for 2× super-resolution of digits (8×8 from 4×4 block averages, noise-free): chapter 03's U-Net,
# schedule and budget, with the up-sampled measurement A⁺y as a second input channel (``restoration.sr3``).
SR3_TASK = dict(size=8, factor=2)


def _sr3(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    from .restoration import downsample, sr3
    config = dict(DIGITS_UNET, cond_channels=1)
    torch.manual_seed(0)
    model = UNet(**config).to(device)
    result = sr3.train_sr3(model, digits("train")[0].to(device), downsample(**SR3_TASK), get_schedule(DIGITS_SCHEDULE),
                           seed=0, progress=False, **training_args(DIGITS_TRAINING))
    result.ema.cpu()
    return result.ema, dict(kind="unet", config=config, schedule=DIGITS_SCHEDULE, objective=DIGITS_TRAINING["objective"],
                            training=DIGITS_TRAINING, task=dict(SR3_TASK, operator="downsample", sigma_y=0.0),
                            stored="float16", train_seconds=round(result.seconds, 1))


# Chapters 09–11: shape scenes (``data.shapes``). The judges (``attributes``: a CNN, and an MLP as the second feature
# space, trained on every colour–shape pair), the autoencoder of latent diffusion, and two diffusion models trained
# for the same wall-time on one core: one in its latent space (4×8×8), one on the pixels (3×32×32).
SHAPES_N = 20_000  # training scenes
SHAPES_AUTOENCODER = dict(channels=(16, 32, 64), z_channels=4)  # 32×32×3 → 4×8×8: f = 4, 12× fewer numbers
SHAPES_AE_TRAINING = dict(beta=1e-3, steps=2500, batch_size=32, lr=1e-3)
SHAPES_LATENT_UNET = dict(in_channels=4, channels=(64, 128), attention_levels=(-1,))
SHAPES_PIXEL_UNET = dict(in_channels=3, channels=(32, 64, 64), attention_levels=(-1,))
# steps chosen for about the same training time on one core (the manifest records both): a latent step is ~5× cheaper
SHAPES_LATENT_TRAINING = dict(DIGITS_TRAINING, steps=3000, batch_size=64)
SHAPES_PIXEL_TRAINING = dict(DIGITS_TRAINING, steps=600, batch_size=64)


def _shapes_classifier(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:  # on the CPU
    from . import attributes
    cnn = name == "shapes-classifier"
    model, info = attributes.train_classifier(attributes.ShapesClassifier() if cnn else attributes.ShapesMLP(),
                                              n=SHAPES_N, epochs=6 if cnn else 30, seed=0 if cnn else 1, shifts=cnn)
    return model, dict(info, kind="shapes-classifier" if cnn else "shapes-mlp", config={},
                       **({} if cnn else {"stored": "float16"}))  # the MLP's 3072 × 256 first layer: half the bytes


def _shapes_autoencoder(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    from .data.shapes import shapes
    from .latent import latent_scale
    from .nets.autoencoder import Autoencoder, train_autoencoder
    torch.manual_seed(0)
    ae = Autoencoder(**SHAPES_AUTOENCODER).to(device)
    x = shapes("train", SHAPES_N).images
    result = train_autoencoder(ae, x, seed=0, **SHAPES_AE_TRAINING)
    ae.cpu()
    recon, kl = (sum(v) / 100 for v in zip(*result.losses[-100:]))
    return ae, dict(kind="autoencoder", config=SHAPES_AUTOENCODER, training=SHAPES_AE_TRAINING,
                    scale=round(latent_scale(ae, x), 5), final_reconstruction=round(recon, 3), final_kl=round(kl, 2),
                    train_seconds=round(result.seconds, 1))


def _shapes_diffusion(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    from .data.shapes import shapes
    from .latent import encode
    x, extra = shapes("train", SHAPES_N).images, {}
    config, training = SHAPES_PIXEL_UNET, SHAPES_PIXEL_TRAINING
    if name == "shapes-latent":
        ae = load("shapes-autoencoder")
        x, config, training = encode(ae.model, x, ae.info["scale"]), SHAPES_LATENT_UNET, SHAPES_LATENT_TRAINING
        extra = dict(autoencoder="shapes-autoencoder", autoencoder_sha256=ae.info["sha256"], scale=ae.info["scale"])
    torch.manual_seed(0)
    model = UNet(**config).to(device)
    result = train(model, x.to(device), get_schedule(DIGITS_SCHEDULE), seed=0, progress=False, **training_args(training))
    result.ema.cpu()
    return result.ema, dict(extra, kind="unet", config=config, schedule=DIGITS_SCHEDULE, objective=training["objective"],
                            training=training, stored="float16", train_seconds=round(result.seconds, 1))


RECIPES: dict[str, Callable[..., tuple[nn.Module, dict]]] = {  # recipe(name, device="cpu")
    "digits-uncond": lambda name, device="cpu": _digits_unet(name, conditional=False, device=device),
    "digits-cond": lambda name, device="cpu": _digits_unet(name, conditional=True, device=device),
    "digits-classifier": _classifier,
    "digits-classifier-mlp": _classifier,
    **{f"toy-{d}": _toy for d in TOY2D},
    **{f"{net}-flow{suffix}": _flow for net in ("digits", FLOW_DATA) for suffix in ("", "-ot", "-reflow")},
    **{name: _digits_sde for name in SDE_PATHS},
    "digits-sr3": _sr3,
    "shapes-classifier": _shapes_classifier,
    "shapes-classifier-mlp": _shapes_classifier,
    "shapes-autoencoder": _shapes_autoencoder,
    "shapes-latent": _shapes_diffusion,
    "shapes-pixel": _shapes_diffusion,
}


def pretrain(name: str, out: Path = WEIGHTS, device: torch.device | str = "cpu") -> dict | None:
    """Run recipe ``name``, save its weights under ``out`` and record them in the manifest; returns the entry.

    Under torchrun every rank trains (data-parallel, see ``train``) and rank 0 alone writes; the others return None.
    """
    if name not in RECIPES:
        raise ValueError(f"name must be one of {sorted(RECIPES)}, got {name!r}")
    rank = rank_and_world_size()[0]
    out = Path(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, info = RECIPES[name](name, device)
    if rank > 0:
        return None
    path = out / f"{name}.pt"
    half = info.get("stored") == "float16"  # a recipe may store its weights in half precision: half the bytes in git
    torch.save({k: (v.half() if half and v.is_floating_point() else v).contiguous()
                for k, v in model.state_dict().items()}, path)  # load() casts back to the network's float32
    entry = dict(info, file=path.name, sha256=_sha256(path), recipe=f"diffusion-edu pretrain {name}",
                 recipe_seconds=round(time.perf_counter() - start, 1), torch=torch.__version__,
                 machine=f"{platform.machine()}, {torch.get_num_threads()} threads",
                 made=time.strftime("%Y-%m-%d"))
    manifest = _manifest(out)
    manifest[name] = entry
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return entry


# ------------------------------------------------------------------------------------------------ loading

def load(name: str, root: Path = WEIGHTS, device: torch.device | str = "cpu") -> Checkpoint:
    """Load checkpoint ``name`` after verifying its SHA-256; errors name the recipe that makes it."""
    root = Path(root)
    manifest = _manifest(root)
    if name not in manifest:
        known = sorted(manifest) or "none"
        raise CheckpointError(f"no checkpoint named {name!r} in {root / MANIFEST} (available: {known}); "
                              f"recipes: {sorted(RECIPES)}")
    entry = manifest[name]
    path, fix = root / entry["file"], f"re-run `{entry['recipe']}` to make it again"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name!r} is missing: {path} does not exist; {fix}")
    if _sha256(path) != entry["sha256"]:
        raise CheckpointError(f"checkpoint {name!r} is corrupt: {path} does not match its SHA-256 "
                              f"in the manifest; {fix}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a file that hashes right but will not load: a manifest written by hand
        raise CheckpointError(f"checkpoint {name!r} could not be loaded from {path} ({err}); {fix}") from err
    model = _build(entry)
    model.load_state_dict(state)
    model.to(device).eval().requires_grad_(False)
    schedule = (processes.build(entry["path"]) if "path" in entry
                else get_schedule(entry["schedule"]) if "schedule" in entry else None)
    return Checkpoint(name, model, entry, schedule, entry.get("objective"))


def available(root: Path = WEIGHTS) -> list[str]:
    """Names of the checkpoints in the manifest."""
    return sorted(_manifest(Path(root)))


def _build(entry: dict) -> nn.Module:
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["config"].items()}
    from . import attributes
    from .nets.autoencoder import Autoencoder
    kinds = {"unet": UNet, "mlp": MLPDenoiser, "classifier": evaluate.DigitsClassifier,
             "mlp-classifier": evaluate.DigitsMLP, "shapes-classifier": attributes.ShapesClassifier,
             "shapes-mlp": attributes.ShapesMLP, "autoencoder": Autoencoder}
    return kinds[entry["kind"]](**config)


def _manifest(root: Path) -> dict:
    path = root / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
