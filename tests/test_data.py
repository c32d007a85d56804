"""Datasets: the real loaders on small files written in the official on-disk formats, synthetic sets, errors."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbench.data import DATASETS, Dataset, cifar_jpeg, load_dataset, output_shape, to_model_range
from ganbench.data.base import content_hash
from ganbench.errors import DataError, RecipeError
from ganbench.recipe import DataConfig
from tests.conftest import shared_data_file


def load(cfg: DataConfig) -> Dataset:
    """load_dataset, checked against what the rest of ganbench assumes of every loaded set without reading it:
    the registry's kind, the shape `output_shape` promises, and a content hash of exactly the returned tensor."""
    data = load_dataset(cfg)
    assert data.kind == DATASETS.get(cfg.name).kind  # evaluation picks image or point metrics by the registry's kind
    assert tuple(data.tensor.shape[1:]) == output_shape(cfg)
    assert data.tensor.dtype == (torch.uint8 if data.kind == "image" else torch.float32)
    flat = data.tensor.contiguous().numpy().tobytes()
    assert data.content_hash == hashlib.sha256(str(tuple(data.tensor.shape)).encode() + flat).hexdigest()[:16]
    return data


def pil_resize(nchw: torch.Tensor, size: int) -> torch.Tensor:
    """The reference resize: Pillow's bilinear (antialiased when shrinking), image by image."""
    out = [
        np.asarray(Image.fromarray(image.permute(1, 2, 0).numpy()).resize((size, size), Image.Resampling.BILINEAR))
        for image in nchw
    ]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def assert_close_to_pil(resized: torch.Tensor, original: torch.Tensor) -> None:
    reference = pil_resize(original, resized.shape[-1])
    assert (resized.int() - reference.int()).abs().max() <= 1  # Pillow rounds in fixed point, torch in float


# CIFAR: python pickle batches, each {"data": uint8 (n, 3072) rows of R, G, B planes, "labels": [...], ...}.


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


def _pickle(path: Path, tree: dict) -> None:
    path.write_bytes(pickle.dumps(tree, protocol=2))  # the release was pickled by Python 2 (protocol 2)


def write_cifar10(root: Path, train: bool = True) -> tuple[list[np.ndarray], list[list[int]]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows, labels = [], []
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else []
    for i, name in enumerate([*names, "test_batch"]):
        rows.append(_rows(3, i))
        labels.append([(i + k) % 10 for k in range(3)])
        _pickle(folder / name, {"batch_label": name, "labels": labels[-1], "data": rows[-1], "filenames": ["x"] * 3})
    _pickle(folder / "batches.meta", {"label_names": list(cifar_jpeg.CLASSES), "num_cases_per_batch": 3})
    return rows, labels


def test_cifar10_pickle_batches_read_through_torchvision(tmp_path: Path) -> None:
    rows, labels = write_cifar10(tmp_path)
    train = load(DataConfig(name="cifar10", root=str(tmp_path), split="train"))
    assert train.tensor.shape == (15, 3, 32, 32) and train.tensor.dtype == torch.uint8
    assert train.tensor.is_contiguous()
    # A row is the 1024 red values (row-major), then green, then blue: reshape(3, 32, 32) by definition.
    expected = torch.from_numpy(np.concatenate(rows[:5]).reshape(-1, 3, 32, 32))
    assert torch.equal(train.tensor, expected)
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == sum(labels[:5], [])
    assert "cifar-10-batches-py" in train.source
    test = load(DataConfig(name="cifar10", root=str(tmp_path), split="test", size=16))
    assert test.tensor.shape == (3, 3, 16, 16) == (3, *output_shape(DataConfig(name="cifar10", size=16)))
    assert_close_to_pil(test.tensor, torch.from_numpy(rows[5].reshape(-1, 3, 32, 32)))
    assert test.labels.tolist() == labels[5]


def test_the_registry_names_torchvisions_folders_without_importing_it() -> None:
    """The descriptions name the folders torchvision reads; importing the registry does not load torchvision."""
    from torchvision import datasets

    for name, cls in (("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100), ("stl10", datasets.STL10)):
        assert f"data.root/{cls.base_folder}" in DATASETS.get(name).description
    code = "import sys, ganbench.recipe; sys.exit('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_cifar10_test_split_needs_only_its_own_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path, train=False)  # torchvision itself would refuse: it checks every file of both splits
    assert len(load(DataConfig(name="cifar10", root=str(tmp_path), split="test"))) == 3
    with pytest.raises(DataError, match=r"^cifar10: no CIFAR-10 files under .*missing .*data_batch_1"):
        load(DataConfig(name="cifar10", root=str(tmp_path), split="train"))


def test_missing_cifar_names_the_folder_and_both_fixes(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load(DataConfig(name="cifar10", root=str(root)))
    message = str(err.value)
    assert message.startswith(f"cifar10: no CIFAR-10 files under '{root}' (looked for {root / 'cifar-10-batches-py'})")
    assert "set data.root" in message and "data.download=true" in message and "\n" not in message


def test_corrupt_cifar_batch_is_a_data_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="do not read as CIFAR-10"):
        load(DataConfig(name="cifar10", root=str(tmp_path), split="test"))


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train = _rows(5, 1)
    _pickle(folder / "train", {"data": train, "fine_labels": [0, 1, 2, 3, 99], "coarse_labels": [0, 0, 1, 1, 19]})
    _pickle(folder / "test", {"data": _rows(2, 2), "fine_labels": [5, 6], "coarse_labels": [1, 2]})
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["k"] * 20})
    data = load(DataConfig(name="cifar100", root=str(tmp_path)))
    assert torch.equal(data.tensor, torch.from_numpy(train.reshape(-1, 3, 32, 32)))
    assert data.labels.tolist() == [0, 1, 2, 3, 99]
    assert len(load(DataConfig(name="cifar100", root=str(tmp_path), split="test"))) == 2


# STL-10: raw uint8 binaries, each image 3 x 96 x 96 stored column-major (x before y); labels 1..10 as bytes.


def write_stl10(folder: Path, name: str, images: np.ndarray, labels: list[int] | None = None) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())  # (N, C, H, W) -> column-major
    if labels is not None:
        (folder / f"{name}_y.bin").write_bytes(bytes(labels))


def test_stl10_binaries_column_major_and_48_px_by_default(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    images[:, :, :10, :] = 0  # a dark top band: a row/column mix-up would move it to the left edge
    write_stl10(folder, "unlabeled", images)
    full = load(DataConfig(name="stl10", root=str(tmp_path), split="unlabeled", size=96))
    assert torch.equal(full.tensor, torch.from_numpy(images)) and full.labels is None
    small = load(DataConfig(name="stl10", root=str(tmp_path), split="unlabeled"))
    assert small.tensor.shape == (3, 3, 48, 48) and small.tensor.is_contiguous()
    assert_close_to_pil(small.tensor, torch.from_numpy(images))
    assert output_shape(DataConfig(name="stl10", split="unlabeled")) == (3, 48, 48)
    assert output_shape(DataConfig(name="stl10", split="unlabeled", size=64)) == (3, 64, 64)


def test_stl10_labelled_splits(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    rng = np.random.default_rng(1)
    write_stl10(folder, "train", rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8), [1, 10])
    write_stl10(folder, "test", rng.integers(0, 256, (1, 3, 96, 96), dtype=np.uint8), [4])
    write_stl10(folder, "unlabeled", rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8))
    assert load(DataConfig(name="stl10", root=str(tmp_path), split="train")).labels.tolist() == [0, 9]
    assert load(DataConfig(name="stl10", root=str(tmp_path), split="test")).labels.tolist() == [3]
    both = load(DataConfig(name="stl10", root=str(tmp_path), split="train+unlabeled"))
    assert len(both) == 4 and both.labels is None  # unlabeled images mixed in: no class labels for the split
    (folder / "test_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(DataError, match="1 images but 2 labels"):
        load(DataConfig(name="stl10", root=str(tmp_path), split="test"))


def test_missing_stl10_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^stl10: no STL-10 files .*looked for .*stl10_binary.*data.download=true"):
        load(DataConfig(name="stl10", root=str(tmp_path), split="unlabeled"))
    (tmp_path / "stl10_binary").mkdir()
    with pytest.raises(DataError, match=r"missing .*unlabeled_X\.bin"):
        load(DataConfig(name="stl10", root=str(tmp_path), split="unlabeled"))


# Image folder: any of .png/.jpg/.jpeg/.webp/.bmp below the root, sorted by relative path.


def thirds(width: int, height: int, vertical: bool) -> Image.Image:
    """Red, green, blue thirds side by side (or stacked): a center crop to a square sees only green."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    long = height if vertical else width
    for channel in range(3):
        band = slice(channel * long // 3, (channel + 1) * long // 3)
        if vertical:
            image[band, :, channel] = 255
        else:
            image[:, band, channel] = 255
    return Image.fromarray(image)


def test_image_folder_center_crops_resizes_and_orders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    thirds(90, 30, vertical=False).save(tmp_path / "a" / "z.png")  # relative paths sort as strings:
    thirds(30, 90, vertical=True).save(tmp_path / "a-c.PNG")  # "a-c.PNG" < "a/z.png" < "b.jpg" < "d.bmp"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(tmp_path / "b.jpg", quality=95)
    Image.new("L", (20, 20), 77).save(tmp_path / "d.bmp")
    (tmp_path / "._b.jpg").write_bytes(b"macOS resource fork, not an image")  # hidden: skipped
    (tmp_path / "notes.txt").write_text("not an image")
    data = load(DataConfig(name="folder", root=str(tmp_path), split="all", size=12))
    assert data.tensor.shape == (4, 3, 12, 12) and data.split == "all" and "4 files" in data.source
    green = torch.tensor([0, 255, 0], dtype=torch.uint8)[:, None, None].expand(3, 12, 12)
    assert torch.equal(data.tensor[0], green) and torch.equal(data.tensor[1], green)
    assert (data.tensor[2].int() - torch.tensor([200, 30, 30])[:, None, None]).abs().max() <= 3  # JPEG
    assert torch.equal(data.tensor[3], torch.full((3, 12, 12), 77, dtype=torch.uint8))  # grey -> RGB
    alias = load(DataConfig(name="folder", root=str(tmp_path), split="train", size=12))
    assert alias.split == "all" and alias.content_hash == data.content_hash


def test_image_folder_resize_matches_pillow_bilinear(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "noise.png")
    data = load(DataConfig(name="folder", root=str(tmp_path), size=10))
    assert_close_to_pil(data.tensor, torch.from_numpy(pixels).permute(2, 0, 1)[None])


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"^data.size: "):
        output_shape(DataConfig(name="folder", root=str(tmp_path), split="all"))
    with pytest.raises(RecipeError, match=r"^data.size: "):
        load(DataConfig(name="folder", root=str(tmp_path), split="all"))
    with pytest.raises(DataError, match=rf"no images .* under '{tmp_path}'"):
        load(DataConfig(name="folder", root=str(tmp_path), size=8))
    with pytest.raises(DataError, match="is not a directory"):
        load(DataConfig(name="folder", root=str(tmp_path / "absent"), size=8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but then nothing")
    with pytest.raises(DataError, match=r"broken\.png is not a readable image"):
        load(DataConfig(name="folder", root=str(tmp_path), size=8))


# cifar10-jpeg: [prefix/]train/<class>/NNNN.jpg inside a tar.xz, read without extracting.


def jpeg_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def write_jpeg_tar(path: Path, counts: dict[str, int] | None = None, prefix: str = "CIFAR-10-images/") -> dict:
    """A small archive in the copy's layout; members are added in reverse name order to test the sorting."""
    counts = counts or {"train": 2, "test": 1}
    written: dict[str, dict[tuple[str, str], bytes]] = {split: {} for split in counts}
    with tarfile.open(path, "w:xz") as archive:
        for split, count in counts.items():
            for c, cls in enumerate(cifar_jpeg.CLASSES):
                for i in reversed(range(count)):
                    raw = jpeg_bytes(hash((split, c, i)) % 2**32)
                    info = tarfile.TarInfo(f"{prefix}{split}/{cls}/{i:04d}.jpg")
                    info.size = len(raw)
                    archive.addfile(info, io.BytesIO(raw))
                    written[split][(cls, f"{i:04d}")] = raw
    return written


def decode(raw: bytes) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(io.BytesIO(raw)).convert("RGB"))).permute(2, 0, 1)


def test_cifar10_jpeg_reads_straight_from_the_tar(tmp_path: Path) -> None:
    written = write_jpeg_tar(tmp_path / cifar_jpeg.ARCHIVE)
    data = load(DataConfig(name="cifar10-jpeg", root=str(tmp_path), split="train"))
    assert data.tensor.shape == (20, 3, 32, 32) and data.tensor.is_contiguous()
    assert data.labels.tolist() == [c for c in range(10) for _ in range(2)]
    order = [(cls, f"{i:04d}") for cls in cifar_jpeg.CLASSES for i in range(2)]  # class order, then file name
    assert torch.equal(data.tensor, torch.stack([decode(written["train"][key]) for key in order]))
    assert "lossy" in data.source
    test = load(DataConfig(name="cifar10-jpeg", root=str(tmp_path / cifar_jpeg.ARCHIVE), split="test"))
    assert len(test) == 10 and test.labels.tolist() == list(range(10))
    resized = load(DataConfig(name="cifar10-jpeg", root=str(tmp_path), split="test", size=16))
    assert_close_to_pil(resized.tensor, test.tensor)


def test_cifar10_jpeg_cache_is_keyed_by_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / cifar_jpeg.ARCHIVE
    write_jpeg_tar(archive)
    cfg = DataConfig(name="cifar10-jpeg", root=str(tmp_path), split="train")
    first = load(cfg)
    cached = sorted(p.name for p in (Path(os.environ["GANBENCH_CACHE"]) / "data").iterdir())
    assert len(cached) == 2 and all(name.endswith(".npy") and "-train-" in name for name in cached)

    def no_decoding(path: Path, split: str) -> None:
        raise AssertionError("decoded again although the cache holds this split")

    monkeypatch.setattr(cifar_jpeg, "decode_archive", no_decoding)
    again = load(cfg)
    assert again.content_hash == first.content_hash and torch.equal(again.labels, first.labels)
    monkeypatch.undo()
    write_jpeg_tar(archive, {"train": 1})  # a different archive (size and mtime change): a new entry
    later = time.time() + 10
    os.utime(archive, (later, later))
    assert len(load(cfg)) == 10


def test_cifar10_jpeg_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere.tar.xz"
    write_jpeg_tar(elsewhere, {"test": 1})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cifar_jpeg.ENV_VAR, str(elsewhere))
    assert cifar_jpeg.find_archive("data") == elsewhere
    monkeypatch.delenv(cifar_jpeg.ENV_VAR)
    shared = tmp_path / "shared" / "data"  # a data folder beside the checkout below
    shared.mkdir(parents=True)
    (tmp_path / "checkout").mkdir()
    (shared / cifar_jpeg.ARCHIVE).write_bytes(elsewhere.read_bytes())
    monkeypatch.chdir(tmp_path / "checkout")
    monkeypatch.delenv(cifar_jpeg.SHARED_DATA_ENV, raising=False)
    with pytest.raises(DataError, match="GANBENCH_SHARED_DATA to its folder"):  # never found by a relative path
        cifar_jpeg.find_archive("data")
    monkeypatch.setenv(cifar_jpeg.SHARED_DATA_ENV, str(shared))
    assert cifar_jpeg.find_archive("data") == shared / cifar_jpeg.ARCHIVE
    assert len(load(DataConfig(name="cifar10-jpeg", split="test"))) == 10


def test_cifar10_jpeg_missing_and_damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cifar_jpeg.ENV_VAR, raising=False)
    monkeypatch.delenv(cifar_jpeg.SHARED_DATA_ENV, raising=False)
    archive = tmp_path / cifar_jpeg.ARCHIVE
    with pytest.raises(DataError, match=rf"no {cifar_jpeg.ARCHIVE} found \(looked at {archive}\); "):
        load(DataConfig(name="cifar10-jpeg", root=str(tmp_path)))
    archive.write_bytes(b"broken")
    with pytest.raises(DataError, match="is not a readable tar archive"):
        load(DataConfig(name="cifar10-jpeg", root=str(tmp_path)))
    write_jpeg_tar(archive)
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) // 2])  # cut off mid-stream
    with pytest.raises(DataError, match="is not a readable tar archive"):
        load(DataConfig(name="cifar10-jpeg", root=str(tmp_path)))


def test_cifar10_jpeg_layout_checks(tmp_path: Path) -> None:
    archive = tmp_path / cifar_jpeg.ARCHIVE
    with tarfile.open(archive, "w:xz") as tar:
        for cls in cifar_jpeg.CLASSES[:9]:
            raw = jpeg_bytes(0)
            info = tarfile.TarInfo(f"train/{cls}/0000.jpg")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        info = tarfile.TarInfo("test/cat/0000.jpg")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"oops"))
    with pytest.raises(DataError, match="no train/<class>/\\*.jpg images for truck"):
        load(DataConfig(name="cifar10-jpeg", root=str(archive), split="train"))
    with pytest.raises(DataError, match="no test/<class>"):
        load(DataConfig(name="cifar10-jpeg", root=str(archive), split="test"))


@pytest.mark.slow  # decodes 10000 JPEGs
def test_real_cifar10_jpeg_test_split_decodes_to_the_published_hash() -> None:
    images, labels = cifar_jpeg.decode_archive(shared_data_file(cifar_jpeg.ARCHIVE), "test")
    assert images.shape == (10000, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10 and (np.diff(labels) >= 0).all()
    digest = hashlib.sha256(images.tobytes()).hexdigest()  # the raw NHWC bytes, as the data notes hash them
    assert digest.startswith("5a6aa818") and digest.endswith("0fc6259f")


# Names, splits, shapes.


def test_unknown_split_and_name_are_recipe_errors() -> None:
    with pytest.raises(RecipeError) as err:
        load(DataConfig(name="cifar10", split="xyz"))
    assert str(err.value) == "data.split: 'xyz' is not a split of cifar10; choose one of train, test"
    with pytest.raises(RecipeError, match="data.split: 'train' is not a split of folder|data.name"):
        load(DataConfig(name="nope"))
    with pytest.raises(RecipeError, match="choose one of unlabeled, train, test, train\\+unlabeled"):
        output_shape(DataConfig(name="stl10", split="all"))


# Synthetic sets.


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixtures_are_deterministic_with_their_geometry(name: str) -> None:
    cfg = DataConfig(name=name, num_samples=50_000, seed=4)
    a, b = load(cfg), load(cfg)
    assert torch.equal(a.tensor, b.tensor) and a.content_hash == b.content_hash
    assert a.tensor.shape == (50_000, 2) == (len(a), *output_shape(cfg)) and a.tensor.dtype == torch.float32
    assert a.mode_std == 0.05 and a.labels.dtype == torch.int64
    if name == "ring8":
        angles = torch.arange(8) * (2 * torch.pi / 8)
        centres = 2 * torch.stack([angles.cos(), angles.sin()], dim=1)
    else:
        centres = torch.tensor([[x, y] for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)], dtype=torch.float32)
    assert torch.allclose(a.modes, centres, atol=1e-6)
    counts = torch.bincount(a.labels, minlength=len(centres)).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.15  # equal weights
    for k in range(len(centres)):
        members = a.tensor[a.labels == k]
        assert torch.allclose(members.mean(0), centres[k], atol=0.01)
        assert torch.allclose(members.std(0), torch.full((2,), 0.05), rtol=0.1)
    assert load(DataConfig(name=name, num_samples=50_000, seed=5)).content_hash != a.content_hash
    test = load(DataConfig(name=name, num_samples=50_000, seed=4, split="test"))
    assert test.content_hash != a.content_hash and test.split == "test"


def test_shapes_are_deterministic_and_drawn() -> None:
    cfg = DataConfig(name="shapes", num_samples=200, seed=2)
    data = load(cfg)
    assert data.tensor.shape == (200, 3, 32, 32)
    assert torch.equal(load(cfg).tensor, data.tensor)
    assert load(DataConfig(name="shapes", num_samples=200, seed=3)).content_hash != data.content_hash
    assert load(DataConfig(name="shapes", num_samples=200, seed=2, split="test")).content_hash != data.content_hash
    colours = [len(torch.unique(image.reshape(3, -1), dim=1).T) for image in data.tensor]
    assert max(colours) <= 3 and sum(c >= 2 for c in colours) > 190  # a background plus one or two shapes
    small = load(DataConfig(name="shapes", num_samples=5, size=20, seed=1))
    assert small.tensor.shape == (5, 3, 20, 20)


# The model range and the content hash.


def test_to_model_range() -> None:
    images = torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8)
    scaled = to_model_range(images)
    assert scaled.dtype == torch.float32
    assert torch.allclose(scaled, torch.tensor([-1.0, 1 / 127.5 - 1, 127 / 127.5 - 1, 128 / 127.5 - 1, 1.0]), atol=1e-6)
    points = torch.randn(3, 2)
    assert to_model_range(points) is points


def test_content_hash_is_sha256_of_shape_and_bytes() -> None:
    tensor = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)
    by_hand = hashlib.sha256(b"(2, 3, 4)" + bytes(range(24))).hexdigest()[:16]
    assert content_hash(tensor) == by_hand
    assert content_hash(tensor.permute(0, 2, 1)) != by_hand  # a view is hashed in its own (C) order
    changed = tensor.clone()
    changed[1, 2, 3] += 1
    assert content_hash(changed) != by_hand
    assert content_hash(tensor.reshape(6, 4)) != by_hand  # the same bytes in another shape
