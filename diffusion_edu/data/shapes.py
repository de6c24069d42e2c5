"""Captioned shape scenes (chapters 09–11): 32×32 RGB images of one or two shapes, made on the fly, offline.

Every scene is drawn from its seed alone, so a split is the same on every machine and can be as large as a
figure needs: a real-data floor never runs short of images. A scene holds

- one object in a quadrant ("a large red circle at the top left"), or
- two objects side by side or one above the other ("a small blue square left of a large white triangle";
  the caption may name either object first: "… right of …" and "… below …" say the same scene).

Each object has a colour (``COLOURS``), a shape (``SHAPES``) and a size (``SIZES``), with small random jitter
in hue, size and position so the images form a continuous distribution, not a list. Shapes are rendered with
4× super-sampling (anti-aliased edges) on a black background; images are (N, 3, 32, 32) in [−1, 1].

**Held-out combinations.** ``HELD_OUT`` colour–shape pairs (a green triangle, a blue circle) never appear in
the "train" and "test" splits; the "held-out" split has at least one in every scene, so chapter 11 can ask
whether a text-to-image model composes "green" and "triangle" without having seen them together. The
"judge" split holds every combination: the attribute classifier that scores samples is trained on it.

Labels (``Scene`` and the (N, 7) ``labels`` tensor) are canonical: object 0 is the left (or upper) one.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

SIZE = 32  # pixels a side
COLOURS = {"red": (0.9, 0.15, 0.15), "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.35, 0.95),
           "yellow": (0.95, 0.85, 0.15), "white": (0.92, 0.92, 0.92)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 3.5, "large": 6.0}  # half-width in pixels, before a ±10 % jitter
LAYOUTS = ("top left", "top right", "bottom left", "bottom right", "left of", "above")  # 4 single, 2 pairs
HELD_OUT = (("green", "triangle"), ("blue", "circle"))  # never in "train" or "test"
SPLITS = {"train": 0, "test": 1, "held-out": 2, "judge": 3}  # split → seed stream
NONE = -1  # the label of an absent second object
LABEL_NAMES = ("layout", "colour0", "shape0", "size0", "colour1", "shape1", "size1")

_SUPER = 4  # super-sampling factor of the renderer
_CENTRES = {"top left": (8, 8), "top right": (8, 24), "bottom left": (24, 8), "bottom right": (24, 24)}  # (row, col)


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    size: str

    def words(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """One scene's content: ``layout`` (one of ``LAYOUTS``) and one object, or two (left/upper one first)."""

    layout: str
    objects: tuple[Obj, ...]

    def caption(self, flip: bool = False) -> str:
        """The caption from the grammar; ``flip`` names the second object first ("right of", "below")."""
        if len(self.objects) == 1:
            return f"{self.objects[0].words()} at the {self.layout}"
        a, b = self.objects
        if flip:
            return f"{b.words()} {'right of' if self.layout == 'left of' else 'below'} {a.words()}"
        return f"{a.words()} {self.layout} {b.words()}"

    def labels(self) -> list[int]:
        """(layout, colour, shape, size of object 0, the same of object 1 or ``NONE``): integer class indices."""
        out = [LAYOUTS.index(self.layout)]
        for i in range(2):
            if i < len(self.objects):
                o = self.objects[i]
                out += [list(COLOURS).index(o.colour), SHAPES.index(o.shape), list(SIZES).index(o.size)]
            else:
                out += [NONE] * 3
        return out


@dataclass
class Shapes:
    """A split of scenes: ``images`` (N, 3, 32, 32) in [−1, 1], ``labels`` (N, 7) int64 (``LABEL_NAMES``; −1 =
    no second object), ``captions`` (one per image, the phrasing drawn at random) and ``scenes``."""

    images: Tensor
    labels: Tensor
    captions: list[str]
    scenes: list[Scene]

    def __len__(self) -> int:
        return len(self.images)


def shapes(split: str = "train", n: int = 10_000, seed: int = 0) -> Shapes:
    """n scenes of ``split`` ("train", "test", "held-out" or "judge"), deterministic in (split, n, seed).

    Scene i of a split is drawn from its own seed, so the first n scenes of a larger set are the n scenes of a
    smaller one. "train" and "test" never share a scene (distinct seed streams) and never hold a ``HELD_OUT``
    pair; "held-out" has one in every scene; "judge" has everything.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    images, labels, captions, scenes = _shapes(split, n, seed)
    return Shapes(images.clone(), labels.clone(), list(captions), list(scenes))


@lru_cache(maxsize=8)
def _shapes(split: str, n: int, seed: int) -> tuple[Tensor, Tensor, tuple[str, ...], tuple[Scene, ...]]:
    drawn = [_draw(split, i, seed) for i in range(n)]
    scenes = tuple(d[0] for d in drawn)
    images = torch.cat([render([d[1] for d in drawn[i:i + 512]]) for i in range(0, n, 512)])
    labels = torch.tensor([s.labels() for s in scenes], dtype=torch.long)
    captions = tuple(s.caption(flip) for s, (_, _, flip) in zip(scenes, drawn))
    return images, labels, captions, scenes


def _draw(split: str, index: int, seed: int) -> tuple[Scene, list[dict], bool]:
    """Scene ``index`` of a split: its content, the geometry of its objects, and whether its caption is flipped."""
    rng = np.random.default_rng([SPLITS[split], seed, index])
    while True:  # rejection: a scene that does not belong to the split is drawn again from the same stream
        two = rng.random() < 0.5
        layout = LAYOUTS[rng.integers(4, 6)] if two else LAYOUTS[rng.integers(0, 4)]
        objects = tuple(Obj(list(COLOURS)[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))],
                            list(SIZES)[rng.integers(len(SIZES))]) for _ in range(2 if two else 1))
        held = any((o.colour, o.shape) in HELD_OUT for o in objects)
        if split == "judge" or held == (split == "held-out"):
            break
    centres = ([_CENTRES[layout]] if not two else
               [(16, 8), (16, 24)] if layout == "left of" else [(8, 16), (24, 16)])
    geometry = []
    for o, (r, c) in zip(objects, centres):
        jitter = rng.uniform(-2.0, 2.0, size=2)  # the centre moves ±2 px; the object still fits its half
        geometry.append(dict(shape=o.shape, centre=(r + jitter[0], c + jitter[1]),
                             half=SIZES[o.size] * rng.uniform(0.9, 1.1),
                             rgb=np.clip(np.array(COLOURS[o.colour]) + rng.uniform(-0.06, 0.06, 3), 0, 1)))
    return Scene(layout, objects), geometry, bool(rng.random() < 0.5)


def render(scenes: list[list[dict]]) -> Tensor:
    """Draw scenes given as lists of objects (``shape``, ``centre`` (row, col) in pixels, ``half``: the
    half-width, ``rgb`` in [0, 1]) into (N, 3, 32, 32) images in [−1, 1], 4× super-sampled."""
    s = SIZE * _SUPER
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / _SUPER  # pixel-centre coordinates, in output pixels
    rows, cols = coords[:, None], coords[None, :]
    canvas = torch.zeros(len(scenes), 3, s, s)
    for i, objects in enumerate(scenes):
        for o in objects:
            (r, c), h = o["centre"], o["half"]
            dr, dc = rows - r, cols - c
            if o["shape"] == "circle":
                inside = dr ** 2 + dc ** 2 <= h ** 2
            elif o["shape"] == "square":
                inside = (dr.abs() <= h * 0.85) & (dc.abs() <= h * 0.85)  # area close to the circle's
            else:  # an upright isosceles triangle, apex up, base at dr = +h
                inside = (dr <= h) & (dr >= -h) & (dc.abs() <= (dr + h) / 2)
            canvas[i][:, inside] = torch.tensor(o["rgb"], dtype=torch.float32)[:, None]
    return F.avg_pool2d(canvas, _SUPER) * 2 - 1  # (N, 3, 32, 32)
