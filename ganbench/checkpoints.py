"""Reading checkpoints: verified against the run's manifest, loaded without running code, generators rebuilt.

A checkpoint is one `torch.save` dict of tensors and plain Python values, written by the trainer
(ganbench.train.checkpoint); it is loaded with `weights_only=True`, so a crafted file cannot run code.
checkpoints/manifest.json records each file's sha256; a file whose content matches no recorded hash (a crash
mid-copy, a tampered file) is refused. The evaluator reads generators through this module, never through the
trainer.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganbench import SCHEMA_VERSION, data, nets
from ganbench.errors import RunDirError
from ganbench.store import RunDir

MANIFEST = "manifest.json"
UNSAFE_ENV = "GANBENCH_UNSAFE_LOAD"  # =1: unpickle checkpoints of older ganbench versions you trust


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, list[str]] | None:
    """name -> the sha256 values its content may have; None when the folder has no manifest (older runs)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a damaged manifest vouches for nothing: every checkpoint is unverified
    if not isinstance(manifest, dict):
        return {}
    return {str(name): [str(h) for h in hashes] for name, hashes in manifest.items() if isinstance(hashes, list)}


def verify(path: Path) -> None:
    """RunDirError when the manifest beside `path` records hashes for it and its content matches none of them."""
    manifest = read_manifest(path.parent)
    if manifest is None:
        return  # written before checkpoints were hashed: nothing to check against
    allowed = manifest.get(path.name)
    if not allowed:
        raise RunDirError(f"{path}: not recorded in {path.parent / MANIFEST}; it was not completely written")
    if sha256_of(path) not in allowed:
        raise RunDirError(f"{path}: content does not match its recorded sha256 (damaged or replaced)")


def load(path: Path, map_location: str | torch.device = "cpu", check: bool = True) -> dict[str, Any]:
    """Load a checkpoint without running code from it (weights_only); a damaged, foreign or unverified file raises
    RunDirError."""
    if check and path.exists():
        verify(path)
    unsafe = os.environ.get(UNSAFE_ENV) == "1"
    try:
        state = torch.load(path, map_location=map_location, weights_only=not unsafe)
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such checkpoint; see the run's checkpoints/ folder") from None
    except Exception as err:  # truncated zip, refused pickle globals: the file is not usable as it is
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise RunDirError(
                f"{path}: holds Python objects that loading would have to execute (a foreign file, or one written "
                f"by an older ganbench); if you trust it, set {UNSAFE_ENV}=1 once to load it"
            ) from None
        raise RunDirError(f"{path}: damaged checkpoint ({type(err).__name__}); delete it to use an older one") from None
    if not isinstance(state, dict) or state.get("schema_version") != SCHEMA_VERSION or "step" not in state:
        raise RunDirError(f"{path}: not a ganbench checkpoint of schema {SCHEMA_VERSION}")
    return state


def build_generator(recipe: Any) -> nn.Module:
    """An untrained generator of the recipe's architecture and output shape."""
    generator, _ = nets.build_nets(recipe.model, data.output_shape(recipe.data))
    return generator


def load_generator(
    run: RunDir, which: str | int = "last", ema: bool = True, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, int]:
    """The generator (EMA-G when `ema`) of a run's checkpoint, in eval mode, and the step it was saved at."""
    recipe = run.read_recipe()
    state = load(run.checkpoint_path(which), map_location)
    key = "G_ema" if ema else "G"
    if state.get(key) is None:
        raise RunDirError(f"{run.root}: checkpoint {which} has no EMA generator; use --no-ema")
    generator = build_generator(recipe)
    generator.load_state_dict(state[key])
    generator.to(map_location).eval()
    return generator, int(state["step"])
