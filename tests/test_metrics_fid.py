"""FID from statistics: against pytorch-fid's reference implementation and the closed form of Gaussians."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_fid.fid_score import calculate_frechet_distance

from ganbench.errors import MetricError
from ganbench.metrics.fid import feature_statistics, frechet_distance


def _random_stats(rng: np.random.Generator, dim: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.normal(size=(dim * 3, dim))
    return rng.normal(size=dim), a.T @ a / len(a)


def test_matches_pytorch_fid_on_random_statistics() -> None:
    rng = np.random.default_rng(0)
    for dim in (2, 16, 64):
        mu1, s1 = _random_stats(rng, dim)
        mu2, s2 = _random_stats(rng, dim)
        ours = frechet_distance(mu1, s1, mu2, s2)
        reference = calculate_frechet_distance(mu1, s1, mu2, s2)
        assert ours == pytest.approx(reference, rel=1e-6)


def test_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=2, max_value=12))
def test_fid_of_a_set_with_itself_is_zero_and_never_negative(seed: int, dim: int) -> None:
    features = np.random.default_rng(seed).normal(size=(dim + 5, dim))
    mu, sigma = feature_statistics(features)
    value = frechet_distance(mu, sigma, mu, sigma)
    assert 0.0 <= value < 1e-6


def test_mismatched_statistics_are_refused() -> None:
    with pytest.raises(MetricError, match="mismatched statistics"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
