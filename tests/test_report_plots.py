"""The report's curves: one line per method (the mean over its seeds) with the seeds' spread as a band, and tick
labels that never overlap (the FID and IS panels of a paper table: tests/test_report_protocols.py)."""

from __future__ import annotations

from typing import Any

import pytest
from matplotlib.figure import Figure

from ganbench.report.plots import Series, band, curve_figure


def test_band_is_the_mean_and_the_spread_of_the_seeds_at_each_step() -> None:
    seeds = [
        Series("GN-GAN", 0, [1000, 2000, 3000], [30.0, 20.0, 25.0]),
        Series("GN-GAN", 1, [1000, 2000, 3000], [34.0, 18.0, 21.0]),
        Series("GN-GAN", 2, [1000, 2000], [32.0, 22.0], finished=False),
    ]
    made = band("GN-GAN", seeds)
    assert made.steps == [1000, 2000, 3000]
    assert made.mean == pytest.approx([32.0, 20.0, 23.0])
    assert (made.low, made.high) == ([30.0, 18.0, 21.0], [34.0, 22.0, 25.0])
    assert made.seeds == 3 and not made.finished


def _overlaps(boxes: list[Any]) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]


def test_long_runs_have_readable_ticks_and_one_line_and_band_per_method() -> None:
    steps = list(range(5000, 200001, 5000))  # the papers' 200k steps, evaluated every 5k
    bands = [
        band(
            label, [Series(label, seed, steps, [100.0 / (1 + s / 20000) + k + seed for s in steps]) for seed in (0, 1)]
        )
        for k, label in enumerate(("SN-GAN", "GN-GAN", "PGN-GAN-CR"))
    ]
    figure = curve_figure({"CIFAR-10, Standard CNN: FID": ("FID", bands), "CIFAR-10, Standard CNN: IS": ("IS", bands)})
    assert isinstance(figure, Figure)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    for axes in figure.axes:
        assert len(axes.get_lines()) == 3 and len(axes.collections) == 3  # a line and a band per method
        for ticks in (axes.get_xticklabels(), axes.get_yticklabels()):
            shown = [t for t in ticks if t.get_text() and t.get_visible()]
            assert len(shown) >= 3
            assert not _overlaps([t.get_window_extent(renderer) for t in shown])
        assert {t.get_text() for t in axes.get_xticklabels()} & {"100k", "200k"}  # steps written short
    legend = figure.axes[0].get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()][0] == "SN-GAN (n=2)"
