"""The paper tables on a results tree that mixes runs under the papers' protocol with runs that deviate from it.

Every metrics row is written by the evaluator itself (`Evaluation.rows`, as training and `ganbench eval` write
them), with stand-in generators and a channel-mean extractor (tests/test_report_render.py) whose features are
scaled so that FIDs land near the papers' (tens). The tree, for CIFAR-10 and STL-10:

- paper protocol (the paper recipe, 50k samples against the papers' statistics, the raw G, best FID over training):
  CIFAR-10 CNN GN seeds 0-2, PGN seeds 0-1, ResNet WGAN-GP and GN, STL-10 CNN GN seeds 0-1;
- SN (CNN, seeds 0-1) evaluated in training with 10k samples and again after training with
  `ganbench eval --checkpoint best --num-samples 50000`: the full-protocol evaluation is its paper cell;
- deviating GN runs: lossy-JPEG CIFAR-10 data, 1,000 steps, 10k samples, FID against CIFAR-100 statistics, the EMA
  generator; an STL-10 PGN run against train statistics.

The report's cells are read from its CSV and compared with the rows' numbers picked and averaged here.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from ganbench.cli import app
from ganbench.errors import GanbenchError
from ganbench.evaluation import Evaluation
from ganbench.metrics import inception
from ganbench.recipe import Recipe
from ganbench.report import build_report, papers
from ganbench.store import RunDir
from tests.test_report_render import POOL, ChannelStats, Extraction, Level, paper_recipe, reference, train_run

PAPER = papers.load()
SCALE = 24.0  # channel-mean features times this: FIDs of the stand-in generators in the tens, as the papers'
STEPS = 3000  # the test's paper recipes train 3,000 steps and evaluate every 1,000
FULL = 50000  # the papers' samples


class Scaled(ChannelStats):
    """ChannelStats with its pool features scaled (FID grows with the square); the IS logits stay as they are."""

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super()._forward(images)
        return {"pool": SCALE * out["pool"], "logits": out["logits"]}


def recipe(dataset: str, arch: str, method: str, seed: int = 0, samples: int = FULL, **keys: Any) -> Recipe:
    """The test's paper recipe of a row (raw G reported, as the papers' official code), with `keys` changed."""
    made = paper_recipe(dataset, arch, method, seed, select="raw", batch_size_g=1000)
    sections = {"data": {}, "train": {}, "eval": {"num_samples": samples}}
    for key, value in keys.items():
        section, name = key.split("__")
        sections[section][name] = value
    return dataclasses.replace(
        made,
        data=dataclasses.replace(made.data, **sections["data"]),
        train=dataclasses.replace(made.train, **sections["train"]),
        eval=dataclasses.replace(made.eval, **sections["eval"]),
    )


def levels(*values: float, kind: str = "raw") -> dict[int, dict[str, torch.nn.Module]]:
    """The generator at steps 1000, 2000, ...: the further its level from the reference's 0, the worse the FID."""
    return {1000 * (i + 1): {kind: Level(level)} for i, level in enumerate(values)}


def evaluate_best(run: RunDir, recipe_: Recipe, extraction: Extraction, samples: int = FULL) -> None:
    """What `ganbench eval RUN --checkpoint best --num-samples N` appends: best.pt's rows under the full protocol
    (best.pt holds the generator of the step with the lowest in-training FID; here its level is the run's)."""
    info = run.read_run()
    step = int(info["best"]["step"])
    level = float(LEVELS[str(run.root)][step])
    full = dataclasses.replace(recipe_, eval=dataclasses.replace(recipe_.eval, num_samples=samples))
    evaluation = Evaluation(full, "cpu", extractor=extraction.extractor, ref=extraction.ref)
    run.append_metrics(evaluation.rows(Level(level), step=step, checkpoint="best", generator_kind="raw"))


LEVELS: dict[str, dict[int, float]] = {}


def trained(
    root: Path, recipe_: Recipe, steps: dict[int, dict[str, torch.nn.Module]], extraction: Extraction
) -> RunDir:
    LEVELS[str(root)] = {step: float(next(iter(g.values())).level) for step, g in steps.items()}  # type: ignore[arg-type]
    return train_run(root, recipe_, steps, extraction)


def build_mixed(root: Path) -> tuple[Path, Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception, "POOL_DIM", POOL)
        return _build_mixed(root)


def _build_mixed(root: Path) -> tuple[Path, Path]:
    results, recipes = root / "results", root / "recipes"
    recipes.mkdir(parents=True)
    for dataset, arch, method in (
        ("cifar10", "cnn32", "gn"),
        ("cifar10", "cnn32", "sn"),
        ("cifar10", "cnn32", "pgn"),
        ("cifar10", "resnet32", "gn"),
        ("cifar10", "resnet32", "wgan-gp"),
        ("stl10", "cnn48", "gn"),
        ("stl10", "cnn48", "pgn"),
    ):
        made = recipe(dataset, arch, method)
        (recipes / f"{made.name.replace('wgan-gp', 'wgangp')}.toml").write_text(made.to_toml())
    weights = root / "weights" / "channel-stats.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"stand-in weights")
    extractor = Scaled(weights, "c" * 64)
    cifar = Extraction(extractor, reference(extractor, "cifar10", "train"))
    cifar100 = Extraction(extractor, reference(extractor, "cifar100", "train"))
    stl = Extraction(extractor, reference(extractor, "stl10", "unlabeled"))
    stl_train = Extraction(extractor, reference(extractor, "stl10", "train"))

    # CIFAR-10, standard CNN, paper protocol.
    for seed, steps in enumerate([(0.5, 0.2, 0.3), (0.45, 0.25, 0.22), (0.6, 0.3, 0.18)]):
        trained(results / f"cifar10/gn/seed-{seed}", recipe("cifar10", "cnn32", "gn", seed), levels(*steps), cifar)
    for seed, steps in enumerate([(0.4, 0.16, 0.2), (0.3, 0.14, 0.15)]):
        trained(results / f"cifar10/pgn/seed-{seed}", recipe("cifar10", "cnn32", "pgn", seed), levels(*steps), cifar)
    # SN: 10k samples in training, then best.pt evaluated with the papers' 50k.
    for seed, steps in enumerate([(0.5, 0.35, 0.4), (0.45, 0.3, 0.33)]):
        sn = recipe("cifar10", "cnn32", "sn", seed, samples=10000)
        run = trained(results / f"cifar10/sn/seed-{seed}", sn, levels(*steps), cifar)
        evaluate_best(run, sn, cifar)
    # Deviations, each GN seed 0 trained and scored another way.
    trained(
        results / "cifar10/gn-jpeg/seed-0",
        recipe("cifar10", "cnn32", "gn", data__name="cifar10-jpeg"),
        levels(0.9, 0.7, 0.8),
        cifar,
    )
    trained(results / "cifar10/gn-1k/seed-0", recipe("cifar10", "cnn32", "gn", train__steps=1000), levels(0.8), cifar)
    trained(
        results / "cifar10/gn-10k/seed-0",
        recipe("cifar10", "cnn32", "gn", samples=10000),
        levels(0.5, 0.21, 0.3),
        cifar,
    )
    trained(results / "cifar10/gn-c100/seed-0", recipe("cifar10", "cnn32", "gn"), levels(0.5, 0.2, 0.3), cifar100)
    trained(
        results / "cifar10/gn-ema/seed-0",
        recipe("cifar10", "cnn32", "gn", eval__select="ema"),
        levels(0.5, 0.2, 0.3, kind="ema"),
        cifar,
    )
    # CIFAR-10, ResNet, paper protocol.
    for seed, steps in enumerate([(0.3, 0.12, 0.2), (0.25, 0.1, 0.15)]):
        trained(
            results / f"cifar10/resnet-gn/seed-{seed}", recipe("cifar10", "resnet32", "gn", seed), levels(*steps), cifar
        )
    trained(
        results / "cifar10/resnet-wgangp/seed-0",
        recipe("cifar10", "resnet32", "wgan-gp"),
        levels(0.4, 0.3, 0.35),
        cifar,
    )
    # STL-10, standard CNN: GN under the paper protocol, PGN against train statistics (papers: unlabeled).
    for seed, steps in enumerate([(0.4, 0.2, 0.3), (0.35, 0.25, 0.3)]):
        trained(results / f"stl10/gn/seed-{seed}", recipe("stl10", "cnn48", "gn", seed), levels(*steps), stl)
    trained(results / "stl10/pgn/seed-0", recipe("stl10", "cnn48", "pgn"), levels(0.3, 0.15, 0.2), stl_train)
    return results, recipes


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_mixed(tmp_path_factory.mktemp("mixed"))


@pytest.fixture(scope="module")
def cells(mixed: tuple[Path, Path]) -> list[dict[str, str]]:
    folder, recipes = mixed
    text, _ = build_report(folder, "csv", None, recipe_dirs=[recipes])
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def markdown(mixed: tuple[Path, Path]) -> str:
    folder, recipes = mixed
    return build_report(folder, "markdown", None, recipe_dirs=[recipes], figures=False)[0]


def find(cells: list[dict[str, str]], **where: str) -> list[dict[str, str]]:
    return [cell for cell in cells if all(cell[key] == value for key, value in where.items())]


def best(folder: Path, checkpoint: str = "in-training", generator: str = "raw") -> dict[str, float]:
    """The values a run reports, picked here from its rows: the evaluation with the lowest FID among `checkpoint`'s
    rows of `generator`, every metric at that step."""
    rows = pd.read_parquet(folder / "metrics.parquet")
    rows = rows[(rows["generator"] == generator) & (rows["checkpoint"] == checkpoint)]
    fid = rows[rows["metric"] == "fid"].set_index("step")["value"]
    chosen = rows[rows["step"] == fid.idxmin()]
    return dict(zip(chosen["metric"], chosen["value"], strict=True))


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str, title: str) -> list[list[str]]:
    """The body rows of the GFM table under `## title` (block headings included), cells stripped."""
    lines = [line for line in section(text, title).splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


CIFAR, CIFAR_OTHER = "CIFAR-10, unconditional generation", "CIFAR-10, unconditional generation: other protocols"


def test_the_paper_row_holds_the_paper_protocol_cell_alone(
    mixed: tuple[Path, Path], cells: list[dict[str, str]]
) -> None:
    folder, _ = mixed
    values = [best(folder / f"cifar10/gn/seed-{seed}") for seed in range(3)]
    for metric in ("fid", "is_mean"):
        (cell,) = find(cells, table="cifar10", arch="cnn", method="gn", cr="", metric=metric)
        numbers = [value[metric] for value in values]
        assert float(cell["mean"]) == pytest.approx(np.mean(numbers), rel=1e-9)
        assert float(cell["std"]) == pytest.approx(np.std(numbers, ddof=1), rel=1e-9)
        assert (cell["n"], cell["seeds"], cell["comparable"]) == ("3", "0 1 2", "true")
        paper = PAPER.get("cifar10", "cnn", "gn", {"fid": "fid", "is_mean": "is"}[metric])
        assert paper is not None and float(cell["paper_mean"]) == paper.value
        assert float(cell["delta"]) == pytest.approx(np.mean(numbers) - paper.value, rel=1e-9)
    # Exactly one row per method and block in the paper table, whatever else was run.
    keys = [(c["arch"], c["method"], c["cr"], c["metric"]) for c in find(cells, table="cifar10")]
    assert len(keys) == len(set(keys))


def test_cells_under_other_protocols_get_their_own_rows_and_no_delta(
    mixed: tuple[Path, Path], cells: list[dict[str, str]], markdown: str
) -> None:
    folder, _ = mixed
    other = find(cells, table="cifar10-other", metric="fid")
    assert all(c["delta"] == "" and c["paper_mean"] == "" and c["comparable"] == "false" for c in other)
    assert [c["method"] for c in other] == ["gn"] * 5
    shown = sorted(float(c["mean"]) for c in other)
    picks = [best(folder / f"cifar10/{run}/seed-0")["fid"] for run in ("gn-jpeg", "gn-1k", "gn-10k", "gn-c100")]
    picks.append(best(folder / "cifar10/gn-ema/seed-0", generator="ema")["fid"])
    assert shown == pytest.approx(sorted(picks), rel=1e-9)
    assert len({c["protocol_id"] for c in other}) == 5
    notes = section(markdown, CIFAR_OTHER)
    for words in (
        'data.name = "cifar10-jpeg" (paper recipe: "cifar10")',
        "train.steps = 1000 (paper recipe: 3000)",
        "n\\_fake 10000 (paper: 50000)",
        "reference statistics of cifar100 (paper: cifar10)",
        "EMA generator (paper: raw)",
    ):
        assert words in notes, words
    # In the rendered paper table: one GN-GAN row per block, its Δ that of the paper-protocol cell.
    rows = table_rows(markdown, CIFAR)
    assert [row[0] for row in rows].count("GN-GAN") == 2  # Standard CNN and ResNet
    (stl_pgn,) = find(cells, table="stl10-other", method="pgn", metric="fid")
    assert stl_pgn["dataset"] == "stl10" and stl_pgn["delta"] == ""
    assert find(cells, table="stl10", method="pgn", cr="", metric="fid")[0]["mean"] == ""


def test_a_full_protocol_evaluation_wins_over_the_in_training_one(
    mixed: tuple[Path, Path], cells: list[dict[str, str]], markdown: str
) -> None:
    folder, _ = mixed
    full = [best(folder / f"cifar10/sn/seed-{seed}", "best") for seed in (0, 1)]
    in_training = [best(folder / f"cifar10/sn/seed-{seed}") for seed in (0, 1)]
    (cell,) = find(cells, table="cifar10", method="sn", cr="", metric="fid")
    assert float(cell["mean"]) == pytest.approx(np.mean([v["fid"] for v in full]), rel=1e-9)
    assert np.mean([v["fid"] for v in full]) != pytest.approx(np.mean([v["fid"] for v in in_training]))
    assert cell["comparable"] == "true" and cell["delta"] == ""  # the paper prints no FID for SN-GAN CNN
    assert not find(cells, table="cifar10-other", method="sn")  # the 10k in-training pick is superseded
    (row,) = [row for row in table_rows(markdown, CIFAR) if row[0] == "SN-GAN" and row[1] != "–"]
    assert row[4].endswith("<sup>†</sup>")
    assert "- <sup>†</sup> the chosen checkpoint evaluated again after training" in section(markdown, CIFAR)
    assert "Best.pt (the checkpoint of the best in-training evaluation), evaluated after training" in markdown


def test_bold_marks_the_best_per_block_and_column(cells: list[dict[str, str]], markdown: str) -> None:
    rows = table_rows(markdown, CIFAR)
    block, bold = "", set()
    for row in rows:
        if row[0].startswith("*") and all(cell == "" for cell in row[1:]):
            block = row[0].strip("*")
            continue
        for index, cell in enumerate(row[1:], start=1):
            if cell.startswith("**"):
                bold.add((block, row[0], index))
    expected = set()
    names = {"cnn": "Standard CNN", "resnet": "ResNet"}
    for arch in names:
        for metric, index, pick in (("is_mean", 1, max), ("fid", 4, min)):
            ours = [c for c in find(cells, table="cifar10", arch=arch, metric=metric) if c["mean"]]
            top = pick(round(float(c["mean"]), 2) for c in ours)
            labels = {"sn": "SN-GAN", "gn": "GN-GAN", "pgn": "PGN-GAN", "wgan-gp": "WGAN-GP"}
            expected |= {(names[arch], labels[c["method"]], index) for c in ours if round(float(c["mean"]), 2) == top}
    ours_bold = {item for item in bold if item[2] in (1, 4)}
    assert ours_bold == expected
    assert ("Standard CNN", "PGN-GAN", 4) in ours_bold and ("ResNet", "GN-GAN", 4) in ours_bold  # one per block
    # The paper's own bold, per block too: the Standard CNN's best FID is GN-GAN-CR's 18.59.
    assert ("Standard CNN", "GN-GAN-CR", 5) in bold and ("ResNet", "PGN-GAN-CR", 5) in bold


def test_rows_follow_the_papers_order_real_data_first(markdown: str) -> None:
    labels = [row[0] for row in table_rows(markdown, CIFAR)]
    assert labels[0] == "Real data"
    resnet = labels[labels.index("*ResNet*") + 1 : labels.index("*Architecture search*")]
    assert resnet == ["WGAN-GP", "SN-GAN", "SN-GAN-CR", "GN-GAN", "GN-GAN-CR", "PGN-GAN", "PGN-GAN-CR"]
    cnn = labels[labels.index("*Standard CNN*") + 1 : labels.index("*ResNet*")]
    assert cnn == ["SN-GAN", "SN-GAN-CR", "GN-GAN", "GN-GAN-CR", "PGN-GAN", "PGN-GAN-CR"]
    titles = re.findall(r"^## (.*)$", markdown, flags=re.MULTILINE)
    assert titles[:4] == [
        CIFAR,
        CIFAR_OTHER,
        "STL-10, unconditional generation",
        "STL-10, unconditional generation: other protocols",
    ]


def test_delta_marks_whether_the_difference_is_within_noise(mixed: tuple[Path, Path], markdown: str) -> None:
    """The mark is re-derived with scipy's one-sample t-test of the runs' own picks against the paper's mean (the
    paper does not say over how many runs its ± is)."""
    folder, _ = mixed
    rows = {row[0]: row for row in table_rows(markdown, CIFAR)[:9]}  # Real data and the Standard CNN block
    marks = set()
    for method, label, seeds in (("gn", "GN-GAN", 3), ("pgn", "PGN-GAN", 2)):
        values = [best(folder / f"cifar10/{method}/seed-{seed}") for seed in range(seeds)]
        for metric, column in (("fid", 6), ("is_mean", 3)):
            paper = PAPER.get("cifar10", "cnn", method, {"fid": "fid", "is_mean": "is"}[metric])
            assert paper is not None
            p = stats.ttest_1samp([v[metric] for v in values], paper.value).pvalue
            mark = "≈" if p >= 0.05 else "\\*"
            assert rows[label][column].endswith(f" {mark}"), (label, metric, rows[label][column], p)
            marks.add(mark)
    assert marks == {"≈", "\\*"}  # the tree has differences both within and beyond noise
    # One seed: Δ without a mark (WGAN-GP's IS, ResNet).
    (wgan,) = [row for row in table_rows(markdown, CIFAR) if row[0] == "WGAN-GP"]
    assert re.fullmatch(r"[+-]\d+\.\d\d", wgan[3])


def test_protocol_line_per_table_and_fingerprints_once(mixed: tuple[Path, Path], markdown: str) -> None:
    folder, _ = mixed
    line = next(line for line in section(markdown, CIFAR).splitlines() if line.startswith("Protocol: "))
    for words in (
        "50,000 samples",
        "FID against cifar10 train (64 images) statistics",
        "raw generator",
        "best FID over training, evaluated every 1,000 steps",
        "3,000 steps trained",
        "Welch's t-test",
        "Paper: 50k samples against CIFAR-10 train (50k) statistics",  # papers.toml's description
    ):
        assert words in line, words
    rows = pd.concat(pd.read_parquet(path) for path in folder.rglob("metrics.parquet"))
    shown = [fp for fp in set(rows["fingerprint"]) if fp in markdown]
    assert shown and all(markdown.count(fp) == 1 for fp in shown)  # in the appendix, once each
    assert markdown.count("c" * 64) == len(re.findall(r"^- \*\*E\d+\*\*", markdown, flags=re.MULTILINE))


def test_columns_decimals_and_table_choice(mixed: tuple[Path, Path]) -> None:
    folder, recipes = mixed
    text, _ = build_report(
        folder, "markdown", None, recipe_dirs=[recipes], tables=["stl10"], columns="ours", decimals=3
    )
    titles = re.findall(r"^## (.*)$", text, flags=re.MULTILINE)
    assert titles == [
        "STL-10, unconditional generation",
        "STL-10, unconditional generation: other protocols",
        "Appendix: protocols",
    ]
    head = next(line for line in section(text, "STL-10, unconditional generation").splitlines() if line.startswith("|"))
    assert head == "| Method | IS ours | FID ours |"
    gn = next(
        row for row in table_rows(text, "STL-10, unconditional generation") if row[0] == "GN-GAN" and row[1] != "–"
    )
    assert re.fullmatch(r"\d+\.\d{3} ± \d+\.\d{3} \(n=2; seeds 0, 1\)", gn[2])
    paper, _ = build_report(folder, "markdown", None, recipe_dirs=[recipes], tables=["cifar10"], columns="paper")
    head = next(line for line in section(paper, CIFAR).splitlines() if line.startswith("|"))
    assert head == "| Method | IS paper | FID paper |"
    # A paper table asked for by name is shown before any run of it: the paper's numbers, ours empty.
    celeba, _ = build_report(folder, "csv", None, recipe_dirs=[recipes], tables=["celebahq"])
    rows = list(csv.DictReader(io.StringIO(celeba)))
    assert {row["dataset"] for row in rows} == {"celebahq128", "celebahq256"} and len(rows) == 6
    assert all(row["mean"] == "" for row in rows)


def test_cli_report_options(mixed: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = mixed
    runner = CliRunner()
    done = runner.invoke(app, ["report", "--results", str(folder), "--tables", "stl10,runs", "--decimals", "1"])
    assert done.exit_code == 0, done.output
    assert "## STL-10, unconditional generation" in done.output and "## All runs" in done.output
    assert "## CIFAR-10" not in done.output
    good = tmp_path / "good.md"
    good.write_text("keep")
    for argv in (["--tables", "imagenet"], ["--tables", "cifar"], ["--columns", "mine"], ["--decimals", "9"]):
        done = runner.invoke(app, ["report", "--results", str(folder), "--output", str(good), *argv])
        assert done.exit_code == 2, (argv, done.output)
    assert good.read_text() == "keep"


def test_parse_tables_names_the_choices() -> None:
    from ganbench.report import parse_tables

    assert parse_tables("STL10, cifar10,stl10") == ["stl10", "cifar10"]
    assert parse_tables("biggan,celebahq") == ["biggan", "celebahq"]
    with pytest.raises(GanbenchError, match="choose from cifar10, stl10, biggan, celebahq, other, runs"):
        parse_tables("cifar")


def test_paper_tables_get_fid_and_is_panels(
    mixed: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganbench.report import plots

    results, recipes = mixed
    drawn: list[dict[str, Any]] = []
    monkeypatch.setattr(plots, "curves", lambda panels, path: drawn.append(panels))
    build_report(results, "markdown", tmp_path / "report.md", recipe_dirs=[recipes], tables=["cifar10"])
    (panels,) = drawn
    assert set(panels) == {
        "CIFAR-10, Standard CNN: FID",
        "CIFAR-10, Standard CNN: IS",
        "CIFAR-10, ResNet: FID",
        "CIFAR-10, ResNet: IS",
    }
    labels = [b.label for b in panels["CIFAR-10, Standard CNN: FID"][1]]
    # GN trained and evaluated six ways (paper protocol over 3 seeds, 1,000 steps, JPEG data, CIFAR-100 statistics,
    # ...): each its own line, the difference named.
    assert labels.count("GN-GAN") == 1 and len(labels) == len(set(labels))
    assert sum(label.startswith("GN-GAN") for label in labels) == 6
    assert "GN-GAN (ref_dataset=cifar100)" in labels and 'GN-GAN (data.name="cifar10-jpeg")' in labels
    gn = next(b for b in panels["CIFAR-10, Standard CNN: FID"][1] if b.label == "GN-GAN")
    assert gn.seeds == 3


# ----------------------------------------------------------------------------------------------------
# LaTeX: a two-column paper compiles it unmodified.

PDFLATEX = shutil.which("pdflatex")
PAPER_TEX = r"""\documentclass[twocolumn]{article}
\usepackage{booktabs}
\usepackage{graphicx}
\begin{document}
Text in two columns.
\input{tables}
\end{document}
"""


def latex_tables(text: str) -> list[str]:
    return re.findall(r"\\begin\{table\*\}.*?\\end\{table\*\}", text, flags=re.DOTALL)


def test_latex_is_one_table_star_per_table_with_booktabs(mixed: tuple[Path, Path]) -> None:
    """The structure checks, with or without a TeX installation."""
    folder, recipes = mixed
    text, _ = build_report(folder, "latex", None, recipe_dirs=[recipes])
    floats = latex_tables(text)
    assert len(floats) == 4  # CIFAR-10 and STL-10, each with its other protocols; no table of every run
    assert "\\begin{table}" not in text
    for body in floats:
        assert body.count(r"\toprule") == body.count(r"\bottomrule") == 1 and r"\midrule" in body
        assert r"\resizebox{\ifdim\width>\textwidth\textwidth\else\width\fi}{!}{%" in body
        spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", body)
        assert spec is not None
        width = len(spec.group(1))
        rows = body.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
        for line in rows.splitlines():
            if line.endswith(r"\\") and not line.startswith(r"\multicolumn"):
                assert line.count(" & ") == width - 1, line
        assert body.count("{") == body.count("}")
    assert all(line.startswith("%") or "\n" not in line for line in text.split("\\end{table*}")[-1].splitlines())


@pytest.mark.skipif(
    PDFLATEX is None,
    reason="pdflatex not on PATH: LaTeX compile not checked; apt-get install -y --no-install-recommends "
    "texlive-latex-base texlive-latex-recommended",
)
def test_latex_compiles_in_a_two_column_paper(mixed: tuple[Path, Path], tmp_path: Path) -> None:
    folder, recipes = mixed
    build_report(folder, "latex", tmp_path / "tables.tex", recipe_dirs=[recipes], tables=["cifar10", "stl10", "other"])
    (tmp_path / "paper.tex").write_text(PAPER_TEX)
    done = subprocess.run(
        [str(PDFLATEX), "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 1000
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
    assert "Float too large" not in log


# ----------------------------------------------------------------------------------------------------
# HTML: DOM checks (tests/test_report_html.py renders it in Chromium where one is installed).


class Dom(HTMLParser):
    """Each <table> as rows of (tag, colspan, rowspan, text) cells; open and close tags counted."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, int, int, str]]]] = []
        self.stack: list[str] = []
        self.cell: list[Any] | None = None
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("meta", "img", "br"):
            self.stack.append(tag)
        found = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = [tag, int(found.get("colspan") or 1), int(found.get("rowspan") or 1), ""]

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append(tuple(self.cell))  # type: ignore[arg-type]
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell[3] += data


def grid_width(rows: list[list[tuple[str, int, int, str]]]) -> list[int]:
    """Each row's width in columns, counting cells spanned down from rows above."""
    carried: list[int] = []
    widths = []
    for row in rows:
        width = sum(span for _, span, _, _ in row) + sum(1 for left in carried if left > 0)
        carried = [left - 1 for left in carried if left > 1]
        for _, span, down, _ in row:
            carried += [down - 1] * span if down > 1 else []
        widths.append(width)
    return widths


def test_html_tables_are_well_formed(mixed: tuple[Path, Path]) -> None:
    folder, recipes = mixed
    text, _ = build_report(folder, "html", None, recipe_dirs=[recipes])
    dom = Dom()
    dom.feed(text)
    assert not dom.errors and dom.stack == []
    assert len(dom.tables) == 5  # CIFAR-10, its other protocols, STL-10, its other protocols, all runs
    for rows in dom.tables:
        widths = grid_width(rows)
        assert len(set(widths)) == 1, widths  # every row, header rows included, spans the same columns
    cifar = dom.tables[0]
    labels = [row[0][3] for row in cifar if row[0][0] == "td"]
    assert labels[:2] == ["Real data", "Standard CNN"]
    gn = next(row for row in cifar if row[0][3] == "GN-GAN")
    assert gn[6][3].endswith(("≈", "*"))  # the FID Δ with its mark
    assert 'id="appendix"' not in text and "Appendix: protocols" in text


# ----------------------------------------------------------------------------------------------------
# Our own Real data row: the reference images scored as samples.


def reference_images() -> torch.Tensor:
    """The 64 images tests/test_report_render.reference() makes its statistics of."""
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(99))
    return ((torch.tanh(0.5 * z)[:, :, None, None].expand(-1, -1, 8, 8) + 1) * 127.5).round().to(torch.uint8)


def frechet(a: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    from scipy import linalg

    m, s = a.mean(axis=0), np.cov(a, rowvar=False)
    root = linalg.sqrtm(s @ sigma).real
    return float(((m - mu) ** 2).sum() + np.trace(s + sigma - 2 * root))


def test_reference_rows_are_the_real_images_is_and_fid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganbench.metrics.compute import MetricSettings
    from ganbench.report import real

    monkeypatch.setattr(inception, "POOL_DIM", POOL)
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"w")
    extractor = Scaled(weights, "c" * 64)
    ref = reference(extractor, "cifar10", "train")
    images = reference_images()
    whole = {row["metric"]: row for row in real.reference_rows(images, extractor, ref, FULL)}
    assert whole["fid"]["n_fake"] == 64 and whole["fid"]["value"] == pytest.approx(0.0, abs=1e-6)  # all 64: itself
    assert whole["fid"]["generator"] == "real" and whole["fid"]["checkpoint"] == "reference"
    half = {row["metric"]: row for row in real.reference_rows(images, extractor, ref, 32, MetricSettings(is_splits=1))}
    features = extractor.features(images[:32])
    assert half["fid"]["value"] == pytest.approx(
        frechet(features["pool"].double().numpy(), ref.mu, ref.sigma), rel=1e-6
    )
    p = torch.softmax(features["logits"].double(), dim=1).numpy()  # IS by its definition, one split
    expected = np.exp((p * (np.log(p) - np.log(p.mean(axis=0)))).sum(axis=1).mean())
    assert half["is_mean"]["value"] == pytest.approx(expected, rel=1e-9)


def test_the_real_data_row_shows_ours_when_reference_rows_exist(
    mixed: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganbench.report import real

    monkeypatch.setattr(inception, "POOL_DIM", POOL)
    folder, recipes = mixed
    results = tmp_path / "results"
    shutil.copytree(folder, results)
    extractor = Scaled(tmp_path / "channel-stats.pt", "c" * 64)
    ref = reference(extractor, "cifar10", "train")
    rows = real.reference_rows(reference_images(), extractor, ref, FULL)
    real.save_rows(results, ref, rows)
    other = reference(extractor, "cifar10", "test")  # another split: not the papers' protocol, never shown
    real.save_rows(results, other, real.reference_rows(reference_images(), extractor, other, FULL))
    text, _ = build_report(results, "csv", None, recipe_dirs=[recipes], tables=["cifar10", "stl10"])
    cells = list(csv.DictReader(io.StringIO(text)))
    (inception_score,) = find(cells, table="cifar10", arch="real", metric="is_mean")
    value = next(row["value"] for row in rows if row["metric"] == "is_mean")
    assert float(inception_score["mean"]) == pytest.approx(value, rel=1e-9)
    assert float(inception_score["delta"]) == pytest.approx(value - 11.24, rel=1e-9)
    (fid,) = find(cells, table="cifar10", arch="real", metric="fid")
    assert fid["paper_mean"] == "" and float(fid["mean"]) == pytest.approx(0.0, abs=1e-6)
    assert find(cells, table="stl10", arch="real", metric="is_mean")[0]["mean"] == ""  # no STL-10 rows
    markdown, _ = build_report(results, "markdown", None, recipe_dirs=[recipes], tables=["cifar10"])
    entry = re.search(rf"^- \*\*{inception_score['protocol_id']}\*\*: (.*)$", markdown, flags=re.MULTILINE)
    assert (
        entry is not None
        and "The reference images themselves, the first 64 of the cifar10 train split" in entry.group(1)
    )
    assert table_rows(markdown, CIFAR)[0][:4] == ["Real data", f"{value:.2f}", "11.24 ± .12", f"{value - 11.24:+.2f}"]


def test_score_missing_scores_each_paper_dataset_once(
    mixed: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`report --score-real`: the papers' split and n_fake of each dataset with finished runs, written once."""
    from ganbench import data
    from ganbench.metrics import refstats
    from ganbench.report import real

    monkeypatch.setattr(inception, "POOL_DIM", POOL)
    folder, _ = mixed
    extractor = Scaled(tmp_path / "channel-stats.pt", "c" * 64)
    asked: list[tuple[str, str]] = []

    def statistics(cfg: Any, used: Any, split: str = "", **_: Any) -> Any:
        asked.append((cfg.name, split))
        return reference(used, cfg.name, "unlabeled" if cfg.name == "stl10" else "train")

    monkeypatch.setattr(inception, "build_extractor", lambda *args, **kwargs: extractor)
    monkeypatch.setattr(refstats, "reference_statistics", statistics)
    monkeypatch.setattr(data, "load_dataset", lambda cfg: type("Split", (), {"tensor": reference_images()})())
    found = real.paper_datasets(folder)
    assert {name: n for name, (_, n) in found.items()} == {"cifar10": FULL, "stl10": FULL}
    assert found["cifar10"][0].data.name == "cifar10"  # a run on CIFAR-10 itself, not the JPEG copy
    results = tmp_path / "results"
    results.mkdir()
    lines = real.score_missing(results, found, "cpu")
    assert [line.split(":")[0] for line in lines] == ["cifar10", "stl10"] and all("written" in line for line in lines)
    assert sorted(path.name for path in (results / "reference").iterdir()) == [
        "cifar10-train.parquet",
        "stl10-unlabeled.parquet",
    ]
    assert all("already" in line for line in real.score_missing(results, found, "cpu"))
