"""Protocol fingerprints: every protocol field changes the hash; the step, time and wall time do not."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from ganbench.metrics import fingerprint

BASE: dict[str, Any] = dict(
    protocol_version=1,
    extractor="torchscript-fid-trunk",
    weights_hash="w" * 64,
    resize="torch-bilinear-299",
    quantize=True,
    precision="fp32",
    n_fake=50000,
    n_real=50000,
    ref_dataset="cifar10",
    ref_split="train",
    ref_hash="h",
    ref_key="k",
    generator="ema",
    sample_seed=7,
    params='{"splits": 10}',
    versions='{"torch": "2.4"}',
)


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return f"{value}x"


@pytest.mark.parametrize("field", fingerprint.PROTOCOL_FIELDS)
def test_fingerprint_changes_with_every_protocol_field(field: str) -> None:
    changed = {**BASE, field: _changed(BASE[field])}
    assert fingerprint.protocol(**changed)["fingerprint"] != fingerprint.protocol(**BASE)["fingerprint"]


def test_every_protocol_field_is_exercised() -> None:
    assert set(BASE) == set(fingerprint.PROTOCOL_FIELDS)


def test_fingerprint_is_stable_and_short() -> None:
    first = fingerprint.protocol(**BASE)["fingerprint"]
    assert first == fingerprint.protocol(**dict(reversed(list(BASE.items()))))["fingerprint"]
    assert len(first) == 12 and int(first, 16) >= 0


def test_step_time_and_wall_time_are_not_hashed() -> None:
    row = {**fingerprint.protocol(**BASE), "step": 5000, "time": "now", "wall_time_s": 3.0, "checkpoint": "best"}
    later = {**row, "step": 10000, "time": "later", "wall_time_s": 9.0, "checkpoint": "last"}
    assert fingerprint.fingerprint_of(row) == fingerprint.fingerprint_of(later) == row["fingerprint"]
    assert not set(fingerprint.RECORD_FIELDS) & set(fingerprint.PROTOCOL_FIELDS)


def test_defaults_fill_versions_and_protocol_version() -> None:
    fields = {k: v for k, v in BASE.items() if k not in ("versions", "protocol_version", "params")}
    row = fingerprint.protocol(**fields)
    versions = json.loads(row["versions"])
    assert versions["torch"] == torch.__version__
    assert {"torch", "torch-fidelity", "pytorch-fid", "ganbench"} <= set(versions)
    assert row["protocol_version"] == fingerprint.PROTOCOL_VERSION and row["params"] == "{}"


def test_missing_and_unknown_fields_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="missing"):
        fingerprint.protocol(extractor="x")
    with pytest.raises(ValueError, match="not protocol fields"):
        fingerprint.protocol(**BASE, step=3)
