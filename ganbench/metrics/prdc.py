"""Improved precision and recall (Kynkäänniemi et al., 2019): k-nearest-neighbour manifolds in feature space.

Each set's manifold is the union of balls around its points, each ball's radius the distance to that point's k-th
nearest neighbour in the same set (k = 3; the point itself does not count). Precision is the share of generated
points inside the real manifold, recall the share of real points inside the generated one. Distances are computed
block by block so memory stays at `chunk` × N.
"""

from __future__ import annotations

import numpy as np
import torch

from ganbench.errors import MetricError

NEIGHBOURHOOD = 3
CHUNK = 1024


def _tensor(features: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    if not isinstance(features, torch.Tensor):
        features = torch.from_numpy(np.asarray(features))
    return features.to(device, torch.float32)


def knn_radii(features: torch.Tensor, k: int = NEIGHBOURHOOD, chunk: int = CHUNK) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row of the same set."""
    radii = [torch.cdist(block, features).kthvalue(k + 1, dim=1).values for block in features.split(chunk)]
    return torch.cat(radii)  # k + 1 above: the zero distance of each point to itself is the first


def manifold_coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = CHUNK) -> float:
    """Share of `queries` inside at least one ball of `support` (ball i has radius `radii[i]`)."""
    inside = [(torch.cdist(block, support) <= radii.unsqueeze(0)).any(dim=1) for block in queries.split(chunk)]
    return float(torch.cat(inside).double().mean())


def precision_recall(
    features_real: np.ndarray | torch.Tensor,
    features_fake: np.ndarray | torch.Tensor,
    k: int = NEIGHBOURHOOD,
    chunk: int = CHUNK,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """(precision, recall) of generated features against real ones."""
    real, fake = _tensor(features_real, device), _tensor(features_fake, device)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise MetricError(
            f"pr: mismatched features {tuple(fake.shape)} (generated) vs {tuple(real.shape)} (reference); "
            "compute both with the same Inception features"
        )
    if min(len(real), len(fake)) <= k:
        raise MetricError(
            f"pr: need more than k={k} samples on each side, got {len(fake)} generated and {len(real)} reference; "
            "raise --num-samples"
        )
    precision = manifold_coverage(fake, real, knn_radii(real, k, chunk), chunk)
    recall = manifold_coverage(real, fake, knn_radii(fake, k, chunk), chunk)
    return precision, recall
