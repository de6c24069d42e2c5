"""The digits figures: honest floors (drawn as a perfect sampler draws: random class counts, no repeated
image), FD∞, KID with its error, and the ratio helper every report uses, checked in both feature spaces."""
import pytest
import torch

import diffusion_edu as de
from diffusion_edu import evaluate, pretrained

TRAIN, TRAIN_Y = de.digits("train")
EQUAL = torch.arange(10).repeat_interleave(100)  # 1000 labels, 100 of each class


@pytest.fixture(scope="module", params=["digits-classifier", "digits-classifier-mlp"])
def classifier(request):
    return pretrained.load(request.param).model


def test_both_feature_spaces_classify_well_and_differ():
    cnn, mlp = (pretrained.load(n).model for n in ("digits-classifier", "digits-classifier-mlp"))
    x, y = de.digits("test")
    assert evaluate.accuracy(cnn, x, y) >= 0.97 and evaluate.accuracy(mlp, x, y) >= 0.95
    assert cnn.features(x).shape[1] != mlp.features(x).shape[1]  # not the same network twice


def _rows(x: torch.Tensor) -> list[bytes]:
    return [row.numpy().tobytes() for row in x]


def test_real_digits_repeat_nothing_and_vary_their_class_counts_like_a_sampler():
    train_rows = {row: c for row, c in zip(_rows(TRAIN), TRAIN_Y.tolist())}
    counts = []
    for seed in range(20):
        x = evaluate.real_digits(1000, seed)
        rows = _rows(x)
        assert len(set(rows)) == 1000 and all(r in train_rows for r in rows)  # real, none repeated
        counts.append(torch.bincount(torch.tensor([train_rows[r] for r in rows]), minlength=10).float())
    spread = torch.stack(counts).std(0).mean()
    assert 6 < spread < 14  # multinomial(1000, ≈ 1/10): σ = √(1000 · 0.1 · 0.9) ≈ 9.5 a class
    y = EQUAL[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]  # any order of labels
    x = evaluate.real_digits(1000, 0, labels=y)
    assert torch.bincount(torch.tensor([train_rows[r] for r in _rows(x)]), minlength=10).tolist() == [100] * 10


def test_the_two_wrong_floors_sit_on_either_side_of_the_honest_one(classifier):
    """Equal class counts (the stratified split) are below what a perfect unconditional sampler reaches;
    a draw with replacement (≈ 1/e repeats) is above it."""
    honest = evaluate.fdd_floor(classifier)
    g = torch.Generator().manual_seed(0)
    with_repeats = sum(evaluate.fdd(classifier, TRAIN[torch.randint(0, len(TRAIN), (1000,), generator=g)])
                       for _ in range(10)) / 10
    assert evaluate.fdd_floor(classifier, 1000, EQUAL) < 0.9 * honest < with_repeats
    assert evaluate.fdd_floor(classifier) == evaluate.fdd_floor(classifier)  # seeded


def test_smaller_floors_grow_as_n_shrinks(classifier):
    floors = [evaluate.fdd_floor(classifier, n) for n in (200, 500, 1000)]
    assert floors == sorted(floors, reverse=True)  # the 1/n bias of the plug-in estimate


def test_a_real_draw_scores_about_one_and_a_degraded_one_well_above(classifier):
    real = [evaluate.fdd_ratio(classifier, evaluate.real_digits(1000, 100 + s)) for s in range(5)]
    assert 0.6 < sum(real) / 5 < 1.4  # one draw scatters (class counts); the mean sits near 1
    noisy = (evaluate.real_digits(1000, 100) + 0.3 * torch.randn(1000, 1, 8, 8,
                                                                 generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert evaluate.fdd_ratio(classifier, noisy) > 2


def test_no_floor_where_the_train_split_runs_short():
    classifier = pretrained.load("digits-classifier").model
    with pytest.raises(ValueError, match="n must be between 2 and 1100"):
        evaluate.fdd_floor(classifier, 1200)
    with pytest.raises(ValueError, match="labels must hold n = 1500 class indices, at most"):
        evaluate.fdd_floor(classifier, 1500, torch.zeros(1500, dtype=torch.long))
    with pytest.raises(ValueError, match="samples: at most 1100 for an unconditional ratio"):
        evaluate.fdd_ratio(classifier, TRAIN)
    with pytest.raises(ValueError, match="labels must have one entry per sample"):
        evaluate.fdd_ratio(classifier, TRAIN[:10], EQUAL)
    with pytest.raises(ValueError, match="at least one tensor"):
        evaluate.fdd_ratios(classifier, [])
    with pytest.raises(ValueError, match="draws must be at least 1"):
        evaluate.fdd_floor(classifier, draws=0)


def test_fd_infinity_and_kid_see_real_data_as_real(classifier):
    real = evaluate.real_digits(1000, 7)
    fd_inf = evaluate.fdd_infinity(classifier, real)
    assert fd_inf < evaluate.fdd(classifier, real)  # the 1/n bias is gone
    value, se = evaluate.kid(classifier, real)
    assert abs(value) < 2.5 * se  # real against real: indistinguishable
    blurred = torch.nn.functional.avg_pool2d(real, 3, stride=1, padding=1, count_include_pad=False)
    value, se = evaluate.kid(classifier, blurred)
    assert value > 4 * se and evaluate.fdd_infinity(classifier, blurred) > 3 * max(fd_inf, 1.0)


def test_spread_over_seeds(classifier):
    noisy = [(evaluate.real_digits(1000, s) + 0.3 * torch.randn(1000, 1, 8, 8,
                                                                generator=torch.Generator().manual_seed(s))).clamp(-1, 1)
             for s in evaluate.SEEDS]
    spread = evaluate.fdd_ratios(classifier, noisy)
    assert len(spread.values) == 3 and 1 < spread.lo <= spread.mean <= spread.hi
    assert spread.values[0] == evaluate.fdd_ratio(classifier, noisy[0])
    assert "3 seeds" in str(spread)
