"""Checkpoints: the full training state written atomically, verified, loaded without running code.

A checkpoint is one `torch.save` dict holding everything needed to continue exactly: G, D, EMA-G, both
optimizers, the step (the learning-rate schedule is a function of it), every RNG state, the data position and the
partial log window. It holds only tensors and plain Python values, so it is loaded with `weights_only=True`: a crafted
file cannot run code. checkpoints/manifest.json records each file's sha256; a file whose content matches no recorded
hash (a crash mid-copy, a tampered file) is skipped with a warning in favour of an older valid one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganbench import SCHEMA_VERSION
from ganbench.errors import RunDirError
from ganbench.store import RunDir, atomic_write, atomic_write_text

MANIFEST = "manifest.json"
UNSAFE_ENV = "GANBENCH_UNSAFE_LOAD"  # =1: unpickle checkpoints of older ganbench versions you trust


def rng_state() -> dict[str, Any]:
    """Every generator's state as plain values (bytes, ints, lists): `torch.load(weights_only=True)` takes them, and
    map_location leaves them on the host, where the setters need them."""
    name, key, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [str(name), [int(k) for k in key], int(position), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().numpy().tobytes(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [device_state.numpy().tobytes() for device_state in torch.cuda.get_rng_state_all()]
    return state


def _host_bytes(saved: Any) -> torch.Tensor:
    """A saved generator state as the CPU ByteTensor torch's setters take: from an array, or from a tensor that an
    older checkpoint holds (which map_location may have moved to the GPU)."""
    if isinstance(saved, torch.Tensor):
        return saved.detach().to("cpu", torch.uint8)
    if isinstance(saved, bytes | bytearray):
        return torch.frombuffer(bytearray(saved), dtype=torch.uint8)
    return torch.from_numpy(np.array(saved, dtype=np.uint8))


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, key, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(_host_bytes(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU of the saving machine; a machine with fewer GPUs takes the first ones
        for index, saved in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_host_bytes(saved), index)


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


def _write_manifest(folder: Path, manifest: dict[str, list[str]]) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _install(folder: Path, name: str, fill: Any, digest: str) -> None:
    """Put a finished temp file in place as `name`, with the manifest accepting the old or the new content while
    the rename happens (a crash then leaves a file that matches one of them), and the new one only after."""
    manifest = read_manifest(folder) or {}
    manifest[name] = [*manifest.get(name, [])[-1:], digest]
    _write_manifest(folder, manifest)
    fill(folder / name)
    manifest[name] = [digest]
    _write_manifest(folder, manifest)


def save(path: Path, state: dict[str, Any], also: tuple[Path, ...] = ()) -> None:
    """Write `state` to `path` atomically (temp file, fsync, rename; the old file survives until then) and record its
    sha256; each path in `also` (last.pt beside step-N.pt) becomes a hard link to the same file, put in place after
    `path`, so a kill between the two never loses the step-N.pt."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    payload = {**state, "schema_version": SCHEMA_VERSION}
    digest: dict[str, str] = {}

    def write(tmp: Path) -> None:
        torch.save(payload, tmp)
        digest["sha256"] = sha256_of(tmp)

    staged = folder / f".{path.name}.staged"
    atomic_write(staged, write)
    _install(folder, path.name, lambda target: os.replace(staged, target), digest["sha256"])
    for other in also:
        _install(folder, other.name, lambda target: _link_or_copy(path, target), digest["sha256"])


def _link_or_copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # a file system without hard links
        atomic_write(tmp, lambda t: t.write_bytes(source.read_bytes()))
    os.replace(tmp, target)


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


def newest_valid(run: RunDir, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The valid checkpoint with the highest step among last.pt and step-N.pt, or None when there is none; each file
    skipped (damaged, unverified, foreign) is named in a RuntimeWarning."""
    candidates = [path for _, path in reversed(run.step_checkpoints())]
    last = run.checkpoint_path("last")
    if last.exists():
        candidates.insert(0, last)
    best: dict[str, Any] | None = None
    for path in candidates:
        if best is not None and path != last and _step_of(path) <= best["step"]:
            continue  # an older step-N.pt cannot beat what was found: not unpickled at all
        try:
            state = load(path, map_location)
        except RunDirError as err:
            warnings.warn(f"skipped {err}", RuntimeWarning, stacklevel=2)
            continue  # fall back to an older one
        if best is None or state["step"] > best["step"]:
            best = state
    return best


def _step_of(path: Path) -> int:
    stem = path.stem
    return int(stem.split("-", 1)[1]) if stem.startswith("step-") else -1


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
