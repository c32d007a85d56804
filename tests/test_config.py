"""ganbench.config: the recipe's dataclasses stand alone, and ganbench.recipe checks what they declare."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from ganbench import config
from ganbench import recipe as recipes
from ganbench.errors import RecipeError


def test_importing_config_loads_no_other_ganbench_module_and_no_torch() -> None:
    code = (
        "import sys, ganbench.config; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('ganbench', 'torch', 'numpy'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["ganbench", "ganbench.config"]


@pytest.mark.parametrize("name", ["Recipe", "DataConfig", "ModelConfig", "MethodConfig", "LossConfig", "TrainConfig"])
def test_recipe_module_hands_out_the_config_classes_themselves(name: str) -> None:
    # isinstance checks and dataclasses.replace across modules need one class, not a copy
    assert getattr(recipes, name) is getattr(config, name)


def _declared_checks() -> list[tuple[str, str]]:
    found = []
    for top in dataclasses.fields(config.Recipe):
        sections = [top] if not isinstance(top.default_factory, type) else dataclasses.fields(top.default_factory)
        prefix = "" if sections == [top] else f"{top.name}."
        found += [(f"{prefix}{f.name}", f.metadata["check"]) for f in sections if "check" in f.metadata]
    return found


def test_every_named_check_a_field_declares_exists_and_refuses_a_bad_value() -> None:
    declared = _declared_checks()
    assert {key for key, _ in declared} == {"name", "train.device"}
    bad = {"name": "../up", "train.device": "gpu0"}
    for key, check in declared:
        with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
            recipes.CHECKS[check](key, bad[key])
