"""`ganbench report` on run directories whose metrics.parquet rows were written by the evaluator itself.

Each run is made as the trainer makes one: recipe.toml and run.json through RunDir (the trainer's keys), then at
every in-training evaluation the rows `Evaluation.rows` gives for its generators, appended to metrics.parquet,
and a sample sheet. The networks are stand-ins: image generators whose output level is set per run and step,
scored through a small feature extractor (channel means), and 2-D generators that put their points on chosen
mixture modes, so modes covered and % high quality are known by hand. The report's cells are read from its CSV
and compared with the rows' numbers picked and averaged here with pandas and numpy.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from ganbench.data.synthetic import ring8_modes
from ganbench.errors import GanbenchError
from ganbench.evaluation import Evaluation
from ganbench.files import _UMASK
from ganbench.metrics import inception
from ganbench.metrics.inception import Extractor
from ganbench.metrics.refstats import RefStats, stats_key
from ganbench.recipe import DataConfig, EvalConfig, LossConfig, MethodConfig, ModelConfig, Recipe, TrainConfig
from ganbench.report import build_report
from ganbench.selection import selection_score
from ganbench.store import IN_TRAINING, RunDir
from ganbench.train.runinfo import environment

PAPER_GN_CIFAR10_CNN_FID = 19.31  # the PGN-GAN paper's table, standard CNN, GN-GAN: "19.31 ± .76"
POOL = 4  # channel-mean features: red, green, blue, mean square


class ChannelStats(Extractor):
    """Each image's mean red, green and blue in [0, 1] and its mean square. Logits: a steep score of each channel
    mean against 0.72, beside a constant class, so IS peaks where samples straddle 0.72, away from the reference's
    level: the best IS and the best FID fall at different evaluations."""

    name = "channel-stats"
    backend = "test"
    resize = "none"

    def __init__(self, weights: Path, weights_hash: str) -> None:
        super().__init__(str(weights), weights_hash, frozenset({"fid", "is", "kid", "pr"}), torch.device("cpu"))

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.double() / 255.0 if images.dtype == torch.uint8 else images.double()
        pool = torch.cat([x.mean(dim=(2, 3)), (x**2).mean(dim=(1, 2, 3))[:, None]], dim=1)
        return {"pool": pool, "logits": torch.cat([30.0 * (pool[:, :3] - 0.72), torch.zeros(len(pool), 1)], dim=1)}


class Level(nn.Module):
    """8 x 8 images of one colour per sample, tanh(level + z/2) per channel: the further `level` is from the
    reference's 0, the worse the FID."""

    def __init__(self, level: float) -> None:
        super().__init__()
        self.register_buffer("level", torch.tensor(float(level)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.level + 0.5 * z[:, :3])[:, :, None, None].expand(-1, -1, 8, 8)


class OnModes(nn.Module):
    """The first `far` share of a batch at the ring's centre (far from every mode), the rest cycling over the first
    `covered` ring8 modes: `covered` modes covered, 100 (1 − far) % high quality."""

    def __init__(self, covered: int, far: float) -> None:
        super().__init__()
        self.covered, self.far = covered, far

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        points = ring8_modes()[torch.arange(len(z)) % self.covered].clone()
        points[: round(self.far * len(z))] = 0.0
        return points


@dataclass
class Extraction:
    """The extractor and reference statistics one evaluation protocol uses."""

    extractor: ChannelStats
    ref: RefStats


def reference(extractor: ChannelStats, dataset: str, split: str) -> RefStats:
    """Statistics of 64 'real' images made by Level(0), under the key the real cache would give them."""
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(99))
    images = ((torch.tanh(0.5 * z)[:, :, None, None].expand(-1, -1, 8, 8) + 1) * 127.5).round().to(torch.uint8)
    features = extractor.features(images)["pool"].double().numpy()
    data_hash = f"{dataset}-{split}-data"
    return RefStats(
        mu=features.mean(axis=0),
        sigma=np.cov(features, rowvar=False),
        n=len(features),
        dataset=dataset,
        split=split,
        dataset_hash=data_hash,
        key=stats_key(data_hash, split, 8, extractor),
        size=8,
        source="made in the test",
        extractor=extractor.name,
        weights_hash=extractor.weights_hash,
        resize=extractor.resize,
        features=features.astype(np.float32),
    )


def paper_recipe(
    dataset: str, arch: str, method: str, seed: int = 0, cr: float = 0.0, select: str = "ema", **train: Any
) -> Recipe:
    family = "cnn" if arch.startswith("cnn") else "resnet"
    tag = f"{dataset}_{family}_{method}" + ("_cr" if cr else "")
    return Recipe(
        name=tag,
        seed=seed,
        data=DataConfig(name=dataset, split="unlabeled" if dataset == "stl10" else "train"),
        model=ModelConfig(arch=arch, z_dim=8),
        method=MethodConfig(name=method, cr_lambda=cr),
        loss=LossConfig(name="hinge"),
        train=TrainConfig(
            **{"steps": 3000, "batch_size_g": 64, "sample_every": 1000, "checkpoint_every": 1000, **train}
        ),
        eval=EvalConfig(every=1000, num_samples=40, batch_size=20, metrics=["fid", "is"], select=select),
    )


def quickstart(method: str, seed: int, steps: int = 1500, every: int = 500) -> Recipe:
    return Recipe(
        name="quickstart",
        seed=seed,
        data=DataConfig(name="ring8", num_samples=1000),
        model=ModelConfig(arch="mlp", z_dim=4, g_channels=16, d_channels=16),
        method=MethodConfig(name=method),
        train=TrainConfig(steps=steps, batch_size_g=400, ema_decay=0.0, sample_every=500, checkpoint_every=500),
        eval=EvalConfig(every=every, num_samples=400, batch_size=400),
    )


def train_run(
    root: Path,
    recipe: Recipe,
    generators_at: dict[int, dict[str, nn.Module]],
    extraction: Extraction | None = None,
    status: str = "finished",
) -> RunDir:
    """A run directory as Trainer.run leaves it, with the evaluator's in-training rows at each step given."""
    run = RunDir(root)
    root.mkdir(parents=True)
    run.write_recipe(recipe)
    run.write_run(
        {
            "name": recipe.name,
            "recipe_hash": recipe.hash(),
            "status": "running",
            "step": 0,
            "steps": recipe.train.steps,
            "created": "2026-01-01T00:00:00+0000",
            "environment": environment(),
            "dataset": {"name": recipe.data.name, "split": recipe.data.split, "content_hash": "0" * 16, "source": ""},
            "device": "cpu",
        }
    )
    extra = {} if extraction is None else {"extractor": extraction.extractor, "ref": extraction.ref}
    evaluation = Evaluation(recipe, "cpu", **extra)
    best: dict[str, Any] = {}
    run.samples_dir.mkdir()
    for step, generators in generators_at.items():
        rows: list[dict[str, Any]] = []
        for kind, generator in generators.items():
            rows += evaluation.rows(generator, step=step, checkpoint=IN_TRAINING, generator_kind=kind)
        run.append_metrics(rows)
        scored = selection_score(rows, recipe.eval.select if recipe.train.ema_decay > 0 else "raw")
        if scored is not None and (not best or scored[0] < best["score"]):
            best = {"score": scored[0], "step": step, "metric": scored[1], "generator": recipe.eval.select}
        shade = np.full((16, 16, 3), (37 * step) % 256, np.uint8)
        Image.fromarray(shade).save(run.sample_path(step))
        run.update_run(step=step, best=best)
    run.update_run(status=status, step=max(generators_at), best=best)
    return run


def image_steps(ema_levels: list[float], raw_offset: float = 0.3) -> dict[int, dict[str, nn.Module]]:
    """EMA and raw generators at steps 1000, 2000, ...; the raw G is `raw_offset` further from the reference."""
    return {
        1000 * (i + 1): {"raw": Level(level + raw_offset), "ema": Level(level)} for i, level in enumerate(ema_levels)
    }


def point_steps(every: int, states: list[tuple[int, float]]) -> dict[int, dict[str, nn.Module]]:
    return {every * (i + 1): {"raw": OnModes(covered, far)} for i, (covered, far) in enumerate(states)}


def build_results(root: Path) -> tuple[Path, Path]:
    """A results folder of every kind of cell, and the folder of paper recipes it is compared with."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception, "POOL_DIM", POOL)  # the evaluator's check of the features' width
        return _build_results(root)


def _build_results(root: Path) -> tuple[Path, Path]:
    results, recipes = root / "results", root / "recipes"
    recipes.mkdir(parents=True)
    for recipe in (
        paper_recipe("cifar10", "cnn32", "gn"),
        paper_recipe("cifar10", "cnn32", "sn"),
        paper_recipe("stl10", "resnet48", "pgn", cr=5.0),
    ):
        (recipes / f"{recipe.name}.toml").write_text(recipe.to_toml())
    weights = root / "weights" / "channel-stats.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"stand-in weights")  # a real file: rows record its name only, never this folder
    ours = ChannelStats(weights, "c" * 64)
    other = ChannelStats(weights, "d" * 64)  # other Inception weights: another evaluation protocol
    cifar = Extraction(ours, reference(ours, "cifar10", "train"))

    # CIFAR-10, standard CNN, under the paper recipe. GN over seeds 0 and 1; best EMA FID at 2000 and 3000.
    train_run(
        results / "cifar10/gn/seed-0", paper_recipe("cifar10", "cnn32", "gn", 0), image_steps([0.8, 0.1, 0.4]), cifar
    )
    train_run(
        results / "cifar10/gn/seed-1", paper_recipe("cifar10", "cnn32", "gn", 1), image_steps([0.6, 0.5, 0.2]), cifar
    )
    # GN seed 2, trained the same way but scored with other weights: its own cell, never averaged in.
    other_cifar = Extraction(other, reference(other, "cifar10", "train"))
    train_run(
        results / "cifar10/gn/seed-2",
        paper_recipe("cifar10", "cnn32", "gn", 2),
        image_steps([0.3, 0.35, 0.7]),
        other_cifar,
    )
    # A shorter GN run: another training protocol, its own row and footnote.
    short = paper_recipe("cifar10", "cnn32", "gn", 3, steps=2000)
    train_run(results / "cifar10/gn-short/seed-3", short, image_steps([0.9, 0.45]), cifar)
    # GN still running: only in the table of all runs.
    train_run(
        results / "cifar10/gn/seed-4",
        paper_recipe("cifar10", "cnn32", "gn", 4),
        image_steps([0.7]),
        cifar,
        "interrupted",
    )
    # SN, whose protocol selects the raw generator (as the official code does for CIFAR-10).
    sn = paper_recipe("cifar10", "cnn32", "sn", 0, select="raw")
    train_run(results / "cifar10/sn/seed-0", sn, image_steps([0.5, 0.25, 0.3], raw_offset=-0.1), cifar)

    # STL-10 ResNet PGN-CR against train statistics with 40 samples: not the papers' protocol (unlabeled, 50k).
    stl = Extraction(ours, reference(ours, "stl10", "train"))
    train_run(
        results / "stl10/pgn-cr/seed-0",
        paper_recipe("stl10", "resnet48", "pgn", 0, cr=5.0),
        image_steps([0.6, 0.3]),
        stl,
    )

    # The quickstart on ring8 (no EMA): GN over two seeds, SN over one (its second diverged), a longer GN run.
    # (modes covered, share of samples far from every mode) at each evaluation:
    train_run(results / "quick/gn/seed-0", quickstart("gn", 0), point_steps(500, [(6, 0.3), (8, 0.2), (8, 0.1)]))
    train_run(results / "quick/gn/seed-1", quickstart("gn", 1), point_steps(500, [(7, 0.25), (8, 0.15), (7, 0.05)]))
    train_run(results / "quick/sn/seed-0", quickstart("sn", 0), point_steps(500, [(5, 0.4), (6, 0.3), (7, 0.28)]))
    train_run(results / "quick/sn/seed-1", quickstart("sn", 1), point_steps(500, [(5, 0.39)]), status="diverged")
    long = quickstart("gn", 0, steps=3000, every=1500)
    train_run(results / "quick-long/gn/seed-0", long, point_steps(1500, [(8, 0.12), (8, 0.09)]))

    # Damaged results: metrics.parquet that is not Parquet, a run of another schema, an empty folder.
    broken = train_run(results / "damaged/parquet", quickstart("gn", 7), point_steps(500, [(8, 0.1)]))
    broken.metrics_path.write_bytes(b"not a parquet file")
    (results / "damaged" / "old-schema").mkdir(parents=True)
    (results / "damaged" / "old-schema" / "run.json").write_text(
        json.dumps({"schema_version": 0, "status": "finished"})
    )
    (results / "empty").mkdir()
    return results, recipes


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_results(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def cells(results: tuple[Path, Path]) -> list[dict[str, str]]:
    folder, recipes = results
    text, _ = build_report(folder, "csv", None, recipe_dirs=[recipes])
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def markdown(results: tuple[Path, Path]) -> str:
    folder, recipes = results
    return build_report(folder, "markdown", None, recipe_dirs=[recipes], figures=False)[0]


def find(cells: list[dict[str, str]], **where: str) -> list[dict[str, str]]:
    return [cell for cell in cells if all(cell[key] == value for key, value in where.items())]


def markdown_rows(text: str, title: str) -> list[list[str]]:
    """The body rows of the GFM table under `## title`, cells stripped (block heading rows included)."""
    lines = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    table = [line for line in lines if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in table[2:]]


def appendix(text: str) -> dict[str, str]:
    """The markdown appendix: evaluation names (E1, ...) and cell protocol ids -> their text."""
    part = text.split("## Appendix: protocols\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^- \*\*([^*]+)\*\*: (.*)$", part, flags=re.MULTILINE))


def protocol_text(text: str, protocol_id: str) -> str:
    """A cell protocol's appendix entry followed by the entry of its evaluation."""
    entries = appendix(text)
    cell = entries[protocol_id]
    evaluation = re.match(r"Evaluation (E\d+)\.", cell)
    assert evaluation is not None, cell
    return cell + " " + entries[evaluation.group(1)]


def reported(folder: Path, generator: str) -> dict[str, float]:
    """What a run reports, picked here from its metrics.parquet: among `generator`'s in-training rows, the
    evaluation with the lowest FID, every metric at that step."""
    rows = pd.read_parquet(folder / "metrics.parquet")
    rows = rows[(rows["generator"] == generator) & (rows["checkpoint"] == "in-training")]
    fid = rows[rows["metric"] == "fid"].set_index("step")["value"]
    best = rows[rows["step"] == fid.idxmin()]
    return dict(zip(best["metric"], best["value"], strict=True))


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1))


GN_OTHER = {"table": "cifar10-other", "arch": "cnn", "method": "gn", "cr": "", "dataset": "cifar10"}


def test_seeds_of_one_protocol_average_to_the_rows_best_fid_and_is_at_that_step(
    results: tuple[Path, Path], cells: list[dict[str, str]]
) -> None:
    """40 samples and the EMA G: not the papers' protocol, so the cell is in the other-protocols table, no Δ."""
    folder, _ = results
    seeds = [reported(folder / f"cifar10/gn/seed-{seed}", "ema") for seed in (0, 1)]
    (fid,) = find(cells, **GN_OTHER, metric="fid", seeds="0 1")
    mean, std = mean_std([s["fid"] for s in seeds])
    assert float(fid["mean"]) == pytest.approx(mean, rel=1e-9)
    assert float(fid["std"]) == pytest.approx(std, rel=1e-9)
    assert fid["n"] == "2" and fid["comparable"] == "false"
    assert fid["paper_mean"] == fid["delta"] == ""
    (inception_score,) = find(cells, **GN_OTHER, metric="is_mean", seeds="0 1")
    mean, std = mean_std([s["is_mean"] for s in seeds])
    assert float(inception_score["mean"]) == pytest.approx(mean, rel=1e-9)
    assert float(inception_score["std"]) == pytest.approx(std, rel=1e-9)
    assert inception_score["protocol_id"] == fid["protocol_id"]
    # The paper table still prints the paper's number in GN-GAN's row, with no number of ours beside it.
    (paper,) = find(cells, table="cifar10", arch="cnn", method="gn", cr="", metric="fid")
    assert float(paper["paper_mean"]) == PAPER_GN_CIFAR10_CNN_FID and paper["mean"] == paper["delta"] == ""


def test_the_picks_differ_from_other_plausible_picks(results: tuple[Path, Path]) -> None:
    """The fixture is built so that a wrong pick gives another number: for GN seed 0 the last evaluation, the raw
    G's best FID and the best IS each lie elsewhere than the EMA G's best FID."""
    folder, _ = results
    rows = pd.read_parquet(folder / "cifar10/gn/seed-0" / "metrics.parquet")
    ema, raw = rows[rows["generator"] == "ema"], rows[rows["generator"] == "raw"]
    fid = ema[ema["metric"] == "fid"].set_index("step")["value"]
    inception_score = ema[ema["metric"] == "is_mean"].set_index("step")["value"]
    assert fid.idxmin() == 2000
    assert fid.index.max() == 3000
    assert inception_score.idxmax() == 3000
    assert raw[raw["metric"] == "fid"]["value"].min() > fid.min()


def test_the_recipes_selected_generator_is_reported(
    results: tuple[Path, Path], cells: list[dict[str, str]], markdown: str
) -> None:
    folder, _ = results
    (fid,) = find(cells, table="cifar10-other", method="sn", metric="fid")
    expected = reported(folder / "cifar10/sn/seed-0", "raw")  # SN's recipe selects the raw G
    assert float(fid["mean"]) == pytest.approx(expected["fid"], rel=1e-9)
    assert expected["fid"] != pytest.approx(reported(folder / "cifar10/sn/seed-0", "ema")["fid"])
    assert "Raw generator" in protocol_text(markdown, fid["protocol_id"])
    (runs_row,) = [row for row in markdown_rows(markdown, "All runs") if row[0] == "cifar10/sn/seed-0"]
    assert runs_row[6] == "2000 (raw, in-training)"


def test_another_evaluation_protocol_is_its_own_cell(
    cells: list[dict[str, str]], results: tuple[Path, Path], markdown: str
) -> None:
    folder, _ = results
    gn_fid = find(cells, **GN_OTHER, metric="fid")
    by_seeds = {cell["seeds"]: cell for cell in gn_fid}
    assert set(by_seeds) == {"0 1", "2", "3"}  # seed 4 is still running: not in the paper tables
    other = by_seeds["2"]
    assert other["n"] == "1" and other["std"] == ""
    assert float(other["mean"]) == pytest.approx(reported(folder / "cifar10/gn/seed-2", "ema")["fid"], rel=1e-9)
    assert len({cell["protocol_id"] for cell in gn_fid}) == 3
    assert "weights " + "d" * 64 in protocol_text(markdown, other["protocol_id"])
    assert "weights " + "c" * 64 in protocol_text(markdown, by_seeds["0 1"]["protocol_id"])
    assert "training as the paper recipe" in protocol_text(markdown, other["protocol_id"]).lower()
    short = protocol_text(markdown, by_seeds["3"]["protocol_id"])
    assert "train.steps = 2000 (paper recipe: 3000)" in short
    assert float(by_seeds["3"]["mean"]) == pytest.approx(reported(folder / "cifar10/gn-short/seed-3", "ema")["fid"])


def test_footnotes_name_where_a_cell_differs_from_the_papers_and_the_appendix_every_field(
    cells: list[dict[str, str]], markdown: str
) -> None:
    (gn,) = find(cells, **GN_OTHER, metric="fid", seeds="0 1")
    rows = markdown_rows(markdown, "CIFAR-10, unconditional generation: other protocols")
    letter = next(row[1] for row in rows if row[0] == "GN-GAN" and row[2] == "0, 1")
    notes = markdown.split("## CIFAR-10, unconditional generation: other protocols", 1)[1].split("\n## ", 1)[0]
    (footnote,) = [line for line in notes.splitlines() if line.startswith(f"- <sup>{letter}</sup>")]
    assert "n\\_fake 40 (paper: 50000)" in footnote and "EMA generator (paper: raw)" in footnote
    assert gn["protocol_id"] in footnote
    detail = protocol_text(markdown, gn["protocol_id"])
    for words in (
        "n\\_fake 40",
        "n\\_real 64",
        "reference cifar10 train",
        "extractor channel-stats",
        "resize none",
        "quantized yes",
        f"sample seed {2**31 - 1}",
        'settings {"splits": 10}',  # IS's settings, beside FID's
        "EMA generator (decay 0.9999)",
    ):
        assert words in detail, words
    (stl,) = find(cells, table="stl10-other", arch="resnet", method="pgn", cr="cr", metric="fid")
    rows = markdown_rows(markdown, "STL-10, unconditional generation: other protocols")
    assert [row[0] for row in rows if row[1]] == ["PGN-GAN-CR"]
    assert "reference split train (paper: unlabeled)" in markdown.split("## STL-10, unconditional generation: other")[1]
    assert "training as the paper recipe" in protocol_text(markdown, stl["protocol_id"]).lower()


def test_2d_cells_are_the_hand_known_modes_and_quality(cells: list[dict[str, str]], markdown: str) -> None:
    # GN seed 0 reports 1500 (8 modes, 90 %), seed 1 reports 1000 (8 modes, 85 %): most modes, then most HQ.
    gn = {cell["metric"]: cell for cell in find(cells, table="generic-quickstart", method="gn", n="2")}
    assert float(gn["modes_covered"]["mean"]) == 8.0 and float(gn["modes_covered"]["std"]) == 0.0
    assert float(gn["hq_percent"]["mean"]) == pytest.approx(87.5)
    assert float(gn["hq_percent"]["std"]) == pytest.approx(5 / math.sqrt(2))
    assert gn["hq_percent"]["dataset"] == "ring8" and gn["hq_percent"]["arch"] == "mlp"
    # SN: seed 0 only (seed 1 diverged): 7 modes, 72 % at 1500.
    sn = {cell["metric"]: cell for cell in find(cells, table="generic-quickstart", method="sn")}
    assert (float(sn["modes_covered"]["mean"]), float(sn["hq_percent"]["mean"])) == (7.0, 72.0)
    assert sn["hq_percent"]["n"] == "1" and sn["hq_percent"]["seeds"] == "0"
    # The longer GN run: 8 modes, 91 % at 3000, a row of its own marked with its training difference.
    (long,) = find(cells, table="generic-quickstart", method="gn", metric="hq_percent", n="1")
    assert float(long["mean"]) == 91.0 and long["protocol_id"] != gn["hq_percent"]["protocol_id"]
    assert "train.steps = 3000" in protocol_text(markdown, long["protocol_id"])
    assert "Raw generator (no EMA in this recipe)" in protocol_text(markdown, long["protocol_id"])


def test_the_table_of_all_runs_lists_each_run_once(results: tuple[Path, Path], markdown: str) -> None:
    rows = {row[0]: row for row in markdown_rows(markdown, "All runs")}
    assert set(rows) == {
        "cifar10/gn/seed-0",
        "cifar10/gn/seed-1",
        "cifar10/gn/seed-2",
        "cifar10/gn/seed-4",
        "cifar10/gn-short/seed-3",
        "cifar10/sn/seed-0",
        "stl10/pgn-cr/seed-0",
        "quick/gn/seed-0",
        "quick/gn/seed-1",
        "quick/sn/seed-0",
        "quick/sn/seed-1",
        "quick-long/gn/seed-0",
        "damaged/parquet",
    }
    folder, _ = results
    running = rows["cifar10/gn/seed-4"]
    assert running[4:6] == ["interrupted", "1000/3000"]
    assert running[-2] == f"{reported(folder / 'cifar10/gn/seed-4', 'ema')['fid']:.2f}"  # FID, then IS
    assert rows["damaged/parquet"][4] == "finished" and rows["damaged/parquet"][-1] == "–"


def test_markdown_and_latex_show_the_same_numbers(results: tuple[Path, Path]) -> None:
    folder, recipes = results
    seeds = [reported(folder / f"cifar10/gn/seed-{seed}", "ema")["fid"] for seed in (0, 1)]
    mean, std = mean_std(seeds)
    markdown, _ = build_report(folder, "markdown", None, recipe_dirs=[recipes])
    latex, _ = build_report(folder, "latex", None, recipe_dirs=[recipes])
    assert f"| {mean:.2f} ± {std:.2f} (n=2) |" in markdown
    assert f"{mean:.2f} $\\pm$ {std:.2f} (n=2)" in latex


def test_warnings_name_each_problem_and_no_machine_detail_is_shown(results: tuple[Path, Path]) -> None:
    folder, recipes = results
    rows = pd.read_parquet(folder / "cifar10/gn/seed-0" / "metrics.parquet")
    assert set(rows["weights"]) == {"channel-stats.pt"} and set(rows["device"]) == {"cpu"}
    for fmt in ("markdown", "latex", "csv", "html"):
        text, warnings = build_report(folder, fmt, None, recipe_dirs=[recipes], figures=False)
        assert len(warnings) == 2, warnings
        assert any("damaged/parquet" in w and "unreadable Parquet" in w for w in warnings)
        assert any("damaged/old-schema" in w and "schema 0" in w for w in warnings)
        assert str(folder.parent) not in text  # no machine paths: the weights file's folder, the results folder
        assert not any(time in text for time in rows["time"])


def test_a_run_without_metrics_is_listed_with_a_warning(tmp_path: Path, results: tuple[Path, Path]) -> None:
    folder, recipes = results
    shutil.copytree(folder / "quick", tmp_path / "quick")
    (tmp_path / "quick" / "gn" / "seed-1" / "metrics.parquet").unlink()
    text, warnings = build_report(tmp_path, "markdown", None, recipe_dirs=[recipes])
    (warning,) = warnings
    assert warning.startswith("quick/gn/seed-1: no metrics.parquet (finished at step 1500/1500)")
    assert "ganbench eval quick/gn/seed-1" in warning
    assert [row[-2:] for row in markdown_rows(text, "All runs") if row[0] == "quick/gn/seed-1"] == [["–", "–"]]


def test_markdown_embeds_figures_that_exist(results: tuple[Path, Path], tmp_path: Path) -> None:
    folder, recipes = results
    output = tmp_path / "report.md"  # the HTML page's figures: tests/test_report_html.py
    text, warnings = build_report(folder, "markdown", output, recipe_dirs=[recipes])
    assert output.read_text() == text
    assert not any("figure not drawn" in w for w in warnings)
    images = sorted((tmp_path / "report_plots").glob("*.png"))
    assert {image.name for image in images} == {
        "generic-quickstart-curves.png",
        "generic-quickstart-samples.png",
        "cifar10-curves.png",
        "cifar10-cifar10-cnn-samples.png",
        "stl10-curves.png",
        "stl10-stl10-resnet-samples.png",
    }
    for image in images:
        assert f"report_plots/{image.name}" in text
        assert Image.open(image).size[0] > 200


def test_a_missing_or_empty_results_folder_is_refused_and_never_overwrites(tmp_path: Path) -> None:
    good = tmp_path / "good.tex"
    good.write_text("a table worth keeping")
    for folder in (tmp_path / "absent", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(GanbenchError, match=f"--results {folder}: no") as caught:
            build_report(folder, "latex", good)
        assert "\n" not in str(caught.value) and caught.value.exit_code == 2
    assert good.read_text() == "a table worth keeping"


def test_report_files_keep_the_users_umask(tmp_path: Path, results: tuple[Path, Path]) -> None:
    folder, recipes = results
    out = tmp_path / "report.csv"
    build_report(folder, "csv", out, recipe_dirs=[recipes])
    assert out.stat().st_mode & 0o777 == 0o666 & ~_UMASK  # not mkstemp's 0600


def test_user_text_is_literal_in_markdown(tmp_path: Path, results: tuple[Path, Path]) -> None:
    """A run named like HTML or markdown must print as typed in GFM: escaped, never read as a tag or emphasis."""
    folder, recipes = results
    shutil.copytree(folder / "quick", tmp_path / "results" / "quick")
    run = RunDir(tmp_path / "results" / "quick" / "gn" / "seed-0")
    tree = run.recipe_path.read_text().replace('name = "quickstart"', 'name = "<cifar10>_*cnn*_[gn](x)"')
    run.recipe_path.write_text(tree)
    text, _ = build_report(tmp_path / "results", "markdown", None, recipe_dirs=[recipes])
    assert "&lt;cifar10&gt;\\_\\*cnn\\*\\_\\[gn\\](x)" in text
    assert "<cifar10>" not in text
    # Every "<" left is one of the renderer's own superscript tags.
    assert re.findall(r"<(?!/?sup>)", text) == []


def test_only_one_folder_of_runs(tmp_path: Path, results: tuple[Path, Path]) -> None:
    """A results folder holding only the quickstart: its table and the table of all runs, nothing else."""
    folder, recipes = results
    shutil.copytree(folder / "quick", tmp_path / "quick")
    text, warnings = build_report(tmp_path, "csv", None, recipe_dirs=[recipes])
    assert not warnings
    assert {cell["table"] for cell in csv.DictReader(io.StringIO(text))} == {"generic-quickstart"}
    markdown, _ = build_report(tmp_path, "markdown", None, recipe_dirs=[recipes])
    assert re.findall(r"^## (.*)$", markdown, flags=re.MULTILINE) == [
        "quickstart: methods over seeds",
        "All runs",
        "Appendix: protocols",
    ]
