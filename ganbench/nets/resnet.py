"""SN-GAN's ResNets: CIFAR (32 px: G 256 channels, D 128) and STL-10 (48 px: G 512→64, D 64→1024)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ganbench.errors import RecipeError
from ganbench.nets import NETS, NetSpec
from ganbench.recipe import ModelConfig


def _xavier(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.xavier_uniform_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class GenBlock(nn.Module):
    """BN-ReLU-upsample-conv-BN-ReLU-conv, plus an upsampled 1x1-conv shortcut; doubles the side."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _xavier(nn.Conv2d(cin, cout, 3, 1, 1), math.sqrt(2)),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            _xavier(nn.Conv2d(cout, cout, 3, 1, 1), math.sqrt(2)),
        )
        self.shortcut = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), _xavier(nn.Conv2d(cin, cout, 1), 1.0)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class DisBlock(nn.Module):
    """ReLU-conv-ReLU-conv(-avgpool); the first block of D (`optimized`) starts without the ReLU."""

    def __init__(self, cin: int, cout: int, down: bool, optimized: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [] if optimized else [nn.ReLU()]
        layers += [
            _xavier(nn.Conv2d(cin, cout, 3, 1, 1), math.sqrt(2)),
            nn.ReLU(),
            _xavier(nn.Conv2d(cout, cout, 3, 1, 1), math.sqrt(2)),
        ]
        if down:
            layers.append(nn.AvgPool2d(2))
        self.residual = nn.Sequential(*layers)
        shortcut: list[nn.Module] = []
        if optimized:
            shortcut = [nn.AvgPool2d(2), _xavier(nn.Conv2d(cin, cout, 1), 1.0)]
        elif cin != cout or down:
            shortcut = [_xavier(nn.Conv2d(cin, cout, 1), 1.0)] + ([nn.AvgPool2d(2)] if down else [])
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class Generator(nn.Module):
    """Linear to an M x M map, one up-block per channel step, BN-ReLU, 3x3 conv to RGB, tanh."""

    def __init__(self, z_dim: int, m: int, channels: list[int]) -> None:
        super().__init__()
        self.m, self.top = m, channels[0]
        self.linear = _xavier(nn.Linear(z_dim, m * m * channels[0]), 1.0)
        blocks = [GenBlock(cin, cout) for cin, cout in zip(channels[:-1], channels[1:], strict=True)]
        self.main = nn.Sequential(
            *blocks,
            nn.BatchNorm2d(channels[-1]),
            nn.ReLU(),
            _xavier(nn.Conv2d(channels[-1], 3, 3, 1, 1), 1.0),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(self.linear(z).view(-1, self.top, self.m, self.m))


class Discriminator(nn.Module):
    """Residual blocks, ReLU, global sum or mean pooling over H and W (model.d_pool), linear head."""

    def __init__(self, blocks: list[DisBlock], width: int, pool: str) -> None:
        super().__init__()
        self.main = nn.Sequential(*blocks, nn.ReLU())
        self.pool = pool
        self.linear = _xavier(nn.Linear(width, 1), 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.main(x)
        h = h.sum(dim=(2, 3)) if self.pool == "sum" else h.mean(dim=(2, 3))
        return self.linear(h)


def build32(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    g, d = model.g_channels or 256, model.d_channels or 128
    generator = Generator(model.z_dim, 4, [g, g, g, g])
    blocks = [
        DisBlock(3, d, down=True, optimized=True),
        DisBlock(d, d, down=True),
        DisBlock(d, d, down=False),
        DisBlock(d, d, down=False),
    ]
    return generator, Discriminator(blocks, d, model.d_pool)


def build48(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    g, d = model.g_channels or 512, model.d_channels or 64
    if g < 8:  # the last up-block has g // 8 channels
        raise RecipeError(f"model.g_channels: resnet48 halves the width three times, so {g} is too few; use 8 or more")
    generator = Generator(model.z_dim, 6, [g, g // 2, g // 4, g // 8])
    blocks = [
        DisBlock(3, d, down=True, optimized=True),
        DisBlock(d, d * 2, down=True),
        DisBlock(d * 2, d * 4, down=True),
        DisBlock(d * 4, d * 8, down=True),
        DisBlock(d * 8, d * 16, down=False),
    ]
    return generator, Discriminator(blocks, d * 16, model.d_pool)


NETS.add("resnet32", NetSpec("resnet32", "SN-GAN ResNet for 32 px images", ((3, 32, 32),), build32))
NETS.add("resnet48", NetSpec("resnet48", "SN-GAN ResNet for 48 px images", ((3, 48, 48),), build48))
