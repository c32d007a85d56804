"""Property-based fuzzing of report trees: a results folder holding a good run and a run damaged at random (a value
of its recipe.toml, run.json or metrics.parquet replaced) always renders. A value of the wrong type skips the damaged
run with exactly one warning naming its file and key; any other damage at most skips it with one warning; the good
run is reported either way.

The keys are those of a real run (trained once), and the types are those ganbench declares (ganbench.config for the
recipe, store.RunInfo for run.json), so a key added later is fuzzed too.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import shutil
import tempfile
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganbench.config import Recipe
from ganbench.report import FORMATS, build_report
from ganbench.report.collect import read_runs
from ganbench.store import STATUSES, RunInfo

settings.register_profile(
    "report-fuzz",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FUZZ = settings.get_profile("report-fuzz")
FILES = ("recipe.toml", "run.json", "metrics.parquet", "history.parquet")  # what a report reads of a run


@pytest.fixture(scope="module")
def template(points_run: Path) -> Path:
    return points_run


@pytest.fixture
def results(template: Path) -> Iterator[Path]:
    """A results folder with `good` and `bad`, each holding the files a report reads of the trained run; each
    example rewrites `bad` from the template."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def fresh(results: Path, template: Path) -> Path:
    for name in ("good", "bad"):
        shutil.rmtree(results / name, ignore_errors=True)
        (results / name).mkdir()
        for file in FILES:
            shutil.copyfile(template / file, results / name / file)
    return results / "bad"


# ---------------------------------------------------------------------------------------------------------------
# the declared types of the keys a real run holds


def recipe_types(cls: type = Recipe, prefix: str = "") -> dict[str, Any]:
    """dotted key -> its type, sections included (as the class of their table)."""
    found: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        found[f"{prefix}{f.name}"] = tp
        if dataclasses.is_dataclass(tp):
            found.update(recipe_types(typing.cast(type, tp), f"{prefix}{f.name}."))
    return found


def run_types() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, tp in typing.get_type_hints(RunInfo).items():
        found[key] = tp
        if typing.is_typeddict(tp):
            found.update({f"{key}.{name}": inner for name, inner in typing.get_type_hints(tp).items()})
    return found


RECIPE_TYPES, RUN_TYPES = recipe_types(), run_types()
SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=8),
)


def wrong(tp: Any, toml: bool) -> st.SearchStrategy[Any]:
    """Values that are not of type `tp`, in what the file can hold (TOML has dates and no null; JSON the reverse)."""
    lists = st.lists(st.integers(), min_size=1, max_size=2)
    table = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), min_size=1, max_size=2)
    extra = st.dates(min_value=datetime.date(1, 1, 1)) if toml else st.none()
    if dataclasses.is_dataclass(tp) or typing.is_typeddict(tp) or typing.get_origin(tp) is dict:
        return st.one_of(SCALARS, lists, extra)  # a value where a table belongs
    if typing.get_origin(tp) is list:
        return st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), lists, table, extra)
    if tp is int:
        return st.one_of(st.text(max_size=8), st.floats(allow_nan=False), st.booleans(), lists, table, extra)
    if tp is float:
        return st.one_of(st.text(max_size=8), st.booleans(), lists, table, extra)
    if tp is bool:
        return st.one_of(st.text(max_size=8), st.integers(), st.floats(allow_nan=False), lists, table, extra)
    if tp is str or tp == str | None:
        return st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), lists, table, *([extra] * toml))
    raise AssertionError(f"no wrong values for {tp}")


def present(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, dict):
            keys += present(value, f"{prefix}{key}.")
    return keys


def read_tree(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())


def write_tree(path: Path, tree: dict[str, Any]) -> None:
    path.write_text(tomli_w.dumps(tree) if path.suffix == ".toml" else json.dumps(tree))


def put(tree: dict[str, Any], key: str, value: Any) -> None:
    *tables, last = key.split(".")
    for name in tables:
        tree = tree[name]
    tree[last] = value


def report(results: Path, fmt: str) -> tuple[list[str], list[str]]:
    """The runs the report holds, and its warnings, rendered in `fmt`."""
    runs, _ = read_runs(results)
    _, warnings = build_report(results, fmt, figures=False)
    reported = [run.rel for run in runs]
    assert "good" in reported
    return reported, warnings


@st.composite
def wrong_typed(draw: st.DrawFn, template: Path) -> tuple[str, str, Any]:
    file = draw(st.sampled_from(["recipe.toml", "run.json"]))
    types = RECIPE_TYPES if file == "recipe.toml" else RUN_TYPES
    keys = [key for key in present(read_tree(template / file)) if key in types]
    key = draw(st.sampled_from(sorted(keys)), label="key")
    return file, key, draw(wrong(types[key], toml=file == "recipe.toml"), label="value")


@settings(FUZZ, max_examples=40)
@given(data=st.data(), fmt=st.sampled_from(FORMATS))
def test_a_value_of_the_wrong_type_skips_the_run_with_one_warning_naming_file_and_key(
    results: Path, template: Path, data: st.DataObject, fmt: str
) -> None:
    file, key, value = data.draw(wrong_typed(template))
    bad = fresh(results, template)
    tree = read_tree(bad / file)
    put(tree, key, value)
    write_tree(bad / file, tree)
    reported, warnings = report(results, fmt)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"bad: skipped: bad/{file}: damaged ({key}"), warnings[0]
    assert "restore it from a backup" in warnings[0] and "\n" not in warnings[0]
    assert reported == ["good"]


def same_type(tp: Any) -> st.SearchStrategy[Any]:
    """Any value of type `tp`, sensible or not."""
    if typing.get_origin(tp) is list:
        return st.lists(st.text(max_size=8), max_size=3)
    if tp is int:
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)
    if tp is float:
        return st.floats()
    if tp is bool:
        return st.booleans()
    if tp == str | None:
        return st.none() | st.text(max_size=30)
    return st.text(max_size=30) | st.sampled_from(STATUSES)  # str


@st.composite
def odd_value(draw: st.DrawFn, template: Path) -> tuple[str, str, Any]:
    file = draw(st.sampled_from(["recipe.toml", "run.json"]))
    types = RECIPE_TYPES if file == "recipe.toml" else RUN_TYPES
    keys = [
        key
        for key in present(read_tree(template / file))
        if key in types and not dataclasses.is_dataclass(types[key]) and not typing.is_typeddict(types[key])
        if typing.get_origin(types[key]) is not dict
    ]
    key = draw(st.sampled_from(sorted(keys)), label="key")
    value = draw(same_type(types[key]), label="value")
    if file == "recipe.toml" and isinstance(value, float) and not math.isfinite(value):
        value = draw(st.sampled_from([math.inf, -math.inf, math.nan]))  # TOML writes them: inf, -inf, nan
    return file, key, value


@settings(FUZZ, max_examples=25)
@given(data=st.data(), fmt=st.sampled_from(FORMATS))
def test_any_value_of_the_right_type_renders_or_skips_the_run_with_one_warning(
    results: Path, template: Path, data: st.DataObject, fmt: str
) -> None:
    file, key, value = data.draw(odd_value(template))
    bad = fresh(results, template)
    tree = read_tree(bad / file)
    put(tree, key, value)
    write_tree(bad / file, tree)
    reported, warnings = report(results, fmt)
    assert len(warnings) <= 1, warnings
    if warnings:  # run.json's status out of its choices, its schema_version another one
        assert warnings[0].startswith(f"bad: skipped: bad/{file}: "), warnings[0]
    assert reported == (["good"] if warnings else ["bad", "good"])


COLUMN_JUNK = st.one_of(
    st.lists(st.text(max_size=6), min_size=1, max_size=1),
    st.lists(st.none(), min_size=1, max_size=1),
    st.lists(st.booleans(), min_size=1, max_size=1),
    st.lists(st.floats(), min_size=1, max_size=1),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1, max_size=1),
)


@settings(FUZZ, max_examples=25)
@given(data=st.data(), fmt=st.sampled_from(FORMATS))
def test_a_damaged_metrics_column_never_stops_the_report(
    results: Path, template: Path, data: st.DataObject, fmt: str
) -> None:
    bad = fresh(results, template)
    frame = pd.read_parquet(bad / "metrics.parquet")
    column = data.draw(st.sampled_from(sorted(frame.columns)), label="column")
    junk = data.draw(COLUMN_JUNK, label="junk")[0]
    rows = data.draw(st.sets(st.sampled_from(range(len(frame))), min_size=1), label="rows")
    values = frame[column].astype(object)
    for row in rows:
        values.iloc[row] = junk
    frame[column] = values
    try:
        frame.to_parquet(bad / "metrics.parquet", index=False)
    except Exception:  # a mix pyarrow cannot store: written as text, as a damaged file could hold it
        frame[column] = frame[column].map(repr)
        frame.to_parquet(bad / "metrics.parquet", index=False)
    reported, warnings = report(results, fmt)
    assert reported == ["bad", "good"]  # listed, with or without values
    assert len(warnings) <= 1, warnings
    if warnings:
        assert warnings[0].startswith("bad: "), warnings[0]


def test_a_run_whose_every_value_is_nan_is_listed_without_values(results: Path, template: Path) -> None:
    bad = fresh(results, template)
    frame = pd.read_parquet(bad / "metrics.parquet")
    frame["value"] = math.nan  # a diverged run scored NaN
    frame.to_parquet(bad / "metrics.parquet", index=False)
    reported, warnings = report(results, "markdown")
    assert reported == ["bad", "good"]
    assert len(warnings) == 1 and warnings[0].startswith("bad: no evaluations in metrics.parquet"), warnings
