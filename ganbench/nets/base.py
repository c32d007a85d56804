"""The net registry and what one entry declares: the sample shapes an architecture takes and how to build it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ganbench.config import ModelConfig
from ganbench.registry import Registry


@dataclass(frozen=True)
class NetSpec:
    """One architecture: the per-sample shapes it accepts and how to build its (generator, discriminator)."""

    name: str
    description: str
    shapes: tuple[tuple[int, ...], ...]  # per-sample data shapes, e.g. ((3, 32, 32),) or ((2,),)
    build: Callable[[ModelConfig, tuple[int, ...]], tuple[nn.Module, nn.Module]]


NETS: Registry[NetSpec] = Registry("architecture", "model.arch")
