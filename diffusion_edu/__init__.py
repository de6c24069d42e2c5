"""diffusion_edu: the companion package of the diffusion-edu course.

The mathematics, each module one concept read beside the chapter that derives it: ``schedules`` and ``forward``
(01), ``processes`` (continuous-time paths, 06–07) and ``grids`` (their time grids), ``parameterisations`` (ε, x₀, v, velocity, score and the
``Denoiser`` every sampler calls), ``train`` and ``exact`` (02), ``samplers/`` (02, 04, 06, 07), ``guidance``
(05), ``likelihood`` (04, 06), ``metrics`` and ``evaluate`` (digits quality against honest floors). Networks
live in ``nets/``, data in ``data/``, exercise checks in ``checks/``, shipped weights in ``pretrained``, and
the course's tooling (grader, benchmark, authoring, CLI) in ``course/``, which nothing above imports.
The names below are the ones notebooks use.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .data import digits, fashion_mnist, mnist, toy2d, TOY2D
from .exact import GaussianMixture, gaussian, gaussian_flow_solution
from .forward import eps_from_v, eps_from_x0, q_posterior, q_sample, v_target, x0_from_eps
from .guidance import cfg
from .likelihood import log_likelihood, log_likelihood_path
from .metrics import energy_distance, frechet_distance, mmd, real_floor, sliced_wasserstein
from .nets import MLPDenoiser, UNet, count_parameters, timestep_embedding
from .parameterisations import EPS, SCORE, V, VELOCITY, X0, Denoiser, Parameterisation, as_eps_model, on_schedule
from .grids import karras_sigmas, karras_times, uniform_times
from .processes import GaussianPath, cosine_vp, from_schedule, rectified, sub_vp, ve, vp
from .samplers import (Step, ddim, ddpm, dpm_solver_pp, euler, heun, model_evaluations, ode_euler, ode_evaluations,
                       ode_heun, ode_midpoint, sample, timesteps)
from .samplers import annealed_langevin, euler_maruyama, langevin, predictor_corrector, prior
from .schedules import NoiseSchedule, cosine, get_schedule, linear, sigmoid
from .train import EMA, TrainResult, diffusion_loss, train
from .viz import animate_trajectory, make_grid, plot_trajectory, scatter2d, show_images
from .flow import (cfm_loss, cfm_sample, independent_coupling, ot_coupling, ot_permutation, reflow_pairs,
                   straightness, train_flow, trajectory_straightness)
from . import data, evaluate, flow, nets, parameterisations, pretrained, processes  # noqa: E402,F401  (de.nets.embed, …)

__version__ = "0.1.0"


def device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; returns a fresh ``torch.Generator`` seeded the same, for samplers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fast_mode() -> bool:
    """True when ``DIFFUSION_EDU_FAST=1`` (set by ``make test``): notebooks then shrink step and sample counts."""
    return os.environ.get("DIFFUSION_EDU_FAST", "0").strip().lower() not in ("", "0", "false", "no")


__all__ = [
    "NoiseSchedule", "linear", "cosine", "sigmoid", "get_schedule",
    "q_sample", "q_posterior", "x0_from_eps", "eps_from_x0", "v_target", "eps_from_v",
    "GaussianMixture", "gaussian", "gaussian_flow_solution",
    "GaussianPath", "vp", "sub_vp", "cosine_vp", "ve", "rectified", "from_schedule", "uniform_times",
    "karras_sigmas", "karras_times",
    "Parameterisation", "EPS", "X0", "V", "VELOCITY", "SCORE", "Denoiser", "as_eps_model", "on_schedule",
    "MLPDenoiser", "UNet", "timestep_embedding", "count_parameters",
    "diffusion_loss", "train", "TrainResult", "EMA", "as_eps_model",
    "Step", "timesteps", "ddpm", "ddim", "euler", "heun", "dpm_solver_pp", "sample", "model_evaluations",
    "ode_euler", "ode_midpoint", "ode_heun", "ode_evaluations",
    "euler_maruyama", "predictor_corrector", "langevin", "annealed_langevin", "prior", "log_likelihood_path",
    "cfg", "log_likelihood",
    "toy2d", "TOY2D", "digits", "mnist", "fashion_mnist",
    "sliced_wasserstein", "mmd", "frechet_distance", "real_floor", "energy_distance",
    "flow", "independent_coupling", "ot_permutation", "ot_coupling", "cfm_sample", "cfm_loss", "train_flow",
    "reflow_pairs", "straightness", "trajectory_straightness",
    "make_grid", "show_images", "scatter2d", "plot_trajectory", "animate_trajectory",
    "device", "seed_everything", "fast_mode", "data", "grids", "nets", "parameterisations", "processes", "evaluate",
    "pretrained",
]
