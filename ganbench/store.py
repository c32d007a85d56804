"""The run-directory contract: where each file of a run lives, and atomic reads and writes of them.

RUN_DIR/recipe.toml        the fully resolved recipe
RUN_DIR/run.json           status, step, recipe hash, environment, schema version
RUN_DIR/history.parquet    one row per logged training step
RUN_DIR/metrics.parquet    one row per (checkpoint, generator, metric) evaluation
RUN_DIR/checkpoints/       last.pt, best.pt, step-<N>.pt
RUN_DIR/samples/           step-<N>.png fixed-z grids
RUN_DIR/.lock              held (flock) by the one process writing the run: training or evaluation
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ganbench import SCHEMA_VERSION, __version__
from ganbench.errors import RunDirError

STATUSES = ("running", "finished", "diverged", "failed", "interrupted")
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def cache_dir() -> Path:
    """The user cache folder for decoded data and reference statistics (never inside site-packages)."""
    if os.environ.get("GANBENCH_CACHE"):
        return Path(os.environ["GANBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganbench"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through `write(tmp)` into a temp file beside `path`, fsync it, then rename it over `path`.

    The old file stays whole until the new one is complete, so a crash leaves one or the other, never half.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it 0600: give it the mode a plain open() would
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


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
        if not self.root.is_dir():
            raise RunDirError(f"{self.root}: no such run directory; give a folder made by `ganbench train`")
        if not self.exists():
            raise RunDirError(f"{self.root}: not a run directory (no run.json); give a folder made by `ganbench train`")
        return self

    # recipe and run.json

    def read_recipe(self) -> Any:
        from ganbench import recipe  # the recipe module imports the registries; keep store importable alone

        if not self.recipe_path.is_file():
            raise RunDirError(f"{self.recipe_path}: missing; this run directory is incomplete")
        return recipe.load(self.recipe_path)

    def write_recipe(self, resolved: Any) -> None:
        atomic_write_text(self.recipe_path, resolved.to_toml())

    def read_run(self) -> dict[str, Any]:
        try:
            info = json.loads(self.run_path.read_text())
        except FileNotFoundError:
            raise RunDirError(f"{self.run_path}: missing; {self.root} is not a run directory") from None
        except json.JSONDecodeError as err:
            raise RunDirError(f"{self.run_path}: not valid JSON ({err}); restore or delete the run") from None
        schema = info.get("schema_version")
        if schema != SCHEMA_VERSION:
            raise RunDirError(
                f"{self.run_path}: written by run-directory schema {schema}, this ganbench reads schema "
                f"{SCHEMA_VERSION}; use the ganbench version that made it or re-run it"
            )
        return info

    def write_run(self, info: dict[str, Any]) -> None:
        info = {**info, "schema_version": SCHEMA_VERSION, "ganbench_version": __version__}
        info["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(self.run_path, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def update_run(self, **fields: Any) -> dict[str, Any]:
        info = self.read_run()
        info.update(fields)
        self.write_run(info)
        return info

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
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for path in self.checkpoints_dir.iterdir():
            match = _STEP_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def sample_path(self, step: int, generator: str = "ema") -> Path:
        """step-N.png for the sheet of the generator a run samples with (EMA-G when it has one), raw-step-N.png for
        the raw G beside it."""
        prefix = "raw-" if generator == "raw" else ""
        return self.samples_dir / f"{prefix}step-{step:07d}.png"

    # Parquet tables

    def read_history(self) -> pd.DataFrame:
        return read_parquet(self.history_path)

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


def find_runs(results: str | Path) -> list[RunDir]:
    """Every run directory below `results` (those with a run.json), sorted by path."""
    results = Path(results)
    if not results.is_dir():
        return []
    return [RunDir(path.parent) for path in sorted(results.rglob("run.json"))]
