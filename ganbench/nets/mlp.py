"""MLP generator and discriminator for 2-D mixtures; D is piecewise linear (ReLU, no normalization)."""

from __future__ import annotations

from torch import nn

from ganbench.config import ModelConfig
from ganbench.nets.base import NetSpec, register


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    g_width, d_width = model.g_channels or 512, model.d_channels or 512
    generator = _mlp([model.z_dim, g_width, g_width, g_width, shape[0]])  # linear output: points are unbounded
    discriminator = _mlp([shape[0], d_width, d_width, d_width, 1])
    return generator, discriminator


register(NetSpec("mlp", "3 hidden ReLU layers for 2-D sets", ((2,),), build, label="MLP", family="mlp"))
