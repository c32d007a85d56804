"""Reference statistics: computed from the extractor's features, cached by what produced them, TTUR .npz I/O."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ganbench import data
from ganbench.errors import MetricError
from ganbench.metrics.inception import Extractor, build_extractor
from ganbench.metrics.refstats import (
    RefStats,
    load_npz,
    reference_split,
    reference_statistics,
    save_npz,
)
from ganbench.recipe import DataConfig
from ganbench.store import cache_dir
from tests.test_metrics_inception import save_tiny_trunk

SHAPES = DataConfig(name="shapes", num_samples=24, size=32)


class Counting:
    """Wraps an extractor and counts the images it is asked for."""

    def __init__(self, inner: Extractor) -> None:
        self.inner, self.images = inner, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.images += len(images)
        return self.inner.features(images)


@pytest.fixture
def extractor(tmp_path: Path) -> Counting:
    return Counting(build_extractor(weights=str(save_tiny_trunk(tmp_path / "trunk.pt"))))


def test_statistics_are_the_float64_mean_and_covariance_of_the_features(extractor: Counting) -> None:
    stats = reference_statistics(SHAPES, extractor, split="train", batch_size=7)  # type: ignore[arg-type]
    images = data.load_dataset(SHAPES).tensor
    features = extractor.inner.features(images)["pool"].double().numpy()
    assert stats.mu.dtype == np.float64 and stats.sigma.shape == (2048, 2048)
    np.testing.assert_allclose(stats.mu, features.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats.sigma, np.cov(features, rowvar=False), rtol=1e-4, atol=1e-7)
    assert (stats.n, stats.dataset, stats.split, stats.size) == (24, "shapes", "train", 32)
    assert stats.dataset_hash == data.load_dataset(SHAPES).content_hash
    assert stats.extractor == "torchscript-fid-trunk" and stats.weights_hash == extractor.weights_hash


def test_second_call_reads_the_cache_written_atomically(extractor: Counting) -> None:
    first = reference_statistics(SHAPES, extractor, split="train")  # type: ignore[arg-type]
    assert extractor.images == 24
    assert reference_statistics(SHAPES, extractor, split="train").key == first.key  # type: ignore[arg-type]
    assert extractor.images == 24  # statistics from the cache
    assert [p.suffix for p in (cache_dir() / "stats").iterdir()] == [".npz"]  # no features unless asked for
    again = reference_statistics(SHAPES, extractor, split="train", with_features=True)  # type: ignore[arg-type]
    assert extractor.images == 48  # KID/PR need the features: one more pass, then they are cached too
    reference_statistics(SHAPES, extractor, split="train", with_features=True)  # type: ignore[arg-type]
    assert extractor.images == 48
    np.testing.assert_array_equal(first.mu, again.mu)
    assert again.features is not None and again.features.dtype == np.float32 and again.features.shape == (24, 2048)
    entries = sorted(p.name for p in (cache_dir() / "stats").iterdir())
    assert entries == [f"shapes-train-32px-{first.key}.features.npy", f"shapes-train-32px-{first.key}.npz"]
    assert Path(first.path).parent == cache_dir() / "stats"


def test_the_key_changes_with_split_size_and_weights(tmp_path: Path, extractor: Counting) -> None:
    base = reference_statistics(SHAPES, extractor, split="train")  # type: ignore[arg-type]
    other_split = reference_statistics(SHAPES, extractor, split="test")  # type: ignore[arg-type]
    other_size = reference_statistics(SHAPES, extractor, split="train", size=16)  # type: ignore[arg-type]
    other_weights = build_extractor(weights=str(save_tiny_trunk(tmp_path / "other.pt", seed=1)))
    other_net = reference_statistics(SHAPES, other_weights, split="train")
    keys = {base.key, other_split.key, other_size.key, other_net.key}
    assert len(keys) == 4
    assert other_size.size == 16


def test_a_damaged_cache_entry_is_recomputed(extractor: Counting) -> None:
    first = reference_statistics(SHAPES, extractor, split="train")  # type: ignore[arg-type]
    Path(first.path).write_bytes(b"truncated")
    again = reference_statistics(SHAPES, extractor, split="train")  # type: ignore[arg-type]
    assert extractor.images == 48
    np.testing.assert_allclose(again.mu, first.mu)
    assert not [p for p in (cache_dir() / "stats").iterdir() if p.name.endswith(".tmp")]


def test_points_have_no_inception_statistics(extractor: Counting) -> None:
    with pytest.raises(MetricError, match="need an image dataset"):
        reference_statistics(DataConfig(name="ring8", num_samples=100), extractor)  # type: ignore[arg-type]


def test_paper_reference_splits() -> None:
    assert reference_split("cifar10") == "train" and reference_split("cifar10-jpeg") == "train"
    assert reference_split("stl10") == "unlabeled" and reference_split("folder") == "all"
    assert reference_split("cifar10", "test") == "test"
    assert reference_split("shapes") == "train"


def _stats(features: bool = True) -> RefStats:
    rng = np.random.default_rng(0)
    return RefStats(
        rng.normal(size=5),
        np.eye(5) * 2.0,
        10,
        "cifar10",
        "train",
        "abc",
        "key1",
        size=32,
        source="somewhere",
        extractor="torchscript-fid-trunk",
        weights_hash="w" * 64,
        resize="torch-bilinear-299",
        features=rng.normal(size=(10, 5)).astype(np.float32) if features else None,
    )


def test_npz_round_trip_keeps_metadata_but_not_features(tmp_path: Path) -> None:
    stats = _stats()
    save_npz(tmp_path / "s.npz", stats)
    again = load_npz(tmp_path / "s.npz")
    np.testing.assert_array_equal(again.mu, stats.mu)
    np.testing.assert_array_equal(again.sigma, stats.sigma)
    for name in ("n", "dataset", "split", "dataset_hash", "key", "size", "source", "extractor", "weights_hash"):
        assert getattr(again, name) == getattr(stats, name), name
    assert again.features is None and not again.imported
    with np.load(tmp_path / "s.npz") as npz:  # what any TTUR reader sees
        assert npz["mu"].dtype == np.float64 and npz["sigma"].shape == (5, 5)


def test_plain_ttur_file_imports_for_fid_only(tmp_path: Path) -> None:
    stats = _stats()
    np.savez(tmp_path / "ttur.npz", mu=stats.mu.astype(np.float32), sigma=stats.sigma)  # a published file
    plain = load_npz(tmp_path / "ttur.npz")
    assert plain.imported and plain.key.startswith("imported-") and plain.mu.dtype == np.float64
    assert plain.n == 0 and plain.features is None
    with pytest.raises(MetricError, match="supports FID only") as caught:
        plain.require_features("kid")
    assert "drop kid from --metrics" in str(caught.value) and "\n" not in str(caught.value)


def _truncated_npz(tmp_path: Path) -> bytes:
    np.savez(tmp_path / "whole.npz", mu=np.zeros(3), sigma=np.eye(3))
    raw = (tmp_path / "whole.npz").read_bytes()
    return raw[: len(raw) // 2]


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "pickled", "zip-of-text"])
def test_corrupted_npz_is_a_one_line_metric_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.npz"
    if kind == "garbage":
        path.write_bytes(b"garbage")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(_truncated_npz(tmp_path))
    elif kind == "pickled":
        np.savez(path, mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(1))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("mu.npy", "not an array")
            archive.writestr("sigma.npy", "not an array")
    with pytest.raises(MetricError, match="unreadable statistics file") as caught:
        load_npz(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"mu": np.zeros(3), "sigma": np.eye(4)}, "do not match"),
        ({"mu": np.zeros((3, 1)), "sigma": np.eye(3)}, "do not match"),
        ({"mu": np.zeros(3)}, "no mu/sigma"),
        ({"mu": np.array([np.nan, 0, 0]), "sigma": np.eye(3)}, "NaN"),
    ],
)
def test_wrong_statistics_are_refused(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(MetricError, match=message):
        load_npz(tmp_path / "m.npz")


def test_missing_npz(tmp_path: Path) -> None:
    with pytest.raises(MetricError, match="no such statistics file"):
        load_npz(tmp_path / "absent.npz")
