"""Reference statistics of a dataset split: computed once, cached under a hash of what produced them, TTUR .npz I/O.

A cache entry is `<cache>/stats/<dataset>-<split>-<H>px-<key>.npz` holding `mu`, `sigma` (float64, the TTUR layout)
and metadata. KID and precision/recall need the reference features themselves: they are kept beside it as
`….features.npy` (float32, as the network computes them; 400 MB for 50k images) when a metric asks for them. The key
hashes the dataset's content hash, the split, the image size, the number of images (a subset of the split, see
`reference_subset`), and the extractor's name, weights hash and resize: any change gives another entry.
A plain TTUR .npz (`mu`, `sigma` only, e.g. published statistics) can be imported; it supports FID only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganbench import __version__
from ganbench.config import DataConfig
from ganbench.errors import MetricError
from ganbench.files import atomic_write, cache_dir
from ganbench.metrics.fid import feature_statistics
from ganbench.metrics.inception import Extractor, file_sha256
from ganbench.progress import NullProgress, Progress

CACHE_VERSION = 1  # bump when what a cache entry means changes
SUBSET_SEED = 0  # the permutation that picks a reference subset; part of what a subset's key means
# Which split the papers compare against; STL-10's 48 px is the data loader's own default size.
PAPER_SPLITS = {"cifar10": "train", "cifar100": "train", "cifar10-jpeg": "train", "stl10": "unlabeled", "folder": "all"}
_META_KEYS = ("dataset", "split", "size", "dataset_hash", "source", "key", "extractor", "weights_hash", "resize")


@dataclass
class RefStats:
    """Reference statistics and what produced them."""

    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64
    n: int  # images they were computed from (0 when an imported file does not say)
    dataset: str
    split: str
    dataset_hash: str  # content hash of the images (for an imported file: what its metadata says, or "")
    key: str  # the cache key; for an imported file "imported-<sha256 of the file>"
    size: int = 0  # image side in pixels
    source: str = ""  # where the images came from, in words
    extractor: str = ""
    weights_hash: str = ""
    resize: str = ""
    features: np.ndarray | None = None  # (n, D) float32 for KID and precision/recall, when kept
    path: str = ""  # the file they were read from, if any

    @property
    def imported(self) -> bool:
        return self.key.startswith("imported-")

    def require_features(self, metric: str) -> np.ndarray:
        """The reference features a metric needs beyond mu/sigma, or a one-line refusal."""
        if self.features is None:
            raise MetricError(
                f"{metric}: the reference statistics {self.path or self.key} hold only mu/sigma, which supports FID "
                f"only; drop {metric} from --metrics or let ganbench compute the reference (without --ref-stats)"
            )
        return self.features


def reference_split(dataset: str, requested: str = "") -> str:
    """The requested split, else the split the papers compare against."""
    if requested:
        return requested
    if dataset in PAPER_SPLITS:
        return PAPER_SPLITS[dataset]
    from ganbench import data

    spec = data.DATASETS.get(dataset)
    if spec.reference_split or spec.paper_split:  # a registry entry that declares it (CelebA-HQ)
        return spec.reference_split or spec.paper_split
    return "train" if "train" in spec.splits else spec.splits[0]


def reference_subset(total: int, num: int) -> torch.Tensor:
    """Which images of a split of `total` the statistics of `num` images use (0: all): the first `num` of a fixed
    permutation (numpy's RandomState(SUBSET_SEED)), in the split's order. A random choice rather than the first `num`
    images, because splits stored class by class (the JPEG copy of CIFAR-10, image folders) would otherwise give one
    class only."""
    if num < 0 or num > total:
        raise MetricError(
            f"eval.ref_num {num}: the reference split has {total} images; ask for at most {total} (0 = all of them)"
        )
    if num in (0, total):
        return torch.arange(total)
    # numpy's legacy RandomState: its stream is frozen across numpy releases, so a subset means the same images
    # wherever and whenever it is drawn (the cache key and the fingerprint name it by its size and seed only)
    order = np.random.RandomState(SUBSET_SEED).permutation(total)[:num]
    return torch.from_numpy(np.sort(order))


def stats_key(dataset_hash: str, split: str, size: int, extractor: Extractor, num: int = 0) -> str:
    """A hash of everything that produced a set of reference statistics (`num`: a subset's size, 0 for the split)."""
    tree: dict[str, Any] = {
        "version": CACHE_VERSION,
        "dataset_hash": dataset_hash,
        "split": split,
        "size": size,
        "extractor": extractor.name,
        "weights_hash": extractor.weights_hash,
        "resize": extractor.resize,
        "precision": extractor.precision,
    }
    if num:  # absent for a whole split, so the keys of existing cache entries stay what they were
        tree["subset"] = {"num": num, "seed": SUBSET_SEED}
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:20]


def extract_features(
    images: torch.Tensor,
    extractor: Extractor,
    batch_size: int = 250,
    progress: Progress | None = None,
    task: str = "Inception features",
) -> dict[str, torch.Tensor]:
    """Features of uint8 images (N, 3, H, W), batch by batch, concatenated (float32, CPU)."""
    progress = progress or NullProgress()
    progress.start(task, len(images))
    parts: dict[str, list[torch.Tensor]] = {}
    try:
        for batch in images.split(batch_size):
            for name, value in extractor.features(batch).items():
                parts.setdefault(name, []).append(value)
            progress.advance(len(batch))
    finally:
        progress.finish()
    return {name: torch.cat(values) for name, values in parts.items()}


def cache_path(dataset: str, split: str, size: int, key: str, num: int = 0) -> Path:
    subset = f"-{num}img" if num else ""
    return cache_dir() / "stats" / f"{dataset}-{split}{subset}-{size}px-{key}.npz"


def _features_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".npz") + ".features.npy")


def reference_statistics(
    data_cfg: DataConfig,
    extractor: Extractor,
    *,
    split: str = "",
    size: int | None = None,
    num: int = 0,
    with_features: bool = False,
    batch_size: int = 250,
    progress: Progress | None = None,
) -> RefStats:
    """Statistics of `data_cfg`'s dataset at `split` ("" = the papers' split) and `size` (None = `data_cfg.size`),
    from the cache when an entry for the same protocol exists; `num` > 0 takes that many images of the split
    (`reference_subset`); `with_features` also keeps the features (KID, PR)."""
    from ganbench import data

    split = reference_split(data_cfg.name, split)
    cfg = dataclasses.replace(data_cfg, split=split, size=data_cfg.size if size is None else size)
    dataset = data.load_dataset(cfg)
    if dataset.kind != "image":
        raise MetricError(f"{cfg.name}: Inception statistics need an image dataset, {cfg.name} holds {dataset.kind}")
    side = int(dataset.tensor.shape[-1])
    chosen = reference_subset(len(dataset.tensor), num)
    num = 0 if len(chosen) == len(dataset.tensor) else len(chosen)
    key = stats_key(dataset.content_hash, split, side, extractor, num)
    path = cache_path(cfg.name, split, side, key, num)
    meta = {
        "dataset": cfg.name,
        "split": split,
        "size": side,
        "dataset_hash": dataset.content_hash,
        "source": dataset.source + (f"; {num} images of it, a seeded random choice" if num else ""),
        "key": key,
        "extractor": extractor.name,
        "weights_hash": extractor.weights_hash,
        "resize": extractor.resize,
    }
    cached = _read_cache(path, key, with_features)
    if cached is not None:
        return cached
    images = dataset.tensor if not num else dataset.tensor[chosen]
    task = f"reference features {cfg.name} {split}" + (f" ({num} images)" if num else "")
    pool = extract_features(images, extractor, batch_size, progress, task)
    features = pool["pool"].numpy()
    mu, sigma = feature_statistics(features)
    stats = RefStats(mu, sigma, len(features), features=features, path=str(path), **_typed(meta))
    if with_features:  # written first: a statistics file next to it means both are complete
        _save_features(_features_path(path), features)
    save_npz(path, stats)
    return stats


def _read_cache(path: Path, key: str, with_features: bool) -> RefStats | None:
    """A cache entry with the expected key (and features when asked for), or None to recompute a missing/damaged one."""
    if not path.is_file():
        return None
    try:
        stats = load_npz(path)
    except MetricError:
        return None
    if stats.key != key:
        return None
    features_path = _features_path(path)
    if features_path.is_file():
        try:
            features = np.load(features_path, allow_pickle=False)
        except (OSError, ValueError):
            features = None
        if features is not None and features.shape == (stats.n, len(stats.mu)):
            stats.features = features
    if with_features and stats.features is None:
        return None
    return stats


def _typed(meta: dict[str, Any]) -> dict[str, Any]:
    return {**meta, "size": int(meta.get("size") or 0)}


def _save_features(path: Path, features: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        np.save(buffer, features.astype(np.float32, copy=False))
        tmp.write_bytes(buffer.getvalue())

    atomic_write(path, write)


def save_npz(path: str | Path, stats: RefStats) -> None:
    """Write `mu`, `sigma` (the TTUR layout, float64) plus `n` and ganbench's metadata, atomically."""
    arrays: dict[str, np.ndarray] = {
        "mu": np.asarray(stats.mu, np.float64),
        "sigma": np.asarray(stats.sigma, np.float64),
        "n": np.array(stats.n, dtype=np.int64),
        "ganbench_version": np.array(__version__),
    }
    for name in _META_KEYS:
        arrays[name] = np.array(str(getattr(stats, name)))

    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub reads the first keyword as allow_pickle
        tmp.write_bytes(buffer.getvalue())

    atomic_write(Path(path), write)


export_npz = save_npz


def load_npz(path: str | Path) -> RefStats:
    """A TTUR-style .npz (`mu`, `sigma`; ganbench's metadata when present); a damaged or foreign file is a
    MetricError. A file without ganbench's key is marked imported (FID only, keyed by the file's own hash)."""
    path = Path(path)
    if not path.is_file():
        raise MetricError(f"{path}: no such statistics file; give the path of a .npz with mu and sigma")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if not {"mu", "sigma"} <= names:
                raise MetricError(
                    f"{path}: no mu/sigma arrays (it has {', '.join(sorted(names)) or 'nothing'}); give a TTUR-style "
                    "statistics .npz"
                )
            mu, sigma = np.asarray(npz["mu"], np.float64), np.asarray(npz["sigma"], np.float64)
            n = int(npz["n"]) if "n" in names else 0
            meta = {name: str(npz[name]) for name in _META_KEYS if name in names}
    except MetricError:
        raise
    except Exception as err:  # zipfile.BadZipFile, ValueError (pickled objects), OSError, EOFError: a damaged file
        raise MetricError(
            f"{path}: unreadable statistics file ({type(err).__name__}); re-export it or recompute it with "
            "`ganbench stats`"
        ) from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise MetricError(
            f"{path}: mu {mu.shape} and sigma {sigma.shape} do not match (sigma must be D x D for D-dim mu); "
            "the file is damaged or not FID statistics"
        )
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise MetricError(f"{path}: mu/sigma contain NaN or infinity; recompute the statistics")
    if "key" not in meta:  # a foreign file: whatever produced it, these exact bytes are the reference
        meta = {"dataset": path.stem, "split": "", "dataset_hash": "", "key": f"imported-{file_sha256(path)[:20]}"}
    meta.setdefault("dataset", path.stem)
    meta.setdefault("split", "")
    meta.setdefault("dataset_hash", "")
    return RefStats(mu, sigma, n, path=str(path), **_typed(meta))


import_npz = load_npz
