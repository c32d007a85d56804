"""Metrics from features: which rows each metric family gives, its settings, the sample counts it needs, and the
numbers themselves from generated features against reference statistics. Pure functions of tensors: nothing here
generates images or reads a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ganbench.errors import MetricError
from ganbench.metrics.fid import feature_statistics, frechet_distance
from ganbench.metrics.inception import METRICS
from ganbench.metrics.inception_score import inception_score
from ganbench.metrics.kid import kernel_inception_distance
from ganbench.metrics.prdc import precision_recall
from ganbench.metrics.refstats import RefStats

ROW_NAMES = {
    "fid": ("fid",),
    "is": ("is_mean", "is_std"),
    "kid": ("kid_mean", "kid_std"),
    "pr": ("precision", "recall"),
    "modes": ("modes_covered", "hq_percent"),
}


@dataclass(frozen=True)
class MetricSettings:
    """The metrics' own settings (torch-fidelity's defaults); each goes into its rows' fingerprint."""

    is_splits: int = 10
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3

    def params(self, family: str) -> dict[str, Any]:
        return {
            "fid": {},
            "is": {"splits": self.is_splits},
            "kid": {"subsets": self.kid_subsets, "subset_size": self.kid_subset_size, "degree": 3, "coef": 1},
            "pr": {"k": self.pr_k},
            "modes": {},
        }[family]


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8, rounding as saving a PNG does (x·255 + 0.5, clamped, truncated)."""
    return ((images.clamp(-1, 1) + 1) / 2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


def requested_metrics(metrics: list[str]) -> list[str]:
    """The metric families asked for (fid, is, kid, pr), in that order; unknown names are refused."""
    asked = [m.strip().lower() for m in metrics if m.strip()]
    for metric in asked:
        if metric not in METRICS:
            raise MetricError(f"--metrics {metric}: unknown metric; choose from {', '.join(METRICS)}")
    if not asked:
        raise MetricError(f"--metrics: no metric given; choose from {', '.join(METRICS)}")
    return [m for m in METRICS if m in asked]


def check_sample_counts(
    metrics: list[str],
    n_fake: int,
    settings: MetricSettings,
    n_real: int | None = None,
    more: str = "raise --num-samples",
) -> None:
    """Refuse, before any image is generated, sample counts the metrics cannot work with; `more` says how to give
    more samples."""
    if "fid" in metrics and n_fake < 2:
        raise MetricError(f"fid: {n_fake} samples give no covariance; {more} (the papers use 50000)")
    if "is" in metrics and n_fake < settings.is_splits:
        raise MetricError(
            f"is: {n_fake} samples cannot fill {settings.is_splits} splits; {more} (the papers use 50000)"
        )
    if "kid" in metrics:
        smaller = min(n_fake, n_real if n_real is not None else n_fake)
        if smaller < settings.kid_subset_size:
            raise MetricError(
                f"kid: the KID subset size {settings.kid_subset_size} exceeds the samples ({n_fake} generated"
                + (f", {n_real} reference" if n_real is not None else "")
                + f"); {more} to at least {settings.kid_subset_size} or lower the KID subset size"
            )
    if "pr" in metrics and min(n_fake, n_real if n_real is not None else n_fake) <= settings.pr_k:
        raise MetricError(f"pr: need more than k={settings.pr_k} samples on each side; {more}")


def compute_metrics(
    features: dict[str, torch.Tensor],
    ref: RefStats,
    families: list[str],
    settings: MetricSettings | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The metrics of `families` from generated features ({"pool", "logits"}) against reference statistics."""
    settings = settings or MetricSettings()
    pool = features["pool"]
    out: dict[str, float] = {}
    if "fid" in families:
        mu, sigma = feature_statistics(pool)
        out["fid"] = frechet_distance(mu, sigma, ref.mu, ref.sigma, device=device)
    if "is" in families:
        if "logits" not in features:
            raise MetricError("is: these features have no 1008-class logits; use weights with the Inception head")
        out["is_mean"], out["is_std"] = inception_score(features["logits"], settings.is_splits)
    if "kid" in families:
        out["kid_mean"], out["kid_std"] = kernel_inception_distance(
            pool,
            ref.require_features("kid"),
            subsets=settings.kid_subsets,
            subset_size=settings.kid_subset_size,
            device=device,
        )
    if "pr" in families:
        out["precision"], out["recall"] = precision_recall(
            ref.require_features("pr"), pool, k=settings.pr_k, device=device
        )
    return out
