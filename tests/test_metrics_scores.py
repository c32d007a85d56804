"""Inception Score, KID and precision/recall on hand-built inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kid_features_to_metric

from ganbench.errors import MetricError
from ganbench.metrics.inception_score import inception_score
from ganbench.metrics.kid import kernel_inception_distance
from ganbench.metrics.prdc import precision_recall


def test_inception_score_of_uniform_predictions_is_one() -> None:
    mean, std = inception_score(np.zeros((100, 1008)), splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_confident_balanced_predictions_is_the_class_count() -> None:
    classes = 10
    logits = np.full((200, classes), -1e4)
    logits[np.arange(200), np.arange(200) % classes] = 0.0  # one-hot, each split holds every class equally
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(classes, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_refuses_too_few_samples() -> None:
    with pytest.raises(MetricError, match="cannot fill 10 splits"):
        inception_score(np.zeros((5, 4)), splits=10)


def test_kid_is_unbiased_on_two_draws_of_one_distribution() -> None:
    rng = np.random.default_rng(1)
    estimates = [
        kernel_inception_distance(rng.normal(size=(200, 32)), rng.normal(size=(200, 32)), subsets=1, subset_size=200)[0]
        for _ in range(40)
    ]
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates)) < 3 * standard_error
    a, b = rng.normal(size=(300, 32)), rng.normal(size=(300, 32))
    shifted, _ = kernel_inception_distance(a, b + 1.0, subsets=10, subset_size=300)
    assert shifted > 100 * standard_error


def test_kid_matches_torch_fidelity() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 16)), rng.normal(0.3, 1.0, size=(300, 16))
    ours, ours_std = kernel_inception_distance(a, b, subsets=20, subset_size=100, seed=2020)
    theirs = kid_features_to_metric(
        torch.from_numpy(a),
        torch.from_numpy(b),
        kid_subsets=20,
        kid_subset_size=100,
        kid_degree=3,
        kid_gamma=None,
        kid_coef0=1,
        kid_kernel="poly",
        verbose=False,
        rng_seed=2020,
    )
    assert ours == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours_std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)


def test_kid_refuses_subsets_larger_than_the_samples() -> None:
    with pytest.raises(MetricError, match="subset size"):
        kernel_inception_distance(np.zeros((10, 4)), np.zeros((10, 4)), subset_size=100)


def test_precision_recall_of_identical_and_disjoint_sets() -> None:
    points = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert precision_recall(points, points.clone()) == (1.0, 1.0)
    far = points + 100.0
    assert precision_recall(points, far) == (0.0, 0.0)


def test_precision_without_recall_for_a_collapsed_generator() -> None:
    real = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
    collapsed = real[:1].repeat(300, 1) + 1e-4 * torch.randn(300, 4, generator=torch.Generator().manual_seed(1))
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.05
