"""Restoration with a diffusion prior (chapter 08): measurements y = A x + σ_y n (``operators``), training-free
posterior samplers (``solvers``), the conditional SR3 model (``sr3``) and the figures of merit (``quality``)."""
from .operators import LinearOperator, blur, centre_block, downsample, half, mask, random_pixels
from .quality import consistency, coverage, diversity, posterior_errors, posterior_floor, psnr, region, ssim
from .solvers import SOLVERS, ddrm, dps, repaint, restoration_evaluations, sdedit, tmpd

__all__ = ["LinearOperator", "mask", "centre_block", "half", "random_pixels", "downsample", "blur",
           "sdedit", "repaint", "dps", "ddrm", "tmpd", "SOLVERS", "restoration_evaluations",
           "psnr", "ssim", "consistency", "coverage", "diversity", "region", "posterior_errors", "posterior_floor"]
