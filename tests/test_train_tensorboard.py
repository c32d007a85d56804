"""TensorBoard events (ganbench/train/tensorboard_events.py): read back with TensorBoard's own reader, which honours
the purge marker a resumed run writes, every tag holds exactly the run directory's steps and values, after a real
kill -9 past the last checkpoint, a failed event write, or TensorBoard turned on part-way; without the package,
asking for it is one line and exit 2 before anything is written."""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ganbench
from ganbench import recipe as recipes
from ganbench.cli import app, default_run_dir
from ganbench.evaluation import TrainingEvaluator
from ganbench.store import IN_TRAINING, RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import Trainer
from ganbench.train.runinfo import training_hash
from ganbench.train.tensorboard_events import (
    FOLDER,
    HISTORY_TAGS,
    TensorBoardWriteFailed,
    event_files,
    metric_tag,
    sheet_tag,
)
from tests.conftest import TINY_RECIPE
from tests.test_compare import StopAfter  # a stop between two steps, before the next checkpoint

# Logs every 2 steps, an evaluation and a sheet every 10, a checkpoint every 20: a kill between checkpoints leaves
# history, metric and sheet events past the last one.
RECIPE = recipes.loads(
    TINY_RECIPE,
    [
        'name="live"',
        "seed=4",
        "data.num_samples=256",
        "train.steps=60",
        "train.log_every=2",
        "train.sample_every=10",
        "train.checkpoint_every=20",
        "eval.every=10",
        "eval.num_samples=200",
    ],
).to_toml()

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="needs the tensorboard package: pip install 'ganbench[tensorboard]' (the test extra has it)",
)


def trainer(run: RunDir, *overrides: str, progress: Any = None) -> Trainer:
    return Trainer(recipes.loads(RECIPE, list(overrides)), run, progress, TrainingEvaluator)


def read_events(run: RunDir) -> Any:
    """The run's events as TensorBoard shows them: its reader drops what a purge marker says was orphaned."""
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, SCALARS, EventAccumulator

    reader = EventAccumulator(str(run.root / FOLDER), size_guidance={SCALARS: 0, IMAGES: 0})  # 0: keep every point
    reader.Reload()
    return reader


def raw_history_steps(run: RunDir) -> list[int]:
    """The loss_d steps of every event file as written, purge markers not applied."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = []
    for path in event_files(run.root / FOLDER):
        for event in EventFileLoader(str(path)).Load():
            if any(value.tag == HISTORY_TAGS["loss_d"] for value in event.summary.value):
                steps.append(event.step)
    return steps


def assert_events_are_the_run(run: RunDir) -> None:
    """Every history column, in-training metric and sample sheet, at exactly the run directory's steps, once."""
    assert run.read_run()["status"] == "finished"
    events = read_events(run)
    tags = events.Tags()
    history = run.read_history()
    assert list(history["step"]) == list(range(2, 61, 2))
    for column, tag in HISTORY_TAGS.items():
        points = events.Scalars(tag)
        assert [p.step for p in points] == list(history["step"]), tag
        assert [p.value for p in points] == pytest.approx(list(history[column]), rel=1e-6, abs=1e-12), tag

    metrics = run.read_metrics()
    metrics = metrics[metrics["checkpoint"] == IN_TRAINING]
    want = {metric_tag(m, g): frame for (m, g), frame in metrics.groupby(["metric", "generator"])}
    assert {tag for tag in tags["scalars"] if tag.startswith("metrics/")} == set(want)
    assert {tag.rsplit("/", 1)[1] for tag in want} == {"raw", "ema"}
    for tag, frame in want.items():
        points = events.Scalars(tag)
        assert [p.step for p in points] == [10, 20, 30, 40, 50, 60] == list(frame["step"]), tag
        assert [p.value for p in points] == pytest.approx(list(frame["value"]), rel=1e-6), tag

    assert sorted(tags["images"]) == [sheet_tag("ema"), sheet_tag("raw")]
    assert run.sample_steps() == [10, 20, 30, 40, 50, 60]
    for generator in ("ema", "raw"):
        images = events.Images(sheet_tag(generator))
        assert [image.step for image in images] == run.sample_steps(), generator
        assert images[-1].encoded_image_string == run.sample_path(60, generator).read_bytes()


@needs_tensorboard
def test_kill_nine_past_the_checkpoint_then_resume_leaves_each_tag_the_run_steps(tmp_path: Path) -> None:
    """`ganbench train --tensorboard` killed with SIGKILL once events past its last checkpoint are on disk, then run
    again to the end: the reader sees every step once (the killed process's points past the checkpoint are in the
    files, and must be dropped by the resumed run's purge marker)."""
    recipe_path = tmp_path / "live.toml"
    recipe_path.write_text(RECIPE)
    run = RunDir(tmp_path / "run")
    command = [sys.executable, "-m", "ganbench", "train", str(recipe_path), "--run-dir", str(run.root), "--tensorboard"]
    source = str(Path(ganbench.__file__).resolve().parents[1])
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]),
    }

    def past_a_checkpoint() -> bool:
        kept = [step for step, _ in run.step_checkpoints()]
        return bool(kept) and max(raw_history_steps(run), default=0) >= max(kept) + 4

    with open(tmp_path / "killed.log", "wb") as log:
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while child.poll() is None and not past_a_checkpoint() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert child.poll() is None, f"the run ended before it could be killed: {(tmp_path / 'killed.log').read_text()}"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(60)
    saved = checkpoint.newest_valid(run)
    assert saved is not None
    written = raw_history_steps(run)
    assert max(written) > saved["step"], "the kill left no events past the checkpoint: the test proves nothing"
    assert run.read_run()["status"] == "running"  # killed, not stopped

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(event_files(run.root / FOLDER)) == 2
    assert len(raw_history_steps(run)) > 30  # steps past the checkpoint are in the files twice ...
    assert_events_are_the_run(run)  # ... and TensorBoard shows each once


@needs_tensorboard
def test_a_failed_event_write_stops_the_run_before_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event of history step 40 (the checkpoint's own log line) meets a full disk: the run fails naming the
    event file, checkpoint 40 is not written (it would be ahead of its events), and the resume is exact."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    original = RecordWriter.write

    def full_disk_at_40(self: Any, data: bytes) -> None:
        event = Event.FromString(data)
        if event.step == 40 and any(value.tag == HISTORY_TAGS["loss_d"] for value in event.summary.value):
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, data)

    run = RunDir(tmp_path / "run")
    monkeypatch.setattr(RecordWriter, "write", full_disk_at_40)
    with pytest.raises(TensorBoardWriteFailed, match=r"tensorboard/events\.out\.tfevents\..*No space left on device"):
        trainer(run, "train.tensorboard=true").run()
    monkeypatch.undo()
    info = run.read_run()
    assert info["status"] == "failed" and "TensorBoardWriteFailed" in info["error"] and FOLDER in info["error"]
    assert [step for step, _ in run.step_checkpoints()] == [20]
    trainer(run, "train.tensorboard=true").run()
    assert_events_are_the_run(run)


@needs_tensorboard
def test_turned_on_part_way_writes_the_run_so_far(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run trained to step 25 without TensorBoard (checkpoint 20, history flushed past it), resumed with it: the
    events hold the steps the run directory kept before the resume, then the rest."""
    run = RunDir(tmp_path / "run")
    monkeypatch.setattr("ganbench.train.loop.HISTORY_FLUSH_SECONDS", 0.0)  # rows past the checkpoint on disk
    with pytest.raises(KeyboardInterrupt):
        trainer(run, progress=StopAfter(25)).run()
    assert run.read_history()["step"].max() == 24 and not (run.root / FOLDER).exists()
    trainer(run, "train.tensorboard=true").run()
    assert_events_are_the_run(run)


def test_without_the_package_train_refuses_in_one_line_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked by flag or by recipe key where tensorboard cannot be imported: exit 2, one line saying what to install,
    no run directory."""
    for name in [name for name in sys.modules if name == "tensorboard" or name.startswith("tensorboard.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    recipe_path = tmp_path / "live.toml"
    recipe_path.write_text(RECIPE)
    for asked in (["--tensorboard"], ["--set", "train.tensorboard=true"]):
        result = CliRunner().invoke(app, ["train", str(recipe_path), "--run-dir", str(tmp_path / "run"), *asked])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'ganbench[tensorboard]'" in lines[0], result.stderr
        assert not (tmp_path / "run").exists()
    with pytest.raises(ganbench.errors.GanbenchError, match="tensorboard package is not installed"):
        trainer(RunDir(tmp_path / "api"), "train.tensorboard=true").run()
    assert not (tmp_path / "api").exists()
    plain = CliRunner().invoke(
        app, ["train", str(recipe_path), "--run-dir", str(tmp_path / "plain"), "--set", "train.steps=2"]
    )
    assert plain.exit_code == 0, plain.output  # not asked: trains without it


def test_the_key_changes_neither_hash_nor_the_default_run_directory(tmp_path: Path) -> None:
    """A run directory made before train.tensorboard existed resumes with it on, under the same name."""
    plain, live = recipes.loads(RECIPE), recipes.loads(RECIPE, ["train.tensorboard=true"])
    assert live.train.tensorboard and not plain.train.tensorboard
    assert (live.hash(), training_hash(live)) == (plain.hash(), training_hash(plain))
    recipe_path = tmp_path / "live.toml"
    recipe_path.write_text(RECIPE)
    assert default_run_dir(recipe_path, ["train.tensorboard=true"]) == default_run_dir(recipe_path, [])
    assert default_run_dir(recipe_path, ["train.steps=7"]) != default_run_dir(recipe_path, [])
