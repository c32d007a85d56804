"""Live curves: a run's history rows, in-training metric rows and fixed-z sample sheets as TensorBoard event files
under RUN_DIR/tensorboard/, written as training produces them (train.tensorboard; the `tensorboard` extra).

The event files are a view of the run directory, never a source for it: nothing in ganbench reads them. They follow
the run's truncation rule: a run (re)started at the checkpoint of step S opens a new event file whose first record
after the file version is TensorBoard's purge marker at step S + 1 (a SessionLog START event, what torch's
SummaryWriter(purge_step=S + 1) writes), so a reader drops the points a killed process wrote past its checkpoint and
sees the resumed run's, once. Event files are named so that a later one sorts after every earlier one, the order
readers take them in. Writes are synchronous and flushed after each call, so a checkpoint is never saved ahead of
the events of its steps, and a failed write (a full disk) raises `TensorBoardWriteFailed` at the call that failed,
naming the file: the run stops as failed, its checkpoints kept, and resumes like any other.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ganbench.errors import GanbenchError, WorkFailed
from ganbench.store import IN_TRAINING, LOSS_COLUMNS, PROBE_COLUMNS, TIMING_COLUMNS, RunDir

FOLDER = "tensorboard"
INSTALL = "pip install 'ganbench[tensorboard]'"
FILE_PREFIX = "events.out.tfevents."
_STAMP = re.compile(r"events\.out\.tfevents\.(\d+)\.")

# TensorBoard groups charts by the tag's first word
HISTORY_TAGS = {
    **{column: f"loss/{column}" for column in LOSS_COLUMNS},
    **{column: f"probe/{column}" for column in PROBE_COLUMNS},
    "lr_d": "lr/lr_d",
    "lr_g": "lr/lr_g",
    **{column: f"speed/{column}" for column in TIMING_COLUMNS},
}


def metric_tag(metric: str, generator: str) -> str:
    return f"metrics/{metric}/{generator}"


def sheet_tag(generator: str) -> str:
    return f"samples/{generator}"


class TensorBoardWriteFailed(WorkFailed):
    """An event file under RUN_DIR/tensorboard/ could not be written; the run stopped with its checkpoints kept."""


def require() -> None:
    """Refuse (exit code 2) a run that asks for TensorBoard where its package is not installed."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: F401
        from tensorboard.summary.writer import record_writer  # noqa: F401
    except ImportError:
        raise GanbenchError(
            f"train.tensorboard = true (--tensorboard): the tensorboard package is not installed; {INSTALL}, or "
            "train without it (--no-tensorboard)"
        ) from None


class Events:
    """Where training's rows and sheets go besides the run directory: nowhere (train.tensorboard = false)."""

    def history(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Each history row's columns as scalars at its step."""

    def metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Each in-training metric row's value as a scalar at its step, one tag per metric and generator."""

    def sheets(self, step: int) -> None:
        """The step's sample sheets (written just before) as images."""

    def close(self) -> None:
        """Close the event file (everything is already flushed)."""


class TensorBoardEvents(Events):
    """One event file of this process, opened when the run (re)starts at `step` (its checkpoint's, 0 without one)."""

    def __init__(self, run: RunDir, step: int, has_ema: bool, clock: Callable[[], float] = time.time) -> None:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_type, self._summary_type, self._clock = Event, Summary, clock
        self.run, self.has_ema = run, has_ema
        self.folder = run.root / FOLDER
        earlier = event_files(self.folder)
        stamps = [int(match.group(1)) for path in earlier if (match := _STAMP.match(path.name))]
        stamp = max([int(clock()), *(s + 1 for s in stamps)])  # sorts after every earlier file of the run
        self.path = self.folder / f"{FILE_PREFIX}{stamp:010d}.{socket.gethostname()}.{os.getpid()}.ganbench"
        self._file: IO[bytes] | None = None
        with self._writing():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "xb")  # noqa: SIM115 (held open for the run, closed by close())
        self._records = RecordWriter(self._file)
        self._write(Event(wall_time=clock(), file_version="brain.Event:2"))
        self._write(Event(wall_time=clock(), step=step + 1, session_log=SessionLog(status=SessionLog.START)))
        if not earlier and step > 0:  # turned on for a run that trained without it so far
            self._backfill(step)
        self._flush()

    def history(self, rows: Iterable[Mapping[str, Any]]) -> None:
        value = self._summary_type.Value
        for row in rows:
            tags = [(tag, row[column]) for column, tag in HISTORY_TAGS.items() if column in row]
            self._scalars(int(row["step"]), [value(tag=tag, simple_value=float(v)) for tag, v in tags])
        self._flush()

    def metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        value = self._summary_type.Value
        by_step: dict[int, list[Any]] = {}
        for row in rows:
            tag = metric_tag(str(row["metric"]), str(row["generator"]))
            by_step.setdefault(int(row["step"]), []).append(value(tag=tag, simple_value=float(row["value"])))
        for step, values in sorted(by_step.items()):
            self._scalars(step, values)
        self._flush()

    def sheets(self, step: int) -> None:
        from PIL import Image

        summary = self._summary_type
        values = []
        for generator, path in sheet_files(self.run, step, self.has_ema).items():
            if not path.is_file():
                continue
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as image:
                (width, height), channels = image.size, len(image.getbands())
            picture = summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=data)
            values.append(summary.Value(tag=sheet_tag(generator), image=picture))
        if values:
            self._scalars(step, values)
            self._flush()

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # flushed after every call: closing loses nothing
                self._file.close()
            self._file = None

    def _backfill(self, step: int) -> None:
        """What the run directory holds up to `step`: history, in-training metric rows, sample sheets."""
        history = self.run.read_history()
        if not history.empty:
            self.history(history[history["step"] <= step].to_dict("records"))
        metrics = self.run.read_metrics()
        if not metrics.empty and "checkpoint" in metrics:
            kept = metrics[(metrics["checkpoint"] == IN_TRAINING) & (metrics["step"] <= step)]
            self.metrics(kept.to_dict("records"))
        for sheet_step in self.run.sample_steps():
            if sheet_step <= step:
                self.sheets(sheet_step)

    def _scalars(self, step: int, values: list[Any]) -> None:
        self._write(self._event_type(wall_time=self._clock(), step=step, summary=self._summary_type(value=values)))

    def _write(self, event: Any) -> None:
        with self._writing():
            self._records.write(event.SerializeToString())

    def _flush(self) -> None:
        with self._writing():
            self._records.flush()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as err:
            raise TensorBoardWriteFailed(
                f"{self.path}: TensorBoard events could not be written ({err.strerror or err}); the run stopped at "
                "its last checkpoint: make room and train again to resume, or resume with --no-tensorboard"
            ) from err


def open_events(run: RunDir, enabled: bool, step: int, has_ema: bool) -> Events:
    """The run's TensorBoard event file from `step` on when `enabled`, else the events that go nowhere."""
    return TensorBoardEvents(run, step, has_ema) if enabled else Events()


def event_files(folder: Path) -> list[Path]:
    """The event files in `folder`, in the order readers take them (by name)."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.name.startswith(FILE_PREFIX))


def sheet_files(run: RunDir, step: int, has_ema: bool) -> dict[str, Path]:
    """The sheets of `step` by generator: step-N.png is EMA-G's where the run keeps one, else the raw G's."""
    if has_ema:
        return {"ema": run.sample_path(step), "raw": run.sample_path(step, "raw")}
    return {"raw": run.sample_path(step)}


__all__ = [
    "FOLDER",
    "Events",
    "TensorBoardEvents",
    "TensorBoardWriteFailed",
    "event_files",
    "metric_tag",
    "open_events",
    "require",
    "sheet_tag",
]
