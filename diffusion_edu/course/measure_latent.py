"""Chapter 09's headline figures for the benchmark: latent against pixel diffusion at equal training time.

Every FD is a ratio to its real floor at the same n (``attributes.fd_floor``: fresh real test scenes, none
repeated), in the attribute classifier's features and, as a check, the pixel MLP's; a mean over seeds with its
range. The **reconstruction floor** is the FD of D(E(x)) for fresh real scenes: what a perfect latent model
would score. Samples come from DPM-Solver++ at each step count; milliseconds per sample are wall-clock on this
machine, the decoder included for the latent model. **Speed-up at equal FD**: for the pixel model's best
configuration, the cheapest latent configuration that reaches its FD (mean, CNN features), and the ratio of
their milliseconds per sample (goal ≥ 3×, ../shared/GOALS.md). ``measure()`` returns plain dicts, ``render``
the markdown lines of docs/BENCHMARKS.md.
"""
from __future__ import annotations

import time

import torch

from .. import attributes, latent, pretrained
from ..samplers import dpm_solver_pp, sample

STEPS = (5, 10, 20)
SEEDS = (0, 1, 2)
MODELS = ("shapes-latent", "shapes-pixel")
GOAL = 3.0  # speed-up per sample at equal FD, ../shared/GOALS.md


def _spread(values) -> dict:
    values = [float(v) for v in values]
    return dict(mean=round(sum(values) / len(values), 3), lo=round(min(values), 3), hi=round(max(values), 3))


def _generate(ckpt, ae, n: int, steps: int, seed: int) -> torch.Tensor:
    lat = ckpt.name == "shapes-latent"
    x_T = torch.randn(n, *((4, 8, 8) if lat else (3, 32, 32)), generator=torch.Generator().manual_seed(1000 + seed))
    x0 = sample(dpm_solver_pp, ckpt.eps_model, x_T, ckpt.schedule, steps)
    return latent.decode(ae.model, x0, ae.info["scale"]) if lat else x0.clamp(-1, 1)


def measure(quick: bool = False) -> dict:
    """The table; ``quick`` is a smoke run (200 samples, two seeds, 5 and 10 steps)."""
    n, seeds, steps = (200, SEEDS[:2], STEPS[:2]) if quick else (attributes.N_EVAL, SEEDS, STEPS)
    judges = {space: pretrained.load(name).model
              for space, name in (("cnn", "shapes-classifier"), ("mlp", "shapes-classifier-mlp"))}
    floors = {space: attributes.fd_floor(j, n) for space, j in judges.items()}
    ratio = lambda x: {space: attributes.fd(j, x) / floors[space] for space, j in judges.items()}  # noqa: E731
    ae = pretrained.load("shapes-autoencoder")
    s = ae.info["scale"]
    recon = [ratio(latent.decode(ae.model, latent.encode(ae.model, attributes.real_scenes(n, 10 + k), s), s))
             for k in seeds]
    out = dict(n=n, seeds=list(seeds), floors={k: round(v, 3) for k, v in floors.items()},
               reconstruction={space: _spread(r[space] for r in recon) for space in judges},
               autoencoder=dict(train_seconds=ae.info["train_seconds"], scale=s), models={})
    for name in MODELS:
        ckpt = pretrained.load(name)
        rows = {}
        for k in steps:
            xs, seconds = [], []
            for seed in seeds:
                start = time.perf_counter()
                xs.append(_generate(ckpt, ae, n, k, seed))
                seconds.append(time.perf_counter() - start)
            rs = [ratio(x) for x in xs]
            rows[k] = dict({space: _spread(r[space] for r in rs) for space in judges},
                           ms=round(1000 * min(seconds) / n, 3))
        out["models"][name] = dict(rows=rows, train_seconds=ckpt.info["train_seconds"],
                                   steps=ckpt.info["training"]["steps"],
                                   parameters=sum(p.numel() for p in ckpt.model.parameters()))
    out["goal"] = speed_up(out)
    return out


def speed_up(result: dict, space: str | None = None) -> dict:
    """Pixel model's best FD (mean) and the cheapest latent configuration that reaches it: their ms ratio, in one
    feature space, or (``space=None``) in both: the smaller of the two, which must meet the goal."""
    if space is None:
        both = {s: speed_up(result, s) for s in ("cnn", "mlp")}
        worst = min(both.values(), key=lambda g: -1.0 if g["value"] is None else g["value"])
        return dict(worst, space=worst["space"], by_space=both)
    pixel, lat = result["models"]["shapes-pixel"]["rows"], result["models"]["shapes-latent"]["rows"]
    k_pix = min(pixel, key=lambda k: pixel[k][space]["mean"])
    target = pixel[k_pix][space]["mean"]
    reach = [k for k in lat if lat[k][space]["mean"] <= target]
    if not reach:
        return dict(space=space, pixel_steps=k_pix, latent_steps=None, value=None, target=GOAL, met=False)
    k_lat = min(reach, key=lambda k: lat[k]["ms"])
    value = pixel[k_pix]["ms"] / lat[k_lat]["ms"]
    return dict(space=space, pixel_steps=k_pix, latent_steps=k_lat, value=round(value, 2), target=GOAL,
                met=value >= GOAL)


def _cell(s: dict) -> str:
    return f"{s['mean']:.2f} ({s['lo']:.2f}–{s['hi']:.2f})"


def render(result: dict) -> list[str]:
    """Markdown lines: the latent-vs-pixel table, the reconstruction floor and the goal."""
    r, g = result, result["goal"]
    lines = ["## Chapter 09: latent against pixel diffusion, equal training time", "",
             f"32×32 shape scenes; n = {r['n']} samples, {len(r['seeds'])} seeds: mean (min–max) of FD / real floor "
             f"(fresh real test scenes at the same n; floors {r['floors']['cnn']:.2f} CNN, {r['floors']['mlp']:.2f} "
             "MLP). DPM-Solver++; ms per sample on this machine (one thread), the decoder included for the latent "
             f"model. Reconstruction floor (FD of D(E(x)), real scenes): {_cell(r['reconstruction']['cnn'])} CNN, "
             f"{_cell(r['reconstruction']['mlp'])} MLP. The autoencoder's own training "
             f"({r['autoencoder']['train_seconds']:.0f} s) is paid once and not counted below.", "",
             "| model | params | training steps | training s | steps | ms / sample | FD / floor (CNN) | 2nd space (MLP) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        for k, row in m["rows"].items():
            lines.append(f"| {name} | {m['parameters']:,} | {m['steps']} | {m['train_seconds']:.0f} | {k} | "
                         f"{row['ms']:.2f} | {_cell(row['cnn'])} | {_cell(row['mlp'])} |")
    parts = []
    for space, s in g.get("by_space", {g.get("space", "cnn"): g}).items():
        parts.append(f"{space.upper()} features: never reached (pixel's best at {s['pixel_steps']} steps)"
                     if s["value"] is None else
                     f"{space.upper()} features: {s['value']:.1f}× (pixel at {s['pixel_steps']} steps against latent "
                     f"at {s['latent_steps']})")
    verdict = "**met**" if g["met"] else "**not met**"
    return lines + ["", f"Speed-up per sample at equal FD: {'; '.join(parts)}. Goal ≥ {g['target']:g}× in both: {verdict}.", ""]
