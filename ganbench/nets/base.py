"""The net registry and what one entry declares: the sample shapes an architecture takes and how to build it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
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
    label: str = ""
    family: str = ""  # the backbone part of paper recipe file names (recipes/<data>_<family>_<method>.toml)
    paper: str = ""  # the papers' name for the backbone, as their tables group results; "" when none uses it
    # class-conditional: G(z, y) and D(x, y) with labels y in [0, model.num_classes); otherwise G(z) and D(x)
    conditional: bool = False

    def summary(self) -> dict[str, str]:
        return {
            "name": self.name,
            "label": self.label,
            "paper": self.paper,
            "shapes": ", ".join(shape_text(shape) for shape in self.shapes),
            "description": self.description,
        }


def shape_text(shape: tuple[int, ...]) -> str:
    """(3, 32, 32) -> "3x32x32 images"; (2,) -> "2-d points"."""
    return "x".join(str(s) for s in shape) + (" images" if len(shape) == 3 else "-d points")


NETS: Registry[NetSpec] = Registry("architecture", "model.arch")


def register(spec: NetSpec) -> NetSpec:
    """Add an architecture to NETS under its own name."""
    NETS.add(spec.name, spec)
    return spec


class Conditioned(nn.Module):
    """A class-conditional D with its labels fixed: forward(x) = d(x, y).

    The methods call D as d(x) and differentiate with respect to x only; binding y here keeps the labels out of
    every gradient (they are integers) while each sample is scored under its own label, as the official code passes
    y through its gradient normalisation."""

    def __init__(self, d: nn.Module, y: torch.Tensor) -> None:
        super().__init__()
        self.d, self.y = d, y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) != len(self.y):
            raise ValueError(f"{len(x)} samples but {len(self.y)} labels")
        return self.d(x, self.y)


def conditioned(d: nn.Module, y: torch.Tensor | None) -> nn.Module:
    """D scoring under labels `y`; an unconditional D (y None) as it is."""
    return d if y is None else Conditioned(d, y)


def generate(g: nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """G(z), or G(z, y) for a class-conditional G (y not None)."""
    return g(z) if y is None else g(z, y)
