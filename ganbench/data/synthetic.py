"""Offline synthetic sets: 2-D Gaussian mixtures (ring of 8, 5x5 grid) and tiny drawn images for smoke runs."""

from __future__ import annotations

import math

import numpy as np
import torch

from ganbench.data.base import DATASETS, Dataset, DatasetSpec, content_hash
from ganbench.recipe import DataConfig

MODE_STD = 0.05
SPLIT_OFFSET = {"train": 0, "test": 1_000_003}  # the test split is another draw of the same distribution


def ring8() -> torch.Tensor:
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return (2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid25() -> torch.Tensor:
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    return torch.cartesian_prod(axis, axis)


def _mixture(name: str, modes: torch.Tensor, cfg: DataConfig) -> Dataset:
    n = cfg.num_samples or 100_000
    generator = torch.Generator().manual_seed(cfg.seed + SPLIT_OFFSET[cfg.split])
    which = torch.randint(len(modes), (n,), generator=generator)
    points = modes[which] + MODE_STD * torch.randn(n, 2, generator=generator)
    return Dataset(
        name,
        cfg.split,
        "points",
        points,
        content_hash(points),
        f"synthetic {name} seed {cfg.seed} n={n}",
        which,
        modes,
        MODE_STD,
    )


def draw_shapes(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) uint8: one or two filled circles, squares or triangles on a plain background."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        canvas = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (size, size, 3)).copy()
        for _ in range(rng.integers(1, 3)):
            cx, cy = rng.uniform(0.25, 0.75, 2)
            r = rng.uniform(0.12, 0.3)
            kind = rng.integers(3)
            if kind == 0:
                mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= r**2
            elif kind == 1:
                mask = (np.abs(xs - cx) <= r) & (np.abs(ys - cy) <= r)
            else:
                mask = (ys >= cy - r) & (ys <= cy + r) & (np.abs(xs - cx) <= (ys - (cy - r)) / 2)
            canvas[mask] = rng.integers(0, 256, 3, dtype=np.uint8)
        images[i] = canvas
    return images


def _shapes(cfg: DataConfig) -> Dataset:
    size = cfg.size or 32
    n = cfg.num_samples or 2_000
    images = torch.from_numpy(draw_shapes(n, size, cfg.seed + SPLIT_OFFSET[cfg.split])).permute(0, 3, 1, 2)
    images = images.contiguous()
    return Dataset(
        "shapes",
        cfg.split,
        "image",
        images,
        content_hash(images),
        f"synthetic shapes seed {cfg.seed} n={n} at {size} px",
    )


SPLITS = tuple(SPLIT_OFFSET)
DATASETS.add(
    "ring8",
    DatasetSpec(
        "ring8",
        "points",
        "8 Gaussians on a circle of radius 2, std 0.05",
        lambda cfg: _mixture("ring8", ring8(), cfg),
        lambda cfg: (2,),
        SPLITS,
    ),
)
DATASETS.add(
    "grid25",
    DatasetSpec(
        "grid25",
        "points",
        "5x5 Gaussians at {-4,-2,0,2,4}^2, std 0.05",
        lambda cfg: _mixture("grid25", grid25(), cfg),
        lambda cfg: (2,),
        SPLITS,
    ),
)
DATASETS.add(
    "shapes",
    DatasetSpec(
        "shapes",
        "image",
        "tiny procedurally drawn shapes for smoke runs (32 px)",
        _shapes,
        lambda cfg: (3, cfg.size or 32, cfg.size or 32),
        SPLITS,
    ),
)
