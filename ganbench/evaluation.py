"""Evaluate generators: one pass of Inception features over generated images feeds every requested metric, and
every row carries its protocol fingerprint. Used in training (`TrainingEvaluator`) and by `ganbench eval`
(`evaluate_run`), which skips what metrics.parquet already holds under the same fingerprint.

Rows (store.METRIC_COLUMNS): {"step", "checkpoint", "generator", "metric", "value", "fingerprint", <protocol
fields>, <record fields>} with metric one of fid, is_mean, is_std, kid_mean, kid_std, precision, recall — or, for
2-D point sets, modes_covered and hq_percent. Generators come from checkpoints through ganbench.checkpoints, never
through the trainer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ganbench import data
from ganbench.checkpoints import load_generator
from ganbench.devices import resolve_device
from ganbench.errors import MetricError
from ganbench.metrics import fingerprint, inception
from ganbench.metrics.compute import (
    ROW_NAMES,
    MetricSettings,
    check_sample_counts,
    compute_metrics,
    quantize_images,
    requested_metrics,
)
from ganbench.metrics.inception import Extractor, build_extractor
from ganbench.metrics.refstats import RefStats, load_npz, reference_statistics
from ganbench.metrics.twod import mode_quality
from ganbench.nets import BN_MODES, sampling_mode
from ganbench.progress import NullProgress, Progress
from ganbench.selection import selected_generator
from ganbench.store import EXTERNAL, IN_TRAINING, METRIC_COLUMNS, RunDir

SAMPLE_SEED = 2**31 - 1  # latent codes have their own seed: scores do not depend on the training RNG state


def latent_codes(
    n: int, z_dim: int, batch_size: int, seed: int, bn_mode: str, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The latent codes `generate_images` feeds G, and its class labels (None for an unconditional G), on the host:
    `n` codes, then with BatchNorm in batch mode the codes that only fill the last batch, then the labels."""
    codes = torch.Generator().manual_seed(seed)
    z_all = torch.randn(n, z_dim, generator=codes)
    if bn_mode == "batch" and n % batch_size:  # codes that only fill the last batch, drawn after the n kept ones
        z_all = torch.cat([z_all, torch.randn(batch_size - n % batch_size, z_dim, generator=codes)])
    y_all = torch.randint(num_classes, (len(z_all),), generator=codes) if num_classes else None
    return z_all, y_all


def generate_images(
    generator: nn.Module,
    n: int,
    z_dim: int,
    batch_size: int,
    device: str | torch.device,
    seed: int = SAMPLE_SEED,
    quantize: bool = True,
    bn_mode: str = "running",
    num_classes: int = 0,
    batches: slice | None = None,
) -> Iterator[torch.Tensor]:
    """`n` samples of G (no grad), z ~ N(0, I) from `seed`, in batches, on `device`; only the batches `batches`
    picks of them when given (a process's share: the same codes, labels and batches as the whole).

    A class-conditional G (`num_classes` > 0) samples G(z, y) with labels y uniform over the classes, as the official
    code labels its IS/FID samples; the labels are drawn from the same seeded generator after all the codes, so the
    codes are those of an unconditional G of the same seed.

    BatchNorm as `bn_mode` says (nets.sampling_mode). With "running" (eval mode) a sample does not depend on its
    batch. With "batch" (train mode, the official code's way) it does: every batch is full, `batch_size` codes (the
    official code samples in batches of the G batch size and drops what is past `n`), and G's buffers are restored
    afterwards. Images come out as uint8 (`quantize`) or as float in [0, 1]; 2-D points as they are. All latent codes
    are drawn up front on the host (so the `n` codes depend neither on `batch_size`, `bn_mode` nor the device) and
    moved over at once. On CUDA the next batch is generated on a side stream while the caller works on the current
    one (Inception features): generation and extraction overlap.
    """
    device = torch.device(device)
    z_all, y_all = latent_codes(n, z_dim, batch_size, seed, bn_mode, num_classes)
    z_all = z_all.to(device)
    y_all = y_all.to(device) if y_all is not None else None

    def make(z: torch.Tensor, y: torch.Tensor | None, keep: int) -> torch.Tensor:
        out = (generator(z) if y is None else generator(z, y))[:keep]
        if out.ndim == 4:
            out = quantize_images(out) if quantize else (out.clamp(-1, 1) + 1) / 2
        return out

    chunks = z_all.split(batch_size)
    labels = y_all.split(batch_size) if y_all is not None else (None,) * len(chunks)
    keeps = [max(0, min(batch_size, n - i * batch_size)) for i in range(len(chunks))]
    if batches is not None:
        chunks, labels, keeps = chunks[batches], labels[batches], keeps[batches]
    if not chunks:
        return
    with sampling_mode(generator, bn_mode), torch.no_grad():
        if device.type != "cuda":
            for z, y, keep in zip(chunks, labels, keeps, strict=True):
                yield make(z, y, keep)
            return
        side, main = torch.cuda.Stream(device), torch.cuda.current_stream(device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            ahead = make(chunks[0], labels[0], keeps[0])
        for i in range(len(chunks)):
            main.wait_stream(side)
            current = ahead
            current.record_stream(main)  # the allocator must not reuse it while `main` still reads it
            if i + 1 < len(chunks):
                with torch.cuda.stream(side):
                    ahead = make(chunks[i + 1], labels[i + 1], keeps[i + 1])
            yield current


@dataclass(frozen=True)
class Sampling:
    """How an evaluation draws a generator's samples: how many, in batches of how many, BatchNorm's mode, the seed
    and the uint8 rounding. `ganbench eval` and `ganbench sample` both draw through it, so an exported sample set
    holds exactly the images an evaluation scores."""

    num_samples: int
    batch_size: int
    bn_mode: str
    z_dim: int
    num_classes: int = 0
    seed: int = SAMPLE_SEED
    quantize: bool = True

    @classmethod
    def of(
        cls,
        recipe: Any,
        *,
        num_samples: int | None = None,
        bn_mode: str | None = None,
        seed: int = SAMPLE_SEED,
        quantize: bool = True,
    ) -> Sampling:
        """The recipe's sampling ([eval] and the model), with `num_samples` and `bn_mode` overriding its own."""
        bn_mode = bn_mode or recipe.eval.bn_mode
        if bn_mode not in BN_MODES:
            raise MetricError(f"--bn-mode {bn_mode}: choose one of {', '.join(BN_MODES)}")
        num_samples = num_samples if num_samples is not None else recipe.eval.num_samples
        if num_samples < 1:
            raise MetricError(f"--num-samples {num_samples}: must be at least 1 (the papers use 50000)")
        # "batch": samples are normalised per batch, so the batch is part of the protocol: the G batch size, as
        # the official code samples
        batch_size = recipe.train.batch_size_g if bn_mode == "batch" else recipe.eval.batch_size
        return cls(num_samples, batch_size, bn_mode, recipe.model.z_dim, recipe.model.num_classes, seed, quantize)

    @property
    def batches(self) -> int:
        """How many batches of `batch_size` the `num_samples` samples are generated in."""
        return -(-self.num_samples // self.batch_size)

    def images(
        self, generator: nn.Module, device: str | torch.device, batches: slice | None = None
    ) -> Iterator[torch.Tensor]:
        """`generator`'s samples (the `batches` of them when given), batch by batch: see `generate_images`."""
        return generate_images(
            generator,
            self.num_samples,
            self.z_dim,
            self.batch_size,
            device,
            self.seed,
            self.quantize,
            self.bn_mode,
            self.num_classes,
            batches,
        )

    def labels(self) -> torch.Tensor | None:
        """The class label of each sample (None for an unconditional G), in sample order."""
        _, labels = latent_codes(
            self.num_samples, self.z_dim, self.batch_size, self.seed, self.bn_mode, self.num_classes
        )
        return None if labels is None else labels[: self.num_samples]


class Evaluation:
    """Everything fixed across the evaluations of one run: metrics, sample count, extractor, reference, protocol.

    Built once (missing weights, unsupported metrics and too few samples surface here, before any work), then
    `rows(generator, ...)` scores one generator. Without `reference` it only extracts `features` (a process of a
    distributed run that scores nothing itself).
    """

    def __init__(
        self,
        recipe: Any,
        device: str | torch.device = "cpu",
        *,
        metrics: list[str] | None = None,
        num_samples: int | None = None,
        backend: str | None = None,
        inception_weights: str | None = None,
        ref_stats: str | None = None,
        extractor: Extractor | None = None,
        ref: RefStats | None = None,
        settings: MetricSettings | None = None,
        quantize: bool = True,
        seed: int = SAMPLE_SEED,
        progress: Progress | None = None,
        bn_mode: str | None = None,
        reference: bool = True,
    ) -> None:
        self.recipe = recipe
        self.sampling = Sampling.of(recipe, num_samples=num_samples, bn_mode=bn_mode, seed=seed, quantize=quantize)
        self.bn_mode = self.sampling.bn_mode
        self.sample_batch = self.sampling.batch_size
        self.device = resolve_device(device, key="--device", error=MetricError)
        self.settings = settings or MetricSettings()
        self.quantize = quantize
        self.seed = seed
        self.progress = progress or NullProgress()
        self.num_samples = self.sampling.num_samples
        self.extractor: Extractor | None = None
        self.ref: RefStats | None = None
        self.points = None
        if data.DATASETS.get(recipe.data.name).kind == "points":
            # 2-D sets are scored by mode coverage and sample quality against the mixture's known modes.
            self.points = data.load_dataset(recipe.data)
            self.families = ["modes"]
            if self.points.modes is None:
                raise MetricError(f"{recipe.data.name}: a 2-D set without known modes cannot be scored")
            if metrics:  # asked for explicitly: say why they do not apply rather than ignore them
                raise MetricError(
                    f"--metrics {','.join(metrics)}: {recipe.data.name} is a 2-D point set, scored by modes_covered "
                    "and hq_percent; leave out --metrics"
                )
            return
        self.families = requested_metrics(metrics if metrics is not None else list(recipe.eval.metrics))
        check_sample_counts(self.families, self.num_samples, self.settings)
        self.extractor = extractor or build_extractor(
            backend or recipe.eval.backend, inception_weights or recipe.eval.inception_weights or None, self.device
        )
        self.extractor.check(self.families)
        if not quantize and not self.extractor.takes_float:
            raise MetricError(
                f"quantize: {self.extractor.name} takes uint8 images only; keep quantization on or use "
                "--backend pytorch-fid or the TorchScript trunk"
            )
        needs_features = bool({"kid", "pr"} & set(self.families))
        if ref is not None or ref_stats:
            self.ref = ref if ref is not None else load_npz(str(ref_stats))
            if len(self.ref.mu) != inception.POOL_DIM:
                raise MetricError(
                    f"{self.ref.path or self.ref.key}: statistics of {len(self.ref.mu)}-d features, "
                    f"not the {inception.POOL_DIM}-d Inception pool "
                    "features; give statistics computed from Inception pool3"
                )
            ours = (self.extractor.name, self.extractor.weights_hash, self.extractor.resize)
            theirs = (self.ref.extractor, self.ref.weights_hash, self.ref.resize)
            if self.ref.extractor and theirs != ours:  # ganbench's own files say what made them; imports do not
                raise MetricError(
                    f"{self.ref.path or self.ref.key}: reference statistics from {theirs[0]} (weights "
                    f"{theirs[1][:12]}, {theirs[2]}) but the samples are scored with {ours[0]} "
                    f"(weights {ours[1][:12]}, {ours[2]}); compute the reference with the same --backend and "
                    "--inception-weights"
                )
            for family in ("kid", "pr"):
                if family in self.families:
                    self.ref.require_features(family)
        elif not reference:  # features only, for another process to score: no statistics to load or compute
            return
        else:
            self.ref = reference_statistics(
                recipe.data,
                self.extractor,
                split=recipe.eval.ref_split,
                num=recipe.eval.ref_num,
                with_features=needs_features,
                batch_size=recipe.eval.batch_size,
                progress=self.progress,
            )
        n_real = len(self.ref.features) if self.ref.features is not None else None
        check_sample_counts(self.families, self.num_samples, self.settings, n_real if needs_features else None)

    # the protocol

    def protocol(self, generator_kind: str, family: str) -> dict[str, Any]:
        """The protocol fields and fingerprint of `family`'s rows for `generator_kind` (ema/raw)."""
        common = {
            "n_fake": self.num_samples,
            "generator": generator_kind,
            "bn_mode": f"batch:{self.sample_batch}" if self.bn_mode == "batch" else "running",
            "sample_seed": self.seed,
            "params": fingerprint.params_text(self.settings.params(family)),
        }
        if generator_kind == EXTERNAL:  # images made elsewhere: no BatchNorm mode or latent seed of ours to name
            common.update(bn_mode="", sample_seed="")
        if self.points is not None:
            modes, std = self.points.modes, float(self.points.mode_std)
            assert modes is not None  # checked when the evaluation was built
            digest = hashlib.sha256(np.ascontiguousarray(modes.numpy(), np.float64).tobytes() + repr(std).encode())
            return fingerprint.protocol(
                extractor="2d-modes",
                weights_hash="",
                resize="none",
                quantize=False,
                precision="fp64",
                n_real=0,
                ref_dataset=self.points.name,
                ref_split="",
                ref_hash=digest.hexdigest()[:16],
                ref_key=f"modes-{len(modes)}-std-{std:g}",
                **common,
            )
        assert self.extractor is not None and self.ref is not None
        return fingerprint.protocol(
            extractor=self.extractor.name,
            weights_hash=self.extractor.weights_hash,
            resize=self.extractor.resize,
            quantize=self.quantize,
            precision=self.extractor.precision,
            n_real=self.ref.n,
            ref_dataset=self.ref.dataset,
            ref_split=self.ref.split,
            ref_hash=self.ref.dataset_hash,
            ref_key=self.ref.key,
            **common,
        )

    def fingerprint(self, generator_kind: str, family: str) -> str:
        return self.protocol(generator_kind, family)["fingerprint"]

    def record(self) -> dict[str, Any]:
        """The unhashed facts recorded with every row."""
        if self.extractor is None:
            return {"backend": "none", "weights": "", "ref_source": self.points.source if self.points else ""}
        weights = self.extractor.weights
        return {
            "backend": self.extractor.backend,
            "weights": Path(weights).name if Path(weights).is_file() else weights,  # no home paths in tables
            "ref_source": self.ref.source if self.ref else "",
        }

    # scoring

    def scores(self, generator: nn.Module, families: list[str], label: str = "") -> dict[str, float]:
        """Every metric of `families` for `generator`, from one pass over `num_samples` generated samples."""
        return self.metrics(self.features(generator, label), families)

    def sample_batches(self) -> int:
        """How many batches of `sample_batch` the `num_samples` samples are generated in."""
        return self.sampling.batches

    def features(self, generator: nn.Module, label: str = "", batches: slice | None = None) -> dict[str, torch.Tensor]:
        """The Inception features by name of `generator`'s samples (the `batches` of them when given), in sample
        order; for a 2-D point set the points themselves, as "points"."""
        samples = self.sampling.images(generator, self.device, batches)
        if self.points is not None:
            return {"points": torch.cat([s.float().cpu() for s in samples] or [torch.empty(0, 2)])}
        return self.image_features(samples, label)

    def image_features(self, samples: Iterable[torch.Tensor], label: str = "") -> dict[str, torch.Tensor]:
        """The Inception features by name of images (N, 3, H, W), batch by batch, in order."""
        assert self.extractor is not None
        parts: dict[str, list[torch.Tensor]] = {}
        self.progress.start(f"{label}samples + Inception features", self.num_samples)
        try:
            for images in samples:
                if images.ndim != 4:
                    raise MetricError(
                        f"{self.recipe.model.arch}: the generator gives {tuple(images.shape)}, not images"
                    )
                if self.ref is not None and self.ref.size and images.shape[-1] != self.ref.size:
                    raise MetricError(
                        f"the generator makes {images.shape[-1]} px images but the reference statistics are at "
                        f"{self.ref.size} px; set data.size to the generator's size"
                    )
                # features stay on the device: no batch waits for the GPU, and FID's statistics are reduced there
                for name, value in self.extractor.features(images, on_device=True).items():
                    parts.setdefault(name, []).append(value)
                self.progress.advance(len(images))
        finally:
            self.progress.finish()
        return {name: torch.cat(values) for name, values in parts.items()}

    def metrics(self, features: dict[str, torch.Tensor], families: list[str]) -> dict[str, float]:
        """Every metric of `families` from all `num_samples` samples' `features` (as `features` returns them)."""
        if self.points is not None:
            assert self.points.modes is not None
            scores = mode_quality(features["points"].cpu(), self.points.modes, self.points.mode_std)
            return {k: float(v) for k, v in scores.items()}
        assert self.ref is not None
        return compute_metrics(features, self.ref, families, self.settings, self.device)

    def rows(
        self,
        generator: nn.Module,
        *,
        step: int,
        checkpoint: str,
        generator_kind: str,
        families: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        families = families or self.families
        started = time.perf_counter()
        values = self.scores(generator, families, f"{generator_kind} G step {step}: ")
        return self._rows(values, families, started, step=step, checkpoint=checkpoint, generator_kind=generator_kind)

    def external_rows(self, images: Iterable[torch.Tensor], families: list[str] | None = None) -> list[dict[str, Any]]:
        """Rows for `num_samples` images made elsewhere (uint8, (N, 3, H, W), batch by batch), scored as this
        evaluation scores a generator's samples: their generator and checkpoint are EXTERNAL, and they have no
        BatchNorm mode or sample seed; every other protocol field is the evaluation's own."""
        families = families or self.families
        if self.points is not None:
            raise MetricError(f"{self.recipe.data.name}: a 2-D point set; only image samples can be scored from files")
        started = time.perf_counter()
        counted = 0

        def counting() -> Iterator[torch.Tensor]:
            nonlocal counted
            for batch in images:
                counted += len(batch)
                yield batch

        values = self.metrics(self.image_features(counting(), "images: "), families)
        if counted != self.num_samples:  # n_fake must be the number scored
            raise ValueError(f"{counted} images scored, {self.num_samples} announced")
        return self._rows(values, families, started, step=0, checkpoint=EXTERNAL, generator_kind=EXTERNAL)

    def _rows(
        self,
        values: dict[str, float],
        families: list[str],
        started: float,
        *,
        step: int,
        checkpoint: str,
        generator_kind: str,
    ) -> list[dict[str, Any]]:
        wall = time.perf_counter() - started
        record = {
            "step": int(step),
            "checkpoint": checkpoint,
            "generator": generator_kind,
            **self.record(),
            "device": str(self.device),
            "wall_time_s": wall,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        rows = []
        for family in families:
            protocol = self.protocol(generator_kind, family)
            for name in ROW_NAMES[family]:
                row = {**record, "metric": name, "value": float(values[name]), **protocol}
                rows.append({column: row[column] for column in METRIC_COLUMNS})  # the declared columns, in order
        return rows


def evaluate_generator(
    generator: nn.Module,
    recipe: Any,
    *,
    step: int,
    generator_kind: str,
    metrics: list[str] | None = None,
    num_samples: int | None = None,
    extractor: Extractor | None = None,
    ref: RefStats | None = None,
    progress: Progress | None = None,
    checkpoint: str = IN_TRAINING,
    device: str | torch.device = "cpu",
    settings: MetricSettings | None = None,
    quantize: bool = True,
) -> list[dict[str, Any]]:
    """Rows for one generator (one pass of samples and features for all `metrics`). A given `extractor` and `ref`
    are used as they are; the missing ones are built from the recipe as `Evaluation` does."""
    evaluation = Evaluation(
        recipe,
        device,
        metrics=metrics,
        num_samples=num_samples,
        extractor=extractor,
        ref=ref,
        settings=settings,
        quantize=quantize,
        progress=progress,
    )
    return evaluation.rows(generator, step=step, checkpoint=checkpoint, generator_kind=generator_kind)


class TrainingEvaluator:
    """In-training evaluation, built once per run (so missing weights or an unsupported metric stop training before
    it starts): rows for every generator it is given, raw and EMA."""

    def __init__(self, recipe: Any, run: RunDir, device: str | torch.device) -> None:
        self.run = run
        self.evaluation = Evaluation(recipe, device)

    def __call__(self, step: int, generators: dict[str, nn.Module]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for kind, generator in generators.items():
            rows += self.evaluation.rows(generator, step=step, checkpoint=IN_TRAINING, generator_kind=kind)
        return rows


def checkpoint_names(run: RunDir, which: str) -> list[str]:
    """`best`, `last`, `all` (every step-N.pt, then last.pt) or a step number -> names `load_generator` takes."""
    which = str(which).strip()
    if which == "all":
        names = [str(step) for step, _ in run.step_checkpoints()]
        if run.checkpoint_path("last").exists():
            names.append("last")
        if not names:
            raise MetricError(f"--checkpoint all: {run.checkpoints_dir} holds no checkpoints; train the run first")
        return names
    if which in ("best", "last") or which.isdigit():
        path = run.checkpoint_path(which)
        if not path.exists():
            raise MetricError(
                f"--checkpoint {which}: {path} does not exist; see {run.checkpoints_dir} for the saved ones"
            )
        return [which]
    raise MetricError(f"--checkpoint {which}: expected best, last, all or a step number")


def already_scored(existing: pd.DataFrame, step: int, generator_kind: str, family: str, fp: str) -> bool:
    """Whether every row of `family` for this step and generator is present under fingerprint `fp`."""
    if existing.empty or not {"fingerprint", "step", "generator", "metric"} <= set(existing.columns):
        return False
    same = existing[
        (existing["step"] == step) & (existing["generator"] == generator_kind) & (existing["fingerprint"] == fp)
    ]
    return set(ROW_NAMES[family]) <= set(same["metric"])


def evaluate_run(
    run: RunDir,
    *,
    checkpoints: str = "best",
    ema: bool | None = None,
    num_samples: int | None = None,
    metrics: list[str] | None = None,
    backend: str | None = None,
    inception_weights: str | None = None,
    ref_stats: str | None = None,
    force: bool = False,
    device: str = "auto",
    quantize: bool = True,
    settings: MetricSettings | None = None,
    progress: Progress | None = None,
    bn_mode: str | None = None,
) -> pd.DataFrame:
    """Score the chosen checkpoints of a run and append the new rows to its metrics.parquet; return the new rows.

    `ema` None scores the generator the recipe's protocol reports (eval.select; the raw G when the run keeps no EMA).
    Metrics already present for the same (checkpoint step, generator, metric, fingerprint) are skipped unless
    `force`. Rows are appended checkpoint by checkpoint, so an interrupted `all` keeps what it finished.
    """
    run.require()
    recipe = run.read_recipe()
    names = checkpoint_names(run, checkpoints)
    evaluation = Evaluation(
        recipe,
        device,
        metrics=metrics,
        num_samples=num_samples,
        backend=backend,
        inception_weights=inception_weights,
        ref_stats=ref_stats,
        settings=settings,
        quantize=quantize,
        progress=progress,
        bn_mode=bn_mode,
    )
    if ema is None:
        ema = selected_generator(recipe.eval.select, has_ema=recipe.train.ema_decay > 0) == "ema"
    kind = "ema" if ema else "raw"
    with run.lock("ganbench eval"):  # metrics.parquet has one writer at a time
        return _score_checkpoints(run, evaluation, names, checkpoints, ema, kind, force)


def _score_checkpoints(
    run: RunDir, evaluation: Evaluation, names: list[str], checkpoints: str, ema: bool, kind: str, force: bool
) -> pd.DataFrame:
    existing = run.read_metrics()
    new_rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for name in names:
        generator, step = load_generator(run, name, ema=ema, map_location=evaluation.device)
        if checkpoints == "all" and step in seen:
            continue  # last.pt is usually a copy of the newest step-N.pt
        seen.add(step)
        todo = [
            family
            for family in evaluation.families
            if force or not already_scored(existing, step, kind, family, evaluation.fingerprint(kind, family))
        ]
        if not todo:
            continue
        label = f"step-{step}" if name.isdigit() else name
        rows = evaluation.rows(generator, step=step, checkpoint=label, generator_kind=kind, families=todo)
        existing = run.append_metrics(rows)
        new_rows += rows
    return pd.DataFrame(new_rows)
