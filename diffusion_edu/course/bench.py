"""The benchmark report: ``diffusion-edu bench`` (or ``python -m diffusion_edu bench``) measures the shipped
checkpoints and writes ``docs/BENCHMARKS.md`` with a machine-readable JSON beside it.

Every figure is a ratio to its real floor (``evaluate.fdd_floor``, ``metrics.real_floor``), measured with fixed
seeds and sample counts. ``--quick`` shrinks every count for a CI smoke run; only a full run is committed.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from .. import evaluate, pretrained
from . import authoring
from .authoring import ROOT
from . import measure_flow, measure_latent, measure_score, verify
from .memory import proc_memory_mib
from ..data import TOY2D, digits, toy2d
from ..guidance import cfg
from ..metrics import mmd, real_floor, sliced_wasserstein
from ..samplers import ddim, ddpm, dpm_solver_pp, heun, model_evaluations, sample

SAMPLERS = (ddim, heun, dpm_solver_pp, ddpm)  # Euler is DDIM in σ-space (tests/test_samplers.py): same numbers
NFES = (5, 10, 20, 50)
GUIDANCE = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0)
COND_W = 0.5  # the guidance of the conditional table: the smallest w in GUIDANCE meeting the accuracy goal
GOALS = dict(uncond_fdd_ratio_20=1.20, uncond_fdd_ratio_10=1.35, quick_fdd_ratio=1.5, quick_train_seconds=120,
             cond_accuracy=0.99, cond_fdd_ratio=1.5, cond_max_w=0.5, dpm10_vs_ddpm1000=1.10, toy_sw_ratio=1.5,
             toy_train_seconds=60)


def steps_for(sampler, nfe: int) -> int:
    """The most sampler updates whose model evaluations fit in ``nfe`` (Heun: 2·steps − 1 ≤ nfe)."""
    return (nfe + 1) // 2 if sampler is heun else nfe


def draw(sampler, model, schedule, steps: int, n: int, seed: int, y=None):
    """n digits from one seed: x_T from seed 1000 + s, the sampler's own noise from 2000 + s."""
    x_T = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1000 + seed))
    return sample(sampler, model, x_T, schedule, steps, y=y, generator=torch.Generator().manual_seed(2000 + seed))


def figures(judges: dict, xs: list, labels=None) -> dict:
    """Every figure of one setting, from its samples over ``evaluate.SEEDS`` (asked for ``labels``, if any), in
    each feature space: FDD / floor (mean, min, max), FD∞ (beside the real one in ``floors``: a ratio would
    divide by a noisy small number), KID ± SE (the mean KID over the seeds, and the SE of that mean). The one
    place the bench scores."""
    out = {}
    for space, (classifier, _) in judges.items():
        ratio = evaluate.fdd_ratios(classifier, xs, labels)
        kids = [evaluate.kid(classifier, x) for x in xs]
        fd_inf = evaluate.Spread(tuple(evaluate.fdd_infinity(classifier, x) for x in xs))
        out[space] = dict(fdd_ratio=round(ratio.mean, 3), lo=round(ratio.lo, 3), hi=round(ratio.hi, 3),
                          fd_inf=round(fd_inf.mean, 2), fd_inf_lo=round(fd_inf.lo, 2), fd_inf_hi=round(fd_inf.hi, 2),
                          kid=round(sum(k for k, _ in kids) / len(kids), 4),
                          kid_se=round(math.sqrt(sum(se**2 for _, se in kids)) / len(kids), 4))
    return out


def floors(classifier, n: int) -> dict:
    """The real floor at n in one feature space, how far one real draw scatters about it (10 draws), and the
    two wrong floors it replaces: the stratified split (equal class counts, the conditional floor) and a
    draw with replacement (the course's floor until 2026-12)."""
    train = digits("train")[0]
    g = torch.Generator().manual_seed(0)
    floor = evaluate.fdd_floor(classifier, n)
    draws = evaluate.Spread(tuple(evaluate.fdd(classifier, evaluate.real_digits(n, 100 + d)) / floor for d in range(10)))
    with_repeats = sum(evaluate.fdd(classifier, train[torch.randint(0, len(train), (n,), generator=g)])
                       for _ in range(10)) / 10
    equal = torch.arange(10).repeat_interleave(n // 10 + 1)[:n]
    real = [evaluate.real_digits(n, 200 + d) for d in range(3)]
    kids = [evaluate.kid(classifier, x) for x in real]
    return dict(fdd=round(floor, 3), draw_lo=round(draws.lo, 3), draw_hi=round(draws.hi, 3),
                stratified=round(evaluate.fdd_floor(classifier, n, equal), 3), with_repeats=round(with_repeats, 3),
                fd_inf=round(sum(evaluate.fdd_infinity(classifier, x) for x in real) / len(real), 2),
                kid=round(sum(k for k, _ in kids) / len(kids), 4),
                kid_se=round(math.sqrt(sum(se**2 for _, se in kids)) / len(kids), 4),
                accuracy=round(evaluate.accuracy(classifier, *digits("test")), 4))


def digits_table(ckpt, judges: dict, n: int, nfes, seeds, with_ddpm1000: bool, w: float | None = None,
                 samplers=SAMPLERS) -> list[dict]:
    """Figures (and class accuracy, for a conditional model at guidance w) for every sampler and NFE."""
    rows = []
    y = torch.arange(10).repeat_interleave(n // 10 + 1)[:n] if w is not None else None
    model = ckpt.eps_model if w is None else cfg(ckpt.eps_model, w)
    runs = [(s, nfe) for s in samplers for nfe in nfes] + ([(ddpm, 1000)] if with_ddpm1000 else [])
    for sampler, budget in runs:
        steps = steps_for(sampler, budget)
        start = time.perf_counter()
        xs = [draw(sampler, model, ckpt.schedule, steps, n, seed, y) for seed in seeds]
        row = dict(sampler=sampler.__name__, nfe=model_evaluations(sampler, steps), steps=steps,
                   seconds=round((time.perf_counter() - start) / len(seeds), 2), **figures(judges, xs, y))
        if y is not None:
            row["accuracy"] = round(sum(evaluate.conditional_accuracy(judges["cnn"][0], x, y) for x in xs) / len(xs), 4)
        rows.append(row)
    return rows


def guidance_sweep(ckpt, judges: dict, n: int, seeds) -> list[dict]:
    """Class accuracy and the figures against the guidance scale w (0 = none), DPM-Solver++ at 20 steps."""
    y = torch.arange(10).repeat_interleave(n // 10 + 1)[:n]
    rows = []
    for w in GUIDANCE:
        xs = [draw(dpm_solver_pp, cfg(ckpt.eps_model, w), ckpt.schedule, 20, n, seed, y) for seed in seeds]
        rows.append(dict(w=w, accuracy=round(sum(evaluate.conditional_accuracy(judges["cnn"][0], x, y)
                                                 for x in xs) / len(xs), 4), **figures(judges, xs, y)))
    return rows


def training_curve(judges: dict, n: int, every: int, seeds, steps: int | None = None) -> list[dict]:
    """Re-run the 2-minute recipe (``pretrained.DIGITS_QUICK``), scoring the EMA model every ``every`` steps
    (DPM-Solver++, 20 steps; one seed along the way, all ``seeds`` at the end)."""
    from ..schedules import get_schedule
    from ..parameterisations import as_eps_model, named
    from ..train import train
    from ..nets import UNet

    x, _ = digits("train")
    schedule = get_schedule(pretrained.DIGITS_SCHEDULE)
    recipe = dict(pretrained.DIGITS_QUICK, **({"steps": steps} if steps else {}))
    if recipe["steps"] % every:
        raise ValueError(f"every ({every}) must divide the recipe's steps ({recipe['steps']})")
    curve = []

    def evaluate_now(step, result):
        last = step == recipe["steps"]
        model = as_eps_model(result.ema, schedule, named(recipe["objective"]))
        xs = [draw(dpm_solver_pp, model, schedule, 20, n, seed) for seed in (seeds if last else seeds[:1])]
        curve.append(dict(step=step, train_seconds=round(result.seconds, 1), seeds=len(xs), **figures(judges, xs)))

    torch.manual_seed(0)
    train(UNet(**pretrained.DIGITS_UNET), x, schedule, seed=0, progress=False, callback=evaluate_now,
          callback_every=every, **pretrained.training_args(recipe))
    return curve


def toy_table(n: int) -> list[dict]:
    """Sliced Wasserstein and MMD of every toy checkpoint as ratios to their real floors, for DPM-Solver++ at
    20 steps and at the checkpoints' evaluation setting (``pretrained.TOY_EVAL``)."""
    rows = []
    for name in TOY2D:
        ckpt = pretrained.load(f"toy-{name}")
        x = sample(dpm_solver_pp, ckpt.eps_model, torch.randn(n, 2, generator=torch.Generator().manual_seed(1)),
                   ckpt.schedule, 20)
        real = lambda m, seed: toy2d(name, m, seed + 100)  # noqa: E731
        rows.append(dict(data=name, train_seconds=ckpt.info["train_seconds"],
                         sw_ratio=round(pretrained.toy_sw_ratio(ckpt.eps_model, ckpt.schedule, name, n), 3),
                         sw_ratio_20=round(sliced_wasserstein(x, toy2d(name, n, 7)) / real_floor(sliced_wasserstein, real, n), 3),
                         mmd_ratio_20=round(mmd(x, toy2d(name, n, 7)) / real_floor(mmd, real, n), 3)))
    return rows


def _peak_worker(task: str, queue) -> None:
    ckpt = pretrained.load("digits-uncond")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = proc_memory_mib("VmRSS")
    if task == "train":
        from ..train import diffusion_loss
        x, _ = digits("train")
        model = ckpt.model.train().requires_grad_(True)
        opt = torch.optim.AdamW(model.parameters())
        for _ in range(5):
            loss = diffusion_loss(model, x[: pretrained.DIGITS_TRAINING["batch_size"]], ckpt.schedule)
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        sample(dpm_solver_pp, ckpt.eps_model, torch.randn(evaluate.N_EVAL, 1, 8, 8), ckpt.schedule, 3)
    queue.put(proc_memory_mib("VmHWM") - base)


def peak_memory() -> dict:
    """Peak resident memory added by training steps (recipe batch) and by sampling N_EVAL digits, in MiB,
    each in a fresh process with the checkpoint already loaded (Linux: /proc peak-RSS reset)."""
    ctx, out = mp.get_context("spawn"), {}
    for task in ("train", "sample"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_worker, args=(task, queue))
        proc.start()
        out[task] = round(queue.get(timeout=600), 1)
        proc.join()
    return out


def _pytest(path: str, *options: str) -> tuple[float, subprocess.CompletedProcess]:
    """pytest on one path of the checkout, in fast mode as ``make test`` runs it: (seconds, the process)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, path],
                          cwd=ROOT, env=dict(os.environ, DIFFUSION_EDU_FAST="1"), capture_output=True, text=True)
    return round(time.perf_counter() - start, 1), proc


def notebook_times(quick: bool) -> list[dict]:
    """Wall time of every notebook under nbval in fast mode, slowest first (as ``make test`` runs them)."""
    rows = []
    for nb in authoring.notebooks()[:1] if quick else authoring.notebooks():
        seconds, proc = _pytest(str(nb))
        rows.append(dict(notebook=str(nb.relative_to(ROOT)), seconds=seconds, passed=proc.returncode == 0))
    return sorted(rows, key=lambda r: -r["seconds"])


def grading_times(quick: bool) -> list[dict]:
    """Seconds and peak kernel memory to grade each chapter's solution with ``diffusion-edu grade`` (one
    submission at a time, default limits), and the points it scored."""
    import tempfile

    from . import grade

    solutions = sorted((ROOT / "solutions").glob("*.ipynb"))
    rows = []
    for solution in solutions[:1] if quick else solutions:
        with tempfile.TemporaryDirectory() as tmp:
            [row] = grade.grade([solution], solution.stem, Path(tmp) / "grades.csv", progress=False)
        rows.append(dict(assignment=solution.stem, seconds=row["seconds"], peak_memory_mb=row["peak_memory_mb"],
                         points=f"{row['points']} / {row['max_points']}"))
    return rows


def browser_test() -> dict:
    """Wall time and outcome of the JupyterLab browser test (tests/test_browser.py), run alone."""
    seconds, proc = _pytest("tests/test_browser.py", "-rs")
    last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    return dict(seconds=seconds, summary=last.strip("= "))


def judges(n: int) -> dict:
    """The two feature spaces, each with its classifier and its real floors at n."""
    out = {}
    for space, name in (("cnn", "digits-classifier"), ("mlp", "digits-classifier-mlp")):
        classifier = pretrained.load(name).model
        out[space] = (classifier, floors(classifier, n))
    return out


def counts(quick: bool) -> tuple[int, tuple[int, ...]]:
    """Digits per figure and the sampler seeds behind it: the full run's, or the smoke run's smaller ones."""
    return (200, evaluate.SEEDS[:2]) if quick else (evaluate.N_EVAL, evaluate.SEEDS)


def check_sections(only, quick: bool) -> None:
    """Refuse section names the report does not have, naming the ones it does."""
    unknown = sorted(set(only or ()) - set(sections(quick)))
    if unknown:
        raise ValueError(f"only must name sections among {sorted(sections(quick))}, got {unknown}")


def sections(quick: bool) -> dict:
    """Every part of the report: name → a function of the judges that measures it."""
    n, seeds = counts(quick)
    uncond, cond = (lambda: pretrained.load("digits-uncond")), (lambda: pretrained.load("digits-cond"))
    return dict(
        uncond=lambda j: digits_table(uncond(), j, n, (10,) if quick else NFES, seeds, with_ddpm1000=False),
        ddpm1000=lambda j: [] if quick else digits_table(uncond(), j, n, (), seeds, with_ddpm1000=True),
        cond=lambda j: digits_table(cond(), j, n, (10,) if quick else (10, 20), seeds, with_ddpm1000=False, w=COND_W,
                                    samplers=(dpm_solver_pp, ddim)),
        guidance=lambda j: [] if quick else guidance_sweep(cond(), j, n, seeds),
        training_curve=lambda j: training_curve(j, n, every=10, seeds=seeds, steps=20) if quick
        else training_curve(j, n, every=pretrained.DIGITS_QUICK["steps"] // 8, seeds=seeds),
        peer=lambda j: [] if quick else peer_comparison(j),
        toys=lambda j: toy_table(500 if quick else 2000),
        memory_mib=lambda j: peak_memory(),
        notebooks=lambda j: notebook_times(quick),
        grading=lambda j: grading_times(quick),
        browser=lambda j: None if quick else browser_test(),
        samplers=lambda j: verify.sampler_verification(),
        score=lambda j: measure_score.measure(quick),  # chapter 06
        flow=lambda j: measure_flow.measure(quick),  # chapter 07
        latent=lambda j: measure_latent.measure(quick),  # chapter 09
    )


PEER_SECONDS = 90  # training budget of every run in the peer comparison (the issue tried 150–230 s by hand)
PEER_N = 500  # samples per run and sampler; DDPM-1000 costs 50× DPM-20, so it gets fewer (floors at the same n)
PEER_N_DDPM = {"peer": 100, "peer, small UNet": 200}


def peer_comparison(judges: dict) -> list[dict]:
    """Our recipe against the Hugging Face course's (``peer.py``), the same wall-clock budget each, interleaved
    (ours, peer, peer, ours) over two seeds; then one change at a time, one seed each, to say *why*."""
    from . import peer

    def score(x):
        return {space: round(evaluate.fdd_ratio(classifier, x), 3) for space, (classifier, _) in judges.items()}

    def n_for(name):
        return {s: PEER_N_DDPM.get(name, 0) if s.startswith("diffusers ddpm") else PEER_N
                for s in ("dpm_solver_pp-20", "dpm_solver_pp-10", "diffusers dpm_solver-20", "diffusers ddpm-1000")}

    def run(names, seeds):
        rows = []
        for name in names:  # comparison() interleaves within one call; n differs per variant, so one call each
            make, kw = peer.VARIANTS[name]
            rows.append((name, make(**kw)))
        out = []
        for i, seed in enumerate(seeds):
            for name, recipe in rows if i % 2 == 0 else rows[::-1]:
                out += peer.comparison(PEER_SECONDS, n_for(name), score, seeds=(seed,), variants={name: recipe})
        return out

    return run(["ours", "peer"], (0, 1)) + run(["ours, ε-prediction", "peer, small UNet",
                                                 "peer, small UNet, v-prediction", "peer, small UNet, EMA"], (0,))
