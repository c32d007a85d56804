"""The GN-GAN code's class-conditional BigGAN for 32 px images (CIFAR-10): G(z, y) and a projection D(x, y).

G: a linear map of z to a 4x4 map of 256 channels, three up-blocks whose BatchNorms take their gain and bias from
class embeddings (gain = 1 + embed(y)), then BatchNorm-ReLU, a 3x3 conv to RGB and tanh. Every conv and linear of G
is spectrally normalised (eps 1e-6, one power iteration per training-mode forward); the class embeddings and the
last BatchNorm are not. D: the ResNet blocks of the 32 px nets at 256 channels, ReLU, global SUM pooling, then the
projection head linear(h) + <embed(y), h>. D carries no normalisation of its own (the method adds it). Every conv,
linear and embedding is Xavier-uniform initialised with zero biases, as the official code. With the paper widths
(model.g_channels = model.d_channels = 256) and 10 classes, G has 4,304,387 parameters and D 4,207,361.
"""

from __future__ import annotations

import torch
from torch import nn

from ganbench.config import ModelConfig
from ganbench.errors import RecipeError
from ganbench.nets.base import NetSpec, register
from ganbench.nets.spectral import spectral_norm

SN_EPS = 1e-6  # the official G's spectral norm epsilon (torch's default is 1e-12)


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every conv, linear and embedding of `module`, as the official code.

    Runs before spectral norm is registered, so it writes the weight that SN then normalises."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.xavier_uniform_(layer.weight)
            bias = getattr(layer, "bias", None)  # embeddings have none
            if isinstance(bias, torch.Tensor):
                nn.init.zeros_(bias)


def _sn_all(module: nn.Module) -> None:
    for layer in [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]:
        spectral_norm(layer, n_power_iterations=1, eps=SN_EPS)


class ClassConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine, then x·(1 + gain[y]) + bias[y] with one learned row per class."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = 1 + self.gain(y)[:, :, None, None]
        return self.norm(x) * gain + self.bias(y)[:, :, None, None]


class GenBlock(nn.Module):
    """cBN-ReLU-upsample-conv3-cBN-ReLU-conv3, plus an upsampled 1x1-conv shortcut; doubles the side."""

    def __init__(self, cin: int, cout: int, num_classes: int) -> None:
        super().__init__()
        self.bn1 = ClassConditionalBatchNorm(cin, num_classes)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.bn2 = ClassConditionalBatchNorm(cout, num_classes)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.up(self.relu(self.bn1(x, y))))
        h = self.conv2(self.relu(self.bn2(h, y)))
        return h + self.shortcut(self.up(x))


class Generator(nn.Module):
    """z (N, z_dim) and labels y (N,) -> images (N, 3, 32, 32)."""

    def __init__(self, z_dim: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.channels = channels
        self.linear = nn.Linear(z_dim, 4 * 4 * channels)
        self.blocks = nn.ModuleList([GenBlock(channels, channels, num_classes) for _ in range(3)])
        self.output = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 3, 3, 1, 1), nn.Tanh())
        xavier_init(self)
        _sn_all(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(-1, self.channels, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return self.output(h)


class DisBlock(nn.Module):
    """[ReLU]-conv3-ReLU-conv3[-avgpool] plus a shortcut (1x1 conv where the width or side changes).

    The first block (`first`) starts without the ReLU and pools its input before the shortcut's 1x1 conv."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [] if first else [nn.ReLU()]
        layers += [nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1)]
        layers += [nn.AvgPool2d(2)] if down else []
        self.residual = nn.Sequential(*layers)
        shortcut: list[nn.Module] = []
        if first:
            shortcut = [nn.AvgPool2d(2), nn.Conv2d(cin, cout, 1)]
        elif cin != cout or down:
            shortcut = [nn.Conv2d(cin, cout, 1)] + ([nn.AvgPool2d(2)] if down else [])
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class ProjectionDiscriminator(nn.Module):
    """Images (N, 3, 32, 32) and labels y (N,) -> raw outputs (N, 1) = linear(h) + <embed(y), h>, h sum-pooled."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            DisBlock(3, channels, down=True, first=True),
            DisBlock(channels, channels, down=True),
            DisBlock(channels, channels, down=False),
            DisBlock(channels, channels, down=False),
            nn.ReLU(),
        )
        self.linear = nn.Linear(channels, 1)
        self.embedding = nn.Embedding(num_classes, channels)
        xavier_init(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x).sum(dim=(2, 3))
        return self.linear(h) + (self.embedding(y) * h).sum(dim=1, keepdim=True)


def build32(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    if model.num_classes < 1:
        raise RecipeError(
            f"model.num_classes: {model.arch} is class-conditional; set it to the data's number of classes, e.g. 10"
        )
    g, d = model.g_channels or 256, model.d_channels or 256
    return Generator(model.z_dim, g, model.num_classes), ProjectionDiscriminator(d, model.num_classes)


register(
    NetSpec(
        "biggan32",
        "GN-GAN BigGAN for 32 px images: class-conditional G (SN, conditional BN), projection D",
        ((3, 32, 32),),
        build32,
        label="BigGAN 32",
        family="biggan",
        paper="BigGAN",
        conditional=True,
    ),
)
