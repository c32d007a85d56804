"""`ganbench report`: read every run below a results folder and render the papers' tables beside our numbers.

    text, warnings = build_report(Path("results"), "markdown", Path("report.md"))

Unreadable runs, damaged Parquet files and runs of another schema version become one warning line each; the
rest of the report still renders.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ganbench.errors import GanbenchError
from ganbench.recipe import Recipe
from ganbench.report import papers
from ganbench.report.collect import flatten, read_runs
from ganbench.report.render import FORMATS, RENDERERS
from ganbench.report.tables import build_tables
from ganbench.store import atomic_write_text

__all__ = ["FORMATS", "build_report", "paper_recipe_lookup"]


def build_report(
    results: Path,
    fmt: str = "markdown",
    output: Path | None = None,
    *,
    generator: str = "selected",
    recipe_dirs: list[Path] | None = None,
    figures: bool = True,
) -> tuple[str, list[str]]:
    """The report as text (also written to `output` when given) and the warnings met on the way.

    `generator` picks whose evaluations are reported: "selected" (default) the one each run's recipe selects by
    (eval.select: the raw G in the CIFAR-10/STL-10 paper recipes, as the official code), or ema or raw for every run;
    runs without EMA fall back to raw;
    `recipe_dirs` are where the paper recipes are looked up (default: the shipped recipes); figures are
    written beside `output` for markdown and html, and only when `output` is given.
    """
    if fmt not in FORMATS:
        raise GanbenchError(f"--format {fmt}: unknown format; choose one of {', '.join(FORMATS)}")
    if generator not in ("selected", "ema", "raw"):
        raise GanbenchError(f"--generator {generator}: choose selected, ema or raw")
    results = Path(results)
    if not results.is_dir():
        raise GanbenchError(f"--results {results}: no such folder; give the folder your runs were written to")
    runs, warnings = read_runs(results, generator)
    if not runs:  # an empty report must never replace a good one
        why = "; ".join(warnings) if warnings else "run `ganbench train` or `ganbench compare` first"
        raise GanbenchError(f"--results {results}: no readable run directory below it ({why})")
    warnings = [_relative(warning, results) for warning in warnings]
    tables = build_tables(runs, papers.load(), paper_recipe_lookup(recipe_dirs))
    if figures and output is not None and fmt in ("markdown", "html"):
        from ganbench.report.plots import add_figures  # matplotlib only when figures are drawn

        warnings += add_figures(tables, runs, Path(output))
    empty = f"Nothing to report: no readable run directory below {results}."
    text = RENDERERS[fmt](tables, warnings, empty)
    if output is not None:
        atomic_write_text(Path(output), text)
    return text, warnings


def _relative(warning: str, results: Path) -> str:
    """Paths in warnings relative to the results folder, so a report reads the same wherever it was made."""
    for prefix in {str(results.resolve()), str(results)}:
        warning = warning.replace(prefix.rstrip("/") + "/", "")
    return warning


# ----------------------------------------------------------------------------------------------------
# Paper recipes, to name where a run's training differs from the paper's configuration.


def paper_recipe_lookup(recipe_dirs: list[Path] | None = None) -> Any:
    """name -> the named recipe, defaults filled in and flattened to dotted keys; None when not found."""
    if recipe_dirs is None:
        from ganbench.compare import recipe_dirs as shipped

        recipe_dirs = shipped()
    cache: dict[str, dict[str, Any] | None] = {}

    def lookup(name: str) -> dict[str, Any] | None:
        if name not in cache:
            cache[name] = None
            for folder in recipe_dirs:
                path = Path(folder) / f"{name}.toml"
                if path.is_file():
                    cache[name] = _resolved(path)
                    break
        return cache[name]

    return lookup


def _resolved(path: Path) -> dict[str, Any] | None:
    """The recipe's defaults overlaid with the file, without validation (a report must not need the data)."""
    try:
        tree = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    tree.setdefault("name", path.stem)
    merged = Recipe().to_dict()
    _overlay(merged, tree)
    return flatten(merged)


def _overlay(base: dict[str, Any], tree: dict[str, Any]) -> None:
    for key, value in tree.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _overlay(base[key], value)
        else:
            base[key] = value
