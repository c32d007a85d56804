"""The training loop: run directory contents, exact resume after SIGKILL, refusal of changed recipes, divergence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from ganbench import recipe as recipes
from ganbench.errors import Diverged, RunDirError
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import train
from ganbench.train.schedule import lr_factor
from ganbench.train.stream import BatchStream

TIMING_COLUMNS = ["g_steps_per_s", "images_per_s", "wall_time"]


def _weights(run: RunDir) -> dict[str, torch.Tensor]:
    state = checkpoint.load(run.checkpoint_path("last"))
    flat = {f"G.{k}": v for k, v in state["G"].items()}
    flat.update({f"D.{k}": v for k, v in state["D"].items()})
    flat.update({f"G_ema.{k}": v for k, v in state["G_ema"].items()})
    return flat


def test_run_directory_contract(tiny_recipe_path: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    info = train(recipes.load(tiny_recipe_path, ["train.sample_every=10"]), run)
    assert info["status"] == "finished" and info["step"] == 30
    assert recipes.load(run.recipe_path).hash() == info["recipe_hash"]
    history = run.read_history()
    assert list(history["step"]) == [5, 10, 15, 20, 25, 30]
    for column in [
        "loss_d",
        "loss_g",
        "d_real",
        "d_fake",
        "grad_norm_real",
        "grad_norm_fake",
        "lr_d",
        "lr_g",
        *TIMING_COLUMNS,
    ]:
        assert history[column].notna().all(), column
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == [
        "last.pt",
        "manifest.json",
        "step-10.pt",
        "step-20.pt",
        "step-30.pt",
    ]
    assert sorted(p.name for p in run.samples_dir.iterdir()) == [
        "raw-step-0000010.png",
        "raw-step-0000020.png",
        "raw-step-0000030.png",
        "step-0000010.png",
        "step-0000020.png",
        "step-0000030.png",
    ]
    saved = json.loads(run.run_path.read_text())
    assert saved["environment"]["torch"] == torch.__version__


def test_finished_run_is_not_retrained(tiny_recipe_path: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    recipe = recipes.load(tiny_recipe_path)
    train(recipe, run)
    before = run.checkpoint_path("last").stat().st_mtime_ns
    assert train(recipe, run)["status"] == "finished"
    assert run.checkpoint_path("last").stat().st_mtime_ns == before


def test_changed_recipe_is_refused(tiny_recipe_path: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    train(recipes.load(tiny_recipe_path, ["train.steps=10"]), run)
    with pytest.raises(RunDirError, match="different recipe"):
        train(recipes.load(tiny_recipe_path, ["train.steps=10", "train.lr_d=5e-4"]), run)


def test_non_empty_foreign_directory_is_refused(tiny_recipe_path: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a run directory"):
        train(recipes.load(tiny_recipe_path), RunDir(tmp_path / "run"))


# Which checkpoint is best: hand-chosen FIDs, so the answer is known without any network being good.

FIDS = {  # step -> FID of each generator; raw is best at step 2, EMA at step 3, neither improves monotonically
    "raw": {1: 50.0, 2: 20.0, 3: 30.0, 4: 25.0},
    "ema": {1: 45.0, 2: 35.0, 3: 10.0, 4: 15.0},
}


class HandScores:
    """An in-training evaluator giving FIDS[generator][step]; it records which generators it was given."""

    def __init__(self) -> None:
        self.given: list[tuple[int, list[str]]] = []

    def factory(self, recipe: Any, run: RunDir, device: torch.device) -> HandScores:
        return self

    def __call__(self, step: int, generators: dict[str, torch.nn.Module]) -> list[dict[str, Any]]:
        self.given.append((step, sorted(generators)))
        return [
            {"step": step, "checkpoint": "in-training", "generator": kind, "metric": "fid", "value": FIDS[kind][step]}
            for kind in generators
        ]


def _nets(path: Path) -> dict[str, torch.Tensor]:
    state = checkpoint.load(path)
    return {f"{net}.{k}": v for net in ("G", "D", "G_ema") for k, v in (state[net] or {}).items()}


@pytest.mark.parametrize(
    ("ema_decay", "select", "best_step", "generator"),
    [(0.9, "ema", 3, "ema"), (0.9, "raw", 2, "raw"), (0.0, "ema", 2, "raw")],  # no EMA: the raw G decides
)
def test_best_checkpoint_is_the_selected_generators_lowest_fid(
    tiny_recipe_path: Path, tmp_path: Path, ema_decay: float, select: str, best_step: int, generator: str
) -> None:
    overrides = ["train.steps=4", "train.checkpoint_every=1", "eval.every=1", f"train.ema_decay={ema_decay}"]
    recipe = recipes.load(tiny_recipe_path, [*overrides, f"eval.select='{select}'"])
    run, scores = RunDir(tmp_path / "run"), HandScores()
    info = train(recipe, run, evaluator_factory=scores.factory)
    kinds = ["ema", "raw"] if ema_decay else ["raw"]
    assert scores.given == [(step, kinds) for step in (1, 2, 3, 4)]
    assert info["best"] == {
        "score": FIDS[generator][best_step],
        "step": best_step,
        "metric": "fid",
        "generator": generator,
    }
    best, at_step = _nets(run.checkpoint_path("best")), _nets(run.checkpoint_path(best_step))
    assert checkpoint.load(run.checkpoint_path("best"))["step"] == best_step
    assert best.keys() == at_step.keys() and all(torch.equal(best[k], at_step[k]) for k in best)
    later = _nets(run.checkpoint_path(4))  # the weights did move on: the comparison above can tell steps apart
    assert not all(torch.equal(best[k], later[k]) for k in best)


# Resume: the rows written after the last checkpoint are recomputed, never duplicated.


class StopAfter:
    """A progress bar that raises KeyboardInterrupt once `step` G steps are done (before that step is logged)."""

    def __init__(self, step: int) -> None:
        self.step, self.done = step, 0

    def start(self, task: str, total: int | None, completed: int = 0) -> None:
        self.done = completed

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        if n and self.done == self.step:
            raise KeyboardInterrupt

    def finish(self) -> None:
        pass


ROW_TIMING = ["time", "wall_time_s"]


@pytest.mark.parametrize("stop_at", [6, 3], ids=["after-checkpoint-4", "before-any-checkpoint"])
def test_resume_keeps_exactly_the_rows_of_an_uninterrupted_run(
    tiny_recipe_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at: int
) -> None:
    from ganbench.evaluation import TrainingEvaluator
    from ganbench.train import loop

    monkeypatch.setattr(loop, "HISTORY_FLUSH_SECONDS", 0.0)  # every log line on disk: rows past the checkpoint
    overrides = ["train.steps=8", "train.checkpoint_every=4", "train.log_every=1", "eval.every=1"]
    recipe = recipes.load(tiny_recipe_path, [*overrides, "eval.num_samples=400"])
    straight = RunDir(tmp_path / "straight")
    train(recipe, straight, evaluator_factory=TrainingEvaluator)

    resumed = RunDir(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(recipe, resumed, StopAfter(stop_at), TrainingEvaluator)
    saved = checkpoint.newest_valid(resumed)
    assert (saved["step"] if saved else 0) == (4 if stop_at > 4 else 0)
    assert resumed.read_history()["step"].max() == stop_at - 1  # rows past the checkpoint, to be replaced
    assert resumed.read_metrics()["step"].max() == stop_at - 1

    info = train(recipe, resumed, evaluator_factory=TrainingEvaluator)
    assert info["status"] == "finished"
    history = [run.read_history().drop(columns=TIMING_COLUMNS) for run in (straight, resumed)]
    pd.testing.assert_frame_equal(history[0], history[1])
    metrics = [run.read_metrics().drop(columns=ROW_TIMING) for run in (straight, resumed)]
    pd.testing.assert_frame_equal(metrics[0], metrics[1])
    assert info["best"] == straight.read_run()["best"]
    best = [_nets(run.checkpoint_path("best")) for run in (straight, resumed)]
    assert all(torch.equal(best[0][k], best[1][k]) for k in best[0])


KILLER = """
import os, signal, sys
from ganbench.train import loop

loop.HISTORY_FLUSH_SECONDS = 0.0  # flush every log line: rows past the checkpoint exist when it dies
original = loop.Trainer._g_step

def dying_g_step(self, totals):
    if self.state.step == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, totals)

loop.Trainer._g_step = dying_g_step
from ganbench.cli import main
sys.argv = ["ganbench", "train", {recipe!r}, "--run-dir", {run!r}]
main()
"""


def test_resume_after_sigkill_is_exact(tiny_recipe_path: Path, tmp_path: Path) -> None:
    recipe = recipes.load(tiny_recipe_path)
    straight = RunDir(tmp_path / "straight")
    train(recipe, straight)

    resumed = RunDir(tmp_path / "resumed")
    script = KILLER.format(kill_at=25, recipe=str(tiny_recipe_path), run=str(resumed.root))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert checkpoint.load(resumed.checkpoint_path("last"))["step"] == 20
    assert resumed.read_history()["step"].max() == 25  # rows past the checkpoint, to be replaced
    assert resumed.read_run()["status"] == "running"

    info = train(recipe, resumed)
    assert info["status"] == "finished"
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history_a = straight.read_history().drop(columns=TIMING_COLUMNS)
    history_b = resumed.read_history().drop(columns=TIMING_COLUMNS)
    pd.testing.assert_frame_equal(history_a, history_b)


def test_resume_skips_a_damaged_last_checkpoint(tiny_recipe_path: Path, tmp_path: Path) -> None:
    recipe = recipes.load(tiny_recipe_path)
    straight = RunDir(tmp_path / "straight")
    train(recipe, straight)
    run = RunDir(tmp_path / "run")
    train(recipes.load(tiny_recipe_path, ["train.steps=30"]), run)
    # Pretend the run died at step 20 while writing last.pt: last.pt is truncated, step-20.pt is whole.
    (run.checkpoints_dir / "step-30.pt").unlink()
    run.checkpoint_path("last").write_bytes(run.checkpoint_path("last").read_bytes()[:100])
    run.update_run(status="running", step=20)
    with pytest.warns(RuntimeWarning, match="last.pt"):  # the user is told which file was passed over
        assert checkpoint.newest_valid(run)["step"] == 20
    with pytest.warns(RuntimeWarning, match="last.pt"):
        train(recipe, run)
    a, b = _weights(straight), _weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_divergence_stops_with_status_and_keeps_the_last_good_checkpoint(
    tiny_recipe_path: Path, tmp_path: Path
) -> None:
    run = RunDir(tmp_path / "run")
    recipe = recipes.load(
        tiny_recipe_path,
        ["method.name=none", "loss.name=wasserstein", "train.lr_d=1e30", "train.lr_g=1e30", "train.steps=200"],
    )
    with pytest.raises(Diverged):
        train(recipe, run)
    assert run.read_run()["status"] == "diverged"
    for _, path in run.step_checkpoints():
        state = checkpoint.load(path)
        assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())


def test_batch_stream_covers_each_epoch_once_and_restores() -> None:
    stream = BatchStream(10, 3, seed=1)
    first_epoch = torch.cat([stream.next()[0] for _ in range(3)])
    assert sorted(first_epoch.tolist()) == sorted(set(first_epoch.tolist()))
    state = stream.state_dict()
    ahead = [stream.next() for _ in range(5)]
    again = BatchStream(10, 3, seed=1)
    again.load_state_dict(state)
    for indices, flips in ahead:
        other_indices, other_flips = again.next()
        assert torch.equal(indices, other_indices) and torch.equal(flips, other_flips)


def test_batch_stream_flips_half_of_the_samples_independently_of_the_order() -> None:
    stream = BatchStream(20_000, 10_000, seed=4)
    (first, flips), (second, second_flips) = stream.next(), stream.next()
    flips = torch.cat([flips, second_flips]).double()
    assert abs(flips.mean().item() - 0.5) < 0.015  # 4.2 standard deviations of a fair coin over 20k draws
    # each image flipped or not per epoch, whatever its position: flags do not follow the image index
    by_index = torch.zeros(20_000, dtype=torch.float64).index_put_((torch.cat([first, second]),), flips)
    assert abs(by_index[:10_000].mean().item() - 0.5) < 0.02


def test_linear_decay_reaches_zero() -> None:
    assert lr_factor("linear", 0, 100) == 1.0
    assert lr_factor("linear", 50, 100) == 0.5
    assert lr_factor("linear", 100, 100) == 0.0
    assert lr_factor("none", 99, 100) == 1.0
