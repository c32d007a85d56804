"""What a non-editable install gets: the wheel holds every shipped recipe, py.typed and the papers' numbers.

The wheel is built from a copy of the sources (pip builds in the source folder, and the checkout may be in use),
without network or build isolation: setuptools from the environment, as `pip install .` in CI would use it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "ganbench"


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(PACKAGE, source / "ganbench", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w"]
    subprocess.run([*command, str(out)], check=True, capture_output=True, cwd=source)
    (wheel,) = out.glob("ganbench-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_checkout_recipes_folder_is_the_packaged_one() -> None:
    # recipes/stl10_cnn_gn.toml keeps working from a checkout, and there is one copy of each recipe to edit
    assert (REPO / "recipes").resolve() == PACKAGE / "recipes"


def test_compare_looks_in_the_package_folder_first() -> None:
    # what an installed ganbench has (no checkout around it): compare and the report find the paper recipes there
    from ganbench import compare

    assert compare.recipe_dirs()[0] == PACKAGE / "recipes"
    assert (compare.recipe_dirs()[0] / "stl10_resnet_gn_cr.toml").is_file()


def test_the_wheel_ships_every_recipe_and_py_typed(wheel_names: set[str]) -> None:
    shipped = {
        path.relative_to(REPO).as_posix()
        for pattern in ("recipes/*.toml", "recipes/variants/*.toml", "report/*.toml")
        for path in PACKAGE.glob(pattern)
    }
    assert len([name for name in shipped if name.startswith("ganbench/recipes/")]) >= 48
    assert shipped | {"ganbench/py.typed"} <= wheel_names
    assert (PACKAGE / "py.typed").is_file()


def test_the_wheel_holds_every_module(wheel_names: set[str]) -> None:
    modules = {path.relative_to(REPO).as_posix() for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}
    assert modules <= wheel_names
