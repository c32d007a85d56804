"""CIFAR-10, CIFAR-100 and STL-10 through torchvision, and the lossy CIFAR-10 JPEG copy read from its tar archive."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision import datasets as tv

from ganbench.data.base import DATASETS, Dataset, DatasetSpec, cached_array, image_dataset
from ganbench.errors import DataError
from ganbench.recipe import DataConfig


def _present(cls: type) -> type:
    """A torchvision dataset class that trusts files already on disk.

    torchvision checks the md5 of every file against the official release before reading; a copy converted by other
    tools (or the small files the tests write in the same format) would be refused although it reads correctly.
    When downloading, the plain torchvision class and its full check are used instead.
    """

    class Present(cls):  # type: ignore[misc, valid-type]
        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return folder.is_dir() and all((folder / entry[0]).is_file() for entry in self._files())

        def _files(self) -> list[tuple[str, str]]:
            return (self.train_list if self.train else self.test_list) + [(self.meta["filename"], "")]

        def _load_meta(self) -> None:
            path = Path(self.root) / self.base_folder / self.meta["filename"]
            with open(path, "rb") as handle:
                self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: index for index, name in enumerate(self.classes)}

    Present.__name__ = cls.__name__
    return Present


CIFAR10 = _present(tv.CIFAR10)
CIFAR100 = _present(tv.CIFAR100)


class STL10(tv.STL10):
    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        files = {
            "unlabeled": ["unlabeled_X.bin"],
            "train": ["train_X.bin", "train_y.bin"],
            "test": ["test_X.bin", "test_y.bin"],
            "train+unlabeled": ["train_X.bin", "train_y.bin", "unlabeled_X.bin"],
        }[self.split]
        return all((folder / name).is_file() for name in files)


def _torchvision(cls: type, name: str, folder: str, cfg: DataConfig, **kwargs: object) -> object:
    if cfg.download:
        cls = cls.__mro__[1]  # the plain torchvision class: download and verify the official files
    try:
        return cls(root=cfg.root, download=cfg.download, **kwargs)
    except RuntimeError as err:
        if "not found" not in str(err).lower() and "corrupted" not in str(err).lower():
            raise
        raise DataError(
            f"{name}: no {name} files under '{cfg.root}' (looked for {Path(cfg.root) / folder}); set data.root to "
            f"where they are, or data.download=true to fetch them with torchvision"
        ) from None


def _load_cifar(cls: type, name: str, folder: str, cfg: DataConfig) -> Dataset:
    found = _torchvision(cls, name, folder, cfg, train=cfg.split == "train")
    return image_dataset(
        cfg.name, cfg.split, found.data, f"torchvision {name} under {cfg.root}", cfg.size, np.asarray(found.targets)
    )


def _load_stl10(cfg: DataConfig) -> Dataset:
    found = _torchvision(STL10, "STL-10", "stl10_binary", cfg, split=cfg.split)
    nhwc = found.data.transpose(0, 2, 3, 1)
    labels = found.labels if found.labels is not None else None
    return image_dataset(cfg.name, cfg.split, nhwc, f"torchvision STL-10 under {cfg.root}", cfg.size or 48, labels)


def _square(default: int):  # noqa: ANN202
    return lambda cfg: (3, cfg.size or default, cfg.size or default)


DATASETS.add(
    "cifar10",
    DatasetSpec(
        "cifar10",
        "image",
        "CIFAR-10 (torchvision), 32 px",
        lambda cfg: _load_cifar(CIFAR10, "CIFAR-10", "cifar-10-batches-py", cfg),
        _square(32),
        ("train", "test"),
    ),
)
DATASETS.add(
    "cifar100",
    DatasetSpec(
        "cifar100",
        "image",
        "CIFAR-100 (torchvision), 32 px",
        lambda cfg: _load_cifar(CIFAR100, "CIFAR-100", "cifar-100-python", cfg),
        _square(32),
        ("train", "test"),
    ),
)
DATASETS.add(
    "stl10",
    DatasetSpec(
        "stl10",
        "image",
        "STL-10 (torchvision), resized to 48 px by default",
        _load_stl10,
        _square(48),
        ("unlabeled", "train", "test", "train+unlabeled"),
    ),
)

# The lossy CIFAR-10 copy: train/<class>/NNNN.jpg and test/<class>/NNNN.jpg inside one tar.xz archive.
JPEG_ARCHIVE = "cifar10-jpeg-q75.tar.xz"
JPEG_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def find_jpeg_archive(root: str) -> Path:
    candidates = [Path(root), Path(root) / JPEG_ARCHIVE]
    if os.environ.get("GANBENCH_CIFAR10_JPEG"):
        candidates.append(Path(os.environ["GANBENCH_CIFAR10_JPEG"]))
    candidates.append(Path("..") / "shared" / "data" / JPEG_ARCHIVE)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise DataError(
        f"cifar10-jpeg: no {JPEG_ARCHIVE} found (looked at {looked}); set data.root to the archive or "
        "its folder, or $GANBENCH_CIFAR10_JPEG"
    )


def decode_jpeg_archive(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and (N,) labels of one split, classes in order, files sorted by name."""
    members: dict[str, list[tuple[str, bytes]]] = {name: [] for name in JPEG_CLASSES}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) < 3 or parts[-3] != split or parts[-2] not in members:
                    continue
                handle = archive.extractfile(member)
                assert handle is not None
                members[parts[-2]].append((parts[-1], handle.read()))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{path}: unreadable archive ({type(err).__name__}); fetch a fresh copy") from None
    images, labels = [], []
    for label, name in enumerate(JPEG_CLASSES):
        for _, raw in sorted(members[name]):
            images.append(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))
            labels.append(label)
    if not images:
        raise DataError(f"{path}: no {split}/<class>/*.jpg images in the archive; is it the CIFAR-10 JPEG copy?")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _load_jpeg(cfg: DataConfig) -> Dataset:
    path = find_jpeg_archive(cfg.root)
    stat = path.stat()
    key = f"cifar10-jpeg-{cfg.split}-{stat.st_size}-{stat.st_mtime_ns}"
    decoded: dict[str, np.ndarray] = {}

    def images() -> np.ndarray:
        decoded["x"], decoded["y"] = decode_jpeg_archive(path, cfg.split)
        return decoded["x"]

    def labels() -> np.ndarray:
        return decoded["y"] if "y" in decoded else decode_jpeg_archive(path, cfg.split)[1]

    x = cached_array(key + "-x", images)
    y = cached_array(key + "-y", labels)
    return image_dataset(cfg.name, cfg.split, x, f"CIFAR-10 JPEG copy {path} (lossy, quality 75)", cfg.size, y)


DATASETS.add(
    "cifar10-jpeg",
    DatasetSpec(
        "cifar10-jpeg",
        "image",
        "the lossy CIFAR-10 JPEG copy, read from its tar",
        _load_jpeg,
        _square(32),
        ("train", "test"),
    ),
)
