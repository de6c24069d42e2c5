"""A peer recipe to measure ours against: the Hugging Face diffusion course's, trained for the same time.

The peer is unit 1 of the Hugging Face diffusion models class ("Introduction to Diffusers", steps 4–5:
huggingface/diffusion-models-class, unit1/01_introduction_to_diffusers.ipynb), adapted to our 8×8 digits the
way a learner would: ``sample_size=8``, one channel, and no ``RandomHorizontalFlip`` (digits are not mirror
images). Everything else is the course's: diffusers' ``UNet2DModel`` (``PEER_UNET``), ``DDPMScheduler`` with
the cosine betas ``squaredcos_cap_v2`` and every other argument left at diffusers' default (ε-prediction,
x̂_0 clipped to [−1, 1], ``fixed_small`` variance), AdamW at 4e-4 (PyTorch's default weight decay 0.01), a
constant learning rate, batches of 64, no EMA, and 1000-step DDPM sampling through ``scheduler.step``.

================  =====================================  ==========================================
                  ours (``pretrained.DIGITS_*``)         peer (course, unit 1)
================  =====================================  ==========================================
network           ``unet.UNet`` (32, 64, 64)             ``UNet2DModel`` (64, 128, 128, 256)
schedule          cosine (Nichol & Dhariwal 2021)        ``squaredcos_cap_v2``: the same betas
target            v (Salimans & Ho 2022)                 ε (Ho et al. 2020)
optimiser         AdamW 2e-3, warm-up 100, cosine decay  AdamW 4e-4, weight decay 0.01, constant
batch, EMA        128, EMA 0.999                         64, none
sampler           ``dpm_solver_pp``, 20 and 10 steps     DDPM 1000 steps (clips x̂_0); DPM-Solver 20
================  =====================================  ==========================================

Both recipes draw batches with replacement from ``digits("train")`` (the course iterates a shuffled
DataLoader: the same distribution of batches). ``VARIANTS`` change one thing at a time so a difference can be
traced to its cause; ``comparison`` trains them interleaved for a wall-clock budget and scores their samples.
Nothing else in the package imports this module at import time: diffusers is optional.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

try:
    import diffusers
except ImportError as err:  # diffusers is a test-only dependency of the course
    raise ImportError("diffusion_edu.peer compares our recipe with Hugging Face diffusers': "
                      "pip install diffusers") from err

from ..data import digits
from ..nets import count_parameters
from ..pretrained import DIGITS_SCHEDULE, DIGITS_TRAINING, DIGITS_UNET
from ..samplers import dpm_solver_pp, sample
from ..schedules import get_schedule
from ..parameterisations import as_eps_model, named
from ..train import EMA, diffusion_loss, warmup_cosine
from ..nets import UNet

# The course's UNet2DModel (unit 1, step 4) at 8×8, one channel: 18.5 M parameters, four levels 8 → 4 → 2 → 1.
PEER_UNET = dict(sample_size=8, in_channels=1, out_channels=1, layers_per_block=2,
                 block_out_channels=(64, 128, 128, 256),
                 down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                 up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))
# The course's digits-sized UNet2DModel ("roughly matching our basic unet": unit 1's from-scratch notebook,
# unit 2's class-conditioned MNIST): 1.7 M parameters, near our 1.2 M.
PEER_UNET_SMALL = dict(PEER_UNET, block_out_channels=(32, 64, 64),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
PEER_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")  # the rest: diffusers' defaults
PEER_TRAINING = dict(lr=4e-4, batch_size=64, weight_decay=0.01)  # torch.optim.AdamW(params, lr=4e-4): its default wd

Sampler = Callable[[nn.Module, Tensor, torch.Generator], Tensor]  # (network, x_T, generator) → x_0


@dataclass(frozen=True)
class Recipe:
    """What ``train_for`` needs to train one recipe, and the samplers that recipe would use."""

    network: Callable[[], nn.Module]                                  # a fresh network (seeded by the caller)
    loss: Callable[[nn.Module, Tensor, torch.Generator], Tensor]     # (network, x_0 batch, generator) → loss
    samplers: dict[str, Sampler]
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    warmup: int = 0               # linear warm-up steps
    cosine_decay: bool = False    # ½(1 + cos π·progress) over the budget, progress = steps or seconds spent
    ema_decay: float | None = None
    config: dict = field(default_factory=dict)  # what the recipe is, for the report


# ------------------------------------------------------------------------------------------------- ours

def ours(unet: dict = DIGITS_UNET, objective: str = DIGITS_TRAINING["objective"], ema_decay: float | None = 0.999,
         **training) -> Recipe:
    """Our digits recipe (``pretrained.DIGITS_*`` trained as ``train.train`` does, EMA 0.999 its default);
    ``training`` overrides lr, batch_size, warmup, cosine_decay or weight_decay."""
    schedule = get_schedule(DIGITS_SCHEDULE)
    settings = dict(dict(lr=DIGITS_TRAINING["lr"], batch_size=DIGITS_TRAINING["batch_size"],
                         warmup=DIGITS_TRAINING["warmup"], cosine_decay=True, weight_decay=0.0), **training)

    def dpm(steps: int) -> Sampler:
        return lambda model, x_T, g: sample(dpm_solver_pp, as_eps_model(model, schedule, named(objective)), x_T,
                                            schedule, steps)

    return Recipe(network=lambda: UNet(**unet),
                  loss=lambda model, x0, g: diffusion_loss(model, x0, schedule, named(objective), generator=g),
                  samplers={"dpm_solver_pp-20": dpm(20), "dpm_solver_pp-10": dpm(10)}, ema_decay=ema_decay,
                  config=dict(unet=unet, schedule=DIGITS_SCHEDULE, objective=objective, ema_decay=ema_decay,
                              **settings), **settings)


# ------------------------------------------------------------------------------------------------- peer

def peer_target(scheduler, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """What the peer's network regresses onto: ε, or v = √ᾱ ε − √(1 − ᾱ) x_0 (``get_velocity``)."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return noise


def peer_loss(unet: nn.Module, scheduler, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The course's training step (unit 1, step 5): noise, a random t, ``add_noise``, MSE to the target."""
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=generator).to(x0.device)
    noisy = scheduler.add_noise(x0, noise, t)  # √ᾱ_t x_0 + √(1 − ᾱ_t) ε
    return F.mse_loss(unet(noisy, t).sample, peer_target(scheduler, x0, noise, t))


@torch.no_grad()
def scheduler_sample(unet: nn.Module, scheduler, x_T: Tensor, steps: int,
                     generator: torch.Generator | None = None) -> Tensor:
    """The diffusers sampling loop (``DDPMPipeline``): ``set_timesteps``, then x ← ``step(unet(x, t), t, x)``."""
    scheduler.set_timesteps(steps)
    x = x_T * scheduler.init_noise_sigma  # 1 for DDPM and DPM-Solver
    for t in scheduler.timesteps:
        out = unet(scheduler.scale_model_input(x, t), t).sample  # ε̂ or v̂, as the scheduler was told
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x


def dpm_scheduler(ddpm: diffusers.DDPMScheduler) -> diffusers.DPMSolverMultistepScheduler:
    """DPM-Solver++(2M) built from the DDPM scheduler's config, as a learner swaps it in (diffusers' docs)."""
    return diffusers.DPMSolverMultistepScheduler.from_config(ddpm.config)


def as_model(unet: nn.Module) -> Callable[..., Tensor]:
    """A diffusers UNet under our model contract ``model(x, t, y=None)``."""
    return lambda x, t, y=None: unet(x, t).sample


def peer(unet: dict = PEER_UNET, prediction_type: str = "epsilon", ema_decay: float | None = None,
         **training) -> Recipe:
    """The course's recipe (module docstring); ``prediction_type="v_prediction"`` as diffusers spells v."""
    ddpm = diffusers.DDPMScheduler(**PEER_SCHEDULER, prediction_type=prediction_type)
    settings = dict(PEER_TRAINING, **training)
    schedule = get_schedule(DIGITS_SCHEDULE)  # the same betas as squaredcos_cap_v2 (tests/test_peer.py)
    objective = {"epsilon": "eps", "v_prediction": "v"}[prediction_type]

    def diffusers_sampler(make: Callable[[], object], steps: int) -> Sampler:
        return lambda model, x_T, g: scheduler_sample(model, make(), x_T, steps, g)  # a fresh scheduler per run

    samplers = {
        "diffusers ddpm-1000": diffusers_sampler(lambda: diffusers.DDPMScheduler.from_config(ddpm.config), 1000),
        "diffusers ddpm-1000, no clip": diffusers_sampler(
            lambda: diffusers.DDPMScheduler.from_config(ddpm.config, clip_sample=False), 1000),
        "diffusers dpm_solver-20": diffusers_sampler(lambda: dpm_scheduler(ddpm), 20),
        "dpm_solver_pp-20": lambda model, x_T, g: sample(dpm_solver_pp, as_eps_model(as_model(model), schedule,
                                                                                       named(objective)), x_T, schedule, 20),
    }
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    return Recipe(network=lambda: diffusers.UNet2DModel(**unet),
                  loss=lambda model, x0, g: peer_loss(model, ddpm, x0, g), samplers=samplers, ema_decay=ema_decay,
                  config=dict(unet=unet, scheduler=public(ddpm.config),
                              dpm_scheduler=public(dpm_scheduler(ddpm).config), optimizer="AdamW",
                              ema_decay=ema_decay, **settings), **settings)


# ----------------------------------------------------------------------------------------- training

class Trained(NamedTuple):
    """A training run: the network to sample from (the EMA copy if the recipe keeps one), and its budget spent."""

    model: nn.Module
    steps: int
    params: int
    seconds: float        # time in optimiser steps only
    losses: list[float]


def train_for(recipe: Recipe, seconds: float | None = None, *, steps: int | None = None, seed: int = 0,
              data: Tensor | None = None, device: torch.device | str = "cpu") -> Trained:
    """Run ``recipe``'s optimiser steps until ``seconds`` of stepping (or ``steps`` steps) are spent.

    Seeded like ``train.train``: with a step budget our recipe gives its weights exactly (tests/test_peer.py).
    """
    if (seconds is None) == (steps is None):
        raise ValueError(f"give one budget, seconds or steps; got seconds={seconds}, steps={steps}")
    data = digits("train")[0] if data is None else data
    torch.manual_seed(seed)
    model = recipe.network().to(device).train()
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    ema = EMA(model, recipe.ema_decay) if recipe.ema_decay is not None else None
    losses, spent = [], 0.0
    while (len(losses) < steps) if seconds is None else (spent < seconds):
        start, n = time.perf_counter(), len(losses)
        done, budget = (n, steps) if seconds is None else (spent, seconds)
        for group in opt.param_groups:  # train.train's schedule (warm-up, cosine decay over the budget), or flat
            group["lr"] = recipe.lr * (warmup_cosine(n, recipe.warmup, done, budget) if recipe.cosine_decay
                                       else min(1.0, (n + 1) / max(recipe.warmup, 1)))
        idx = torch.randint(0, len(data), (min(recipe.batch_size, len(data)),), generator=generator)
        loss = recipe.loss(model, data[idx].to(device), generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(model)
        losses.append(loss.item())
        spent += time.perf_counter() - start
    model.eval().requires_grad_(False)
    return Trained(ema.model if ema is not None else model, len(losses), count_parameters(model), spent, losses)


# ---------------------------------------------------------------------------------------- comparison

# One change at a time: each variant names its base and passes the change as keyword arguments.
VARIANTS: dict[str, tuple[Callable[..., Recipe], dict]] = {
    "ours": (ours, {}),
    "ours, ε-prediction": (ours, dict(objective="eps")),
    "peer": (peer, {}),
    "peer, small UNet": (peer, dict(unet=PEER_UNET_SMALL)),
    "peer, small UNet, v-prediction": (peer, dict(unet=PEER_UNET_SMALL, prediction_type="v_prediction")),
    "peer, small UNet, EMA": (peer, dict(unet=PEER_UNET_SMALL, ema_decay=0.999)),
}


def comparison(seconds: float | None, n_samples: int | Mapping[str, int], score: Callable[[Tensor], dict], *,
               seeds: Sequence[int] = (0, 1), variants: Mapping[str, Recipe] | None = None,
               steps: int | None = None, data: Tensor | None = None) -> list[dict]:
    """Train every variant for the same budget, interleaved (ours, peer, peer, ours: the order reverses with
    each seed, so machine noise hits all alike), and score each of its samplers' output with ``score``.

    ``n_samples`` is a count for every sampler, or a count per sampler name (samplers left out are skipped:
    DDPM-1000 costs 50× DPM-Solver-20). Every variant samples from the same x_T for a given seed. One row per
    (variant, seed, sampler), in the order run; ``score(x)``'s dict is merged into the row.
    """
    variants = dict(variants) if variants is not None else {k: make(**kw) for k, (make, kw) in VARIANTS.items()}
    rows = []
    for i, seed in enumerate(seeds):
        for name in list(variants) if i % 2 == 0 else list(variants)[::-1]:
            recipe = variants[name]
            run = train_for(recipe, seconds, steps=steps, seed=seed, data=data)
            for sampler_name, sampler in recipe.samplers.items():
                n = n_samples if isinstance(n_samples, int) else n_samples.get(sampler_name, 0)
                if n < 1:
                    continue
                x_T = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(10_000 + seed))
                start = time.perf_counter()
                x = sampler(run.model, x_T, torch.Generator().manual_seed(20_000 + seed))
                rows.append(dict(variant=name, seed=seed, steps=run.steps, params=run.params,
                                 train_seconds=round(run.seconds, 1), loss=round(sum(run.losses[-50:])
                                                                                 / len(run.losses[-50:]), 4),
                                 sampler=sampler_name, n=n, sample_seconds=round(time.perf_counter() - start, 1),
                                 **score(x)))
    return rows
