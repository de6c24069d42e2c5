"""Image data sets (chapter 03 on): scikit-learn's digits (offline, 8×8), and MNIST, Fashion-MNIST (downloaded).

Every loader returns float32 images (N, 1, H, W) in [−1, 1] and int64 labels (N,).
"""
from __future__ import annotations

import gzip
import math
import os
import tempfile
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# ------------------------------------------------------------------------------ digits (offline, 8×8)

DIGITS_TEST_SIZE = 0.2
DIGITS_RANDOM_STATE = 0


def digits(split: str = "train") -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled 8×8 digits (1797 images, no download): images (N, 1, 8, 8) in [−1, 1], labels (N,).

    Fixed split: ``train_test_split(test_size=0.2, stratify=labels, random_state=0)``, so "train" has 1437
    images and "test" 360, disjoint, each with the class proportions of the whole set.
    """
    _check_split(split)
    x, y = _digits_split(split)
    return x.clone(), y.clone()  # the cache stays safe from in-place edits


@lru_cache(maxsize=None)
def _digits_split(split: str) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)  # (1797, 64) with values 0…16, (1797,)
    parts = train_test_split(images, labels, test_size=DIGITS_TEST_SIZE, stratify=labels,
                             random_state=DIGITS_RANDOM_STATE)
    x, y = (parts[0], parts[2]) if split == "train" else (parts[1], parts[3])
    x = torch.from_numpy(x).float().div(8).sub(1).reshape(-1, 1, 8, 8)  # 0…16 → [−1, 1]
    return x, torch.from_numpy(y).long()


# ------------------------------------------------------------------------------ MNIST and Fashion-MNIST

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def mnist(split: str = "train", root: str | os.PathLike | None = None,
          download: bool = True) -> tuple[Tensor, Tensor]:
    """MNIST (LeCun et al. 1998): images (N, 1, 28, 28) in [−1, 1], labels (N,); N = 60000 train, 10000 test.

    Files live in ``root/mnist`` (``root`` defaults to $DIFFUSION_EDU_DATA, else ~/.cache/diffusion_edu).
    """
    return _idx_dataset("mnist", MNIST_MIRROR, split, root, download)


def fashion_mnist(split: str = "train", root: str | os.PathLike | None = None,
                  download: bool = True) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST (Xiao et al. 2017), same format as ``mnist``; files live in ``root/fashion_mnist``."""
    return _idx_dataset("fashion_mnist", FASHION_MNIST_MIRROR, split, root, download)


# IDX type codes, from the format description on yann.lecun.com/exdb/mnist; data are big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped (``.gz``) or raw: magic 0x00 0x00 <type> <ndim>, ndim big-endian int32 sizes, data."""
    path = Path(path)
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: bad magic number {raw[:4].hex()}")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {data.size} values")
    return data.reshape(shape)


def _idx_dataset(name: str, mirror: str, split: str, root, download: bool) -> tuple[Tensor, Tensor]:
    _check_split(split)
    if root is None:
        root = os.environ.get("DIFFUSION_EDU_DATA") or Path.home() / ".cache" / "diffusion_edu"
    folder = Path(root).expanduser() / name
    paths = [_find(folder, stem) or _download(folder, stem, mirror, name, download) for stem in IDX_FILES[split]]
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: expected images (N, H, W) and labels (N,), "
                         f"got {images.shape} and {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32)).div(127.5).sub(1).unsqueeze(1)  # 0…255 → [−1, 1], (N, 1, H, W)
    return x, torch.from_numpy(labels.astype(np.int64))


def _find(folder: Path, stem: str) -> Path | None:
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            return path
    return None


def _download(folder: Path, stem: str, mirror: str, name: str, download: bool) -> Path:
    offline_hint = ("Put the four IDX files there by hand, or use diffusion_edu.digits(), the small data set "
                    "bundled with scikit-learn that works offline.")
    if not download:
        raise RuntimeError(f"{name}: {stem}(.gz) is missing from {folder} and download=False. {offline_hint}")
    url, target = mirror + stem + ".gz", folder / f"{stem}.gz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as response:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(response.read())
                os.replace(tmp, target)  # atomic: a half-written file never carries the final name
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
    except OSError as err:  # urllib.error.URLError is an OSError, and so are timeouts and disk errors
        raise RuntimeError(f"{name}: could not download {url} into {folder} ({err}). {offline_hint}") from err
    return target


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
