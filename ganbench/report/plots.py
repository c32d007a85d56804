"""The report's figures, PNG files beside it: FID and IS against steps (one line per method, the spread over its
seeds as a band), and fixed-z sample sheets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Figure objects draw without pyplot, so no GUI backend is chosen or changed for the caller.
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ganbench.files import atomic_write
from ganbench.report.collect import RunResult, config_key
from ganbench.report.tables import (
    DATASETS,
    GROUPS,
    METRICS,
    ROW_KEYS,
    Table,
    arch_family,
    differences,
    layout_of,
    method_key,
    method_label,
    method_order,
    paper_dataset,
)

PANEL_INCHES = 3.6


@dataclass
class Series:
    """One run's curve of one metric."""

    label: str  # the method, as in the tables
    seed: int
    steps: list[int]
    values: list[float]
    finished: bool = True  # unfinished runs (diverged, interrupted, ...) are drawn dashed


@dataclass
class Band:
    """One method's curve over its seeds: the mean at each step and the lowest and highest seed."""

    label: str
    steps: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    seeds: int
    finished: bool = True


def band(label: str, series: list[Series]) -> Band:
    """The seeds' curves of one method as mean and min-max spread at each step any seed was evaluated at."""
    steps = sorted({step for line in series for step in line.steps})
    at = [[line.values[line.steps.index(step)] for line in series if step in line.steps] for step in steps]
    return Band(
        label,
        steps,
        [float(np.mean(values)) for values in at],
        [float(np.min(values)) for values in at],
        [float(np.max(values)) for values in at],
        len(series),
        all(line.finished for line in series),
    )


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "plot"


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)  # a real renderer, so titles are measured (and kept) when the layout is computed
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15))


def _steps(value: float, _: int) -> str:
    """Step ticks as 0, 500, 50k, 1.2M: short labels that never run into each other."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def curve_figure(panels: dict[str, tuple[str, list[Band]]]) -> Figure:
    """One panel per entry (title -> (y label, bands)); one colour per method, its seed spread as a shaded band."""
    count = len(panels)
    columns = min(count, 2)
    rows = -(-count // columns)
    figure = Figure(figsize=(PANEL_INCHES * 1.5 * columns, PANEL_INCHES * rows), layout="constrained")
    FigureCanvasAgg(figure)
    labels = list(dict.fromkeys(b.label for _, bands in panels.values() for b in bands))
    colours = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    for index, (title, (ylabel, bands)) in enumerate(panels.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        for line in bands:
            colour = colours[line.label]
            seeds = f" (n={line.seeds})" if line.seeds > 1 else ""
            axes.plot(
                line.steps,
                line.mean,
                color=colour,
                linestyle="-" if line.finished else "--",
                marker="o" if len(line.steps) < 12 else None,
                markersize=3,
                linewidth=1.4,
                label=line.label + seeds,
            )
            if line.seeds > 1:
                axes.fill_between(line.steps, line.low, line.high, color=colour, alpha=0.2, linewidth=0)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("generator step")
        axes.set_ylabel(ylabel)
        axes.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        axes.xaxis.set_major_formatter(FuncFormatter(_steps))
        axes.yaxis.set_major_locator(MaxNLocator(nbins=6))
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        if bands:
            axes.legend(fontsize=7, loc="best")
    return figure


def curves(panels: dict[str, tuple[str, list[Band]]], path: Path) -> None:
    _save(curve_figure(panels), path)


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
        if table.kind not in ("paper", "generic"):  # the other-protocols tables share the paper table's runs
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
    return [run for run in runs if layout_of(run) == table.selector]


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
    panels: dict[str, tuple[str, list[Band]]] = {}
    for key, members in sorted(_panels(runs).items()):
        members = sorted(members, key=lambda run: (method_order(method_key(run.config)), run.seed))
        present = {metric for run in members for metric in set(run.curves.get("metric", []))}
        if table.key.startswith("generic-"):
            metrics = [m for m in METRICS if m in present and (m in shown or not shown)]
        else:  # the papers' layouts: FID and IS against steps
            metrics = [m for m in ("fid", "is_mean") if m in present]
        for metric in metrics:
            bands = _bands(members, metric)
            if bands:
                where = metric_label(metric) if key[1] == "" else _panel_title(key)
                title = where if key[1] == "" else f"{where}: {metric_label(metric)}"
                panels[title] = (metric_label(metric), bands)
    if not panels:
        return []
    caption = (
        "Measures against generator steps: one line per method (mean over its seeds), the band spans the lowest to "
        "the highest seed; dashed: a run not finished"
    )
    return [("", caption, lambda path: curves(panels, path))]


CURVE_FIELDS = ("ref_dataset", "ref_split", "n_fake", "generator", "extractor", "weights_hash")


def _bands(members: list[RunResult], metric: str) -> list[Band]:
    """One band per method, training recipe and evaluation protocol (seeds apart); a method trained or evaluated
    another way than its first group gets its own line, the difference named in its label."""
    groups: dict[tuple[str, str, str], list[RunResult]] = {}
    for run in members:
        evaluation = json.dumps(run.curve_protocol, sort_keys=True)
        groups.setdefault((method_key(run.config), config_key(run.config, ROW_KEYS), evaluation), []).append(run)
    bands = []
    first: dict[str, RunResult] = {}
    for (method, _, _), group in groups.items():
        label = method_label(method)
        if method in first:
            label += f" ({_difference(group[0], first[method])})"
        first.setdefault(method, group[0])
        series = [line for run in group if (line := run_series(run, metric, label))]
        if series:
            bands.append(band(label, series))
    return bands


def _difference(run: RunResult, other: RunResult) -> str:
    """What sets `run` apart from `other` in a few words: recipe keys first, then evaluation fields."""
    changes = [f"{key}={ours}" for key, ours, _ in differences(run.config, other.config)]
    for name in CURVE_FIELDS:
        ours, theirs = run.curve_protocol.get(name), other.curve_protocol.get(name)
        if ours != theirs:
            changes.append(f"{name}={ours if name != 'weights_hash' else (ours or '')[:8]}")
    return ", ".join(changes[:2]) or "other protocol"


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
