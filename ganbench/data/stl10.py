"""STL-10 from its official binaries (stl10_binary/*.bin), read through torchvision, resized to 48 px by default.

The GAN papers train and evaluate STL-10 at 48 px on the 100k unlabeled images, so `data.size = 0` means 48 here,
not the files' 96. As for CIFAR (see cifar.py), a subclass of torchvision's class asks only that the split's files
exist when `data.download` is false; torchvision itself reads them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ganbench.config import DataConfig
from ganbench.data.base import Dataset, DatasetSpec, image_dataset, register, square_shape
from ganbench.data.cifar import open_torchvision
from ganbench.errors import DataError

if TYPE_CHECKING:
    from torchvision import datasets as tv

PAPER_SIZE = 48
SPLIT_FILES = {
    "unlabeled": ["unlabeled_X.bin"],
    "train": ["train_X.bin", "train_y.bin"],
    "test": ["test_X.bin", "test_y.bin"],
    "train+unlabeled": ["train_X.bin", "train_y.bin", "unlabeled_X.bin"],
}


@functools.cache
def torchvision_classes() -> tuple[type[tv.STL10], type[tv.STL10]]:
    """torchvision's STL10 (imported on first load: it costs a second of startup) and its subclass that trusts the
    split's files when they exist (no md5 against the release)."""
    from torchvision import datasets

    def check_integrity(self: tv.STL10) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / name).is_file() for name in SPLIT_FILES[self.split])

    return datasets.STL10, type("STL10OnDisk", (datasets.STL10,), {"_check_integrity": check_integrity})


def load(cfg: DataConfig) -> Dataset:
    plain, on_disk = torchvision_classes()
    found = open_torchvision("stl10", "STL-10", plain, on_disk, SPLIT_FILES[cfg.split], cfg, split=cfg.split)
    folder = Path(cfg.root) / plain.base_folder
    labels = found.labels
    if labels is not None and len(labels) != len(found.data):
        raise DataError(
            f"stl10: {folder} holds {len(found.data)} images but {len(labels)} labels for split {cfg.split}; "
            "the _X.bin and _y.bin files do not belong together"
        )
    # torchvision marks unlabeled images with -1; a split holding any of them has no class labels as a whole.
    if labels is not None and (len(labels) == 0 or np.min(labels) < 0):
        labels = None
    # found.data is a (N, 3, 96, 96) view of the column-major file: resized chunk by chunk, never copied whole.
    images = torch.from_numpy(found.data)
    size = cfg.size or PAPER_SIZE
    return image_dataset("stl10", cfg.split, images, f"torchvision STL-10 {folder}", size, labels)


STL10 = register(
    DatasetSpec(
        name="stl10",
        kind="image",
        description="STL-10 through torchvision (data.root/stl10_binary), 48 px unless data.size; split unlabeled",
        load=load,
        shape=square_shape(PAPER_SIZE),
        splits=tuple(SPLIT_FILES),
        label="STL-10",
        paper_split="unlabeled",
        num_classes=10,
        unlabelled_splits=("unlabeled", "train+unlabeled"),
    )
)
