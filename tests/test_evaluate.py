"""The digits figures: honest floors (no repeated images), FD∞, KID with its error, and the ratio helper
every report uses, checked in both feature spaces."""
import pytest
import torch

import diffusion_edu as de
from diffusion_edu import evaluate, pretrained

TRAIN = de.digits("train")[0]


@pytest.fixture(scope="module", params=["digits-classifier", "digits-classifier-mlp"])
def classifier(request):
    return pretrained.load(request.param).model


def test_both_feature_spaces_classify_well_and_differ():
    cnn, mlp = (pretrained.load(n).model for n in ("digits-classifier", "digits-classifier-mlp"))
    x, y = de.digits("test")
    assert evaluate.accuracy(cnn, x, y) >= 0.97 and evaluate.accuracy(mlp, x, y) >= 0.95
    assert cnn.features(x).shape[1] != mlp.features(x).shape[1]  # not the same network twice


def test_the_floor_at_the_train_size_is_the_train_split_and_its_ratio_is_one(classifier):
    assert evaluate.fdd_floor(classifier) == evaluate.fdd(classifier, TRAIN)
    assert evaluate.fdd_ratio(classifier, TRAIN) == 1.0


def test_repeated_images_would_flatter_a_model(classifier):
    """The point of the honest floor: a with-replacement draw (≈ 37 % repeats) scores well above it."""
    g = torch.Generator().manual_seed(0)
    with_repeats = [evaluate.fdd(classifier, TRAIN[torch.randint(0, len(TRAIN), (len(TRAIN),), generator=g)])
                    for _ in range(10)]
    assert sum(with_repeats) / 10 > 1.25 * evaluate.fdd_floor(classifier)  # measured: ×1.42 in both spaces


def test_smaller_floors_use_subsets_and_grow_as_n_shrinks(classifier):
    floors = [evaluate.fdd_floor(classifier, n) for n in (300, 700, len(TRAIN))]
    assert floors == sorted(floors, reverse=True)  # the 1/n bias of the plug-in estimate
    assert evaluate.fdd_floor(classifier, 300) == evaluate.fdd_floor(classifier, 300)  # seeded


def test_no_floor_beyond_the_train_split():
    classifier = pretrained.load("digits-classifier").model
    with pytest.raises(ValueError, match="n must be between 2 and 1437"):
        evaluate.fdd_floor(classifier, 1438)
    with pytest.raises(ValueError, match="at least one tensor"):
        evaluate.fdd_ratios(classifier, [])


def test_fd_infinity_and_kid_see_real_data_as_real(classifier):
    fd_inf = evaluate.fdd_infinity(classifier, TRAIN)
    assert 0 <= fd_inf < evaluate.fdd(classifier, TRAIN) / 2  # most of the plug-in floor is 1/n bias
    value, se = evaluate.kid(classifier, TRAIN)
    assert abs(value) < 2 * se  # real against real: indistinguishable
    blurred = torch.nn.functional.avg_pool2d(TRAIN, 3, stride=1, padding=1, count_include_pad=False)
    value, se = evaluate.kid(classifier, blurred)
    assert value > 4 * se and evaluate.fdd_infinity(classifier, blurred) > 5 * fd_inf


def test_spread_over_seeds(classifier):
    noisy = [(TRAIN + 0.3 * torch.randn(TRAIN.shape, generator=torch.Generator().manual_seed(s))).clamp(-1, 1)
             for s in evaluate.SEEDS]
    spread = evaluate.fdd_ratios(classifier, noisy)
    assert len(spread.values) == 3 and 1 < spread.lo <= spread.mean <= spread.hi  # σ = 0.3 noise: ≈ 3.8–3.9×
    assert spread.values[0] == evaluate.fdd_ratio(classifier, noisy[0])
    assert "3 seeds" in str(spread)
