"""Judging shape scenes (chapters 09–11): an attribute classifier, and the Fréchet distance in its features.

- The **attribute classifier** (``ShapesClassifier``, checkpoint ``shapes-classifier``) reads a scene's layout
  and each object's colour, shape and size (``data.shapes.LABEL_NAMES``). It is trained on the "judge" split,
  which holds every colour–shape pair, so it can score a text-to-image model on the combinations that model
  never saw; its accuracy on real held-out scenes is the ceiling of chapter 11's prompt accuracy.
- **FD** in its penultimate features (the course's FID, as FDD is for digits), against ``N_REF`` real test
  scenes, quoted as a ratio to its **real floor**: the FD of real test scenes drawn from other seeds at the
  same n. The scenes are procedural, so the floor never runs short of real images and never repeats one.
- The **second feature space** (``ShapesMLP``, checkpoint ``shapes-classifier-mlp``): an MLP on the pixels,
  another seed, no augmentation; every headline figure is checked in both.
"""
from __future__ import annotations

import time

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .data.shapes import COLOURS, LABEL_NAMES, LAYOUTS, NONE, SHAPES, SIZES, shapes
from .evaluate import _require_eval
from .forward import check_batch
from .metrics import frechet_distance

N_EVAL = 1000  # samples behind one FD
N_REF = 2000  # real test scenes it is measured against
# classes of each head; a second object's heads have one more: "no second object"
HEADS = dict(zip(LABEL_NAMES, (len(LAYOUTS), len(COLOURS), len(SHAPES), len(SIZES),
                               len(COLOURS) + 1, len(SHAPES) + 1, len(SIZES) + 1)))
_NONE_CLASS = torch.tensor(list(HEADS.values())) - 1  # each head's last class: "no second object" on heads 4–6
_SECOND = torch.tensor([name.endswith("1") for name in LABEL_NAMES])  # the heads of the second object


def _targets(labels: Tensor) -> Tensor:
    """Labels with ``NONE`` (no second object) mapped to each head's last class."""
    return torch.where(labels == NONE, _NONE_CLASS.to(labels), labels)


class ShapesClassifier(nn.Module):
    """A CNN on 32×32 scenes: three conv stages (32 → 16 → 8 → 4 pixels), a 128-d feature layer, one head per label."""

    def __init__(self, features: int = 128, dropout: float = 0.2):
        super().__init__()
        stage = lambda c_in, c_out: [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),  # noqa: E731
                                     nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.conv = nn.Sequential(*stage(3, 32), *stage(32, 64), *stage(64, 64))
        self.fc = nn.Linear(64 * 4 * 4, features)
        self.drop = nn.Dropout(dropout)
        self.heads = nn.Linear(features, sum(HEADS.values()))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features, before the ReLU (as ``evaluate.DigitsClassifier``'s)."""
        _check_scenes(x)
        return self.fc(self.conv(x).flatten(1))  # (B, features)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Logits of every head, in ``LABEL_NAMES`` order: a list of (B, classes) tensors."""
        return list(self.heads(self.drop(F.relu(self.features(x)))).split(list(HEADS.values()), dim=1))


class ShapesMLP(nn.Module):
    """The second feature space: an MLP on the 3072 pixel values, 64-d features, the same heads."""

    def __init__(self, hidden: int = 256, features: int = 64, dropout: float = 0.2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3 * 32 * 32, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, features))
        self.drop = nn.Dropout(dropout)
        self.heads = nn.Linear(features, sum(HEADS.values()))

    def features(self, x: Tensor) -> Tensor:
        _check_scenes(x)
        return self.body(x.flatten(1))  # (B, features)

    forward = ShapesClassifier.forward


def train_classifier(model: nn.Module, n: int = 20_000, epochs: int = 8, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0, shifts: bool = True) -> tuple[nn.Module, dict]:
    """Recipes ``shapes-classifier`` (CNN, ±1-pixel shifts) and ``shapes-classifier-mlp`` (MLP, none): the summed
    cross-entropy of every head on n "judge" scenes, AdamW with one-cycle decay. Returns (model in eval mode,
    accuracies on real "test" and "held-out" scenes, from ``attribute_accuracy``)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    data = shapes("judge", n)
    x, y = data.images, _targets(data.labels)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    total = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total, pct_start=0.1)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(n, generator=g).split(batch_size):
            xb = x[idx]
            if shifts:  # a one-pixel shift of the batch (black borders roll in: the background is black)
                xb = torch.roll(xb, shifts=torch.randint(-1, 2, (2,), generator=g).tolist(), dims=(2, 3))
            loss = sum(F.cross_entropy(logits, y[idx, k]) for k, logits in enumerate(model(xb)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    info = dict(train_seconds=round(time.perf_counter() - start, 1))
    for split in ("test", "held-out"):
        real = shapes(split, N_REF)
        info[f"{split}_accuracy"] = {k: round(v, 4) for k, v in attribute_accuracy(model, real.images, real.labels).items()}
    return model, info


@torch.no_grad()
def predict(classifier: nn.Module, x: Tensor) -> Tensor:
    """The classifier's labels for scenes x: (B, 7) in ``LABEL_NAMES`` order, ``NONE`` for no second object."""
    _require_eval(classifier)
    out = torch.stack([logits.argmax(1) for logits in classifier(x.clamp(-1, 1))], dim=1)
    absent = (out == _NONE_CLASS.to(out.device)) & _SECOND.to(out.device)
    return torch.where(absent, NONE, out)


def attribute_accuracy(classifier: nn.Module, x: Tensor, labels: Tensor) -> dict[str, float]:
    """Per-label accuracy on scenes x with true ``labels`` (B, 7), plus ``scene``: the share with every label right."""
    if labels.shape != (len(x), len(LABEL_NAMES)):
        raise ValueError(f"labels must have shape ({len(x)}, {len(LABEL_NAMES)}), got {tuple(labels.shape)}")
    right = predict(classifier, x) == labels.to(x.device)
    return dict({k: right[:, i].float().mean().item() for i, k in enumerate(LABEL_NAMES)},
                scene=right.all(1).float().mean().item())


@torch.no_grad()
def fd(classifier: nn.Module, samples: Tensor, reference: Tensor | None = None) -> float:
    """Fréchet distance between the classifier features of ``samples`` and of ``reference`` (default: the first
    ``N_REF`` test scenes); samples are clamped to [−1, 1] first."""
    _require_eval(classifier)
    check_batch(samples, "samples")
    _check_scenes(samples)
    reference = shapes("test", N_REF).images if reference is None else reference
    device = next(classifier.parameters()).device
    return frechet_distance(classifier.features(samples.clamp(-1, 1).to(device)), classifier.features(reference.to(device)))


def real_scenes(n: int, seed: int = 1) -> Tensor:
    """n real test scenes a perfect sampler could have drawn: stream ``seed`` ≥ 1 of the test split (stream 0 is
    the reference), so none is a reference scene and none repeats."""
    if seed < 1:
        raise ValueError(f"seed must be ≥ 1 (seed 0 is the FD reference set), got {seed}")
    return shapes("test", n, seed=seed).images


def fd_floor(classifier: nn.Module, n: int = N_EVAL, draws: int = 3) -> float:
    """The real floor of FD at sample size n: the mean FD of ``draws`` sets of ``real_scenes`` (seeds 1…draws)."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    return sum(fd(classifier, real_scenes(n, 1 + d)) for d in range(draws)) / draws


def fd_ratio(classifier: nn.Module, samples: Tensor) -> float:
    """FD / its real floor at the same n: the ratio chapters 09–11 quote."""
    return fd(classifier, samples) / fd_floor(classifier, len(samples))


def _check_scenes(x: Tensor) -> None:
    if x.ndim != 4 or x.shape[1:] != (3, 32, 32):
        raise ValueError(f"x must have shape (B, 3, 32, 32) (shape scenes), got {tuple(x.shape)}")
