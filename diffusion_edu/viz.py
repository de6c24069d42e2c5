"""Pictures of samples and of sampling: image grids, 2-D scatters, trajectories and animations (all chapters).

Matplotlib only. Images are (B, C, H, W) in [−1, 1], 2-D points are (N, 2); both may live on any device.
Trajectories are the ``Step`` records a sampler yields (``samplers.Step``): anything with ``.t`` (the
timestep), ``.x`` (the sample after the update) and ``.x0`` (the model's prediction of clean data).
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from torch import Tensor


def make_grid(x: Tensor, nrow: int | None = None, pad: int = 1) -> Tensor:
    """Tile images (B, C, H, W) in [−1, 1] into one picture in [0, 1], ``nrow`` images per row (default ⌈√B⌉).

    Returns (H′, W′) for one channel and (H′, W′, C) otherwise, ready for ``imshow``, with H′ = rows·(H + pad) + pad,
    W′ = nrow·(W + pad) + pad; the ``pad``-pixel gaps are white.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    B, C, H, W = x.shape
    nrow = nrow or math.ceil(math.sqrt(B))
    rows = math.ceil(B / nrow)
    grid = torch.ones(C, rows * (H + pad) + pad, nrow * (W + pad) + pad)
    images = ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)  # [−1, 1] → [0, 1]
    for i in range(B):
        top, left = pad + (i // nrow) * (H + pad), pad + (i % nrow) * (W + pad)
        grid[:, top:top + H, left:left + W] = images[i]
    return grid[0] if C == 1 else grid.permute(1, 2, 0)  # (H′, W′) or (H′, W′, C)


def show_images(x: Tensor, nrow: int | None = None, title: str | None = None, ax: Axes | None = None,
                pad: int = 1) -> Axes:
    """Show a batch of images (B, C, H, W) in [−1, 1] as one grid (grey colour map for one channel)."""
    grid = make_grid(x, nrow, pad)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4 * grid.shape[0] / grid.shape[1]))
    ax.imshow(grid.numpy(), cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1)
    ax.axis("off")
    if title is not None:
        ax.set_title(title)
    return ax


def scatter2d(x: Tensor, title: str | None = None, ax: Axes | None = None, **kw) -> Axes:
    """Scatter plot of 2-D points (N, 2) with equal aspect; ``kw`` goes to ``Axes.scatter``."""
    x = _points(x)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(x[:, 0], x[:, 1], **{"s": 2, "alpha": 0.5, **kw})
    _label_plane(ax)
    if title is not None:
        ax.set_title(title)
    return ax


def plot_trajectory(steps: Sequence, ax: Axes | None = None, n_paths: int = 8,
                    n_columns: int = 8) -> Axes | np.ndarray:
    """Draw a sampling trajectory, the ``Step`` records of one sampler run.

    2-D data (N, 2): the paths of the first ``n_paths`` points over the steps, on top of the final cloud;
    returns the Axes. Images (N, C, H, W): the first image at ``n_columns`` evenly spaced steps, x_t on top
    and x̂_0 below; returns the (2, n_columns) array of Axes, like ``plt.subplots``. (Axes rather than the
    Figure: a Figure left as a cell's value is drawn twice in Jupyter.)
    """
    steps = _check_steps(steps)
    if steps[0].x.ndim == 2:
        path = torch.stack([_points(s.x)[:n_paths] for s in steps])  # (S, n_paths, 2)
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 5))
        scatter2d(steps[-1].x, ax=ax, color="0.6", label="final samples")
        for k in range(path.shape[1]):
            ax.plot(path[:, k, 0], path[:, k, 1], lw=1, color=f"C{k % 10}")
            ax.plot(path[0, k, 0], path[0, k, 1], "o", ms=4, mfc="none", color=f"C{k % 10}")
            ax.plot(path[-1, k, 0], path[-1, k, 1], "o", ms=4, color=f"C{k % 10}")
        ax.set_title(f"Sampling paths of {path.shape[1]} points over {len(steps)} steps (○ start, ● end)")
        ax.legend(loc="upper right", fontsize="small")
        return ax
    if ax is not None:
        raise ValueError("ax is only used for 2-D data; an image trajectory draws its own grid of axes")
    shown = [steps[i] for i in _evenly_spaced(len(steps), n_columns)]
    fig, axes = plt.subplots(2, len(shown), figsize=(1.4 * len(shown), 3.2), squeeze=False)
    for j, s in enumerate(shown):
        for i, image in enumerate((s.x, s.x0)):
            show_images(image[:1], ax=axes[i, j], pad=0)
            axes[i, j].axis("on")  # keep the frame for the row labels, without ticks
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[0, j].set_title(f"t = {int(s.t)}", fontsize="small")
    axes[0, 0].set_ylabel("sample after\nthe update")  # Step.x: where the step at t lands
    axes[1, 0].set_ylabel(r"prediction $\hat{x}_0$")
    fig.suptitle(f"Sampling the first image over {len(steps)} steps")
    fig.tight_layout()
    return axes


def animate_trajectory(steps: Sequence, interval: int = 100, max_frames: int = 60) -> HTML:
    """An HTML player (``FuncAnimation.to_jshtml``, no ffmpeg) of a sampling trajectory, one frame per shown step.

    2-D data: the moving point cloud. Images: the first 16 images of x_t beside their x̂_0. At most
    ``max_frames`` evenly spaced steps are shown (the last is always one) to keep the notebook small.
    """
    steps = _check_steps(steps)
    shown = [steps[i] for i in _evenly_spaced(len(steps), max_frames)]
    if steps[0].x.ndim == 2:
        clouds = [_points(s.x) for s in shown]
        fig, ax = plt.subplots(figsize=(4, 4), dpi=72)  # a low dpi keeps the embedded frames small
        dots = ax.scatter(clouds[0][:, 0], clouds[0][:, 1], s=2, alpha=0.5)
        lim = max(float(c.abs().max()) for c in clouds) * 1.05
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        _label_plane(ax)

        def draw(k: int):
            dots.set_offsets(clouds[k].numpy())
            ax.set_title(f"Sampling: t = {int(shown[k].t)}")
            return (dots,)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(6, 3.3), dpi=72)
        pictures = []
        for ax, name, image in zip(axes, ("sample $x_t$", r"prediction $\hat{x}_0$"), (shown[0].x, shown[0].x0)):
            pictures.append(show_images(image[:16], ax=ax, title=name).images[0])

        def draw(k: int):
            for picture, image in zip(pictures, (shown[k].x, shown[k].x0)):
                picture.set_data(make_grid(image[:16]).numpy())
            fig.suptitle(f"Sampling: t = {int(shown[k].t)}")
            return tuple(pictures)
    animation = FuncAnimation(fig, draw, frames=len(shown), interval=interval, blit=False)
    html = animation.to_jshtml()
    plt.close(fig)  # the HTML is the output; without this, the notebook would also show the last frame
    return HTML(html)


def _check_steps(steps: Sequence) -> list:
    steps = list(steps)
    if not steps:
        raise ValueError("steps is empty: pass the records a sampler yields, e.g. list(ddim(...))")
    if steps[0].x.ndim not in (2, 4):
        raise ValueError(f"step.x must be 2-D points (N, 2) or images (N, C, H, W), got {tuple(steps[0].x.shape)}")
    return steps


def _points(x: Tensor) -> Tensor:
    x = torch.as_tensor(x).detach().float().cpu()
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"expected 2-D points of shape (N, 2), got {tuple(x.shape)}")
    return x


def _label_plane(ax: Axes) -> None:
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")


def _evenly_spaced(n: int, k: int) -> list[int]:
    """At most k indices into range(n), evenly spaced, always including the first and the last."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [n - 1]
