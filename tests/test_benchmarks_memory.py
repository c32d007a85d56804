"""benchmarks/memory.py: the saved-tensor count on a graph counted by hand, the extrapolation, a tiny recipe run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "memory.py"


@pytest.fixture(scope="module")
def memory() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_memory", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_memory"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("batch", [1, 3])
def test_saved_tensors_are_the_activations_without_the_parameters(memory: ModuleType, batch: int) -> None:
    layer = nn.Linear(5, 7)
    x = torch.randn(batch, 5)
    saved, _ = memory._measure(lambda: torch.relu(layer(x)).sum(), [layer])
    # Linear saves its input (the weight is a parameter, left out); relu saves its output: (5 + 7) floats a sample.
    assert saved == batch * (5 + 7) * 4


def test_the_estimate_splits_only_the_activations(memory: ModuleType) -> None:
    gib = 2**30
    m = memory.Measured(
        recipe="r",
        states_bytes=2 * gib,
        data_bytes=1 * gib,
        d_fixed=0,
        d_per_sample=gib // 8,  # 64 samples: 8 GiB
        g_fixed=gib,
        g_per_sample=gib // 4,  # 128 samples: 32 GiB + 1 GiB fixed: the larger step
        d_peak_rss_b1=0,
        d_peak_rss_b2=0,
        g_peak_rss_b1=0,
        g_peak_rss_b2=0,
        batch_size_d=64,
        batch_size_g=128,
        seconds=0.0,
    )
    assert m.activations() == 33 * gib and m.activations(4) == (1 + 8) * gib
    assert m.estimate() == pytest.approx((3 + 33) * gib * 1.1 + gib)
    # 80 GB holds 40.6 GiB at once; 40 GB needs 2 ways (3 + 17 GiB -> 23 GiB); 24 GB needs 4 (3 + 9 -> 14.2 GiB)
    assert [m.split_needed(size) for size in (80, 40, 24)] == [1, 2, 4]


def test_gradient_normalization_saves_more_than_spectral_normalization(
    memory: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    small = ["--set", "model.g_channels=2", "--set", "model.d_channels=2"]
    rows = {name: memory.measure(name, small[1::2]) for name in ("celebahq128_resnet_sn", "celebahq128_resnet_gn")}
    sn, gn = rows["celebahq128_resnet_sn"], rows["celebahq128_resnet_gn"]
    # GN's double backprop keeps the gradient's graph as well: more per sample in both steps; a 128 px image and its
    # fake through D save at least the two inputs (2 x 3 x 128 x 128 floats).
    assert gn.d_per_sample > sn.d_per_sample >= 2 * 3 * 128 * 128 * 4
    assert gn.g_per_sample > sn.g_per_sample > 0
    assert gn.data_bytes == 27_000 * 3 * 128 * 128  # the train split, images 1-27,000, as uint8 on the device
    memory.main(["--recipes", "celebahq128_resnet_sn", *small])
    assert "| celebahq128_resnet_sn | 64 / 128 |" in capsys.readouterr().out
