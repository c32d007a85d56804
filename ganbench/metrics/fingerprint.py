"""The protocol fingerprint of a metric row: every field that changes what the number means, and a hash of them.

Two rows with the same `fingerprint` were measured the same way and may share a column; rows with different ones
may not. The fields are declared with the run-directory contract (ganbench.store.PROTOCOL_FIELDS, re-exported here);
the hash covers the protocol fields only — never the checkpoint step, the time or the wall
time, which say *what* was measured and when, not *how*.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any

import torch

from ganbench import __version__
from ganbench.store import PROTOCOL_FIELDS, RECORD_FIELDS

__all__ = [
    "PROTOCOL_FIELDS",
    "PROTOCOL_VERSION",
    "RECORD_FIELDS",
    "fingerprint_of",
    "library_versions",
    "params_text",
    "protocol",
]

PROTOCOL_VERSION = 2  # bump when ganbench's own sampling or metric code changes what a number means


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
