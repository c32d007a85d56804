"""FID from statistics: against pytorch-fid's reference implementation and the closed form of Gaussians."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_fid.fid_score import calculate_frechet_distance

from ganbench.errors import MetricError
from ganbench.metrics.fid import feature_statistics, frechet_distance


def _random_stats(rng: np.random.Generator, dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return feature_statistics(rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim))


@pytest.mark.parametrize(("dim", "n"), [(2, 10), (16, 50), (64, 200), (32, 20)])  # the last: N < D, singular
def test_matches_pytorch_fid_on_random_statistics(dim: int, n: int) -> None:
    rng = np.random.default_rng(dim)
    mu1, s1 = _random_stats(rng, dim, n)
    mu2, s2 = _random_stats(rng, dim, n)
    reference = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-6)


def test_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1.0 + 4.0 + 0.0 + (1 + 4 - 2 * 2) + (4 + 1 - 2 * 2) + (9 + 1 - 2 * 3)  # = 11, by hand
    assert expected == pytest.approx(np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2)))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(11.0, rel=1e-9)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=6),
    st.lists(st.floats(0.01, 9), min_size=6, max_size=6),
    st.lists(st.floats(0.01, 9), min_size=6, max_size=6),
    st.floats(-3, 3),
)
def test_closed_form_for_any_diagonal_gaussians(
    mu: list[float], v1: list[float], v2: list[float], shift: float
) -> None:
    dim = len(mu)
    a, b = np.array(v1[:dim]), np.array(v2[:dim])
    mu1 = np.array(mu)
    mu2 = mu1 + shift
    expected = dim * shift**2 + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_closed_form_for_rotated_gaussians() -> None:
    """Σ₂ = R Σ₁ Rᵀ with Σ₁ = diag(a): for commuting-free pairs use the 2-D formula Tr√(Σ₁Σ₂) by eigenvalues."""
    a = np.array([4.0, 1.0])
    theta = 0.7
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    s1, s2 = np.diag(a), rotation @ np.diag(a) @ rotation.T
    # For 2x2 PSD matrices: Tr√M = √(Tr M + 2√det M), with M = Σ₁Σ₂ (det M = det Σ₁ det Σ₂).
    product = s1 @ s2
    trace_root = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = np.trace(s1) + np.trace(s2) - 2 * trace_root
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=2, max_value=12), st.integers(0, 20))
def test_fid_of_a_set_with_itself_is_zero_and_never_negative(seed: int, dim: int, extra: int) -> None:
    features = np.random.default_rng(seed).normal(size=(dim + 1 + extra, dim)) * 10.0
    mu, sigma = feature_statistics(features)
    value = frechet_distance(mu, sigma, mu, sigma)
    assert 0.0 <= value < 1e-6 * max(1.0, np.trace(sigma))


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=3, max_value=30))
def test_fid_is_symmetric_and_never_negative(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    mu1, s1 = feature_statistics(rng.normal(size=(n, 8)))
    mu2, s2 = feature_statistics(rng.normal(size=(n, 8)))
    forward, backward = frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1)
    assert forward >= 0.0 and forward == pytest.approx(backward, rel=1e-6, abs=1e-9)


def test_statistics_are_float64_mean_and_unbiased_covariance() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]], dtype=torch.float32)
    mu, sigma = feature_statistics(features)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, [3.0, 3.0])
    # by hand: deviations x (-2, 0, 2), y (-1, 3, -2); divisor N − 1 = 2
    np.testing.assert_allclose(sigma, [[8 / 2, (2 + 0 - 4) / 2], [(2 + 0 - 4) / 2, (1 + 9 + 4) / 2]])


def test_mismatched_statistics_are_refused() -> None:
    with pytest.raises(MetricError, match="mismatched statistics") as caught:
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    assert "\n" not in str(caught.value)
    with pytest.raises(MetricError, match="mismatched statistics"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


def test_non_finite_statistics_are_refused() -> None:
    with pytest.raises(MetricError, match="NaN"):
        frechet_distance(np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2))


def test_too_few_features_for_a_covariance() -> None:
    with pytest.raises(MetricError, match="at least 2"):
        feature_statistics(np.zeros((1, 4)))


@pytest.mark.parametrize(("n", "dim"), [(2000, 512), (300, 512)])  # full rank; rank-deficient (N < D)
def test_eigh_trace_agrees_with_scipy_sqrtm(n: int, dim: int) -> None:
    """The default eigendecomposition route gives the reference sqrtm route's FID to far better than 0.01."""
    rng = np.random.default_rng(7)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    real = np.maximum(rng.normal(size=(n, dim)) @ mixing, 0)  # ReLU'd correlated features, as pool3's are
    fake = np.maximum(rng.normal(loc=0.1, size=(n, dim)) @ mixing, 0)
    mu1, sigma1 = feature_statistics(real)
    mu2, sigma2 = feature_statistics(fake)
    by_eigh = frechet_distance(mu1, sigma1, mu2, sigma2, method="eigh")
    by_sqrtm = frechet_distance(mu1, sigma1, mu2, sigma2, method="sqrtm")
    assert by_eigh > 0.1
    assert abs(by_eigh - by_sqrtm) < 1e-6 * max(1.0, by_sqrtm)
