"""Runs the robustness tests share: trained once per session, copied by each test that changes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness.trees import IMAGES, POINTS, train_run


@pytest.fixture(scope="session")
def points_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of 2-D points without EMA, evaluated twice in training; its recipe is ../recipe.toml."""
    return train_run(tmp_path_factory.mktemp("points"), POINTS)


@pytest.fixture(scope="session")
def images_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of images without EMA and without evaluations; its recipe is ../recipe.toml."""
    return train_run(tmp_path_factory.mktemp("images"), IMAGES)
