"""Writing checkpoints, and finding the one a resumed run continues from.

A checkpoint is one `torch.save` dict holding everything needed to continue exactly: G, D, EMA-G, both
optimizers, the step (the learning-rate schedule is a function of it), every RNG state, the data position and the
partial log window. It holds only tensors and plain Python values, so it is loaded with `weights_only=True` (see
ganbench.checkpoints, which reads them and is re-exported here). Each file is written atomically and its sha256
recorded in checkpoints/manifest.json before and after it is put in place.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import torch

from ganbench import SCHEMA_VERSION
from ganbench.checkpoints import (
    MANIFEST,
    UNSAFE_ENV,
    build_generator,
    load,
    load_generator,
    read_manifest,
    sha256_of,
    verify,
)
from ganbench.errors import RunDirError
from ganbench.files import atomic_write, atomic_write_text
from ganbench.store import RunDir

__all__ = [
    "MANIFEST",
    "UNSAFE_ENV",
    "build_generator",
    "load",
    "load_generator",
    "newest_valid",
    "read_manifest",
    "rng_state",
    "save",
    "set_rng_state",
    "sha256_of",
    "verify",
]


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


class _Recording:
    """The file torch.save writes a checkpoint through, keeping the OSError of a write that failed: torch's zip writer
    turns it into a RuntimeError ("unexpected pos ...") that no longer says why (a full disk: ENOSPC)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        try:
            self.handle.flush()
        except OSError as err:
            self.error = err
            raise


def save(path: Path, state: dict[str, Any], also: tuple[Path, ...] = ()) -> None:
    """Write `state` to `path` atomically (temp file, fsync, rename; the old file survives until then) and record its
    sha256; each path in `also` (last.pt beside step-N.pt) becomes a hard link to the same file, put in place after
    `path`, so a kill between the two never loses the step-N.pt."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    payload = {**state, "schema_version": SCHEMA_VERSION}
    digest: dict[str, str] = {}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            sink = _Recording(handle)
            try:
                torch.save(payload, cast(BinaryIO, sink))  # it calls write() and flush() only
            except Exception as err:
                if sink.error is None:
                    raise
                raise sink.error from err  # the write's own error (a full disk) rather than the zip writer's words
        digest["sha256"] = sha256_of(tmp)

    staged = folder / f".{path.name}.staged"
    try:
        atomic_write(staged, write)
    except OSError as err:
        if err.filename != str(staged) or err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err  # the checkpoint's name, not the temp file's
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
