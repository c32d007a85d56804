"""The dataset registry, the in-memory Dataset, and the helpers every loader shares (hashing, resizing, caching)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganbench.errors import RecipeError
from ganbench.recipe import DataConfig
from ganbench.registry import Registry
from ganbench.store import atomic_write, cache_dir


@dataclass
class Dataset:
    name: str
    split: str
    kind: str  # "image" | "points"
    tensor: torch.Tensor  # images: uint8 (N, 3, H, W); points: float32 (N, 2)
    content_hash: str
    source: str
    labels: torch.Tensor | None = None
    modes: torch.Tensor | None = None
    mode_std: float = 0.0

    def __len__(self) -> int:
        return len(self.tensor)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    description: str
    load: Callable[[DataConfig], Dataset]
    shape: Callable[[DataConfig], tuple[int, ...]]
    splits: tuple[str, ...]


DATASETS: Registry[DatasetSpec] = Registry("dataset", "data.name")


def check_split(spec: DatasetSpec, split: str) -> None:
    if split not in spec.splits:
        raise RecipeError(
            f"data.split: {split!r} is not a split of {spec.name}; choose one of {', '.join(spec.splits)}"
        )


def content_hash(tensor: torch.Tensor) -> str:
    digest = hashlib.sha256(str(tuple(tensor.shape)).encode())
    digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def resize_images(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 3, size, size), bilinear with antialiasing."""
    if size == 0 or images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for block in images.split(chunk):
        resized = F.interpolate(block.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def image_dataset(
    name: str, split: str, nhwc: np.ndarray, source: str, size: int, labels: np.ndarray | None = None
) -> Dataset:
    images = resize_images(torch.from_numpy(np.ascontiguousarray(nhwc)).permute(0, 3, 1, 2).contiguous(), size)
    return Dataset(
        name,
        split,
        "image",
        images,
        content_hash(images),
        source,
        None if labels is None else torch.as_tensor(labels, dtype=torch.int64),
    )


def cached_array(key: str, build: Callable[[], np.ndarray]) -> np.ndarray:
    """An array from the user cache, or built and written there atomically."""
    path = cache_dir() / "data" / f"{key}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (ValueError, OSError):
            pass  # a damaged cache file is rebuilt
    array = build()

    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        np.save(buffer, array)
        tmp.write_bytes(buffer.getvalue())

    atomic_write(path, write)
    return array
