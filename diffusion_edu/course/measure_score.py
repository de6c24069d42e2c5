"""Chapter 06's headline figures for the benchmark: mode weights (Langevin vs annealed Langevin vs the multinomial
floor), the PF-ODE NLL against the true entropy, and VP against VE on digits (FDD ratio to the honest floor).

Each ``measure_*`` returns a plain dict (seeds, values, spread, goal met or not); ``render`` turns the dict of
``measure`` into markdown lines. The settings are the chapter's (notebooks/06_score_sde.ipynb), so the two agree.
"""
from __future__ import annotations

import math
import time

import torch

from .. import evaluate, pretrained
from ..exact import GaussianMixture
from ..likelihood import log_likelihood_path
from ..nets import MLPDenoiser
from ..parameterisations import EPS, Denoiser
from ..grids import karras_times, uniform_times
from ..processes import ve, vp
from ..samplers import annealed_langevin, euler_maruyama, langevin, ode_heun, prior, sample
from ..train import train

GOALS = dict(mode_weight_ratio=2.0, nll_gap_nats=0.05)  # ../shared/GOALS.md, chapter 06
MIXTURE = dict(means=[[-5.0, -5.0], [5.0, 5.0]], stds=1.0, weights=[0.2, 0.8])  # Song & Ermon (2019), Fig. 3
LANGEVIN = dict(step_size=0.1, steps=1000)  # plain Langevin on the data's own score
ANNEALED = dict(sigma_max=20.0, sigma_min=1.0, levels=20, steps_per_level=200, epsilon=0.3)
NLL_MODEL = dict(hidden=128, depth=3, time_scale=1000.0)
NLL_TRAINING = dict(steps=2000, batch_size=512, lr=2e-3, warmup=100)
DIGITS = dict(models=("digits-vp", "digits-ve"), ode_steps=20, sde_steps=100)


def mixture() -> GaussianMixture:
    return GaussianMixture(torch.tensor(MIXTURE["means"]), MIXTURE["stds"], MIXTURE["weights"])


def _spread(values: list[float]) -> dict:
    return dict(values=[round(v, 5) for v in values], mean=sum(values) / len(values), lo=min(values), hi=max(values))


def measure_mode_weights(n: int = 2000, seeds=(0, 1, 2), steps_per_level: int = ANNEALED["steps_per_level"]) -> dict:
    """Mode-weight error ½Σ|ŵ − w| of plain and annealed Langevin (exact scores), over seeds, against its floor."""
    gmm = mixture()
    path = ve(ANNEALED["sigma_min"], ANNEALED["sigma_max"])  # geometric σ's are uniform times on a VE path
    levels = uniform_times(ANNEALED["levels"] - 1)
    plain, annealed = [], []
    start = time.perf_counter()
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        x = 16 * torch.rand(n, 2, generator=g, dtype=torch.float64) - 8  # Song & Ermon start from U[−8, 8]²
        plain.append(gmm.mode_weight_error(sample(langevin, lambda z: gmm.score_at(z, 1.0, 0.0), x,
                                                  LANGEVIN["step_size"], LANGEVIN["steps"], generator=g)))
        annealed.append(gmm.mode_weight_error(sample(annealed_langevin, gmm.denoiser(path), x, levels,
                                                     steps_per_level=steps_per_level, epsilon=ANNEALED["epsilon"],
                                                     generator=g)))
    floor = gmm.mode_weight_floor(n)
    ratio = sum(annealed) / len(annealed) / floor
    return dict(n=n, seeds=list(seeds), floor=floor, langevin=_spread(plain), annealed=_spread(annealed),
                annealed_ratio=ratio, langevin_ratio=sum(plain) / len(plain) / floor, goal=GOALS["mode_weight_ratio"],
                met=ratio <= GOALS["mode_weight_ratio"], settings=dict(LANGEVIN=LANGEVIN, ANNEALED=ANNEALED,
                                                                       steps_per_level=steps_per_level),
                seconds=round(time.perf_counter() - start, 1))


def nll_model(steps: int = NLL_TRAINING["steps"], seed: int = 0) -> tuple[Denoiser, float]:
    """The chapter's 2-D ε-network on the VP path, trained on 20 000 draws of the mixture; (denoiser, seconds)."""
    data, _ = mixture().sample(20_000, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    net = MLPDenoiser(**NLL_MODEL)
    result = train(net, data, vp(), parameterisation=EPS, seed=seed, progress=False, **dict(NLL_TRAINING, steps=steps))
    return Denoiser(result.ema, vp(), EPS), result.seconds


def measure_nll(n: int = 4000, ode_steps: int = 100, train_steps: int = NLL_TRAINING["steps"], seed: int = 0) -> dict:
    """The PF-ODE NLL (nats) of n fresh mixture points under a trained model, against the mixture's entropy."""
    gmm = mixture()
    denoiser, seconds = nll_model(train_steps, seed)
    x, _ = gmm.sample(n, torch.Generator().manual_seed(seed + 1))
    x = x.double()
    denoiser.model.double()
    start = time.perf_counter()
    nll = -log_likelihood_path(denoiser, x, ode_steps)
    exact_nll = -log_likelihood_path(gmm.denoiser(vp()), x, ode_steps)
    true = -gmm.log_prob(x)
    entropy, entropy_se = gmm.entropy()
    gap = float(nll.mean()) - entropy
    kl = nll - true  # paired: the same points, so most of the sampling noise cancels
    return dict(n=n, ode_steps=ode_steps, train_steps=train_steps, train_seconds=round(seconds, 1),
                nll=float(nll.mean()), nll_se=float(nll.std() / math.sqrt(n)), entropy=entropy, entropy_se=entropy_se,
                gap=gap, kl=float(kl.mean()), kl_se=float(kl.std() / math.sqrt(n)),
                exact_model_error=float((exact_nll - true).abs().mean()), goal=GOALS["nll_gap_nats"],
                met=abs(gap) <= GOALS["nll_gap_nats"], seconds=round(time.perf_counter() - start, 1))


def measure_vp_ve(n: int = 500, seeds=(0, 1, 2), ode_steps: int = DIGITS["ode_steps"],
                  sde_steps: int = DIGITS["sde_steps"]) -> dict:
    """FDD / honest floor of the VP and VE digits U-Nets: the PF-ODE (Heun, Karras grid) and the reverse SDE
    (Euler–Maruyama, uniform grid), n samples per seed."""
    classifier = pretrained.load("digits-classifier").model
    floor = evaluate.fdd_floor(classifier, n)
    rows = []
    for name in DIGITS["models"]:
        ckpt = pretrained.load(name)
        d, path = ckpt.denoiser, ckpt.schedule
        for sampler, steps, nfe in ((ode_heun, ode_steps, 2 * ode_steps), (euler_maruyama, sde_steps, sde_steps)):
            ratios, start = [], time.perf_counter()
            for seed in seeds:
                x = prior(path, (n, 1, 8, 8), torch.Generator().manual_seed(seed))
                kwargs = {} if sampler is ode_heun else dict(generator=torch.Generator().manual_seed(seed + 100))
                times = karras_times(path, steps) if sampler is ode_heun else uniform_times(steps, path.t_min)
                out = sample(sampler, d, x, times, **kwargs).clamp(-1, 1)
                ratios.append(evaluate.fdd(classifier, out) / floor)
            rows.append(dict(model=name, path=path.name, sampler=sampler.__name__, steps=steps, nfe=nfe,
                             ratio=_spread(ratios), seconds=round(time.perf_counter() - start, 1),
                             train_seconds=ckpt.info.get("train_seconds")))
    return dict(n=n, seeds=list(seeds), floor=floor, rows=rows)


def measure(quick: bool = False) -> dict:
    """Every figure of the chapter; ``quick`` shrinks counts for a smoke run."""
    if quick:
        return dict(mode_weights=measure_mode_weights(500, (0,), steps_per_level=20),
                    nll=measure_nll(500, 20, train_steps=200), vp_ve=measure_vp_ve(100, (0,), 5, 10))
    return dict(mode_weights=measure_mode_weights(), nll=measure_nll(), vp_ve=measure_vp_ve())


def _met(flag: bool) -> str:
    return "met" if flag else "**not met**"


def render(result: dict) -> list[str]:
    """Markdown lines for ``measure``'s dict."""
    lines = ["## Chapter 06: score matching, Langevin and the SDE view", ""]
    if "mode_weights" in result:
        m = result["mode_weights"]
        s = m["settings"]["ANNEALED"]
        lines += [f"Mode weights of Song & Ermon's mixture (w = 0.2 / 0.8, modes ±(5, 5)), exact scores, n = {m['n']}, "
                  f"seeds {m['seeds']}; error ½Σ|ŵ − w|, multinomial floor {m['floor']:.4f}.", "",
                  "| sampler | error, mean (range) | × floor |", "|---|---|---|",
                  f"| Langevin at σ = 0 (δ = {m['settings']['LANGEVIN']['step_size']}, "
                  f"{m['settings']['LANGEVIN']['steps']} steps) | {m['langevin']['mean']:.4f} "
                  f"({m['langevin']['lo']:.4f}–{m['langevin']['hi']:.4f}) | {m['langevin_ratio']:.1f} |",
                  f"| annealed Langevin ({s['levels']} levels σ {s['sigma_max']:g}→{s['sigma_min']:g}, "
                  f"{m['settings']['steps_per_level']} steps each, ε = {s['epsilon']}) | {m['annealed']['mean']:.4f} "
                  f"({m['annealed']['lo']:.4f}–{m['annealed']['hi']:.4f}) | {m['annealed_ratio']:.2f} |", "",
                  f"Goal: annealed ≤ {m['goal']:g}× floor: {_met(m['met'])}.", ""]
    if "nll" in result:
        r = result["nll"]
        lines += [f"PF-ODE NLL of {r['n']} fresh mixture points under the chapter's MLP (VP path, ε, "
                  f"{r['train_steps']} steps, {r['train_seconds']} s), {r['ode_steps']} Heun steps: "
                  f"NLL {r['nll']:.4f} ± {r['nll_se']:.4f} nats against the entropy {r['entropy']:.4f} ± "
                  f"{r['entropy_se']:.4f}: gap {r['gap']:+.4f} (paired KL estimate {r['kl']:+.4f} ± {r['kl_se']:.4f}; "
                  f"the exact denoiser's mean |error| {r['exact_model_error']:.4f}). "
                  f"Goal |gap| ≤ {r['goal']:g}: {_met(r['met'])}.", ""]
    if "vp_ve" in result:
        v = result["vp_ve"]
        lines += [f"VP against VE on digits: FDD / honest floor ({v['floor']:.3f}) at n = {v['n']}, seeds {v['seeds']}.",
                  "", "| model | sampler | steps | NFE | FDD ratio, mean (range) | seconds |", "|---|---|---|---|---|---|"]
        for row in v["rows"]:
            r = row["ratio"]
            lines.append(f"| {row['model']} | {row['sampler']} | {row['steps']} | {row['nfe']} | "
                         f"{r['mean']:.2f} ({r['lo']:.2f}–{r['hi']:.2f}) | {row['seconds']} |")
        lines.append("")
    return lines
