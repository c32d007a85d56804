"""Datasets by name: each loads into one in-memory tensor (uint8 images or float 2-D points) with its content hash."""

from __future__ import annotations

import torch

from ganbench.data import cifar, folder, synthetic  # noqa: F401  (registers the datasets)
from ganbench.data.base import DATASETS, Dataset, DatasetSpec, check_split
from ganbench.recipe import DataConfig

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "load_dataset", "output_shape", "to_model_range"]


def load_dataset(cfg: DataConfig) -> Dataset:
    spec = DATASETS.get(cfg.name)
    check_split(spec, cfg.split)
    return spec.load(cfg)


def output_shape(cfg: DataConfig) -> tuple[int, ...]:
    spec = DATASETS.get(cfg.name)
    check_split(spec, cfg.split)
    return spec.shape(cfg)


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1]; float points pass unchanged."""
    if batch.dtype == torch.uint8:
        return batch.float() / 127.5 - 1.0
    return batch
