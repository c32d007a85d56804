"""KID: a hand-written MMD estimate, unbiasedness, and agreement with torch-fidelity's implementation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kid_features_to_metric

from ganbench.errors import MetricError
from ganbench.metrics.kid import kernel_inception_distance


def _mmd2_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² written out term by term, k(a, b) = (a·b/d + 1)³."""
    d, m = x.shape[1], len(x)

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / d + 1.0) ** 3)

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_one_full_subset_equals_the_written_out_estimate() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1.0, size=(7, 3))
    # A subset as large as the set is a permutation of it, and the estimate does not depend on the order.
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=7)
    assert mean == pytest.approx(_mmd2_by_loops(x, y), rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_unbiased_on_two_draws_of_one_distribution() -> None:
    rng = np.random.default_rng(1)
    estimates = [
        kernel_inception_distance(rng.normal(size=(100, 16)), rng.normal(size=(100, 16)), subsets=1, subset_size=100)[0]
        for _ in range(60)
    ]
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates)) < 3 * standard_error  # a biased (V-statistic) estimate would sit well above 0
    shifted = kernel_inception_distance(rng.normal(size=(200, 16)), rng.normal(1.0, 1.0, (200, 16)), subset_size=100)
    assert shifted[0] > 100 * standard_error


@pytest.mark.parametrize(("subsets", "size"), [(20, 100), (5, 300)])
def test_matches_torch_fidelity(subsets: int, size: int) -> None:
    rng = np.random.default_rng(2)
    fake, real = rng.normal(size=(300, 32)), rng.normal(0.3, 1.0, size=(400, 32))
    ours = kernel_inception_distance(fake, real, subsets=subsets, subset_size=size, seed=2020)
    theirs = kid_features_to_metric(
        torch.from_numpy(fake),
        torch.from_numpy(real),
        kid_subsets=subsets,
        kid_subset_size=size,
        kid_degree=3,
        kid_gamma=None,
        kid_coef0=1,
        kid_kernel="poly",
        verbose=False,
        rng_seed=2020,
    )
    assert ours[0] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours[1] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)


def test_float32_features_are_scored_in_float64() -> None:
    rng = np.random.default_rng(3)
    fake, real = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    single = kernel_inception_distance(fake, real, subsets=4, subset_size=50)
    double = kernel_inception_distance(fake.astype(np.float64), real.astype(np.float64), subsets=4, subset_size=50)
    assert single == double


def test_subset_larger_than_the_samples_is_one_line() -> None:
    with pytest.raises(MetricError, match="subset size 100 exceeds") as caught:
        kernel_inception_distance(np.zeros((10, 4)), np.zeros((200, 4)), subset_size=100)
    assert "\n" not in str(caught.value)


def test_mismatched_dimensions_are_refused() -> None:
    with pytest.raises(MetricError, match="mismatched features"):
        kernel_inception_distance(np.zeros((10, 4)), np.zeros((10, 5)), subset_size=5)
