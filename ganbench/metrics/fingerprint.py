"""The protocol fingerprint of a metric row: every field that changes what the number means, and a hash of them.

Two rows with the same `fingerprint` were measured the same way and may share a column; rows with different ones
may not. The hash covers the protocol fields only — never the checkpoint step, the time or the wall
time, which say *what* was measured and when, not *how*.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any

import torch

from ganbench import __version__

PROTOCOL_VERSION = 2  # bump when ganbench's own sampling or metric code changes what a number means

# Fields that change a metric's value for the same generator weights; their hash is the row's `fingerprint`.
PROTOCOL_FIELDS = (
    "protocol_version",
    "extractor",  # the feature network (torch-fidelity-inception-v3, ..., 2d-modes for point sets)
    "weights_hash",  # sha256 of its weights file
    "resize",  # how images reach the network's input size
    "quantize",  # whether generated images were rounded to uint8 first, as saving a PNG would
    "precision",  # arithmetic of the feature network (fp32: TF32 off)
    "n_fake",  # generated samples
    "n_real",  # reference samples behind the statistics
    "ref_dataset",
    "ref_split",
    "ref_hash",  # content hash of the reference images
    "ref_key",  # the reference statistics' own key (extractor and weights included; imported-… for a TTUR file)
    "generator",  # ema or raw
    "bn_mode",  # BatchNorm while sampling: "running" (eval mode) or "batch:<B>" (train mode, batches of B)
    "sample_seed",  # the seed of the latent codes
    "params",  # the metric's own settings (IS splits, KID subsets, PR k), JSON
    "versions",  # torch, torch-fidelity, pytorch-fid, ganbench, JSON
)
# Recorded beside the protocol, not hashed: which evaluation of which checkpoint, and when.
RECORD_FIELDS = ("step", "checkpoint", "backend", "weights", "ref_source", "device", "wall_time_s", "time")


def library_versions() -> str:
    """The versions of the libraries that compute a number, as sorted JSON."""
    versions = {"torch": torch.__version__, "ganbench": __version__}
    for package in ("torch-fidelity", "pytorch-fid"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return json.dumps(versions, sort_keys=True)


def params_text(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def fingerprint_of(fields: dict[str, Any]) -> str:
    """A short stable hash of the protocol fields of `fields` (other keys are ignored)."""
    missing = [name for name in PROTOCOL_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"protocol fields missing: {missing}")
    canonical = json.dumps({name: fields[name] for name in PROTOCOL_FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def protocol(**fields: Any) -> dict[str, Any]:
    """The protocol fields (`protocol_version` and `versions` filled in when absent) plus `fingerprint`."""
    fields.setdefault("protocol_version", PROTOCOL_VERSION)
    fields.setdefault("versions", library_versions())
    fields.setdefault("params", params_text({}))
    unknown = set(fields) - set(PROTOCOL_FIELDS)
    if unknown:
        raise ValueError(f"not protocol fields: {sorted(unknown)}")
    row = {name: fields[name] for name in PROTOCOL_FIELDS if name in fields}
    row["fingerprint"] = fingerprint_of(row)
    return row
