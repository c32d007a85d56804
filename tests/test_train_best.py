"""best.pt and the run-directory contract as the trainer writes them: hand-given scores with known answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ganbench import recipe as recipes
from ganbench.store import HISTORY_COLUMNS, RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import train

IS = {"raw": {1: 3.0, 2: 6.0, 3: 5.0, 4: 6.0}, "ema": {1: 4.0, 2: 4.5, 3: 7.0, 4: 2.0}}  # raw ties at 2 and 4


class Scores:
    """An in-training evaluator that gives one metric's hand-chosen value per generator and step."""

    def __init__(self, metric: str, values: dict[str, dict[int, float]]) -> None:
        self.metric, self.values = metric, values

    def factory(self, recipe: Any, run: RunDir, device: torch.device) -> Scores:
        return self

    def __call__(self, step: int, generators: dict[str, torch.nn.Module]) -> list[dict[str, Any]]:
        return [
            {"step": step, "checkpoint": "in-training", "generator": kind, "metric": self.metric, "value": v}
            for kind in generators
            for v in [self.values[kind][step]]
        ]


def _train(tiny_recipe_path: Path, tmp_path: Path, scores: Scores, select: str) -> tuple[RunDir, dict[str, Any]]:
    overrides = ["train.steps=4", "train.checkpoint_every=1", "eval.every=1", f"eval.select='{select}'"]
    run = RunDir(tmp_path / "run")
    info = train(recipes.load(tiny_recipe_path, overrides), run, evaluator_factory=scores.factory)
    return run, dict(info)


def _same_weights(a: Path, b: Path) -> bool:
    left, right = checkpoint.load(a), checkpoint.load(b)
    return all(torch.equal(left["G"][k], right["G"][k]) for k in left["G"])


@pytest.mark.parametrize(("select", "step"), [("ema", 3), ("raw", 2)])  # raw: the earlier of two equal IS
def test_without_fid_best_pt_is_the_highest_inception_score(
    tiny_recipe_path: Path, tmp_path: Path, select: str, step: int
) -> None:
    run, info = _train(tiny_recipe_path, tmp_path, Scores("is_mean", IS), select)
    assert info["best"] == {"score": -IS[select][step], "step": step, "metric": "is_mean", "generator": select}
    assert checkpoint.load(run.checkpoint_path("best"))["step"] == step
    assert _same_weights(run.checkpoint_path("best"), run.checkpoint_path(step))


def test_with_no_ranked_metric_best_pt_is_the_last_evaluation(tiny_recipe_path: Path, tmp_path: Path) -> None:
    kid = {kind: {1: 0.01, 2: 0.5, 3: 0.02, 4: 0.3} for kind in ("raw", "ema")}
    run, info = _train(tiny_recipe_path, tmp_path, Scores("kid_mean", kid), "ema")
    assert info["best"]["step"] == 4 and info["best"]["metric"] == "step"
    assert checkpoint.load(run.checkpoint_path("best"))["step"] == 4


def test_history_has_exactly_the_declared_columns(tiny_recipe_path: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    train(recipes.load(tiny_recipe_path, ["train.steps=10"]), run)
    assert list(run.read_history().columns) == list(HISTORY_COLUMNS)
