"""Fixed-z sample sheets written during training: an image grid, or a scatter plot for 2-D sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganbench import nets
from ganbench.files import atomic_write
from ganbench.nets import sampling_mode
from ganbench.store import RunDir

SHEET_COLUMNS = 8
MAX_SHEET_ROWS = 16  # a class-conditional sheet shows one row per class, the first 16 classes of a larger set


def sheet_labels(num_classes: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The fixed labels of a class-conditional G's sheets: row r of 8 samples is class r; None when unconditional."""
    if not num_classes:
        return None
    rows = min(num_classes, MAX_SHEET_ROWS)
    return torch.arange(rows, device=device).repeat_interleave(SHEET_COLUMNS)


@torch.no_grad()
def generate(
    generator: nn.Module,
    z: torch.Tensor,
    batch_size: int = 256,
    bn_mode: str = "running",
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """G(z) (G(z, labels) for a class-conditional G) in batches, BatchNorm as `bn_mode` says (nets.sampling_mode);
    G's mode and buffers are left as they were."""
    chunks = z.split(batch_size)
    parts = labels.split(batch_size) if labels is not None else (None,) * len(chunks)
    with sampling_mode(generator, bn_mode):
        return torch.cat([nets.generate(generator, chunk, y) for chunk, y in zip(chunks, parts, strict=True)])


def save_samples(
    path: Path,
    generator: nn.Module,
    z: torch.Tensor,
    dataset: Any,
    bn_mode: str = "running",
    labels: torch.Tensor | None = None,
) -> None:
    """A sheet of G(z): in "batch" mode the whole sheet is one batch, as the official code draws its sheets."""
    batch_size = len(z) if bn_mode == "batch" else 256
    if dataset.kind == "points":
        _save_scatter(path, generate(generator, z, batch_size, bn_mode, labels).cpu(), dataset)
    else:
        from torchvision.utils import save_image

        images = (generate(generator, z, batch_size, bn_mode, labels).cpu() + 1) / 2
        atomic_write(path, lambda tmp: save_image(images.clamp(0, 1), tmp, nrow=SHEET_COLUMNS, format="png"))


def save_sheets(
    run: RunDir,
    step: int,
    g: nn.Module,
    g_ema: nn.Module | None,
    z: torch.Tensor,
    dataset: Any,
    bn_mode: str,
    labels: torch.Tensor | None = None,
) -> None:
    """The step's sheet of the generator a run samples with (EMA-G when it has one) and, with EMA, raw G's beside
    it: early on EMA-G is still close to its initialisation. `labels`: a class-conditional G's fixed labels."""
    save_samples(run.sample_path(step), g_ema if g_ema is not None else g, z, dataset, bn_mode, labels)
    if g_ema is not None:
        save_samples(run.sample_path(step, "raw"), g, z, dataset, bn_mode, labels)


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
