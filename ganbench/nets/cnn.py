"""The standard CNN of the SN-GAN and GN-GAN papers, for 32 px (M = 4) and 48 px (M = 6) images."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ganbench.config import ModelConfig
from ganbench.nets.base import NetSpec, register


class Generator(nn.Module):
    """Linear to an M x M map of 8c channels, three stride-2 transposed convolutions to 8M px, tanh."""

    def __init__(self, z_dim: int, m: int, ch: int = 64) -> None:
        super().__init__()
        self.m, self.top = m, ch * 8
        self.linear = nn.Linear(z_dim, m * m * ch * 8)
        self.main = nn.Sequential(
            nn.BatchNorm2d(ch * 8),
            nn.ReLU(),
            nn.ConvTranspose2d(ch * 8, ch * 4, 4, 2, 1),
            nn.BatchNorm2d(ch * 4),
            nn.ReLU(),
            nn.ConvTranspose2d(ch * 4, ch * 2, 4, 2, 1),
            nn.BatchNorm2d(ch * 2),
            nn.ReLU(),
            nn.ConvTranspose2d(ch * 2, ch, 4, 2, 1),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.Conv2d(ch, 3, 3, 1, 1),
            nn.Tanh(),
        )
        _normal_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(self.linear(z).view(-1, self.top, self.m, self.m))


class Discriminator(nn.Module):
    """Seven convolutions with LeakyReLU(0.1), no normalization (methods wrap it), and a linear head."""

    def __init__(self, m: int, ch: int = 64) -> None:
        super().__init__()
        # (in, out, kernel, stride): 3x3 s1 convs alternate with 4x4 s2 convs that halve the side.
        convs = [
            (3, ch, 3, 1),
            (ch, ch * 2, 4, 2),
            (ch * 2, ch * 2, 3, 1),
            (ch * 2, ch * 4, 4, 2),
            (ch * 4, ch * 4, 3, 1),
            (ch * 4, ch * 8, 4, 2),
            (ch * 8, ch * 8, 3, 1),
        ]
        layers: list[nn.Module] = []
        for cin, cout, k, stride in convs:
            layers += [nn.Conv2d(cin, cout, k, stride, 1), nn.LeakyReLU(0.1)]
        self.main = nn.Sequential(*layers)
        self.linear = nn.Linear(m * m * ch * 8, 1)
        _normal_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.main(x).flatten(1))


def _normal_init(module: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases, as the GN-GAN official code initialises its CNNs."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, std=0.02)
            if layer.bias is not None:  # every layer here has one; the check is for the type checker
                nn.init.zeros_(layer.bias)


Builder = Callable[[ModelConfig, tuple[int, ...]], tuple[nn.Module, nn.Module]]


def _builder(m: int) -> Builder:
    def build(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
        return Generator(model.z_dim, m, model.g_channels or 64), Discriminator(m, model.d_channels or 64)

    return build


def _spec(side: int, m: int) -> NetSpec:
    return NetSpec(
        f"cnn{side}",
        f"the SN-GAN/GN-GAN standard CNN for {side} px images",
        ((3, side, side),),
        _builder(m),
        label=f"CNN {side}",
        family="cnn",
        paper="Standard CNN",
    )


register(_spec(32, 4))
register(_spec(48, 6))
