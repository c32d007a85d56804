"""ganbench's FID and KID on real images through the real FID trunk, against what pytorch-fid's and torch-fidelity's
own code computes for the same images with the same weights.

The images are real CIFAR-10 (the JPEG copy): side A is 64 train images, side B 64 test images blurred (each 2 x 2
block averaged), so that both FID and KID are well away from zero. Every library gets the same 299 px uint8 images
(enlarged here with PIL, so no library's own resize is involved) and the trunk's input scaling (x − 128)/128, and
computes its features with its own Inception module loaded with the trunk's tensors, and the metrics with its own
functions. The expected values come from those libraries in this test, never from a number ganbench printed.

Needs $GANBENCH_INCEPTION_WEIGHTS (the FID trunk: `.ci/fid-weights.sh` fetches and checks it) and the CIFAR-10 JPEG
archive ($GANBENCH_SHARED_DATA); skips without them. About 400 images go through Inception (about a minute on two
CPU threads).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganbench.data import cifar_jpeg
from ganbench.errors import DataError
from ganbench.metrics.fid import feature_statistics, frechet_distance
from ganbench.metrics.inception import build_extractor
from ganbench.metrics.kid import kernel_inception_distance
from tests.test_metrics_inception import _trunk_in_torchvision_layout

REAL_WEIGHTS = os.environ.get("GANBENCH_INCEPTION_WEIGHTS", "")
PER_SIDE = 64
KID_SUBSETS, KID_SUBSET_SIZE, KID_SEED = 50, 50, 2020
# FID and KID of the same images from three implementations: the features agree to ~1e-6 (float32 through the same
# convolutions in another order), which moves FID (~10^2 here) and KID (~10^-1) by far less than 1e-3 relative; a
# wrong statistic (a biased covariance, a missing mean term, another kernel or subset draw) moves them by percents.
RTOL = 1e-3


def _archive() -> Path | None:
    try:
        return cifar_jpeg.find_archive("")
    except DataError:
        return None


pytestmark = [
    pytest.mark.skipif(
        not REAL_WEIGHTS or not Path(REAL_WEIGHTS).is_file(),
        reason="set GANBENCH_INCEPTION_WEIGHTS to the FID trunk (bash .ci/fid-weights.sh prints its path)",
    ),
    pytest.mark.skipif(_archive() is None, reason="no CIFAR-10 JPEG archive (set GANBENCH_SHARED_DATA)"),
]


@pytest.fixture(scope="module")
def two_threads() -> Iterator[None]:
    """Inception on two threads where the machine has them (the test process runs alone in CI)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    """uint8 NHWC: A = 64 train images, B = 64 test images, blurred; both seeded choices."""
    archive = _archive()
    assert archive is not None
    train, _ = cifar_jpeg.decoded_split(archive, "train")
    test, _ = cifar_jpeg.decoded_split(archive, "test")
    rng = np.random.RandomState(0)
    a = train[rng.choice(len(train), PER_SIDE, replace=False)]
    b = test[rng.choice(len(test), PER_SIDE, replace=False)].astype(np.float64)
    blocks = b.reshape(PER_SIDE, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    blurred = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)
    return {"A": a, "B": np.round(blurred).astype(np.uint8)}


def enlarge_299(nhwc: np.ndarray) -> torch.Tensor:
    """uint8 (N, 3, 299, 299), each image enlarged by PIL's bilinear filter."""
    big = [np.asarray(Image.fromarray(image).resize((299, 299), Image.Resampling.BILINEAR)) for image in nhwc]
    return torch.from_numpy(np.stack(big)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def features(
    images: dict[str, np.ndarray], two_threads: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, torch.Tensor]]:
    """Pool features of both sides by library: ganbench, torch-fidelity, pytorch-fid (each computed once)."""
    import pytorch_fid.inception as pfid
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    big = {side: enlarge_299(x) for side, x in images.items()}
    ours = build_extractor(weights=REAL_WEIGHTS)
    state = _trunk_in_torchvision_layout(REAL_WEIGHTS)
    # Both libraries load strictly; the trunk has no class layer, and the pool features do not use one.
    full = {**state, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    mapped = tmp_path_factory.mktemp("weights") / "mapped.pth"
    torch.save(full, mapped)
    fidelity = FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=str(mapped)).eval()
    original = pfid.load_state_dict_from_url
    pfid.load_state_dict_from_url = lambda *args, **kwargs: full  # pytorch-fid takes no path: its download, replaced
    try:
        pytorch_fid = pfid.InceptionV3([pfid.InceptionV3.DEFAULT_BLOCK_INDEX], normalize_input=False).eval()
    finally:
        pfid.load_state_dict_from_url = original
    out: dict[str, dict[str, torch.Tensor]] = {"ganbench": {}, "torch-fidelity": {}, "pytorch-fid": {}}
    with torch.no_grad():
        for side, x in big.items():
            out["ganbench"][side] = ours.features(x)["pool"].double()
            out["torch-fidelity"][side] = fidelity(x)[0].double()
            out["pytorch-fid"][side] = pytorch_fid((x.float() - 128) / 128)[0].flatten(1).double()
    return out


def test_features_agree_across_libraries(features: dict[str, dict[str, torch.Tensor]]) -> None:
    """The three networks compute the same features (scale ~1: pool3 activations lie in about 0…10)."""
    for library in ("torch-fidelity", "pytorch-fid"):
        for side in ("A", "B"):
            torch.testing.assert_close(features[library][side], features["ganbench"][side], rtol=0, atol=1e-4)


def test_fid_equals_pytorch_fid_and_torch_fidelity(features: dict[str, dict[str, torch.Tensor]]) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    ours = frechet_distance(
        *feature_statistics(features["ganbench"]["A"]), *feature_statistics(features["ganbench"]["B"])
    )
    a, b = (features["pytorch-fid"][side].numpy() for side in ("A", "B"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy's notes on the singular 64-sample covariance product
        theirs_pfid = calculate_frechet_distance(
            a.mean(axis=0), np.cov(a, rowvar=False), b.mean(axis=0), np.cov(b, rowvar=False)
        )
        stats = [fid_features_to_statistics(features["torch-fidelity"][side].float()) for side in ("A", "B")]
        theirs_fidelity = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert ours > 10  # blurred against sharp images: far from zero, so a relative bound means something
    assert ours == pytest.approx(float(theirs_pfid), rel=RTOL)
    assert ours == pytest.approx(float(theirs_fidelity), rel=RTOL)


def test_kid_equals_torch_fidelity(features: dict[str, dict[str, torch.Tensor]]) -> None:
    from torch_fidelity.metric_kid import kid_features_to_metric

    mean, std = kernel_inception_distance(
        features["ganbench"]["A"], features["ganbench"]["B"], subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE
    )
    theirs = kid_features_to_metric(
        features["torch-fidelity"]["A"].float(),
        features["torch-fidelity"]["B"].float(),
        kid_subsets=KID_SUBSETS,
        kid_subset_size=KID_SUBSET_SIZE,
        kid_degree=3,
        kid_gamma=None,
        kid_coef0=1,
        rng_seed=KID_SEED,
        verbose=False,
    )
    assert mean > 0.01  # well above the estimate's noise floor here, so the relative bound holds
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=RTOL)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=RTOL, abs=1e-6)


def test_32px_images_reach_the_trunk_resized_and_scaled(images: dict[str, np.ndarray], two_threads: None) -> None:
    """ganbench's own path for 32 px images (bilinear to 299, then (x − 128)/128) equals the TorchScript trunk fed
    by this test's own resize, to 1e-5."""
    x = torch.from_numpy(images["A"][:8]).permute(0, 3, 1, 2).contiguous()
    ours = build_extractor(weights=REAL_WEIGHTS).features(x)["pool"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trunk = torch.jit.load(REAL_WEIGHTS).eval()
    with torch.no_grad():
        enlarged = F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False)
        expected = trunk((enlarged - 128) / 128)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
