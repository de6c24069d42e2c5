"""The captioned shape scenes (data.shapes): deterministic splits, held-out pairs, captions that say what is drawn."""
import math
import re

import pytest
import torch

from diffusion_edu.data import shapes as S
from diffusion_edu.data.shapes import COLOURS, HELD_OUT, LAYOUTS, NONE, SHAPES, SIZES, render, shapes


def test_a_split_is_deterministic_and_a_prefix_of_a_larger_one():
    a, b = shapes("train", 40), shapes("train", 60)
    assert torch.equal(a.images, shapes("train", 40).images)
    assert torch.equal(a.images, b.images[:40]) and a.captions == b.captions[:40]
    assert not torch.equal(a.images, shapes("train", 40, seed=1).images)


def test_images_are_in_range_and_shaped():
    d = shapes("judge", 64)
    assert d.images.shape == (64, 3, 32, 32) and d.images.dtype == torch.float32
    assert d.images.min() >= -1 and d.images.max() <= 1
    assert d.labels.shape == (64, 7) and d.labels.dtype == torch.long
    assert (d.images == -1).float().mean() > 0.6  # black background around the objects


def _pairs(d):
    return [{(o.colour, o.shape) for o in s.objects} for s in d.scenes]


def test_held_out_pairs_are_only_in_the_held_out_and_judge_splits():
    for split in ("train", "test"):
        assert not any(p & set(HELD_OUT) for p in _pairs(shapes(split, 400)))
    assert all(p & set(HELD_OUT) for p in _pairs(shapes("held-out", 400)))
    judge = _pairs(shapes("judge", 400))
    assert any(p & set(HELD_OUT) for p in judge) and any(not p & set(HELD_OUT) for p in judge)


def test_train_and_test_share_no_scene():
    a, b = shapes("train", 300).images.flatten(1), shapes("test", 300).images.flatten(1)
    assert torch.cdist(a, b).min() > 0.5


def test_every_attribute_value_occurs():
    labels = shapes("judge", 600).labels
    assert set(labels[:, 0].tolist()) == set(range(len(LAYOUTS)))
    for k, n in ((1, len(COLOURS)), (2, len(SHAPES)), (3, len(SIZES))):
        assert set(labels[:, k].tolist()) == set(range(n))
    assert ((labels[:, 0] < 4) == (labels[:, 4] == NONE)).all()  # one object exactly in the quadrant layouts


GRAMMAR = re.compile(r"a (\w+) (\w+) (\w+)(?: at the (top left|top right|bottom left|bottom right)|"
                     r" (left of|right of|above|below) a (\w+) (\w+) (\w+))$")


def _parse(caption):
    """The caption read back into (layout, objects left/upper first), independently of ``Scene.caption``."""
    m = GRAMMAR.match(caption)
    assert m, caption
    first = (m[2], m[3], m[1])
    if m[4]:
        return m[4], (first,)
    second = (m[7], m[8], m[6])
    relation = m[5]
    if relation in ("right of", "below"):
        return {"right of": "left of", "below": "above"}[relation], (second, first)
    return relation, (first, second)


def test_captions_say_what_the_labels_and_the_pixels_say():
    d = shapes("judge", 200)
    flipped = 0
    for caption, scene, lab in zip(d.captions, d.scenes, d.labels.tolist()):
        layout, objects = _parse(caption)
        flipped += "right of" in caption or "below" in caption
        assert layout == scene.layout == LAYOUTS[lab[0]]
        assert objects == tuple((o.colour, o.shape, o.size) for o in scene.objects)
        for i, (colour, shape, size) in enumerate(objects):
            assert lab[1 + 3 * i: 4 + 3 * i] == [list(COLOURS).index(colour), SHAPES.index(shape), list(SIZES).index(size)]
    assert 20 < flipped < 80  # both phrasings of a pair occur


def test_objects_sit_where_the_layout_says():
    d = shapes("judge", 200)
    lit = (d.images > -0.5).any(1).float()  # (N, 32, 32): pixels covered by an object
    rows, cols = torch.arange(32.0), torch.arange(32.0)
    for img, scene in zip(lit, d.scenes):
        r = (img.sum(1) * rows).sum() / img.sum()
        c = (img.sum(0) * cols).sum() / img.sum()
        if len(scene.objects) == 1:
            assert (r < 16) == scene.layout.startswith("top") and (c < 16) == scene.layout.endswith("left")
        elif scene.layout == "left of":  # the left half holds an object, and so does the right
            assert img[:, :16].sum() > 0 and img[:, 16:].sum() > 0
        else:
            assert img[:16].sum() > 0 and img[16:].sum() > 0


@pytest.mark.parametrize("shape, area", [("circle", math.pi * 36), ("square", (2 * 0.85 * 6) ** 2), ("triangle", 2 * 36)])
def test_the_renderer_draws_each_shape_with_its_area_and_colour(shape, area):
    img = render([[dict(shape=shape, centre=(16.0, 16.0), half=6.0, rgb=(1.0, 0.5, 0.0))]])[0]
    coverage = (img[0] + 1) / 2  # red channel: 1 inside, 0 outside, a fraction on the edges
    assert coverage.sum().item() == pytest.approx(area, rel=0.05)  # 4× super-sampling: edges land on ¼-pixel rows
    torch.testing.assert_close(img[:, 17, 16], torch.tensor([1.0, 0.0, -1.0]))  # (1, 0.5, 0) in [−1, 1]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="split must be one of"):
        shapes("validation", 10)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        shapes("train", 0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        shapes("train", 2.5)


def test_the_cache_is_safe_from_in_place_edits():
    d = shapes("test", 8)
    d.images.zero_()
    d.captions.clear()
    assert shapes("test", 8).images.abs().sum() > 0 and len(shapes("test", 8).captions) == 8
    assert S.SPLITS.keys() == {"train", "test", "held-out", "judge"}
