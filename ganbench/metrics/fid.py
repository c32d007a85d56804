"""Fréchet Inception Distance from feature statistics: ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), in float64.

The covariance of N samples has rank at most N − 1, so with N ≤ D samples of D features on either side (D = 2048 for
Inception pool3) it is rank-deficient and FID is biased upward, by an amount that depends on N: such a number is
comparable only with FIDs of the same N. `rank_deficiency_note` says so, in words every table shows beside it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy import linalg

from ganbench.errors import MetricError
from ganbench.metrics import inception

SQRTM_EPS = 1e-6  # the diagonal offset the TTUR and pytorch-fid code add when the product's square root fails
IMAG_TOLERANCE = 1e-3  # the largest imaginary part of diag((Σ₁Σ₂)^½) treated as round-off (as pytorch-fid)
# The largest |Tr (Σ₁Σ₂)^½ by scipy's sqrtm − by the eigenvalue path| accepted, relative to Tr Σ₁ + Tr Σ₂ (the scale
# of FID's terms): round-off differs by ~1e-8 of it even on rank-deficient, ill-conditioned pairs; a misbehaving
# sqrtm by far more.
SQRTM_AGREEMENT = 1e-6
RANK_MARK = "‡"  # beside a FID from N ≤ D samples on a side, in the `eval` table and the report
# ganbench's feature networks, all Inception pool3 (Extractor.features refuses features of another width)
POOL_EXTRACTORS = frozenset(
    cls.name for cls in (inception.TorchScriptTrunk, inception.TorchFidelityInception, inception.PytorchFidInception)
)


class SqrtmFallbackWarning(UserWarning):
    """scipy.linalg.sqrtm's square root of Σ₁Σ₂ failed its checks; the FID given is the eigenvalue path's."""


def _as_float64(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (divisor N − 1, as numpy's `cov` and the reference code) of (N, D) features.

    Computed in float64 where the features are: a tensor on the GPU is reduced there (50k x 2048 in milliseconds
    instead of seconds of host BLAS), and only the (D,) and (D, D) results come back.
    """
    if features.ndim != 2 or len(features) < 2:
        raise MetricError(
            f"fid: need at least 2 feature rows of shape (N, D), got {tuple(features.shape)}; raise --num-samples"
        )
    x = torch.as_tensor(features).detach().to(torch.float64)
    mu = x.mean(dim=0)
    centred = x - mu
    sigma = centred.T @ centred / (len(x) - 1)
    return mu.cpu().numpy(), sigma.cpu().numpy()


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


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, device: str | torch.device = "cpu") -> float:
    """Tr((Σ₁Σ₂)^½) for symmetric positive semi-definite Σ₁, Σ₂, by two symmetric eigendecompositions in float64.

    Σ₁Σ₂ is similar to the symmetric A = Σ₁^½ Σ₂ Σ₁^½, so the trace of its square root is Σ √λᵢ(A). This is what
    `scipy.linalg.sqrtm` of the product gives (to round-off), without the general matrix square root: seconds
    on the host for D = 2048 become a fraction of one on a GPU. Eigenvalues that round-off makes slightly negative
    (rank-deficient Σ when N ≤ D) are taken as 0.
    """
    s1 = torch.as_tensor(sigma1, dtype=torch.float64, device=device)
    s2 = torch.as_tensor(sigma2, dtype=torch.float64, device=device)
    w, v = torch.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T
    product = root1 @ s2 @ root1
    eigenvalues = torch.linalg.eigvalsh((product + product.T) / 2)
    return float(eigenvalues.clamp(min=0).sqrt().sum())


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
    eps: float = SQRTM_EPS,
    method: str = "eigh",
    device: str | torch.device = "cpu",
) -> float:
    """The Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂); never negative.

    `method` "eigh" (default) takes Tr((Σ₁Σ₂)^½) from symmetric eigendecompositions on `device`; "sqrtm" is the
    reference implementations' `scipy.linalg.sqrtm` of the product, with their ε-regularised retry, used only where
    it agrees with the eigenvalue path (else that path's value, with a SqrtmFallbackWarning).
    """
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
    if method == "eigh":
        trace_root = trace_sqrt_product(sigma1, sigma2, device)
    elif method == "sqrtm":
        trace_root = _trace_sqrtm(sigma1, sigma2, eps, device)
    else:
        raise ValueError(f"unknown FID method {method!r}; eigh or sqrtm")
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)
    # Round-off can push the distance of two (near) equal distributions a hair below zero; FID is a distance.
    return max(distance, 0.0)


def _trace_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float, device: str | torch.device = "cpu") -> float:
    """Tr((Σ₁Σ₂)^½) by `scipy.linalg.sqrtm`, as the reference code computes it, checked against the eigenvalue path.

    Some SciPy releases' sqrtm returns wrong or complex roots of such products. The root is used only when it is
    finite, its diagonal real to IMAG_TOLERANCE and its trace within SQRTM_AGREEMENT of the eigenvalue path's;
    otherwise the eigenvalue path's trace is returned, with a SqrtmFallbackWarning saying why.
    """
    exact = trace_sqrt_product(sigma1, sigma2, device)
    tolerance = SQRTM_AGREEMENT * float(np.trace(sigma1) + np.trace(sigma2))
    try:
        root = _sqrtm(sigma1 @ sigma2)
        if not _usable(root):
            # Σ₁Σ₂ nearly singular: regularise both diagonals, as the TTUR reference code does, and try once more.
            offset = np.eye(len(sigma1)) * eps
            root = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    except (ArithmeticError, ValueError) as err:  # numpy's LinAlgError is a ValueError
        problem = f"failed ({type(err).__name__}: {err})"
    else:
        problem = _root_problem(np.asarray(root), exact, tolerance)
    if problem:
        warnings.warn(
            f"fid: scipy.linalg.sqrtm's square root of Σ₁Σ₂ {problem}; using the float64 eigenvalue path's "
            f"Tr((Σ₁Σ₂)^½) = {exact:.6g} instead (method eigh, the default)",
            SqrtmFallbackWarning,
            stacklevel=3,
        )
        return exact
    return float(np.trace(root).real)


def _root_problem(root: np.ndarray, exact: float, tolerance: float) -> str:
    """What is wrong with sqrtm's `root` of Σ₁Σ₂ given the eigenvalue path's trace `exact`; "" when nothing."""
    if root.ndim != 2 or root.shape[0] != root.shape[1]:
        return f"has shape {root.shape}"
    if not np.isfinite(root).all():
        return "is not finite"
    if np.iscomplexobj(root):
        imaginary = float(np.abs(np.diagonal(root).imag).max(initial=0.0))
        if imaginary > IMAG_TOLERANCE:
            return f"is complex (imaginary parts up to {imaginary:.3g} on its diagonal)"
    trace = float(np.trace(root).real)
    if not abs(trace - exact) <= tolerance:
        return (
            f"has trace {trace:.6g}, which differs from the eigenvalue path's {exact:.6g} by {abs(trace - exact):.3g} "
            f"(more than {SQRTM_AGREEMENT:g} of Tr Σ₁ + Tr Σ₂)"
        )
    return ""


# ----------------------------------------------------------------------------------------------------
# Rank-deficient covariances: FIDs from N ≤ D samples on a side.


def feature_dim(extractor: str) -> int | None:
    """The width of the features behind a FID row of `extractor`: Inception pool3's for ganbench's feature networks;
    None for any other name (a stand-in), whose width the row does not say."""
    return inception.POOL_DIM if extractor in POOL_EXTRACTORS else None


def _count(value: Any) -> int | None:
    """A sample count as a metrics row or a report field holds it (int, float, digits); None when unknown or 0."""
    try:
        count = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return count if count > 0 else None


def rank_deficiency_note(n_fake: Any, n_real: Any, dim: int | None) -> str:
    """Why a FID from `n_fake` generated and `n_real` reference samples of `dim`-wide features is comparable only at
    equal N, in one line; "" when both sides have more than `dim` samples (or the width is unknown). A count that is
    unknown (an imported TTUR file that does not say, recorded as 0) is not judged."""
    if dim is None:
        return ""
    sides = [
        f"{count} {side}"
        for count, side in ((_count(n_fake), "generated"), (_count(n_real), "reference"))
        if count is not None and count <= dim
    ]
    if not sides:
        return ""
    return (
        f"N={', '.join(sides)} ≤ {dim} features: rank-deficient covariance, FID biased upward; "
        "comparable only at equal N"
    )


def row_rank_note(row: Mapping[str, Any]) -> str:
    """`rank_deficiency_note` of one metrics.parquet row (its metric, n_fake, n_real and extractor); "" for every
    metric but FID."""
    if row.get("metric") != "fid":
        return ""
    return rank_deficiency_note(row.get("n_fake"), row.get("n_real"), feature_dim(str(row.get("extractor", ""))))
