"""TOML recipes: reading a file or text, `--set key=value` overrides, and validation against the registries.

A recipe is a tree of the dataclasses declared in ganbench.config (re-exported here). Every field has a default, so
a recipe file names only what differs from the defaults. Keys are dotted paths into the TOML tables
(`train.steps`, `method.name`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganbench import data, losses, methods, nets
from ganbench.config import (
    DEVICE_FORMS,
    MAX_BATCH,
    MAX_INT,
    MAX_NAME,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_STEPS,
    NAME_PATTERN,
    NON_SEMANTIC_KEYS,
    DataConfig,
    EvalConfig,
    LossConfig,
    MethodConfig,
    ModelConfig,
    Recipe,
    TrainConfig,
)
from ganbench.errors import RecipeError
from ganbench.metrics.inception import METRICS

# The config names are re-exported: `from ganbench.recipe import Recipe` is how the rest of ganbench and its users
# have always reached them.
__all__ = [
    "DEVICE_FORMS",
    "MAX_BATCH",
    "MAX_INT",
    "MAX_NAME",
    "MAX_SAMPLES",
    "MAX_SEED",
    "MAX_STEPS",
    "NAME_PATTERN",
    "NON_SEMANTIC_KEYS",
    "POINT_METRICS",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "MethodConfig",
    "ModelConfig",
    "Recipe",
    "TrainConfig",
    "apply_overrides",
    "from_dict",
    "load",
    "loads",
    "parse_override",
    "validate",
]


def _show(value: Any, limit: int = 60) -> str:
    """A user's value for a one-line message: repr() escapes line breaks and control characters; long ones are cut."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _show_key(dotted: str) -> str:
    """A dotted key as written, or its repr() when a quoted TOML key holds spaces, line breaks or symbols."""
    return dotted if re.fullmatch(r"[A-Za-z0-9_.-]+", dotted) else _show(dotted)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_name(key: str, value: str) -> None:
    # The name becomes results/<name> and a job name in generated scripts: one plain file-name-safe word.
    if not NAME_PATTERN.fullmatch(value) or len(value) > MAX_NAME:
        raise RecipeError(
            f"{key}: {_show(value)} is not a plain name; use 1 to {MAX_NAME} letters, digits, '-', '_' or '.', not "
            'starting with ".", e.g. name = "cifar10_gn" (a recipe without a name takes its file name)'
        )


def _check_device(key: str, value: str) -> None:
    # Only the form is checked here; whether CUDA is present is the trainer's check, on the machine that trains.
    if value == "auto":
        return
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        device = None
    if (
        device is None
        or device.type not in ("cpu", "cuda", "mps")
        or (device.index is not None and device.type != "cuda")
    ):
        raise RecipeError(f"{key}: {_show(value)} is not a device; use {DEVICE_FORMS}")


# The named checks that config fields declare with `_checked`.
CHECKS: dict[str, Callable[[str, Any], None]] = {"name": _check_name, "device": _check_device}


_TYPE_FIX = {  # type -> (what it is, how to write one)
    int: ("an integer", "write a whole number, e.g. 3"),
    float: ("a number", "write a number, e.g. 0.5"),
    str: ("a string", 'write it in quotes, e.g. "text"'),
    bool: ("true or false", "write true or false"),
}


def _is_control(char: str) -> bool:
    # Control characters (line breaks included) and lone surrogates (undecodable command-line bytes) are never
    # meant in a recipe string: refuse them rather than carry them into paths, logs or generated scripts.
    return unicodedata.category(char) in ("Cc", "Cs")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotated type `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # `--set eval.metrics=fid,kid` is a convenience for a list of strings
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise RecipeError(f'{key}: expected a list, got {_show(value)}; write it as ["a", "b"]')
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported recipe field type {tp}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise RecipeError(f"{key}: {_show(value)} is too large for a number; give a finite value") from None
    wrong = isinstance(value, bool) != (tp is bool) or not isinstance(value, tp)
    if wrong:
        kind, fix = _TYPE_FIX[tp]
        raise RecipeError(f"{key}: expected {kind}, got {_show(value)}; {fix}")
    if tp is float and not math.isfinite(value):
        raise RecipeError(f"{key}: {_show(value)} is not a finite number; give a finite value, e.g. 0.5")
    if tp is str and any(_is_control(c) for c in value):
        raise RecipeError(f"{key}: {_show(value)} holds a line break or control character; remove it")
    return value


def _check_range(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        raise RecipeError(f"{key}: {_show(value)} is not allowed; choose one of {', '.join(choices)}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if hi is None and isinstance(value, int) and not isinstance(value, bool):
        hi = MAX_INT
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        bound = f"greater than {lo}" if meta.get("lo_open") else f"at least {lo}"
        raise RecipeError(f"{key}: {_show(value)} is out of range; it must be {bound}")
    if hi is not None and (value > hi or (meta.get("hi_open") and value == hi)):
        bound = f"less than {hi}" if meta.get("hi_open") else f"at most {hi}"
        raise RecipeError(f"{key}: {_show(value)} is out of range; it must be {bound}")
    check = meta.get("check")
    if check is not None:
        CHECKS[check](key, value)


def _unknown_key(dotted: str, known: typing.Iterable[str], section: str) -> RecipeError:
    where = f" of {section}" if section else ""
    return RecipeError(
        f"{_show_key(dotted)}: unknown recipe key; check the spelling: the keys{where} are {', '.join(sorted(known))}"
    )


def _build(cls: type, tree: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise _unknown_key(dotted, known, prefix.rstrip("."))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                some = dataclasses.fields(tp)[0].name
                raise RecipeError(
                    f"{dotted}: is a table of keys, got {_show(value)}; set its keys instead, e.g. {dotted}.{some}"
                )
            kwargs[key] = _build(typing.cast(type, tp), value, f"{dotted}.")
        else:
            kwargs[key] = _coerce(dotted, value, tp)
            _check_range(dotted, kwargs[key], known[key].metadata)
    return cls(**kwargs)


def from_dict(tree: dict[str, Any]) -> Recipe:
    recipe = _build(Recipe, tree, "")
    validate(recipe)
    return recipe


def _key_type(path: list[str]) -> Any:
    """The annotated type of the value at dotted `path`; unknown keys and whole sections are refused."""
    cls: Any = Recipe
    for i, part in enumerate(path):
        dotted, section = ".".join(path[: i + 1]), ".".join(path[:i])
        known = {f.name for f in dataclasses.fields(cls)}
        if part not in known:
            raise _unknown_key(dotted, known, section)
        tp = typing.get_type_hints(cls)[part]
        last = i == len(path) - 1
        if dataclasses.is_dataclass(tp):
            if last:
                some = dataclasses.fields(tp)[0].name
                raise RecipeError(f"{dotted}: is a table of keys; set one of them, e.g. --set {dotted}.{some}=...")
            cls = tp
        elif not last:
            raise RecipeError(f"{_show_key(dotted)}: is a value, not a table of keys; set it alone: --set {dotted}=...")
    return tp


# A value that starts like a TOML array, table or string is meant as one; so is one that starts like a number when
# the key does not hold a string. If such a value does not parse, say so rather than read it as a bare word.
_TOML_OPENERS = ("[", "{", '"', "'")
_NUMBER_START = re.compile(r"[+-]?(\d|\.\d|inf\b|nan\b)")


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.steps=2000` -> (["train", "steps"], 2000); the value is a TOML literal, else a bare string."""
    if "=" not in item:
        raise RecipeError(f"--set {_show(item)}: expected KEY=VALUE; write it as e.g. --set train.steps=2000")
    key, raw = item.split("=", 1)
    key = key.strip()
    path = key.split(".")
    if not key or any(not part for part in path):
        raise RecipeError(f"--set {_show(item)}: the key has an empty part; write a dotted path such as train.steps")
    tp = _key_type(path)
    if any(_is_control(c) for c in raw if c != "\t"):
        raise RecipeError(f"{key}: the --set value {_show(raw)} holds a line break or control character; remove it")
    try:
        document = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError as err:
        text = raw.strip()
        if text.startswith(_TOML_OPENERS) or (tp is not str and _NUMBER_START.match(text)):
            raise RecipeError(
                f"{key}: the --set value {_show(text)} is not valid TOML ({_one_line(str(err))}); close the bracket "
                "or quote, or fix the number"
            ) from None
        return path, text
    return path, document["v"]


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = tree
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                dotted = ".".join(path[: i + 1])
                raise RecipeError(
                    f"{dotted}: is a value in the recipe, not a table of keys; fix {dotted} in the recipe"
                )
            node = child
        node[path[-1]] = value
    return tree


def _show_path(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else _show(text, 200)


def load(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    where = _show_path(path)
    if path.is_dir():
        raise RecipeError(f"{where}: is a directory; give the path of a .toml recipe file (see recipes/)")
    if not path.is_file():
        raise RecipeError(f"{where}: no such recipe file; give the path of a .toml recipe (see recipes/)")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise RecipeError(f"{where}: cannot be read ({err.strerror}); check its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecipeError(
            f"{where}: not UTF-8 text (byte {err.start} is not valid UTF-8); save the recipe as UTF-8"
        ) from None
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{where}: not valid TOML ({_one_line(str(err))}); fix the syntax at that line") from None
    tree.setdefault("name", path.stem)
    return from_dict(apply_overrides(tree, overrides or []))


def loads(text: str, overrides: list[str] | None = None) -> Recipe:
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"recipe: not valid TOML ({_one_line(str(err))}); fix the syntax at that line") from None
    return from_dict(apply_overrides(tree, overrides or []))


def validate(recipe: Recipe) -> None:
    """Cross-field checks and registry names; raises RecipeError naming the key and the fix."""
    data.DATASETS.get(recipe.data.name)
    nets.NETS.get(recipe.model.arch)
    method = methods.METHODS.get(recipe.method.name)
    loss = losses.LOSSES.get(recipe.loss.name)
    if method.loss_enforced and loss.family != method.loss_family:
        family = [entry.name for entry in losses.LOSSES.entries() if entry.family == method.loss_family]
        raise RecipeError(
            f"loss.name: method {method.name} uses the {method.loss_family} loss family; set loss.name to one of "
            f"{', '.join(family)}"
        )
    if recipe.loss.lgan_psi_max and loss.g_loss_psi_max is None:
        raise RecipeError(
            f"loss.lgan_psi_max: applies to the LGAN losses only, not {recipe.loss.name!r}; set it to false or "
            "pick an lgan-* loss.name"
        )
    if recipe.train.ema_start > recipe.train.steps:
        raise RecipeError(
            f"train.ema_start: {recipe.train.ema_start} is after the last step {recipe.train.steps}; "
            "lower it or raise train.steps"
        )
    for key in ("batch_size_d", "batch_size_g"):
        size = getattr(recipe.train, key)
        if size % recipe.train.accumulate:
            raise RecipeError(
                f"train.accumulate: {recipe.train.accumulate} does not divide train.{key} = {size}; "
                "pick a divisor of both batch sizes"
            )
    shape = data.output_shape(recipe.data)
    nets.check_compatible(recipe.model, shape)
    _check_classes(recipe)
    _check_metrics(recipe.eval.metrics, recipe.data.name, points=len(shape) == 1)


def _check_classes(recipe: Recipe) -> None:
    """A class-conditional recipe needs labels: model.num_classes must be the number of classes of the data split."""
    wanted, cfg = recipe.model.num_classes, recipe.data
    if not wanted:
        return
    classes = data.DATASETS.get(cfg.name).classes(cfg.split)
    if classes == 0:
        raise RecipeError(
            f"model.num_classes: {cfg.name} split {cfg.split} has no class labels, which {recipe.model.arch} "
            "needs; pick a labelled dataset or split (e.g. cifar10 train)"
        )
    if wanted != classes:
        raise RecipeError(
            f"model.num_classes: {cfg.name} split {cfg.split} has {classes} classes, not {wanted}; "
            f"set model.num_classes={classes}"
        )


# 2-D point sets are scored by their own family (modes covered and high-quality samples), named "modes" by the
# evaluator; image sets by the Inception metrics.
POINT_METRICS = ("modes",)


def _check_metrics(metrics: list[str], dataset: str, *, points: bool) -> None:
    allowed = (*METRICS, *POINT_METRICS)
    choose = f"choose from {', '.join(METRICS)}" + (f" or {', '.join(POINT_METRICS)}" if points else "")
    if not metrics:
        raise RecipeError(f"eval.metrics: the list is empty; {choose}")
    for i, metric in enumerate(metrics):
        if metric not in allowed:
            raise RecipeError(f"eval.metrics[{i}]: {_show(metric)} is not a metric; {choose}")
        if metric in POINT_METRICS and not points:
            raise RecipeError(f"eval.metrics[{i}]: {metric!r} scores 2-D point sets, not {dataset}; {choose}")
