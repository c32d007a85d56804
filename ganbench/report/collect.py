"""Read run directories into what a report needs: each run's recipe, status and the values it reports.

Which value a run reports, as the papers do: the in-training evaluation with the best FID (lowest) of the
selected generator (EMA by default, the raw G when a run has no EMA), every other metric taken at that same
evaluation. Runs without FID pick their evaluation by the training loop's rule for 2-D sets (most modes
covered, then most high-quality samples), else the highest IS, else the last evaluation.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ganbench.errors import GanbenchError
from ganbench.recipe import NON_SEMANTIC_KEYS
from ganbench.store import RunDir, find_runs

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
_SAMPLE_FILE = re.compile(r"^step-(\d+)\.png$")
IN_TRAINING = "in-training"


@dataclass(frozen=True)
class Selected:
    """One metric's reported value for one run, with the protocol it was measured under."""

    metric: str
    value: float
    step: int
    fingerprint: str  # "" when the row has none
    protocol: tuple[tuple[str, str], ...]  # (field, value) for the row's protocol columns, sorted


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


def read_runs(results: Path, generator: str = "selected") -> tuple[list[RunResult], list[str]]:
    """Every readable run below `results`, and a warning line for each run or file that could not be read."""
    warnings: list[str] = []
    if not results.is_dir():
        return [], [f"{results}: no such folder; give --results the folder your runs were written to"]
    runs: list[RunResult] = []
    for run in find_runs(results):
        rel = run.root.relative_to(results).as_posix() or "."
        try:
            result = _read_run(run, rel)
        except GanbenchError as err:
            warnings.append(f"{rel}: skipped: {err}")
            continue
        try:
            _read_metrics(run, result, generator)
        except GanbenchError as err:
            warnings.append(f"{rel}: metrics not read: {err}")
        result.latest_sample, result.latest_sample_step = latest_sample(run)
        runs.append(result)
    if not runs and not warnings:
        warnings.append(f"{results}: no run directories found; run `ganbench train` or `ganbench compare` first")
    return runs, warnings


def _read_run(run: RunDir, rel: str) -> RunResult:
    info = run.read_run()  # raises RunDirError for another schema version
    if not run.recipe_path.is_file():
        raise GanbenchError(f"{run.recipe_path}: missing; this run directory is incomplete")
    try:
        tree = tomllib.loads(run.recipe_path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise GanbenchError(f"{run.recipe_path}: not valid TOML ({err})") from None
    config = flatten(tree)
    return RunResult(
        rel=rel,
        root=run.root,
        name=str(tree.get("name", info.get("name", run.root.name))),
        status=str(info.get("status", "unknown")),
        step=int(info.get("step", 0) or 0),
        steps=int(info.get("steps", config.get("train.steps", 0)) or 0),
        config=config,
        seed=int(config.get("seed", 0)),
    )


def _read_metrics(run: RunDir, result: RunResult, generator: str) -> None:
    frame = run.read_metrics()  # raises RunDirError for an unreadable file
    if frame.empty:
        return
    missing = [column for column in ("step", "metric", "value") if column not in frame.columns]
    if missing:
        raise GanbenchError(f"{run.metrics_path}: lacks the column(s) {', '.join(missing)}")
    frame = frame.copy()
    if "generator" not in frame.columns:
        frame["generator"] = "raw"
    if "checkpoint" not in frame.columns:
        frame["checkpoint"] = IN_TRAINING
    frame = frame[frame["value"].map(_finite)]
    kinds = set(frame["generator"].astype(str))
    if generator == "selected":  # the generator the run's recipe selects by (eval.select; EMA before that key)
        generator = str(result.config.get("eval.select", "ema"))
    result.generator = generator if generator in kinds else ("raw" if "raw" in kinds else sorted(kinds)[0])
    frame = frame[frame["generator"].astype(str) == result.generator]
    checkpoints = frame["checkpoint"].astype(str)
    if (checkpoints == IN_TRAINING).any():
        candidates, kind = frame[checkpoints == IN_TRAINING], IN_TRAINING
    elif (checkpoints == "best").any():
        candidates, kind = frame[checkpoints == "best"], "best"
    else:
        candidates, kind = frame, "all"
    candidates = candidates.sort_values("step", kind="stable")
    result.selection_kind = kind
    result.evaluations = int(candidates["step"].nunique())
    result.curves = candidates[["step", "metric", "value"]].reset_index(drop=True)
    step, rule = select_step(candidates)
    if step is None:
        return
    result.selected_step = step
    result.selection = rule
    at_step = candidates[candidates["step"] == step]
    for row in at_step.to_dict("records"):  # a later row for the same metric replaces an earlier one
        protocol = tuple(
            (name, _text(row[name])) for name in sorted(row) if name not in RECORD_COLUMNS and not _missing(row[name])
        )
        fingerprint = "" if _missing(row.get("fingerprint")) else str(row.get("fingerprint"))
        result.values[str(row["metric"])] = Selected(
            metric=str(row["metric"]),
            value=float(row["value"]),
            step=int(row["step"]),
            fingerprint=fingerprint,
            protocol=protocol,
        )


def select_step(rows: pd.DataFrame) -> tuple[int | None, str]:
    """The step whose evaluation a run reports, and the rule that chose it (see the module docstring)."""
    if rows.empty:
        return None, ""

    def per_step(metric: str) -> pd.Series:
        chosen = rows[rows["metric"] == metric]
        return chosen.groupby("step")["value"].last()

    fid = per_step("fid")
    if not fid.empty:
        return int(fid.idxmin()), "best FID"
    modes = per_step("modes_covered")
    if not modes.empty:
        hq = per_step("hq_percent").reindex(modes.index).fillna(-math.inf)
        order = sorted(modes.index, key=lambda s: (-modes[s], -hq[s], s))
        return int(order[0]), "most modes covered, then highest % HQ"
    inception = per_step("is_mean")
    if not inception.empty:
        return int(inception.idxmax()), "best IS"
    return int(rows["step"].max()), "last evaluation"


def latest_sample(run: RunDir) -> tuple[Path | None, int | None]:
    if not run.samples_dir.is_dir():
        return None, None
    found = []
    for path in run.samples_dir.iterdir():
        match = _SAMPLE_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        return None, None
    step, path = max(found)
    return path, step


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
