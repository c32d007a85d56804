"""CelebA-HQ (30,000 faces) at 128 or 256 px, from an image folder or an LMDB in the GN-GAN code's layout, with the
papers' splits; and `pack_lmdb`, which writes that layout from a folder.

Image i (1-based, as the files 1.jpg … 30000.jpg are numbered) is the i-th file of the folder in numeric order of
the file names (name order when the names are not all numbers), or the LMDB entry under the ASCII key str(i - 1)
whose value is the encoded image file. Splits, as the GN-GAN papers use them: `train` = images 1–27,000 (what the
128 px nets train on), `test` = images 27,001–30,000 (the 128 px FID reference), `all` = all 30,000 (256 px trains
on and compares against it). The official 128 px training LMDB holds only images 1–27,000: it serves `train` alone.
Every image is decoded, center-cropped to a square and resized bilinearly (antialiased) to data.size, default the
set's native 128 or 256; an LMDB packed at that size is read as it is.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ganbench.config import DataConfig
from ganbench.data.base import Dataset, DatasetSpec, image_dataset, register, square_shape
from ganbench.data.folder import DECODE_WORKERS, EXTENSIONS, UNREADABLE_IMAGE, square_image
from ganbench.errors import DataError
from ganbench.progress import NullProgress, Progress

SPLITS = ("train", "test", "all")
LMDB_DATA = "data.mdb"  # an LMDB environment is a folder holding data.mdb (and lock.mdb)
EXTRA = "celebahq"  # the optional dependency group that installs the lmdb package


@dataclass(frozen=True)
class Layout:
    """How many images CelebA-HQ has and how many of the first ones the 128 px nets train on."""

    total: int = 30_000
    train: int = 27_000


PAPER_LAYOUT = Layout()


def split_range(name: str, split: str, count: int, layout: Layout | None = None) -> range:
    """The 0-based positions of `split` in a source of `count` images (`layout` None: PAPER_LAYOUT as it is when
    called); DataError when the source cannot hold the split."""
    layout = layout or PAPER_LAYOUT
    if count == layout.total:
        return {"train": range(layout.train), "test": range(layout.train, layout.total), "all": range(layout.total)}[
            split
        ]
    if count == layout.train and split == "train":  # the official 128 px LMDB: the training images only
        return range(layout.train)
    if count == layout.train:
        raise DataError(
            f"{name}: data.root holds {count:,} images, the training images alone (as the official 128 px LMDB); "
            f"split {split!r} needs all {layout.total:,}: pack the whole set with `ganbench pack celebahq`"
        )
    raise DataError(
        f"{name}: data.root holds {count:,} images, but CelebA-HQ has {layout.total:,}; point data.root at the "
        "whole set (or use the `folder` dataset for other images)"
    )


# ---------------------------------------------------------------------------------------------------------------
# Sources: the images in CelebA-HQ order, as encoded bytes.


def require_lmdb() -> ModuleType:
    """The lmdb module, or a one-line DataError naming the extra that installs it."""
    try:
        import lmdb
    except ImportError:
        raise DataError(
            f"celebahq: LMDB files need the lmdb package; install it with pip install 'ganbench[{EXTRA}]'"
        ) from None
    return lmdb


def is_lmdb(root: Path) -> bool:
    return (root / LMDB_DATA).is_file()


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, hidden ones skipped, in numeric order of their names when every name is
    a number (2.jpg before 10.jpg), else in name order."""
    files = [
        path
        for path in folder.iterdir()
        if path.suffix.lower() in EXTENSIONS and not path.name.startswith(".") and path.is_file()
    ]
    if files and all(path.stem.isdigit() for path in files):
        return sorted(files, key=lambda path: (int(path.stem), path.name))
    return sorted(files, key=lambda path: path.name)


class FolderSource:
    """The images of a folder, read as files."""

    def __init__(self, name: str, root: Path) -> None:
        self.files = image_files(root)
        if not self.files:
            hint = " (images in subfolders are not read)" if any(p.is_dir() for p in root.iterdir()) else ""
            raise DataError(
                f"{name}: no images ({', '.join(EXTENSIONS)}) directly in '{root}'{hint}; set data.root to the "
                "folder holding CelebA-HQ's 30,000 images or to its LMDB"
            )
        self.description = f"CelebA-HQ image folder {root}"

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> tuple[str, bytes]:
        path = self.files[index]
        return str(path), path.read_bytes()

    def close(self) -> None:
        pass


class LMDBSource:
    """The entries of an LMDB in the GN-GAN layout: key str(i) (ASCII) holds image i + 1's encoded file."""

    def __init__(self, name: str, root: Path) -> None:
        lmdb = require_lmdb()
        self.name, self.root = name, root
        try:
            self.env = lmdb.open(
                str(root), readonly=True, lock=False, readahead=False, meminit=False, max_readers=DECODE_WORKERS + 1
            )
            with self.env.begin() as txn:
                self.count = int(txn.stat()["entries"])
        except lmdb.Error as err:
            raise DataError(
                f"{name}: {root} is not a readable LMDB ({type(err).__name__}: {err}); write it again with "
                "`ganbench pack celebahq`"
            ) from None
        self.error = lmdb.Error
        self.description = f"CelebA-HQ LMDB {root}"

    def __len__(self) -> int:
        return self.count

    def read(self, index: int) -> tuple[str, bytes]:
        key = str(index)
        try:
            with self.env.begin() as txn:
                value = txn.get(key.encode("ascii"))
        except self.error as err:
            raise DataError(f"{self.name}: {self.root} is damaged ({type(err).__name__}: {err})") from None
        if value is None:
            raise DataError(
                f"{self.name}: {self.root} has no key {key!r}; its {self.count:,} entries must be keyed 0 to "
                f"{self.count - 1} (write it with `ganbench pack celebahq`)"
            )
        return f"{self.root}[{key}]", bytes(value)

    def close(self) -> None:
        self.env.close()


def open_source(name: str, root_text: str) -> FolderSource | LMDBSource:
    root = Path(os.path.expanduser(root_text))
    if not root.is_dir():
        raise DataError(
            f"{name}: '{root_text}' is not a directory; set data.root to CelebA-HQ's image folder or its LMDB folder"
        )
    return LMDBSource(name, root) if is_lmdb(root) else FolderSource(name, root)


# ---------------------------------------------------------------------------------------------------------------
# Decoding.


def why(err: Exception) -> str:
    """Pillow's reason, without the in-memory buffer's address it names when it cannot tell the format."""
    if isinstance(err, UnidentifiedImageError):
        return "not an image format Pillow reads"
    return str(err)


def decode_square(raw: bytes, where: str, size: int) -> np.ndarray:
    """The encoded image `raw` as an image folder's file is read (folder.square_image); an unreadable one is a
    DataError naming `where`."""
    try:
        return square_image(io.BytesIO(raw), size)
    except UNREADABLE_IMAGE as err:
        raise DataError(f"celebahq: {where} is not a readable image ({why(err)}); replace it") from None


def _parallel(work: Callable[[int], Any], indices: range | list[int]) -> Iterator[Any]:
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
        yield from pool.map(work, indices)


def load_images(name: str, root: str, split: str, size: int) -> tuple[torch.Tensor, str]:
    """uint8 (N, 3, size, size) images of `split` and a one-line source description."""
    source = open_source(name, root)
    try:
        positions = split_range(name, split, len(source))
        images = np.empty((len(positions), size, size, 3), dtype=np.uint8)

        def fill(slot: int) -> None:
            where, raw = source.read(positions[slot])
            images[slot] = decode_square(raw, where, size)

        for _ in _parallel(fill, range(len(positions))):
            pass
        text = f"{source.description} ({len(source):,} images), images {positions.start + 1}-{positions.stop}"
    finally:
        source.close()
    return torch.from_numpy(images).permute(0, 3, 1, 2), text


def loader(native: int) -> Callable[[DataConfig], Dataset]:
    name = f"celebahq{native}"

    def load(cfg: DataConfig) -> Dataset:
        size = cfg.size or native
        images, source = load_images(name, cfg.root, cfg.split, size)
        return image_dataset(name, cfg.split, images, source, 0)

    return load


for _native, _train, _reference in ((128, "train", "test"), (256, "all", "all")):
    register(
        DatasetSpec(
            name=f"celebahq{_native}",
            kind="image",
            description=(
                f"CelebA-HQ at {_native} px from an image folder or LMDB (data.root); splits train = images "
                "1-27,000, test = 27,001-30,000, all"
            ),
            load=loader(_native),
            shape=square_shape(_native),
            splits=SPLITS,
            label=f"CelebA-HQ {_native}",
            paper_split=_train,
            reference_split=_reference,
        )
    )


# ---------------------------------------------------------------------------------------------------------------
# Packing a folder into the LMDB layout.


@dataclass(frozen=True)
class Packed:
    path: Path
    images: int
    bytes: int  # the values' total size


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def pack_lmdb(
    folder: Path,
    out: Path,
    size: int = 0,
    progress: Progress | None = None,
    chunk: int = 256,
    initial_map: int = 1 << 30,
) -> Packed:
    """Write the images of `folder` (in CelebA-HQ order, see `image_files`) to a new LMDB at `out`, keyed 0 … N-1.

    size 0 stores each file's bytes as they are (as the GN-GAN tool does); size N stores each image center-cropped
    and resized to N px as a PNG (lossless: read back at N px it is exactly what the folder gives at N px). The LMDB
    is written to a temporary folder beside `out` and renamed into place when complete: an interruption leaves no
    `out`. The LMDB map starts at `initial_map` bytes and doubles whenever a chunk of images does not fit. DataError
    for a bad folder, an unreadable image or an existing `out`; OSError when writing fails.
    """
    lmdb = require_lmdb()
    progress = progress or NullProgress()
    if size < 0:
        raise DataError(f"pack: --size {size} must be 0 (keep each file's bytes) or a positive pixel count")
    if not folder.is_dir():
        raise DataError(f"pack: '{folder}' is not a directory; give the folder holding the images")
    if out.exists():
        raise DataError(f"pack: '{out}' already exists; remove it or choose another output path")
    if not out.parent.is_dir():
        raise DataError(f"pack: the output's folder '{out.parent}' does not exist; create it first")
    files = FolderSource("pack", folder).files

    def encode(index: int) -> bytes:
        raw = files[index].read_bytes()
        if size:
            return encode_png(decode_square(raw, str(files[index]), size))
        try:  # the header and structure only: a file that is no image must not reach the LMDB
            with Image.open(io.BytesIO(raw)) as image:
                image.verify()
        except UNREADABLE_IMAGE as err:
            raise DataError(f"pack: {files[index]} is not a readable image ({why(err)}); remove or replace it") from err
        return raw

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    total = 0
    progress.start("Packing", len(files))
    try:
        env = lmdb.open(str(tmp), map_size=initial_map, subdir=True, readahead=False, meminit=False)
        try:
            for start in range(0, len(files), chunk):
                indices = range(start, min(start + chunk, len(files)))
                values = list(_parallel(encode, indices))
                _put_all(env, lmdb, [(str(i).encode("ascii"), v) for i, v in zip(indices, values, strict=True)])
                total += sum(len(value) for value in values)
                progress.advance(len(indices))
            env.sync(True)
        finally:
            env.close()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        progress.finish()
    return Packed(out, len(files), total)


def _put_all(env: Any, lmdb: ModuleType, items: list[tuple[bytes, bytes]]) -> None:
    """Write `items` in one transaction, doubling the map whenever it is too small (LMDB's map size is fixed)."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:  # the transaction was aborted: grow the map and write the chunk again
            env.set_mapsize(env.info()["map_size"] * 2)
