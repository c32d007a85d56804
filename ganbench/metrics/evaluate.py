"""The older home of evaluation: metric computation now lives in ganbench.metrics.compute and the orchestration
(sampling generators, scoring runs and checkpoints) in ganbench.evaluation; both are re-exported here so that
existing imports keep working."""

from __future__ import annotations

from ganbench.evaluation import (
    IN_TRAINING,
    SAMPLE_SEED,
    Evaluation,
    TrainingEvaluator,
    already_scored,
    build_extractor,
    checkpoint_names,
    evaluate_generator,
    evaluate_run,
    generate_images,
)
from ganbench.metrics.compute import (
    ROW_NAMES,
    MetricSettings,
    check_sample_counts,
    compute_metrics,
    quantize_images,
    requested_metrics,
)

__all__ = [
    "IN_TRAINING",
    "ROW_NAMES",
    "SAMPLE_SEED",
    "Evaluation",
    "MetricSettings",
    "TrainingEvaluator",
    "already_scored",
    "build_extractor",
    "check_sample_counts",
    "checkpoint_names",
    "compute_metrics",
    "evaluate_generator",
    "evaluate_run",
    "generate_images",
    "quantize_images",
    "requested_metrics",
]
