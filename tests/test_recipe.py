"""Recipes: defaults, overrides, validation messages and the stable hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganbench import recipe as recipes
from ganbench.errors import RecipeError


def test_defaults_fill_every_field() -> None:
    resolved = recipes.loads('name = "x"')
    assert resolved.train.steps == 2000
    assert resolved.method.name == "none"
    assert resolved.eval.metrics == ["fid", "is"]


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


def test_hash_changes_with_what_training_computes_only() -> None:
    base = recipes.loads('name = "x"')
    assert recipes.loads('name = "x"', ["train.steps=3"]).hash() != base.hash()
    assert recipes.loads('name = "x"', ["method.cr_lambda=5"]).hash() != base.hash()
    assert recipes.loads('name = "x"', ["data.root=/elsewhere"]).hash() == base.hash()
    assert recipes.loads('name = "x"', ["train.device=cpu"]).hash() == base.hash()


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
