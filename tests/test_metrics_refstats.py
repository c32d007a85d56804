"""Reference statistics: computed from the extractor's features, cached by what produced them, TTUR .npz I/O."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbench import data
from ganbench.errors import MetricError
from ganbench.files import cache_dir
from ganbench.metrics import inception
from ganbench.metrics.inception import Extractor, build_extractor
from ganbench.metrics.refstats import (
    RefStats,
    load_npz,
    reference_statistics,
    reference_subset,
    save_npz,
)
from ganbench.recipe import DataConfig
from tests.test_metrics_inception import save_tiny_trunk

SHAPES = DataConfig(name="shapes", num_samples=24, size=32)
# The stand-in features lie in [0, 1] and reach the statistics as float32, as the network's do: float32 rounding moves
# a mean by at most ~6e-8 and a covariance entry by ~1e-9 (measured up to 4e-10), on any CPU; a wrong image or subset
# moves them by 1e-3 or more. Absolute floors, since a mean or covariance entry near zero has no relative scale.
FLOAT32_ABS = 2e-7
FLOAT32_COV = 1e-8


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


class ChannelMeans(Extractor):
    """Features anyone can recompute: each image's mean red, green and blue value (in [0, 1]) and its mean square."""

    name = "channel-means"
    backend = "test"
    resize = "none"

    def __init__(self) -> None:
        super().__init__("channel-means", "c" * 64, frozenset({"fid", "kid", "pr"}), torch.device("cpu"))
        self.images = 0

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.images += len(images)
        x = images.double() / 255.0
        return {"pool": torch.cat([x.mean(dim=(2, 3)), (x**2).mean(dim=(1, 2, 3))[:, None]], dim=1)}


def channel_means_by_numpy(pixels: list[np.ndarray]) -> np.ndarray:
    """The same features from (H, W, 3) uint8 arrays, in numpy."""
    x = np.stack(pixels).astype(np.float64) / 255.0
    return np.concatenate([x.mean(axis=(1, 2)), (x**2).mean(axis=(1, 2, 3))[:, None]], axis=1)


@pytest.fixture
def channel_means(monkeypatch: pytest.MonkeyPatch) -> ChannelMeans:
    monkeypatch.setattr(inception, "POOL_DIM", 4)
    return ChannelMeans()


def write_folder(root: Path, pixels: list[np.ndarray]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(root / f"{i:02d}.png")


def test_one_changed_pixel_gives_another_key_and_other_statistics(tmp_path: Path, channel_means: ChannelMeans) -> None:
    pixels = [np.random.default_rng(i).integers(0, 255, (6, 6, 3), dtype=np.uint8) for i in range(5)]
    write_folder(tmp_path / "a", pixels)
    first = reference_statistics(DataConfig(name="folder", root=str(tmp_path / "a"), size=6), channel_means)
    features = channel_means_by_numpy(pixels)
    # features are float32, as the network's are: agreement to float32 round-off
    np.testing.assert_allclose(first.mu, features.mean(axis=0), rtol=1e-6, atol=FLOAT32_ABS)
    np.testing.assert_allclose(first.sigma, np.cov(features, rowvar=False), rtol=1e-5, atol=FLOAT32_COV)
    assert channel_means.images == 5

    # The same images in another folder: the key is the content's, so the cache answers.
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    copy = reference_statistics(DataConfig(name="folder", root=str(tmp_path / "copy"), size=6), channel_means)
    assert copy.key == first.key and copy.path == first.path and channel_means.images == 5
    np.testing.assert_array_equal(copy.mu, first.mu)

    # One pixel of one image one level brighter: a new key, a new entry, the new images' statistics.
    pixels[3][2, 4, 1] += 1
    write_folder(tmp_path / "copy", pixels)
    changed = reference_statistics(DataConfig(name="folder", root=str(tmp_path / "copy"), size=6), channel_means)
    assert changed.key != first.key and changed.dataset_hash != first.dataset_hash
    assert channel_means.images == 10
    np.testing.assert_allclose(changed.mu, channel_means_by_numpy(pixels).mean(axis=0), rtol=1e-6, atol=FLOAT32_ABS)
    # green: one level (1/255) more in one of 36 pixels of one of 5 images
    assert changed.mu[1] - first.mu[1] == pytest.approx(1 / 255 / 36 / 5, abs=1e-7)
    np.testing.assert_allclose(changed.mu[[0, 2]], first.mu[[0, 2]], rtol=1e-6, atol=FLOAT32_ABS)
    assert len(list((cache_dir() / "stats").glob("*.npz"))) == 2


def test_the_split_is_in_the_key_even_for_identical_images(tmp_path: Path, channel_means: ChannelMeans) -> None:
    """STL-10's train and test files holding the same bytes: one content hash, two splits, two cache entries."""
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    for split in ("train", "test"):
        write_stl10_split(tmp_path / "stl10_binary", split, images)
    cfg = DataConfig(name="stl10", root=str(tmp_path), split="train", size=8)
    train = reference_statistics(cfg, channel_means, split="train")
    test = reference_statistics(cfg, channel_means, split="test")
    assert train.dataset_hash == test.dataset_hash
    assert (train.split, test.split) == ("train", "test")
    assert train.key != test.key and train.path != test.path
    assert channel_means.images == 6  # computed once per split
    np.testing.assert_array_equal(train.mu, test.mu)  # the same images give the same numbers
    assert reference_statistics(cfg, channel_means, split="test").key == test.key and channel_means.images == 6


def test_a_subset_is_a_fixed_spread_choice_of_distinct_images() -> None:
    chosen = reference_subset(5000, 500)
    assert len(chosen) == 500 and len(set(chosen.tolist())) == 500
    assert chosen.tolist() == sorted(chosen.tolist()) and int(chosen.min()) >= 0 and int(chosen.max()) < 5000
    # the same images for every run, on any machine: numpy's legacy stream is frozen, so these are the images of
    # reference_subset(10, 3) for good (a change here means cached statistics under the same key would differ)
    assert torch.equal(chosen, reference_subset(5000, 500))
    assert reference_subset(10, 3).tolist() == [2, 4, 8]
    # a split stored class by class (10 classes of 500): every class is represented, none dominates, where the
    # first 500 images would be one class
    counts = np.bincount(chosen.numpy() // 500, minlength=10)
    assert counts.min() >= 25 and counts.max() <= 75
    assert torch.equal(reference_subset(7, 0), torch.arange(7)) and torch.equal(reference_subset(7, 7), torch.arange(7))
    with pytest.raises(MetricError, match="eval.ref_num 8: the reference split has 7 images"):
        reference_subset(7, 8)


def test_subset_statistics_are_those_of_the_chosen_images_under_their_own_key(
    tmp_path: Path, channel_means: ChannelMeans
) -> None:
    pixels = [np.random.default_rng(i).integers(0, 255, (6, 6, 3), dtype=np.uint8) for i in range(9)]
    write_folder(tmp_path / "a", pixels)
    cfg = DataConfig(name="folder", root=str(tmp_path / "a"), size=6)
    whole = reference_statistics(cfg, channel_means)
    part = reference_statistics(cfg, channel_means, num=4)
    assert channel_means.images == 9 + 4
    picked = reference_subset(9, 4).tolist()
    features = channel_means_by_numpy([pixels[i] for i in picked])
    np.testing.assert_allclose(part.mu, features.mean(axis=0), rtol=1e-6, atol=FLOAT32_ABS)
    np.testing.assert_allclose(part.sigma, np.cov(features, rowvar=False), rtol=1e-5, atol=FLOAT32_COV)
    assert part.n == 4 and whole.n == 9
    assert part.key != whole.key and part.path != whole.path and "-4img-" in Path(part.path).name
    assert part.dataset_hash == whole.dataset_hash and "4 images of it" in part.source
    assert reference_statistics(cfg, channel_means, num=4).key == part.key and channel_means.images == 13  # cached
    assert reference_statistics(cfg, channel_means, num=9).key == whole.key  # all images: the whole split's entry
    assert reference_statistics(cfg, channel_means, num=5).key not in (part.key, whole.key)


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


def write_stl10_split(folder: Path, split: str, images: np.ndarray) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())  # column-major, as STL-10
    if split != "unlabeled":
        (folder / f"{split}_y.bin").write_bytes(bytes([1] * len(images)))


def test_the_papers_reference_split_is_used_whatever_split_training_reads(
    tmp_path: Path, channel_means: ChannelMeans
) -> None:
    """STL-10 trains on `train` here, yet the reference is the unlabeled split (the papers' choice) unless asked."""
    folder = tmp_path / "stl10_binary"
    rng = np.random.default_rng(1)
    train_images = rng.integers(0, 100, (3, 3, 96, 96), dtype=np.uint8)
    unlabeled_images = rng.integers(150, 256, (4, 3, 96, 96), dtype=np.uint8)
    write_stl10_split(folder, "train", train_images)
    write_stl10_split(folder, "unlabeled", unlabeled_images)
    cfg = DataConfig(name="stl10", root=str(tmp_path), split="train", size=96)
    default = reference_statistics(cfg, channel_means)
    assert (default.split, default.n) == ("unlabeled", 4)
    unlabeled = channel_means_by_numpy(list(unlabeled_images.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(default.mu, unlabeled.mean(axis=0), rtol=1e-6, atol=FLOAT32_ABS)
    asked = reference_statistics(cfg, channel_means, split="train")
    assert (asked.split, asked.n) == ("train", 3)
    train = channel_means_by_numpy(list(train_images.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(asked.mu, train.mean(axis=0), rtol=1e-6, atol=FLOAT32_ABS)
    # A set the papers do not use: its train split.
    shapes = reference_statistics(DataConfig(name="shapes", split="test", num_samples=4, size=8), channel_means)
    assert shapes.split == "train"
    assert shapes.dataset_hash == data.load_dataset(DataConfig(name="shapes", num_samples=4, size=8)).content_hash


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


def test_ref_num_at_its_default_leaves_the_recipe_hash_alone() -> None:
    """Run directories made before eval.ref_num existed resume: at 0 the key is in no hash, otherwise it is."""
    from ganbench.config import omit_later_defaults
    from ganbench.recipe import loads

    plain, subset = loads("[eval]\nevery = 0\n"), loads("[eval]\nevery = 0\n", ["eval.ref_num=5000"])
    tree = plain.to_dict()
    omit_later_defaults(tree)
    assert "ref_num" not in tree["eval"] and "every" in tree["eval"]
    assert plain.hash() != subset.hash()


def test_stats_command_takes_a_subset_and_keeps_its_features(tmp_path: Path) -> None:
    """`ganbench stats shapes --num 10 --features --export F`: the statistics of the 10 chosen images, their
    features cached beside them, and the export saying n = 10."""
    from typer.testing import CliRunner

    from ganbench.cli import app

    trunk = save_tiny_trunk(tmp_path / "trunk.pt")
    command = ["stats", "shapes", "--num", "10", "--features", "--inception-weights", str(trunk), "--device", "cpu"]
    result = CliRunner().invoke(app, [*command, "--export", str(tmp_path / "ref.npz")])
    assert result.exit_code == 0, result.output
    exported = load_npz(tmp_path / "ref.npz")
    images = data.load_dataset(DataConfig(name="shapes")).tensor
    chosen = images[reference_subset(len(images), 10)]
    features = build_extractor(weights=str(trunk)).features(chosen)["pool"].double().numpy()
    assert exported.n == 10
    np.testing.assert_allclose(exported.mu, features.mean(axis=0), rtol=1e-5, atol=FLOAT32_ABS)
    cached = sorted(p.name for p in (cache_dir() / "stats").iterdir())
    assert len(cached) == 2 and cached[0].endswith(".features.npy") and "-10img-" in cached[0]
