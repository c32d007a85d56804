"""Evaluate generators: one pass of features over generated images feeds every metric; rows carry their protocol."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ganbench.errors import MetricError
from ganbench.metrics import fingerprint
from ganbench.metrics.fid import feature_statistics, frechet_distance
from ganbench.metrics.inception import Extractor, build_extractor
from ganbench.metrics.inception_score import inception_score
from ganbench.metrics.kid import kernel_inception_distance
from ganbench.metrics.prdc import precision_recall
from ganbench.metrics.refstats import RefStats, load_npz, reference_statistics
from ganbench.metrics.twod import mode_quality
from ganbench.progress import NullProgress, Progress
from ganbench.store import RunDir

IS_SPLITS = 10
KID_SUBSET_SIZE = 1000
SAMPLE_SEED = 2**31 - 1  # generated samples are drawn from their own seed: scores do not depend on training RNG
IMAGE_METRICS = ("fid", "is", "kid", "pr")


def generate_batches(
    generator: nn.Module, n: int, z_dim: int, batch_size: int, device: torch.device, seed: int = SAMPLE_SEED
) -> Iterator[torch.Tensor]:
    """`n` samples of G (eval mode, no grad) in batches; images quantized to uint8 as a PNG would store them."""
    rng = torch.Generator(device="cpu").manual_seed(seed)
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                z = torch.randn(min(batch_size, n - start), z_dim, generator=rng).to(device)
                out = generator(z)
                if out.ndim == 4:
                    out = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                yield out
    finally:
        generator.train(was_training)


def image_metric_names(requested: list[str]) -> list[str]:
    """The recipe/CLI names (fid, is, kid, pr) that apply to images; 2-D measures are implied for point sets."""
    return [m for m in requested if m in IMAGE_METRICS]


class Evaluation:
    """Everything fixed across evaluations of one run: extractor, reference statistics, protocol."""

    def __init__(
        self,
        recipe: Any,
        device: torch.device,
        *,
        metrics: list[str] | None = None,
        num_samples: int | None = None,
        backend: str | None = None,
        weights: str | None = None,
        ref_stats: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        from ganbench import data

        self.recipe, self.device = recipe, device
        self.progress = progress or NullProgress()
        self.num_samples = num_samples or recipe.eval.num_samples
        self.kind = data.DATASETS.get(recipe.data.name).kind
        self.extractor: Extractor | None = None
        self.ref: RefStats | None = None
        if self.kind == "points":
            self.dataset = data.load_dataset(recipe.data)
            self.metrics = ["modes"]
            return
        self.metrics = image_metric_names(metrics if metrics is not None else recipe.eval.metrics)
        if not self.metrics:
            asked = metrics or recipe.eval.metrics
            raise MetricError(f"eval.metrics: {asked} has no image metric; use fid, is, kid, pr")
        if "is" in self.metrics and self.num_samples < IS_SPLITS:
            raise MetricError(f"is: {self.num_samples} samples cannot fill {IS_SPLITS} splits; raise --num-samples")
        if "kid" in self.metrics and self.num_samples < KID_SUBSET_SIZE:
            raise MetricError(
                f"kid: {self.num_samples} samples are fewer than the KID subset size "
                f"{KID_SUBSET_SIZE}; raise --num-samples or drop kid"
            )
        self.extractor = build_extractor(
            backend or recipe.eval.backend, weights or recipe.eval.inception_weights, device
        )
        self.extractor.check(self.metrics)
        if ref_stats:  # published statistics (TTUR .npz): FID only unless the file also holds features
            self.ref = load_npz(ref_stats)
        else:
            self.ref = reference_statistics(
                recipe.data,
                self.extractor,
                split=recipe.eval.ref_split,
                keep_features=bool({"kid", "pr"} & set(self.metrics)),
                batch_size=recipe.eval.batch_size,
                progress=self.progress,
            )

    def protocol(self, generator_kind: str) -> dict[str, Any]:
        if self.kind == "points":
            return fingerprint.protocol(
                extractor="2d-modes",
                weights_hash="",
                resize="none",
                quantize=False,
                n_fake=self.num_samples,
                n_real=0,
                ref_dataset=self.dataset.name,
                ref_split=self.dataset.split,
                ref_hash=self.dataset.content_hash,
                generator=generator_kind,
                versions=fingerprint.library_versions(),
            )
        assert self.extractor is not None and self.ref is not None
        return fingerprint.protocol(
            extractor=self.extractor.name,
            weights_hash=self.extractor.weights_hash,
            resize=self.extractor.resize,
            quantize=True,
            n_fake=self.num_samples,
            n_real=self.ref.n,
            ref_dataset=self.ref.dataset,
            ref_split=self.ref.split,
            ref_hash=self.ref.dataset_hash,
            generator=generator_kind,
            versions=fingerprint.library_versions(),
        )

    def scores(self, generator: nn.Module) -> dict[str, float]:
        """Every requested metric of `generator` from one pass over `num_samples` generated samples."""
        z_dim = self.recipe.model.z_dim
        batch = self.recipe.eval.batch_size
        if self.kind == "points":
            samples = torch.cat(list(generate_batches(generator, self.num_samples, z_dim, batch, self.device)))
            assert self.dataset.modes is not None
            return mode_quality(samples.cpu(), self.dataset.modes, self.dataset.mode_std)
        assert self.extractor is not None and self.ref is not None
        parts: dict[str, list[torch.Tensor]] = {}
        self.progress.start("generate + features", self.num_samples)
        for images in generate_batches(generator, self.num_samples, z_dim, batch, self.device):
            for name, value in self.extractor.features(images).items():
                parts.setdefault(name, []).append(value)
            self.progress.advance(len(images))
        self.progress.finish()
        pool = torch.cat(parts["pool"]).numpy()
        out: dict[str, float] = {}
        if "fid" in self.metrics:
            mu, sigma = feature_statistics(pool)
            out["fid"] = frechet_distance(mu, sigma, self.ref.mu, self.ref.sigma)
        if "is" in self.metrics:
            out["is_mean"], out["is_std"] = inception_score(torch.cat(parts["logits"]), IS_SPLITS)
        if {"kid", "pr"} & set(self.metrics):
            if self.ref.features is None:
                raise MetricError(
                    "kid/pr: the reference statistics hold no features (an imported .npz); "
                    "compute them with `ganbench stats`"
                )
            if "kid" in self.metrics:
                out["kid_mean"], out["kid_std"] = kernel_inception_distance(
                    pool, self.ref.features, subset_size=KID_SUBSET_SIZE
                )
            if "pr" in self.metrics:
                out["precision"], out["recall"] = precision_recall(
                    torch.from_numpy(self.ref.features), torch.from_numpy(pool.astype(np.float32))
                )
        return out

    def row_metrics(self) -> set[str]:
        """The metric names `rows` writes."""
        if self.kind == "points":
            return {"modes_covered", "hq_percent"}
        names = {
            "fid": ["fid"],
            "is": ["is_mean", "is_std"],
            "kid": ["kid_mean", "kid_std"],
            "pr": ["precision", "recall"],
        }
        return {name for metric in self.metrics for name in names[metric]}

    def rows(self, generator: nn.Module, *, step: int, checkpoint: str, generator_kind: str) -> list[dict[str, Any]]:
        started = time.perf_counter()
        scores = self.scores(generator)
        wall = time.perf_counter() - started
        common = {
            "step": step,
            "checkpoint": checkpoint,
            "generator": generator_kind,
            **self.protocol(generator_kind),
            "backend": self.extractor.kind if self.extractor else "none",
            "wall_time_s": wall,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return [{**common, "metric": metric, "value": float(value)} for metric, value in scores.items()]


class TrainingEvaluator:
    """In-training evaluation: built once per run (errors such as missing weights surface before training)."""

    def __init__(self, recipe: Any, run: RunDir, device: torch.device) -> None:
        self.evaluation = Evaluation(recipe, device)

    def __call__(self, step: int, generators: dict[str, nn.Module]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for kind, generator in generators.items():
            rows += self.evaluation.rows(generator, step=step, checkpoint="in-training", generator_kind=kind)
        return rows


def _checkpoint_names(run: RunDir, which: str) -> list[str]:
    if which == "all":
        names = [str(step) for step, _ in run.step_checkpoints()]
        return names or ["last"]
    if which in ("best", "last") or which.isdigit():
        if not run.checkpoint_path(which).exists():
            raise MetricError(
                f"--checkpoint {which}: {run.checkpoint_path(which)} does not exist; see "
                f"{run.checkpoints_dir} for the saved ones"
            )
        return [which]
    raise MetricError(f"--checkpoint {which}: expected best, last, all or a step number")


def evaluate_run(
    run: RunDir,
    *,
    checkpoints: str = "best",
    ema: bool = True,
    num_samples: int | None = None,
    metrics: list[str] | None = None,
    backend: str | None = None,
    inception_weights: str | None = None,
    ref_stats: str | None = None,
    force: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Score the chosen checkpoints of a run, append the new rows to metrics.parquet and return them."""
    from ganbench.train.checkpoint import load_generator
    from ganbench.train.loop import resolve_device

    run.require()
    recipe = run.read_recipe()
    target = resolve_device(device)
    evaluation = Evaluation(
        recipe,
        target,
        metrics=metrics,
        num_samples=num_samples,
        backend=backend,
        weights=inception_weights,
        ref_stats=ref_stats,
        progress=progress,
    )
    kind = "ema" if ema else "raw"
    existing = run.read_metrics()
    new_rows: list[dict[str, Any]] = []
    for name in _checkpoint_names(run, checkpoints):
        generator, step = load_generator(run, int(name) if name.isdigit() else name, ema=ema, map_location=target)
        label = f"step-{step}" if name.isdigit() else name
        fp = evaluation.protocol(kind)["fingerprint"]
        if not force and _already_scored(existing, step, label, kind, fp, evaluation.row_metrics()):
            continue
        rows = evaluation.rows(generator, step=step, checkpoint=label, generator_kind=kind)
        run.append_metrics(rows)
        new_rows += rows
    return pd.DataFrame(new_rows)


def _already_scored(existing: pd.DataFrame, step: int, checkpoint: str, kind: str, fp: str, metrics: set[str]) -> bool:
    """Whether every metric row this evaluation would write is present under the same fingerprint."""
    if existing.empty or "fingerprint" not in existing:
        return False
    same = existing[
        (existing["step"] == step)
        & (existing["checkpoint"] == checkpoint)
        & (existing["generator"] == kind)
        & (existing["fingerprint"] == fp)
    ]
    return metrics <= set(same["metric"])
