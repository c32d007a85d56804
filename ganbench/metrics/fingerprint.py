"""The protocol fingerprint of a metric row: everything that changes what the number means, and its hash."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any

import torch

from ganbench import __version__

# Fields that change a metric's value for the same generator; their hash is the row's `fingerprint`.
PROTOCOL_FIELDS = (
    "extractor",
    "weights_hash",
    "resize",
    "quantize",
    "n_fake",
    "n_real",
    "ref_dataset",
    "ref_split",
    "ref_hash",
    "generator",
    "versions",
)


def library_versions() -> str:
    versions = {"torch": torch.__version__, "ganbench": __version__}
    for package in ("torch-fidelity", "pytorch-fid"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return json.dumps(versions, sort_keys=True)


def protocol(**fields: Any) -> dict[str, Any]:
    """The protocol fields plus `fingerprint`, a short stable hash of them (not of step, time or wall time)."""
    missing = [name for name in PROTOCOL_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"protocol fields missing: {missing}")
    row = {name: fields[name] for name in PROTOCOL_FIELDS}
    canonical = json.dumps(row, sort_keys=True, default=str)
    row["fingerprint"] = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return row
