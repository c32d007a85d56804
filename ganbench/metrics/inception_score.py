"""Inception Score from the 1008 Inception logits: exp E[KL(p(y|x) ‖ p(y))], averaged over splits."""

from __future__ import annotations

import numpy as np
import torch

from ganbench.errors import MetricError


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Mean and standard deviation over `splits` consecutive splits, in float64."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if logits.ndim != 2:
        raise MetricError(f"is: expected (N, classes) logits, got shape {tuple(logits.shape)}")
    if len(logits) < splits:
        raise MetricError(f"is: {len(logits)} samples cannot fill {splits} splits; raise --num-samples")
    log_p = torch.log_softmax(logits, dim=1)
    scores = []
    for chunk in log_p.chunk(splits):
        p = chunk.exp()
        log_marginal = torch.logsumexp(chunk, dim=0) - np.log(len(chunk))
        kl = (p * (chunk - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
