"""The metrics' settings reach the numbers: IS splits, KID subset size and subset count, and precision/recall's k,
each set through MetricSettings and scored by the evaluator (`evaluate_generator`) on hand-built features.

The extractor here hands out preset feature rows in the order the generated batches reach it, so the evaluator
scores exactly the features written below; the expected values are worked out by hand or by plain numpy in the
test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from ganbench.errors import MetricError
from ganbench.evaluation import evaluate_generator
from ganbench.metrics import inception
from ganbench.metrics.compute import MetricSettings
from ganbench.metrics.inception import Extractor
from ganbench.metrics.refstats import RefStats
from ganbench.recipe import DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig


class PresetFeatures(Extractor):
    """Returns the next rows of a preset table for every batch it is given, whatever the images."""

    name = "preset-features"
    backend = "test"
    resize = "none"

    def __init__(self, pool: np.ndarray, logits: np.ndarray | None = None) -> None:
        supports = frozenset({"fid", "kid", "pr"} | ({"is"} if logits is not None else set()))
        super().__init__("preset", "0" * 64, supports, torch.device("cpu"))
        self.pool = torch.as_tensor(pool, dtype=torch.float32)
        self.logits = None if logits is None else torch.as_tensor(logits, dtype=torch.float32)
        self.cursor = 0

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = slice(self.cursor, self.cursor + len(images))
        self.cursor += len(images)
        out = {"pool": self.pool[rows]}
        if self.logits is not None:
            out["logits"] = self.logits[rows]
        return out


class Blank(nn.Module):
    """A generator of black 4 x 4 images: the preset features stand for whatever it makes."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full((len(z), 3, 4, 4), -1.0)


def score(
    settings: MetricSettings,
    metrics: list[str],
    fake: np.ndarray,
    real: np.ndarray | None = None,
    logits: np.ndarray | None = None,
) -> dict[str, tuple[float, dict]]:
    """metric -> (value, params) from the evaluator's rows for the preset generated features `fake`."""
    real = fake if real is None else real
    dim = fake.shape[1]
    ref = RefStats(
        mu=real.mean(axis=0),
        sigma=np.atleast_2d(np.cov(real, rowvar=False)),
        n=len(real),
        dataset="shapes",
        split="train",
        dataset_hash="hand",
        key="hand-built",
        features=real.astype(np.float32),
    )
    recipe = Recipe(
        name="settings",
        data=DataConfig(name="shapes"),
        model=ModelConfig(arch="cnn32", z_dim=2),
        train=TrainConfig(batch_size_g=3),  # several batches, the last one partial, in either BatchNorm mode
        eval=EvalConfig(batch_size=3, metrics=metrics),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception, "POOL_DIM", dim)
        rows = evaluate_generator(
            Blank(),
            recipe,
            step=1,
            generator_kind="ema",
            num_samples=len(fake),
            extractor=PresetFeatures(fake, logits),
            ref=ref,
            settings=settings,
        )
    return {row["metric"]: (row["value"], json.loads(row["params"])) for row in rows}


# Inception Score: splits


def one_hot_logits(classes: list[int], width: int = 3) -> np.ndarray:
    logits = np.full((len(classes), width), -1e4)
    logits[np.arange(len(classes)), classes] = 0.0
    return logits


SHUFFLE = [4, 1, 2, 3, 5, 0]  # numpy RandomState(2020).permutation(6): the documented shuffle before splitting


def test_is_splits_reach_the_score() -> None:
    assert np.random.RandomState(2020).permutation(6).tolist() == SHUFFLE
    # Six confident predictions, two of each of three classes, placed so that after the shuffle they read
    # 0, 1, 0, 2, 1, 2.
    classes = [2, 1, 0, 2, 0, 1]
    assert [classes[i] for i in SHUFFLE] == [0, 1, 0, 2, 1, 2]
    logits = one_hot_logits(classes)
    pool = np.zeros((6, 1))
    by_splits = {
        splits: score(MetricSettings(is_splits=splits), ["is"], pool, logits=logits) for splits in (1, 2, 3, 6)
    }
    # 1 split: p(y) uniform over 3 classes, every KL is log 3: IS = 3.
    # 2 splits, (0, 1, 0) and (2, 1, 2): p(y) = (2/3, 1/3); KLs log(3/2), log 3, log(3/2): IS = (27/4)^(1/3).
    # 3 splits, (0, 1), (0, 2), (1, 2): p(y) = (1/2, 1/2), every KL is log 2: IS = 2.
    # 6 splits of one image: p(y) is the image's own prediction, KL 0: IS = 1.
    expected = {1: 3.0, 2: (27 / 4) ** (1 / 3), 3: 2.0, 6: 1.0}
    for splits, value in expected.items():
        assert by_splits[splits]["is_mean"][0] == pytest.approx(value, rel=1e-9), splits
        assert by_splits[splits]["is_std"][0] == pytest.approx(0.0, abs=1e-9), splits  # equal splits
        assert by_splits[splits]["is_mean"][1] == {"splits": splits}
    # The std over splits: five rows split 2 + 3, shuffled by RandomState(2020).permutation(5) = (3, 1, 2, 4, 0)
    # to read (0, 1) and (0, 2, 1): scores 2 and 3, mean 2.5, std 0.5.
    classes = [1, 1, 0, 0, 2]
    assert [classes[i] for i in np.random.RandomState(2020).permutation(5)] == [0, 1, 0, 2, 1]
    five = score(MetricSettings(is_splits=2), ["is"], np.zeros((5, 1)), logits=one_hot_logits(classes))
    assert five["is_mean"][0] == pytest.approx(2.5, rel=1e-9)
    assert five["is_std"][0] == pytest.approx(0.5, rel=1e-9)


def test_too_many_is_splits_for_the_samples_are_refused() -> None:
    with pytest.raises(MetricError, match="is: 6 samples cannot fill 7 splits"):
        score(MetricSettings(is_splits=7), ["is"], np.zeros((6, 1)), logits=one_hot_logits([0] * 6))


# KID: subset size and number of subsets.
#
# One-dimensional features, k(a, b) = (a·b + 1)³ (γ = 1/dim = 1). Generated features are all 0, so every kernel
# value involving them is 1 and MMD² = mean_{i≠j} k(y_i, y_j) − 1 over the drawn reference points y. The reference
# set is three +1 and three −1: k = 8 for two points of one sign and 0 for opposite signs.

REAL = np.array([[1.0], [1.0], [1.0], [-1.0], [-1.0], [-1.0]])
FAKE = np.zeros((6, 1))


def mmd2_of_draw(y: np.ndarray) -> float:
    """By hand: the share of ordered same-sign pairs among the m(m − 1) distinct pairs, times 8, minus 1."""
    plus, m = int((y > 0).sum()), len(y)
    minus = m - plus
    return 8.0 * (plus * (plus - 1) + minus * (minus - 1)) / (m * (m - 1)) - 1.0


def kid_by_draws(subsets: int, size: int, seed: int = 2020) -> tuple[float, float]:
    """The documented draws: per subset, `size` generated rows then `size` reference rows, without replacement."""
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        rng.choice(len(FAKE), size, replace=False)  # the generated rows are all 0: which ones does not matter
        values.append(mmd2_of_draw(REAL[rng.choice(len(REAL), size, replace=False)]))
    return float(np.mean(values)), float(np.std(values))


def test_kid_subset_size_reaches_the_estimate() -> None:
    # A subset as large as the set is the whole set every time: 12 same-sign pairs of 30, 8·12/30 − 1 = 2.2.
    whole = score(MetricSettings(kid_subsets=4, kid_subset_size=6), ["kid"], FAKE, REAL)
    assert whole["kid_mean"][0] == pytest.approx(2.2, rel=1e-12)
    assert whole["kid_std"][0] == pytest.approx(0.0, abs=1e-12)
    # Subsets of 2 are one pair: 8 − 1 = 7 when both share a sign, −1 when they do not.
    pairs = score(MetricSettings(kid_subsets=4, kid_subset_size=2), ["kid"], FAKE, REAL)
    expected = kid_by_draws(4, 2)
    assert pairs["kid_mean"][0] == pytest.approx(expected[0], rel=1e-12)
    assert pairs["kid_std"][0] == pytest.approx(expected[1], rel=1e-12)
    # Subsets of 4 hold two and two (8·4/12 − 1 = 5/3) or three and one (8·6/12 − 1 = 3).
    fours = score(MetricSettings(kid_subsets=4, kid_subset_size=4), ["kid"], FAKE, REAL)
    assert fours["kid_mean"][0] == pytest.approx(kid_by_draws(4, 4)[0], rel=1e-12)
    assert len({whole["kid_mean"][0], pairs["kid_mean"][0], fours["kid_mean"][0]}) == 3
    assert pairs["kid_mean"][1] == {"subsets": 4, "subset_size": 2, "degree": 3, "coef": 1}


def test_kid_subset_count_reaches_the_estimate() -> None:
    results = {n: score(MetricSettings(kid_subsets=n, kid_subset_size=2), ["kid"], FAKE, REAL) for n in (1, 3, 9)}
    for n, result in results.items():
        mean, std = kid_by_draws(n, 2)
        assert result["kid_mean"][0] == pytest.approx(mean, rel=1e-12)
        assert result["kid_std"][0] == pytest.approx(std, rel=1e-12, abs=1e-12)
        assert result["kid_mean"][1]["subsets"] == n
    assert results[1]["kid_mean"][0] in (7.0, -1.0)  # one subset is one pair: one of the two hand values
    assert len({result["kid_mean"][0] for result in results.values()}) > 1


# Precision and recall: k.
#
# Reference 0, 1, 3, 6 and generated −2.5, 4.5, 10, 20 on a line.
#   k = 1 radii of the reference: 1, 1, 2, 3. Inside: only 4.5 (1.5 from 3). Precision 1/4.
#   k = 2 radii: 3 (0's second nearest is 3), 2, 3, 5. Inside: −2.5 (2.5 from 0), 4.5, 10 (4 from 6). Precision 3/4.
#   Generated radii, k = 1: 7, 5.5, 5.5, 10; every reference point is within 7 of −2.5 or 5.5 of 4.5: recall 1;
#   k = 2 radii are larger still: recall 1.

PR_REAL = np.array([[0.0], [1.0], [3.0], [6.0]])
PR_FAKE = np.array([[-2.5], [4.5], [10.0], [20.0]])


@pytest.mark.parametrize(("k", "precision"), [(1, 0.25), (2, 0.75)])
def test_precision_recall_k_reaches_the_manifolds(k: int, precision: float) -> None:
    result = score(MetricSettings(pr_k=k), ["pr"], PR_FAKE, PR_REAL)
    assert result["precision"][0] == pytest.approx(precision)
    assert result["recall"][0] == pytest.approx(1.0)
    assert result["precision"][1] == {"k": k}


def test_pr_k_must_leave_neighbours_on_both_sides() -> None:
    with pytest.raises(MetricError, match="pr: need more than k=4 samples"):
        score(MetricSettings(pr_k=4), ["pr"], PR_FAKE, PR_REAL)


def test_each_setting_is_in_its_own_familys_fingerprint_only() -> None:
    """A changed IS split count changes the IS rows' fingerprint, not FID's (whose number it does not touch)."""
    fake = np.random.default_rng(0).normal(size=(12, 2))
    logits = one_hot_logits([0, 1, 2] * 4)

    def fingerprints(settings: MetricSettings) -> dict[str, str]:
        ref = RefStats(fake.mean(0), np.cov(fake, rowvar=False), 12, "shapes", "train", "h", "k", features=fake)
        recipe = Recipe(name="s", data=DataConfig(name="shapes"), model=ModelConfig(z_dim=2))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(inception, "POOL_DIM", 2)
            rows = evaluate_generator(
                Blank(),
                recipe,
                step=1,
                generator_kind="ema",
                metrics=["fid", "is", "kid", "pr"],
                num_samples=12,
                extractor=PresetFeatures(fake, logits),
                ref=ref,
                settings=settings,
            )
        return {row["metric"]: row["fingerprint"] for row in rows}

    base = fingerprints(MetricSettings(is_splits=2, kid_subsets=2, kid_subset_size=4, pr_k=2))
    changed = {
        "is": fingerprints(MetricSettings(is_splits=3, kid_subsets=2, kid_subset_size=4, pr_k=2)),
        "kid": fingerprints(MetricSettings(is_splits=2, kid_subsets=3, kid_subset_size=4, pr_k=2)),
        "kid size": fingerprints(MetricSettings(is_splits=2, kid_subsets=2, kid_subset_size=5, pr_k=2)),
        "pr": fingerprints(MetricSettings(is_splits=2, kid_subsets=2, kid_subset_size=4, pr_k=3)),
    }
    family = {"is": ("is_mean", "is_std"), "kid": ("kid_mean", "kid_std"), "pr": ("precision", "recall")}
    for what, prints in changed.items():
        touched = family[what.split()[0]]
        for metric, fingerprint in prints.items():
            assert (fingerprint != base[metric]) == (metric in touched), (what, metric)
