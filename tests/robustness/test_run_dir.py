"""Run directories under bad events done for real: kills at random points, graceful stops, a second writer, crafted
and damaged checkpoints, changed data, and write failures (full disk, read-only file system, no permission).

The reference is always an uninterrupted run of the same recipe: weights, history and metrics must match it exactly
(history without its timing columns, metrics without their record-keeping columns).
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from ganbench import files
from ganbench import recipe as recipes
from ganbench.errors import RunDirError
from ganbench.evaluation import TrainingEvaluator
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import Trainer

RECIPE = """
name = "robust"
seed = 5

[data]
name = "ring8"
num_samples = 1000

[model]
arch = "mlp"
z_dim = 4
g_channels = 16
d_channels = 16

[method]
name = "gn"

[train]
steps = 60
batch_size_d = 32
batch_size_g = 32
lr_d = 1e-3
lr_g = 1e-3
ema_decay = 0.9
log_every = 7
sample_every = 0
checkpoint_every = 10
device = "cpu"

[eval]
every = 20
num_samples = 300
"""
TIMING = ["g_steps_per_s", "images_per_s", "wall_time"]
RECORD = ["time", "wall_time_s", "device"]


def recipe(*overrides: str) -> recipes.Recipe:
    return recipes.loads(RECIPE, list(overrides))


def train(run: RunDir, *overrides: str, progress: Any = None) -> dict[str, Any]:
    return Trainer(recipe(*overrides), run, progress, TrainingEvaluator).run()


def weights(run: RunDir) -> dict[str, torch.Tensor]:
    state = checkpoint.load(run.checkpoint_path("last"))
    return {f"{net}.{k}": v for net in ("G", "D", "G_ema") for k, v in state[net].items()}


def history(run: RunDir) -> pd.DataFrame:
    return run.read_history().drop(columns=TIMING).reset_index(drop=True)


def metrics(run: RunDir) -> pd.DataFrame:
    return run.read_metrics().drop(columns=RECORD).reset_index(drop=True)


def assert_same_run(run: RunDir, reference: RunDir) -> None:
    assert run.read_run()["status"] == "finished"
    ours, theirs = weights(run), weights(reference)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    pd.testing.assert_frame_equal(history(run), history(reference))
    pd.testing.assert_frame_equal(metrics(run), metrics(reference))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    torch.set_num_threads(1)
    run = RunDir(tmp_path_factory.mktemp("reference") / "run")
    train(run)
    return run


class StopAt:
    """A progress sink that does something at a given step (the trainer calls advance(1) once per step)."""

    def __init__(self, step: int, action: Any) -> None:
        self.step, self.action, self.seen = step, action, 0

    def start(self, task: str, total: int | None, completed: int = 0) -> None:
        self.seen = completed

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.seen += n
        if n and self.seen == self.step:
            self.action()

    def finish(self) -> None:
        pass


# --- graceful stops and resumes -------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_at", [13, 20, 33])
def test_sigterm_then_resume_matches_an_uninterrupted_run(tmp_path: Path, reference: RunDir, stop_at: int) -> None:
    """A stop in the middle of a log window (13, 33) must not change the next history row after the resume."""
    run = RunDir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train(run, progress=StopAt(stop_at, lambda: os.kill(os.getpid(), signal.SIGTERM)))
    info = run.read_run()
    assert info["status"] == "interrupted" and info["step"] == stop_at
    train(run)
    assert_same_run(run, reference)


def test_a_resume_from_no_checkpoint_starts_clean(tmp_path: Path, reference: RunDir) -> None:
    """Killed before its first checkpoint, after history and metrics were flushed: the resume must not keep them."""
    run = RunDir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train(run, progress=StopAt(25, lambda: (_ for _ in ()).throw(KeyboardInterrupt)))
    for path in run.checkpoints_dir.iterdir():  # as if killed before the first checkpoint was written
        path.unlink()
    assert not run.read_history().empty and not run.read_metrics().empty
    train(run)
    assert_same_run(run, reference)


def test_rows_past_the_checkpoint_are_dropped_on_resume(
    tmp_path: Path, reference: RunDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunDir(tmp_path / "run")
    monkeypatch.setattr("ganbench.train.loop.HISTORY_FLUSH_SECONDS", 0.0)  # history flushed at every log line
    with pytest.raises(KeyboardInterrupt):  # checkpoints at 15 and 30, an evaluation at 40, killed at 44
        train(run, "train.checkpoint_every=15", progress=StopAt(44, lambda: (_ for _ in ()).throw(KeyboardInterrupt)))
    assert run.read_history()["step"].max() == 42 and run.read_metrics()["step"].max() == 40
    monkeypatch.undo()
    train(run)
    assert_same_run(run, reference)
    assert not run.read_history()["step"].duplicated().any()


def test_changed_evaluation_settings_do_not_block_a_resume(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train(run, progress=StopAt(15, lambda: (_ for _ in ()).throw(KeyboardInterrupt)))
    info = train(run, "eval.every=30")
    assert info["status"] == "finished"
    assert info["resumed_with_changes"] == ["eval.every: 20 -> 30"]
    assert recipes.load(run.recipe_path).eval.every == 30
    with pytest.raises(RunDirError, match="different recipe"):  # training keys still do
        train(RunDir(tmp_path / "run"), "train.lr_d=0.002", "train.steps=80")


# --- what a resume checks -------------------------------------------------------------------------------------


def test_a_resume_on_other_data_is_refused_naming_both_hashes(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train(run, progress=StopAt(15, lambda: (_ for _ in ()).throw(KeyboardInterrupt)))
    info = run.read_run()
    ours = info["dataset"]["content_hash"]
    run.update_run(dataset={**info["dataset"], "content_hash": "0123abcd"})
    with pytest.raises(RunDirError, match=f"content hash 0123abcd .* now gives hash {ours}"):
        train(run)
    assert run.read_run()["step"] == 15  # nothing was trained on the wrong data


def test_a_crafted_checkpoint_runs_no_code(tmp_path: Path) -> None:
    """A pickle that would create a file when unpickled, dropped in as the newest step-N.pt and as last.pt."""
    run = RunDir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train(run, progress=StopAt(25, lambda: (_ for _ in ()).throw(KeyboardInterrupt)))
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    crafted = {"step": 10**6, "schema_version": 1, "G": Payload()}
    for name in ("step-999.pt", "last.pt"):
        (run.checkpoints_dir / name).unlink(missing_ok=True)  # a new file, not written through last.pt's link
        with open(run.checkpoints_dir / name, "wb") as handle:
            torch.save(crafted, handle)
    manifest = run.checkpoints_dir / "manifest.json"
    manifest.unlink()  # no hashes to catch it: the safe loader alone must refuse it
    with pytest.warns(RuntimeWarning, match="skipped"):
        state = checkpoint.newest_valid(run)
    assert state is not None and state["step"] == 20
    with pytest.raises(RunDirError, match="execute"):
        checkpoint.load(run.checkpoint_path("last"))
    assert not marker.exists()


def test_a_replaced_checkpoint_is_skipped_for_the_previous_valid_one(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train(run, progress=StopAt(25, lambda: (_ for _ in ()).throw(KeyboardInterrupt)))
    # a loadable ganbench checkpoint, but not the one recorded: step-10's content put in step-20.pt's place
    (run.checkpoints_dir / "step-20.pt").unlink()
    (run.checkpoints_dir / "step-20.pt").write_bytes((run.checkpoints_dir / "step-10.pt").read_bytes())
    (run.checkpoints_dir / "last.pt").unlink()
    with pytest.warns(RuntimeWarning, match="step-20.pt: content does not match"):
        state = checkpoint.newest_valid(run)
    assert state is not None and state["step"] == 10


def test_a_kill_between_step_file_and_last_keeps_the_step_file(tmp_path: Path) -> None:
    """step-N.pt is written before last.pt: a kill in between leaves last.pt at the previous step and step-N.pt
    complete and recorded, and the resume starts from step-N."""
    run = RunDir(tmp_path / "run")
    original = checkpoint._link_or_copy

    def die(source: Path, target: Path) -> None:
        if "step-20" in source.name:
            raise KeyboardInterrupt  # stands for the kill: nothing after this point happens
        original(source, target)

    checkpoint._link_or_copy = die  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            train(run)
    finally:
        checkpoint._link_or_copy = original  # type: ignore[assignment]
    assert checkpoint.load(run.checkpoint_path("last"))["step"] == 10
    assert checkpoint.newest_valid(run)["step"] == 20


# --- one writer -----------------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_first(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.lock("the other ganbench train"), pytest.raises(RunDirError, match=f"in use by pid {os.getpid()}"):
        train(run)
    assert not run.exists()  # it wrote nothing


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path: Path, reference: RunDir) -> None:
    run = RunDir(tmp_path / "run")
    run.root.mkdir(parents=True)
    run.lock_path.write_text("pid 999999 on elsewhere (ganbench train, since yesterday)\n")  # crashed holder
    train(run)
    assert_same_run(run, reference)


def _train_in_child(root: str, ready: Any, *overrides: str) -> None:
    torch.set_num_threads(1)
    ready.set()
    train(RunDir(root), *overrides)


def test_two_trainers_on_one_directory_one_wins(tmp_path: Path, reference: RunDir) -> None:
    """Two real processes started together: exactly one trains, the other is refused; the run is the reference."""
    context = multiprocessing.get_context("fork")
    root = str(tmp_path / "run")
    events = [context.Event(), context.Event()]
    children = [context.Process(target=_train_in_child, args=(root, event)) for event in events]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    codes = sorted(child.exitcode for child in children)
    assert codes == [0, 1]  # the refused one raised RunDirError
    assert_same_run(RunDir(root), reference)


# --- kill -9 at random points ---------------------------------------------------------------------------------


def test_kill_nine_at_random_points_then_resume_is_exact(tmp_path: Path) -> None:
    """At least 20 SIGKILLs at random moments (during steps, evaluations, checkpoint writes, history flushes), each
    followed by a resume in a fresh process; every run that finishes must equal the uninterrupted run bit for bit
    (a run that finishes before 20 kills is checked and another one started)."""
    longer = ("train.steps=150",)
    context = multiprocessing.get_context("fork")
    reference = RunDir(tmp_path / "reference")
    start = time.perf_counter()
    train(reference, *longer)
    duration = time.perf_counter() - start
    rng = random.Random(2024)
    kills, finished = 0, 0

    def resume(root: str, kill_after: float | None) -> bool:
        ready = context.Event()
        child = context.Process(target=_train_in_child, args=(root, ready, *longer))
        child.start()
        ready.wait(30)
        if kill_after is None:
            child.join(120)
            assert child.exitcode == 0
            return False
        time.sleep(kill_after)
        killed = child.is_alive()
        if killed:
            os.kill(child.pid, signal.SIGKILL)
        child.join(60)
        return killed

    while kills < 20:
        root = str(tmp_path / f"run-{finished}")
        while kills < 20 and not (RunDir(root).exists() and RunDir(root).read_run()["status"] == "finished"):
            kills += resume(root, rng.uniform(0.0, duration * 0.1))
        while RunDir(root).read_run()["status"] != "finished":
            resume(root, None)
        run = RunDir(root)
        assert_same_run(run, reference)
        assert [p.name for p in run.root.rglob("*") if p.name.endswith((".tmp", ".staged", ".link"))] == []
        finished += 1


# --- write failures -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("at_write", [3, 8, 15])
def test_a_failed_write_fails_the_run_cleanly(
    tmp_path: Path, code: int, at_write: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The k-th atomic write raises as a full disk, a read-only file system or a denied permission would: the run
    stops with the error, says "failed" in run.json when it still can, keeps a loadable checkpoint if it had
    one, leaves no temp file, and a resume once the disk is back finishes the run."""
    run = RunDir(tmp_path / "run")
    original = files.atomic_write
    calls = {"n": 0}

    def failing(path: Path, write: Any) -> None:
        calls["n"] += 1
        if calls["n"] == at_write:
            raise OSError(code, os.strerror(code), str(path))
        original(path, write)

    for module in list(sys.modules.values()):  # every module that writes atomically, under any name it imported
        if getattr(module, "__name__", "").startswith("ganbench") and getattr(module, "atomic_write", None) is original:
            monkeypatch.setattr(module, "atomic_write", failing)
    with pytest.raises(OSError) as caught:
        train(run)
    monkeypatch.undo()
    assert caught.value.errno == code
    if run.exists():
        info = json.loads(run.run_path.read_text())
        assert info["status"] in ("failed", "running")  # "running" only if run.json itself could not be written
        if info["status"] == "failed":
            assert os.strerror(code) in info["error"]
    assert [p for p in run.root.rglob("*") if p.name.endswith((".tmp", ".staged"))] == []
    if run.checkpoints_dir.is_dir() and any(run.checkpoints_dir.glob("*.pt")):
        assert checkpoint.newest_valid(run) is not None
    train(run)
    assert run.read_run()["status"] == "finished"
