"""Inception feature extractors: torch-fidelity (default), pytorch-fid (cross-check) or a local weights file.

Each extractor takes uint8 images (N, 3, H, W) and returns float64 2048-d pool features, plus the 1008 logits
where its weights have the classification head (the Inception Score needs them).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganbench.errors import MetricError
from ganbench.store import atomic_write_text, cache_dir

WEIGHTS_ENV = "GANBENCH_INCEPTION_WEIGHTS"
ALL_METRICS = frozenset({"fid", "kid", "pr", "is"})
FEATURE_METRICS = frozenset({"fid", "kid", "pr"})


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so large weights are hashed once."""
    stat = path.stat()
    memo = cache_dir() / "hashes.json"
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        known = {}
    if key not in known:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        known[key] = digest.hexdigest()
        atomic_write_text(memo, json.dumps(known, indent=1))
    return known[key]


@dataclass
class Extractor:
    """A feature extractor and the facts of its protocol, recorded with every metric row."""

    name: str  # torch-fidelity-inception-v3, pytorch-fid-inception-v3, torchscript-trunk
    weights: str  # the file, or "library default"
    weights_hash: str
    resize: str  # how images reach 299 px
    supports: frozenset[str]
    module: nn.Module = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    kind: str = "torchscript"  # which input convention `module` follows

    def check(self, metrics: list[str]) -> None:
        """Refuse, in one line, a metric these weights cannot compute."""
        for metric in metrics:
            if metric not in ALL_METRICS:
                raise MetricError(f"--metrics {metric}: unknown metric; choose from fid, is, kid, pr")
            if metric not in self.supports:
                raise MetricError(
                    f"{metric}: the Inception weights {self.weights} have no 1008-class head (an FID-only trunk); "
                    f"give the full Inception weights with --inception-weights or drop {metric} from --metrics"
                )

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (N, 3, H, W) -> {"pool": (N, 2048) float64, "logits": (N, 1008) float64 if supported}."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        images = images.to(self.device)
        if self.kind == "torch-fidelity":
            pool, logits = self.module(images)
            out = {"pool": pool, "logits": logits}
        elif self.kind == "pytorch-fid":
            x = F.interpolate(images.float() / 255.0, size=(299, 299), mode="bilinear", align_corners=False)
            out = {"pool": self.module(x)[0].flatten(1)}
        else:
            x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
            pool = self.module((x - 128.0) / 128.0)
            if pool.ndim != 2 or pool.shape[1] != 2048 or len(pool) != len(images):
                raise MetricError(
                    f"{self.weights}: the weights gave features of shape {tuple(pool.shape)}, "
                    "not (N, 2048); this is not an Inception pool3 trunk"
                )
            out = {"pool": pool}
        return {key: value.double().cpu() for key, value in out.items()}


def resolve_weights(weights: str | None) -> str:
    """The weights file to use: the given one, else $GANBENCH_INCEPTION_WEIGHTS, else "" (library default)."""
    return weights or os.environ.get(WEIGHTS_ENV, "")


def build_extractor(
    backend: str = "torch-fidelity", weights: str | None = None, device: str | torch.device = "cpu"
) -> Extractor:
    """An extractor for `backend`, or for the local weights file when one is given (which decides the kind)."""
    device = torch.device(device)
    path_text = resolve_weights(weights)
    if path_text:
        return _from_file(Path(path_text), device)
    if backend == "torch-fidelity":
        module = _torch_fidelity_module(None)
        return Extractor(
            "torch-fidelity-inception-v3",
            "torch-fidelity default (inception-2015-12-05)",
            "torch-fidelity-default",
            "tf1-bilinear-299",
            ALL_METRICS,
            module.to(device),
            device,
            "torch-fidelity",
        )
    if backend == "pytorch-fid":
        try:
            from pytorch_fid.inception import InceptionV3

            module = InceptionV3([3], resize_input=False, normalize_input=True, use_fid_inception=True)
        except Exception as err:  # a failed download surfaces as URLError, OSError, HTTPError
            raise MetricError(
                f"pytorch-fid: could not get its Inception weights ({type(err).__name__}); without network, "
                f"give a local file with --inception-weights or ${WEIGHTS_ENV}"
            ) from None
        return Extractor(
            "pytorch-fid-inception-v3",
            "pytorch-fid default (pt_inception-2015-12-05)",
            "pytorch-fid-default",
            "torch-bilinear-299",
            FEATURE_METRICS,
            module.eval().to(device),
            device,
            "pytorch-fid",
        )
    raise MetricError(f"--backend {backend}: unknown; choose torch-fidelity or pytorch-fid")


def _torch_fidelity_module(path: Path | None) -> nn.Module:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        return FeatureExtractorInceptionV3(
            "inception-v3-compat",
            ["2048", "logits_unbiased"],
            feature_extractor_weights_path=None if path is None else str(path),
        )
    except Exception as err:
        where = f"the weights file {path}" if path else "torch-fidelity's download of its Inception weights"
        raise MetricError(
            f"{where} failed ({type(err).__name__}: {str(err)[:80]}); without network, give a local "
            f"weights file with --inception-weights or ${WEIGHTS_ENV}"
        ) from None


def _from_file(path: Path, device: torch.device) -> Extractor:
    if not path.is_file():
        raise MetricError(f"{path}: no such Inception weights file; check --inception-weights / ${WEIGHTS_ENV}")
    digest = file_sha256(path)
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception:  # not TorchScript: maybe a torch-fidelity state dict with the 1008-class head
        module = None
    if module is not None:
        return Extractor(
            "torchscript-trunk",
            str(path),
            digest,
            "torch-bilinear-299",
            FEATURE_METRICS,
            module.eval(),
            device,
            "torchscript",
        )
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise MetricError(
            f"{path}: neither TorchScript nor a state dict ({type(err).__name__}); give the Inception weights file"
        ) from None
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise MetricError(f"{path}: not Inception-v3 weights in torch-fidelity's layout; give the right file")
    if "fc.weight" not in state:
        raise MetricError(f"{path}: an Inception state dict without its fc layer; give a TorchScript trunk instead")
    module = _torch_fidelity_module(path)
    return Extractor(
        "torch-fidelity-inception-v3",
        str(path),
        digest,
        "tf1-bilinear-299",
        ALL_METRICS,
        module.to(device),
        device,
        "torch-fidelity",
    )
