"""Evaluation end to end: in-training rows, `evaluate_run` on a real run directory, skip and --force, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ganbench import recipe as recipes
from ganbench.cli import app
from ganbench.errors import MetricError
from ganbench.metrics.evaluate import evaluate_run
from ganbench.store import RunDir
from ganbench.train.loop import train
from tests.test_metrics_extractor import TinyTrunk

runner = CliRunner()


@pytest.fixture
def trunk(tmp_path: Path) -> str:
    torch.manual_seed(0)
    path = tmp_path / "trunk.pt"
    torch.jit.script(TinyTrunk()).save(str(path))
    return str(path)


def test_in_training_evaluation_writes_rows_and_best(tiny_recipe_path: Path, tmp_path: Path) -> None:
    from ganbench.metrics.evaluate import TrainingEvaluator

    run = RunDir(tmp_path / "run")
    recipe = recipes.load(tiny_recipe_path, ["eval.every=10", "eval.num_samples=500"])
    info = train(recipe, run, evaluator_factory=TrainingEvaluator)
    metrics = run.read_metrics()
    assert set(metrics["metric"]) == {"modes_covered", "hq_percent"}
    assert set(metrics["generator"]) == {"raw", "ema"}
    assert sorted(metrics["step"].unique()) == [10, 20, 30]
    assert (metrics["checkpoint"] == "in-training").all()
    assert metrics["fingerprint"].nunique() == 2  # one protocol per generator
    assert info["best"]["generator"] == "ema" and run.checkpoint_path("best").exists()


def test_evaluate_run_appends_skips_and_forces(tiny_recipe_path: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    train(recipes.load(tiny_recipe_path), run)
    rows = evaluate_run(run, checkpoints="all", num_samples=400)
    assert sorted(rows["step"].unique()) == [10, 20, 30]
    assert set(rows["checkpoint"]) == {"step-10", "step-20", "step-30"}
    assert evaluate_run(run, checkpoints="all", num_samples=400).empty  # already scored
    assert len(evaluate_run(run, checkpoints="last", num_samples=400, force=False)) == 2
    assert len(evaluate_run(run, checkpoints="last", num_samples=400, force=True)) == 2
    assert len(evaluate_run(run, checkpoints="20", num_samples=800)) == 2  # another protocol: n_fake differs
    assert len(run.read_metrics()) == 3 * 2 + 2 + 2 + 2


def test_missing_checkpoint_is_named(tiny_recipe_path: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    train(recipes.load(tiny_recipe_path), run)
    with pytest.raises(MetricError, match="best.pt does not exist"):
        evaluate_run(run, checkpoints="best")


SHAPES = """
name = "shapes-smoke"
[data]
name = "shapes"
num_samples = 64
size = 32
[model]
arch = "cnn32"
z_dim = 8
g_channels = 8
d_channels = 8
[method]
name = "sn"
[loss]
name = "hinge"
[train]
steps = 4
batch_size_d = 8
batch_size_g = 8
log_every = 2
checkpoint_every = 2
sample_every = 2
[eval]
metrics = ["fid", "kid", "pr"]
num_samples = 40
batch_size = 16
"""


def test_image_evaluation_with_a_local_trunk_through_the_cli(
    tmp_path: Path, trunk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ganbench.metrics.evaluate.KID_SUBSET_SIZE", 20)
    recipe = tmp_path / "shapes.toml"
    recipe.write_text(SHAPES)
    run_dir = tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--run-dir", str(run_dir)]).exit_code == 0
    result = runner.invoke(app, ["eval", str(run_dir), "--checkpoint", "last", "--inception-weights", trunk])
    assert result.exit_code == 0, result.output
    metrics = RunDir(run_dir).read_metrics()
    assert set(metrics["metric"]) == {"fid", "kid_mean", "kid_std", "precision", "recall"}
    assert (metrics["extractor"] == "torchscript-trunk").all()
    assert (metrics["n_fake"] == 40).all() and (metrics["n_real"] == 64).all()
    assert metrics.loc[metrics["metric"] == "fid", "value"].iloc[0] > 0

    refused = runner.invoke(
        app, ["eval", str(run_dir), "--checkpoint", "last", "--inception-weights", trunk, "--metrics", "fid,is"]
    )
    assert refused.exit_code == 2
    assert "no 1008-class head" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    exported = tmp_path / "ref.npz"
    stats = runner.invoke(app, ["stats", "shapes", "--inception-weights", trunk, "--export", str(exported)])
    assert stats.exit_code == 0, stats.output
    assert exported.exists()
