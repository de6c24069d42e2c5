"""Data sets: toy shapes and scales, the fixed digits split, and the IDX loader (never touching the network)."""
import gzip
import math
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from diffusion_edu.data import images as image_data, toys
from diffusion_edu.data import TOY2D, digits, fashion_mnist, mnist, read_idx, toy2d


# --------------------------------------------------------------------------------------------- toy2d

@pytest.mark.parametrize("name", TOY2D)
def test_toy2d_shape_dtype_and_unit_scale(name):
    x = toy2d(name, 20_000, seed=1)
    assert x.shape == (20_000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    # centred, mean per-coordinate variance ≈ 1 (the sampling error of these moments is < 0.02 at n = 20000)
    assert x.mean(0).abs().max() < 0.05
    assert 0.93 < x.var(0).mean().sqrt() < 1.07
    assert ((0.6 < x.std(0)) & (x.std(0) < 1.4)).all()


@pytest.mark.parametrize("name", TOY2D)
def test_toy2d_is_deterministic_per_seed(name):
    torch.testing.assert_close(toy2d(name, 100, seed=3), toy2d(name, 100, seed=3), rtol=0, atol=0)
    assert not torch.equal(toy2d(name, 100, seed=3), toy2d(name, 100, seed=4))


def test_toy2d_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    toy2d("moons", 10)
    torch.testing.assert_close(torch.rand(3), expected)


def test_eight_gaussians_constants_describe_the_data():
    x = toy2d("eight_gaussians", 4000, seed=0).double()
    assert math.isclose(toys.EIGHT_GAUSSIANS_RADIUS**2 / 2 + toys.EIGHT_GAUSSIANS_STD**2, 1.0)
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    centres = toys.EIGHT_GAUSSIANS_RADIUS * torch.stack([angles.cos(), angles.sin()], 1)
    nearest = torch.cdist(x, centres).min(dim=1).values  # distance to the closest centre ~ s·√χ²₂
    assert nearest.max() < 6 * toys.EIGHT_GAUSSIANS_STD
    assert math.isclose(nearest.square().mean().sqrt().item(), math.sqrt(2) * toys.EIGHT_GAUSSIANS_STD, rel_tol=0.05)


def test_checkerboard_fills_only_dark_cells():
    x = toy2d("checkerboard", 2000) / (math.sqrt(3) / 2) + 2  # back to the board [0, 4)²
    assert x.min() >= 0 and x.max() <= 4
    cells = x.floor().long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()


def test_toy2d_rejects_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of .*swiss_roll"):
        toy2d("spiral")
    for n in (0, -5, 2.5):
        with pytest.raises(ValueError, match="n must be"):
            toy2d("moons", n)


# -------------------------------------------------------------------------------------------- digits

def test_digits_split_is_fixed_disjoint_complete_and_stratified():
    x_train, y_train = digits("train")
    x_test, y_test = digits("test")
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert x_train.min() == -1 and x_train.max() == 1
    # together they are exactly the 1797 images of sklearn, each once
    from sklearn.datasets import load_digits
    images, labels = load_digits(return_X_y=True)
    ours = torch.cat([x_train, x_test]).reshape(-1, 64).add(1).mul(8).round().long()
    theirs = torch.from_numpy(images).long()
    key = lambda rows, y: sorted(map(tuple, torch.cat([rows, y[:, None]], 1).tolist()))  # noqa: E731
    assert key(ours, torch.cat([y_train, y_test])) == key(theirs, torch.from_numpy(labels))
    # stratified: every class has (almost exactly) 20 % of its images in the test split
    for c in range(10):
        n_test, n_all = (y_test == c).sum().item(), (y_test == c).sum().item() + (y_train == c).sum().item()
        assert abs(n_test - 0.2 * n_all) <= 1


def test_digits_returns_fresh_copies():
    x, y = digits()
    x.zero_()
    y.fill_(-1)
    x2, y2 = digits()
    assert x2.abs().sum() > 0 and (y2 >= 0).all()


def test_digits_rejects_bad_split():
    with pytest.raises(ValueError, match="split"):
        digits("val")


# ------------------------------------------------------------------------------- IDX files, MNIST API

def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path, array: np.ndarray, gz: bool) -> None:
    raw = _idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.fixture
def tiny_mnist(tmp_path):
    """A 3-image train set (gzipped) and a 2-image test set (raw) in tmp_path/mnist."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = {"train": rng.integers(0, 256, (3, 28, 28)), "test": rng.integers(0, 256, (2, 28, 28))}
    images["train"][0, 0, :2] = (0, 255)  # the two ends of the range
    labels = {"train": np.array([7, 0, 9]), "test": np.array([3, 1])}
    for split, (img_name, lbl_name) in image_data.IDX_FILES.items():
        gz = split == "train"
        _write(folder / (img_name + ".gz" if gz else img_name), images[split], gz)
        _write(folder / (lbl_name + ".gz" if gz else lbl_name), labels[split], gz)
    return tmp_path, images, labels


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_loads_idx_files_gzipped_or_raw(tiny_mnist, split):
    root, images, labels = tiny_mnist
    x, y = mnist(split, root=root, download=False)
    assert x.shape == (len(labels[split]), 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    torch.testing.assert_close(x, torch.from_numpy(images[split]).float()[:, None] / 127.5 - 1)
    assert y.tolist() == labels[split].tolist()
    if split == "train":
        assert x[0, 0, 0, 0] == -1 and x[0, 0, 0, 1] == 1


def test_root_defaults_to_the_environment_variable(tiny_mnist, monkeypatch):
    root, _, labels = tiny_mnist
    monkeypatch.setenv("DIFFUSION_EDU_DATA", str(root))
    assert mnist("test", download=False)[1].tolist() == labels["test"].tolist()


def test_read_idx_rejects_a_bad_magic_number(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"\x1f\x00\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="not-idx"):
        read_idx(path)


def test_read_idx_round_trips_shapes(tmp_path):
    array = np.arange(24).reshape(2, 3, 4)
    _write(tmp_path / "a.gz", array, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_offline_download_fails_with_a_pointer_to_digits(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for loader in (mnist, fashion_mnist):
        with pytest.raises(RuntimeError, match=r"could not download .*digits\(\)"):
            loader("train", root=tmp_path)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing half-written was left behind


def test_missing_files_without_download_point_to_digits(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("download=False must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    with pytest.raises(RuntimeError, match=r"download=False.*digits\(\)"):
        mnist("test", root=tmp_path, download=False)


def test_download_writes_the_files_it_fetched(tiny_mnist, tmp_path_factory, monkeypatch):
    """A fake mirror: the downloaded bytes land under the expected names and then load like local files."""
    source, _, labels = tiny_mnist
    requested = []

    class Response:
        def __init__(self, url):
            requested.append(url)
            stem = url.rsplit("/", 1)[1].removesuffix(".gz")
            self.body = gzip.compress((source / "mnist" / stem).read_bytes())  # the test split is stored raw

        def read(self):
            return self.body

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Response(url))
    root = tmp_path_factory.mktemp("empty")
    x, y = mnist("test", root=root)
    assert all(url.startswith(image_data.MNIST_MIRROR) for url in requested) and len(requested) == 2
    assert y.tolist() == labels["test"].tolist()
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(f + ".gz" for f in image_data.IDX_FILES["test"])
