"""The HTML report opens in headless Chromium without errors and shows its figures.

Skipped when no Chromium is installed (Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganbench.report import build_report
from tests.test_report_render import build_results

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
    None,
)


def screenshot(page: Path, png: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_html_report_images_exist(tmp_path: Path) -> None:
    results, recipes = build_results(tmp_path / "data")
    output = tmp_path / "site" / "report.html"
    output.parent.mkdir()
    text, _ = build_report(results, "html", output, recipe_dirs=[recipes])
    sources = re.findall(r'<img src="([^"]+)"', text)
    # curves and samples for each paper table (CIFAR-10, STL-10) and for the quickstart table
    assert len(sources) == 6
    for source in sources:
        assert (output.parent / source).is_file(), source
    # CIFAR-10 and STL-10, each with its other-protocols table, the quickstart, all runs
    assert text.count("<table>") == text.count("</table>") == 6


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary; apt-get install -y chromium")
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    results, recipes = build_results(tmp_path / "data")
    # Only the quickstart runs, so its figures fall inside the 1600-pixel-high screenshot.
    for extra in ("cifar10", "stl10", "damaged", "quick-long"):
        shutil.rmtree(results / extra)
    output = tmp_path / "site" / "report.html"
    output.parent.mkdir()
    build_report(results, "html", output, recipe_dirs=[recipes])
    png = tmp_path / "shot.png"
    done = screenshot(output, png, tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    # Console errors (a missing image, a script error) are logged as "CONSOLE" / "Failed to load" lines.
    problems = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Failed to load" in line]
    assert not problems, problems
    shot = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    assert shot.shape[:2] == (1600, 1200)
    assert shot.std() > 10  # not blank
    # The figures are drawn: the curves use matplotlib's default blue and orange lines (C0, C1).
    blue = (np.abs(shot - np.array([31, 119, 180])).sum(axis=2) < 40).sum()
    orange = (np.abs(shot - np.array([255, 127, 14])).sum(axis=2) < 40).sum()
    assert blue > 100 and orange > 100, (blue, orange)
