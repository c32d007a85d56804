"""`ganbench report`: read every run below a results folder and render the papers' tables beside our numbers.

    text, warnings = build_report(Path("results"), "markdown", Path("report.md"))

Unreadable runs, damaged Parquet files, runs of another schema version and runs without evaluations become one
warning line each; the rest of the report still renders.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ganbench.errors import GanbenchError
from ganbench.files import atomic_write_text
from ganbench.recipe import Recipe
from ganbench.report import papers, real
from ganbench.report.collect import flatten, read_runs
from ganbench.report.render import COLUMN_CHOICES, FORMATS, RENDERERS, Options
from ganbench.report.tables import TABLE_NAMES, arrange

__all__ = [
    "FORMATS",
    "GENERATORS",
    "TABLE_NAMES",
    "build_report",
    "check_options",
    "paper_recipe_lookup",
    "parse_tables",
    "shipped_recipe_dirs",
]
MAX_DECIMALS = 6


def parse_tables(text: str) -> list[str]:
    """`"cifar10, stl10"` -> ["cifar10", "stl10"]: the tables `--tables` names, checked against TABLE_NAMES."""
    names = list(dict.fromkeys(item.strip().lower() for item in text.split(",") if item.strip()))
    choices = ", ".join(TABLE_NAMES)
    if not names:
        raise GanbenchError(f"--tables {text!r}: name at least one table: {choices}")
    for name in names:
        if name not in TABLE_NAMES:
            raise GanbenchError(f"--tables {text}: unknown table {name!r}; choose from {choices}")
    return names


GENERATORS = ("selected", "ema", "raw")


def check_options(
    fmt: str = "markdown",
    *,
    generator: str = "selected",
    tables: list[str] | None = None,
    columns: str = "both",
    decimals: int | None = None,
) -> None:
    """GanbenchError naming the choices for an unknown format, generator, table or column choice, or decimals out of
    range: what build_report takes, checked before anything is read or written."""
    if fmt not in FORMATS:
        raise GanbenchError(f"--format {fmt}: unknown format; choose one of {', '.join(FORMATS)}")
    if generator not in GENERATORS:
        raise GanbenchError(f"--generator {generator}: unknown generator; choose one of {', '.join(GENERATORS)}")
    if columns not in COLUMN_CHOICES:
        raise GanbenchError(f"--columns {columns}: choose one of {', '.join(COLUMN_CHOICES)}")
    if decimals is not None and not 0 <= decimals <= MAX_DECIMALS:
        raise GanbenchError(f"--decimals {decimals}: give 0 to {MAX_DECIMALS}")
    for name in tables or []:
        if name not in TABLE_NAMES:
            raise GanbenchError(f"--tables {name}: unknown table; choose from {', '.join(TABLE_NAMES)}")


def build_report(
    results: Path,
    fmt: str = "markdown",
    output: Path | None = None,
    *,
    generator: str = "selected",
    recipe_dirs: list[Path] | None = None,
    figures: bool = True,
    tables: list[str] | None = None,
    columns: str = "both",
    decimals: int | None = None,
    only: list[Path] | None = None,
) -> tuple[str, list[str]]:
    """The report as text (also written to `output` when given) and the warnings met on the way.

    `tables` names the tables to render (TABLE_NAMES: cifar10, stl10, biggan, celebahq, other, runs; default all,
    in LaTeX all but the table of every run); a paper table named explicitly is shown even before any run of it
    exists.
    `columns` picks the paper tables' columns (ours, paper or both) and `decimals` our numbers' decimals (default
    each metric's own). `only` limits the report to those run directories (`ganbench compare` prints its own runs).

    `generator` picks whose evaluations are reported: "selected" (default) the one each run's recipe selects by
    (eval.select: the raw G in the CIFAR-10/STL-10 paper recipes, as the official code), or ema or raw for every run;
    runs without EMA fall back to raw;
    `recipe_dirs` are where the paper recipes are looked up (default: the shipped recipes); figures are
    written beside `output` for markdown and html, and only when `output` is given.
    """
    check_options(fmt, generator=generator, tables=tables, columns=columns, decimals=decimals)
    explicit = tables is not None
    if tables is None and fmt == "latex":
        tables = [name for name in TABLE_NAMES if name != "runs"]
    results = Path(results)
    if not results.is_dir():
        raise GanbenchError(f"--results {results}: no such folder; give the folder your runs were written to")
    runs, warnings = read_runs(results, generator, only)
    reference, unread = real.read_rows(results)
    warnings += unread
    if not runs:  # an empty report must never replace a good one
        why = "; ".join(warnings) if warnings else "run `ganbench train` or `ganbench compare` first"
        raise GanbenchError(f"--results {results}: no readable run directory below it ({why})")
    warnings = [_relative(warning, results) for warning in warnings]
    report = arrange(runs, papers.load(), paper_recipe_lookup(recipe_dirs), tables, reference, explicit=explicit)
    if figures and output is not None and fmt in ("markdown", "html"):
        from ganbench.report.plots import add_figures  # matplotlib only when figures are drawn

        warnings += add_figures(report.tables, runs, Path(output))
    empty = f"Nothing to report: no readable run directory below {results}."
    text = RENDERERS[fmt](report, warnings, empty, Options(columns, decimals))
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


def shipped_recipe_dirs() -> list[Path]:
    """The shipped recipe folders: package data (installed), then the source checkout's recipes/."""
    package = Path(__file__).resolve().parent.parent
    return [folder for folder in (package / "recipes", package.parent / "recipes") if folder.is_dir()]


def paper_recipe_lookup(recipe_dirs: list[Path] | None = None) -> Any:
    """name -> the named recipe, defaults filled in and flattened to dotted keys; None when not found."""
    if recipe_dirs is None:
        recipe_dirs = shipped_recipe_dirs()
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
