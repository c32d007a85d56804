"""Consistency regularization (Zhang et al. 2020), on whatever logits the method produces, as the GN-GAN code does."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganbench.methods.base import Method
from ganbench.recipe import MethodConfig


def augment(x: torch.Tensor, translate: float, flip: bool) -> torch.Tensor:
    """Per-sample random horizontal flip (p = 0.5) and integer translation up to translate·side, zero fill."""
    if x.ndim != 4:
        return x
    n, _, h, w = x.shape
    if flip:
        flips = torch.rand(n, device=x.device) < 0.5
        x = torch.where(flips.view(n, 1, 1, 1), x.flip(3), x)
    pad_y, pad_x = round(translate * h), round(translate * w)
    if pad_x == 0 and pad_y == 0:
        return x
    shift_y = torch.randint(-pad_y, pad_y + 1, (n, 1), device=x.device)
    shift_x = torch.randint(-pad_x, pad_x + 1, (n, 1), device=x.device)
    padded = F.pad(x, (pad_x, pad_x, pad_y, pad_y)).permute(0, 2, 3, 1)  # (n, h + 2py, w + 2px, c)
    rows = torch.arange(h, device=x.device) + pad_y - shift_y  # (n, h): output row i reads padded row i + py − dy
    cols = torch.arange(w, device=x.device) + pad_x - shift_x
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)


def consistency_penalty(
    method: Method, d: nn.Module, real: torch.Tensor, fake: torch.Tensor | None, cfg: MethodConfig
) -> torch.Tensor | None:
    """λ·mean((f̂(T(x)) − f̂(x))²) on reals, plus the same on fakes with bCR; None when λ = 0.

    Neither branch is detached, as in the GN-GAN code family (basiclab/Faster-GNGAN-PyTorch,
    utils/regularization.py: the real branch is the loss's own `pred_real`, graph kept): the squared difference is
    differentiated through both, pulling them together. That code reuses the loss's real logits; this recomputes
    them (same value; the trainer's call passes no logits).
    """
    if cfg.cr_lambda == 0:
        return None
    term = _squared_difference(method, d, real, cfg)
    if cfg.bcr and fake is not None:
        term = term + _squared_difference(method, d, fake.detach(), cfg)
    return cfg.cr_lambda * term


def _squared_difference(method: Method, d: nn.Module, x: torch.Tensor, cfg: MethodConfig) -> torch.Tensor:
    augmented = augment(x, cfg.cr_translate, cfg.cr_flip)
    return (method.logits(d, augmented) - method.logits(d, x)).square().mean()
