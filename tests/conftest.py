"""Shared fixtures: tiny recipes that train in a second on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_RECIPE = """
name = "tiny"
seed = 3

[data]
name = "ring8"
num_samples = 2000

[model]
arch = "mlp"
z_dim = 4
g_channels = 16
d_channels = 16

[method]
name = "gn"

[train]
device = "cpu"  # the CPU path on every machine: a GPU would take the graph path
steps = 30
batch_size_d = 32
batch_size_g = 32
lr_d = 1e-3
lr_g = 1e-3
ema_decay = 0.9
log_every = 5
sample_every = 0
checkpoint_every = 10
"""


@pytest.fixture(autouse=True)
def _deterministic_threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_recipe_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE)
    return path
