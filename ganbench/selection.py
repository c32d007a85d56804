"""Which evaluation of a run is its best, and of which generator: the rules behind best.pt, the generator
`ganbench eval` and `ganbench sample` default to, and the evaluation a report shows.

Evaluations are ranked by the first rule that applies, in this order:
1. lowest FID;
2. for 2-D point sets, most modes covered, then highest % high-quality samples;
3. highest Inception Score (image runs scored without FID);
4. otherwise (no ranked metric, e.g. KID alone) the latest evaluation.
A rule higher in the list beats every lower one (an evaluation with FID beats one without), ties go to the earlier
step, and each evaluation's rank is a (tier, score) pair, lower being better, so a trainer can compare one new
evaluation against its best so far and reach the choice that ranking all of them at once gives. Every evaluation
ranks, so a run that was evaluated at all has a best checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# deciding metric -> (tier, the words a report prints for the rule)
RULES: dict[str, tuple[int, str]] = {
    "fid": (0, "best FID"),
    "modes_covered": (1, "most modes covered, then highest % HQ"),
    "is_mean": (2, "best IS"),
    "step": (3, "last evaluation"),
}


@dataclass(frozen=True)
class Choice:
    """The best evaluation: its step, the metric that decided (a key of RULES) and its score (lower is better)."""

    step: int
    metric: str
    score: float

    @property
    def rule(self) -> str:
        return RULES[self.metric][1]

    @property
    def rank(self) -> tuple[int, float]:
        return rank(self.metric, self.score)


GENERATORS = ("ema", "raw")


def selected_generator(select: str | None, has_ema: bool) -> str:
    """The generator a run is judged by, "ema" or "raw": the recipe's eval.select (runs written before that key
    ranked EMA-G), but the raw G when the run keeps no EMA (train.ema_decay = 0). best.pt ranks this generator's
    evaluations, `ganbench eval` and `ganbench sample` use it by default, a report shows its scores."""
    if not has_ema:
        return "raw"
    return select if select in GENERATORS else "ema"


def rank(metric: str, score: float) -> tuple[int, float]:
    """The sort key of an evaluation scored `score` by `metric` (as `score_of` gives, or run.json's best holds)."""
    return RULES[metric][0], score


def score_of(values: Mapping[str, float], step: int) -> tuple[str, float]:
    """(deciding metric, score) of one evaluation: {metric name: value} of one generator at `step`.

    Scores, lower being better: FID itself; −(1000 · modes covered + % high quality), so that one more mode outweighs
    any quality (at most 100); −IS; −step. Values that are not finite (a diverged evaluation) do not count.
    """
    values = {name: float(value) for name, value in values.items() if math.isfinite(float(value))}
    if "fid" in values:
        return "fid", float(values["fid"])
    if "modes_covered" in values:
        return "modes_covered", -(1000.0 * float(values["modes_covered"]) + float(values.get("hq_percent", 0.0)))
    if "is_mean" in values:
        return "is_mean", -float(values["is_mean"])
    return "step", -float(step)


def describe(metric: str, score: float) -> str:
    """A score as `score_of` gives it (or run.json's best holds) in its metric's own words: "FID 23.41",
    "8 modes, 93.4 % HQ", "IS 7.12", or the rule's words for the last evaluation."""
    if metric == "fid":
        return f"FID {score:.2f}"
    if metric == "modes_covered":  # -(1000 · modes + % HQ), with % HQ at most 100
        total = -score
        modes = math.floor(total / 1000.0)
        return f"{modes} modes, {total - 1000.0 * modes:.1f} % HQ"
    if metric == "is_mean":
        return f"IS {-score:.2f}"
    return RULES[metric][1] if metric in RULES else f"{metric} {score:.4g}"


def select_best(rows: Iterable[Mapping[str, Any]], generator: str | None = None) -> Choice | None:
    """The best evaluation among metric rows ({"step", "metric", "value"}, and "generator" when `generator` names
    the one to rank; a DataFrame's `.to_dict("records")`); None when there is no row. A step scored twice counts
    with its last value of each metric."""
    by_step: dict[int, dict[str, float]] = {}
    for row in rows:
        if generator is not None and row.get("generator") != generator:
            continue
        by_step.setdefault(int(row["step"]), {})[str(row["metric"])] = float(row["value"])
    best: Choice | None = None
    for step in sorted(by_step):
        choice = Choice(step, *score_of(by_step[step], step))
        if best is None or choice.rank < best.rank:
            best = choice
    return best


def selection_score(rows: Iterable[Mapping[str, Any]], generator: str) -> tuple[float, str] | None:
    """(score, deciding metric) of `generator`'s best evaluation among `rows`: the older form of select_best."""
    choice = select_best(rows, generator)
    return None if choice is None else (choice.score, choice.metric)
