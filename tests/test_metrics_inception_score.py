"""Inception Score: hand-built logits with known scores, and agreement with torch-fidelity's implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric

from ganbench.errors import MetricError
from ganbench.metrics.inception_score import inception_score


def test_uniform_predictions_score_one() -> None:
    mean, std = inception_score(np.zeros((100, 1008)), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("classes", [2, 10, 1008])
def test_confident_balanced_predictions_score_the_class_count(classes: int) -> None:
    n = classes * 10
    logits = np.full((n, classes), -1e4)
    logits[np.arange(n), np.arange(n) % classes] = 0.0  # one-hot
    # Unshuffled, every split of n/10 consecutive rows holds every class equally often: score C in every split.
    mean, std = inception_score(logits, splits=10, shuffle_seed=None)
    assert mean == pytest.approx(classes, rel=1e-9) and std == pytest.approx(0.0, abs=1e-6)


def test_confident_predictions_of_one_class_score_one() -> None:
    logits = np.full((50, 4), -1e4)
    logits[:, 2] = 0.0  # collapse: every image is the same class
    assert inception_score(logits, splits=5)[0] == pytest.approx(1.0)


def test_a_hand_computed_split() -> None:
    # Two images, p1 = (1, 0), p2 = (1/2, 1/2): p(y) = (3/4, 1/4);
    # KL1 = log(4/3), KL2 = ½log(2/3) + ½log(2); IS = exp((KL1 + KL2)/2).
    logits = np.log(np.array([[1.0, 1e-300], [0.5, 0.5]]))
    kl1 = np.log(4 / 3)
    kl2 = 0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)
    expected = np.exp((kl1 + kl2) / 2)
    assert inception_score(logits, splits=1)[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("n", "splits"), [(1000, 10), (1003, 10), (97, 7)])
def test_matches_torch_fidelity(n: int, splits: int) -> None:
    logits = torch.from_numpy(np.random.default_rng(n).normal(scale=3.0, size=(n, 50)))
    theirs = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=2020)
    ours = inception_score(logits, splits=splits)
    assert ours[0] == pytest.approx(theirs["inception_score_mean"], rel=1e-10)
    assert ours[1] == pytest.approx(theirs["inception_score_std"], rel=1e-8)
    unshuffled = isc_features_to_metric(logits, splits=splits, shuffle=False)
    assert inception_score(logits, splits, shuffle_seed=None)[0] == pytest.approx(
        unshuffled["inception_score_mean"], rel=1e-10
    )


def test_shuffling_protects_class_ordered_data() -> None:
    """Rows stored class by class (as the CIFAR-10 JPEG copy is) would give every split one class: IS ≈ 1."""
    classes = 10
    n = 1000
    logits = np.full((n, classes), -1e4)
    logits[np.arange(n), np.repeat(np.arange(classes), n // classes)] = 0.0
    assert inception_score(logits, splits=10, shuffle_seed=None)[0] == pytest.approx(1.0)
    assert inception_score(logits, splits=10)[0] > 9.0


def test_too_few_samples_for_the_splits_is_one_line() -> None:
    with pytest.raises(MetricError, match="cannot fill 10 splits") as caught:
        inception_score(np.zeros((5, 4)), splits=10)
    assert "\n" not in str(caught.value) and "--num-samples" in str(caught.value)


def test_wrong_shape_is_refused() -> None:
    with pytest.raises(MetricError, match="logits"):
        inception_score(np.zeros(10), splits=1)
