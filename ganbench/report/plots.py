"""The report's figures, PNG files beside it: measures against steps per method, and fixed-z sample sheets."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Figure objects draw without pyplot, so no GUI backend is chosen or changed for the caller.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread

from ganbench.report.collect import RunResult
from ganbench.report.tables import (
    DATASETS,
    GROUPS,
    METRICS,
    Table,
    arch_family,
    layout_of,
    method_key,
    method_label,
    method_order,
    paper_dataset,
)
from ganbench.store import atomic_write

PANEL_INCHES = 3.6


@dataclass
class Series:
    """One run's curve of one metric."""

    label: str  # the method, as in the tables
    seed: int
    steps: list[int]
    values: list[float]
    finished: bool = True  # unfinished runs (diverged, interrupted, ...) are drawn dashed


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "plot"


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)  # a real renderer, so titles are measured (and kept) when the layout is computed
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15))


def curves(panels: dict[str, tuple[str, list[Series]]], path: Path) -> None:
    """One panel per entry (title -> (y label, series)); one colour per method, one line per seed."""
    count = len(panels)
    columns = min(count, 3)
    rows = -(-count // columns)
    figure = Figure(figsize=(PANEL_INCHES * 1.3 * columns, PANEL_INCHES * rows), layout="constrained")
    labels = sorted({s.label for _, series in panels.values() for s in series}, key=_first_seen(panels))
    colours = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    for index, (title, (ylabel, series)) in enumerate(panels.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        shown: set[str] = set()
        for line in series:
            axes.plot(
                line.steps,
                line.values,
                color=colours[line.label],
                linestyle="-" if line.finished else "--",
                marker="o" if len(line.steps) < 12 else None,
                markersize=3,
                linewidth=1.2,
                alpha=0.85,
                label=None if line.label in shown else line.label,
            )
            shown.add(line.label)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("generator step")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        if shown:
            axes.legend(fontsize=8)
    _save(figure, path)


def _first_seen(panels: dict[str, tuple[str, list[Series]]]) -> object:
    order: list[str] = []
    for _, series in panels.values():
        order += [s.label for s in series if s.label not in order]
    return order.index


def sample_sheet(panels: list[tuple[str, Path]], path: Path) -> None:
    """The latest fixed-z sample image of each method side by side (titles say method, seed and step)."""
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows + 0.3), layout="constrained")
    for index, (title, image) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(imread(image))
        axes.set_title(title, fontsize=9)
        axes.set_axis_off()
    _save(figure, path)


def run_series(run: RunResult, metric: str, label: str) -> Series | None:
    frame = run.curves
    if frame.empty:
        return None
    chosen = frame[frame["metric"] == metric].groupby("step")["value"].last()
    if chosen.empty:
        return None
    steps, values = [int(s) for s in chosen.index], [float(v) for v in chosen.values]
    return Series(label, run.seed, steps, values, finished=run.status == "finished")


def metric_label(metric: str) -> str:
    return METRICS[metric].label if metric in METRICS else metric


# ----------------------------------------------------------------------------------------------------
# Figures: measures against steps per method, and fixed-z sample sheets.


def add_figures(tables: list[Table], runs: list[RunResult], output: Path) -> list[str]:
    """Write each table's figures beside `output` and list them in the table; returns warnings."""
    folder_name = f"{output.stem}_plots"
    folder = output.parent / folder_name
    warnings: list[str] = []
    for table in tables:
        if table.key == "runs":
            continue
        mine = _table_runs(table, runs)
        for kind, make in (("curves", _curves), ("samples", _samples)):
            for suffix, caption, draw in make(table, mine):
                name = f"{slug(table.key)}{suffix}-{kind}.png"
                try:
                    draw(folder / name)
                except Exception as err:  # a figure is an extra: never lose the tables over it
                    warnings.append(f"{folder_name}/{name}: figure not drawn ({type(err).__name__}: {err})")
                    continue
                table.images.append((caption, f"{folder_name}/{name}"))
    return warnings


def _table_runs(table: Table, runs: list[RunResult]) -> list[RunResult]:
    if table.key.startswith("generic-"):
        name = table.key.removeprefix("generic-")
        return [run for run in runs if layout_of(run) == "generic" and run.name == name]
    return [run for run in runs if layout_of(run) == table.key]


def _panels(runs: Iterable[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    """Runs by (dataset, architecture) for the papers' layouts, by recipe name otherwise."""
    panels: dict[tuple[str, str], list[RunResult]] = {}
    for run in runs:
        dataset, family = paper_dataset(run.config), arch_family(run.config)
        key = (dataset, family) if layout_of(run) != "generic" and dataset and family else (run.name, "")
        panels.setdefault(key, []).append(run)
    return panels


def _panel_title(key: tuple[str, str]) -> str:
    dataset, family = key
    return f"{DATASETS.get(dataset, dataset)}, {GROUPS.get(family, family)}" if family else dataset


def _curves(table: Table, runs: list[RunResult]) -> list[tuple[str, str, Any]]:
    shown = [column.metric for column in table.columns]
    panels: dict[str, tuple[str, list[Series]]] = {}
    for key, members in sorted(_panels(runs).items()):
        members = sorted(members, key=lambda run: (method_order(method_key(run.config)), run.seed))
        present = {metric for run in members for metric in set(run.curves.get("metric", []))}
        if table.key.startswith("generic-"):
            metrics = [m for m in METRICS if m in present and (m in shown or not shown)]
        else:  # the papers' layouts: FID against steps, IS when a run has no FID
            metrics = ["fid"] if "fid" in present else [m for m in ("is_mean",) if m in present]
        for metric in metrics:
            series = [
                line for run in members if (line := run_series(run, metric, method_label(method_key(run.config))))
            ]
            if series:
                title = metric_label(metric) if key[1] == "" else _panel_title(key)
                panels[title if title not in panels else f"{title} ({metric})"] = (
                    metric_label(metric),
                    series,
                )
    if not panels:
        return []
    caption = "Measures against generator steps, one line per run (colour: method; dashed: not finished)"
    return [("", caption, lambda path: curves(panels, path))]


def _samples(table: Table, runs: list[RunResult]) -> list[tuple[str, str, Any]]:
    made = []
    for key, members in sorted(_panels(runs).items()):
        with_samples = [run for run in members if run.latest_sample is not None]
        by_method: dict[str, list[RunResult]] = {}
        for run in with_samples:
            by_method.setdefault(method_key(run.config), []).append(run)
        if not by_method:
            continue
        # The same seed for every method means the same fixed z, so the sheets compare like with like.
        common = set.intersection(*({run.seed for run in group} for group in by_method.values()))
        panels = []
        for method in sorted(by_method, key=method_order):
            group = sorted(by_method[method], key=lambda run: run.seed)
            run = next((r for r in group if r.seed == min(common)), group[0]) if common else group[0]
            title = f"{method_label(method)}\nseed {run.seed}, step {run.latest_sample_step}"
            assert run.latest_sample is not None
            panels.append((title, run.latest_sample))
        suffix = "" if key[1] == "" else f"-{slug(key[0])}-{key[1]}"
        same = " (same seed, so the same fixed z, for every method)" if common else ""
        caption = f"Latest fixed-z samples, {_panel_title(key)}{same}"
        made.append((suffix, caption, lambda path, panels=panels: sample_sheet(panels, path)))
    return made
