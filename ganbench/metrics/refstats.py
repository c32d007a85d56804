"""Reference statistics of a dataset split: computed once, cached by a hash of what produced them, TTUR .npz I/O."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganbench.errors import MetricError
from ganbench.metrics.fid import feature_statistics
from ganbench.metrics.inception import Extractor
from ganbench.progress import NullProgress, Progress
from ganbench.store import atomic_write, cache_dir

# Which split the papers' protocol compares against (shared/DESIGN.md §5).
PAPER_SPLITS = {"cifar10": "train", "cifar100": "train", "cifar10-jpeg": "train", "stl10": "unlabeled", "folder": "all"}


@dataclass
class RefStats:
    mu: np.ndarray
    sigma: np.ndarray
    n: int
    dataset: str
    split: str
    dataset_hash: str
    key: str  # the cache key: a hash of dataset content, split, resize, extractor and weights
    features: np.ndarray | None = None  # (n, 2048) float32, for KID and precision/recall


def reference_split(dataset: str, requested: str = "") -> str:
    return requested or PAPER_SPLITS.get(dataset, "train")


def stats_key(dataset_hash: str, split: str, size: int, extractor: Extractor) -> str:
    tree = {
        "dataset_hash": dataset_hash,
        "split": split,
        "size": size,
        "extractor": extractor.name,
        "weights_hash": extractor.weights_hash,
        "resize": extractor.resize,
    }
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:20]


def extract_features(
    images: torch.Tensor, extractor: Extractor, batch_size: int = 250, progress: Progress | None = None
) -> dict[str, np.ndarray]:
    """Features of a uint8 image tensor, batch by batch."""
    progress = progress or NullProgress()
    progress.start("features", len(images))
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in images.split(batch_size):
        for name, value in extractor.features(batch).items():
            parts.setdefault(name, []).append(value)
        progress.advance(len(batch))
    progress.finish()
    return {name: torch.cat(values).numpy() for name, values in parts.items()}


def reference_statistics(
    data_cfg: object,
    extractor: Extractor,
    *,
    split: str = "",
    keep_features: bool = True,
    batch_size: int = 250,
    progress: Progress | None = None,
) -> RefStats:
    """Statistics of `data_cfg`'s dataset at `split` (default: the paper's), from the cache when present."""
    from dataclasses import replace

    from ganbench import data

    split = reference_split(data_cfg.name, split)  # type: ignore[attr-defined]
    cfg = replace(data_cfg, split=split)  # type: ignore[type-var]
    dataset = data.load_dataset(cfg)
    if dataset.kind != "image":
        raise MetricError(f"{cfg.name}: Inception statistics need an image dataset")
    size = dataset.tensor.shape[-1]
    key = stats_key(dataset.content_hash, split, size, extractor)
    path = cache_dir() / "stats" / f"{cfg.name}-{split}-{size}px-{key}.npz"
    if path.exists():
        try:
            cached = load_npz(path)
            if not keep_features or cached.features is not None:
                return RefStats(
                    cached.mu, cached.sigma, cached.n, cfg.name, split, dataset.content_hash, key, cached.features
                )
        except MetricError:
            pass  # a damaged cache entry is recomputed
    features = extract_features(dataset.tensor, extractor, batch_size, progress)["pool"]
    mu, sigma = feature_statistics(features)
    stats = RefStats(mu, sigma, len(features), cfg.name, split, dataset.content_hash, key, features.astype(np.float32))
    save_npz(path, stats)
    return stats


def save_npz(path: Path, stats: RefStats, with_features: bool = True) -> None:
    """The TTUR layout (`mu`, `sigma`) plus ganbench's metadata and, optionally, the features."""
    arrays = {
        "mu": stats.mu,
        "sigma": stats.sigma,
        "n": np.array(stats.n),
        "meta": np.array(
            json.dumps(
                {"dataset": stats.dataset, "split": stats.split, "dataset_hash": stats.dataset_hash, "key": stats.key}
            )
        ),
    }
    if with_features and stats.features is not None:
        arrays["features"] = stats.features

    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        tmp.write_bytes(buffer.getvalue())

    atomic_write(Path(path), write)


def load_npz(path: str | Path) -> RefStats:
    """A TTUR-style .npz (`mu`, `sigma`; ganbench's metadata when present); damaged files raise MetricError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "mu" not in npz or "sigma" not in npz:
                raise MetricError(f"{path}: no mu/sigma arrays; give a TTUR-style statistics .npz")
            mu, sigma = np.asarray(npz["mu"], np.float64), np.asarray(npz["sigma"], np.float64)
            meta = json.loads(str(npz["meta"])) if "meta" in npz else {}
            n = int(npz["n"]) if "n" in npz else 0
            features = np.asarray(npz["features"]) if "features" in npz else None
    except FileNotFoundError:
        raise MetricError(f"{path}: no such statistics file") from None
    except MetricError:
        raise
    except Exception as err:  # zipfile.BadZipFile, ValueError, OSError: a damaged file
        raise MetricError(
            f"{path}: unreadable statistics file ({type(err).__name__}); recompute it with `ganbench stats`"
        ) from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise MetricError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not match; the file is damaged")
    return RefStats(
        mu,
        sigma,
        n,
        meta.get("dataset", path.stem),
        meta.get("split", "?"),
        meta.get("dataset_hash", "imported"),
        meta.get("key", "imported"),
        features,
    )
