"""Our own Real-data row: the reference images scored as if they were a generator's samples, as the papers print one.

The first n_fake images of the reference split (all of them when it holds fewer) go through the evaluation's
feature extractor: their IS, and their FID against the split's own statistics (0 when they are the whole split; the
floor a perfect generator would reach when they are a part of it). The rows have the evaluator's columns, with
generator "real" and checkpoint "reference", and are kept in RESULTS/reference/<dataset>-<split>.parquet, where the
report finds them; `ganbench report --score-real` computes the missing ones.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ganbench.errors import GanbenchError, RunDirError
from ganbench.metrics import fingerprint
from ganbench.metrics.compute import ROW_NAMES, MetricSettings, compute_metrics
from ganbench.metrics.inception import Extractor
from ganbench.metrics.refstats import RefStats, extract_features
from ganbench.progress import Progress
from ganbench.store import read_parquet, write_parquet

FOLDER = "reference"
REAL = "real"
CHECKPOINT = "reference"
FAMILIES = ("fid", "is")


def protocol(extractor: Extractor, ref: RefStats, n: int, family: str, settings: MetricSettings) -> dict[str, Any]:
    """The protocol fields and fingerprint of the reference images' rows of `family`."""
    return fingerprint.protocol(
        extractor=extractor.name,
        weights_hash=extractor.weights_hash,
        resize=extractor.resize,
        quantize=True,  # the images are uint8 already, as generated images are once quantized
        precision=extractor.precision,
        n_fake=n,
        n_real=ref.n,
        ref_dataset=ref.dataset,
        ref_split=ref.split,
        ref_hash=ref.dataset_hash,
        ref_key=ref.key,
        generator=REAL,
        bn_mode="none",
        sample_seed=0,  # no latent codes: the first n images
        params=fingerprint.params_text(settings.params(family)),
    )


def reference_rows(
    images: Any,
    extractor: Extractor,
    ref: RefStats,
    n_fake: int,
    settings: MetricSettings | None = None,
    batch_size: int = 250,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """IS and FID rows of the first `n_fake` of `images` (uint8, N x 3 x H x W), the reference split's images."""
    settings = settings or MetricSettings()
    n = min(int(n_fake), len(images))
    started = time.perf_counter()
    features = extract_features(images[:n], extractor, batch_size, progress, f"real images {ref.dataset} {ref.split}")
    values = compute_metrics(features, ref, list(FAMILIES), settings)
    weights = Path(extractor.weights)
    record = {
        "step": 0,
        "checkpoint": CHECKPOINT,
        "backend": extractor.backend,
        "weights": weights.name if weights.is_file() else extractor.weights,  # no home paths in tables
        "ref_source": ref.source,
        "device": str(extractor.device),
        "wall_time_s": time.perf_counter() - started,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    rows = []
    for family in FAMILIES:
        fields = protocol(extractor, ref, n, family, settings)
        for name in ROW_NAMES[family]:
            rows.append({**record, "metric": name, "value": float(values[name]), **fields})
    return rows


def path_for(results: Path, ref: RefStats) -> Path:
    return Path(results) / FOLDER / f"{ref.dataset}-{ref.split}.parquet"


def save_rows(results: Path, ref: RefStats, rows: list[dict[str, Any]]) -> Path:
    """Add `rows` to the results folder's reference rows, replacing earlier rows of the same fingerprint."""
    path = path_for(results, ref)
    existing = read_parquet(path)
    new = pd.DataFrame(rows)
    if not existing.empty:
        stale = existing["fingerprint"].isin(set(new["fingerprint"]))
        new = pd.concat([existing[~stale], new], ignore_index=True)
    write_parquet(path, new)
    return path


def read_rows(results: Path) -> tuple[pd.DataFrame, list[str]]:
    """Every reference row below RESULTS/reference/, and a warning for each file that could not be read."""
    folder = Path(results) / FOLDER
    frames, warnings = [], []
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        try:
            frames.append(read_parquet(path))
        except RunDirError as err:
            warnings.append(f"{path}: reference rows not read: {err}")
    frames = [frame for frame in frames if not frame.empty]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), warnings


def score_missing(
    results: Path,
    datasets: dict[str, tuple[Any, int]],
    device: str = "auto",
    progress: Progress | None = None,
) -> list[str]:
    """Score the reference images of each dataset in `datasets` (name -> (a run's Recipe, the papers' n_fake)) that
    RESULTS/reference/ lacks: the recipe's data, reference split, backend and Inception weights; returns what was
    written, one line each. Needs the data and the Inception weights, as training's evaluation does."""
    from ganbench import data
    from ganbench.devices import resolve_device
    from ganbench.metrics.inception import build_extractor
    from ganbench.metrics.refstats import reference_statistics

    done: list[str] = []
    existing, _ = read_rows(results)
    settings = MetricSettings()
    for name, (recipe, n_fake) in datasets.items():
        where = resolve_device(device, key="--device")
        extractor = build_extractor(recipe.eval.backend, recipe.eval.inception_weights or None, where)
        ref = reference_statistics(
            recipe.data, extractor, split=recipe.eval.ref_split, batch_size=recipe.eval.batch_size, progress=progress
        )
        images = data.load_dataset(dataclasses.replace(recipe.data, split=ref.split)).tensor
        n = min(int(n_fake), len(images))
        wanted = {protocol(extractor, ref, n, family, settings)["fingerprint"] for family in FAMILIES}
        if not existing.empty and wanted <= set(existing.get("fingerprint", [])):
            done.append(f"{name}: the reference images' IS and FID are already in {path_for(results, ref)}")
            continue
        if len(images) == 0:
            raise GanbenchError(f"{name}: the reference split {ref.split} holds no images")
        rows = reference_rows(images, extractor, ref, n, settings, recipe.eval.batch_size, progress)
        done.append(f"{name}: the reference images' IS and FID written to {save_rows(results, ref, rows)}")
    return done


def paper_datasets(results: Path) -> dict[str, tuple[Any, int]]:
    """The papers' datasets with a Real data row the results folder has finished runs of (on the dataset itself, not
    a variant such as cifar10-jpeg), each with one such run's recipe and the papers' n_fake: what `score_missing`
    scores."""
    from ganbench.report import papers
    from ganbench.report.collect import read_runs
    from ganbench.report.tables import LAYOUTS
    from ganbench.store import RunDir

    protocols = papers.load().protocols
    shown = {dataset for layout in LAYOUTS if "real" in layout.blocks for dataset in layout.datasets}
    found: dict[str, tuple[Any, int]] = {}
    runs, _ = read_runs(Path(results))
    for run in runs:
        name = str(run.config.get("data.name", ""))
        paper = protocols.get(name)
        if run.status != "finished" or paper is None or paper.ref_dataset != name or name in found:
            continue
        if name not in shown:  # a table without a Real data row (CelebA-HQ): nothing to score
            continue
        recipe = RunDir(run.root).read_recipe()
        found[name] = (recipe, int(paper.n_fake or recipe.eval.num_samples))
    return found
