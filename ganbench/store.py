"""The run-directory contract: where each file of a run lives, what its rows and fields are, and atomic reads and
writes of them.

RUN_DIR/recipe.toml        the fully resolved recipe
RUN_DIR/run.json           RunInfo: status, step, recipe hash, environment, best evaluation, schema version
RUN_DIR/history.parquet    one row per logged training step, columns HISTORY_COLUMNS
RUN_DIR/metrics.parquet    one row per (checkpoint, generator, metric) evaluation, columns METRIC_COLUMNS:
                           RECORD_FIELDS (what was measured, when, where), the metric and its value,
                           PROTOCOL_FIELDS (how it was measured) and their hash, `fingerprint`
RUN_DIR/checkpoints/       last.pt, best.pt, step-<N>.pt, manifest.json (their sha256)
RUN_DIR/samples/           step-<N>.png fixed-z grids
RUN_DIR/.lock              held (flock) by the one process writing the run: training or evaluation

SCHEMA_VERSION (ganbench/__init__.py) is written into run.json and every checkpoint; a change of the on-disk
format bumps it, and read_run then names the version that wrote a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import socket
import time
import tomllib
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

import pandas as pd
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from ganbench import SCHEMA_VERSION, __version__, config
from ganbench.errors import RecipeError, RunDirError
from ganbench.files import atomic_write, atomic_write_text

STATUSES = ("running", "finished", "diverged", "failed", "interrupted")


class DatasetInfo(TypedDict):
    """The data a run trained on; a resumed run must see the same content hash."""

    name: str
    split: str
    content_hash: str
    source: str


class BestInfo(TypedDict, total=False):
    """The best evaluation so far (ganbench.selection): best.pt holds its step's weights. Empty before any."""

    score: float  # lower is better, as ganbench.selection.score_of gives
    step: int
    metric: str  # the deciding metric: fid, modes_covered, is_mean or step
    generator: str  # ema or raw: the generator ranked (eval.select)


class ExternalInfo(TypedDict, total=False):
    """An external entry's images (`ganbench eval --images`): made elsewhere, scored as a run's samples would be."""

    images: str  # the .npz file or folder, as given
    sha256: str  # of the image files' bytes, in order
    count: int
    like: str  # the run directory or recipe whose evaluation protocol scored them


class RunInfo(TypedDict, total=False):
    """run.json: every field a run directory may hold (older runs may lack the later ones)."""

    name: str
    status: str  # one of STATUSES
    step: int  # the last step saved in a checkpoint
    steps: int  # train.steps
    recipe_hash: str  # Recipe.hash(): the whole resolved recipe
    training_hash: str  # the recipe without [eval] and non-semantic keys: what a resume must match
    created: str
    updated: str
    environment: dict[str, Any]  # python, torch, ganbench, host, cuda, gpu
    dataset: DatasetInfo
    device: str
    step_path: str  # eager, cuda-graph, or eager (capture failed: ...)
    world_size: int  # processes that trained the run together (torchrun); absent: one
    best: BestInfo
    error: str | None  # the one-line error of a failed or diverged run
    resumed_with_changes: list[str]  # `key: old -> new` of [eval] keys a resume took over
    external: ExternalInfo  # only in an external entry: no training, images scored as a run's samples would be
    schema_version: int
    ganbench_version: str


RUN_FIELDS = frozenset(RunInfo.__annotations__)
RECOVER = "restore it from a backup, or start a new run directory (train into another --run-dir)"

# history.parquet: the step, the means of the loss totals over the log window (D terms per D step, loss_g per G
# step), D's raw outputs and input-gradient norms on fixed batches, the learning rates, and the interval's timing.
LOSS_COLUMNS = ("loss_d", "loss_d_real", "loss_d_fake", "penalty", "cr", "d_real", "d_fake", "loss_g")
PROBE_COLUMNS = ("d_raw_real", "d_raw_fake", "grad_norm_real", "grad_norm_fake")
TIMING_COLUMNS = ("g_steps_per_s", "images_per_s", "wall_time")
HISTORY_COLUMNS = ("step", *LOSS_COLUMNS, *PROBE_COLUMNS, "lr_d", "lr_g", *TIMING_COLUMNS)

# metrics.parquet. Fields that change a metric's value for the same generator weights: their hash is the row's
# `fingerprint` (ganbench.metrics.fingerprint computes it).
PROTOCOL_FIELDS = (
    "protocol_version",
    "extractor",  # the feature network (torch-fidelity-inception-v3, ..., 2d-modes for point sets)
    "weights_hash",  # sha256 of its weights file
    "resize",  # how images reach the network's input size
    "quantize",  # whether generated images were rounded to uint8 first, as saving a PNG would
    "precision",  # arithmetic of the feature network (fp32: TF32 off)
    "n_fake",  # generated samples
    "n_real",  # reference samples behind the statistics
    "ref_dataset",
    "ref_split",
    "ref_hash",  # content hash of the reference images
    "ref_key",  # the reference statistics' own key (extractor and weights included; imported-… for a TTUR file)
    "generator",  # ema or raw
    "bn_mode",  # BatchNorm while sampling: "running" (eval mode) or "batch:<B>" (train mode, batches of B)
    "sample_seed",  # the seed of the latent codes
    "params",  # the metric's own settings (IS splits, KID subsets, PR k), JSON
    "versions",  # torch, torch-fidelity, pytorch-fid, ganbench, JSON
)
# Recorded beside the protocol, not hashed: which evaluation of which checkpoint, and when.
RECORD_FIELDS = ("step", "checkpoint", "backend", "weights", "ref_source", "device", "wall_time_s", "time")
IN_TRAINING = "in-training"  # the `checkpoint` of the rows the training loop writes
EXTERNAL = "external"  # the `generator` and `checkpoint` of rows scored from images made elsewhere
METRIC_COLUMNS = (
    *RECORD_FIELDS[:2],
    "generator",
    *RECORD_FIELDS[2:],
    "metric",
    "value",
    *(name for name in PROTOCOL_FIELDS if name != "generator"),
    "fingerprint",
)
_STEP_FILE = re.compile(r"step-(\d+)(\.[a-z]+)")  # a kept checkpoint (.pt) or a sample sheet (.png) of step N


def _step_files(folder: Path, suffix: str) -> list[tuple[int, Path]]:
    """The folder's step-N<suffix> files as (N, path), lowest N first; none without the folder."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _STEP_FILE.fullmatch(path.name)
        if match and match.group(2) == suffix:
            found.append((int(match.group(1)), path))
    return sorted(found)


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def read_parquet(path: Path) -> pd.DataFrame:
    """An existing Parquet file as a frame; a missing one as an empty frame; an unreadable one as RunDirError."""
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for damaged files
        raise RunDirError(f"{path}: unreadable Parquet file ({err}); delete it or restore it from a backup") from None


class RunDir:
    """One training run's directory and the files in it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    recipe_path = property(lambda self: self.root / "recipe.toml")
    run_path = property(lambda self: self.root / "run.json")
    history_path = property(lambda self: self.root / "history.parquet")
    metrics_path = property(lambda self: self.root / "metrics.parquet")
    checkpoints_dir = property(lambda self: self.root / "checkpoints")
    samples_dir = property(lambda self: self.root / "samples")

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    lock_path = property(lambda self: self.root / ".lock")

    @contextlib.contextmanager
    def lock(self, purpose: str) -> Iterator[None]:
        """Hold the run directory's writer lock while the block runs; RunDirError naming the holder if another
        process has it.

        An advisory `flock` on RUN_DIR/.lock: the kernel drops it when its holder dies, so a crashed or killed writer
        never leaves a stale lock behind; the pid, host and purpose written into the file only name the holder.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"
                raise RunDirError(
                    f"{self.root}: in use by {holder}; wait for it to finish or stop it, or give another --run-dir"
                ) from None
            os.ftruncate(fd, 0)
            since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} ({purpose}, since {since})\n".encode())
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def lock_holder(self) -> str | None:
        """Who holds the writer lock ("pid N on HOST (purpose, since ...)"), or None when nobody does: a writer that
        died, even by SIGKILL, leaves its run.json at "running" but its lock free (the kernel drops a dead holder's)."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self.lock_path.read_text(errors="replace").strip() or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def remove_stale_temps(self) -> list[Path]:
        """Delete the temp files a killed writer left (atomic writes' .NAME.*.tmp, checkpoints' .staged/.link);
        call it holding the lock, when no write can be in progress. Returns what it removed."""
        removed = []
        for folder in (self.root, self.checkpoints_dir, self.samples_dir):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.startswith(".") and path.name.endswith((".tmp", ".staged", ".link")) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def exists(self) -> bool:
        """Whether this is a run directory (it has a run.json), not merely a folder."""
        return self.run_path.is_file()

    def require(self) -> RunDir:
        """This run directory, checked to exist and to hold a readable run.json of this schema (read_run)."""
        if not self.root.is_dir():
            raise RunDirError(f"{self.root}: no such run directory; give a folder made by `ganbench train`")
        if not self.exists():
            raise RunDirError(f"{self.root}: not a run directory (no run.json); give a folder made by `ganbench train`")
        self.read_run()
        return self

    # recipe and run.json

    def read_recipe(self) -> Any:
        from ganbench import recipe  # loads torch through the registries: only readers of the recipe pay for it

        if not self.recipe_path.is_file():
            raise RunDirError(f"{self.recipe_path}: missing; this run directory is incomplete")
        raw = self.recipe_path.read_bytes()  # no permission fails as itself, not as a damaged recipe
        # Written by the trainer, so whatever the recipe reader refuses in it means the file was changed.
        try:
            problem = recipe_type_problem(tomllib.loads(raw.decode("utf-8")))
            if problem is None:
                return recipe.load(self.recipe_path)
        except UnicodeDecodeError as err:
            problem = f"byte {err.start} is not UTF-8"
        except tomllib.TOMLDecodeError as err:
            problem = f"not valid TOML: {' '.join(str(err).split())}"
        except RecipeError as err:
            problem = str(err).partition("; ")[0].removeprefix(f"{self.recipe_path}: ")
        raise RunDirError(f"{self.recipe_path}: damaged ({problem}); {RECOVER}")

    def write_recipe(self, resolved: Any) -> None:
        atomic_write_text(self.recipe_path, resolved.to_toml())

    def read_run(self) -> RunInfo:
        """run.json, checked: a JSON object of this schema whose fields hold values of their declared types (a
        damaged file raises RunDirError naming the field and how to recover)."""
        try:
            info = json.loads(self.run_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{self.run_path}: missing; {self.root} is not a run directory") from None
        except json.JSONDecodeError as err:
            raise RunDirError(f"{self.run_path}: not valid JSON ({err}); restore or delete the run") from None
        except UnicodeDecodeError as err:
            raise RunDirError(f"{self.run_path}: damaged (byte {err.start} is not UTF-8); {RECOVER}") from None
        if not isinstance(info, dict):
            raise RunDirError(f"{self.run_path}: not a JSON object; restore or delete the run")
        schema = info.get("schema_version")
        if "schema_version" in info and (not isinstance(schema, int) or isinstance(schema, bool)):
            raise RunDirError(
                f"{self.run_path}: damaged (schema_version holds {_show(schema)}, not an integer); {RECOVER}"
            )
        if schema != SCHEMA_VERSION:
            raise RunDirError(
                f"{self.run_path}: written by run-directory schema {schema!r}, this ganbench reads schema "
                f"{SCHEMA_VERSION}; use the ganbench version that made it or re-run it"
            )
        problem = run_info_problem(info)
        if problem:
            raise RunDirError(f"{self.run_path}: damaged ({problem}); {RECOVER}")
        return cast(RunInfo, info)  # a JSON object of RunInfo's fields (an older run's may be fewer)

    def write_run(self, info: RunInfo) -> None:
        _check_fields(info)
        self._write_run(info)

    def update_run(self, **fields: Any) -> RunInfo:
        """Change the named fields of run.json (each declared in RunInfo); the others are kept as they are."""
        _check_fields(fields)
        info = self.read_run()
        info.update(fields)  # type: ignore[typeddict-item]  # names checked above
        self._write_run(info)
        return info

    def _write_run(self, info: RunInfo) -> None:
        written: dict[str, Any] = {**info, "schema_version": SCHEMA_VERSION, "ganbench_version": __version__}
        written["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(self.run_path, json.dumps(written, indent=2, sort_keys=True) + "\n")

    # checkpoints

    def checkpoint_path(self, which: str | int) -> Path:
        """`last`, `best` or a step number -> the file (which may not exist)."""
        if isinstance(which, int) or str(which).isdigit():
            return self.checkpoints_dir / f"step-{int(which)}.pt"
        if which not in ("last", "best"):
            raise RunDirError(f"--checkpoint {which}: expected best, last, all or a step number")
        return self.checkpoints_dir / f"{which}.pt"

    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """The kept step-N.pt files, oldest first."""
        return _step_files(self.checkpoints_dir, ".pt")

    def sample_path(self, step: int, generator: str = "ema") -> Path:
        """step-N.png for the sheet of the generator a run samples with (EMA-G when it has one), raw-step-N.png for
        the raw G beside it."""
        prefix = "raw-" if generator == "raw" else ""
        return self.samples_dir / f"{prefix}step-{step:07d}.png"

    def sample_steps(self) -> list[int]:
        """The steps of the run's sample sheets (step-N.png), in order; none without a samples folder."""
        return [step for step, _ in _step_files(self.samples_dir, ".png")]

    # Parquet tables

    def read_history(self) -> pd.DataFrame:
        return read_parquet(self.history_path)

    def last_history_row(self, columns: Sequence[str] = HISTORY_COLUMNS) -> dict[str, Any] | None:
        """The last row of history.parquet (of `columns`, those it has), read from the file's footer and its last
        row group alone, never the whole table; None before the first history is written. RunDirError when the
        file is unreadable."""
        try:
            table = pq.ParquetFile(self.history_path)
            present = [name for name in columns if name in table.schema_arrow.names]
            for group in reversed(range(table.metadata.num_row_groups)):
                rows = table.metadata.row_group(group).num_rows
                if rows:
                    last = table.read_row_group(group, columns=present).slice(rows - 1)
                    return {name: last.column(name)[0].as_py() for name in present}
            return None
        except FileNotFoundError:
            return None
        except Exception as err:  # pyarrow raises several types for damaged files
            raise RunDirError(
                f"{self.history_path}: unreadable Parquet file ({err}); delete it or restore it from a backup"
            ) from None

    def write_history(self, frame: pd.DataFrame) -> None:
        write_parquet(self.history_path, frame)

    def read_metrics(self) -> pd.DataFrame:
        return read_parquet(self.metrics_path)

    def append_metrics(self, rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
        """Add rows to metrics.parquet (rewritten atomically) and return the whole table."""
        new = pd.DataFrame(list(rows))
        if new.empty:
            return self.read_metrics()
        old = self.read_metrics()
        frame = new if old.empty else pd.concat([old, new], ignore_index=True)
        write_parquet(self.metrics_path, frame)
        return frame


_RUN_TYPES = typing.get_type_hints(RunInfo)
_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _show(value: Any, limit: int = 40, toml: bool = False) -> str:
    """A value for a one-line message: as run.json writes it (JSON), or as Python shows it (`toml`)."""
    text = repr(value) if toml else json.dumps(value, default=str)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _type_problem(key: str, value: Any, tp: Any) -> str | None:
    """Why `value` is not of the annotated type `tp` ("key holds X, not an integer"), or None when it is."""
    if tp is Any:
        return None
    if typing.is_typeddict(tp):
        if not isinstance(value, dict):
            return f"{key} holds {_show(value)}, not a table of fields"
        hints = typing.get_type_hints(tp)
        for name, item in value.items():
            problem = _type_problem(f"{key}.{name}", item, hints[name]) if name in hints else None
            if problem:
                return problem
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(key, value, arm) for arm in args]
        return None if any(problem is None for problem in problems) else next(p for p in problems if p)
    if origin is list:
        if not isinstance(value, list):
            return f"{key} holds {_show(value)}, not a list"
        for i, item in enumerate(value):
            problem = _type_problem(f"{key}[{i}]", item, args[0])
            if problem:
                return problem
        return None
    if origin is dict:
        return None if isinstance(value, dict) else f"{key} holds {_show(value)}, not a table of fields"
    if tp is type(None):
        return None if value is None else f"{key} holds {_show(value)}, not null"
    if tp is float:
        fits = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    else:
        fits = isinstance(value, tp)
    return None if fits else f"{key} holds {_show(value)}, not {_KINDS.get(tp, tp.__name__)}"


def _fits(value: Any, tp: Any) -> bool:
    if typing.get_origin(tp) is list:  # a list of strings; a comma-separated string is one too, as --set takes it
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if isinstance(value, bool) or tp is bool:
        return isinstance(value, bool) and tp is bool
    return isinstance(value, int | float) if tp is float else isinstance(value, tp)


def recipe_type_problem(tree: dict[str, Any], cls: type = config.Recipe, prefix: str = "") -> str | None:
    """The first recipe key of `tree` (a parsed recipe.toml) holding a value of the wrong type ("train.steps holds
    'x', not an integer"), or None. Only types are checked, and only of the keys ganbench.config declares: a report
    reads a run's recipe as written, without the registries or the data; read_recipe checks the rest."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in tree.items():
        if key not in known:
            continue
        dotted, tp = f"{prefix}{key}", hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                return f"{dotted} holds {_show(value, toml=True)} where a table of keys belongs"
            problem = recipe_type_problem(value, typing.cast(type, tp), f"{dotted}.")
            if problem:
                return problem
        elif not _fits(value, tp):
            kind = "a list of strings" if typing.get_origin(tp) is list else _KINDS[tp]
            return f"{dotted} holds {_show(value, toml=True)}, not {kind}"
    return None


def run_info_problem(info: dict[str, Any]) -> str | None:
    """What is wrong with a run.json object's values, in a few words naming the field; None when nothing is.

    Every declared field (RunInfo) must hold its declared type and `status` one of STATUSES; fields this ganbench
    does not declare are left alone."""
    for key, value in info.items():
        if key in _RUN_TYPES:
            problem = _type_problem(key, value, _RUN_TYPES[key])
            if problem:
                return problem
    status = info.get("status")
    if status is not None and status not in STATUSES:
        return f"status holds {_show(status)}, not one of {', '.join(STATUSES)}"
    return None


def _check_fields(fields: Any) -> None:
    unknown = sorted(set(fields) - RUN_FIELDS)
    if unknown:  # a writer's mistake, not a user's: the contract above is the one place a field is declared
        raise TypeError(f"run.json: undeclared field(s) {', '.join(unknown)}; declare them in store.RunInfo")


def find_runs(results: str | Path) -> list[RunDir]:
    """Every run directory below `results` (those with a run.json), sorted by path."""
    results = Path(results)
    if not results.is_dir():
        return []
    return [RunDir(path.parent) for path in sorted(results.rglob("run.json"))]
