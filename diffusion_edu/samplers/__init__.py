"""Samplers: from noise to data, one short function per algorithm.

``discrete``: on a schedule's ᾱ grid with an ε-model, ``sampler(model, x_T, schedule, steps)`` (chapters 02, 04).
Chapters 06 and 07 add samplers in continuous time that take a ``parameterisations.Denoiser`` and a time grid
(``grids.uniform_times``, ``grids.karras_times``). All yield ``Step``s; ``sample`` runs one to the end.
"""
from .common import Model, Step, sample
from .ode import ode_euler, ode_evaluations, ode_heun, ode_midpoint
from .sde import annealed_langevin, euler_maruyama, langevin, predictor_corrector, prior, score_at
from .discrete import (alpha_bar_grid, ddim, ddpm, dpm_solver_pp, euler, heun, model_evaluations, sigma_grid,
                       timesteps)

__all__ = ["Model", "Step", "sample", "timesteps", "alpha_bar_grid", "sigma_grid", "ddpm", "ddim", "euler",
           "heun", "dpm_solver_pp", "model_evaluations", "ode_euler", "ode_midpoint", "ode_heun", "ode_evaluations",
           "euler_maruyama", "predictor_corrector", "langevin", "annealed_langevin", "prior", "score_at"]
