"""Improved precision and recall (Kynkäänniemi et al., 2019): k-NN manifolds in feature space."""

from __future__ import annotations

import torch

from ganbench.errors import MetricError


def _radii(features: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour within the same set (itself excluded)."""
    radii = []
    for block in features.split(chunk):
        distances = torch.cdist(block, features)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # +1: the zero distance to itself
    return torch.cat(radii)


def _coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    """Fraction of `queries` inside at least one k-NN ball of `support`."""
    inside = []
    for block in queries.split(chunk):
        inside.append((torch.cdist(block, support) <= radii.unsqueeze(0)).any(dim=1))
    return float(torch.cat(inside).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Precision: fakes on the real manifold; recall: reals on the fake manifold."""
    real, fake = torch.as_tensor(real, dtype=torch.float32), torch.as_tensor(fake, dtype=torch.float32)
    if min(len(real), len(fake)) <= k:
        raise MetricError(f"pr: need more than k={k} samples on each side; raise --num-samples")
    precision = _coverage(fake, real, _radii(real, k, chunk), chunk)
    recall = _coverage(real, fake, _radii(fake, k, chunk), chunk)
    return precision, recall
