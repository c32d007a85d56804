"""Gradient penalties on random interpolates: WGAN-GP (Gulrajani et al. 2017) and LGAN's max-GP (Zhou et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn

from ganbench.methods.base import METHODS, Method, output_and_gradient_norm


def interpolation_weights(real: torch.Tensor) -> torch.Tensor:
    """α ~ U(0, 1), one per sample, shaped to broadcast over a sample (the penalties' only random draw)."""
    # global RNG on the tensors' device: it is checkpointed, so a resumed run draws the same alphas
    return torch.rand((len(real),) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)


def _interpolates(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    n = min(len(real), len(fake))
    real, fake = real[:n].detach(), fake[:n].detach()
    alpha = interpolation_weights(real) if alpha is None else alpha[:n]
    return real + alpha * (fake - real)


def interpolate_gradient_norms(
    d: nn.Module, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None = None, create_graph: bool = True
) -> torch.Tensor:
    """‖∇D(x̂ᵢ)‖ on x̂ = real + α(fake − real); α drawn here when not given."""
    _, _, grad_norm = output_and_gradient_norm(d, _interpolates(real, fake, alpha), create_graph=create_graph)
    return grad_norm


def gradient_penalty(
    d: nn.Module, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None = None
) -> torch.Tensor:
    """E[(‖∇D(x̂)‖ − 1)²] over x̂ = real + α(fake − real), α ~ U(0, 1) per sample."""
    return (interpolate_gradient_norms(d, real, fake, alpha) - 1.0).square().mean()


def max_gradient_penalty(
    d: nn.Module, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None = None
) -> torch.Tensor:
    """(maxᵢ ‖∇D(x̂ᵢ)‖)², LGAN's penalty on the largest local slope."""
    return interpolate_gradient_norms(d, real, fake, alpha).max().square()


class WganGp(Method):
    name = "wgan-gp"
    label = "WGAN-GP"
    paper = "WGAN-GP"
    tag = "wgangp"
    description = "gradient penalty lambda E[(|grad D| - 1)^2] on real-fake interpolates"
    loss_family = "Wasserstein"
    default_loss = "wasserstein"

    def penalty_draws(self, real: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (interpolation_weights(real),)

    def penalty(
        self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, draws: tuple[torch.Tensor, ...] = ()
    ) -> torch.Tensor:
        return self.cfg.gp_lambda * gradient_penalty(d, real, fake, *draws)


class Lgan(Method):
    name = "lgan"
    label = "LGAN"
    paper = "LGAN max-GP"
    tag = "lgan"
    description = "LGAN's max gradient penalty lambda (max |grad D|)^2 on real-fake interpolates"
    loss_family = "LGAN"
    default_loss = "lgan-exp"  # the LGAN code's default objective (sGAN_type exp)
    loss_enforced = True
    penalty_is_max = True

    def penalty_draws(self, real: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (interpolation_weights(real),)

    def penalty(
        self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, draws: tuple[torch.Tensor, ...] = ()
    ) -> torch.Tensor:
        return self.cfg.lgan_lambda * max_gradient_penalty(d, real, fake, *draws)

    def penalty_peak(
        self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, draws: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        alpha = draws[0] if draws else None
        return interpolate_gradient_norms(d, real, fake, alpha, create_graph=False).max()


METHODS.add("wgan-gp", WganGp)
METHODS.add("lgan", Lgan)
