"""An image folder (CelebA-HQ, LSUN exported as images): every image below the root, center-cropped and resized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganbench.data.base import DATASETS, Dataset, DatasetSpec, image_dataset
from ganbench.errors import DataError, RecipeError
from ganbench.recipe import DataConfig

EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def _shape(cfg: DataConfig) -> tuple[int, ...]:
    if cfg.size <= 0:
        raise RecipeError("data.size: the folder dataset needs an image size; set data.size (e.g. 128)")
    return (3, cfg.size, cfg.size)


def _read(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when that is enough
            image = image.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
            return np.asarray(image)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: unreadable image ({type(err).__name__}); remove or replace it") from None


def _load(cfg: DataConfig) -> Dataset:
    size = _shape(cfg)[1]
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"folder: no directory '{root}'; set data.root to the folder holding the images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"folder: no images ({', '.join(sorted(EXTENSIONS))}) under '{root}'; check data.root")
    images = np.stack([_read(path, size) for path in files])
    return image_dataset(cfg.name, cfg.split, images, f"image folder {root} ({len(files)} files)", 0)


DATASETS.add(
    "folder",
    DatasetSpec(
        "folder", "image", "every image under data.root, square-cropped to data.size", _load, _shape, ("all", "train")
    ),
)
