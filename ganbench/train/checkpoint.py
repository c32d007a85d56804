"""Checkpoints: the full training state written atomically, the newest valid one found, generators reloaded.

A checkpoint is one `torch.save` dict holding everything needed to continue exactly: G, D, EMA-G, both
optimizers, the step (the learning-rate schedule is a function of it), every RNG state and the data position.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganbench import SCHEMA_VERSION
from ganbench.errors import RunDirError
from ganbench.store import RunDir, atomic_write


def rng_state() -> dict[str, Any]:
    """Every generator's state. The torch and CUDA states are kept as numpy uint8 arrays: `torch.load`'s
    map_location moves tensors (onto the GPU when resuming there) but leaves arrays on the host, where the setters
    need them."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state().numpy(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [device_state.numpy() for device_state in torch.cuda.get_rng_state_all()]
    return state


def _host_bytes(saved: Any) -> torch.Tensor:
    """A saved generator state as the CPU ByteTensor torch's setters take: from an array, or from a tensor that an
    older checkpoint holds (which map_location may have moved to the GPU)."""
    if isinstance(saved, torch.Tensor):
        return saved.detach().to("cpu", torch.uint8)
    return torch.from_numpy(np.array(saved, dtype=np.uint8))


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(_host_bytes(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU of the saving machine; a machine with fewer GPUs takes the first ones
        for index, saved in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_host_bytes(saved), index)


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temp file, fsync, rename): the old file survives until then."""
    atomic_write(path, lambda tmp: torch.save({**state, "schema_version": SCHEMA_VERSION}, tmp))


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint; a damaged or foreign file raises RunDirError."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such checkpoint; see the run's checkpoints/ folder") from None
    except Exception as err:  # truncated zip, pickle errors: the file is not usable
        raise RunDirError(f"{path}: damaged checkpoint ({type(err).__name__}); delete it to use an older one") from None
    if not isinstance(state, dict) or state.get("schema_version") != SCHEMA_VERSION or "step" not in state:
        raise RunDirError(f"{path}: not a ganbench checkpoint of schema {SCHEMA_VERSION}")
    return state


def newest_valid(run: RunDir, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The loadable checkpoint with the highest step among last.pt and step-N.pt, or None when there is none."""
    candidates = [path for _, path in reversed(run.step_checkpoints())]
    last = run.checkpoint_path("last")
    if last.exists():
        candidates.insert(0, last)
    best: dict[str, Any] | None = None
    for path in candidates:
        try:
            state = load(path, map_location)
        except RunDirError:
            continue  # a damaged file (a crash during a copy, a full disk): fall back to an older one
        if best is None or state["step"] > best["step"]:
            best = state
    return best


def build_generator(recipe: Any) -> nn.Module:
    from ganbench import data, nets

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
