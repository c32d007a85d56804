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
def update_ema(ema: nn.Module, generator: nn.Module, weight: float | torch.Tensor) -> None:
    """ema ← ema + weight·(G − ema) = decay·ema + (1 − decay)·G for parameters, weight = 1 − decay; buffers such as
    BN statistics are copied from G (as the GN-GAN code does).

    `weight` may be a 0-d device tensor (the CUDA-graph path reads it by address). weight = 1 copies G exactly:
    torch's lerp computes G − (G − ema)·(1 − weight) for weights ≥ 0.5.
    """
    ema_params = list(ema.parameters())
    params = [p.detach() for p in generator.parameters()]
    if isinstance(weight, torch.Tensor):  # the Scalar overload would read a device tensor back (a sync)
        torch._foreach_lerp_(ema_params, params, [weight] * len(ema_params))
    else:
        torch._foreach_lerp_(ema_params, params, weight)
    for ema_buffer, buffer in zip(ema.buffers(), generator.buffers(), strict=True):
        ema_buffer.copy_(buffer)
