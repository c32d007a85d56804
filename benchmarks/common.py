"""What the benchmark scripts share: the recipes by name, and random images standing in for a dataset."""

from __future__ import annotations

from pathlib import Path

import torch

from ganbench import data
from ganbench import recipe as recipes
from ganbench.data.base import DatasetSpec, image_dataset, register

REPO = Path(__file__).resolve().parent.parent
NOISE = "bench-noise"
NOISE_IMAGES = {"count": 50_000}


def _noise_shape(cfg: recipes.DataConfig) -> tuple[int, ...]:
    side = cfg.size or 32
    return (3, side, side)


def _noise_load(cfg: recipes.DataConfig) -> data.Dataset:
    generator = torch.Generator().manual_seed(cfg.seed)
    images = torch.randint(0, 256, (NOISE_IMAGES["count"], *_noise_shape(cfg)), dtype=torch.uint8, generator=generator)
    return image_dataset(NOISE, "train", images, "random uint8 images (speed benchmark)", 0)


register(DatasetSpec(NOISE, "image", "random uint8 images for speed benchmarks", _noise_load, _noise_shape, ("train",)))


def load_recipe(name: str, overrides: list[str], source: str) -> recipes.Recipe:
    recipe = recipes.load(REPO / "recipes" / f"{name}.toml", overrides)
    if source == "noise":
        side = data.output_shape(recipe.data)[-1] if recipe.data.name != "folder" else recipe.data.size
        noise = [f"data.name={NOISE}", f"data.size={side}", "data.split=train"]
        recipe = recipes.load(REPO / "recipes" / f"{name}.toml", [*overrides, *noise])
    return recipe
