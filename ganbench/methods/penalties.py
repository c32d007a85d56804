"""Gradient penalties on random interpolates: WGAN-GP (Gulrajani et al. 2017) and LGAN's max-GP (Zhou et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn

from ganbench.methods.base import METHODS, Method, output_and_gradient_norm


def _interpolates(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    n = min(len(real), len(fake))
    real, fake = real[:n].detach(), fake[:n].detach()
    # global RNG on the tensors' device: it is checkpointed, so a resumed run draws the same alphas
    alpha = torch.rand((n,) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
    return real + alpha * (fake - real)


def gradient_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(‖∇D(x̂)‖ − 1)²] over x̂ = real + α(fake − real), α ~ U(0, 1) per sample."""
    _, _, grad_norm = output_and_gradient_norm(d, _interpolates(real, fake))
    return (grad_norm - 1.0).square().mean()


def max_gradient_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(maxᵢ ‖∇D(x̂ᵢ)‖)², LGAN's penalty on the largest local slope."""
    _, _, grad_norm = output_and_gradient_norm(d, _interpolates(real, fake))
    return grad_norm.max().square()


class WganGp(Method):
    name = "wgan-gp"
    label = "WGAN-GP"
    paper = "WGAN-GP"
    tag = "wgangp"
    description = "gradient penalty lambda E[(|grad D| - 1)^2] on real-fake interpolates"
    loss_family = "Wasserstein"
    default_loss = "wasserstein"

    def penalty(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self.cfg.gp_lambda * gradient_penalty(d, real, fake)


class Lgan(Method):
    name = "lgan"
    label = "LGAN"
    paper = "LGAN max-GP"
    tag = "lgan"
    description = "LGAN's max gradient penalty lambda (max |grad D|)^2 on real-fake interpolates"
    loss_family = "LGAN"
    default_loss = "lgan-exp"  # the LGAN code's default objective (sGAN_type exp)
    loss_enforced = True

    def penalty(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self.cfg.lgan_lambda * max_gradient_penalty(d, real, fake)


METHODS.add("wgan-gp", WganGp)
METHODS.add("lgan", Lgan)
