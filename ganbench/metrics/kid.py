"""Kernel Inception Distance: the unbiased MMD² with a cubic polynomial kernel, averaged over random subsets."""

from __future__ import annotations

import numpy as np

from ganbench.errors import MetricError


def polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0) -> float:
    """Unbiased MMD² between two equal-size sets with k(a, b) = (a·b / d + coef)^degree."""
    dim = x.shape[1]
    k_xx = (x @ x.T / dim + coef) ** degree
    k_yy = (y @ y.T / dim + coef) ** degree
    k_xy = (x @ y.T / dim + coef) ** degree
    m = len(x)
    sum_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    sum_yy = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(sum_xx + sum_yy - 2 * k_xy.mean())


def kernel_inception_distance(
    features_1: np.ndarray,
    features_2: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
) -> tuple[float, float]:
    """Mean and standard deviation of the unbiased MMD² over `subsets` random subsets of each side."""
    f1, f2 = np.asarray(features_1, np.float64), np.asarray(features_2, np.float64)
    if min(len(f1), len(f2)) < subset_size:
        raise MetricError(
            f"kid: subset size {subset_size} exceeds the samples ({len(f1)} generated, {len(f2)} reference); "
            "raise --num-samples or lower the KID subset size"
        )
    rng = np.random.RandomState(seed)
    values = [
        polynomial_mmd2(
            f1[rng.choice(len(f1), subset_size, replace=False)],
            f2[rng.choice(len(f2), subset_size, replace=False)],
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))
