"""Kernel Inception Distance (Bińkowski et al., 2018): the unbiased MMD² with a polynomial kernel, over subsets.

k(a, b) = (γ·a·b + c)^d with d = 3, γ = 1/dim, c = 1; the estimate averages `subsets` draws of `subset_size`
features from each side (without replacement within a draw), drawn with numpy's RandomState(seed) in the same
order as torch-fidelity, so both give the same number for the same features. Computed in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from ganbench.errors import MetricError

SUBSETS = 100
SUBSET_SIZE = 1000
DEGREE = 3
COEF = 1.0
SEED = 2020  # torch-fidelity's default


def polynomial_kernel(
    x: torch.Tensor, y: torch.Tensor, degree: int = DEGREE, gamma: float | None = None, coef: float = COEF
) -> torch.Tensor:
    """k(a, b) = (γ·a·b + c)^d for every pair of rows; γ defaults to 1/dim."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef) ** degree


def unbiased_mmd2(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor) -> float:
    """The unbiased MMD² estimate from the three kernel matrices of two equal-size sets (diagonals left out)."""
    m = len(k_xx)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    features_fake: np.ndarray | torch.Tensor,
    features_real: np.ndarray | torch.Tensor,
    *,
    subsets: int = SUBSETS,
    subset_size: int = SUBSET_SIZE,
    degree: int = DEGREE,
    gamma: float | None = None,
    coef: float = COEF,
    seed: int = SEED,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """Mean and standard deviation of the unbiased MMD² over `subsets` random subsets of each side."""
    fake = torch.as_tensor(np.asarray(features_fake) if not isinstance(features_fake, torch.Tensor) else features_fake)
    real = torch.as_tensor(np.asarray(features_real) if not isinstance(features_real, torch.Tensor) else features_real)
    if fake.ndim != 2 or real.ndim != 2 or fake.shape[1] != real.shape[1]:
        raise MetricError(
            f"kid: mismatched features {tuple(fake.shape)} (generated) vs {tuple(real.shape)} (reference); "
            "compute both with the same Inception features"
        )
    if subsets < 1 or subset_size < 2:
        raise MetricError(f"kid: {subsets} subsets of {subset_size}; use at least 1 subset of at least 2 samples")
    if min(len(fake), len(real)) < subset_size:
        raise MetricError(
            f"kid: subset size {subset_size} exceeds the samples ({len(fake)} generated, {len(real)} reference); "
            f"raise --num-samples to at least {subset_size} or lower the KID subset size"
        )
    fake = fake.to(device, torch.float64)
    real = real.to(device, torch.float64)
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        # Two draws per subset, generated side first: the order torch-fidelity draws them in.
        x = fake[torch.from_numpy(rng.choice(len(fake), subset_size, replace=False)).to(device)]
        y = real[torch.from_numpy(rng.choice(len(real), subset_size, replace=False)).to(device)]
        k_xx = polynomial_kernel(x, x, degree, gamma, coef)
        k_yy = polynomial_kernel(y, y, degree, gamma, coef)
        k_xy = polynomial_kernel(x, y, degree, gamma, coef)
        values.append(unbiased_mmd2(k_xx, k_xy, k_yy))
    return float(np.mean(values)), float(np.std(values))
