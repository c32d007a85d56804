"""Exponential moving average of the generator: weights and BatchNorm statistics, as the official GN-GAN code."""

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
    """ema ← ema + weight·(G − ema) = decay·ema + (1 − decay)·G, weight = 1 − decay, for every parameter and every
    floating-point buffer (BN running mean and variance); integer buffers (BN's batch counter) are copied.

    The official code averages its whole state dict, so EMA-G's BN statistics are an average too: what EMA-G needs
    when it samples with running statistics (eval.bn_mode = "running").
    `weight` may be a 0-d device tensor (the CUDA-graph path reads it by address). weight = 1 copies G exactly:
    torch's lerp computes G − (G − ema)·(1 − weight) for weights ≥ 0.5.
    """
    ema_float = [t for t in (*ema.parameters(), *ema.buffers()) if t.is_floating_point()]
    source = [t.detach() for t in (*generator.parameters(), *generator.buffers()) if t.is_floating_point()]
    if isinstance(weight, torch.Tensor):  # the Scalar overload would read a device tensor back (a sync)
        torch._foreach_lerp_(ema_float, source, [weight] * len(ema_float))
    else:
        torch._foreach_lerp_(ema_float, source, weight)
    for ema_buffer, buffer in zip(ema.buffers(), generator.buffers(), strict=True):
        if not buffer.is_floating_point():
            ema_buffer.copy_(buffer)
