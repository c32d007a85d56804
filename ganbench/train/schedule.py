"""Learning-rate schedules as pure functions of the generator step, so a resumed run continues exactly."""

from __future__ import annotations


def lr_factor(kind: str, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at generator step `step` (0-based) of `total_steps`."""
    if kind == "none":
        return 1.0
    if kind == "linear":  # to zero at the last step, as the SN-GAN / GN-GAN ResNet configurations
        return max(0.0, 1.0 - step / total_steps)
    raise ValueError(f"unknown learning-rate decay {kind!r}")
