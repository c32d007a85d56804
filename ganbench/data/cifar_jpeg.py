"""The lossy CIFAR-10 JPEG copy (quality 75), decoded straight from its tar.xz archive and cached as .npy per split.

Inside the archive: `[prefix/]train/<class>/0000.jpg ...` and `[prefix/]test/<class>/...`; the label is the class's
index in CLASSES and images come class by class, files sorted by name. It is not the original CIFAR-10 pixels (see
the project's data notes), so it is its own dataset and every source line says so.
"""

from __future__ import annotations

import io
import lzma
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ganbench.config import DataConfig
from ganbench.data.base import (
    Dataset,
    DatasetSpec,
    image_dataset,
    nhwc_to_tensor,
    read_cached,
    register,
    square_shape,
    write_cached,
)
from ganbench.errors import DataError

ARCHIVE = "cifar10-jpeg-q75.tar.xz"
ENV_VAR = "GANBENCH_CIFAR10_JPEG"
SHARED_DATA_ENV = "GANBENCH_SHARED_DATA"  # a folder of data files; unset: no shared folder is looked at
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
SIDE = 32
CACHE_VERSION = 1  # bump when the decoding below changes what an entry holds

# What a damaged archive raises while it is being read: tar headers, the xz (or gz) stream, a short file.
BROKEN_ARCHIVE = (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError, OSError)
BROKEN_IMAGE = (OSError, SyntaxError, ValueError)  # PIL's UnidentifiedImageError is an OSError


def archive_candidates(root: str) -> list[Path]:
    """Where the archive may be, in order: data.root (the file or its folder), $GANBENCH_CIFAR10_JPEG (the file),
    and $GANBENCH_SHARED_DATA (a data folder shared between checkouts, which CI sets when it has one)."""
    given = Path(os.path.expanduser(root))
    candidates = [given] if given.is_file() else [given / ARCHIVE]
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.path.expanduser(os.environ[ENV_VAR])))
    if os.environ.get(SHARED_DATA_ENV):
        candidates.append(Path(os.path.expanduser(os.environ[SHARED_DATA_ENV])) / ARCHIVE)
    return candidates


def find_archive(root: str) -> Path:
    candidates = archive_candidates(root)
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(
        f"cifar10-jpeg: no {ARCHIVE} found (looked at {', '.join(map(str, candidates))}); set data.root to the "
        f"archive or its folder, ${ENV_VAR} to the archive's path or ${SHARED_DATA_ENV} to its folder"
    )


def _split_members(path: Path, split: str) -> dict[str, list[tuple[str, bytes]]]:
    """The raw JPEG bytes of one split, by class, read member by member without extracting anything to disk."""
    found: dict[str, list[tuple[str, bytes]]] = {name: [] for name in CLASSES}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 3 or parts[-3] != split or parts[-2] not in found:
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                found[parts[-2]].append((parts[-1], handle.read()))
    except BROKEN_ARCHIVE as err:
        raise DataError(
            f"cifar10-jpeg: {path} is not a readable tar archive ({type(err).__name__}: {err}); fetch a fresh copy"
        ) from None
    return found


def _decode(path: Path, member: str, raw: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(raw)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except BROKEN_IMAGE as err:
        raise DataError(
            f"cifar10-jpeg: {member} in {path} is not a readable image ({err}); fetch a fresh copy"
        ) from None
    if pixels.shape != (SIDE, SIDE, 3):
        raise DataError(
            f"cifar10-jpeg: {member} in {path} is {pixels.shape[1]}x{pixels.shape[0]} px, not {SIDE}x{SIDE}; "
            "is this the CIFAR-10 JPEG copy?"
        )
    return pixels


def decode_archive(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32, 3) images and int64 (N,) labels of one split: classes in CLASSES order, files by name."""
    found = _split_members(path, split)
    empty = [name for name in CLASSES if not found[name]]
    if empty:
        raise DataError(
            f"cifar10-jpeg: {path} has no {split}/<class>/*.jpg images for {', '.join(empty)}; "
            "is it the CIFAR-10 JPEG copy?"
        )
    total = sum(len(files) for files in found.values())
    images = np.empty((total, SIDE, SIDE, 3), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    index = 0
    for label, name in enumerate(CLASSES):
        for filename, raw in sorted(found[name], key=lambda item: item[0]):
            images[index] = _decode(path, f"{split}/{name}/{filename}", raw)
            labels[index] = label
            index += 1
    return images, labels


def cache_key(path: Path, split: str) -> str:
    """Names the decoded split of this archive file: its size and modification time stand in for its content."""
    stat = path.stat()
    return f"cifar10-jpeg-v{CACHE_VERSION}-{split}-{stat.st_size}-{stat.st_mtime_ns}"


def decoded_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """`decode_archive` through the user cache: ~9 s for all 60k images the first time, a file read after."""
    key = cache_key(path, split)
    images, labels = read_cached(f"{key}-x"), read_cached(f"{key}-y")
    if (
        images is not None
        and labels is not None
        and images.dtype == np.uint8
        and images.shape[1:] == (SIDE, SIDE, 3)
        and labels.shape == (len(images),)
    ):
        return images, labels
    images, labels = decode_archive(path, split)
    write_cached(f"{key}-y", labels)  # labels first: an entry counts only once its images are there too
    write_cached(f"{key}-x", images)
    return images, labels


def load(cfg: DataConfig) -> Dataset:
    path = find_archive(cfg.root)
    images, labels = decoded_split(path, cfg.split)
    source = f"CIFAR-10 JPEG copy {path} (lossy, quality 75; not the original pixels)"
    return image_dataset("cifar10-jpeg", cfg.split, nhwc_to_tensor(images), source, cfg.size, labels)


CIFAR10_JPEG = register(
    DatasetSpec(
        name="cifar10-jpeg",
        kind="image",
        description=f"the lossy CIFAR-10 JPEG copy, read from {ARCHIVE} (data.root or ${ENV_VAR}), 32 px",
        load=load,
        shape=square_shape(SIDE),
        splits=SPLITS,
        label="CIFAR-10 JPEG q75",
        paper_split="train",  # a stand-in for CIFAR-10, compared as the papers compare CIFAR-10
        num_classes=len(CLASSES),
    )
)
