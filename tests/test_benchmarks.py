"""The benchmark scripts run (tiny sizes, on the CPU) and the fast evaluation keeps the reference path's FID."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from ganbench.data import DATASETS
from ganbench.metrics import inception
from ganbench.metrics.inception import build_extractor
from ganbench.metrics.refstats import reference_statistics
from ganbench.train import loop
from ganbench.train.checkpoint import build_generator
from ganbench.train.fast import StepRunner
from tests.test_metrics_evaluate import image_recipe
from tests.test_metrics_inception import save_tiny_trunk

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PARTS = ("generate", "features", "statistics", "sqrt")


@pytest.fixture(autouse=True)
def _scripts_registry_kept_apart(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The scripts register a random-image dataset: keep it out of the registry the other tests see."""
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    yield
    sys.modules.pop("common", None)


def _script(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


class FakeClock:
    """A perf_counter that moves only when told: the harnesses' arithmetic checked against known intervals."""

    def __init__(self) -> None:
        self.now = 1000.0
        names = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
        self.module = SimpleNamespace(**{**names, "perf_counter": lambda: self.now})


TINY_STEP = ["--set", "train.batch_size_d=4", "--set", "train.batch_size_g=4", "--set", "model.g_channels=8"]


def test_step_speed_reports_the_rates_of_its_clock_and_runs_cr_in_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ganbench's G step takes 0.5 s and the reference's 0.25 s on a fake clock: each timed repeat must read 2 and 4
    G-steps/s, the warm-up repeat none, images/s follow from the batch, and CR runs in every reference D step."""
    module = _script("step_speed")
    clock = FakeClock()
    monkeypatch.setattr(module, "time", clock.module)
    monkeypatch.setattr(loop, "time", clock.module)
    runner_call, reference_step, transform = StepRunner.__call__, module.ReferenceTrainer.step, module.cr_transform
    counts = {"reference": 0, "cr": 0}

    def timed_runner(self: StepRunner) -> None:
        runner_call(self)
        clock.now += 0.5

    def timed_reference(self: object) -> None:
        reference_step(self)
        counts["reference"] += 1
        clock.now += 0.25

    def counted_transform(*args: object) -> torch.Tensor:
        counts["cr"] += 1
        return transform(*args)

    monkeypatch.setattr(StepRunner, "__call__", timed_runner)
    monkeypatch.setattr(module.ReferenceTrainer, "step", timed_reference)
    monkeypatch.setattr(module, "cr_transform", counted_transform)
    out = tmp_path / "steps.json"
    args = ["--recipes", "cifar10_cnn_gn_cr", "--steps", "2", "--repeats", "3", "--images", "32", "--workers", "0"]
    sizes = [*TINY_STEP, "--set", "model.d_channels=8", "--set", "train.n_dis=2"]
    assert module.main([*args, *sizes, "--device", "cpu", "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["ganbench_rates"] == [2.0, 2.0, 2.0] and result["reference_rates"] == [4.0, 4.0, 4.0]
    assert result["ratio"] == 0.5 and result["images_per_g_step"] == 8  # batch_size_d 4, n_dis 2
    assert result["ganbench_images_per_s"] == 16.0 and result["reference_images_per_s"] == 32.0
    assert counts["reference"] == 2 * (3 + 1)  # the warm-up repeat ran too, untimed
    assert counts["cr"] == counts["reference"] * 2  # one CR term per D step (no bCR)
    assert result["ganbench_step_path"] == "eager"


def test_the_reference_cr_transform_quantizes_flips_and_moves_the_content_with_black_fill() -> None:
    """One 4 x 5 image off the uint8 grid, flipped and moved one pixel right and one up, worked out by hand; a
    second sample neither flipped nor moved."""
    module = _script("step_speed")
    levels = torch.arange(20, dtype=torch.float64).view(1, 1, 4, 5) * 12  # 0 … 228
    x = ((levels + 0.3) / 127.5 - 1).repeat(2, 1, 1, 1)  # 0.3 of a level off the grid
    flips = torch.tensor([True, False])
    # translate 0.25: shift_x = round((2·0.9 − 1)·0.25·5) = 1 (right), shift_y = round((2·0 − 1)·0.25·4) = −1 (up)
    u = torch.tensor([[0.9, 0.0], [0.5, 0.5]], dtype=torch.float64)
    out = module.cr_transform(x, flips, u, 0.25)
    on_grid = levels[0, 0] / 127.5 - 1
    expected = torch.full((4, 5), -1.0, dtype=torch.float64)
    for row in range(4):
        for col in range(5):
            source_row, source_col = row + 1, col - 1  # content moved down −1 and right +1
            if 0 <= source_row < 4 and 0 <= source_col < 5:
                expected[row, col] = on_grid[source_row, 4 - source_col]  # flipped: column c reads 4 − c
    torch.testing.assert_close(out[0, 0], expected)
    torch.testing.assert_close(out[1, 0], on_grid)


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_fast_evaluation_gives_the_reference_paths_fid_and_a_breakdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bn_mode: str
) -> None:
    """64 samples: in "batch" mode G's batch of 24 leaves a last batch of 16 that is filled up (and its extra images
    dropped) on both paths, each written on its own."""
    monkeypatch.setattr(inception, "POOL_DIM", 16)
    extractor = build_extractor("torch-fidelity", str(save_tiny_trunk(tmp_path / "trunk.pt", out=16)), "cpu")
    recipe = image_recipe(["fid"])
    recipe = dataclasses.replace(
        recipe,
        train=dataclasses.replace(recipe.train, batch_size_g=24),
        eval=dataclasses.replace(recipe.eval, bn_mode=bn_mode),
    )
    ref = reference_statistics(recipe.data, extractor, batch_size=16)
    torch.manual_seed(0)
    generator = build_generator(recipe)
    reports: list[dict] = []

    def keep(partial: dict) -> None:
        reports.append(dict(partial))

    module = _script("eval_speed")
    result = module.compare_paths(recipe, generator, extractor, ref, 64, torch.device("cpu"), keep)
    first, _, last = (set(report) for report in reports)
    assert result["ganbench_fid"] > 0
    assert result["fid_difference"] <= 1e-6 * result["reference_fid"]  # the issue allows 0.01
    assert abs(result["ganbench_staged_fid"] - result["ganbench_fid"]) <= 1e-6 * result["ganbench_fid"]
    for side in ("reference", "ganbench"):
        assert list(result[f"{side}_parts_s"]) == ["generate", "features", "statistics", "sqrt"]
    assert result["reference_s"] >= sum(result["reference_parts_s"].values())  # the parts lie inside the pass
    assert "ganbench_fid" in first and "reference_fid" not in first and last == set(result)  # partial, then all


def test_the_gpu_check_stops_a_stage_at_its_cap_and_keeps_what_it_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _script("gpu_check")

    def too_slow(sizes: object, work: Path, cap: float, record: object) -> None:
        record.set(measured=1)  # type: ignore[attr-defined]
        time.sleep(120)

    def broken(sizes: object, work: Path, cap: float, record: object) -> None:
        record.set(measured=2)  # type: ignore[attr-defined]
        raise ValueError("the stage broke")

    monkeypatch.setitem(module.STAGE_FUNCTIONS, "step_speed", too_slow)
    monkeypatch.setitem(module.STAGE_FUNCTIONS, "eval_speed", broken)
    start = time.monotonic()
    slow = module._run_stage("step_speed", 1.0, tmp_path, True)
    assert time.monotonic() - start < 8  # stopped at its cap, not after its two minutes
    assert slow["status"] == "timed out after 1 s (partial results)" and slow["measured"] == 1
    failed = module._run_stage("eval_speed", 60.0, tmp_path, True)
    assert failed["status"] == "failed (exit code 1)" and failed["measured"] == 2
    assert "ValueError: the stage broke" in failed["log_tail"]

    module.drive(tmp_path / "results", tmp_path / "work", budget=5, dry=True, only=["fid_train_test"])
    report = json.loads((tmp_path / "results" / "gpu_check.json").read_text())
    assert report["stages"] == {"fid_train_test": {"status": "skipped: the budget was spent", "seconds": 0, "cap_s": 0}}
    assert "| fid_train_test | skipped: the budget was spent |" in (tmp_path / "results" / "gpu_check.md").read_text()


@pytest.mark.slow
def test_the_gpu_check_dry_run_runs_every_stage_and_writes_both_reports(tmp_path: Path) -> None:
    """benchmarks/gpu_check.sh --dry-run: every stage on the CPU at tiny sizes with stand-in data and Inception, so
    the script the GPU machine runs cannot rot unnoticed (half a minute on two busy cores)."""
    results = tmp_path / "results"
    env = {**os.environ, "GPU_CHECK_RESULTS": str(results), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh"), "--dry-run"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = (results / "gpu_check.json").read_text()
    report = json.loads(text)
    assert {"gpu", "torch", "cuda", "date", "commit", "dry_run", "budget_s", "wall_s"} <= set(report["meta"])
    assert report["meta"]["dry_run"] is True and "gpu_check-" not in text  # the scratch folder is named <work>
    stages = report["stages"]
    assert list(stages) == ["gpu_tests", "fid_train_test", "step_speed", "resume_run", "eval_speed"]
    assert {name: stage["status"] for name, stage in stages.items()} == dict.fromkeys(stages, "ok")

    assert any("test_train_fast.py::test_the_first_replayed_step" in test for test in stages["gpu_tests"]["tests"])
    assert stages["fid_train_test"]["train_images"] == 30 and stages["fid_train_test"]["test_images"] == 20
    assert stages["fid_train_test"]["fid"] >= 0 and stages["fid_train_test"]["within_tolerance"] is None
    speeds = stages["step_speed"]["results"]
    assert [r["recipe"] for r in speeds] == ["cifar10_cnn_gn", "cifar10_resnet_gn"]
    assert all(r["reference_images_per_s"] == r["reference_g_steps_per_s"] * r["images_per_g_step"] for r in speeds)

    run = stages["resume_run"]
    assert run["stopped"]["exit_code"] == 130 and run["stopped"]["status"] == "interrupted"
    assert 0 < run["stopped"]["step"] < run["steps"] and run["resumed"]["status"] == "finished"
    comparison = run["comparison"]
    assert comparison["both_at_final_step"] and comparison["same_data_position"] and comparison["same_torch_rng"]
    assert comparison["same_logged_steps"] and comparison["logged_steps_unique"]
    assert run["ema_fid"]["straight"] == pytest.approx(run["ema_fid"]["resumed"])  # on the CPU: the same run

    evaluation = stages["eval_speed"]
    assert evaluation["fid_difference"] <= 1e-6 * evaluation["reference_fid"] and "<work>" in evaluation["generator"]
    assert set(evaluation["ganbench_parts_s"]) == set(evaluation["reference_parts_s"]) == set(PARTS)

    markdown = (results / "gpu_check.md").read_text()
    for heading in ("## GPU tests", "## FID(train, test)", "## Training step speed", "## Stopped and resumed"):
        assert heading in markdown
    assert "## FID evaluation" in markdown
