"""Fixed-z sample sheets written during training: an image grid, or a scatter plot for 2-D sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganbench.nets import sampling_mode
from ganbench.store import RunDir, atomic_write


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, batch_size: int = 256, bn_mode: str = "running") -> torch.Tensor:
    """G(z) in batches, BatchNorm as `bn_mode` says (nets.sampling_mode); G's mode and buffers are left as they were."""
    with sampling_mode(generator, bn_mode):
        return torch.cat([generator(chunk) for chunk in z.split(batch_size)])


def save_samples(path: Path, generator: nn.Module, z: torch.Tensor, dataset: Any, bn_mode: str = "running") -> None:
    """A sheet of G(z): in "batch" mode the whole sheet is one batch, as the official code draws its sheets."""
    batch_size = len(z) if bn_mode == "batch" else 256
    if dataset.kind == "points":
        _save_scatter(path, generate(generator, z, batch_size, bn_mode).cpu(), dataset)
    else:
        from torchvision.utils import save_image

        images = (generate(generator, z, batch_size, bn_mode).cpu() + 1) / 2
        atomic_write(path, lambda tmp: save_image(images.clamp(0, 1), tmp, nrow=8, format="png"))


def save_sheets(
    run: RunDir, step: int, g: nn.Module, g_ema: nn.Module | None, z: torch.Tensor, dataset: Any, bn_mode: str
) -> None:
    """The step's sheet of the generator a run samples with (EMA-G when it has one) and, with EMA, raw G's beside
    it: early on EMA-G is still close to its initialisation."""
    save_samples(run.sample_path(step), g_ema if g_ema is not None else g, z, dataset, bn_mode)
    if g_ema is not None:
        save_samples(run.sample_path(step, "raw"), g, z, dataset, bn_mode)


def _save_scatter(path: Path, points: torch.Tensor, dataset: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 4), dpi=100)
    axes.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, label="generated")
    if dataset.modes is not None:
        axes.scatter(dataset.modes[:, 0], dataset.modes[:, 1], s=30, c="red", marker="x", label="modes")
    extent = float(dataset.tensor.abs().max()) * 1.3
    axes.set_xlim(-extent, extent)
    axes.set_ylim(-extent, extent)
    axes.set_aspect("equal")
    axes.legend(loc="upper right", fontsize=7)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)
