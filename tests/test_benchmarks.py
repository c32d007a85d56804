"""The benchmark scripts run (tiny sizes, on the CPU) and the fast evaluation keeps the reference path's FID."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from ganbench.data import DATASETS
from ganbench.metrics import inception
from ganbench.metrics.inception import build_extractor
from ganbench.metrics.refstats import reference_statistics
from ganbench.train.checkpoint import build_generator
from tests.test_metrics_evaluate import image_recipe
from tests.test_metrics_inception import save_tiny_trunk

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


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


def test_step_speed_times_both_steps(tmp_path: Path) -> None:
    out = tmp_path / "steps.json"
    tiny = ["--set", "train.batch_size_d=4", "--set", "train.batch_size_g=4", "--set", "model.g_channels=8"]
    args = ["--recipes", "cifar10_cnn_gn", "--steps", "2", "--repeats", "2", "--images", "32", "--workers", "0"]
    assert (
        _script("step_speed").main([*args, *tiny, "--set", "model.d_channels=8", "--device", "cpu", "--out", str(out)])
        == 0
    )
    (result,) = json.loads(out.read_text())["results"]
    assert len(result["ganbench_rates"]) == 2 and len(result["reference_rates"]) == 2
    assert result["ganbench_g_steps_per_s"] > 0 and result["reference_g_steps_per_s"] > 0


def test_fast_evaluation_gives_the_reference_paths_fid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inception, "POOL_DIM", 16)
    extractor = build_extractor("torch-fidelity", str(save_tiny_trunk(tmp_path / "trunk.pt", out=16)), "cpu")
    recipe = image_recipe(["fid"])
    ref = reference_statistics(recipe.data, extractor, batch_size=16)
    torch.manual_seed(0)
    result = _script("eval_speed").compare_paths(
        recipe, build_generator(recipe), extractor, ref, 64, torch.device("cpu")
    )
    assert result["ganbench_fid"] > 0
    assert result["fid_difference"] <= 1e-6 * result["reference_fid"]  # the issue allows 0.01
