"""Networks by name: each entry builds a (generator, discriminator) pair for the data's sample shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ganbench.errors import RecipeError
from ganbench.recipe import ModelConfig
from ganbench.registry import Registry


@dataclass(frozen=True)
class NetSpec:
    name: str
    description: str
    shapes: tuple[tuple[int, ...], ...]
    build: Callable[[ModelConfig, tuple[int, ...]], tuple[nn.Module, nn.Module]]


NETS: Registry[NetSpec] = Registry("architecture", "model.arch")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) + (" images" if len(shape) == 3 else "-d points")


def check_compatible(model: ModelConfig, shape: tuple[int, ...]) -> None:
    spec = NETS.get(model.arch)
    if tuple(shape) in spec.shapes:
        return
    fits = [name for name in NETS if tuple(shape) in NETS.get(name).shapes]
    hint = f"use {' or '.join(fits)}" if fits else "no architecture takes that shape"
    if len(shape) == 3 and len(spec.shapes[0]) == 3:
        hint += f" or set data.size={spec.shapes[0][-1]}"
    raise RecipeError(
        f"model.arch: {model.arch} takes {_shape_text(spec.shapes[0])} but the data gives {_shape_text(shape)}; {hint}"
    )


def build_nets(model: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    check_compatible(model, shape)
    return NETS.get(model.arch).build(model, tuple(shape))


from ganbench.nets import cnn, mlp, resnet  # noqa: E402, F401  (registers the architectures)
