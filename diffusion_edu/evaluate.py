"""Judging digit samples (chapters 03–05): two small classifiers, and the figures they give.

- **FDD**, the Fréchet distance in a classifier's penultimate features ("Fréchet Digits Distance", the
  course's FID: Heusel et al. 2017 with our own feature network) between samples and the held-out test
  split, quoted as a ratio to its **real floor** (``fdd_floor``): the FDD of real images the reference never
  saw, drawn as a perfect sampler draws (``real_digits``: random class counts, none repeated), at the same
  n. Two easy floors are wrong, in opposite directions: the stratified train split (equal class counts) is
  below anything a perfect sampler reaches, and a draw with replacement repeats ~37 % of its images and
  sits above it. Chapter 03 measures both.
- **FD∞** (``fdd_infinity``): FDD extrapolated to infinitely many samples (Chong & Forsyth 2020), which
  removes the 1/n bias; **KID** (``kid``): the unbiased kernel distance with its standard error
  (Bińkowski et al. 2018), ≈ 0 for real against real, so "indistinguishable" is a statistical statement.
- **conditional accuracy**: the share of samples asked for class c that the classifier calls c;
- a **memorisation check**: how close each sample is to its nearest training image, against the same
  distance for held-out test images.

Every figure is checked in a second, independently built feature space (``DigitsMLP``: no convolutions,
no augmentation, another seed; checkpoint ``digits-classifier-mlp``). One sampler seed is not a
measurement: ``fdd_ratios`` takes the samples of several seeds (``SEEDS``) and gives the mean and spread.
Fixed sample counts keep the figures comparable: ``N_EVAL`` = 1000 samples against the 360 test images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .data import digits
from .forward import check_batch
from .metrics import fd_infinity, frechet_distance, kid as kid_of_features

N_EVAL = 1000  # samples per FDD: as many as the train split can give a floor for (``MAX_FLOOR_N``), rounded
MAX_FLOOR_N = 1100  # random class counts (≈ 110 ± 10 a class) still fit in ~144 train images a class
SEEDS = (0, 1, 2)  # sampler seeds behind every quoted ratio: its mean and spread, never one draw


class DigitsClassifier(nn.Module):
    """A small CNN for 8×8 digits: two 3×3 convolutions, max-pool, a 64-d feature layer, 10 logits."""

    def __init__(self, features: int = 64, dropout: float = 0.3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(64 * 4 * 4, features)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(features, 10))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features, taken before the ReLU (smooth and full-rank, so the covariance is stable)."""
        if x.ndim != 4 or x.shape[1:] != (1, 8, 8):
            raise ValueError(f"x must have shape (B, 1, 8, 8), got {tuple(x.shape)}")
        return self.fc(self.conv(x).flatten(1))  # (B, features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, 10) logits


class DigitsMLP(nn.Module):
    """The second feature space: an MLP on the 64 pixels (no convolutions), 32-d features, 10 logits.

    Built differently from ``DigitsClassifier`` on purpose (no weight sharing, no augmentation in its recipe,
    another seed), so a figure that holds in both feature spaces is not an artefact of one network.
    """

    def __init__(self, hidden: int = 256, features: int = 32, dropout: float = 0.3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, features))
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(features, 10))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features, before the ReLU, as in ``DigitsClassifier``."""
        if x.ndim != 4 or x.shape[1:] != (1, 8, 8):
            raise ValueError(f"x must have shape (B, 1, 8, 8), got {tuple(x.shape)}")
        return self.body(x.flatten(1))  # (B, features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, 10) logits


def train_classifier(model: nn.Module | None = None, epochs: int = 40, batch_size: int = 64, lr: float = 2e-3,
                     seed: int = 0, shifts: bool = True, progress: bool = False) -> tuple[nn.Module, float]:
    """Recipes ``digits-classifier`` (``DigitsClassifier``, ±1-pixel random shifts) and ``digits-classifier-mlp``
    (``DigitsMLP``, no shifts): AdamW with one-cycle cosine decay; returns (model in eval mode, test accuracy)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = digits("train")
    model = DigitsClassifier() if model is None else model
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    total = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total, pct_start=0.1)
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            xb = x[idx]
            if shifts:  # augmentation: a one-pixel shift of the batch
                xb = torch.roll(xb, shifts=torch.randint(-1, 2, (2,), generator=g).tolist(), dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if progress:
            print(f"epoch {epoch + 1}: loss {loss.item():.3f}")
    model.eval()
    return model, accuracy(model, *digits("test"))


@torch.no_grad()
def accuracy(classifier: nn.Module, x: Tensor, y: Tensor) -> float:
    """Share of images the classifier labels correctly (in eval mode)."""
    _require_eval(classifier)
    return (classifier(x).argmax(1) == y).float().mean().item()


@torch.no_grad()
def fdd(classifier: nn.Module, samples: Tensor, reference: Tensor | None = None) -> float:
    """Fréchet distance between the classifier features of ``samples`` and of ``reference`` (default: test split)."""
    return frechet_distance(*_features(classifier, samples, reference))


def real_digits(n: int, seed: int = 0, labels: Tensor | None = None) -> Tensor:
    """n real train digits drawn the way a perfect sampler would draw them, **none repeated**.

    A perfect unconditional sampler draws each image i.i.d. from the data: its class counts are
    Multinomial(n, class shares), different from draw to draw, and it never returns an image twice. So the
    counts are drawn from the train split's class shares (drawn again, rarely, if a class has too few images)
    and each class's images are then drawn without replacement. With ``labels`` (a conditional sampler asked
    for those classes) the counts are exactly the labels' counts.
    """
    x, y = digits("train")
    g = torch.Generator().manual_seed(seed)
    pools = [torch.nonzero(y == c)[:, 0] for c in range(10)]
    sizes = torch.tensor([len(p) for p in pools])
    if labels is not None:
        counts = torch.bincount(labels.cpu(), minlength=10)
        if len(labels) != n or (counts > sizes).any():
            raise ValueError(f"labels must hold n = {n} class indices, at most {sizes.tolist()} of each class "
                             f"(the train split's images), got counts {counts.tolist()}")
    else:
        if not 2 <= n <= MAX_FLOOR_N:
            raise ValueError(f"n must be between 2 and {MAX_FLOOR_N} for an unconditional floor (the train split has "
                             f"{len(x)} images, ~144 a class: beyond that its classes run short of random "
                             f"class counts without repeating images), got {n}")
        while (counts := torch.bincount(torch.multinomial(sizes.double(), n, replacement=True, generator=g),
                                        minlength=10)).gt(sizes).any():
            pass  # a class drew more than it holds (rare at n ≤ MAX_FLOOR_N): draw the counts again
    return x[torch.cat([p[torch.randperm(len(p), generator=g)[:k]] for p, k in zip(pools, counts.tolist())])]


def fdd_floor(classifier: nn.Module, n: int = N_EVAL, labels: Tensor | None = None, draws: int = 10,
              seed: int = 0) -> float:
    """The real floor of FDD at sample size n: the mean FDD of ``draws`` sets of ``real_digits`` (random class
    counts, or ``labels``' counts; no image repeated) against the test split. Chapter 03 derives it.

    Two easy floors are wrong (docs/BENCHMARKS.md, n = 1000). Equal class counts (the stratified split) sit
    below it, ×0.79 (CNN features) to ×0.61 (MLP): a perfect unconditional sampler cannot reach them. A draw
    *with* replacement repeats images and sits above it, ×1.10 to ×1.26: every ratio to it looks too good.
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    real = [real_digits(n, seed + d, labels) for d in range(draws)]  # checks n and labels
    return sum(fdd(classifier, x) for x in real) / draws


def fdd_ratio(classifier: nn.Module, samples: Tensor, labels: Tensor | None = None) -> float:
    """FDD / its real floor at the same n (and the same class counts, given the ``labels`` the samples were
    asked for): the one ratio every figure of the course quotes."""
    if labels is not None and len(labels) != len(samples):
        raise ValueError(f"labels must have one entry per sample ({len(samples)}), got {len(labels)}")
    if labels is None and len(samples) > MAX_FLOOR_N:
        raise ValueError(f"samples: at most {MAX_FLOOR_N} for an unconditional ratio (no honest floor beyond it: "
                         f"the train split runs short of random class counts), got {len(samples)}")
    return fdd(classifier, samples) / fdd_floor(classifier, len(samples), labels)


@torch.no_grad()
def fdd_infinity(classifier: nn.Module, samples: Tensor, reference: Tensor | None = None) -> float:
    """FD∞ of ``samples`` against ``reference`` (default: test split), the FDD with its 1/n bias extrapolated
    away (``metrics.fd_infinity``); its floor is the FD∞ of ``real_digits`` at the same n."""
    return fd_infinity(*_features(classifier, samples, reference))


@torch.no_grad()
def kid(classifier: nn.Module, samples: Tensor, reference: Tensor | None = None) -> tuple[float, float]:
    """(KID, its standard error) against ``reference`` (default: test split), in the classifier's features
    standardised by the reference's per-feature mean and standard deviation: the cubic kernel of KID expects
    features of order 1 (Inception's are), and raw ones here have norms near 40.

    Known bias: standardising by the reference's *own* mean makes its pairwise terms slightly negative, by
    about −3/(m − 1) ≈ −0.008 for the m = 360 test digits, for every set scored alike. Compare a KID with the
    real draw's (``docs/BENCHMARKS.md`` quotes both), not with 0. Statistics from a third set would remove it.
    """
    a, b = _features(classifier, samples, reference)
    mean, std = b.mean(0), b.std(0).clamp(min=1e-6)
    return kid_of_features((a - mean) / std, (b - mean) / std)


@dataclass(frozen=True)
class Spread:
    """A figure measured over several sampler seeds: its mean and its range (min – max)."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    def __str__(self) -> str:
        return f"{self.mean:.2f} ({self.lo:.2f}–{self.hi:.2f}, {len(self.values)} seeds)"


def fdd_ratios(classifier: nn.Module, samples: Sequence[Tensor], labels: Tensor | None = None) -> Spread:
    """``fdd_ratio`` of each seed's samples (one tensor per seed, all asked for ``labels`` if given), as a ``Spread``."""
    if not samples:
        raise ValueError("samples must hold at least one tensor of samples per seed, got none")
    return Spread(tuple(fdd_ratio(classifier, x, labels) for x in samples))


def _features(classifier: nn.Module, samples: Tensor, reference: Tensor | None) -> tuple[Tensor, Tensor]:
    """Features of samples (clamped to the data's range) and of the reference, on the classifier's device."""
    _require_eval(classifier)
    check_batch(samples, "samples")
    reference = digits("test")[0] if reference is None else reference
    device = next(classifier.parameters()).device
    return classifier.features(samples.clamp(-1, 1).to(device)), classifier.features(reference.to(device))


@torch.no_grad()
def conditional_accuracy(classifier: nn.Module, samples: Tensor, labels: Tensor) -> float:
    """Share of samples generated for class c that the classifier calls c."""
    _require_eval(classifier)
    if len(samples) != len(labels):
        raise ValueError(f"labels must have one entry per sample ({len(samples)}), got {len(labels)}")
    return (classifier(samples.clamp(-1, 1)).argmax(1) == labels.to(samples.device)).float().mean().item()


@dataclass
class Memorisation:
    """Nearest-training-image distances (L2 in pixel space) of samples and of held-out test images."""

    sample_median: float   # median distance of a sample to its nearest training image
    test_median: float     # the same for real test images: what "new but typical" looks like
    ratio: float           # sample_median / test_median; well below 1 means copying
    copies: float          # share of samples closer than the 5th percentile of the test distances (≈ 0.05 if fine)


@torch.no_grad()
def memorisation(samples: Tensor) -> Memorisation:
    """Compare each sample's distance to its closest training image with test images' (Carlini et al. 2023, §4)."""
    check_batch(samples, "samples")
    train, test = digits("train")[0].flatten(1), digits("test")[0].flatten(1)
    near = lambda x: torch.cdist(x.flatten(1).float().cpu(), train).min(dim=1).values  # noqa: E731
    d_samples, d_test = near(samples.clamp(-1, 1)), near(test)
    q05 = d_test.quantile(0.05)
    return Memorisation(d_samples.median().item(), d_test.median().item(),
                        (d_samples.median() / d_test.median()).item(), (d_samples < q05).float().mean().item())


def _require_eval(model: nn.Module) -> None:
    if model.training:
        raise RuntimeError("the classifier must be in eval() mode for evaluation (dropout changes its features)")
