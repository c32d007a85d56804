"""Recipes: defaults, overrides, validation messages and the round trip. What each key changes, and which keys
the hashes cover, is tested key by key in test_recipe_keys.py."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w
import torch

from ganbench import recipe as recipes
from ganbench.errors import RecipeError
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import train

PARTIAL = """
name = "partial"
seed = 3

[data]
name = "ring8"
num_samples = 256

[model]
z_dim = 4
g_channels = 16
d_channels = 16

[method]
name = "gn"

[train]
device = "cpu"
steps = 3
batch_size_d = 32
batch_size_g = 32
log_every = 1
checkpoint_every = 3
"""


def declared_defaults(cls: type) -> dict[str, Any]:
    """Every field's declared default, read off the dataclasses (not through the loader under test)."""
    tree: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.default_factory is not dataclasses.MISSING:
            value = item.default_factory()
            tree[item.name] = declared_defaults(type(value)) if dataclasses.is_dataclass(value) else value
        else:
            tree[item.name] = item.default
    return tree


def test_a_recipe_naming_some_keys_trains_as_one_naming_every_default(tmp_path: Path) -> None:
    written = tomllib.loads(PARTIAL)
    explicit = declared_defaults(recipes.Recipe)
    for section, value in written.items():
        if isinstance(value, dict):
            explicit[section].update(value)
        else:
            explicit[section] = value

    def leaves(tree: dict[str, Any]) -> int:
        return sum(len(v) if isinstance(v, dict) else 1 for v in tree.values())

    assert leaves(written) < leaves(explicit) / 3  # most keys come from the defaults
    (tmp_path / "partial.toml").write_text(PARTIAL)
    (tmp_path / "explicit.toml").write_text(tomli_w.dumps(explicit))
    partial, full = recipes.load(tmp_path / "partial.toml"), recipes.load(tmp_path / "explicit.toml")
    assert partial == full and partial.hash() == full.hash()
    runs = [RunDir(tmp_path / name) for name in ("partial-run", "explicit-run")]
    for recipe, run in zip((partial, full), runs, strict=True):
        train(recipe, run)
    states = [checkpoint.load(run.checkpoint_path("last")) for run in runs]
    for net in ("G", "D", "G_ema"):
        assert states[0][net].keys() == states[1][net].keys()
        assert all(torch.equal(states[0][net][k], states[1][net][k]) for k in states[0][net]), net
    timing = ["g_steps_per_s", "images_per_s", "wall_time"]
    pd.testing.assert_frame_equal(*(run.read_history().drop(columns=timing) for run in runs))


def test_overrides_parse_toml_literals_and_bare_strings() -> None:
    resolved = recipes.loads(
        'name = "x"', ["train.steps=20", "method.name=gn", "train.lr_d=1e-3", "method.bcr=true", 'loss.name="hinge"']
    )
    assert resolved.train.steps == 20
    assert resolved.method.name == "gn"
    assert resolved.train.lr_d == pytest.approx(1e-3)
    assert resolved.method.bcr is True
    assert resolved.loss.name == "hinge"


def test_list_override_accepts_commas() -> None:
    assert recipes.loads('name = "x"', ["eval.metrics=fid,kid"]).eval.metrics == ["fid", "kid"]


def test_int_is_accepted_for_float_fields() -> None:
    assert recipes.loads("[train]\nlr_d = 1").train.lr_d == 1.0


def test_resolved_recipe_round_trips_with_the_same_hash(tmp_path: Path) -> None:
    resolved = recipes.loads('name = "x"', ["method.name=gran", "method.gran_k=2.5"])
    path = tmp_path / "r.toml"
    path.write_text(resolved.to_toml())
    again = recipes.load(path)
    assert again == resolved
    assert again.hash() == resolved.hash()


BAD_RECIPES = [
    ("[train]\nstepz = 3", "train.stepz"),
    ('[train]\nsteps = "many"', "train.steps"),
    ("[train]\nsteps = 0", "train.steps"),
    ("[train]\nbeta1 = 1.5", "train.beta1"),
    ("[train]\nlr_d = 0", "train.lr_d"),
    ('[train]\nlr_decay = "cosine"', "train.lr_decay"),
    ("[train]\nema_start = 5000\nsteps = 10", "train.ema_start"),
    ("[train]\nkeep_checkpoints = 1", "train.keep_checkpoints"),
    ("train = 5", "train"),
    ('[method]\nname = "foo"', "method.name"),
    ('[method]\nname = "lgan"', "loss.name"),
    ('[model]\narch = "vgg"', "model.arch"),
    ('[data]\nname = "imagenet"', "data.name"),
    ('[loss]\nname = "l2"', "loss.name"),
    ("[eval]\nmetrics = 3", "eval.metrics"),
    ('[model]\narch = "cnn32"', "model.arch"),  # the default data is 2-D points
    ("[method]\ngran_k = -1.0", "method.gran_k"),
    ("bogus = 1", "bogus"),
]


@pytest.mark.parametrize(("text", "key"), BAD_RECIPES)
def test_bad_recipes_name_the_key(text: str, key: str) -> None:
    with pytest.raises(RecipeError) as caught:
        recipes.loads(text)
    message = str(caught.value)
    assert message.startswith(key) or f" {key}" in message or message.startswith(f"{key}:")
    assert "\n" not in message


def test_bad_override_syntax() -> None:
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        recipes.loads("", ["train.steps"])


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no such recipe file"):
        recipes.load(tmp_path / "nope.toml")


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[train\nsteps = 3")
    with pytest.raises(RecipeError, match="not valid TOML"):
        recipes.load(path)


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my_recipe.toml"
    path.write_text("")
    assert recipes.load(path).name == "my_recipe"
