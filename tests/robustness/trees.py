"""Helpers of the bad-input tests: tiny trained runs, the real command line (a new interpreter, or main() in this
one), and file trees compared byte for byte before and after a command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from ganbench import cli
from ganbench import recipe as recipes
from ganbench.evaluation import TrainingEvaluator
from ganbench.store import RunDir
from ganbench.train.loop import train

# A run of 2-D points without EMA, evaluated in training (metrics.parquet) and checkpointed: about a second.
POINTS = """
name = "tiny"
seed = 1
[data]
name = "ring8"
num_samples = 200
[model]
arch = "mlp"
z_dim = 4
g_channels = 8
d_channels = 8
[train]
steps = 4
batch_size_d = 16
batch_size_g = 16
ema_decay = 0.0
log_every = 2
sample_every = 0
checkpoint_every = 2
device = "cpu"
[eval]
every = 2
num_samples = 100
metrics = ["modes"]
"""

# A run of images without EMA (no evaluation: scoring images needs Inception weights).
IMAGES = """
name = "tiny-images"
[data]
name = "shapes"
num_samples = 32
[model]
arch = "cnn32"
z_dim = 8
g_channels = 8
d_channels = 8
[train]
steps = 2
batch_size_d = 8
batch_size_g = 8
ema_decay = 0.0
log_every = 1
sample_every = 0
checkpoint_every = 2
device = "cpu"
[eval]
every = 0
num_samples = 64
"""


def train_run(root: Path, text: str) -> Path:
    """Train `text` into root/run and write it beside as root/recipe.toml; returns the run directory."""
    (root / "recipe.toml").write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GANBENCH_CACHE", str(root / "cache"))
        train(recipes.loads(text), RunDir(root / "run"), evaluator_factory=TrainingEvaluator)
    return root / "run"


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, symlinks=True)
    return to


def damage_run_json(run: Path, key: str, value: Any) -> None:
    """Set run.json's `key` (dotted for a field of a table: best.step) to `value`."""
    path = run / "run.json"
    info = json.loads(path.read_text())
    *tables, last = key.split(".")
    node = info
    for name in tables:
        node = node[name]
    node[last] = value
    path.write_text(json.dumps(info, indent=2))


def damage_recipe(run: Path, key: str, value: Any) -> None:
    """Set recipe.toml's `key` (dotted: train.steps; a section name replaces the whole table) to `value`."""
    import tomllib

    path = run / "recipe.toml"
    tree = tomllib.loads(path.read_text())
    *tables, last = key.split(".")
    node = tree
    for name in tables:
        node = node[name]
    node[last] = value
    path.write_text(tomli_w.dumps(tree))


def snapshot(root: Path) -> dict[str, bytes | str | None]:
    """Every file (its bytes), link (its target) and folder (None) below `root`, hidden ones included."""
    found: dict[str, bytes | str | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            found[rel] = None
        else:
            found[rel] = path.read_bytes()
    return found


def assert_unchanged(root: Path, before: dict[str, bytes | str | None]) -> None:
    """No file, folder or link below `root` appeared, went away or changed a byte since `before`."""
    after = snapshot(root)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(name for name in set(before) & set(after) if before[name] != after[name])
    assert (added, removed, changed) == ([], [], []), f"added {added}, removed {removed}, changed {changed}"


@dataclass
class Done:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """stderr's lines, blank ones left out."""
        return [line for line in self.err.splitlines() if line.strip()]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GANBENCH_DEBUG", "GANBENCH_INCEPTION_WEIGHTS")}
    return env | {"OMP_NUM_THREADS": "1", "COLUMNS": "200"} | extra


def ganbench(*args: str | Path, cwd: Path, **env: str) -> Done:
    """`python -m ganbench ARGS` in a new interpreter, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "ganbench", *map(str, args)],
        cwd=cwd,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def ganbench_here(
    *args: str | Path, cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Done:
    """The same command line through the console script's main() in this interpreter (no torch import to pay)."""
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.chdir(cwd)
        patch.setattr(sys, "argv", ["ganbench", *map(str, args)])
        patch.delenv("GANBENCH_DEBUG", raising=False)
        patch.delenv("GANBENCH_INCEPTION_WEIGHTS", raising=False)
        patch.setenv("COLUMNS", "200")
        with pytest.raises(SystemExit) as exited:
            cli.main()
    captured = capsys.readouterr()
    code = exited.value.code
    return Done(code if isinstance(code, int) else 1, captured.out, captured.err)
