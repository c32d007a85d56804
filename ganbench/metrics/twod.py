"""The standard quality measures of 2-D mixture GANs: modes covered and percentage of high-quality samples.

As in the unrolled-GAN / VEEGAN / PacGAN evaluations: a sample is high quality when it lies within three standard
deviations of its nearest mixture centre; a mode is covered when it receives at least a fifth of the high-quality
samples a perfect generator would put there (20 of 2500 samples for 25 modes, PacGAN's threshold).
"""

from __future__ import annotations

import torch

HQ_RADIUS_STDS = 3.0
COVERED_SHARE = 0.2


def mode_quality(samples: torch.Tensor, modes: torch.Tensor, std: float) -> dict[str, float]:
    """`modes_covered` (a count out of len(modes)) and `hq_percent` for `samples` (N, 2)."""
    if samples.ndim != 2 or samples.shape[1] != modes.shape[1]:
        raise ValueError(f"samples must be (N, {modes.shape[1]}), got {tuple(samples.shape)}")
    samples = samples.detach().to(torch.float64).cpu()
    centres = modes.to(torch.float64).cpu()
    distances = torch.cdist(samples, centres)  # (N, M)
    nearest_distance, nearest = distances.min(dim=1)
    high_quality = nearest_distance <= HQ_RADIUS_STDS * std
    counts = torch.bincount(nearest[high_quality], minlength=len(centres))
    threshold = COVERED_SHARE * len(samples) / len(centres)
    return {
        "modes_covered": float((counts >= threshold).sum()),
        "hq_percent": 100.0 * float(high_quality.double().mean()),
    }
