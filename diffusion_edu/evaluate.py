"""Judging digit samples (chapters 03–05): a small classifier, and the figures it gives.

- **FDD**, the Fréchet distance in the classifier's penultimate features ("Fréchet Digits Distance", the
  course's FID: Heusel et al. 2017 with our own feature network) between samples and the held-out test
  split, quoted as a ratio to its **real floor**, FDD(train split vs test split): real images never seen
  by the metric's reference, at the same sample size;
- **conditional accuracy**: the share of samples asked for class c that the classifier calls c;
- a **memorisation check**: how close each sample is to its nearest training image, against the same
  distance for held-out test images.
Fixed sample counts keep the figures comparable: ``N_EVAL`` = 1437 samples (the size of the train split,
so the floor is measured at the same n) against the 360 test images. FD estimates are biased by O(1/n)
and, at n = 360, swing by ±40 % with the class counts of the draw; at equal sizes and with the test split
on both sides, the ratio is fair.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .data import digits
from .forward import check_batch
from .metrics import frechet_distance

N_EVAL = 1437  # samples per FDD: the size of the digits train split, whose FDD is the floor


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


def train_classifier(epochs: int = 40, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                     progress: bool = False) -> tuple[DigitsClassifier, float]:
    """Recipe ``classifier``: AdamW with cosine decay and ±1-pixel random shifts; returns (model, test accuracy)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = digits("train")
    model = DigitsClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    total = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total, pct_start=0.1)
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            shift = torch.randint(-1, 2, (2,), generator=g).tolist()
            xb = torch.roll(x[idx], shifts=shift, dims=(2, 3))  # augmentation: a one-pixel shift of the batch
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
def fdd(classifier: DigitsClassifier, samples: Tensor, reference: Tensor | None = None) -> float:
    """Fréchet distance between the classifier features of ``samples`` and of ``reference`` (default: test split)."""
    _require_eval(classifier)
    check_batch(samples, "samples")
    reference = digits("test")[0] if reference is None else reference
    return frechet_distance(classifier.features(samples.clamp(-1, 1)), classifier.features(reference))


def fdd_floor(classifier: DigitsClassifier, n: int = N_EVAL, draws: int = 10, seed: int = 0) -> float:
    """The real floor of FDD at sample size n: n real train images drawn at random (with replacement) against
    the test split, averaged over ``draws`` draws.

    Drawn the way a sampler draws, so class counts vary from draw to draw; that alone lifts FDD by about half
    over the stratified train split itself (``split_fdd``), which would make a perfect sampler look 1.5× off.
    """
    train = digits("train")[0]
    g = torch.Generator().manual_seed(seed)
    return sum(fdd(classifier, train[torch.randint(0, len(train), (n,), generator=g)])
               for _ in range(draws)) / draws


def split_fdd(classifier: DigitsClassifier) -> float:
    """FDD(train split vs test split). Both splits are stratified (equal class shares), so this sits below
    what any random draw of real images reaches; reported beside the floor, not used for ratios."""
    return fdd(classifier, digits("train")[0])


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
