"""The command line: exit codes, one-line errors without tracebacks, no half-made run directories."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ganbench.cli import app, default_run_dir
from ganbench.store import RunDir
from ganbench.train import checkpoint
from tests.conftest import TINY_RECIPE

runner = CliRunner()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_train_writes_a_run_and_resumes_as_finished(tmp_path: Path) -> None:
    recipe = _write(tmp_path, TINY_RECIPE)
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(recipe), "--run-dir", str(run_dir), "--set", "train.steps=10"])
    assert result.exit_code == 0, result.output
    run = RunDir(run_dir)
    assert run.read_run()["step"] == 10 and run.read_recipe().train.steps == 10  # --set reached the run
    assert checkpoint.load(run.checkpoint_path("last"))["step"] == 10
    before = run.checkpoint_path("last").stat().st_mtime_ns
    again = runner.invoke(app, ["train", str(recipe), "--run-dir", str(run_dir), "--set", "train.steps=10"])
    assert again.exit_code == 0
    assert "finished" in again.stdout
    assert run.checkpoint_path("last").stat().st_mtime_ns == before  # not trained again


def test_ctrl_c_checkpoints_exits_130_and_the_same_command_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganbench.train import loop

    original = loop.Trainer._g_step

    def interrupted_g_step(self: loop.Trainer, totals: dict[str, torch.Tensor]) -> None:
        if self.state.step == 14:  # during step 15: a real SIGINT, as Ctrl-C sends
            os.kill(os.getpid(), signal.SIGINT)
        original(self, totals)

    recipe = _write(tmp_path, TINY_RECIPE)
    command = ["train", str(recipe), "--run-dir", str(tmp_path / "run")]
    with monkeypatch.context() as patch:
        patch.setattr(loop.Trainer, "_g_step", interrupted_g_step)
        stopped = runner.invoke(app, command)
    assert stopped.exit_code == 130, stopped.output
    assert "run the same command again to resume" in stopped.stderr
    run = RunDir(tmp_path / "run")
    assert run.read_run()["status"] == "interrupted"
    assert checkpoint.load(run.checkpoint_path("last"))["step"] == 15  # the step in flight was finished and saved
    resumed = runner.invoke(app, command)
    assert resumed.exit_code == 0, resumed.output
    assert run.read_run()["status"] == "finished" and run.read_run()["step"] == 30
    assert list(run.read_history()["step"]) == [5, 10, 15, 20, 25, 30]


CLI_ERRORS = [
    (TINY_RECIPE, ["--set", "train.stepz=3"], "train.stepz"),
    (TINY_RECIPE, ["--set", "method.name=gnn"], "method.name"),
    (TINY_RECIPE, ["--set", "train.steps=-1"], "train.steps"),
    (TINY_RECIPE, ["--set", "data.name=cifar10", "--set", "model.arch=cnn32", "--set", "data.root=nowhere"], "nowhere"),
    (TINY_RECIPE, ["--set", "train.device=cuda:7"], "train.device"),
    ("[train\n", [], "not valid TOML"),
]


@pytest.mark.parametrize(("text", "args", "needle"), CLI_ERRORS)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, text: str, args: list[str], needle: str) -> None:
    if "cuda" in " ".join(args):
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    recipe = _write(tmp_path, text)
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(recipe), "--run-dir", str(run_dir), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not run_dir.exists()  # no half-made run directory


def test_missing_recipe_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "none.toml")])
    assert result.exit_code == 2
    assert "no such recipe file" in result.stderr


def test_diverged_run_exits_1(tmp_path: Path) -> None:
    recipe = _write(tmp_path, TINY_RECIPE)
    args = [
        "--set",
        "method.name=none",
        "--set",
        "loss.name=wasserstein",
        "--set",
        "train.lr_d=1e30",
        "--set",
        "train.lr_g=1e30",
        "--set",
        "train.steps=200",
    ]
    result = runner.invoke(app, ["train", str(recipe), "--run-dir", str(tmp_path / "run"), *args])
    assert result.exit_code == 1, result.output
    assert "NaN" in result.stderr


def test_default_run_dir_adds_a_hash_only_when_set_changes_the_recipe(tmp_path: Path) -> None:
    recipe = _write(tmp_path, TINY_RECIPE)
    assert default_run_dir(recipe, []) == Path("results/tiny")
    assert default_run_dir(recipe, ["train.steps=30"]) == Path("results/tiny")  # same value as the file
    changed = default_run_dir(recipe, ["train.steps=31"])
    assert changed.parent == Path("results") and changed.name.startswith("tiny-")
