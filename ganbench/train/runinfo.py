"""What run.json says about a run (identity, environment, data) and whether a directory may take this recipe."""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import time
from typing import Any

import torch

from ganbench import __version__
from ganbench.config import omit_later_defaults
from ganbench.data import Dataset
from ganbench.errors import RunDirError
from ganbench.files import output_problem
from ganbench.recipe import NON_SEMANTIC_KEYS, Recipe
from ganbench.store import RunDir, RunInfo


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ganbench": __version__,
        "host": socket.gethostname(),
        "cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def training_hash(recipe: Recipe) -> str:
    """A hash of what training computes: the recipe hash without the [eval] table (evaluation settings may change
    between a run and its resumption; the metric rows carry their own protocol)."""
    tree = recipe.to_dict()
    tree.pop("eval")
    for section, key in NON_SEMANTIC_KEYS:
        if section in tree:
            tree[section].pop(key, None)
    omit_later_defaults(tree)
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def recipe_changes(old: Recipe, new: Recipe) -> list[str]:
    """`key: old -> new` for every semantic key that differs between two recipes."""
    flat_old, flat_new = _flatten(old.to_dict()), _flatten(new.to_dict())
    skip = {f"{section}.{key}" for section, key in NON_SEMANTIC_KEYS}
    return [
        f"{key}: {flat_old.get(key)!r} -> {flat_new.get(key)!r}"
        for key in sorted(set(flat_old) | set(flat_new))
        if key not in skip and flat_old.get(key) != flat_new.get(key)
    ]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def new_run_info(recipe: Recipe, dataset: Dataset, device: torch.device) -> RunInfo:
    """run.json of a run about to take its first step."""
    return {
        "name": recipe.name,
        "recipe_hash": recipe.hash(),
        "training_hash": training_hash(recipe),
        "status": "running",
        "step": 0,
        "steps": recipe.train.steps,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "dataset": {
            "name": dataset.name,
            "split": dataset.split,
            "content_hash": dataset.content_hash,
            "source": dataset.source,
        },
        "device": str(device),
    }


def resumed_fields(recipe: Recipe, device: torch.device, info: RunInfo, changed: list[str]) -> dict[str, Any]:
    """The run.json fields a resumed run updates; `changed`: the [eval] keys it takes over (recipe_changes)."""
    fields: dict[str, Any] = {
        "status": "running",
        "environment": environment(),
        "device": str(device),
        "recipe_hash": recipe.hash(),
        "training_hash": training_hash(recipe),
    }
    if changed:
        fields["resumed_with_changes"] = info.get("resumed_with_changes", []) + changed
    return fields


def check_run_dir(run: RunDir, recipe: Recipe) -> RunInfo | None:
    """The existing run.json when resuming (None for a new run); refuses a directory whose training recipe differs.

    Only keys that change what training computes may block a resume (training_hash: the recipe without its [eval]
    table and the keys that choose files, devices or speed switches); a changed [eval] table is taken over by the
    resumed run and recorded in run.json.
    """
    problem = output_problem(run.root, folder=True)
    if problem:
        raise RunDirError(f"{run.root}: {problem}; give another --run-dir")
    if run.exists():
        info = run.read_run()  # a damaged run.json or recipe.toml is refused, saying how to recover
        if run.recipe_path.is_file():
            run.read_recipe()
        if info.get("status") == "finished" and info.get("recipe_hash") == recipe.hash():
            return info
        theirs = info.get("training_hash")
        ours = training_hash(recipe) if theirs is not None else recipe.hash()
        if (theirs if theirs is not None else info.get("recipe_hash")) != ours:
            raise RunDirError(
                f"{run.root}: holds a run of a different recipe (hash {info.get('recipe_hash')}, this recipe "
                f"{recipe.hash()}); give another --run-dir, or diff {run.recipe_path} against your recipe"
            )
        return info
    if run.root.exists() and any(path != run.lock_path for path in run.root.iterdir()):
        raise RunDirError(f"{run.root}: exists, is not empty and is not a run directory; give another --run-dir")
    return None


def check_dataset(run: RunDir, info: RunInfo, dataset: Dataset, recipe: Recipe) -> None:
    """A resumed run must see the data it started with: the same content hash, wherever data.root points."""
    saved: dict[str, Any] = dict(info.get("dataset") or {})
    theirs, ours = saved.get("content_hash"), dataset.content_hash
    if theirs is not None and theirs != ours:
        raise RunDirError(
            f"{run.root}: was trained on {saved.get('name')} {saved.get('split')} with content hash "
            f"{theirs} ({saved.get('source')}), but data.root {recipe.data.root!r} now gives hash {ours} "
            f"({dataset.source}); point data.root at the original data or start a new --run-dir"
        )
