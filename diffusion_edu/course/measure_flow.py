"""Chapter 07's headline figures for the benchmark: quality against NFE for the base, OT and reflowed flows.

Every figure is a ratio to an honest floor at the same sample size, a mean over seeds with its range:
- 2-D (``pretrained.FLOW_DATA``): energy distance to fresh real points over the real-vs-real energy distance
  (independent draws, no point repeated), ``metrics.real_floor``;
- digits: FDD over its real floor (``evaluate.fdd_ratio``: random class counts, no image repeated), in the CNN
  features and, as a check, the MLP's.
Samples come from ``ode_euler`` with NFE uniform steps (Euler is one call a step, so 1 NFE is possible);
straightness is Liu et al.'s S / D (``flow.straightness``). ``measure()`` returns plain dicts, ``render`` the
markdown lines of docs/BENCHMARKS.md.
"""
from __future__ import annotations

import time

import torch

from .. import evaluate, pretrained
from ..data import toy2d
from ..flow import straightness
from ..metrics import energy_distance, real_floor
from ..grids import uniform_times
from ..samplers import ode_euler, sample

NFES = (1, 2, 4, 8, 16, 32)
FLOWS = {"base": "-flow", "ot": "-flow-ot", "reflow": "-flow-reflow"}  # checkpoint suffixes
GOALS = dict(digits_reflow_fdd_ratio_2=1.6, toy_reflow_energy_ratio_1=2.0)  # ../shared/GOALS.md, chapter 07
SEEDS = (0, 1, 2)
TOY_SEEDS = (0, 1, 2, 3, 4)  # 2-D is cheap, and one draw of the energy distance scatters ~0.3–2× its mean
FLOOR_REPEATS = 10  # real-vs-real pairs behind the 2-D floor, for the same reason


def _spread(values) -> dict:
    values = [float(v) for v in values]
    sig = lambda v: float(f"{v:.4g}")  # noqa: E731  four significant figures (straightness runs to 1e-4)
    return dict(mean=sig(sum(values) / len(values)), lo=sig(min(values)), hi=sig(max(values)))


def measure_2d(n: int = 2000, seeds=TOY_SEEDS, nfes=NFES) -> dict:
    """Energy distance / floor at each NFE for the three 2-D flows, and their straightness, over ``seeds``.

    Seed s draws the noise from 1000 + s and the real reference from 3000 + s; the floor pairs real draws
    from seeds 100, 101, … (all distinct from the references)."""
    data = pretrained.FLOW_DATA
    floor = real_floor(energy_distance, lambda m, seed: toy2d(data, m, seed + 100), n, repeats=FLOOR_REPEATS)
    out = dict(data=data, n=n, seeds=list(seeds), floor=floor, flows={})
    for flow, suffix in FLOWS.items():
        denoiser = pretrained.load(data + suffix).denoiser
        rows = {}
        for nfe in nfes:
            ratios = [energy_distance(_draw(denoiser, (2,), n, s, nfe), toy2d(data, n, 3000 + s)) / floor
                      for s in seeds]
            rows[nfe] = _spread(ratios)
        s = [straightness(denoiser, torch.randn(500, 2, generator=torch.Generator().manual_seed(1000 + s)))
             for s in seeds]
        out["flows"][flow] = dict(energy_ratio=rows, straightness=_spread(s))
    ratio = out["flows"]["reflow"]["energy_ratio"].get(1)
    out["goal"] = dict(value=ratio, target=GOALS["toy_reflow_energy_ratio_1"],
                       met=None if ratio is None else ratio["mean"] <= GOALS["toy_reflow_energy_ratio_1"])
    return out


def measure_digits(n: int = evaluate.N_EVAL, seeds=SEEDS, nfes=NFES) -> dict:
    """FDD / floor at each NFE (CNN features, MLP as the check) for the three digits flows, with straightness."""
    judges = {space: pretrained.load(name).model
              for space, name in (("cnn", "digits-classifier"), ("mlp", "digits-classifier-mlp"))}
    floors = {space: evaluate.fdd_floor(c, n) for space, c in judges.items()}  # fdd_ratio's floor, once
    out = dict(n=n, seeds=list(seeds), flows={})
    for flow, suffix in FLOWS.items():
        ckpt = pretrained.load("digits" + suffix)
        denoiser = ckpt.denoiser
        rows = {}
        for nfe in nfes:
            start = time.perf_counter()
            xs = [_draw(denoiser, (1, 8, 8), n, s, nfe) for s in seeds]
            seconds = (time.perf_counter() - start) / len(seeds)
            rows[nfe] = {space: _spread(evaluate.fdd(c, x) / floors[space] for x in xs) for space, c in judges.items()}
            rows[nfe]["seconds"] = round(seconds, 2)
        s = [straightness(denoiser, torch.randn(200, 1, 8, 8, generator=torch.Generator().manual_seed(1000 + s)))
             for s in seeds]
        out["flows"][flow] = dict(fdd_ratio=rows, straightness=_spread(s),
                                  train_seconds=ckpt.info.get("train_seconds"))
    ratio = out["flows"]["reflow"]["fdd_ratio"].get(2, {}).get("cnn")
    out["goal"] = dict(value=ratio, target=GOALS["digits_reflow_fdd_ratio_2"],
                       met=None if ratio is None else ratio["mean"] <= GOALS["digits_reflow_fdd_ratio_2"])
    return out


def measure(quick: bool = False) -> dict:
    """Both tables; ``quick`` is a smoke run (fewer points, two seeds, NFE 1, 2 and 8)."""
    if quick:
        return dict(toy=measure_2d(500, TOY_SEEDS[:2], (1, 2, 8)), digits=measure_digits(200, SEEDS[:2], (1, 2, 8)))
    return dict(toy=measure_2d(), digits=measure_digits())


def _draw(denoiser, shape: tuple, n: int, seed: int, nfe: int) -> torch.Tensor:
    x1 = torch.randn((n,) + shape, generator=torch.Generator().manual_seed(1000 + seed))
    return sample(ode_euler, denoiser, x1, uniform_times(nfe))


def _cell(s: dict) -> str:
    return f"{s['mean']:.2f} ({s['lo']:.2f}–{s['hi']:.2f})"


def render(result: dict) -> list[str]:
    """Markdown lines: the two quality-against-NFE tables, straightness, and the two goals."""
    lines = ["## Chapter 07: flow matching and rectified flow", ""]
    toy, dig = result.get("toy"), result.get("digits")
    if toy:
        nfes = list(next(iter(toy["flows"].values()))["energy_ratio"])
        lines += [f"### 2-D ({toy['data']}): energy distance / floor against NFE (Euler)", "",
                  f"n = {toy['n']} points, {len(toy['seeds'])} seeds: mean (min–max); floor = real vs real at the "
                  f"same n ({toy['floor']:.2e}). Straightness S/D (Liu et al. 2022): 0 = straight paths.", "",
                  "| flow | " + " | ".join(f"NFE {k}" for k in nfes) + " | straightness |",
                  "|---|" + "---|" * (len(nfes) + 1)]
        for name, f in toy["flows"].items():
            lines.append(f"| {name} | " + " | ".join(_cell(f["energy_ratio"][k]) for k in nfes)
                         + f" | {f['straightness']['mean']:.2e} |")
        lines += ["", _goal_line("2-D energy distance at 1 NFE after reflow", toy["goal"]), ""]
    if dig:
        nfes = list(next(iter(dig["flows"].values()))["fdd_ratio"])
        lines += ["### Digits: FDD / floor against NFE (Euler)", "",
                  f"n = {dig['n']} digits, {len(dig['seeds'])} seeds: mean (min–max) in the CNN features, the MLP's "
                  "mean in brackets.", "",
                  "| flow | " + " | ".join(f"NFE {k}" for k in nfes) + " | straightness | train s |",
                  "|---|" + "---|" * (len(nfes) + 2)]
        for name, f in dig["flows"].items():
            lines.append(f"| {name} | " + " | ".join(f"{_cell(f['fdd_ratio'][k]['cnn'])} [{f['fdd_ratio'][k]['mlp']['mean']:.2f}]"
                                                    for k in nfes)
                         + f" | {f['straightness']['mean']:.2e} | {f['train_seconds']} |")
        lines += ["", _goal_line("digits FDD ratio at 2 NFE after reflow", dig["goal"]), ""]
    return lines


def _goal_line(what: str, goal: dict) -> str:
    if goal["value"] is None:
        return f"Goal, {what} ≤ {goal['target']}×: not measured."
    verdict = "met" if goal["met"] else "not met"
    return f"Goal, {what} ≤ {goal['target']}×: {_cell(goal['value'])}, **{verdict}**."
