"""Device names from a recipe or an option: one resolver, the caller's key and error type in its messages."""

from __future__ import annotations

import pytest
import torch

from ganbench.devices import resolve_device
from ganbench.errors import MetricError, RecipeError


def test_auto_is_the_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_a_missing_gpu_is_the_callers_error_naming_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RecipeError, match=r"^train\.device: cuda asked for but CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(MetricError, match=r"^--device: cuda:0 asked for"):
        resolve_device("cuda:0", key="--device", error=MetricError)


def test_a_gpu_index_beyond_the_machines_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(MetricError, match=r"--device: cuda:2 asked for but this machine has 2 GPU\(s\); use cuda:0 to"):
        resolve_device("cuda:2", key="--device", error=MetricError)


def test_a_name_that_is_no_device_is_refused() -> None:
    with pytest.raises(RecipeError, match="train.device: 'gpu0' is not a device"):
        resolve_device("gpu0")
