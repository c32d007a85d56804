"""The default loaders read the official on-disk formats pixel for pixel: CIFAR-10's python batches built from the
JPEG copy's decoded images, and STL-10's binaries built from known arrays, at 96 px and at the recipes' 48 px.

The files are written from the formats' definitions, not from what the loaders do: a CIFAR batch row is the 1024
red values of the image in row-major order, then green, then blue, pickled as the release was (Python 2, protocol
2, so every key and string is a Python 2 str); an STL-10 image is 3 x 96 x 96 bytes, each channel column-major.
Nothing in ganbench is patched: the loaders run as `load_dataset` runs them for a user.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ganbench.data import Dataset, cifar_jpeg, load_dataset
from ganbench.errors import DataError
from ganbench.recipe import DataConfig
from tests.conftest import shared_data_file

# CIFAR-10: cifar-10-batches-py/data_batch_1 .. data_batch_5 (the train split), test_batch and batches.meta.

_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array rebuilder, numpy._core.multiarray._reconstruct


class Python2Pickler(pickle._Pickler):
    """Pickles as the release's Python 2 did: str and bytes become Python 2 str (read back as str with
    encoding="latin1", as torchvision reads them, and as bytes with encoding="bytes"), and arrays are rebuilt by
    numpy.core.multiarray._reconstruct, the name numpy 1 gave it."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def write_release_pickle(path: Path, tree: dict[str, Any]) -> None:
    with open(path, "wb") as handle:
        Python2Pickler(handle, protocol=2).dump(tree)


def cifar_rows(nchw: np.ndarray) -> np.ndarray:
    """uint8 (N, 3072) batch rows of (N, 3, 32, 32) images: entry c * 1024 + y * 32 + x is channel c at row y,
    column x (the red plane, then green, then blue, each row-major)."""
    rows = np.ascontiguousarray(nchw).reshape(len(nchw), 3 * 32 * 32)
    for n, c, y, x in ((0, 0, 0, 1), (0, 2, 31, 0), (len(nchw) - 1, 1, 5, 17)):  # the writer, against the definition
        assert rows[n, c * 1024 + y * 32 + x] == nchw[n, c, y, x]
    return rows


def write_cifar10_release(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """cifar-10-batches-py laid out as the release: `splits["train"]` cut in order into data_batch_1..5,
    `splits["test"]` in test_batch, and batches.meta."""
    folder.mkdir(parents=True)
    batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    for split, names in batches.items():
        images, labels = splits[split]
        size = len(images) // len(names)
        assert size * len(names) == len(images)
        for i, name in enumerate(names):
            part = slice(i * size, (i + 1) * size)
            title = f"training batch {i + 1} of 5" if split == "train" else "testing batch 1 of 1"
            write_release_pickle(
                folder / name,
                {
                    "batch_label": title,
                    "labels": [int(label) for label in labels[part]],  # a list of ints, as in the release
                    "data": cifar_rows(images[part]),
                    "filenames": [f"{cifar_jpeg.CLASSES[label]}_{n:05d}.png" for n, label in enumerate(labels[part])],
                },
            )
    size = len(splits["test"][0])
    meta = {"num_cases_per_batch": size, "label_names": list(cifar_jpeg.CLASSES), "num_vis": 3 * 32 * 32}
    write_release_pickle(folder / "batches.meta", meta)


@pytest.mark.slow  # decodes the copy's 10,000 test images
def test_cifar10_batches_built_from_the_jpeg_copy_read_back_exactly(tmp_path: Path) -> None:
    """The JPEG copy's test split, written as the release's test_batch and again, in another order, as its five
    training batches (2,000 images each: the copy's 50,000 training images would only add 10 s of decoding), reads
    back through the default cifar10 loader exactly, in the order written, labels included."""
    archive = shared_data_file(cifar_jpeg.ARCHIVE)
    copy = load_dataset(DataConfig(name="cifar10-jpeg", root=str(archive), split="test"))
    assert len(copy) == 10_000 and copy.labels is not None
    # The copy comes class by class; the release's batches mix the classes. Shuffled, a batch read out of turn or
    # labels paired with the wrong images change what is read.
    order = {
        "train": np.random.default_rng(1).permutation(len(copy)),
        "test": np.random.default_rng(2).permutation(len(copy)),
    }
    written = {split: (copy.tensor.numpy()[index], copy.labels.numpy()[index]) for split, index in order.items()}
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_release(folder, written)
    with open(folder / "data_batch_2", "rb") as handle:  # Python 2 strs: bytes keys with encoding="bytes"
        batch = pickle.load(handle, encoding="bytes")
    assert sorted(batch) == [b"batch_label", b"data", b"filenames", b"labels"]
    assert batch[b"data"].shape == (2_000, 3072) and batch[b"data"].dtype == np.uint8

    from torchvision import datasets

    with pytest.raises(RuntimeError, match="not found or corrupted"):  # torchvision's own class: md5s of the release
        datasets.CIFAR10(root=str(tmp_path), train=False)

    for split, (images, labels) in written.items():
        read = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), split=split))  # download=false: the default
        assert read.tensor.shape == (10_000, 3, 32, 32) and read.tensor.dtype == torch.uint8
        assert torch.equal(read.tensor, torch.from_numpy(images)), f"{split}: pixels differ from the JPEG copy's"
        assert read.labels is not None and torch.equal(read.labels, torch.from_numpy(labels)), f"{split}: labels"


# STL-10: {train,test,unlabeled}_X.bin (N x 3 x 96 x 96 bytes, each channel column-major) and {train,test}_y.bin
# (one byte per image, the class 1..10).

STL_SIDE = 96
STL_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


def stl10_bytes(nchw: np.ndarray) -> bytes:
    """The _X.bin bytes of (N, 3, 96, 96) images: image n, channel c, column x, row y at n*27648 + c*9216 + x*96 + y."""
    raw = np.ascontiguousarray(nchw.transpose(0, 1, 3, 2)).tobytes()
    for n, c, y, x in ((0, 0, 0, 1), (0, 2, 95, 3), (len(nchw) - 1, 1, 40, 7)):  # the writer, against the definition
        assert raw[n * 3 * STL_SIDE**2 + c * STL_SIDE**2 + x * STL_SIDE + y] == nchw[n, c, y, x]
    return raw


def stl10_images(n: int, seed: int) -> np.ndarray:
    """Noise over a ramp that rises along x in red, along y in green and falls along x in blue: a transposed image,
    a swapped channel or another image is far off everywhere, at 96 px and after any smoothing resize."""
    y, x = np.mgrid[0:STL_SIDE, 0:STL_SIDE]
    ramp = np.stack([x, y, STL_SIDE - 1 - x]) * 1.5
    noise = np.random.default_rng(seed).integers(0, 112, (n, 3, STL_SIDE, STL_SIDE))
    return (ramp + noise).astype(np.uint8)


def write_stl10_release(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
    folder.mkdir(parents=True)
    for split, (images, labels) in splits.items():
        (folder / f"{split}_X.bin").write_bytes(stl10_bytes(images))
        if labels is not None:
            (folder / f"{split}_y.bin").write_bytes(bytes(int(label) + 1 for label in labels))
    (folder / "class_names.txt").write_text("\n".join(STL_CLASSES) + "\n")


def antialiased_bilinear(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of a bilinear (triangle) filter widened by the shrink factor, pixel centres at
    (i + 0.5) * n_in / n_out, renormalised where the window leaves the image: Pillow's and torch's antialiased
    bilinear, written out."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        distance = np.abs(np.arange(n_in) + 0.5 - (i + 0.5) * scale) / support
        weights[i] = np.clip(1 - distance, 0, None)
        weights[i] /= weights[i].sum()
    return weights


def assert_antialiased_resize(resized: torch.Tensor, original: np.ndarray) -> None:
    """Equal to the exact (float64) resize rounded half to even, except by 1 where that lands on a half."""
    side = resized.shape[-1]
    weights = antialiased_bilinear(original.shape[-1], side)
    exact = weights @ original.astype(np.float64) @ weights.T  # rows, then columns
    difference = resized.numpy().astype(np.int64) - np.rint(exact).astype(np.int64)
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-6
    assert np.array_equal(difference[~tie], np.zeros_like(difference[~tie])), "resized pixels differ off the ties"
    assert np.abs(difference[tie]).max(initial=0) <= 1
    pillow = np.stack(
        [
            np.asarray(Image.fromarray(image.transpose(1, 2, 0)).resize((side, side), Image.Resampling.BILINEAR))
            for image in original
        ]
    )
    assert np.abs(resized.numpy().astype(np.int64) - pillow.transpose(0, 3, 1, 2)).max() <= 1  # fixed-point rounding


def stl10(root: Path, split: str, size: int = 0) -> Dataset:
    return load_dataset(DataConfig(name="stl10", root=str(root), split=split, size=size))


def test_stl10_binaries_read_back_exactly_at_96_px(tmp_path: Path) -> None:
    splits = {
        "train": (stl10_images(5, 1), np.array([3, 0, 9, 3, 6])),
        "test": (stl10_images(3, 2), np.array([9, 1, 4])),
        "unlabeled": (stl10_images(7, 3), None),
    }
    write_stl10_release(tmp_path / "stl10_binary", splits)
    for split, (images, labels) in splits.items():
        read = stl10(tmp_path, split, size=STL_SIDE)
        assert read.tensor.shape == images.shape and read.tensor.is_contiguous()
        assert torch.equal(read.tensor, torch.from_numpy(images)), f"{split}: pixels differ from the written images"
        if labels is None:
            assert read.labels is None
        else:
            assert read.labels.tolist() == labels.tolist()
    both = stl10(tmp_path, "train+unlabeled", size=STL_SIDE)
    assert torch.equal(both.tensor, torch.from_numpy(np.concatenate([splits["train"][0], splits["unlabeled"][0]])))
    assert both.labels is None  # unlabeled images mixed in: no class labels for the split


def test_stl10_binaries_at_the_recipes_48_px(tmp_path: Path) -> None:
    unlabeled, train = stl10_images(6, 4), stl10_images(2, 5)
    write_stl10_release(tmp_path / "stl10_binary", {"unlabeled": (unlabeled, None), "train": (train, np.array([7, 2]))})
    default = stl10(tmp_path, "unlabeled")  # data.size = 0 means the papers' 48 px for STL-10
    recipes = stl10(tmp_path, "unlabeled", size=48)
    assert default.tensor.shape == (6, 3, 48, 48) and default.tensor.is_contiguous()
    assert torch.equal(default.tensor, recipes.tensor) and default.content_hash == recipes.content_hash
    assert_antialiased_resize(default.tensor, unlabeled)
    labelled = stl10(tmp_path, "train")
    assert_antialiased_resize(labelled.tensor, train)
    assert labelled.labels.tolist() == [7, 2]


def test_stl10_truncated_binary_is_a_data_error(tmp_path: Path) -> None:
    write_stl10_release(tmp_path / "stl10_binary", {"unlabeled": (stl10_images(2, 6), None)})
    path = tmp_path / "stl10_binary" / "unlabeled_X.bin"
    path.write_bytes(path.read_bytes()[:-STL_SIDE])  # one column short: no longer whole images
    with pytest.raises(DataError, match="do not read as STL-10"):
        stl10(tmp_path, "unlabeled")
