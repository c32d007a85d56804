"""Offline synthetic sets: 2-D Gaussian mixtures (ring of 8, 5x5 grid) and tiny drawn shape images for smoke runs.

Each is a deterministic function of (data.seed, data.split, data.num_samples). The "train" draw is seeded with the
seed itself; "test" is an independent draw of the same distribution, seeded from a numpy SeedSequence spawned off
the seed, so no train seed can reproduce another seed's test draw.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ganbench.config import DataConfig
from ganbench.data.base import Dataset, DatasetSpec, content_hash, register

MODE_STD = 0.05
SPLITS = ("train", "test")
DEFAULT_POINTS = 100_000
DEFAULT_IMAGES = 2_000
SHAPES_SIZE = 32


def split_seed(seed: int, split: str) -> int:
    """The 64-bit seed of one split's draw: the seed itself for train, a spawned child of it for test."""
    seed %= 2**64  # torch and numpy want non-negative seeds; recipes may hold any integer
    if split == "train":
        return seed
    words = np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split),)).generate_state(2, np.uint32)
    return int(words[0]) | int(words[1]) << 32


def ring8_modes() -> torch.Tensor:
    """Eight centres evenly spaced on the circle of radius 2, the first at (2, 0)."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return (2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid25_modes() -> torch.Tensor:
    """The 25 centres {-4, -2, 0, 2, 4}^2, row by row."""
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    return torch.cartesian_prod(axis, axis)


def mixture(name: str, modes: torch.Tensor, cfg: DataConfig) -> Dataset:
    """Equal-weight isotropic Gaussians of std MODE_STD at `modes`; labels are each point's component."""
    n = cfg.num_samples or DEFAULT_POINTS
    generator = torch.Generator().manual_seed(split_seed(cfg.seed, cfg.split))
    which = torch.randint(len(modes), (n,), generator=generator)
    points = modes[which] + MODE_STD * torch.randn(n, 2, generator=generator)
    return Dataset(
        name=name,
        split=cfg.split,
        kind="points",
        tensor=points,
        content_hash=content_hash(points),
        source=f"synthetic {name} seed {cfg.seed} split {cfg.split} n={n}",
        labels=which,
        modes=modes,
        mode_std=MODE_STD,
    )


def draw_shapes(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, size, size, 3): one or two filled circles, squares or triangles on a plain random background; and
    int64 (n,) class labels, the kind of each image's first shape (0 circle, 1 square, 2 triangle)."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in [0, 1]
    ys, xs = grid[:, None], grid[None, :]
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        images[i] = rng.integers(0, 256, 3, dtype=np.uint8)
        for j in range(rng.integers(1, 3)):
            cx, cy = rng.uniform(0.25, 0.75, 2)
            r = rng.uniform(0.12, 0.3)  # half the side of the square, the circle's radius, the triangle's half-height
            kind = rng.integers(3)
            if j == 0:
                labels[i] = kind
            if kind == 0:
                mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= r**2
            elif kind == 1:
                mask = (np.abs(xs - cx) <= r) & (np.abs(ys - cy) <= r)
            else:  # apex up at (cx, cy - r), base of width 2r at y = cy + r
                mask = (ys <= cy + r) & (np.abs(xs - cx) <= (ys - (cy - r)) / 2)
            images[i][mask] = rng.integers(0, 256, 3, dtype=np.uint8)
    return images, labels


def shapes(cfg: DataConfig) -> Dataset:
    size = cfg.size or SHAPES_SIZE
    n = cfg.num_samples or DEFAULT_IMAGES
    rng = np.random.default_rng(split_seed(cfg.seed, cfg.split))
    drawn, labels = draw_shapes(n, size, rng)
    images = torch.from_numpy(drawn).permute(0, 3, 1, 2).contiguous()
    return Dataset(
        name="shapes",
        split=cfg.split,
        kind="image",
        tensor=images,
        content_hash=content_hash(images),
        source=f"synthetic shapes seed {cfg.seed} split {cfg.split} n={n} at {size} px",
        labels=torch.from_numpy(labels),
    )


def _points(cfg: DataConfig) -> tuple[int, ...]:
    return (2,)


RING8 = register(
    DatasetSpec(
        name="ring8",
        kind="points",
        description="8 Gaussians on a circle of radius 2, std 0.05 (2-D points, offline)",
        load=lambda cfg: mixture("ring8", ring8_modes(), cfg),
        shape=_points,
        splits=SPLITS,
        label="ring of 8 Gaussians",
    )
)
GRID25 = register(
    DatasetSpec(
        name="grid25",
        kind="points",
        description="5x5 Gaussians at {-4,-2,0,2,4}^2, std 0.05 (2-D points, offline)",
        load=lambda cfg: mixture("grid25", grid25_modes(), cfg),
        shape=_points,
        splits=SPLITS,
        label="grid of 25 Gaussians",
    )
)
SHAPES = register(
    DatasetSpec(
        name="shapes",
        kind="image",
        description="tiny drawn shapes on plain backgrounds for smoke runs (offline), 32 px unless data.size; "
        "labelled by the first shape's kind (3 classes)",
        load=shapes,
        shape=lambda cfg: (3, cfg.size or SHAPES_SIZE, cfg.size or SHAPES_SIZE),
        splits=SPLITS,
        label="shapes",
        num_classes=3,  # the kind of each image's first shape: offline class-conditional smoke runs
    )
)
