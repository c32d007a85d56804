"""Fréchet Inception Distance from feature statistics: ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), in float64."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg

from ganbench.errors import MetricError

SQRTM_EPS = 1e-6  # the diagonal offset the TTUR and pytorch-fid code add when the product's square root fails
IMAG_TOLERANCE = 1e-3  # the largest imaginary part of diag((Σ₁Σ₂)^½) treated as round-off (as pytorch-fid)


def _as_float64(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (divisor N − 1, as numpy's `cov` and the reference code) of (N, D) features."""
    features = _as_float64(features)
    if features.ndim != 2 or len(features) < 2:
        raise MetricError(
            f"fid: need at least 2 feature rows of shape (N, D), got {features.shape}; raise --num-samples"
        )
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    # scipy warns (LinAlgWarning) when the product is singular, which it is whenever N ≤ D; the result is still
    # used when finite, exactly as the reference implementations do, so the warning is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(matrix)


def _usable(root: np.ndarray) -> bool:
    if not np.isfinite(root).all():
        return False
    return not np.iscomplexobj(root) or bool(np.allclose(np.diagonal(root).imag, 0, atol=IMAG_TOLERANCE))


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
    eps: float = SQRTM_EPS,
) -> float:
    """The Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂); never negative."""
    mu1, mu2 = np.atleast_1d(_as_float64(mu1)), np.atleast_1d(_as_float64(mu2))
    sigma1, sigma2 = np.atleast_2d(_as_float64(sigma1)), np.atleast_2d(_as_float64(sigma2))
    dim = len(mu1)
    if mu1.ndim != 1 or mu1.shape != mu2.shape or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise MetricError(
            f"fid: mismatched statistics (mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}); "
            "compute both sides with the same Inception features (recompute the reference with `ganbench stats`)"
        )
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise MetricError("fid: the statistics contain NaN or infinity; the generator diverged or the file is damaged")
    diff = mu1 - mu2
    root = _sqrtm(sigma1 @ sigma2)
    if not _usable(root):
        # Σ₁Σ₂ nearly singular: regularise both diagonals, as the TTUR reference code does, and try once more.
        offset = np.eye(dim) * eps
        root = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not _usable(root):
            raise MetricError(
                "fid: the square root of Σ₁Σ₂ is not real even after regularisation; use more samples "
                "(at least as many as the 2048 feature dimensions)"
            )
    trace_root = float(np.trace(root).real)
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)
    # Round-off can push the distance of two (near) equal distributions a hair below zero; FID is a distance.
    return max(distance, 0.0)
