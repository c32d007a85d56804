"""Improved precision/recall: hand-worked 1-D sets, limiting cases, and agreement with torch-fidelity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_prc import prc_features_to_metric

from ganbench.errors import MetricError
from ganbench.metrics.prdc import knn_radii, precision_recall


def test_radii_by_hand_in_one_dimension() -> None:
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # k = 1: nearest other point; k = 2: second nearest.
    torch.testing.assert_close(knn_radii(points, k=1), torch.tensor([1.0, 1.0, 2.0, 4.0]))
    torch.testing.assert_close(knn_radii(points, k=2), torch.tensor([3.0, 2.0, 3.0, 6.0]))


def test_precision_recall_by_hand_in_one_dimension() -> None:
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # k = 1 radii: 1, 1, 1, 1 -> real manifold [-1, 4]
    fake = torch.tensor([[3.5], [10.0], [11.0], [30.0]])  # k = 1 radii: 6.5, 1, 1, 19 -> [-3, 10] ∪ [9, 12] ∪ [11, 49]
    precision, recall = precision_recall(real, fake, k=1)
    assert precision == pytest.approx(1 / 4)  # only 3.5 lies within 1 of a real point
    assert recall == pytest.approx(4 / 4)  # every real point lies within 6.5 of 3.5


def test_identical_and_disjoint_sets() -> None:
    points = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert precision_recall(points, points.clone()) == (1.0, 1.0)
    assert precision_recall(points, points + 100.0) == (0.0, 0.0)


def test_a_collapsed_generator_has_precision_without_recall() -> None:
    real = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
    collapsed = real[:1].repeat(300, 1) + 1e-4 * torch.randn(300, 4, generator=torch.Generator().manual_seed(1))
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.05


@pytest.mark.parametrize("chunk", [7, 64, 10_000])
def test_matches_torch_fidelity_whatever_the_chunk(chunk: int) -> None:
    rng = np.random.default_rng(4)
    real = torch.from_numpy(rng.normal(size=(250, 16)).astype(np.float32))
    fake = torch.from_numpy(rng.normal(0.4, 1.2, size=(180, 16)).astype(np.float32))
    theirs = prc_features_to_metric(fake, real, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False)
    precision, recall = precision_recall(real, fake, k=3, chunk=chunk)
    assert precision == pytest.approx(theirs["precision"], abs=1e-6)
    assert recall == pytest.approx(theirs["recall"], abs=1e-6)
    assert 0.0 < precision < 1.0 and 0.0 < recall < 1.0


def test_too_few_samples_and_mismatched_dimensions() -> None:
    with pytest.raises(MetricError, match="more than k=3"):
        precision_recall(torch.zeros(3, 2), torch.zeros(10, 2))
    with pytest.raises(MetricError, match="mismatched features"):
        precision_recall(torch.zeros(10, 2), torch.zeros(10, 3))
