"""Feature extractors, reference statistics and fingerprints, on a tiny TorchScript stand-in (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ganbench.errors import MetricError
from ganbench.metrics import fingerprint
from ganbench.metrics.inception import build_extractor
from ganbench.metrics.refstats import RefStats, load_npz, save_npz

REAL_WEIGHTS = os.environ.get("GANBENCH_INCEPTION_WEIGHTS", "")


class TinyTrunk(nn.Module):
    """The FID trunk's contract, (N, 3, 299, 299) in (x−128)/128 -> (N, 2048), at a fraction of the cost."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=13, stride=13)
        self.linear = nn.Linear(8, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture
def trunk_path(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "trunk.pt"
    torch.jit.script(TinyTrunk()).save(str(path))
    return path


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_torchscript_trunk_features_and_supported_metrics(trunk_path: Path) -> None:
    extractor = build_extractor(weights=str(trunk_path))
    assert extractor.name == "torchscript-trunk"
    assert extractor.supports == {"fid", "kid", "pr"}
    features = extractor.features(_images(4))
    assert features["pool"].shape == (4, 2048) and features["pool"].dtype == torch.float64
    assert "logits" not in features


def test_inception_score_is_refused_with_a_trunk(trunk_path: Path) -> None:
    extractor = build_extractor(weights=str(trunk_path))
    with pytest.raises(MetricError, match="no 1008-class head") as caught:
        extractor.check(["fid", "is"])
    assert "\n" not in str(caught.value)


def test_features_do_not_depend_on_the_batch_size(trunk_path: Path) -> None:
    extractor = build_extractor(weights=str(trunk_path))
    images = _images(21)
    by_3 = torch.cat([extractor.features(b)["pool"] for b in images.split(3)])
    by_7 = torch.cat([extractor.features(b)["pool"] for b in images.split(7)])
    torch.testing.assert_close(by_3, by_7, rtol=1e-5, atol=1e-5)


def test_missing_weights_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(MetricError, match="no such Inception weights file"):
        build_extractor(weights=str(tmp_path / "absent.pt"))


def test_a_non_weights_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not weights at all")
    with pytest.raises(MetricError, match="neither TorchScript nor a state dict"):
        build_extractor(weights=str(path))


def test_unknown_metric_and_backend() -> None:
    with pytest.raises(MetricError, match="unknown"):
        build_extractor(backend="tensorflow")


def test_npz_round_trip_and_plain_ttur_import(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stats = RefStats(
        rng.normal(size=5),
        np.eye(5),
        10,
        "cifar10",
        "train",
        "abc",
        "key1",
        rng.normal(size=(10, 5)).astype(np.float32),
    )
    save_npz(tmp_path / "s.npz", stats)
    again = load_npz(tmp_path / "s.npz")
    np.testing.assert_array_equal(again.mu, stats.mu)
    np.testing.assert_array_equal(again.sigma, stats.sigma)
    np.testing.assert_array_equal(again.features, stats.features)
    assert (again.n, again.dataset, again.split, again.dataset_hash) == (10, "cifar10", "train", "abc")
    np.savez(tmp_path / "ttur.npz", mu=stats.mu, sigma=stats.sigma)  # a published statistics file
    plain = load_npz(tmp_path / "ttur.npz")
    assert plain.features is None and plain.mu.shape == (5,)


@pytest.mark.parametrize("content", [b"garbage", b""])
def test_corrupted_npz_is_a_metric_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(MetricError, match="unreadable statistics file"):
        load_npz(path)


def test_npz_with_mismatched_shapes(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(MetricError, match="do not match"):
        load_npz(tmp_path / "m.npz")


BASE = dict(
    extractor="torchscript-trunk",
    weights_hash="w",
    resize="torch-bilinear-299",
    quantize=True,
    n_fake=50000,
    n_real=50000,
    ref_dataset="cifar10",
    ref_split="train",
    ref_hash="h",
    generator="ema",
    versions="{}",
)


@pytest.mark.parametrize("field", fingerprint.PROTOCOL_FIELDS)
def test_fingerprint_changes_with_every_protocol_field(field: str) -> None:
    changed = dict(BASE)
    value = changed[field]
    changed[field] = (not value) if isinstance(value, bool) else (value + 1 if isinstance(value, int) else f"{value}x")
    assert fingerprint.protocol(**changed)["fingerprint"] != fingerprint.protocol(**BASE)["fingerprint"]


def test_fingerprint_is_stable() -> None:
    assert fingerprint.protocol(**BASE)["fingerprint"] == fingerprint.protocol(**dict(BASE))["fingerprint"]


@pytest.mark.skipif(not REAL_WEIGHTS, reason="set GANBENCH_INCEPTION_WEIGHTS to the FID trunk to run")
def test_real_trunk_gives_2048_features() -> None:
    extractor = build_extractor(weights=REAL_WEIGHTS)
    assert extractor.features(_images(2))["pool"].shape == (2, 2048)
