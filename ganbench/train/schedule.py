"""Learning-rate and EMA schedules as pure functions of the generator step, so a resumed run continues exactly."""

from __future__ import annotations

import torch

from ganbench.recipe import TrainConfig
from ganbench.train.fast import set_lr


def lr_factor(kind: str, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at generator step `step` (0-based) of `total_steps`."""
    if kind == "none":
        return 1.0
    if kind == "linear":  # to zero at the last step, as the SN-GAN / GN-GAN ResNet configurations
        return max(0.0, 1.0 - step / total_steps)
    raise ValueError(f"unknown learning-rate decay {kind!r}")


class Schedules:
    """The learning rates of both optimizers and the EMA weight at each step, written only when they change.

    On CUDA the learning rates (capturable Adam) and the EMA weight are 0-d device tensors filled in place, so a
    captured step reads each step's values by address; on the CPU they are plain floats.
    """

    def __init__(
        self, cfg: TrainConfig, opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer, device: torch.device
    ) -> None:
        self.cfg, self.opt_d, self.opt_g = cfg, opt_d, opt_g
        # 1 − ema_decay, or 1 (copy G) before ema_start
        self.ema_weight: float | torch.Tensor = torch.ones((), device=device) if device.type == "cuda" else 1.0
        self._current: tuple[float, float, float] | None = None

    def learning_rates(self, step: int) -> tuple[float, float]:
        """(lr_d, lr_g) at 0-based `step`."""
        factor = lr_factor(self.cfg.lr_decay, step, self.cfg.steps)
        return self.cfg.lr_d * factor, self.cfg.lr_g * factor

    def set(self, step: int) -> tuple[float, float]:
        """Learning rates and EMA weight of 0-based `step` into the optimizers and `ema_weight`; returns the rates."""
        lr_d, lr_g = self.learning_rates(step)
        # the EMA copies G while the 1-based step is below ema_start, as the official code
        ema = 1.0 - self.cfg.ema_decay if step + 1 >= self.cfg.ema_start else 1.0
        if self._current != (lr_d, lr_g, ema):
            set_lr(self.opt_d, lr_d)
            set_lr(self.opt_g, lr_g)
            if isinstance(self.ema_weight, torch.Tensor):
                self.ema_weight.fill_(ema)
            else:
                self.ema_weight = ema
            self._current = (lr_d, lr_g, ema)
        return lr_d, lr_g
