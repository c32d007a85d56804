"""Datasets: the real loaders on small files written in the official on-disk formats, synthetic sets, errors."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbench.data import load_dataset, output_shape, to_model_range
from ganbench.data.cifar import JPEG_ARCHIVE, JPEG_CLASSES, decode_jpeg_archive
from ganbench.errors import DataError, RecipeError
from ganbench.recipe import DataConfig

SHARED_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / JPEG_ARCHIVE


def _pickle(path: Path, tree: dict) -> None:
    path.write_bytes(pickle.dumps(tree))


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


def test_cifar10_pickle_batches_through_torchvision(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [_rows(4, i) for i in range(5)]
    for i, rows in enumerate(batches, start=1):
        _pickle(folder / f"data_batch_{i}", {"data": rows, "labels": [i % 10] * 4})
    _pickle(folder / "test_batch", {"data": _rows(3, 9), "labels": [0, 1, 2]})
    _pickle(folder / "batches.meta", {"label_names": list(JPEG_CLASSES)})
    train = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), split="train"))
    assert train.tensor.shape == (20, 3, 32, 32) and train.tensor.dtype == torch.uint8
    expected = torch.from_numpy(batches[0][0].reshape(3, 32, 32))
    assert torch.equal(train.tensor[0], expected)
    assert train.labels.tolist()[:5] == [1, 1, 1, 1, 2]
    test = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), split="test", size=16))
    assert test.tensor.shape == (3, 3, 16, 16)


def test_cifar100_through_torchvision(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _pickle(folder / "train", {"data": _rows(5, 1), "fine_labels": [0, 1, 2, 3, 99]})
    _pickle(folder / "test", {"data": _rows(2, 2), "fine_labels": [5, 6]})
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    data = load_dataset(DataConfig(name="cifar100", root=str(tmp_path)))
    assert data.tensor.shape == (5, 3, 32, 32) and data.labels.tolist()[-1] == 99


def test_stl10_binaries_column_major_resized_to_48(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)  # (N, C, H, W)
    (folder / "unlabeled_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())  # the format is column-major
    full = load_dataset(DataConfig(name="stl10", root=str(tmp_path), split="unlabeled", size=96))
    assert torch.equal(full.tensor, torch.from_numpy(images))
    small = load_dataset(DataConfig(name="stl10", root=str(tmp_path), split="unlabeled"))
    assert small.tensor.shape == (3, 3, 48, 48)
    assert output_shape(DataConfig(name="stl10", split="unlabeled")) == (3, 48, 48)


def test_missing_torchvision_data_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"looked for .*cifar-10-batches-py.*data.download=true"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path / "none")))
    with pytest.raises(DataError, match="stl10_binary"):
        load_dataset(DataConfig(name="stl10", root=str(tmp_path), split="unlabeled"))


def test_image_folder_crops_and_resizes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (30, 30), (0, 255, 0)).save(tmp_path / "sub" / "b.jpg")
    Image.new("L", (64, 80), 128).save(tmp_path / "c.png")
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_dataset(DataConfig(name="folder", root=str(tmp_path), split="all", size=16))
    assert data.tensor.shape == (3, 3, 16, 16)
    assert data.tensor[0, 0].float().mean() > 250 and data.tensor[0, 1].float().mean() < 5  # a.png, red
    with pytest.raises(RecipeError, match="data.size"):
        output_shape(DataConfig(name="folder", root=str(tmp_path), split="all"))
    with pytest.raises(DataError, match="no images"):
        (tmp_path / "empty").mkdir()
        load_dataset(DataConfig(name="folder", root=str(tmp_path / "empty"), split="all", size=8))


def _jpeg_tar(path: Path) -> dict[str, list[bytes]]:
    written: dict[str, list[bytes]] = {"train": [], "test": []}
    with tarfile.open(path, "w:xz") as archive:
        for split, count in (("train", 2), ("test", 1)):
            for cls in JPEG_CLASSES[:2]:
                for i in range(count):
                    buffer = io.BytesIO()
                    Image.new("RGB", (32, 32), (10 * i, 100, 200)).save(buffer, format="JPEG")
                    raw = buffer.getvalue()
                    info = tarfile.TarInfo(f"CIFAR-10-images/{split}/{cls}/{i:04d}.jpg")
                    info.size = len(raw)
                    archive.addfile(info, io.BytesIO(raw))
                    written[split].append(raw)
    return written


def test_cifar10_jpeg_reads_straight_from_the_tar(tmp_path: Path) -> None:
    written = _jpeg_tar(tmp_path / JPEG_ARCHIVE)
    data = load_dataset(DataConfig(name="cifar10-jpeg", root=str(tmp_path), split="train"))
    assert data.tensor.shape == (4, 3, 32, 32)
    assert data.labels.tolist() == [0, 0, 1, 1]
    first = np.asarray(Image.open(io.BytesIO(written["train"][0])).convert("RGB"))
    assert torch.equal(data.tensor[0], torch.from_numpy(first).permute(2, 0, 1))
    again = load_dataset(DataConfig(name="cifar10-jpeg", root=str(tmp_path / JPEG_ARCHIVE), split="train"))
    assert again.content_hash == data.content_hash  # from the cache the second time, the same bytes


def test_cifar10_jpeg_missing_and_damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANBENCH_CIFAR10_JPEG", raising=False)
    with pytest.raises(DataError, match="no cifar10-jpeg-q75.tar.xz found"):
        load_dataset(DataConfig(name="cifar10-jpeg", root=str(tmp_path)))
    (tmp_path / JPEG_ARCHIVE).write_bytes(b"broken")
    with pytest.raises(DataError, match="unreadable archive"):
        load_dataset(DataConfig(name="cifar10-jpeg", root=str(tmp_path)))


@pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason="the CIFAR-10 JPEG copy is not beside the repository")
def test_real_cifar10_jpeg_test_split_decodes_to_the_published_hash() -> None:
    images, labels = decode_jpeg_archive(SHARED_ARCHIVE, "test")
    assert images.shape == (10000, 32, 32, 3) and np.bincount(labels).tolist() == [1000] * 10
    digest = hashlib.sha256(images.tobytes()).hexdigest()
    assert digest.startswith("5a6aa818") and digest.endswith("0fc6259f")


def test_unknown_split_is_named() -> None:
    with pytest.raises(RecipeError, match="data.split: 'unlabeled' is not a split of cifar10; choose one of"):
        load_dataset(DataConfig(name="cifar10", split="unlabeled"))


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixtures_are_deterministic_with_their_geometry(name: str) -> None:
    cfg = DataConfig(name=name, num_samples=20_000, seed=4)
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert torch.equal(a.tensor, b.tensor) and a.content_hash == b.content_hash
    assert a.tensor.shape == (20_000, 2) and a.mode_std == 0.05
    nearest = torch.cdist(a.tensor, a.modes).min(dim=1).values
    assert nearest.max() < 6 * 0.05
    offsets = a.tensor - a.modes[torch.cdist(a.tensor, a.modes).argmin(dim=1)]
    assert offsets.std().item() == pytest.approx(0.05, rel=0.05)
    other = load_dataset(DataConfig(name=name, num_samples=20_000, seed=4, split="test"))
    assert other.content_hash != a.content_hash
    if name == "ring8":
        assert torch.allclose(a.modes.norm(dim=1), torch.full((8,), 2.0))
    else:
        assert len(a.modes) == 25


def test_shapes_images_and_model_range() -> None:
    data = load_dataset(DataConfig(name="shapes", num_samples=50, size=24))
    assert data.tensor.shape == (50, 3, 24, 24) and data.tensor.dtype == torch.uint8
    scaled = to_model_range(data.tensor)
    assert scaled.min() >= -1 and scaled.max() <= 1 and scaled.dtype == torch.float32
    assert to_model_range(torch.tensor([[0, 255]], dtype=torch.uint8)).tolist() == [[-1.0, 1.0]]
    points = torch.randn(3, 2)
    assert to_model_range(points) is points
