"""The run-directory contract: atomic writes, schema checks, Parquet tables, checkpoint discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganbench import SCHEMA_VERSION
from ganbench.errors import RunDirError
from ganbench.files import atomic_write, atomic_write_text
from ganbench.store import RunDir, find_runs


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def failing(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_run_json_round_trip_and_schema_check(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_run({"status": "running", "step": 3})
    assert run.read_run()["step"] == 3
    assert run.update_run(step=4)["step"] == 4
    info = json.loads(run.run_path.read_text())
    info["schema_version"] = SCHEMA_VERSION + 1
    run.run_path.write_text(json.dumps(info))
    with pytest.raises(RunDirError, match="schema"):
        run.read_run()


def test_require_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no such run directory"):
        RunDir(tmp_path / "missing").require()
    with pytest.raises(RunDirError, match="no run.json"):
        RunDir(tmp_path).require()


def test_metrics_append_and_unreadable_parquet(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.append_metrics([{"step": 1, "metric": "fid", "value": 3.0}])
    frame = run.append_metrics([{"step": 2, "metric": "fid", "value": 2.0}])
    assert list(frame["step"]) == [1, 2]
    run.metrics_path.write_bytes(b"not parquet")
    with pytest.raises(RunDirError, match="unreadable Parquet"):
        run.read_metrics()


def test_step_checkpoints_sorted_numerically(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.checkpoints_dir.mkdir()
    for step in (100, 20, 3):
        (run.checkpoints_dir / f"step-{step}.pt").write_bytes(b"")
    (run.checkpoints_dir / "last.pt").write_bytes(b"")
    assert [step for step, _ in run.step_checkpoints()] == [3, 20, 100]
    assert run.checkpoint_path(20) == run.checkpoints_dir / "step-20.pt"
    assert run.checkpoint_path("best").name == "best.pt"
    with pytest.raises(RunDirError):
        run.checkpoint_path("newest")


def test_find_runs(tmp_path: Path) -> None:
    for name in ("b", "a/x"):
        RunDir(tmp_path / name).write_run({"status": "finished"})
    (tmp_path / "c").mkdir()
    assert [r.root.relative_to(tmp_path).as_posix() for r in find_runs(tmp_path)] == ["a/x", "b"]
    assert find_runs(tmp_path / "nowhere") == []


def test_run_json_fields_must_be_declared(tmp_path: Path) -> None:
    """A writer's typo (a field RunInfo does not declare) is refused before anything is written."""
    run = RunDir(tmp_path)
    with pytest.raises(TypeError, match="undeclared field.*statuss"):
        run.write_run({"statuss": "running"})  # type: ignore[typeddict-unknown-key]
    assert not run.run_path.exists()
    run.write_run({"status": "running", "step": 3})
    with pytest.raises(TypeError, match="best_step"):
        run.update_run(best_step=3)
    assert run.read_run()["step"] == 3
