"""Checks for the exercises (``base``: the ``@checker`` machinery; ``mistakes``: the shared mistake-matcher).

Notebooks call ``checks.check_<task>(learner_fn)``; every chapter's checks are re-exported here.
"""
from .base import (RESULT_MIME, RESULTS, STATUSES, SYMBOLS, CheckFailed, Result, checker, close, expect,  # noqa: F401
                   expect_tensor, ratio)
from .mistakes import diagnose, matches, which  # noqa: F401
from .ch01 import check_alpha_bars_from_betas, check_cosine_alpha_bars, check_forward_step, check_q_sample, check_snr  # noqa: F401
from .ch05 import check_cfg_eps, check_classifier_guidance_eps, check_drop_labels, check_guided_model  # noqa: F401
from .ch03 import check_attention, check_eps_from_v_abar, check_resblock_forward, check_sinusoidal_embedding, check_v_target_abar  # noqa: F401
from .ch02 import check_ddpm_loss, check_ddpm_sampler, check_ddpm_step, check_posterior_mean_var, check_predict_x0  # noqa: F401
from .ch04 import check_ddim_step, check_dpm_solver_pp_2m_step, check_euler_step, check_heun_step  # noqa: F401
from .ch07 import check_cfm_pair, check_flow_euler, check_ot_permutation, check_straightness  # noqa: F401
from .ch08 import check_dps_step, check_gaussian_posterior, check_repaint_merge, check_sr3_input  # noqa: F401
from .ch06 import check_annealed_step_sizes, check_dsm_loss, check_langevin_step, check_reverse_sde_step  # noqa: F401
from .ch09 import check_decode_latents, check_effective_log_snr, check_kl_divergence, check_latent_scale, check_reparameterise  # noqa: F401
