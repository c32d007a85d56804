"""FID from statistics: against pytorch-fid's reference implementation and the closed form of Gaussians; both
square-root paths on ill-conditioned, rank-deficient covariances of known FID, with a misbehaving SciPy sqrtm; and
the mark a FID from N ≤ D samples carries in the `eval` table, the metrics rows and the report."""

from __future__ import annotations

import csv
import dataclasses
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_fid.fid_score import calculate_frechet_distance
from typer.testing import CliRunner

from ganbench.cli import app
from ganbench.errors import MetricError
from ganbench.metrics import inception
from ganbench.metrics.fid import (
    RANK_MARK,
    SQRTM_AGREEMENT,
    SqrtmFallbackWarning,
    feature_statistics,
    frechet_distance,
    rank_deficiency_note,
    row_rank_note,
)
from ganbench.metrics.refstats import RefStats, stats_key
from ganbench.report import build_report
from tests.test_metrics_evaluate import WIDTH, image_recipe, make_run
from tests.test_metrics_inception import no_downloads, save_tiny_trunk  # noqa: F401  (autouse fixture)
from tests.test_report_render import (
    POOL,
    ChannelStats,
    Extraction,
    Level,
    markdown_rows,
    paper_recipe,
    reference,
    train_run,
)


def _random_stats(rng: np.random.Generator, dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return feature_statistics(rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim))


@pytest.mark.parametrize(("dim", "n"), [(2, 10), (16, 50), (64, 200), (32, 20)])  # the last: N < D, singular
def test_matches_pytorch_fid_on_random_statistics(dim: int, n: int) -> None:
    rng = np.random.default_rng(dim)
    mu1, s1 = _random_stats(rng, dim, n)
    mu2, s2 = _random_stats(rng, dim, n)
    reference = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-6)


def test_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1.0 + 4.0 + 0.0 + (1 + 4 - 2 * 2) + (4 + 1 - 2 * 2) + (9 + 1 - 2 * 3)  # = 11, by hand
    assert expected == pytest.approx(np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2)))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(11.0, rel=1e-9)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=6),
    st.lists(st.floats(0.01, 9), min_size=6, max_size=6),
    st.lists(st.floats(0.01, 9), min_size=6, max_size=6),
    st.floats(-3, 3),
)
def test_closed_form_for_any_diagonal_gaussians(
    mu: list[float], v1: list[float], v2: list[float], shift: float
) -> None:
    dim = len(mu)
    a, b = np.array(v1[:dim]), np.array(v2[:dim])
    mu1 = np.array(mu)
    mu2 = mu1 + shift
    expected = dim * shift**2 + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_closed_form_for_rotated_gaussians() -> None:
    """Σ₂ = R Σ₁ Rᵀ with Σ₁ = diag(a): for commuting-free pairs use the 2-D formula Tr√(Σ₁Σ₂) by eigenvalues."""
    a = np.array([4.0, 1.0])
    theta = 0.7
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    s1, s2 = np.diag(a), rotation @ np.diag(a) @ rotation.T
    # For 2x2 PSD matrices: Tr√M = √(Tr M + 2√det M), with M = Σ₁Σ₂ (det M = det Σ₁ det Σ₂).
    product = s1 @ s2
    trace_root = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = np.trace(s1) + np.trace(s2) - 2 * trace_root
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=2, max_value=12), st.integers(0, 20))
def test_fid_of_a_set_with_itself_is_zero_and_never_negative(seed: int, dim: int, extra: int) -> None:
    features = np.random.default_rng(seed).normal(size=(dim + 1 + extra, dim)) * 10.0
    mu, sigma = feature_statistics(features)
    value = frechet_distance(mu, sigma, mu, sigma)
    assert 0.0 <= value < 1e-6 * max(1.0, np.trace(sigma))


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=3, max_value=30))
def test_fid_is_symmetric_and_never_negative(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    mu1, s1 = feature_statistics(rng.normal(size=(n, 8)))
    mu2, s2 = feature_statistics(rng.normal(size=(n, 8)))
    forward, backward = frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1)
    assert forward >= 0.0 and forward == pytest.approx(backward, rel=1e-6, abs=1e-9)


def test_statistics_are_float64_mean_and_unbiased_covariance() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]], dtype=torch.float32)
    mu, sigma = feature_statistics(features)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, [3.0, 3.0])
    # by hand: deviations x (-2, 0, 2), y (-1, 3, -2); divisor N − 1 = 2
    np.testing.assert_allclose(sigma, [[8 / 2, (2 + 0 - 4) / 2], [(2 + 0 - 4) / 2, (1 + 9 + 4) / 2]])


def test_mismatched_statistics_are_refused() -> None:
    with pytest.raises(MetricError, match="mismatched statistics") as caught:
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    assert "\n" not in str(caught.value)
    with pytest.raises(MetricError, match="mismatched statistics"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


def test_non_finite_statistics_are_refused() -> None:
    with pytest.raises(MetricError, match="NaN"):
        frechet_distance(np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2))


def test_too_few_features_for_a_covariance() -> None:
    with pytest.raises(MetricError, match="at least 2"):
        feature_statistics(np.zeros((1, 4)))


@pytest.mark.parametrize(("n", "dim"), [(2000, 512), (300, 512)])  # full rank; rank-deficient (N < D)
def test_eigh_trace_agrees_with_scipy_sqrtm(n: int, dim: int) -> None:
    """The default eigendecomposition route gives the reference sqrtm route's FID to far better than 0.01."""
    rng = np.random.default_rng(7)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    real = np.maximum(rng.normal(size=(n, dim)) @ mixing, 0)  # ReLU'd correlated features, as pool3's are
    fake = np.maximum(rng.normal(loc=0.1, size=(n, dim)) @ mixing, 0)
    mu1, sigma1 = feature_statistics(real)
    mu2, sigma2 = feature_statistics(fake)
    by_eigh = frechet_distance(mu1, sigma1, mu2, sigma2, method="eigh")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SqrtmFallbackWarning)  # scipy's own root, not the fallback, is compared
        by_sqrtm = frechet_distance(mu1, sigma1, mu2, sigma2, method="sqrtm")
    assert by_eigh > 0.1
    assert abs(by_eigh - by_sqrtm) < 1e-6 * max(1.0, by_sqrtm)


# ----------------------------------------------------------------------------------------------------
# Ill-conditioned covariances whose FID is known without any matrix function.

EPS = float(np.finfo(np.float64).eps)
REL = 1e-9  # the eigenvalue path's relative error bound, of Tr Σ₁ + Tr Σ₂


@dataclasses.dataclass
class Case:
    mu1: np.ndarray
    sigma1: np.ndarray
    mu2: np.ndarray
    sigma2: np.ndarray
    fid: float  # the true FID, from the construction alone

    @property
    def bound(self) -> float:
        """What the float64 eigenvalue path is held to: 2 (the factor of the trace term) x an absolute floor of
        D·√(ε‖Σ₁‖‖Σ₂‖) (each of the D eigenvalues of Σ₁^½Σ₂Σ₁^½ that should be 0 or tiny may come out as round-off of
        size ε‖Σ₁‖‖Σ₂‖, and enters through its square root), plus REL of Tr Σ₁ + Tr Σ₂."""
        dim = len(self.mu1)
        norms = np.linalg.norm(self.sigma1, 2) * np.linalg.norm(self.sigma2, 2)
        return 2 * dim * np.sqrt(EPS * norms) + REL * float(np.trace(self.sigma1) + np.trace(self.sigma2))

    def distance(self, method: str) -> float:
        return frechet_distance(self.mu1, self.sigma1, self.mu2, self.sigma2, method=method)


def _orthogonal(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diagonal(r))


def _spread(rng: np.random.Generator, dim: int) -> np.ndarray:
    """`dim` eigenvalues spanning 1e-12 ... 1e3, in random order."""
    return rng.permutation(np.logspace(-12, 3, dim))


def commuting_case(dim: int, zeros1: int, zeros2: int, seed: int = 0) -> Case:
    """Σ₁ = Q diag(a) Qᵀ, Σ₂ = Q diag(b) Qᵀ (shared eigenvectors): Tr(Σ₁Σ₂)^½ = Σ √(aᵢbᵢ), so FID = ‖μ₁ − μ₂‖² +
    Σ (√aᵢ − √bᵢ)². a and b span 1e-12 ... 1e3 with `zeros1` and `zeros2` zero eigenvalues on disjoint eigenvectors:
    rank-deficient covariances and a nearly singular product (rank D − zeros1 − zeros2, eigenvalues down to 1e-24)."""
    rng = np.random.default_rng(seed)
    q = _orthogonal(rng, dim)
    a, b = _spread(rng, dim), _spread(rng, dim)
    a[:zeros1] = 0.0
    b[dim - zeros2 :] = 0.0
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    fid = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    return Case(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T, fid)


def scaled_sample_case(n: int, dim: int, alpha: float = 2.5, seed: int = 0) -> Case:
    """Σ₁ the covariance of N < D samples (rank N − 1) whose feature scales span 1e-6 ... 30, Σ₂ = αΣ₁:
    Tr(Σ₁Σ₂)^½ = √α Tr Σ₁, so FID = (1 − √α)² Tr Σ₁ with equal means."""
    rng = np.random.default_rng(seed)
    mu, sigma = feature_statistics(rng.normal(size=(n, dim)) * np.logspace(-6, 1.5, dim))
    return Case(mu, sigma, mu.copy(), alpha * sigma, float((1 - np.sqrt(alpha)) ** 2 * np.trace(sigma)))


def rank_two_case(dim: int, seed: int = 0) -> Case:
    """Σ₁ = a₁u₁u₁ᵀ + a₂u₂u₂ᵀ (rank 2 of D), Σ₂ = Q diag(b) Qᵀ full rank with b spanning 1e-12 ... 1e3, not
    commuting. The non-zero eigenvalues of Σ₁Σ₂ are those of the 2x2 M = diag(√a) Uᵀ Σ₂ U diag(√a), so
    Tr(Σ₁Σ₂)^½ = √(Tr M + 2√det M), the closed form of a 2x2 positive semi-definite matrix."""
    rng = np.random.default_rng(seed)
    u = _orthogonal(rng, dim)[:, :2]
    a = np.array([1e3, 1e-9])
    q, b = _orthogonal(rng, dim), _spread(rng, dim)
    sigma1, sigma2 = (u * a) @ u.T, (q * b) @ q.T
    m = np.sqrt(a)[:, None] * (u.T @ sigma2 @ u) * np.sqrt(a)[None, :]
    trace_root = np.sqrt(np.trace(m) + 2 * np.sqrt(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))
    mu1, mu2 = np.zeros(dim), np.full(dim, 0.1)
    fid = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)
    return Case(mu1, sigma1, mu2, sigma2, fid)


ILL_CONDITIONED: dict[str, Callable[[], Case]] = {
    "commuting-full-rank-64": lambda: commuting_case(64, 0, 0),
    "commuting-rank-deficient-64": lambda: commuting_case(64, 32, 0),
    "commuting-nearly-singular-product-64": lambda: commuting_case(64, 32, 16),
    "commuting-nearly-singular-product-256": lambda: commuting_case(256, 128, 64, seed=1),
    "samples-n-below-d-64": lambda: scaled_sample_case(20, 64),
    "samples-n-below-d-512": lambda: scaled_sample_case(100, 512),
    "rank-two-against-full-128": lambda: rank_two_case(128),
}


@pytest.mark.parametrize("name", list(ILL_CONDITIONED))
def test_eigenvalue_path_gives_the_known_fid_of_ill_conditioned_covariances(name: str) -> None:
    case = ILL_CONDITIONED[name]()
    assert abs(case.distance("eigh") - case.fid) <= case.bound, (case.distance("eigh"), case.fid, case.bound)


@pytest.mark.parametrize("name", list(ILL_CONDITIONED))
def test_scipy_path_agrees_or_falls_back_to_the_eigenvalue_path(name: str) -> None:
    """Whatever this SciPy's sqrtm does with these products: the sqrtm path's FID is its own only within
    SQRTM_AGREEMENT (of Tr Σ₁ + Tr Σ₂, times 2 for FID) of the eigenvalue path, else exactly that path's, warned."""
    case = ILL_CONDITIONED[name]()
    scale = float(np.trace(case.sigma1) + np.trace(case.sigma2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        by_sqrtm = case.distance("sqrtm")
    fell_back = [w for w in caught if issubclass(w.category, SqrtmFallbackWarning)]
    if fell_back:
        assert by_sqrtm == case.distance("eigh")
    assert abs(by_sqrtm - case.fid) <= case.bound + 2 * SQRTM_AGREEMENT * scale


def _wrong_scale(matrix: np.ndarray) -> np.ndarray:
    return 1.05 * np.real(_REAL_SQRTM(matrix))  # real, finite, 5 % off: a plausible wrong number


def _complex(matrix: np.ndarray) -> np.ndarray:
    return _REAL_SQRTM(matrix) + 0.5j * np.eye(len(matrix))


def _not_finite(matrix: np.ndarray) -> np.ndarray:
    return np.full_like(matrix, np.nan)


def _the_product(matrix: np.ndarray) -> np.ndarray:
    return matrix.copy()  # no square root at all


def _raises(matrix: np.ndarray) -> np.ndarray:
    raise np.linalg.LinAlgError("failed to find the matrix square root")


_REAL_SQRTM = scipy.linalg.sqrtm


@pytest.mark.parametrize("fake", [_wrong_scale, _complex, _not_finite, _the_product, _raises])
@pytest.mark.parametrize("name", ["commuting-nearly-singular-product-64", "samples-n-below-d-64"])
def test_a_misbehaving_scipy_sqrtm_never_gives_the_fid(
    monkeypatch: pytest.MonkeyPatch, fake: Callable[[np.ndarray], np.ndarray], name: str
) -> None:
    case = ILL_CONDITIONED[name]()
    calls = []

    def misbehaving(matrix: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        calls.append(matrix.shape)
        return fake(matrix)

    monkeypatch.setattr(scipy.linalg, "sqrtm", misbehaving)  # the outside library, as a broken release would be
    with pytest.warns(SqrtmFallbackWarning, match="eigenvalue path"):
        by_sqrtm = case.distance("sqrtm")
    assert calls  # the SciPy path was taken
    assert by_sqrtm == case.distance("eigh")
    assert abs(by_sqrtm - case.fid) <= case.bound


# ----------------------------------------------------------------------------------------------------
# FIDs from N ≤ D samples on a side: marked in the metrics rows, the `eval` table and the report.

NOTE_WORDS = "rank-deficient covariance, FID biased upward; comparable only at equal N"


def test_rank_deficiency_is_n_at_most_the_feature_width_on_either_side() -> None:
    dim = inception.POOL_DIM
    assert dim == 2048
    assert rank_deficiency_note(2048, 50000, dim) == f"N=2048 generated ≤ 2048 features: {NOTE_WORDS}"
    assert rank_deficiency_note(2049, 50000, dim) == ""  # N − 1 = 2048: the covariance can have full rank
    assert rank_deficiency_note(50000, 1000, dim) == f"N=1000 reference ≤ 2048 features: {NOTE_WORDS}"
    assert rank_deficiency_note("10", "64", dim).startswith("N=10 generated, 64 reference ≤ 2048")
    for unknown in (0, None, float("nan"), ""):  # an imported TTUR file that does not say how many images
        assert rank_deficiency_note(50000, unknown, dim) == ""
    assert rank_deficiency_note(10, 10, None) == ""  # features of unknown width
    row = {"metric": "fid", "n_fake": 1000, "n_real": 50000, "extractor": "torch-fidelity-inception-v3"}
    assert row_rank_note(row) == f"N=1000 generated ≤ 2048 features: {NOTE_WORDS}"
    for extractor in ("pytorch-fid-inception-v3", "torchscript-fid-trunk"):
        assert row_rank_note({**row, "extractor": extractor}) == row_rank_note(row)
    assert row_rank_note({**row, "metric": "is_mean"}) == ""  # only FID has a covariance
    assert row_rank_note({**row, "extractor": "channel-stats"}) == ""  # a stand-in of unknown width


runner = CliRunner()


@pytest.mark.parametrize(("samples", "marked"), [(WIDTH, True), (WIDTH + 1, False)])
def test_eval_table_and_rows_mark_fid_from_n_at_most_the_feature_width(
    tmp_path: Path, trunk: str, samples: int, marked: bool
) -> None:
    """Through `ganbench eval` with the tiny trunk of WIDTH = 16 features and a reference of 48 images: 16 generated
    samples give a rank-deficient covariance, 17 need not."""
    run = make_run(tmp_path / "run", image_recipe(["fid"]), steps=(10,))
    args = ["eval", str(run.root), "--checkpoint", "last", "--num-samples", str(samples)]
    result = runner.invoke(app, [*args, "--inception-weights", trunk, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (row,) = run.read_metrics().to_dict("records")
    assert (row["metric"], row["n_fake"], row["n_real"]) == ("fid", samples, 48)
    note = f"N={samples} generated ≤ {inception.POOL_DIM} features: {NOTE_WORDS}"
    assert row_rank_note(row) == (note if marked else "")  # derived from the row's own n_fake, n_real, extractor
    value = f"{row['value']:.4f}"
    if marked:
        assert f"{value} {RANK_MARK}" in result.output
        assert f"{RANK_MARK} {note}" in result.output
    else:
        assert value in result.output
        assert RANK_MARK not in result.output and "rank-deficient" not in result.output


class TrunkNamed(ChannelStats):
    """The channel-mean stand-in under the TorchScript trunk's name, so the report judges its FID rows at the
    Inception pool width (2048), as it does every row of ganbench's own extractors."""

    name = "torchscript-fid-trunk"


def _reference_of(extractor: ChannelStats, n: int) -> RefStats:
    """Statistics of `n` 'real' images (test_report_render.reference makes 64)."""
    made = reference(extractor, "cifar10", "train")
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(7))
    images = ((torch.tanh(0.5 * z)[:, :, None, None].expand(-1, -1, 8, 8) + 1) * 127.5).round().to(torch.uint8)
    features = extractor.features(images)["pool"].double().numpy()
    return dataclasses.replace(
        made,
        mu=features.mean(axis=0),
        sigma=np.cov(features, rowvar=False),
        n=n,
        key=stats_key(f"{n}-images", "train", 8, extractor),
        features=features.astype(np.float32),
    )


def _report_runs(root: Path) -> Path:
    """Three CIFAR-10 GN runs scored by the evaluator: 2048 samples against 2100 reference images (marked: the
    generated side), 2049 against 2100 (not marked), 2049 against 64 (marked: the reference side)."""
    weights = root / "weights.pt"
    weights.write_bytes(b"stand-in weights")
    extractor = TrunkNamed(weights, "c" * 64)
    results = root / "results"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception, "POOL_DIM", POOL)  # the evaluator's check of the stand-in features' width
        big, small = _reference_of(extractor, 2100), reference(extractor, "cifar10", "train")
        for name, samples, ref in (("n2048", 2048, big), ("n2049", 2049, big), ("ref64", 2049, small)):
            made = paper_recipe("cifar10", "cnn32", "gn", select="raw")
            made = dataclasses.replace(made, eval=dataclasses.replace(made.eval, num_samples=samples, batch_size=512))
            train_run(results / name, made, {1000: {"raw": Level(0.3)}}, Extraction(extractor, ref))
    return results


def test_report_cells_mark_fid_from_n_at_most_2048_with_a_footnote(tmp_path: Path) -> None:
    results = _report_runs(tmp_path)
    recipes = tmp_path / "no-recipes"
    recipes.mkdir()
    text, _ = build_report(results, "markdown", None, recipe_dirs=[recipes], figures=False)
    rows = {row[0]: row for row in markdown_rows(text, "All runs")}
    fid, inception_score = -2, -1  # the metric columns: FID, then IS
    assert rows["n2048"][fid].endswith(f"<sup>{RANK_MARK}</sup>")
    assert rows["ref64"][fid].endswith(f"<sup>{RANK_MARK}</sup>")
    assert RANK_MARK not in rows["n2049"][fid] and rows["n2049"][fid] != "–"
    assert not any(RANK_MARK in row[inception_score] for row in rows.values())
    runs_part = text.split("## All runs\n", 1)[1].split("\n## ", 1)[0]
    (footnote,) = [line for line in runs_part.splitlines() if line.startswith(f"- <sup>{RANK_MARK}</sup>")]
    assert f"FID from N=2048 generated ≤ 2048 features: {NOTE_WORDS}." in footnote
    assert f"FID from N=64 reference ≤ 2048 features: {NOTE_WORDS}." in footnote
    assert "2049" not in footnote
    # The table of other protocols (the papers sample 50k): one row per run, IS then FID, the same marks.
    other = [row for row in markdown_rows(text, "CIFAR-10, unconditional generation: other protocols") if row[1]]
    assert len(other) == 3 and sum(row[-1].endswith(f"<sup>{RANK_MARK}</sup>") for row in other) == 2
    assert not any(RANK_MARK in row[-2] for row in other)
    other_part = text.split("## CIFAR-10, unconditional generation: other protocols\n", 1)[1].split("\n## ", 1)[0]
    assert f"- <sup>{RANK_MARK}</sup> FID from N=2048 generated" in other_part
    # The other formats show the mark and the note too (the CSV's protocol_id leads to n_fake and n_real).
    latex, _ = build_report(results, "latex", None, recipe_dirs=[recipes], tables=["runs"])
    assert r"\textsuperscript{$\ddagger$}" in latex and "comparable only at equal N" in latex
    html, _ = build_report(results, "html", None, recipe_dirs=[recipes], figures=False, tables=["runs"])
    assert f"<sup>{RANK_MARK}</sup>" in html and "comparable only at equal N" in html
    # With N > 2048 on both sides: no mark, no note.
    alone, _ = build_report(results, "markdown", None, recipe_dirs=[recipes], figures=False, only=[results / "n2049"])
    assert RANK_MARK not in alone and "rank-deficient" not in alone


def test_report_csv_cells_carry_the_rank_note_of_fid_from_n_at_most_2048(tmp_path: Path) -> None:
    results = _report_runs(tmp_path)
    recipes = tmp_path / "no-recipes"
    recipes.mkdir()
    text, _ = build_report(results, "csv", None, recipe_dirs=[recipes], figures=False)
    cells = list(csv.DictReader(io.StringIO(text)))
    fid = [cell for cell in cells if cell["metric"] == "fid" and cell["mean"]]
    notes = {cell["n"] + ":" + cell["note"] for cell in fid}
    assert f"1:N=2048 generated ≤ 2048 features: {NOTE_WORDS}" in notes
    assert f"1:N=64 reference ≤ 2048 features: {NOTE_WORDS}" in notes
    assert "1:" in notes  # 2049 against 2100: no note
    assert not any(cell["note"] for cell in cells if cell["metric"] != "fid")
