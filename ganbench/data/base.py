"""The dataset registry, the in-memory Dataset, and what every loader shares: hashing, resizing, the decode cache."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganbench.config import DataConfig
from ganbench.errors import RecipeError
from ganbench.files import atomic_write, cache_dir
from ganbench.registry import Registry


@dataclass
class Dataset:
    """One split of a dataset, whole in memory: what training samples from and what reference statistics describe."""

    name: str
    split: str
    kind: str  # "image" | "points"
    tensor: torch.Tensor  # images: uint8 (N, 3, H, W), already resized; points: float32 (N, 2)
    content_hash: str  # `content_hash(tensor)`: identifies the exact data in metric fingerprints
    source: str  # one line: where the data came from
    labels: torch.Tensor | None = None  # int64 (N,) class labels where the dataset has them
    modes: torch.Tensor | None = None  # points only: float32 (M, 2) mixture centres
    mode_std: float = 0.0  # points only: std of each mixture component

    def __len__(self) -> int:
        return len(self.tensor)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset's registry entry: what it is, its splits and sample shape, and how to load a split."""

    name: str
    kind: str  # "image" | "points"
    description: str  # one line for --help and error messages
    load: Callable[[DataConfig], Dataset]
    shape: Callable[[DataConfig], tuple[int, ...]]  # per-sample shape after resizing, without reading any file
    splits: tuple[str, ...]
    label: str = ""
    # The split the papers train on and compute reference statistics of (FID against it); "" for sets no paper uses.
    paper_split: str = ""
    # The split of the papers' reference statistics where it is not the one they train on ("" = paper_split):
    # CelebA-HQ 128 trains on images 1-27,000 and compares against the last 3,000.
    reference_split: str = ""

    # Class labels: how many classes the labelled splits have (0 = the set has none), and the splits without labels
    # (STL-10's unlabeled); a class-conditional recipe is refused on a split without them.
    num_classes: int = 0
    unlabelled_splits: tuple[str, ...] = ()

    def classes(self, split: str) -> int:
        """The number of classes of `split`'s labels; 0 when its samples carry none."""
        return 0 if split in self.unlabelled_splits else self.num_classes

    def summary(self) -> dict[str, str]:
        try:
            shape = "x".join(str(n) for n in self.shape(DataConfig(name=self.name, split=self.splits[0])))
        except RecipeError:  # a set without a native size (an image folder) takes data.size
            shape = "data.size"
        return {
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "splits": ", ".join(self.splits),
            "paper split": self.paper_split,
            "shape": shape,
            "description": self.description,
        }


DATASETS: Registry[DatasetSpec] = Registry("dataset", "data.name")


def register(spec: DatasetSpec) -> DatasetSpec:
    DATASETS.add(spec.name, spec)
    return spec


def check_split(spec: DatasetSpec, split: str) -> None:
    if split not in spec.splits:
        raise RecipeError(
            f"data.split: {split!r} is not a split of {spec.name}; choose one of {', '.join(spec.splits)}"
        )


def square_shape(default: int) -> Callable[[DataConfig], tuple[int, ...]]:
    """The shape function of an image set whose side is `data.size`, or `default` when the size is 0."""
    return lambda cfg: (3, cfg.size or default, cfg.size or default)


def content_hash(tensor: torch.Tensor) -> str:
    """First 16 hex digits of sha256(str(shape) + the tensor's bytes in C order)."""
    digest = hashlib.sha256(str(tuple(tensor.shape)).encode())
    flat = tensor.detach().cpu().contiguous().reshape(-1).numpy()
    digest.update(flat.view(np.uint8).data)  # hashed in place: no bytes() copy of a multi-gigabyte set
    return digest.hexdigest()[:16]


def resize_images(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> contiguous uint8 (N, 3, size, size); bilinear with antialiasing, size 0 keeps H, W.

    `images` may be a strided view (STL-10's column-major files): only one chunk at a time is converted to float,
    so a 2.7 GB set is never copied whole before it shrinks.
    """
    if size == 0 or tuple(images.shape[-2:]) == (size, size):
        return images.contiguous()
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].float()
        resized = F.interpolate(block, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def image_dataset(
    name: str,
    split: str,
    images: torch.Tensor,
    source: str,
    size: int,
    labels: np.ndarray | torch.Tensor | None = None,
) -> Dataset:
    """A Dataset from uint8 (N, 3, H, W) images (any strides), resized to `size` (0 = as they are)."""
    tensor = resize_images(images, size)
    return Dataset(
        name=name,
        split=split,
        kind="image",
        tensor=tensor,
        content_hash=content_hash(tensor),
        source=source,
        labels=None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int64),
    )


def nhwc_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) numpy -> (N, 3, H, W) tensor view (no copy; a read-only array is copied once)."""
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def cache_path(key: str) -> Path:
    """Where the decode cache keeps the array named `key` (under the user cache folder, never the repository)."""
    return cache_dir() / "data" / f"{key}.npy"


def read_cached(key: str) -> np.ndarray | None:
    """The cached array `key`, or None when it is absent or damaged (the caller then rebuilds it)."""
    path = cache_path(key)
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None


def write_cached(key: str, array: np.ndarray) -> None:
    """Write the array atomically (temp file + rename): a crash leaves the old entry or none, never half a file."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    atomic_write(cache_path(key), write)
