"""Read run directories into what a report needs: each run's recipe, status and the measurements it can report.

Which evaluation a run reports, as the papers do: the in-training evaluation with the best FID (lowest) of the
selected generator (eval.select; the raw G when a run has no EMA), every other metric taken at that same
evaluation. Runs without FID pick their evaluation by the same rule as best.pt (ganbench.selection: most modes
covered, then most high-quality samples for 2-D sets, else the highest IS, else the last evaluation). A later
evaluation of that same checkpoint (`ganbench eval RUN --checkpoint best`, or the step-N.pt of the chosen step) is
a measurement of its own, one per evaluation protocol; the tables prefer it to the in-training one (see
`Measurement.rank`).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ganbench.errors import GanbenchError
from ganbench.recipe import NON_SEMANTIC_KEYS
from ganbench.selection import select_best, selected_generator
from ganbench.store import EXTERNAL, RECOVER, RunDir, find_runs, recipe_type_problem

# Columns of metrics.parquet that say what was measured and when, not how: every other column of a row is
# part of its protocol (ganbench.metrics.fingerprint hashes those into `fingerprint`). Machine-specific ones
# (weights path, device) are never shown, so a report reads the same wherever it was made.
RECORD_COLUMNS = frozenset(
    {
        "step",
        "checkpoint",
        "generator",
        "metric",
        "value",
        "fingerprint",
        "weights",
        "ref_source",
        "device",
        "wall_time_s",
        "time",
    }
)
IN_TRAINING = "in-training"
# Protocol columns that differ between the metrics of one evaluation pass (IS's splits beside FID's nothing): the
# rest of a row's protocol says which evaluation pass it belongs to.
PER_METRIC_COLUMNS = frozenset({"params", "fingerprint"})


@dataclass(frozen=True)
class Selected:
    """One metric's reported value for one run, with the protocol it was measured under."""

    metric: str
    value: float
    step: int
    fingerprint: str  # "" when the row has none
    protocol: tuple[tuple[str, str], ...]  # (field, value) for the row's protocol columns, sorted


@dataclass
class Measurement:
    """One evaluation a run can report: its values per metric and how that evaluation was chosen."""

    kind: str  # IN_TRAINING (the best of the in-training evaluations) or "checkpoint" (an evaluation after training)
    checkpoint: str  # the rows' checkpoint label: in-training, best, step-N, last
    step: int
    selection: str  # the rule that chose the evaluation, in words
    evaluations: int  # how many candidate evaluations the rule chose among
    values: dict[str, Selected] = field(default_factory=dict)

    @property
    def n_fake(self) -> int:
        """The generated samples behind the values (0 when the rows do not say)."""
        for chosen in self.values.values():
            found = dict(chosen.protocol).get("n_fake")
            if found is not None and str(found).isdigit():
                return int(found)
        return 0

    def rank(self) -> tuple[int, int, int]:
        """Larger is preferred: more samples, then an evaluation of the chosen checkpoint after training (the
        full-protocol evaluation `ganbench eval` makes) over the in-training one, then the later step."""
        return self.n_fake, int(self.kind != IN_TRAINING), self.step


@dataclass
class RunResult:
    rel: str  # the run directory relative to the results folder, with forward slashes
    root: Path
    name: str
    status: str
    step: int
    steps: int
    config: dict[str, Any]  # the resolved recipe, flattened to dotted keys
    seed: int
    generator: str = "raw"  # which generator's rows were read: ema or raw
    selection: str = ""  # how the reported evaluation was chosen, in words
    selection_kind: str = ""  # in-training, best, all: which rows were candidates
    evaluations: int = 0  # how many candidate evaluations there were
    selected_step: int | None = None
    values: dict[str, Selected] = field(default_factory=dict)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # step, metric, value of the candidates
    latest_sample: Path | None = None
    latest_sample_step: int | None = None
    measurements: list[Measurement] = field(default_factory=list)  # every reportable evaluation, preferred first
    curve_protocol: dict[str, str] = field(default_factory=dict)  # the protocol fields of `curves`' first FID row
    error: str = ""  # run.json's error line when training failed
    external: str = ""  # an external entry (images made elsewhere, `ganbench eval --images`): where they came from

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


NON_SEMANTIC = {f"{section}.{key}" for section, key in NON_SEMANTIC_KEYS}


def semantic(config: dict[str, Any], drop: tuple[str, ...] = ("name", "seed")) -> dict[str, Any]:
    """The keys that change what training computes, less `drop` (by default the name and the seed)."""
    return {key: value for key, value in config.items() if key not in NON_SEMANTIC and key not in drop}


def config_key(config: dict[str, Any], drop: tuple[str, ...] = ("name", "seed")) -> str:
    return json.dumps(semantic(config, drop), sort_keys=True, default=str)


def read_runs(
    results: Path, generator: str = "selected", only: list[Path] | None = None
) -> tuple[list[RunResult], list[str]]:
    """Every readable run below `results` (or only those of `only`), and a warning line for each run or file that
    could not be read."""
    warnings: list[str] = []
    if not results.is_dir():
        return [], [f"{results}: no such folder; give --results the folder your runs were written to"]
    runs: list[RunResult] = []
    wanted = None if only is None else {Path(path).resolve() for path in only}
    for run in find_runs(results):
        if wanted is not None and run.root.resolve() not in wanted:
            continue
        rel = run.root.relative_to(results).as_posix() or "."
        try:
            result = _read_run(run, rel)
        except GanbenchError as err:
            warnings.append(f"{rel}: skipped: {err}")
            continue
        except OSError as err:  # no permission to read a file of it: the others are still reported
            warnings.append(f"{rel}: skipped: {err.filename or run.root}: {err.strerror or err}")
            continue
        try:
            _read_metrics(run, result, generator)
        except GanbenchError as err:
            warnings.append(f"{rel}: metrics not read: {err}")
        except OSError as err:
            warnings.append(f"{rel}: metrics not read: {err.filename or run.metrics_path}: {err.strerror or err}")
        else:
            if not result.measurements:
                where = "no metrics.parquet" if not run.metrics_path.is_file() else "no evaluations in metrics.parquet"
                warnings.append(
                    f"{rel}: {where} ({result.status} at step {result.step}/{result.steps}); listed in the table of "
                    f"all runs without values; score it with `ganbench eval {rel}`"
                )
        result.latest_sample, result.latest_sample_step = latest_sample(run)
        runs.append(result)
    if not runs and not warnings:
        warnings.append(f"{results}: no run directories found; run `ganbench train` or `ganbench compare` first")
    return runs, warnings


def _read_run(run: RunDir, rel: str) -> RunResult:
    info = run.read_run()  # raises RunDirError for another schema version or a value of the wrong type
    if not run.recipe_path.is_file():
        raise GanbenchError(f"{run.recipe_path}: missing; this run directory is incomplete")
    try:
        tree = tomllib.loads(run.recipe_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise GanbenchError(f"{run.recipe_path}: not valid TOML ({err})") from None
    except UnicodeDecodeError as err:
        raise GanbenchError(f"{run.recipe_path}: damaged (byte {err.start} is not UTF-8); {RECOVER}") from None
    problem = recipe_type_problem(tree)
    if problem:
        raise GanbenchError(f"{run.recipe_path}: damaged ({problem}); {RECOVER}")
    config = flatten(tree)
    external = _external_words(info.get("external"))
    # an external entry is named by `ganbench eval --name`; the recipe it holds is the one whose protocol scored it
    name = info.get("name", run.root.name) if external else tree.get("name", info.get("name", run.root.name))
    return RunResult(
        rel=rel,
        root=run.root,
        name=str(name),
        status=str(info.get("status", "unknown")),
        step=int(info.get("step", 0) or 0),
        steps=int(info.get("steps", config.get("train.steps", 0)) or 0),
        config=config,
        seed=int(config.get("seed", 0)),
        error=str(info.get("error") or ""),
        external=external,
    )


def _external_words(external: Any) -> str:
    """An external entry's images in words ("" for a run of ours): the file, how many, whose protocol scored them."""
    if not isinstance(external, dict):
        return ""
    images = Path(str(external.get("images", "?"))).name or "?"
    count = external.get("count")
    like = Path(str(external.get("like", "?"))).name or "?"
    many = f", {count:,} images" if isinstance(count, int) else ""
    return f"images made elsewhere ({images}{many}), scored as the samples of {like} would be"


def _read_metrics(run: RunDir, result: RunResult, generator: str) -> None:
    frame = run.read_metrics()  # raises RunDirError for an unreadable file
    if frame.empty:
        return
    missing = [column for column in ("step", "metric", "value") if column not in frame.columns]
    if missing:
        raise GanbenchError(f"{run.metrics_path}: lacks the column(s) {', '.join(missing)}")
    bad = [step for step in frame["step"].tolist() if not _whole(step)]
    if bad:
        raise GanbenchError(
            f"{run.metrics_path}: damaged (step holds {_show(bad[0])}, not an integer); {RECOVER}, or delete it and "
            "score the run again with `ganbench eval`"
        )
    frame = frame.copy()
    if "generator" not in frame.columns:
        frame["generator"] = "raw"
    if "checkpoint" not in frame.columns:
        frame["checkpoint"] = IN_TRAINING
    frame = frame[frame["value"].map(_finite)]
    if frame.empty:  # no finite value (a diverged run scored NaN): a run without evaluations
        return
    kinds = set(frame["generator"].astype(str))
    if result.external:  # images made elsewhere: their rows are the only ones, whichever generator was asked for
        generator = EXTERNAL
    elif generator == "selected":  # the generator the run's recipe selects by (eval.select; EMA before that key)
        has_ema = float(result.config.get("train.ema_decay", 1.0)) > 0  # without the key: as its rows say
        generator = selected_generator(result.config.get("eval.select"), has_ema=has_ema)
    result.generator = generator if generator in kinds else ("raw" if "raw" in kinds else sorted(kinds)[0])
    frame = frame[frame["generator"].astype(str) == result.generator]
    checkpoints = frame["checkpoint"].astype(str)
    training = frame[checkpoints == IN_TRAINING].sort_values("step", kind="stable")
    after = frame[checkpoints != IN_TRAINING]
    result.curves = training[["step", "metric", "value"]].reset_index(drop=True)
    first = training[training["metric"] == "fid"].head(1).to_dict("records") or training.head(1).to_dict("records")
    if first:
        result.curve_protocol = {
            name: _text(value)
            for name, value in first[0].items()
            if name not in RECORD_COLUMNS and name not in PER_METRIC_COLUMNS and not _missing(value)
        }
    measurements: list[Measurement] = []
    chosen_step: int | None = None
    if not training.empty:
        step, rule = select_step(training)
        if step is not None:
            chosen_step = step
            measurements.append(
                _measurement(IN_TRAINING, IN_TRAINING, training[training["step"] == step], step, rule, training)
            )
    for rows in _passes(after):
        label, step = str(rows["checkpoint"].iloc[0]), int(rows["step"].iloc[0])
        if chosen_step is not None:  # only evaluations of the checkpoint the in-training rule chose
            if label == "best":
                rule = "best.pt (the checkpoint of the best in-training evaluation), evaluated after training"
            elif label == f"step-{chosen_step}":
                rule = f"the step-{step} checkpoint (the best in-training evaluation), evaluated after training"
            else:
                continue
            measurements.append(_measurement("checkpoint", label, rows, step, rule, rows))
    if chosen_step is None and not after.empty:  # no in-training rows: the evaluations made after training
        best = after[after["checkpoint"].astype(str) == "best"]
        for pool in _pools(best if not best.empty else after):
            step, rule = select_step(pool)
            if step is None:
                continue
            at = pool[pool["step"] == step]
            label = str(at["checkpoint"].iloc[-1])
            rule = "best.pt, evaluated after training" if label == "best" else f"the {rule} among the evaluations"
            measurements.append(_measurement("checkpoint", label, at, step, rule, pool))
        if result.curves.empty:
            result.curves = after.sort_values("step", kind="stable")[["step", "metric", "value"]].reset_index(drop=True)
    if result.external:  # one evaluation of a sample set: no curve over training, and its origin is its selection
        result.curves = pd.DataFrame()
        for measurement in measurements:
            measurement.selection = result.external
    measurements.sort(key=Measurement.rank, reverse=True)
    result.measurements = measurements
    if measurements:
        preferred = measurements[0]
        result.values = preferred.values
        result.selected_step = preferred.step
        result.selection = preferred.selection
        result.selection_kind = preferred.checkpoint if preferred.kind != IN_TRAINING else IN_TRAINING
        result.evaluations = preferred.evaluations


def _pass_key(row: dict[str, Any]) -> str:
    """What one evaluation pass shares across its metrics: its protocol columns but the per-metric ones."""
    fields = {
        name: _text(value)
        for name, value in row.items()
        if name not in RECORD_COLUMNS and name not in PER_METRIC_COLUMNS and not _missing(value)
    }
    return json.dumps(fields, sort_keys=True)


def _pools(rows: pd.DataFrame) -> list[pd.DataFrame]:
    """`rows` split by evaluation protocol (every step of one protocol together), in first-seen order."""
    if rows.empty:
        return []
    keys = [_pass_key(row) for row in rows.to_dict("records")]
    frame = rows.assign(_pass=keys)
    return [group.drop(columns="_pass") for _, group in frame.groupby("_pass", sort=False)]


def _passes(rows: pd.DataFrame) -> list[pd.DataFrame]:
    """`rows` split into evaluation passes: one checkpoint label and step, one protocol."""
    found = []
    for pool in _pools(rows):
        for _, group in pool.groupby(["checkpoint", "step"], sort=False):
            found.append(group)
    return found


def _measurement(
    kind: str, label: str, at: pd.DataFrame, step: int, rule: str, candidates: pd.DataFrame
) -> Measurement:
    measurement = Measurement(
        kind=kind, checkpoint=label, step=step, selection=rule, evaluations=int(candidates["step"].nunique())
    )
    for row in at.to_dict("records"):  # a later row for the same metric replaces an earlier one
        protocol = tuple(
            (name, _text(row[name])) for name in sorted(row) if name not in RECORD_COLUMNS and not _missing(row[name])
        )
        fingerprint = "" if _missing(row.get("fingerprint")) else str(row.get("fingerprint"))
        measurement.values[str(row["metric"])] = Selected(
            metric=str(row["metric"]),
            value=float(row["value"]),
            step=int(row["step"]),
            fingerprint=fingerprint,
            protocol=protocol,
        )
    return measurement


def select_step(rows: pd.DataFrame) -> tuple[int | None, str]:
    """The step whose evaluation a run reports, and the rule that chose it: the rule that picks best.pt."""
    choice = select_best(rows.to_dict("records"))
    return (None, "") if choice is None else (choice.step, choice.rule)


def latest_sample(run: RunDir) -> tuple[Path | None, int | None]:
    steps = run.sample_steps()
    return (run.sample_path(steps[-1]), steps[-1]) if steps else (None, None)


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _whole(value: Any) -> bool:
    """A step number as metrics.parquet holds one: an integer, or a float with an integer's value."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return math.isfinite(value) and float(value).is_integer()


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(value: Any) -> str:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
