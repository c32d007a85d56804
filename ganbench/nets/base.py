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
    label: str = ""
    family: str = ""  # the backbone part of paper recipe file names (recipes/<data>_<family>_<method>.toml)
    paper: str = ""  # the papers' name for the backbone, as their tables group results; "" when none uses it

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
