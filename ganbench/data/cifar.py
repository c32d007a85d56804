"""CIFAR-10 and CIFAR-100 from their official python pickle batches, read through torchvision.

Why a subclass of torchvision's class and not our own pickle reader: torchvision's constructor stays the code
that reads the batches (the row layout, the label keys, the NHWC transpose), so the loader is the one users know.
What the subclass changes is only the gate in front of it: torchvision refuses any file whose md5 differs from the
official release (and checks the train *and* test files whichever split is asked for), which would refuse both a
user's re-packed copy that reads correctly and the small files the tests write in the same format. With
`data.download=false` the subclass asks only that the split's files exist, and any file that then does not read
as a CIFAR batch becomes a DataError. With `data.download=true` the plain torchvision class runs with its full md5
check, downloading what is missing or damaged.

torchvision is imported when a split is first loaded, not with the registry: it costs about a second of startup.
"""

from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganbench.config import DataConfig
from ganbench.data.base import Dataset, DatasetSpec, image_dataset, nhwc_to_tensor, register, square_shape
from ganbench.errors import DataError

if TYPE_CHECKING:
    from torchvision import datasets as tv

# What a file that is present but not a readable batch raises inside torchvision's reader.
UNREADABLE = (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError)


def split_files(cls: type[tv.CIFAR10], train: bool) -> list[str]:
    """The files one split of a torchvision CIFAR class reads: its batches and the meta file."""
    return [name for name, _ in (cls.train_list if train else cls.test_list)] + [cls.meta["filename"]]


class _FilesOnDisk:
    """Mixin for torchvision's CIFAR classes: trust the split's files when they exist (no md5 against the release)."""

    root: str
    base_folder: str
    train: bool
    meta: dict[str, str]

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / name).is_file() for name in split_files(type(self), self.train))

    def _load_meta(self) -> None:
        # torchvision's own _load_meta repeats the md5 check on the meta file; the class names are all it reads.
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as handle:
            self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


@functools.cache
def torchvision_classes(name: str) -> tuple[type[tv.CIFAR10], type[tv.CIFAR10]]:
    """torchvision's class for `name` (CIFAR10 or CIFAR100) and its subclass that trusts the files on disk."""
    from torchvision import datasets

    plain: type[tv.CIFAR10] = getattr(datasets, name)
    return plain, type(f"{name}OnDisk", (_FilesOnDisk, plain), {})


def missing_message(name: str, title: str, root: str, folder: Path, files: list[str]) -> str:
    """The one-line DataError text for data that is not there: where it looked and the two ways to fix it."""
    if folder.is_dir():
        absent = [str(folder / f) for f in files if not (folder / f).is_file()] or [str(folder)]
        looked = f"missing {', '.join(absent)}"
    else:
        looked = f"looked for {folder}"
    return (
        f"{name}: no {title} files under '{root}' ({looked}); set data.root to where they are, or "
        "data.download=true to fetch them with torchvision"
    )


def open_torchvision(
    name: str,
    title: str,
    plain: type[tv.VisionDataset],
    on_disk: type[tv.VisionDataset],
    files: list[str],
    cfg: DataConfig,
    **kwargs: Any,
) -> Any:
    """Construct torchvision's dataset class, turning its errors about missing or damaged files into DataErrors."""
    folder = Path(os.path.expanduser(cfg.root)) / plain.base_folder
    cls = plain if cfg.download else on_disk
    try:
        return cls(root=cfg.root, download=cfg.download, **kwargs)
    except RuntimeError as err:
        if "not found or corrupted" not in str(err):
            raise
        if cfg.download:  # torchvision downloaded, but the md5 still disagrees
            raise DataError(
                f"{name}: the {title} files in {folder} fail torchvision's md5 check after downloading; "
                f"delete {folder} and retry"
            ) from None
        raise DataError(missing_message(name, title, cfg.root, folder, files)) from None
    except UNREADABLE as err:
        raise DataError(
            f"{name}: files in {folder} do not read as {title} ({type(err).__name__}: {err}); "
            f"replace them, or delete {folder} and set data.download=true"
        ) from None
    except OSError as err:
        if cfg.download:  # urllib's URLError is an OSError: no network, or the server refused
            raise DataError(
                f"{name}: downloading {title} into {folder} failed ({type(err).__name__}: {err}); put the "
                "extracted files there by hand and set data.download=false"
            ) from None
        raise DataError(f"{name}: cannot read the {title} files in {folder} ({err}); check their permissions") from None


def _cifar_loader(name: str, title: str, tv_name: str, base_folder: str, classes: int) -> DatasetSpec:
    def load(cfg: DataConfig) -> Dataset:
        plain, on_disk = torchvision_classes(tv_name)
        train = cfg.split == "train"
        found = open_torchvision(name, title, plain, on_disk, split_files(plain, train), cfg, train=train)
        images = nhwc_to_tensor(found.data)  # torchvision's NHWC view of the batches' NCHW rows: no copy
        folder = Path(cfg.root) / plain.base_folder
        return image_dataset(name, cfg.split, images, f"torchvision {title} {folder}", cfg.size, found.targets)

    return DatasetSpec(
        name=name,
        kind="image",
        description=f"{title} through torchvision (python batches in data.root/{base_folder}), 32 px",
        load=load,
        shape=square_shape(32),
        splits=("train", "test"),
        label=title,
        paper_split="train",
        num_classes=classes,
    )


# torchvision's base_folder of each class, named here so the registry's descriptions need no torchvision
CIFAR10 = register(_cifar_loader("cifar10", "CIFAR-10", "CIFAR10", "cifar-10-batches-py", 10))
CIFAR100 = register(_cifar_loader("cifar100", "CIFAR-100", "CIFAR100", "cifar-100-python", 100))
