"""Gradient normalizations of D's output: GN (Wu et al. 2021), PGN (Xia 2023) and GraN (Bhaskara et al. 2022)."""

from __future__ import annotations

import torch
from torch import nn

from ganbench.methods.base import METHODS, Method, output_and_gradient_norm


def gradient_normalize(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GN: f̂ = f / (‖∇ₓf‖ + |f|), no epsilon; |f̂| ≤ 1 and f̂ is invariant to scaling f."""
    f, _, grad_norm = output_and_gradient_norm(d, x)
    return f / (grad_norm + f.abs())


def penalty_gradient_normalize(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """PGN: f̂ = (1 − f) / (‖𝟏 − ∇ₓf‖ + |1 − f|), 𝟏 − ∇ₓf taken element-wise, as the official PGN code."""
    f, g, _ = output_and_gradient_norm(d, x)
    shifted = (1.0 - g).flatten(1).norm(dim=1)
    return (1.0 - f) / (shifted + (1.0 - f).abs())


def piecewise_gradient_normalize(d: nn.Module, x: torch.Tensor, k: float, eps: float, variant: str) -> torch.Tensor:
    """GraN: f̂ = K·f·‖g‖ / (‖g‖² + ε) (`ratio`, ≈ K·f/‖g‖) or K·f / (‖g‖ + ε) (`additive`)."""
    f, _, grad_norm = output_and_gradient_norm(d, x)
    if variant == "ratio":
        return k * f * grad_norm / (grad_norm.square() + eps)
    if variant == "additive":
        return k * f / (grad_norm + eps)
    raise ValueError(f"unknown GraN variant {variant!r}")


class GradientNormalization(Method):
    name = "gn"
    label = "GN"
    paper = "GN-GAN"
    tag = "gn"
    description = "gradient normalization: f / (|grad f| + |f|)"

    def logits(self, d: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return gradient_normalize(d, x)


class PenaltyGradientNormalization(Method):
    name = "pgn"
    label = "PGN"
    paper = "PGN-GAN"
    tag = "pgn"
    description = "penalty gradient normalization: (1 - f) / (|1 - grad f| + |1 - f|)"

    def logits(self, d: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return penalty_gradient_normalize(d, x)


class PiecewiseGradientNormalization(Method):
    name = "gran"
    label = "GraN"
    paper = "GraN-GAN"
    tag = "gran"
    description = "piecewise gradient normalization: K f |g| / (|g|^2 + eps) or K f / (|g| + eps)"

    def logits(self, d: nn.Module, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        return piecewise_gradient_normalize(d, x, cfg.gran_k, cfg.gran_eps, cfg.gran_variant)


METHODS.add("gn", GradientNormalization)
METHODS.add("pgn", PenaltyGradientNormalization)
METHODS.add("gran", PiecewiseGradientNormalization)
