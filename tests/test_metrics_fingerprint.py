"""Protocol fingerprints of the rows the evaluator writes: every protocol field and every evaluation setting changes
the hash; what was measured and when (step, checkpoint, time, device, the value itself) does not."""

from __future__ import annotations

import dataclasses
import json
from importlib import metadata
from typing import Any

import numpy as np
import pytest
import torch

from ganbench.evaluation import Evaluation
from ganbench.metrics import fingerprint, inception
from ganbench.metrics.compute import MetricSettings
from ganbench.metrics.refstats import RefStats
from ganbench.recipe import DataConfig, EvalConfig, ModelConfig, Recipe
from tests.test_metrics_settings import Blank, PresetFeatures

FEATURES = np.random.default_rng(0).normal(size=(8, 2))
LOGITS = np.random.default_rng(1).normal(size=(8, 3))


def reference(**changes: Any) -> RefStats:
    ref = RefStats(FEATURES.mean(0), np.cov(FEATURES, rowvar=False), 8, "shapes", "train", "data-hash", "ref-key")
    ref.features = FEATURES.astype(np.float32)
    return dataclasses.replace(ref, **changes)


def recipe(bn_mode: str = "running") -> Recipe:
    return Recipe(
        name="fp",
        data=DataConfig(name="shapes"),
        model=ModelConfig(z_dim=2),
        eval=EvalConfig(num_samples=8, batch_size=4, metrics=["fid", "is", "kid", "pr"], bn_mode=bn_mode),
    )


SMALL = MetricSettings(is_splits=2, kid_subsets=2, kid_subset_size=4, pr_k=2)


@pytest.fixture(autouse=True)
def two_dim_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inception, "POOL_DIM", 2)


def evaluation(
    *, bn_mode: str = "running", extractor: PresetFeatures | None = None, ref: RefStats | None = None, **kw: Any
) -> Evaluation:
    kw.setdefault("settings", SMALL)
    return Evaluation(
        recipe(bn_mode), "cpu", extractor=extractor or PresetFeatures(FEATURES, LOGITS), ref=ref or reference(), **kw
    )


def fid_row(**kw: Any) -> dict[str, Any]:
    """The FID row the evaluator writes for Blank at step 10."""
    rows = evaluation(**kw).rows(Blank(), step=10, checkpoint="step-10", generator_kind="ema")
    return next(row for row in rows if row["metric"] == "fid")


def test_rows_carry_every_protocol_field_and_their_hash() -> None:
    rows = evaluation().rows(Blank(), step=10, checkpoint="step-10", generator_kind="ema")
    assert {row["metric"] for row in rows} == {"fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall"}
    for row in rows:
        assert set(fingerprint.PROTOCOL_FIELDS) <= set(row), row["metric"]
        assert fingerprint.fingerprint_of(row) == row["fingerprint"]  # the record fields beside them are ignored
    by_metric = {row["metric"]: row["fingerprint"] for row in rows}
    assert by_metric["is_mean"] == by_metric["is_std"] and by_metric["kid_mean"] == by_metric["kid_std"]
    assert len({by_metric[m] for m in ("fid", "is_mean", "kid_mean", "precision")}) == 4  # settings differ


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return f"{value}x"


@pytest.mark.parametrize("field", fingerprint.PROTOCOL_FIELDS)
def test_changing_any_protocol_field_of_a_real_row_changes_the_fingerprint(field: str) -> None:
    row = fid_row()
    fields = {name: row[name] for name in fingerprint.PROTOCOL_FIELDS}
    assert fingerprint.protocol(**fields)["fingerprint"] == row["fingerprint"]
    changed = fingerprint.protocol(**{**fields, field: _changed(fields[field])})
    assert changed["fingerprint"] != row["fingerprint"]


def test_the_field_order_does_not_matter() -> None:
    row = fid_row()
    fields = [(name, row[name]) for name in fingerprint.PROTOCOL_FIELDS]
    assert fingerprint.protocol(**dict(reversed(fields)))["fingerprint"] == row["fingerprint"]


@pytest.mark.parametrize("field", [*fingerprint.RECORD_FIELDS, "metric", "value"])
def test_record_fields_and_the_value_do_not_change_the_fingerprint(field: str) -> None:
    row = fid_row()
    assert field in row
    assert fingerprint.fingerprint_of({**row, field: _changed(row[field])}) == row["fingerprint"]


def test_the_same_generator_at_another_step_and_checkpoint_shares_the_fingerprint() -> None:
    first = evaluation().rows(Blank(), step=10, checkpoint="step-10", generator_kind="ema")
    later = evaluation().rows(Blank(), step=20, checkpoint="last", generator_kind="ema")
    assert [row["fingerprint"] for row in first] == [row["fingerprint"] for row in later]


@pytest.mark.parametrize(
    "change",
    [
        "num_samples",
        "seed",
        "quantize",
        "bn_mode",
        "generator",
        "weights",
        "ref_key",
        "ref_hash",
        "ref_split",
        "ref_dataset",
        "n_real",
    ],
)
def test_every_evaluation_setting_changes_the_fingerprint(change: str) -> None:
    base = fid_row()
    kw: dict[str, Any] = {}
    if change == "num_samples":
        kw["num_samples"] = 6
    elif change == "seed":
        kw["seed"] = 1
    elif change == "quantize":
        kw["quantize"] = False
    elif change == "bn_mode":
        kw["bn_mode"] = "batch"
    elif change == "weights":
        other = PresetFeatures(FEATURES, LOGITS)
        other.weights_hash = "1" * 64
        kw["extractor"] = other
    elif change != "generator":
        field = {"ref_key": "key", "ref_hash": "dataset_hash", "ref_split": "split", "ref_dataset": "dataset"}
        kw["ref"] = reference(n=9) if change == "n_real" else reference(**{field[change]: "other"})
    if change == "generator":
        rows = evaluation().rows(Blank(), step=10, checkpoint="step-10", generator_kind="raw")
        row = next(row for row in rows if row["metric"] == "fid")
    else:
        row = fid_row(**kw)
    assert row["fingerprint"] != base["fingerprint"]


def test_versions_name_the_installed_libraries() -> None:
    versions = json.loads(fid_row()["versions"])
    assert versions["torch"] == torch.__version__
    for package in ("torch-fidelity", "pytorch-fid"):
        assert versions[package] == metadata.version(package)


def test_missing_and_unknown_fields_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="missing"):
        fingerprint.fingerprint_of({"extractor": "x"})
    with pytest.raises(ValueError, match="not protocol fields"):
        fingerprint.protocol(extractor="x", step=3)
