"""Training a denoiser: the loss, the loop with EMA weights, and what a network predicts (chapters 02–03).

The simplified objective of Ho et al. (2020), Eq. 14, draws t uniformly, noises x_0 with ``q_sample`` and
regresses the network onto a target: ε ("eps", Ho et al.), x_0 ("x0") or v = √ᾱ ε − √(1 − ᾱ) x_0
("v", Salimans & Ho 2022). Samplers want ε, so ``as_eps_model`` turns any of the three into an ε-predictor.

Under ``torchrun`` the same ``train`` is data-parallel (PyTorch's DistributedDataParallel, Li et al. 2020):
``distributed()`` joins the process group, every rank draws the same global batch and keeps its own slice,
and averaging the gradients makes N ranks follow one process up to the order of float sums.
"""
from __future__ import annotations

import copy
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .forward import check_batch
from .parameterisations import EPS, Parameterisation, as_eps_model, check_parameterisation  # noqa: F401 (as_eps_model: its old home)

def diffusion_loss(model: nn.Module, x0: Tensor, schedule, parameterisation: Parameterisation = EPS,
                   y: Tensor | None = None, p_uncond: float = 0.0,
                   generator: torch.Generator | None = None, rows: slice = slice(None)) -> Tensor:
    """E_{t, ε} ‖target − model(x_t, t, y)‖²: Ho et al. (2020), Eq. 14 and Algorithm 1; chapters 02 and 06.

    ``schedule`` is a discrete ``NoiseSchedule`` (t uniform on its steps) or a continuous ``GaussianPath`` (t
    uniform on [t_min, 1]); the target is ``parameterisation``'s: ε (Ho et al.), x₀, v, the velocity of flow
    matching (Lipman et al. 2023, Eq. 23) or the score of denoising score matching (Vincent 2011, Eq. 9; unweighted
    here: Song & Ermon's 2019 weighting λ(σ) = σ² turns it into exactly the ε loss, chapter 06).
    With labels, each one is replaced by the null class with probability ``p_uncond`` (label dropout,
    Ho & Salimans 2022, Algorithm 1), so the same network also learns the unconditional model.
    ``rows`` averages over part of the batch only, after t, ε and the drops are drawn for all of it: a
    data-parallel rank keeps its own slice of the global batch, and its draws are still one process's.
    """
    check_parameterisation(parameterisation)
    check_batch(x0, "x0")
    if not 0 <= p_uncond <= 1:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    if p_uncond > 0 and y is None:
        raise ValueError("p_uncond > 0 needs labels y: label dropout drops labels")
    if p_uncond > 0 and getattr(model, "num_classes", None) is None:
        raise ValueError("p_uncond > 0 needs a conditional model (built with num_classes) with a null class")
    B, device = x0.shape[0], x0.device
    t = schedule.sample_times(B, generator).to(device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(device)
    c = schedule.coefficients(t, x0)
    x_t = c.alpha * x0 + c.sigma * noise  # q(x_t | x_0), Eq. 4; x_t = α(t) x_0 + σ(t) ε on a path
    if y is not None and p_uncond > 0:
        drop = (torch.rand(B, generator=generator) < p_uncond).to(device)
        y = torch.where(drop, torch.full_like(y, model.num_classes), y)  # index num_classes = null class ∅
    target = parameterisation.target(x0, noise, c)
    x_t, t, target, y = x_t[rows], t[rows], target[rows], None if y is None else y[rows]
    return ((model(x_t, t, y) - target) ** 2).mean()


class EMA:
    """Exponential moving average of a model's weights, θ̄ ← d θ̄ + (1 − d) θ (Polyak & Juditsky 1992).

    The decay warms up as min(d, (1 + n)/(10 + n)) so early averages forget the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if avg.is_floating_point():
                avg.lerp_(p, 1 - d)
            else:
                avg.copy_(p)
        self.updates += 1


@dataclass
class TrainResult:
    """What ``train`` returns: the trained network, its EMA copy (in eval mode), and the loss of every step."""

    model: nn.Module
    ema: nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def warmup_cosine(n: int, warmup: int, done: float, budget: float) -> float:
    """The learning-rate factor at step n: a linear warm-up over ``warmup`` steps, times a cosine decay from
    1 to 0 as ``done`` of the ``budget`` is spent (steps, or seconds; Loshchilov & Hutter 2017)."""
    return min(1.0, (n + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * done / budget))


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes in the torch.distributed group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def distributed(device: torch.device | str = "cpu") -> Iterator[torch.device]:
    """Join the process group that torchrun describes in the environment, yield this rank's device, then leave.

    gloo on the CPU; nccl on CUDA, one GPU per process: "cuda" becomes cuda:LOCAL_RANK. Without torchrun, or
    with one process (WORLD_SIZE unset or 1), nothing is joined and ``device`` comes back as given.
    """
    device = torch.device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"device must be cpu (gloo) or cuda (nccl) under torchrun, got {device}")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")  # rank, size, address: from torchrun
    try:
        yield device
    finally:
        dist.destroy_process_group()


def train(model: nn.Module, data: Tensor, schedule, *, steps: int = 2000, batch_size: int = 256,
          lr: float = 2e-3, parameterisation: Parameterisation = EPS, labels: Tensor | None = None,
          p_uncond: float = 0.0,
          ema_decay: float = 0.999, warmup: int = 100, weight_decay: float = 0.0, seed: int = 0,
          amp: bool = False, progress: bool = True, callback: Callable[[int, TrainResult], None] | None = None,
          callback_every: int = 100, loss: Callable[..., Tensor] | None = None) -> TrainResult:
    """Train ``model`` on ``data`` (all examples, (N, …)) with AdamW, a linear warm-up then cosine decay of the
    learning rate, and EMA weights; chapter 02. ``schedule`` and ``parameterisation`` are as ``diffusion_loss``'s.
    Seeded: the same seed gives the same weights on a CPU.

    ``callback(step, result)`` runs every ``callback_every`` steps with the result so far (to log or evaluate;
    its time is not counted in ``result.seconds``). ``amp=True`` runs the forward pass under bfloat16 autocast
    (mixed precision, Micikevicius et al. 2018; bf16 needs no loss scaling), on CUDA only.

    ``loss(net, x0, idx, generator)`` replaces ``diffusion_loss`` on each batch (``idx``: its rows of ``data``,
    ``generator``: the batches' own), e.g. chapter 07's flow-matching loss with a coupling (``flow.train_flow``);
    one process, no labels.

    Data-parallel when a process group of W > 1 ranks is initialised (torchrun, ``distributed()``): the model
    is wrapped in DistributedDataParallel and ``batch_size`` is the *global* batch B, so the recipe does not
    change with W. Every rank draws the same global batch (indices, t, ε, label drops: one seeded generator,
    exactly as one process draws them) and rank r computes the loss on its own shard, rows r·B/W to
    (r + 1)·B/W of that batch (not a fixed part of ``data``). DDP averages the gradients, so W ranks follow
    one process with batch B up to the order of float sums. Every rank runs ``callback`` and returns the same
    result (``losses`` are the global batch's); saving it is the caller's job, on rank 0. B (capped at
    len(data)) must be a multiple of W. Dropout masks, drawn per rank, are the one randomness that differs.
    """
    check_batch(data, "data")
    check_parameterisation(parameterisation)
    if labels is not None and len(labels) != len(data):
        raise ValueError(f"labels must have one entry per example ({len(data)}), got {len(labels)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be ≥ 1, got steps={steps}, batch_size={batch_size}")
    device = next(model.parameters()).device
    if loss is not None and (labels is not None or rank_and_world_size()[1] > 1):
        raise ValueError("loss replaces diffusion_loss on one process without labels: drop labels, or loss")
    if amp and device.type != "cuda":
        raise ValueError(f"amp=True (bfloat16 autocast) needs a model on CUDA, this one is on {device}")
    rank, world = rank_and_world_size()
    batch = min(batch_size, len(data))
    if batch % world:
        raise ValueError(f"batch_size is the global batch, split over {world} ranks: it must be a multiple of "
                         f"{world}, got {batch}" + (" (batch_size capped at len(data))" if batch < batch_size else ""))
    rows = slice(rank * batch // world, (rank + 1) * batch // world)  # this rank's shard of every batch
    torch.manual_seed(seed + rank)  # network-internal randomness, e.g. dropout: one stream per rank
    generator = torch.Generator().manual_seed(seed)  # the batches: the same draws on every rank
    model.train()
    net = model
    if world > 1:
        net = DistributedDataParallel(model)  # copies rank 0's weights to all; averages gradients in backward
        net.num_classes = getattr(model, "num_classes", None)  # the model contract, as ``as_eps_model`` keeps it
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda n: warmup_cosine(n, warmup, n, steps))
    ema = EMA(model, ema_decay)
    result = TrainResult(model, ema.model)
    start = time.perf_counter()
    for step in tqdm(range(1, steps + 1), desc="training", disable=not progress or rank > 0, mininterval=1.0):
        idx = torch.randint(0, len(data), (batch,), generator=generator)
        y = None if labels is None else labels[idx].to(device)
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            value = (diffusion_loss(net, data[idx].to(device), schedule, parameterisation, y, p_uncond, generator, rows)
                     if loss is None else loss(net, data[idx].to(device), idx, generator))
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        ema.update(model)
        result.losses.append(_global_mean(value.detach(), world))
        if callback is not None and step % callback_every == 0:
            result.seconds += time.perf_counter() - start
            callback(step, result)
            model.train()
            start = time.perf_counter()
    result.seconds += time.perf_counter() - start
    model.eval()
    return result


def _global_mean(loss: Tensor, world: int) -> float:
    """The global batch's loss: the mean of the ranks' losses, each the mean over an equal shard."""
    if world > 1:
        loss = loss.clone()
        dist.all_reduce(loss)  # sum over the ranks
        loss /= world
    return loss.item()
