"""benchmarks/real_cpu.py: the CPU run changes only the keys it says it changes, and the official CNN generator's
weights load into ganbench's generator as the same function."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from ganbench import recipe as recipes
from ganbench.checkpoints import build_generator
from ganbench.report.collect import flatten

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "real_cpu.py"


@pytest.fixture(scope="module")
def real_cpu() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_real_cpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("benchmarks_real_cpu", None)


@pytest.mark.parametrize("method", ["gn", "sn", "pgn"])
def test_the_cpu_run_keeps_every_other_key_of_the_paper_recipe(real_cpu: ModuleType, method: str) -> None:
    args = real_cpu.argparse.Namespace(
        batch_d=16, batch_g=32, steps=500, eval_every=250, num_samples=1000, ref_num=5000
    )
    paper = flatten(recipes.load(real_cpu.recipe_path(method)).to_dict())
    cpu = flatten(recipes.load(real_cpu.recipe_path(method), real_cpu.cpu_overrides(args, 0)).to_dict())
    changed = {key for key in paper if paper[key] != cpu[key]}
    assert changed == {
        "data.name",
        "train.batch_size_d",
        "train.batch_size_g",
        "train.steps",
        "train.checkpoint_every",
        "train.sample_every",
        "train.log_every",
        "train.device",
        "eval.every",
        "eval.num_samples",
        "eval.metrics",
        "eval.ref_num",
    }
    assert (cpu["method.name"], cpu["loss.name"], cpu["train.lr_d"], cpu["train.beta2"]) == (method, "bce", 2e-4, 0.9)
    assert (cpu["train.batch_size_d"], cpu["train.batch_size_g"], cpu["eval.ref_num"]) == (16, 32, 5000)


class OfficialLayoutGenerator(nn.Module):
    """The GN-GAN code's 32 px CNN generator as its parameter names lay it out: linear to 512·4·4, then `main` with
    BatchNorm-ReLU and three stride-2 transposed convolutions, and a stride-1 3 x 3 transposed convolution to RGB."""

    def __init__(self, z_dim: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(z_dim, 4 * 4 * 512)
        layers: list[nn.Module] = [nn.BatchNorm2d(512), nn.ReLU()]
        for c_in, c_out in ((512, 256), (256, 128), (128, 64)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(64, 3, 3, 1, 1), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(self.linear(z).view(len(z), 512, 4, 4))


def test_official_generator_weights_give_the_same_images_in_ganbench_generator(real_cpu: ModuleType) -> None:
    torch.manual_seed(0)
    official = OfficialLayoutGenerator()
    for module in official.modules():  # BatchNorm affine and running statistics away from 1/0, so they matter
        if isinstance(module, nn.BatchNorm2d):
            for tensor in (module.weight, module.bias, module.running_mean):
                nn.init.uniform_(tensor, 0.5, 1.5)
    recipe = recipes.load(real_cpu.recipe_path("gn"), ["data.name=cifar10"])
    ours = build_generator(recipe)
    ours.load_state_dict(real_cpu.official_generator_state(official.state_dict()))
    z = torch.randn(6, 128)
    for train_mode in (True, False):  # batch statistics (as sampled for the metrics) and running statistics
        official.train(train_mode)
        ours.train(train_mode)
        with torch.no_grad():
            torch.testing.assert_close(ours(z), official(z), rtol=0, atol=1e-5)


def test_generators_share_scores_only_when_every_weight_and_buffer_is_equal(real_cpu: ModuleType) -> None:
    """The step-0 generators of the three methods take over one another's scores: the digest must see every
    parameter and buffer (a BatchNorm running statistic changes running-mode samples), by value."""
    torch.manual_seed(0)
    first = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    same = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    same.load_state_dict(first.state_dict())
    assert real_cpu.generator_digest(first) == real_cpu.generator_digest(same)
    for name in ["0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var", "1.num_batches_tracked"]:
        other = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        other.load_state_dict(first.state_dict())
        tensor = other.state_dict()[name]
        tensor.view(-1)[0] += 1 if not tensor.is_floating_point() else 1e-6
        assert real_cpu.generator_digest(other) != real_cpu.generator_digest(first), name


def test_merging_without_training_scores_only_runs_that_exist(real_cpu: ModuleType, tmp_path: Path) -> None:
    """GN trained with seeds 0-2 and SN with seed 0 only: a --no-train merge over both methods and all three seeds
    must not score SN seeds 1 and 2 (their step-0 G would enter the results as runs that never trained)."""
    for name in ("gn-seed0", "gn-seed1", "gn-seed2", "sn-seed0"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text("{}")
    (tmp_path / "sn-seed1").mkdir()  # a folder without run.json is not a run
    args = real_cpu.argparse.Namespace(runs=tmp_path, no_train=True)
    pairs = real_cpu.runs_to_score(["gn", "sn"], [0, 1, 2], args)
    assert pairs == [("gn", 0), ("gn", 1), ("gn", 2), ("sn", 0)]
    args.no_train = False  # training makes every pair
    assert len(real_cpu.runs_to_score(["gn", "sn"], [0, 1, 2], args)) == 6


def test_merged_results_keep_the_commands_that_measured_them(real_cpu: ModuleType, tmp_path: Path) -> None:
    settings = {"command": "real_cpu.py --no-train --import-scores DIR", "overrides": ["x"], "eval_steps": [0, 8]}
    args = real_cpu.argparse.Namespace(out=tmp_path / "out", num_samples=10, ref_num=20, steps=8)
    writer = real_cpu.Writer(args, settings)
    row = {"source": "ganbench", "method": "gn", "seed": 1, "step": 8, "fid": 1.0, "kid_mean": 0.0, "kid_std": 0.0}
    measured = {**settings, "command": "real_cpu.py --methods gn --seeds 1", "scores": [row]}
    merged_only = {**settings, "command": "real_cpu.py --no-train --import-scores DIR", "scores": []}
    for i, document in enumerate((measured, merged_only, {**measured, "commands": ["a", "b"]})):
        (tmp_path / f"{i}.json").write_text(real_cpu.json.dumps(document))
        writer.merge(tmp_path / f"{i}.json")
    assert writer.commands == ["real_cpu.py --methods gn --seeds 1", "a", "b"]
    assert [r["seed"] for r in writer.rows] == [1]
    writer.add("ganbench", "gn", 2, 0, {"fid": 2.0, "kid_mean": 0.0, "kid_std": 0.0, "same_weights_as": "x"}, 0, "d")
    assert "real_cpu.py --no-train --import-scores DIR" not in writer.commands  # took over scores, measured nothing
    writer.add("ganbench", "gn", 2, 8, {"fid": 2.0, "kid_mean": 0.0, "kid_std": 0.0}, 3.0, "e")
    assert writer.commands[-1] == settings["command"]
    with pytest.raises(SystemExit, match="other overrides"):
        (tmp_path / "other.json").write_text(real_cpu.json.dumps({**measured, "overrides": ["y"]}))
        writer.merge(tmp_path / "other.json")


def test_recorded_commands_name_no_path_of_the_machine(real_cpu: ModuleType) -> None:
    argv = ["/x/benchmarks/real_cpu.py", "--methods", "", "--official", "seed2=/tmp/o/seed2", "--out", "/tmp/r"]
    assert real_cpu.portable_command(argv) == 'real_cpu.py --methods "" --official seed2=DIR --out DIR'
    recorded = "real_cpu.py --methods  --official seed0=/tmp/o/s0 --import-scores /tmp/a.json --out /tmp/r --seeds 1"
    assert real_cpu.portable_text(recorded) == (
        'real_cpu.py --methods "" --official seed0=DIR --import-scores DIR --out DIR --seeds 1'
    )
