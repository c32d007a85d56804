"""Inception Score from the Inception network's 1008 logits: exp(E_x KL(p(y|x) ‖ p(y))), mean and std over splits.

As the original (Salimans et al., 2016) and torch-fidelity compute it: softmax over the logits, split i covers
rows [i·N/splits, (i+1)·N/splits), p(y) is the mean prediction within a split. Like torch-fidelity, the rows are
first shuffled with a fixed seed: a split must not hold one class only (datasets such as the CIFAR-10 JPEG copy are
stored class by class, which would make every split's score collapse).
"""

from __future__ import annotations

import numpy as np
import torch

from ganbench.errors import MetricError

SPLITS = 10
SHUFFLE_SEED = 2020  # torch-fidelity's default seed, so both give the same number for the same logits


def inception_score(
    logits: np.ndarray | torch.Tensor, splits: int = SPLITS, shuffle_seed: int | None = SHUFFLE_SEED
) -> tuple[float, float]:
    """Mean and standard deviation of the per-split scores of (N, classes) logits, in float64.

    `shuffle_seed=None` keeps the rows in the given order (the original code's behaviour).
    """
    logits = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits)
    logits = logits.detach().to("cpu", torch.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise MetricError(f"is: expected (N, classes) logits, got shape {tuple(logits.shape)}")
    n = len(logits)
    if splits < 1:
        raise MetricError(f"is: {splits} splits; use at least 1 (the papers use 10)")
    if n < splits:
        raise MetricError(f"is: {n} samples cannot fill {splits} splits; raise --num-samples (the papers use 50000)")
    if shuffle_seed is not None:
        logits = logits[torch.from_numpy(np.random.RandomState(shuffle_seed).permutation(n))]
    log_p = torch.log_softmax(logits, dim=1)
    scores = []
    for i in range(splits):
        chunk = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = torch.logsumexp(chunk, dim=0) - np.log(len(chunk))  # log of the mean prediction p(y)
        kl = (chunk.exp() * (chunk - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
