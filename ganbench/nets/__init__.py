"""Networks by name: each entry builds a (generator, discriminator) pair for the data's sample shape.

Registered: cnn32, cnn48 (cnn.py), resnet32, resnet48, resnet48-sngan, resnet128, resnet256 (resnet.py), biggan32
(biggan.py, class-conditional), mlp (mlp.py). A new architecture is one module that calls
`register(NetSpec(...))` (nets/base.py), plus its import below. `conditioned(d, y)` is a class-conditional D with
its labels fixed, as the methods call D: d(x).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ganbench.config import ModelConfig
from ganbench.errors import RecipeError
from ganbench.nets import biggan, cnn, mlp, resnet  # noqa: F401  (each registers its architectures)
from ganbench.nets.base import NETS, Conditioned, NetSpec, conditioned, generate, shape_text

__all__ = [
    "BN_MODES",
    "NETS",
    "Conditioned",
    "NetSpec",
    "build_nets",
    "check_compatible",
    "conditioned",
    "generate",
    "sampling_mode",
]


def _family(name: str) -> str:
    return name.rstrip("0123456789")


def check_compatible(model: ModelConfig, shape: tuple[int, ...]) -> None:
    """Raise a RecipeError naming model.arch when the architecture cannot take samples of `shape`."""
    spec = NETS.get(model.arch)
    if spec.conditional and model.num_classes < 1:
        raise RecipeError(
            f"model.num_classes: {model.arch} is class-conditional; set it to the data's number of classes, e.g. 10"
        )
    if not spec.conditional and model.num_classes:
        raise RecipeError(
            f"model.num_classes: {model.arch} is unconditional; set model.num_classes=0 or use a class-conditional "
            f"net ({', '.join(name for name in NETS if NETS.get(name).conditional)})"
        )
    if tuple(shape) in spec.shapes:
        return
    # only nets of the recipe's kind: an unconditional recipe is not told to use a class-conditional net
    fits = [
        name
        for name in NETS
        if tuple(shape) in NETS.get(name).shapes and NETS.get(name).conditional == spec.conditional
    ]
    # Suggest the same family at the data's size first (cnn32 -> cnn48), not every architecture that fits.
    same_family = [name for name in fits if _family(name) == _family(model.arch)]
    fits = same_family or fits
    hint = f"use {' or '.join(fits)}" if fits else "no architecture takes that shape"
    if len(shape) == 3 and len(spec.shapes[0]) == 3:
        hint += f" or set data.size={spec.shapes[0][-1]}"
    raise RecipeError(
        f"model.arch: {model.arch} takes {shape_text(spec.shapes[0])} but the data gives {shape_text(shape)}; {hint}"
    )


def build_nets(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator): G maps (N, z_dim) to (N, *shape); D maps (N, *shape) to raw outputs (N, 1).
    A class-conditional net's G and D also take int64 labels (N,): G(z, y), D(x, y)."""
    check_compatible(model, shape)
    return NETS.get(model.arch).build(model, tuple(shape))


BN_MODES = ("batch", "running")


@contextlib.contextmanager
def sampling_mode(generator: nn.Module, bn_mode: str) -> Iterator[nn.Module]:
    """G set up for sampling: "running" = eval mode (BatchNorm's running statistics); "batch" = train mode (each
    batch normalised by its own statistics, as the official GN-GAN code samples), with G's buffers put back after,
    so sampling never changes the generator. The module's own mode is restored on exit."""
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown BatchNorm sampling mode {bn_mode!r}")
    was_training = generator.training
    saved = [buffer.clone() for buffer in generator.buffers()] if bn_mode == "batch" else []
    generator.train(bn_mode == "batch")
    try:
        yield generator
    finally:
        with torch.no_grad():
            for buffer, value in zip(generator.buffers(), saved, strict=False):
                buffer.copy_(value)
        generator.train(was_training)
