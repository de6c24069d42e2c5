"""The benchmark report: ``diffusion-edu bench`` (or ``python -m diffusion_edu bench``) measures the shipped
checkpoints and writes ``docs/BENCHMARKS.md`` with a machine-readable JSON beside it.

Every figure is a ratio to its real floor (``evaluate.fdd_floor``, ``metrics.real_floor``), measured with fixed
seeds and sample counts. ``--quick`` shrinks every count for a CI smoke run; only a full run is committed.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from . import authoring, evaluate, pretrained
from .authoring import ROOT
from .data import TOY2D, digits, toy2d
from .guidance import cfg
from .metrics import mmd, real_floor, sliced_wasserstein
from .samplers import ddim, ddpm, dpm_solver_pp, euler, heun, model_evaluations, sample

SAMPLERS = (ddim, euler, heun, dpm_solver_pp, ddpm)
NFES = (5, 10, 20, 50, 100)
GUIDANCE = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0)
COND_W = 0.5  # the guidance of the conditional table: the smallest w in GUIDANCE meeting the accuracy goal
GOALS = dict(uncond_fdd_ratio=1.25, uncond_train_seconds=120, cond_accuracy=0.99, cond_fdd_ratio=2.0,
             dpm10_vs_ddpm1000=1.10, toy_sw_ratio=1.5, toy_train_seconds=60)


def steps_for(sampler, nfe: int) -> int:
    """The most sampler updates whose model evaluations fit in ``nfe`` (Heun: 2·steps − 1 ≤ nfe)."""
    return (nfe + 1) // 2 if sampler is heun else nfe


def digits_table(ckpt, classifier, floor: float, n: int, nfes, with_ddpm1000: bool, w: float | None = None) -> list[dict]:
    """FDD / floor (and accuracy, for a conditional model at guidance w) for every sampler and NFE."""
    rows = []
    y = torch.arange(10).repeat_interleave(n // 10 + 1)[:n] if w is not None else None
    model = ckpt.eps_model if w is None else cfg(ckpt.eps_model, w)
    x_T = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    runs = [(s, nfe) for s in SAMPLERS for nfe in nfes] + ([(ddpm, 1000)] if with_ddpm1000 else [])
    for sampler, budget in runs:
        steps = steps_for(sampler, budget)
        nfe = model_evaluations(sampler, steps)
        start = time.perf_counter()
        x = sample(sampler, model, x_T, ckpt.schedule, steps, y=y, generator=torch.Generator().manual_seed(2))
        seconds, distance = round(time.perf_counter() - start, 2), evaluate.fdd(classifier, x)
        row = dict(sampler=sampler.__name__, nfe=nfe, steps=steps, seconds=seconds,
                   fdd=round(distance, 3), fdd_ratio=round(distance / floor, 3))
        if y is not None:
            row["accuracy"] = round(evaluate.conditional_accuracy(classifier, x, y), 4)
        rows.append(row)
    return rows


def guidance_sweep(ckpt, classifier, floor: float, n: int) -> list[dict]:
    """Class accuracy and FDD / floor against the guidance scale w (0 = none), DPM-Solver++ at 20 steps."""
    y = torch.arange(10).repeat_interleave(n // 10 + 1)[:n]
    x_T = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    rows = []
    for w in GUIDANCE:
        x = sample(dpm_solver_pp, cfg(ckpt.eps_model, w), x_T, ckpt.schedule, 20, y=y)
        rows.append(dict(w=w, accuracy=round(evaluate.conditional_accuracy(classifier, x, y), 4),
                         fdd_ratio=round(evaluate.fdd(classifier, x) / floor, 3)))
    return rows


def training_curve(classifier, floor: float, n: int, every: int, steps: int | None = None) -> list[dict]:
    """Re-run the unconditional recipe, evaluating the EMA model every ``every`` steps (DPM-Solver++, 20 steps)."""
    from .schedules import get_schedule
    from .train import as_eps_model, train
    from .unet import UNet

    x, _ = digits("train")
    schedule = get_schedule(pretrained.DIGITS_SCHEDULE)
    x_T = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    curve = []

    def evaluate_now(step, result):
        xs = sample(dpm_solver_pp, as_eps_model(result.ema, schedule, recipe["objective"]), x_T, schedule, 20)
        curve.append(dict(step=step, train_seconds=round(result.seconds, 1),
                          fdd_ratio=round(evaluate.fdd(classifier, xs) / floor, 3)))

    recipe = dict(pretrained.DIGITS_TRAINING, **({"steps": steps} if steps else {}))
    torch.manual_seed(0)
    train(UNet(**pretrained.DIGITS_UNET), x, schedule, seed=0, progress=False, callback=evaluate_now,
          callback_every=every, **recipe)
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


def sampler_verification() -> dict:
    """Max |ours − diffusers| at 10 and 50 steps, and fitted convergence orders, measured with the tests' own
    harness (tests/test_diffusers_agreement.py, tests/test_samplers.py), so the report and the tests agree."""
    import importlib

    import diffusers

    sys.path.insert(0, str(ROOT / "tests"))
    A, S = importlib.import_module("test_diffusers_agreement"), importlib.import_module("test_samplers")
    schedule, model, x_T = A.make_setup()
    C, seed = A.COMMON, lambda: torch.Generator().manual_seed(1)  # noqa: E731
    oracle = {
        "DDPM": (ddpm, {}, lambda n: A.run_diffusers(diffusers.DDPMScheduler(**C, clip_sample=False, variance_type="fixed_small"), model, x_T, n, generator=seed())),
        "DDIM η = 0": (ddim, {"eta": 0.0}, lambda n: A.run_diffusers(diffusers.DDIMScheduler(**C, clip_sample=False, set_alpha_to_one=True, steps_offset=0), model, x_T, n, generator=seed(), eta=0.0)),
        "DDIM η = 1": (ddim, {"eta": 1.0}, lambda n: A.run_diffusers(diffusers.DDIMScheduler(**C, clip_sample=False, set_alpha_to_one=True, steps_offset=0), model, x_T, n, generator=seed(), eta=1.0)),
        "DPM-Solver++(2M)": (dpm_solver_pp, {}, lambda n: A.run_diffusers(diffusers.DPMSolverMultistepScheduler(**C, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", lower_order_final=True), model, x_T, n)),
        "Euler": (euler, {}, lambda n: A.run_diffusers(diffusers.EulerDiscreteScheduler(**C), model, x_T, n, sigma_space=True)),
    }
    agreement = [dict(sampler=name, **{f"steps_{n}": float(f"{(A.ours(fn, model, x_T, schedule, n, seed=1, **kw) - ref(n)).abs().max().item():.1e}") for n in (10, 50)})
                 for name, (fn, kw, ref) in oracle.items()]
    fits = {fn.__name__: S.fitted_order(fn, S.smooth_schedule()) for fn in (euler, ddim, heun, dpm_solver_pp)}
    orders = [dict(sampler=name, order=round(float(order), 2), errors=[float(f"{e:.1e}") for e in errors])
              for name, (order, errors) in fits.items()]
    return dict(agreement=agreement, orders=orders, diffusers=diffusers.__version__)


def proc_memory_mib(field: str, pid: int | str = "self") -> float:
    """A memory field of /proc/<pid>/status, in MiB (Linux): VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _peak_worker(task: str, queue) -> None:
    ckpt = pretrained.load("digits-uncond")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = proc_memory_mib("VmRSS")
    if task == "train":
        from .train import diffusion_loss
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


def run(quick: bool = False, out: str | os.PathLike = "docs/BENCHMARKS.md") -> dict:
    """Measure everything and write the report (Markdown) and ``<out>.json``; returns the figures."""
    n = 200 if quick else evaluate.N_EVAL
    classifier = pretrained.load("digits-classifier").model
    floor = evaluate.fdd_floor(classifier, n)
    uncond, cond = pretrained.load("digits-uncond"), pretrained.load("digits-cond")
    report = dict(
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
                f"({torch.get_num_threads()} threads), Python {platform.python_version()}",
        date=time.strftime("%Y-%m-%d"), quick=quick, n_eval=n, goals=GOALS,
        floor=dict(fdd=round(floor, 3), split_fdd=round(evaluate.split_fdd(classifier), 3),
                   classifier_accuracy=round(evaluate.accuracy(classifier, *digits("test")), 4)),
        checkpoints={k: dict(train_seconds=v.info.get("train_seconds")) for k, v in
                     (("digits-uncond", uncond), ("digits-cond", cond))},
        uncond=digits_table(uncond, classifier, floor, n, (10,) if quick else NFES, with_ddpm1000=not quick),
        cond=digits_table(cond, classifier, floor, n, (10,) if quick else (10, 20), with_ddpm1000=False, w=COND_W),
        guidance=guidance_sweep(cond, classifier, floor, n) if not quick else [],
        training_curve=training_curve(classifier, floor, n, every=10, steps=20) if quick
        else training_curve(classifier, floor, n, every=150),
        toys=toy_table(500 if quick else 2000),
        memory_mib=peak_memory(),
        notebooks=notebook_times(quick),
        grading=grading_times(quick),
        browser=None if quick else browser_test(),
        samplers=sampler_verification(),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.write_text(render(report))
    return report


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(str(r.get(key, "")) for key, _ in columns) + " |\n" for r in rows)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def render(r: dict) -> str:
    """The Markdown report of a ``run``."""
    g, floor = r["goals"], r["floor"]
    best20 = min((row for row in r["uncond"] if row["nfe"] <= 20), key=lambda row: row["fdd_ratio"])
    ddpm1000 = next((row for row in r["uncond"] if row["nfe"] == 1000), None)
    dpm10 = next(row for row in r["uncond"] if row["sampler"] == "dpm_solver_pp" and row["nfe"] == 10)
    cond_ok = [row for row in r["guidance"] if row["w"] <= 1 and row["accuracy"] >= g["cond_accuracy"]
               and row["fdd_ratio"] <= g["cond_fdd_ratio"]]
    reached = {level: next((c["train_seconds"] for c in r["training_curve"] if c["fdd_ratio"] <= level), None)
               for level in (2.0, 1.5, 1.25)}
    train_s = r["checkpoints"]["digits-uncond"]["train_seconds"]
    lines = [
        "# Benchmarks", "",
        "Written by `diffusion-edu bench`" + (" --quick (a smoke run: small counts, not for quoting)" if r["quick"] else "")
        + f" on {r['date']}. Machine: {r['machine']}. The JSON beside this file holds every figure.", "",
        f"Digits figures use {r['n_eval']} samples against the 360 test images. FDD's real floor is {floor['fdd']}: "
        f"{r['n_eval']} real train images drawn at random against the test split, averaged over 10 draws "
        f"(the stratified train split itself scores {floor['split_fdd']}; see `evaluate.fdd_floor`). "
        f"The feature classifier's test accuracy is {floor['classifier_accuracy']:.2%}.", "",
        "## Goals", "",
        "| goal | measured | verdict |", "|---|---|---|",
        f"| unconditional FDD ≤ {g['uncond_fdd_ratio']}× floor at ≤ 20 NFE | {best20['fdd_ratio']}× "
        f"({best20['sampler']}, {best20['nfe']} NFE) | {_met(best20['fdd_ratio'] <= g['uncond_fdd_ratio'])} |",
        f"| … after ≤ {g['uncond_train_seconds']} s of training | {train_s} s | "
        f"{_met(train_s is not None and train_s <= g['uncond_train_seconds'])} |",
    ]
    if r["guidance"]:
        best = max(cond_ok or r["guidance"][:3], key=lambda row: row["accuracy"])
        lines.append(f"| conditional accuracy ≥ {g['cond_accuracy']:.0%} at w ≤ 1 with FDD ≤ {g['cond_fdd_ratio']}× "
                     f"| {best['accuracy']:.2%}, {best['fdd_ratio']}× at w = {best['w']} | {_met(bool(cond_ok))} |")
    if ddpm1000:
        ratio = dpm10["fdd"] / ddpm1000["fdd"]
        lines.append(f"| DPM-Solver++ at 10 NFE within 10 % of DDPM-1000 FDD | {dpm10['fdd_ratio']}× vs "
                     f"{ddpm1000['fdd_ratio']}× floor (×{ratio:.2f}) | {_met(ratio <= g['dpm10_vs_ddpm1000'])} |")
    worst = max(r["toys"], key=lambda row: row["sw_ratio"])
    slowest = max(row["train_seconds"] for row in r["toys"])
    lines.append(f"| 2-D toys: sliced Wasserstein ≤ {g['toy_sw_ratio']}× floor after ≤ {g['toy_train_seconds']} s "
                 f"| worst {worst['sw_ratio']}× ({worst['data']}), slowest training {slowest} s | "
                 f"{_met(worst['sw_ratio'] <= g['toy_sw_ratio'] and slowest <= g['toy_train_seconds'])} |")
    if "samplers" in r:
        v = r["samplers"]
        lines += ["", f"## Samplers against diffusers {v['diffusers']} (bound: 1e-4)", "",
                  "Max |ours − diffusers| on 256 points, exact ε of a 3-component Gaussian mixture, linear schedule, "
                  "float64, same x_T and noise (tests/test_diffusers_agreement.py).", "",
                  _table(v["agreement"], [("sampler", "sampler"), ("steps_10", "10 steps"), ("steps_50", "50 steps")]),
                  "## Convergence order (bound: expected ± 0.3)", "",
                  "Max error against the exact probability-flow solution of N(μ, 0.5² I) on a grid smooth in σ "
                  "(σ(τ) = 80 τ³, T = 1280), slope over 20, 40, 80, 160 steps (tests/test_samplers.py). On DDPM's linear "
                  "schedule σ ∝ √t near clean data caps the last step at first order.", "",
                  _table(v["orders"], [("sampler", "sampler"), ("errors", "errors at 20 / 40 / 80 / 160 steps"),
                                       ("order", "fitted order")])]
    lines += ["", "## Unconditional digits: FDD / floor against model evaluations (NFE)", "",
              _table(r["uncond"], [("sampler", "sampler"), ("nfe", "NFE"), ("steps", "steps"),
                                   ("fdd_ratio", "FDD / floor"), ("seconds", "sampling s")]),
              "DDIM and Euler are one method (σ-space), hence equal rows. Heun fails below ~100 NFE here: on the "
              "cosine schedule σ_{T−1} ≈ 2e4, and its first trapezoid over [σ_1, 2e4] is badly wrong (chapter 04 "
              "derives the error and shows that an Euler first step repairs it).", "",
              f"## Conditional digits, guidance w = {COND_W}", "",
              _table(r["cond"], [("sampler", "sampler"), ("nfe", "NFE"), ("fdd_ratio", "FDD / floor"),
                                 ("accuracy", "class accuracy"), ("seconds", "sampling s")])]
    if r["guidance"]:
        lines += ["## Guidance sweep (DPM-Solver++, 20 steps; w = 0 is no guidance)", "",
                  _table(r["guidance"], [("w", "w"), ("accuracy", "class accuracy"), ("fdd_ratio", "FDD / floor")])]
    lines += ["## Training time to quality (unconditional recipe, EMA weights, DPM-Solver++ 20 steps)", "",
              " · ".join(f"≤ {lvl}× floor: " + (f"{s} s" if s is not None else "not reached")
                         for lvl, s in reached.items()), "",
              _table(r["training_curve"], [("step", "step"), ("train_seconds", "training s"),
                                           ("fdd_ratio", "FDD / floor")]),
              f"## 2-D toys (DPM-Solver++; {pretrained.TOY_EVAL['steps']} steps for the goal, and 20)", "",
              _table(r["toys"], [("data", "data"), ("train_seconds", "training s"),
                                 ("sw_ratio", f"SW / floor, {pretrained.TOY_EVAL['steps']} steps"),
                                 ("sw_ratio_20", "SW / floor, 20 steps"), ("mmd_ratio_20", "MMD² / floor, 20 steps")]),
              "## Peak memory (resident, MiB above the loaded process)", "",
              f"training step (batch {pretrained.DIGITS_TRAINING['batch_size']}): {r['memory_mib']['train']} · "
              f"sampling {evaluate.N_EVAL} digits: {r['memory_mib']['sample']}", "",
              "## Notebooks under nbval, fast mode (slowest first)", "",
              _table(r["notebooks"], [("notebook", "notebook"), ("seconds", "seconds"), ("passed", "passed")])]
    if r.get("grading"):
        lines += ["## Classroom", "",
                  "`diffusion-edu grade` on each chapter's solution, one submission at a time (its own worker and "
                  "kernel, fast mode, default limits); seconds include the kernel's start.", "",
                  _table(r["grading"], [("assignment", "assignment"), ("seconds", "seconds"),
                                        ("peak_memory_mb", "kernel peak MiB"), ("points", "points")])]
    if r.get("browser"):
        lines += [f"JupyterLab browser test (tests/test_browser.py, run alone: JupyterLab, Chromium, chapter 01 "
                  f"run top to bottom in fast mode and its slider moved): {r['browser']['seconds']} s, {r['browser']['summary']}.", ""]
    return "\n".join(lines) + "\n"
