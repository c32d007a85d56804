"""Property-based fuzzing of recipes: every invalid value of every key is refused with a one-line RecipeError that
starts with the key, every valid recipe loads unchanged, and the real CLI turns a bad recipe into exit code 2 and
one line on stderr.

The keys are found by introspecting the recipe dataclasses, so a key added later is fuzzed too. What counts as
valid is written here independently of ganbench/recipe.py: the documented rules (plain names, known device forms,
the datasets' native sizes and splits), not the module's own patterns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import re
import subprocess
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ganbench import cli, data, losses, methods, nets
from ganbench import recipe as recipes
from ganbench.errors import RecipeError

# A fixed, derandomized profile: the same examples on every run and in CI, nothing written to a local database.
settings.register_profile(
    "recipe-fuzz",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FUZZ = settings.get_profile("recipe-fuzz")

INT64_MAX = 2**63 - 1  # every integer key must fit torch's int64
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")  # letters, digits, - _ ., no leading dot, <= 100
DEVICE = re.compile(r"auto|cpu|mps|cuda|cuda:(0|[1-9][0-9]{0,3})")
IMAGE_METRICS = ("fid", "is", "kid", "pr")
DEFAULT_SPLITS = ("train", "test")  # of the default dataset, ring8
REGISTRIES: dict[str, Any] = {
    "data.name": data.DATASETS,
    "model.arch": nets.NETS,
    "method.name": methods.METHODS,
    "loss.name": losses.LOSSES,
}


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One recipe key: its section ("" at the top), name, annotated type and field metadata."""

    section: str
    key: str
    tp: Any
    meta: Mapping[str, Any]

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    def tree(self, value: Any) -> dict[str, Any]:
        return {self.section: {self.key: value}} if self.section else {self.key: value}


def _leaves() -> list[Leaf]:
    found: list[Leaf] = []
    hints = typing.get_type_hints(recipes.Recipe)
    for top in dataclasses.fields(recipes.Recipe):
        tp = hints[top.name]
        if dataclasses.is_dataclass(tp):
            inner = typing.get_type_hints(tp)
            found += [Leaf(top.name, f.name, inner[f.name], f.metadata) for f in dataclasses.fields(tp)]
        else:
            found.append(Leaf("", top.name, tp, top.metadata))
    return found


LEAVES = _leaves()
SECTIONS = sorted({leaf.section for leaf in LEAVES if leaf.section})


def test_introspection_finds_every_section_and_key_kind() -> None:
    dotted = {leaf.dotted for leaf in LEAVES}
    assert set(SECTIONS) == {"data", "model", "method", "loss", "train", "eval"}
    assert {"name", "seed", "train.ema_decay", "eval.metrics", "data.seed", "train.device"} <= dotted
    assert {leaf.tp for leaf in LEAVES} == {int, float, str, bool, list[str]}


# ---------------------------------------------------------------------------------------------------------------
# invalid values


def refusal(text: str, overrides: list[str] | None = None) -> str:
    """The message of the RecipeError that loading must raise; any other exception fails the test."""
    with pytest.raises(RecipeError) as caught:
        recipes.loads(text, overrides)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message == message.strip(), message
    assert "; " in message, f"no fix given: {message}"
    return message


def with_control_char() -> st.SearchStrategy[str]:
    return st.tuples(st.text(max_size=8), st.characters(categories=["Cc"]), st.text(max_size=8)).map("".join)


def wrong_types(tp: Any) -> st.SearchStrategy[Any]:
    text = st.text(max_size=12)
    floats = st.floats(allow_nan=False, allow_infinity=False)
    table = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), min_size=1, max_size=2)
    dates = st.dates(min_value=datetime.date(1, 1, 1))
    if tp is int:
        return st.one_of(text, floats, st.booleans(), st.lists(st.integers(), max_size=2), table, dates)
    if tp is float:
        return st.one_of(text, st.booleans(), st.lists(floats, max_size=2), table, dates)
    if tp is bool:
        return st.one_of(text, st.integers(), floats, st.lists(st.booleans(), max_size=2), table, dates)
    if tp is str:
        return st.one_of(st.integers(), floats, st.booleans(), st.lists(text, max_size=2), table, dates)
    # a list of strings; a string is accepted too (a comma-separated list)
    return st.one_of(st.integers(), floats, st.booleans(), st.lists(st.integers(), min_size=1, max_size=2), dates)


def out_of_range(leaf: Leaf) -> list[st.SearchStrategy[Any]]:
    lo, hi = leaf.meta.get("lo"), leaf.meta.get("hi")
    lo_open, hi_open = leaf.meta.get("lo_open"), leaf.meta.get("hi_open")
    found: list[st.SearchStrategy[Any]] = []
    if leaf.tp is int:
        if lo is not None:
            found.append(st.integers(max_value=lo if lo_open else lo - 1))
        top = INT64_MAX if hi is None else hi
        found.append(st.integers(min_value=top if hi_open else top + 1))
    if leaf.tp is float:
        finite = st.floats(allow_nan=False, allow_infinity=False)
        found.append(st.sampled_from([math.nan, math.inf, -math.inf]))
        if lo is not None:
            found.append(finite.filter(lambda v: v < lo or (lo_open and v == lo)))
            found.append(st.just(float(lo)) if lo_open else st.just(lo - 1e-9))
        if hi is not None:
            found.append(finite.filter(lambda v: v > hi or (hi_open and v == hi)))
            found.append(st.just(float(hi)) if hi_open else st.just(hi + 1e-9))
    return found


def invalid_values(leaf: Leaf) -> st.SearchStrategy[Any]:
    """Values of `leaf` that must be refused, from the documented rules."""
    kinds = [wrong_types(leaf.tp), *out_of_range(leaf)]
    if leaf.tp is str:
        kinds.append(with_control_char())
        if choices := leaf.meta.get("choices"):
            kinds.append(st.text(max_size=12).filter(lambda s: s not in choices))
    if leaf.dotted in REGISTRIES:
        registry = REGISTRIES[leaf.dotted]
        kinds.append(st.text(max_size=12).filter(lambda s: s not in registry))
    if leaf.dotted == "name":
        kinds.append(st.text(max_size=12).filter(lambda s: not SAFE_NAME.fullmatch(s)))
        kinds.append(st.sampled_from(["../x", "a/b", "/abs", ".x", "", "a b"]))
        kinds.append(st.text(alphabet="ab_", min_size=101, max_size=140))
    if leaf.dotted == "train.device":
        kinds.append(st.text(max_size=12).filter(lambda s: not DEVICE.fullmatch(s)))
    if leaf.dotted == "data.split":
        kinds.append(st.text(max_size=12).filter(lambda s: s not in DEFAULT_SPLITS))
    if leaf.dotted == "eval.metrics":
        known = (*IMAGE_METRICS, "modes")  # modes: the default data is a 2-D point set
        kinds.append(st.just([]))
        kinds.append(
            st.lists(st.text(max_size=8), min_size=1, max_size=3).filter(lambda xs: any(x not in known for x in xs))
        )
    return st.one_of(kinds)


def as_literal(value: Any) -> str | None:
    """`value` written as a TOML literal for --set, or None for a table (which --set cannot give)."""
    if isinstance(value, dict):
        return None
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.dotted)
@settings(FUZZ, max_examples=20)
@given(draw=st.data())
def test_an_invalid_value_of_any_key_is_refused_with_one_line_naming_it(leaf: Leaf, draw: st.DataObject) -> None:
    value = draw.draw(invalid_values(leaf), label="value")
    assert refusal(tomli_w.dumps(leaf.tree(value))).startswith(leaf.dotted)
    literal = as_literal(value)
    if literal is not None:  # the same value through --set
        assert refusal("", [f"{leaf.dotted}={literal}"]).startswith(leaf.dotted)


def unknown_key(section: str) -> st.SearchStrategy[str]:
    known = {leaf.key for leaf in LEAVES if leaf.section == section} | ({*SECTIONS} if not section else set())
    return st.text(min_size=1, max_size=12).filter(lambda k: k not in known)


@settings(FUZZ, max_examples=60)
@given(section=st.sampled_from(["", *SECTIONS]), draw=st.data(), value=st.integers() | st.text(max_size=5))
def test_unknown_keys_are_refused_naming_the_key(section: str, draw: st.DataObject, value: Any) -> None:
    key = draw.draw(unknown_key(section), label="key")
    dotted = f"{section}.{key}" if section else key
    message = refusal(tomli_w.dumps({section: {key: value}} if section else {key: value}))
    assert message.startswith(dotted) or message.startswith(repr(dotted)[:40])  # as written, or escaped
    if "." not in key and "=" not in key and key.strip() == key and key:  # the same key through --set
        item = f"{dotted}={as_literal(value)}"
        message = refusal("", [item])
        assert message.startswith(dotted) or message.startswith(repr(dotted)[:40]) or message.startswith("--set")


KEYS = [leaf.dotted for leaf in LEAVES] + SECTIONS
TOMLISH = st.text(alphabet="[]{}\"'=.,:0123456789eE+-_ abcfinrstu#\\\t", max_size=16)


@settings(FUZZ, max_examples=300)
@given(
    item=st.one_of(
        st.text(max_size=30),
        st.builds("{}={}".format, st.sampled_from(KEYS), TOMLISH),
        st.builds("{}={}".format, st.sampled_from(KEYS), st.text(max_size=12)),
        st.builds("{}.{}={}".format, st.sampled_from(KEYS), st.text(max_size=4), TOMLISH),
    )
)
def test_random_set_strings_load_or_are_refused_with_one_line(item: str) -> None:
    try:
        recipes.loads("", [item])
    except RecipeError as err:
        message = str(err)
        assert len(message.splitlines()) == 1 and "; " in message, message


SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.text(max_size=4), max_size=3),
    st.dates(min_value=datetime.date(1, 1, 1)),
)
ANY_KEY = st.sampled_from([leaf.key for leaf in LEAVES] + SECTIONS) | st.text(max_size=6)


@settings(FUZZ, max_examples=300)
@given(tree=st.dictionaries(ANY_KEY, SCALARS | st.dictionaries(ANY_KEY, SCALARS, max_size=4), max_size=5))
def test_random_recipe_trees_load_or_are_refused_with_one_line(tree: dict[str, Any]) -> None:
    try:
        recipes.loads(tomli_w.dumps(tree))
    except RecipeError as err:
        message = str(err)
        assert len(message.splitlines()) == 1 and "; " in message, message


# ---------------------------------------------------------------------------------------------------------------
# valid values

# Datasets with an architecture that takes their samples, the data.size values that keep that true and their
# splits; from the datasets' and architectures' documented shapes.
DATA_AND_ARCH = [
    ("ring8", "mlp", st.integers(0, 1024), ("train", "test")),
    ("grid25", "mlp", st.integers(0, 1024), ("train", "test")),
    ("cifar10", "cnn32", st.sampled_from([0, 32]), ("train", "test")),
    ("cifar100", "resnet32", st.sampled_from([0, 32]), ("train", "test")),
    ("shapes", "cnn48", st.just(48), ("train", "test")),
    ("stl10", "resnet48", st.sampled_from([0, 48]), ("unlabeled", "train", "test", "train+unlabeled")),
    ("cifar10", "biggan32", st.sampled_from([0, 32]), ("train", "test")),
]
NUM_CLASSES = {"cifar10": 10}  # the labelled datasets paired with a class-conditional net above
PLAIN_TEXT = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=12)


def valid_values(leaf: Leaf) -> st.SearchStrategy[Any]:
    """Values of `leaf` within its declared type and range (cross-key rules are drawn in `valid_trees`)."""
    if leaf.dotted == "name":
        return st.from_regex(SAFE_NAME, fullmatch=True)
    if leaf.dotted == "train.device":
        return st.sampled_from(["auto", "cpu", "cuda", "mps"]) | st.integers(0, 64).map("cuda:{}".format)
    if leaf.tp is bool:
        return st.booleans()
    if choices := leaf.meta.get("choices"):
        return st.sampled_from(choices)
    if leaf.tp is str:
        return PLAIN_TEXT
    lo, hi = leaf.meta.get("lo"), leaf.meta.get("hi")
    if leaf.tp is int:
        low = -INT64_MAX if lo is None else lo + bool(leaf.meta.get("lo_open"))
        high = INT64_MAX if hi is None else hi - bool(leaf.meta.get("hi_open"))
        return st.integers(low, high)
    if leaf.tp is float:
        return st.floats(
            min_value=lo,
            max_value=hi,
            exclude_min=bool(leaf.meta.get("lo_open")),
            exclude_max=bool(leaf.meta.get("hi_open")),
            allow_nan=False,
            allow_infinity=False,
        )
    return st.nothing()  # eval.metrics: drawn with its dataset


@st.composite
def valid_trees(draw: st.DrawFn) -> dict[str, Any]:
    tree: dict[str, Any] = {section: {} for section in SECTIONS}
    for leaf in LEAVES:
        if leaf.dotted != "eval.metrics":
            value = draw(valid_values(leaf), label=leaf.dotted)
            (tree[leaf.section] if leaf.section else tree)[leaf.key] = value
    dataset, arch, size, splits = draw(st.sampled_from(DATA_AND_ARCH))
    tree["data"].update(name=dataset, size=draw(size), split=draw(st.sampled_from(splits)))
    tree["model"]["arch"] = arch
    method = draw(st.sampled_from(sorted(methods.METHODS)))
    family = [n for n in losses.LOSSES if n.startswith("lgan-")] if method == "lgan" else sorted(losses.LOSSES)
    loss = draw(st.sampled_from(family))
    tree["method"]["name"] = method
    tree["loss"].update(name=loss, lgan_psi_max=draw(st.booleans()) if loss.startswith("lgan-") else False)
    tree["train"]["ema_start"] = draw(st.integers(0, tree["train"]["steps"]))
    # a class count only for a class-conditional net; micro-batches that divide both batch sizes
    tree["model"]["num_classes"] = NUM_CLASSES[dataset] if nets.NETS.get(arch).conditional else 0
    both = math.gcd(tree["train"]["batch_size_d"], tree["train"]["batch_size_g"])
    tree["train"]["accumulate"] = draw(st.sampled_from([k for k in range(1, min(both, 64) + 1) if both % k == 0]))
    names = (*IMAGE_METRICS, "modes") if arch == "mlp" else IMAGE_METRICS
    tree["eval"]["metrics"] = draw(st.lists(st.sampled_from(names), min_size=1, max_size=5))
    return tree


@settings(FUZZ, max_examples=150)
@given(tree=valid_trees())
def test_valid_recipes_load_unchanged(tree: dict[str, Any]) -> None:
    assert recipes.loads(tomli_w.dumps(tree)).to_dict() == tree


@settings(FUZZ, max_examples=40)
@given(tree=valid_trees(), draw=st.data())
def test_valid_values_through_set_load_unchanged(tree: dict[str, Any], draw: st.DataObject) -> None:
    leaf = draw.draw(st.sampled_from([leaf for leaf in LEAVES if leaf.section == "train"]), label="key")
    value = tree["train"][leaf.key]
    text = tomli_w.dumps({**tree, "train": {k: v for k, v in tree["train"].items() if k != leaf.key}})
    assert recipes.loads(text, [f"{leaf.dotted}={as_literal(value)}"]).to_dict() == tree


# ---------------------------------------------------------------------------------------------------------------
# the real CLI


def write_bad_recipe(work: Path, leaf: Leaf, value: Any) -> Path:
    bad = work / "BAD.toml"
    bad.write_text(tomli_w.dumps(leaf.tree(value)), encoding="utf-8")
    return bad


def check_one_line_refusal(code: int, stderr: str, leaf: Leaf, work: Path) -> None:
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    assert leaf.dotted in stderr
    assert not (work / "D").exists()
    assert not (work / "results").exists()


@pytest.mark.slow  # each example starts a Python that imports torch: a few seconds on two cores
@settings(FUZZ, max_examples=4)
@given(leaf=st.sampled_from(LEAVES), draw=st.data())
def test_the_cli_refuses_an_invalid_recipe_with_one_line_and_no_run_dir(
    tmp_path_factory: pytest.TempPathFactory, leaf: Leaf, draw: st.DataObject
) -> None:
    work = tmp_path_factory.mktemp("cli")
    bad = write_bad_recipe(work, leaf, draw.draw(invalid_values(leaf), label="value"))
    env = {k: v for k, v in os.environ.items() if k != "GANBENCH_DEBUG"} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ganbench", "train", str(bad), "--run-dir", str(work / "D")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_one_line_refusal(done.returncode, done.stderr, leaf, work)


@settings(FUZZ, max_examples=40)
@given(leaf=st.sampled_from(LEAVES), draw=st.data())
def test_the_cli_in_process_refuses_many_invalid_recipes_with_one_line(
    tmp_path_factory: pytest.TempPathFactory, leaf: Leaf, draw: st.DataObject
) -> None:
    # The same check as above over more examples, without a new interpreter per example.
    work = tmp_path_factory.mktemp("cli")
    bad = write_bad_recipe(work, leaf, draw.draw(invalid_values(leaf), label="value"))
    with contextlib.chdir(work):
        result = CliRunner(env={"GANBENCH_DEBUG": None}).invoke(cli.app, ["train", str(bad), "--run-dir", "D"])
    check_one_line_refusal(result.exit_code, result.stderr, leaf, work)
