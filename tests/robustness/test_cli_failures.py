"""Failures of the work through the real command line: one line on stderr, exit code 1, run.json saying why, the
last good checkpoint intact; --debug shows the traceback instead."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from ganbench import cli
from ganbench.train import checkpoint, loop

RECIPE = """
name = "failing"
[data]
name = "ring8"
num_samples = 500
[model]
arch = "mlp"
z_dim = 4
g_channels = 8
d_channels = 8
[train]
steps = 30
batch_size_d = 16
batch_size_g = 16
log_every = 5
sample_every = 0
checkpoint_every = 10
device = "cpu"
"""


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[Any, str]:
    monkeypatch.setattr(sys, "argv", ["ganbench", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return exited.value.code, capsys.readouterr().err


def fail_at_step(monkeypatch: pytest.MonkeyPatch, step: int, error: BaseException) -> None:
    """Make the trainer's step raise `error` when it reaches `step` (after earlier checkpoints were written)."""
    original = loop.Trainer._step

    def step_or_fail(self: loop.Trainer) -> None:
        if self.state.step + 1 == step:
            raise error
        original(self)

    monkeypatch.setattr(loop.Trainer, "_step", step_or_fail)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/x"), "No space left on device"),
        (OSError(errno.EROFS, os.strerror(errno.EROFS), "/data/x"), "read-only"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of memory"),
        (RuntimeError("an unforeseen bug"), "RuntimeError: an unforeseen bug"),
    ],
)
def test_a_failure_is_one_line_exit_1_and_recorded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    words: str,
) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    fail_at_step(monkeypatch, 17, error)
    code, err = run_cli(["train", str(recipe), "--run-dir", str(tmp_path / "run")], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("training ")]
    assert code == 1
    assert "Traceback" not in err
    failure = [line for line in lines if line.startswith("failed:")]
    assert len(failure) == 1 and words in failure[0], err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed" and info["step"] == 16 and info["error"]
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 10  # the last good one


def test_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    fail_at_step(monkeypatch, 3, RuntimeError("an unforeseen bug"))
    monkeypatch.setenv(cli.DEBUG_ENV, "")  # recorded, so the "1" that --debug sets is undone after the test
    monkeypatch.setattr(sys, "argv", ["ganbench", "--debug", "train", str(recipe), "--run-dir", str(tmp_path / "r")])
    with pytest.raises(RuntimeError, match="an unforeseen bug"):
        cli.main()
