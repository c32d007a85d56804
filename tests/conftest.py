"""Shared fixtures: tiny recipes that train in a second on the CPU, one thread, an isolated cache, the shared data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ganbench.data.cifar_jpeg import SHARED_DATA_ENV

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


# SHARED_DATA_ENV names a folder of real data files that several checkouts share (the CIFAR-10 JPEG archive);
# .ci/run sets it when the checkout has one beside it. Tests that need a file from it skip without it, saying so.


def shared_data_file(name: str) -> Path:
    """The file `name` of $GANBENCH_SHARED_DATA; skips the calling test, naming the variable, when it is not there."""
    folder = os.environ.get(SHARED_DATA_ENV, "")
    path = Path(folder).expanduser() / name
    if not folder or not path.is_file():
        where = f"not in ${SHARED_DATA_ENV}={folder}" if folder else f"${SHARED_DATA_ENV} is not set"
        pytest.skip(f"needs the real {name}: {where}; set {SHARED_DATA_ENV} to the folder holding it")
    return path


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


@pytest.fixture
def float64() -> Iterator[None]:
    """torch's default dtype float64 for the test (the step references compare to 1e-10), then back."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


TRUNK_WIDTH = 16  # a narrow stand-in: the 2048 x 2048 matrix square root alone takes tens of seconds on two cores


@pytest.fixture
def trunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tiny TorchScript trunk of TRUNK_WIDTH features, accepted as the pool width for the test."""
    from ganbench.metrics import inception
    from tests.test_metrics_inception import save_tiny_trunk

    monkeypatch.setattr(inception, "POOL_DIM", TRUNK_WIDTH)
    return str(save_tiny_trunk(tmp_path / "trunk.pt", out=TRUNK_WIDTH))
