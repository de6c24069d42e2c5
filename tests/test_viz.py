"""Plots: the grid arithmetic exactly, and that every figure is drawn with a title and labelled axes."""
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from IPython.display import HTML  # noqa: E402

from diffusion_edu.viz import animate_trajectory, make_grid, plot_trajectory, scatter2d, show_images  # noqa: E402


@dataclass
class FakeStep:
    """The fields of ``samplers.Step`` that the plots read."""

    t: int
    x: torch.Tensor
    x0: torch.Tensor


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def points_run(n_steps: int = 6) -> list[FakeStep]:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(50, 2, generator=g)
    return [FakeStep(t, x0 + t / n_steps * torch.randn(50, 2, generator=g), x0) for t in range(n_steps - 1, -1, -1)]


def image_run(n_steps: int = 12, channels: int = 1) -> list[FakeStep]:
    g = torch.Generator().manual_seed(0)
    image = lambda: torch.rand(5, channels, 8, 8, generator=g) * 2 - 1  # noqa: E731
    return [FakeStep(t, image(), image()) for t in range(n_steps - 1, -1, -1)]


# ---------------------------------------------------------------------------------------- make_grid

def test_make_grid_places_each_image_in_its_cell():
    # 5 images of 2×3 → ⌈√5⌉ = 3 per row, 2 rows: H′ = 2·(2 + 1) + 1 = 7, W′ = 3·(3 + 1) + 1 = 13
    x = torch.stack([torch.full((1, 2, 3), v) for v in (-1.0, -0.5, 0.0, 0.5, 1.0)])
    grid = make_grid(x)
    assert grid.shape == (7, 13)
    assert grid[1:3, 1:4].eq(0.0).all() and grid[1:3, 5:8].eq(0.25).all() and grid[1:3, 9:12].eq(0.5).all()
    assert grid[4:6, 1:4].eq(0.75).all() and grid[4:6, 5:8].eq(1.0).all()  # [−1, 1] → [0, 1]
    assert grid[0].eq(1).all() and grid[:, 4].eq(1).all() and grid[4:6, 9:12].eq(1).all()  # white gaps and blank cell


def test_make_grid_rgb_nrow_pad_and_clipping():
    x = torch.linspace(-3, 3, 4 * 3 * 4 * 5).reshape(4, 3, 4, 5)
    grid = make_grid(x, nrow=4, pad=2)
    assert grid.shape == (1 * (4 + 2) + 2, 4 * (5 + 2) + 2, 3)  # (H′, W′, C) for imshow
    assert grid.min() == 0 and grid.max() == 1
    torch.testing.assert_close(grid[2:6, 2:7], ((x[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0))
    with pytest.raises(ValueError, match="B, C, H, W"):
        make_grid(torch.zeros(3, 8, 8))


# ------------------------------------------------------------------------------------- plots and axes

@pytest.mark.parametrize("channels", [1, 3])
def test_show_images_returns_a_titled_axes_without_ticks(channels):
    ax = show_images(torch.rand(6, channels, 8, 8) * 2 - 1, nrow=3, title="samples")
    assert ax.get_title() == "samples" and not ax.axison
    image = ax.images[0].get_array()
    assert image.shape[:2] == (2 * 9 + 1, 3 * 9 + 1)
    assert (ax.images[0].get_cmap().name == "gray") == (channels == 1)


def test_scatter2d_labels_the_plane_and_uses_an_existing_axes():
    _, ax = plt.subplots()
    assert scatter2d(torch.randn(100, 2), title="moons", ax=ax, s=5) is ax
    assert ax.get_title() == "moons" and ax.get_xlabel() == "x₁" and ax.get_ylabel() == "x₂"
    assert ax.get_aspect() == 1.0
    assert ax.collections[0].get_offsets().shape == (100, 2)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        scatter2d(torch.randn(10, 3))


def test_plot_trajectory_of_points_draws_the_paths():
    steps = points_run(6)
    ax = plot_trajectory(steps, n_paths=3)
    assert ax.get_title() and ax.get_xlabel() == "x₁" and ax.get_ylabel() == "x₂"
    paths = [line for line in ax.lines if len(line.get_xdata()) == len(steps)]
    assert len(paths) == 3
    torch.testing.assert_close(torch.as_tensor(paths[0].get_xdata()), torch.stack([s.x[0, 0] for s in steps]))


def test_plot_trajectory_of_images_shows_x_and_x0_per_step():
    steps = image_run(12)
    axes = plot_trajectory(steps, n_columns=4)
    assert axes.shape == (2, 4) and axes[0, 0].figure.get_suptitle()
    assert [ax.get_title() for ax in axes[0]] == ["t = 11", "t = 7", "t = 4", "t = 0"]  # first and last included
    assert axes[0, 0].get_ylabel() and axes[1, 0].get_ylabel()
    torch.testing.assert_close(torch.as_tensor(axes[1, -1].images[0].get_array()), (steps[-1].x0[0, 0] + 1) / 2)
    with pytest.raises(ValueError, match="ax"):
        plot_trajectory(steps, ax=axes[0, 0])


def test_trajectories_reject_empty_or_odd_shapes():
    with pytest.raises(ValueError, match="empty"):
        plot_trajectory([])
    with pytest.raises(ValueError, match="step.x"):
        animate_trajectory([FakeStep(0, torch.zeros(4, 3, 2), torch.zeros(4, 3, 2))])


# ------------------------------------------------------------------------------------------ animation

def frame_count(html: HTML) -> int:
    return html.data.count("data:image/png;base64")


def test_animate_trajectory_of_points_has_one_frame_per_step_and_closes_its_figure():
    before = plt.get_fignums()
    html = animate_trajectory(points_run(5), interval=50)
    assert isinstance(html, HTML) and "<script" in html.data
    assert frame_count(html) == 5
    assert plt.get_fignums() == before


def test_animate_trajectory_of_images_subsamples_frames():
    html = animate_trajectory(image_run(12, channels=3), max_frames=4)
    assert frame_count(html) == 4
    assert not plt.get_fignums()
