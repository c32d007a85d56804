"""`ganbench status`: a live trainer's lock shows running, a dead one's run stale, a failed run its error line, time
left from the last history row, Slurm's queue states from a stand-in squeue, and --watch until the runs end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from ganbench import recipe as recipes
from ganbench import slurm
from ganbench import status as runs
from ganbench.cli import app
from ganbench.status import collect, duration, speed
from ganbench.store import RunDir
from ganbench.train.loop import train
from tests.test_slurm import fake_slurm_on_path

runner = CliRunner()

HOLD_LOCK = """
import sys, time
from ganbench.store import RunDir
with RunDir(sys.argv[1]).lock(sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


class Holder:
    """A process of its own holding a run directory's writer lock, as a trainer does, until it is killed."""

    def __init__(self, run: RunDir, purpose: str = "ganbench train") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(run.root), purpose], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "held"
        self.pid = self.process.pid

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.kill()


def _run(root: Path, recipe: dict[str, Any] | None = None, **info: Any) -> RunDir:
    """A run directory as the trainer leaves it: run.json with `info`, recipe.toml naming method and seed."""
    run = RunDir(root)
    run.root.mkdir(parents=True)
    recipe = recipe or {"method": "gn", "seed": 0}
    run.recipe_path.write_text(f'name = "toy"\nseed = {recipe["seed"]}\n\n[method]\nname = "{recipe["method"]}"\n')
    run.write_run({"name": "toy", **info})  # type: ignore[typeddict-item]
    return run


def _history(run: RunDir, rows: list[tuple[int, float]], rows_per_group: int) -> None:
    """history.parquet of (step, g_steps_per_s) rows, several row groups, written as pyarrow writes any table."""
    table = pa.table({"step": [s for s, _ in rows], "g_steps_per_s": [r for _, r in rows], "loss_d": [0.5] * len(rows)})
    pq.write_table(table, run.history_path, row_group_size=rows_per_group)
    assert pq.ParquetFile(run.history_path).metadata.num_row_groups > 1


def _by_name(snapshot: runs.Snapshot) -> dict[str, runs.RunStatus]:
    return {row.run_dir.name: row for row in snapshot.runs}


def test_a_live_trainers_run_is_running_with_time_left_and_stale_once_it_dies(
    tmp_path: Path, holders: list[Holder]
) -> None:
    run = _run(tmp_path / "results" / "gn-0", status="running", step=300, steps=1000)
    # the last row (step 400, 50 G-steps/s) is in the last of three row groups; earlier rows went slower
    _history(run, [(100, 10.0), (200, 20.0), (300, 30.0), (400, 50.0)], rows_per_group=2)
    holders.append(Holder(run))
    (row,) = collect(tmp_path / "results").runs
    assert row.status == "running"
    assert row.message.startswith(f"pid {holders[0].pid} on ")
    assert (row.step, row.steps, row.rate) == (400, 1000, 50.0)
    assert row.seconds_left == pytest.approx(12.0)  # (1000 - 400) steps / 50 per s
    holders[0].kill()  # killed: the kernel drops its lock; run.json still says running
    assert RunDir(run.root).read_run()["status"] == "running"
    (row,) = collect(tmp_path / "results").runs
    assert row.status == "stale"
    assert row.seconds_left is None and row.rate == 50.0  # a dead run has no time left


def test_an_evaluation_holding_the_lock_leaves_a_finished_run_finished(tmp_path: Path, holders: list[Holder]) -> None:
    run = _run(tmp_path / "r", status="finished", step=10, steps=10)
    holders.append(Holder(run, purpose="ganbench eval"))
    (row,) = collect(tmp_path).runs
    assert row.status == "finished"
    assert row.message.startswith(f"in use by pid {holders[0].pid} on ") and "ganbench eval" in row.message


def test_a_resumed_trainer_holding_the_lock_is_running_before_it_rewrites_run_json(
    tmp_path: Path, holders: list[Holder]
) -> None:
    run = _run(tmp_path / "r", status="interrupted", step=10, steps=20)
    holders.append(Holder(run))
    assert collect(tmp_path).runs[0].status == "running"


class FidScores:
    """An in-training evaluator with hand-chosen FIDs per step (the same for both generators), failing at `fail_at`."""

    def __init__(self, fids: dict[int, float], fail_at: int | None = None) -> None:
        self.fids, self.fail_at = fids, fail_at

    def factory(self, recipe: Any, run: RunDir, device: torch.device) -> FidScores:
        return self

    def __call__(self, step: int, generators: dict[str, torch.nn.Module]) -> list[dict[str, Any]]:
        if step == self.fail_at:
            raise RuntimeError(f"feature extractor lost at step {step}\nsecond line")
        return [
            {"step": step, "checkpoint": "in-training", "generator": kind, "metric": "fid", "value": self.fids[step]}
            for kind in generators
        ]


@pytest.fixture
def trained(tiny_recipe_path: Path, tmp_path: Path) -> Path:
    """results/ with two runs the real trainer wrote: one finished (best FID 12.5 at step 20), one failed at step 20
    (its evaluator raised), both with their history."""
    results = tmp_path / "results"
    sets = ["eval.every=10", "train.checkpoint_every=10"]
    train(
        recipes.load(tiny_recipe_path, sets),
        RunDir(results / "done"),
        evaluator_factory=FidScores({10: 30.0, 20: 12.5, 30: 20.0}).factory,
    )
    failing = recipes.load(tiny_recipe_path, [*sets, "method.name='sn'", "seed=7"])
    with pytest.raises(RuntimeError, match="feature extractor lost"):
        train(failing, RunDir(results / "broken"), evaluator_factory=FidScores({10: 40.0}, fail_at=20).factory)
    return results


def test_finished_and_failed_runs_as_the_trainer_wrote_them(trained: Path) -> None:
    rows = _by_name(collect(trained))
    done, broken = rows["done"], rows["broken"]
    assert (done.status, done.name, done.method, done.seed, done.step, done.steps) == (
        "finished",
        "tiny",
        "gn",
        3,
        30,
        30,
    )
    assert (done.best, done.best_step) == ("FID 12.50 (ema)", 20)
    assert done.rate is not None and done.rate > 0 and done.seconds_left is None and done.message == ""
    assert (broken.status, broken.method, broken.seed) == ("failed", "sn", 7)
    assert broken.message == "RuntimeError: feature extractor lost at step 20"  # run.json's one error line
    assert (broken.best, broken.best_step) == ("FID 40.00 (ema)", 10)
    assert broken.step == 20  # the history's last row, logged before the evaluation failed


def test_the_command_prints_one_table(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    _run(trained / "dead", status="running", step=4, steps=30)
    result = runner.invoke(app, ["status", str(trained)])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    assert set(lines) == {"broken", "dead", "done"}
    assert "3 runs below" in result.output and "1 finished, 1 stale, 1 failed" in result.output
    assert " failed " in lines["broken"] and "RuntimeError: feature extractor lost at step 20" in lines["broken"]
    assert " finished " in lines["done"] and "FID 12.50 (ema)" in lines["done"] and " 30/30 " in lines["done"]
    assert " stale " in lines["dead"] and "its trainer died" in lines["dead"]


def test_bad_results_folders_exit_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for path, problem in ((tmp_path / "nope", "no such folder"), (tmp_path / "file", "not a folder")):
        result = runner.invoke(app, ["status", str(path)])
        assert result.exit_code == 2
        assert result.output.strip() == f"error: RESULTS {path}: {problem}; give the folder holding the run directories"
    empty = runner.invoke(app, ["status", str(tmp_path)])
    assert empty.exit_code == 0 and empty.output.startswith("no runs below")


def test_a_damaged_run_json_is_a_row_not_a_stop(tmp_path: Path) -> None:
    _run(tmp_path / "good", status="finished", step=1, steps=1)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    rows = _by_name(collect(tmp_path))
    assert rows["good"].status == "finished"
    assert rows["bad"].status == "damaged" and "not valid JSON" in rows["bad"].message


def test_slurm_jobs_with_their_queue_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_slurm_on_path(tmp_path / "fake-slurm", monkeypatch)
    results = tmp_path / "results"
    base = results / "compare" / "quickstart"
    _run(base / "gn" / "seed-0", status="running", step=5, steps=10)  # preempted: no process holds it
    _run(base / "sn" / "seed-0", status="finished", step=10, steps=10)
    _run(base / "pgn" / "seed-0", status="failed", step=3, steps=10, error="RuntimeError: boom")
    keys = {name: slurm.run_key(base / name / "seed-0") for name in ("gn", "sn", "pgn", "gran", "none")}
    jobs = {keys["gn"]: "101", keys["sn"]: "102", keys["pgn"]: "103", keys["gran"]: "104", keys["none"]: "105"}
    (base / "slurm").mkdir()
    (base / "slurm" / "jobs.json").write_text(json.dumps(jobs))
    # squeue: gn requeued after its preemption, sn's job done, gran's waiting before its run.json; pgn's and none's
    # jobs are gone from the queue
    (fake.root / "jobs").write_text(
        f"101 PENDING {keys['gn']}\n102 COMPLETED {keys['sn']}\n104 PENDING {keys['gran']}\n"
    )
    rows = {row.run_dir.parent.name: row for row in collect(results).runs}
    assert {name: (row.status, row.job) for name, row in rows.items()} == {
        "gn": ("queued", "101 PENDING"),
        "sn": ("finished", "102 ended"),
        "pgn": ("failed", "103 ended"),
        "gran": ("queued", "104 PENDING"),
        "none": ("missing", "105 ended"),
    }
    assert rows["gran"].run_dir == base / "gran" / "seed-0"  # shown below RESULTS as given, as the others
    assert collect(results).live
    fake.set_state("101", "RUNNING")
    fake.set_state("104", "FAILED")  # ended: squeue's ended states do not count as queued
    rows = {row.run_dir.parent.name: row for row in collect(results).runs}
    assert (rows["gn"].status, rows["gn"].job) == ("queued", "101 RUNNING")  # the job starts; no lock yet
    assert (rows["gran"].status, rows["gran"].job) == ("missing", "104 ended")
    fake.down()
    snapshot = collect(results)
    rows = {row.run_dir.parent.name: row for row in snapshot.runs}
    assert (rows["gn"].status, rows["gn"].job) == ("stale", "101 ?")  # run.json and the lock alone
    assert snapshot.notes == [
        "squeue --me: squeue: error: Unable to contact slurm controller (connect failure); Slurm job states not shown"
    ]


def test_watch_redraws_until_no_run_is_running(
    tmp_path: Path, holders: list[Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run(tmp_path / "r", status="running", step=1, steps=10)
    holders.append(Holder(run))
    naps: list[float] = []

    def nap(seconds: float) -> None:  # the watch loop's sleep: the trainer dies during the third one
        naps.append(seconds)
        assert len(naps) < 10, "still watching a run whose trainer is dead"
        if len(naps) == 3:
            holders[0].kill()

    monkeypatch.setattr(time, "sleep", nap)
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["status", str(tmp_path), "--watch", "--interval", "0.5"])
    assert result.exit_code == 0, result.output
    assert naps == [0.5, 0.5, 0.5]  # watched while running, stopped at the first snapshot without a live run
    assert " stale " in result.output.splitlines()[-2]


def test_durations_and_speeds_read_as_written() -> None:
    assert [duration(s) for s in (0.4, 45, 200, 7500, 97200)] == ["0s", "45s", "3m 20s", "2h 05m", "1d 03h"]
    assert [speed(r) for r in (412.4, 37.46, 2.414, 0.03121)] == ["412", "37.5", "2.41", "0.0312"]


def test_status_never_enters_a_run_directory(tmp_path: Path) -> None:
    run = _run(tmp_path / "r", status="finished", step=1, steps=1)
    os.makedirs(run.root / "samples" / "nested")
    (run.root / "samples" / "nested" / "run.json").write_text("{not json")  # not a run: inside one
    assert [row.run_dir for row in collect(tmp_path).runs] == [run.root]
