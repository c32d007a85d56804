"""Datasets by name: each split loads whole into one tensor (uint8 images or float32 2-D points) with its content hash.

Registered: cifar10, cifar100 (cifar.py), stl10 (stl10.py), cifar10-jpeg (cifar_jpeg.py), celebahq128, celebahq256
(celebahq.py: image folder or LMDB), folder (folder.py), ring8, grid25, shapes (synthetic.py). A new dataset is one
module that calls `register(DatasetSpec(...))`, plus its import below.
"""

from __future__ import annotations

import torch

from ganbench.config import DataConfig
from ganbench.data import celebahq, cifar, cifar_jpeg, folder, stl10, synthetic  # noqa: F401  (each registers)
from ganbench.data.base import DATASETS, Dataset, DatasetSpec, check_split

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "load_dataset", "output_shape", "to_model_range"]


def load_dataset(cfg: DataConfig) -> Dataset:
    """The split `cfg.split` of dataset `cfg.name`, resized to `cfg.size`; RecipeError for an unknown name/split,
    DataError when its files are missing or unreadable."""
    spec = DATASETS.get(cfg.name)
    check_split(spec, cfg.split)
    return spec.load(cfg)


def output_shape(cfg: DataConfig) -> tuple[int, ...]:
    """The per-sample shape `load_dataset(cfg)` gives, (3, H, W) or (2,), without reading any file."""
    spec = DATASETS.get(cfg.name)
    check_split(spec, cfg.split)
    return spec.shape(cfg)


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats of the default dtype in [-1, 1] (x / 127.5 - 1, so 0 -> -1 and 255 -> 1); points are
    cast to the default dtype (float32 unless a caller such as a float64 reference test changed it)."""
    if batch.dtype == torch.uint8:
        return batch.to(torch.get_default_dtype()) / 127.5 - 1.0
    return batch.to(torch.get_default_dtype())
