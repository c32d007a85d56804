"""The GN-GAN code's ResNets (SN-GAN's design) for 32, 48, 128 and 256 px images, plus the SN-GAN paper's STL-10 D.

resnet32: G 256 channels throughout, D 128. resnet48 (the GN-GAN STL-10 net, which its papers' numbers come from):
G 512→256→128→64, D 64→128→256→512. resnet48-sngan: the same G, D with a fifth block to 1024 channels, as the SN-GAN
paper's STL-10 net. resnet128 and resnet256 (the GN-GAN CelebA-HQ nets): G from a 4x4 map of 1024 channels through
five or six up-blocks to 64, D from 64 to 1024 through six or seven blocks, the last at the same side. D pools
globally by mean (the official GN-GAN choice) or sum, as model.d_pool says. Every conv and linear is Kaiming-normal
initialised (fan_in, gain √2) with zero biases, as the official code.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

from ganbench.config import ModelConfig
from ganbench.errors import RecipeError
from ganbench.nets.base import NetSpec, register

L = TypeVar("L", nn.Conv2d, nn.Linear)


def _kaiming(layer: L) -> L:
    # The official code calls kaiming_normal_ with torch's defaults: fan_in and gain √2 (a = 0), on every layer,
    # shortcuts and heads included.
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    if layer.bias is not None:  # every layer here has one; the check is for the type checker
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
            _kaiming(nn.Conv2d(cin, cout, 3, 1, 1)),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            _kaiming(nn.Conv2d(cout, cout, 3, 1, 1)),
        )
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _kaiming(nn.Conv2d(cin, cout, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class DisBlock(nn.Module):
    """ReLU-conv-ReLU-conv(-avgpool); the first block of D (`optimized`) starts without the ReLU."""

    def __init__(self, cin: int, cout: int, down: bool, optimized: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [] if optimized else [nn.ReLU()]
        layers += [_kaiming(nn.Conv2d(cin, cout, 3, 1, 1)), nn.ReLU(), _kaiming(nn.Conv2d(cout, cout, 3, 1, 1))]
        if down:
            layers.append(nn.AvgPool2d(2))
        self.residual = nn.Sequential(*layers)
        shortcut: list[nn.Module] = []
        if optimized:  # pool first: the 1x1 conv then runs on a quarter of the pixels (same function)
            shortcut = [nn.AvgPool2d(2), _kaiming(nn.Conv2d(cin, cout, 1))]
        elif cin != cout or down:
            shortcut = [_kaiming(nn.Conv2d(cin, cout, 1))] + ([nn.AvgPool2d(2)] if down else [])
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class Generator(nn.Module):
    """Linear to an M x M map, one up-block per channel step, BN-ReLU, 3x3 conv to RGB, tanh."""

    def __init__(self, z_dim: int, m: int, channels: list[int]) -> None:
        super().__init__()
        self.m, self.top = m, channels[0]
        self.linear = _kaiming(nn.Linear(z_dim, m * m * channels[0]))
        blocks = [GenBlock(cin, cout) for cin, cout in zip(channels[:-1], channels[1:], strict=True)]
        self.main = nn.Sequential(
            *blocks,
            nn.BatchNorm2d(channels[-1]),
            nn.ReLU(),
            _kaiming(nn.Conv2d(channels[-1], 3, 3, 1, 1)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(self.linear(z).view(-1, self.top, self.m, self.m))


class Discriminator(nn.Module):
    """Residual blocks, ReLU, global pooling over H and W, linear head.

    model.d_pool picks the pooling: "mean" is the official GN-GAN choice (its papers' numbers); "sum", as the SN-GAN
    code, scales the head's input by the final map's area (64 at 32 px, 9 at 48 px).
    """

    def __init__(self, blocks: list[DisBlock], width: int, pool: str) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.relu = nn.ReLU()
        self.pool = pool
        self.linear = _kaiming(nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.blocks(x))
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


def _generator48(model: ModelConfig) -> Generator:
    g = model.g_channels or 512
    if g < 8:  # the last up-block has g // 8 channels
        raise RecipeError(f"model.g_channels: resnet48 halves the width three times, so {g} is too few; use 8 or more")
    return Generator(model.z_dim, 6, [g, g // 2, g // 4, g // 8])


def _discriminator48(model: ModelConfig, widths: list[int]) -> Discriminator:
    """Down-blocks through `widths` (each halves the side: 48 px -> 3 px after four), then same-side blocks."""
    blocks = [DisBlock(3, widths[0], down=True, optimized=True)]
    pairs = zip(widths[:-1], widths[1:], strict=True)
    blocks += [DisBlock(cin, cout, down=i < 3) for i, (cin, cout) in enumerate(pairs)]
    return Discriminator(blocks, widths[-1], model.d_pool)


def build48(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    d = model.d_channels or 64
    return _generator48(model), _discriminator48(model, [d, d * 2, d * 4, d * 8])


def build48_sngan(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    d = model.d_channels or 64
    return _generator48(model), _discriminator48(model, [d, d * 2, d * 4, d * 8, d * 16])


# The CelebA-HQ nets, as multiples of a base width (64 by default; model.g_channels is G's last width and
# model.d_channels D's first): G 16,16,8,4,2,1 (128 px) or 16,16,8,8,4,2,1 (256 px) from a 4x4 map; D 1,2,4,8,16,16
# or 1,2,4,8,8,16,16, every block halving the side but the last (128 px -> 4 px, 256 px -> 4 px).
HQ_WIDTHS = {128: ([16, 16, 8, 4, 2, 1], [1, 2, 4, 8, 16, 16]), 256: ([16, 16, 8, 8, 4, 2, 1], [1, 2, 4, 8, 8, 16, 16])}


def build_hq(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    g_mult, d_mult = HQ_WIDTHS[shape[-1]]
    g, d = model.g_channels or 64, model.d_channels or 64
    generator = Generator(model.z_dim, 4, [g * k for k in g_mult])
    widths = [d * k for k in d_mult]
    blocks = [DisBlock(3, widths[0], down=True, optimized=True)]
    last = len(widths) - 2  # the index of the one block that keeps the side
    pairs = zip(widths[:-1], widths[1:], strict=True)
    blocks += [DisBlock(cin, cout, down=i < last) for i, (cin, cout) in enumerate(pairs)]
    return generator, Discriminator(blocks, widths[-1], model.d_pool)


register(
    NetSpec(
        "resnet32",
        "GN-GAN/SN-GAN ResNet for 32 px images",
        ((3, 32, 32),),
        build32,
        label="ResNet 32",
        family="resnet",
        paper="ResNet",
    ),
)
register(
    NetSpec(
        "resnet48",
        "GN-GAN ResNet for 48 px images (D to 512)",
        ((3, 48, 48),),
        build48,
        label="ResNet 48",
        family="resnet",
        paper="ResNet",
    ),
)
register(
    NetSpec(
        "resnet48-sngan",
        "SN-GAN paper's STL-10 ResNet (D to 1024)",
        ((3, 48, 48),),
        build48_sngan,
        label="ResNet 48 (SN-GAN)",
        family="resnet",
        paper="ResNet",
    ),
)
register(
    NetSpec(
        "resnet128",
        "GN-GAN ResNet for 128 px images (CelebA-HQ; G and D to 1024 channels)",
        ((3, 128, 128),),
        build_hq,
        label="ResNet 128",
        family="resnet",
        paper="ResNet",
    ),
)
register(
    NetSpec(
        "resnet256",
        "GN-GAN ResNet for 256 px images (CelebA-HQ; G and D to 1024 channels)",
        ((3, 256, 256),),
        build_hq,
        label="ResNet 256",
        family="resnet",
        paper="ResNet",
    ),
)
