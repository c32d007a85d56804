"""Exponential moving average of the generator's weights (buffers such as BN statistics are copied)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(generator: nn.Module) -> nn.Module:
    ema = copy.deepcopy(generator)
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, generator: nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·G for parameters; buffers copied from G (as the GN-GAN code does)."""
    ema_params = list(ema.parameters())
    params = [p.detach() for p in generator.parameters()]
    if decay == 0.0:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), generator.buffers(), strict=True):
        ema_buffer.copy_(buffer)
