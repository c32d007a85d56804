"""An image folder (CelebA-HQ, LSUN exported as images): every image under data.root, center-cropped and resized.

Files are taken recursively, in the order of their paths relative to the root (as '/'-joined strings), so the same
folder gives the same tensor on every machine. Hidden files and folders (names starting with '.', such as macOS
'._x.jpg' resource forks) are skipped.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from ganbench.config import DataConfig
from ganbench.data.base import Dataset, DatasetSpec, image_dataset, register
from ganbench.errors import DataError, RecipeError

EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
SPLITS = ("all", "train")  # one split; "train" is accepted as another name for it, so the recipe default works
UNREADABLE_IMAGE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)  # what PIL raises for a bad file
DECODE_WORKERS = min(8, os.cpu_count() or 1)  # decoding and resizing run in C with the GIL released


def shape(cfg: DataConfig) -> tuple[int, ...]:
    if cfg.size <= 0:
        raise RecipeError("data.size: the folder dataset has no native size; set data.size (e.g. 128 or 256)")
    return (3, cfg.size, cfg.size)


def image_files(root: Path) -> list[Path]:
    """Every image file under `root`, sorted by relative path; hidden files and folders skipped."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.suffix.lower() in EXTENSIONS and not any(p.startswith(".") for p in relative.parts) and path.is_file():
            found.append((relative.as_posix(), path))
    return [path for _, path in sorted(found)]


def square_image(image_file: Path | BinaryIO, size: int) -> np.ndarray:
    """uint8 (size, size, 3): the image RGB-converted, center-cropped to a square, resized bilinearly; a file PIL
    cannot read raises one of UNREADABLE_IMAGE.

    PIL's bilinear resize filters over the whole footprint when shrinking (antialiased), as the tensor resize of
    the other datasets does (and returns an image already of that size as it is). JPEGs are decoded at the smallest
    DCT scale that keeps both sides >= size (draft mode): a 1024 px CelebA-HQ JPEG at 128 px decodes 8x faster.
    """
    with Image.open(image_file) as image:
        image.draft("RGB", (size, size))
        rgb = image.convert("RGB")
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    # Crop before resizing: a resize with box= lets the filter read pixels outside the box.
    square = rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(square)


def read_square(path: Path, size: int) -> np.ndarray:
    """The image file at `path` as square_image makes it; an unreadable one is a DataError naming it."""
    try:
        return square_image(path, size)
    except UNREADABLE_IMAGE as err:
        raise DataError(f"folder: {path} is not a readable image ({err}); remove or replace it") from None


def load(cfg: DataConfig) -> Dataset:
    size = shape(cfg)[1]
    root = Path(os.path.expanduser(cfg.root))
    if not root.is_dir():
        raise DataError(f"folder: '{cfg.root}' is not a directory; set data.root to the folder holding the images")
    files = image_files(root)
    if not files:
        raise DataError(
            f"folder: no images ({', '.join(EXTENSIONS)}) under '{cfg.root}'; set data.root to the folder holding them"
        )
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)

    def fill(index: int) -> None:
        images[index] = read_square(files[index], size)

    # Decoding and resizing run in C with the GIL released, so threads share the work of a 30k-image folder.
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
        list(pool.map(fill, range(len(files))))
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    return image_dataset("folder", "all", tensor, f"image folder {cfg.root} ({len(files)} files)", 0)


FOLDER = register(
    DatasetSpec(
        name="folder",
        kind="image",
        description="every image under data.root (CelebA-HQ, LSUN as files), center-cropped and resized to data.size",
        load=load,
        shape=shape,
        splits=SPLITS,
        label="image folder",
        paper_split="all",  # CelebA-HQ and LSUN as files: the papers use every image
    )
)
