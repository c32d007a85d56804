"""The best-evaluation rule (ganbench.selection) on hand-built metric rows with known answers."""

from __future__ import annotations

import math
from typing import Any

from ganbench.selection import rank, score_of, select_best


def rows(generator: str, metric: str, values: dict[int, float]) -> list[dict[str, Any]]:
    return [{"step": step, "generator": generator, "metric": metric, "value": v} for step, v in values.items()]


def test_lowest_fid_of_the_named_generator() -> None:
    table = rows("ema", "fid", {1: 30.0, 2: 20.0, 3: 25.0}) + rows("raw", "fid", {1: 10.0, 2: 40.0, 3: 50.0})
    table += rows("ema", "is_mean", {1: 9.0, 2: 1.0, 3: 1.0})  # IS never decides where there is FID
    ema, raw = select_best(table, "ema"), select_best(table, "raw")
    assert ema is not None and (ema.step, ema.metric, ema.score, ema.rule) == (2, "fid", 20.0, "best FID")
    assert raw is not None and raw.step == 1


def test_an_evaluation_with_fid_beats_any_without() -> None:
    table = rows("ema", "fid", {2: 80.0}) + rows("ema", "is_mean", {1: 9.0, 2: 2.0, 3: 9.5})
    choice = select_best(table)
    assert choice is not None and choice.step == 2


def test_points_most_modes_then_most_high_quality_then_earliest() -> None:
    modes = rows("raw", "modes_covered", {1: 7.0, 2: 8.0, 3: 8.0, 4: 8.0, 5: 7.0})
    quality = rows("raw", "hq_percent", {1: 99.0, 2: 60.0, 3: 75.0, 4: 75.0, 5: 100.0})
    choice = select_best(modes + quality)
    assert choice is not None and choice.step == 3  # 8 modes at 2, 3, 4; 75 % at 3 and 4; 3 is earlier
    assert choice.rule == "most modes covered, then highest % HQ"


def test_image_runs_without_fid_rank_by_is_else_the_last_evaluation() -> None:
    by_is = select_best(rows("ema", "is_mean", {1: 5.0, 2: 7.0, 3: 6.0}) + rows("ema", "is_std", {1: 0.1, 2: 9.0}))
    assert by_is is not None and (by_is.step, by_is.rule) == (2, "best IS")
    by_kid = select_best(rows("ema", "kid_mean", {1: 0.01, 3: 0.5, 2: 0.02}))
    assert by_kid is not None and (by_kid.step, by_kid.rule) == (3, "last evaluation")


def test_no_rows_no_choice_and_non_finite_values_do_not_count() -> None:
    assert select_best([]) is None
    assert select_best(rows("ema", "fid", {1: 5.0}), "raw") is None
    choice = select_best(rows("ema", "fid", {1: math.nan, 2: 30.0, 3: math.inf}))
    assert choice is not None and choice.step == 2


def test_a_step_scored_twice_counts_with_its_last_value() -> None:
    choice = select_best(rows("ema", "fid", {1: 20.0, 2: 25.0}) + rows("ema", "fid", {2: 10.0}))
    assert choice is not None and (choice.step, choice.score) == (2, 10.0)


def test_ranks_order_the_tiers_whatever_the_scores() -> None:
    """A trainer compares each new evaluation with the best so far by rank: a worse tier never wins on its score."""
    assert rank(*score_of({"fid": 500.0}, 1)) < rank(*score_of({"modes_covered": 8.0, "hq_percent": 100.0}, 1))
    assert rank(*score_of({"modes_covered": 1.0}, 1)) < rank(*score_of({"is_mean": 1e6}, 1))
    assert rank(*score_of({"is_mean": 1.0}, 1)) < rank(*score_of({"kid_mean": 0.0}, 10**9))
    assert score_of({"modes_covered": 3.0, "hq_percent": 40.0}, 1) == ("modes_covered", -3040.0)
