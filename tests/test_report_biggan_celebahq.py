"""The conditional BigGAN table (CIFAR-10) and the CelebA-HQ 128/256 table, on a results tree whose metrics rows the
evaluator itself wrote (`Evaluation.rows`, with the stand-in generators and channel-mean extractor of
tests/test_report_render.py), under the papers' protocols and beside them.

The tree (each paper-protocol run's recipe is also its row's paper recipe):

- CIFAR-10, conditional BigGAN-32 (model.num_classes = 10, so the evaluator samples G(z, y) with uniform labels;
  the raw G, 50k samples against train statistics, as the GN-GAN code):
  SN, GN seeds 0-1, GN-CR, PGN; an unconditional GN on the standard CNN; a conditional standard-CNN GN and an
  unconditional BigGAN-32 GN (neither belongs to a paper table);
- CelebA-HQ 128 (3k samples against the 3k test images, the EMA G, whose FID here is worse than the raw G's at every
  step): PGN seeds 0-1, GN, SN, GraN; GN with 1k samples; PGN against all 30k images;
- CelebA-HQ 256 (10k samples against 30k images): PGN, GN; SN selecting the raw G.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ganbench.metrics import inception
from ganbench.metrics.refstats import RefStats, stats_key
from ganbench.recipe import DataConfig, EvalConfig, LossConfig, MethodConfig, ModelConfig, Recipe, TrainConfig
from ganbench.report import build_report, papers
from ganbench.report.real import paper_datasets
from ganbench.store import RunDir
from tests.test_report_protocols import Scaled, best, section, table_rows
from tests.test_report_render import POOL, Extraction, Level, train_run

PAPER = papers.load()
BIGGAN = "CIFAR-10, conditional (BigGAN)"
CIFAR = "CIFAR-10, unconditional generation"
CELEBA, CELEBA_OTHER = "CelebA-HQ", "CelebA-HQ: other protocols"
RESOLUTION = {"celebahq128": (3000, 3000), "celebahq256": (10000, 30000)}  # the papers' n_fake and n_real


def images(n: int) -> torch.Tensor:
    """n 8 x 8 'real' images of one colour each, tanh(z/2) per channel: what Level(0) generates."""
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(99))
    return ((torch.tanh(0.5 * z)[:, :, None, None].expand(-1, -1, 8, 8) + 1) * 127.5).round().to(torch.uint8)


def reference_of(extractor: Scaled, dataset: str, split: str, n: int) -> RefStats:
    """Statistics of n real images, under the key the real cache would give them."""
    features = extractor.features(images(n))["pool"].double().numpy()
    data_hash = f"{dataset}-{split}-{n}"
    return RefStats(
        mu=features.mean(axis=0),
        sigma=np.cov(features, rowvar=False),
        n=n,
        dataset=dataset,
        split=split,
        dataset_hash=data_hash,
        key=stats_key(data_hash, split, 8, extractor),
        size=8,
        source="made in the test",
        extractor=extractor.name,
        weights_hash=extractor.weights_hash,
        resize=extractor.resize,
    )


def recipe(
    name: str,
    arch: str,
    method: str,
    seed: int,
    samples: int,
    select: str,
    cr: float = 0.0,
    classes: int = 0,
    data: tuple[str, str] = ("cifar10", "train"),
) -> Recipe:
    """A paper recipe of the test (the evaluation reads its eval, train and model.num_classes; the rest is compared
    with the paper recipe of the row)."""
    return Recipe(
        name=name,
        seed=seed,
        data=DataConfig(name=data[0], split=data[1]),
        model=ModelConfig(arch=arch, z_dim=8, num_classes=classes),
        method=MethodConfig(name=method, cr_lambda=cr),
        loss=LossConfig(name="hinge"),
        train=TrainConfig(steps=3000, batch_size_g=1000, sample_every=1000, checkpoint_every=1000),
        eval=EvalConfig(every=1000, num_samples=samples, batch_size=1000, metrics=["fid", "is"], select=select),
    )


class ClassLevel(Level):
    """Level, class-conditional: G(z, y) shifts each class's colour a little (the evaluator passes labels)."""

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        assert y is not None, "a conditional recipe's evaluation samples with labels"
        return super().forward(z + 0.02 * y[:, None].to(z.dtype))


def run(
    results: Path,
    recipes: Path,
    where: str,
    made: Recipe,
    steps: dict[int, dict[str, nn.Module]],
    extraction: Extraction,
) -> RunDir:
    """A finished run with the evaluator's rows; its recipe is also its row's paper recipe (first come)."""
    paper = recipes / f"{made.name}.toml"
    if not paper.exists():
        paper.write_text(made.to_toml())
    return train_run(results / where, made, steps, extraction)


def raw_and_ema(*ema: float, raw_offset: float = -0.1) -> dict[int, dict[str, nn.Module]]:
    """Raw and EMA generators at steps 1000, 2000, ...; the raw G nearer the reference (a better FID than EMA's)."""
    return {1000 * (i + 1): {"raw": Level(level + raw_offset), "ema": Level(level)} for i, level in enumerate(ema)}


def raw(*levels: float, kind: type[Level] = Level) -> dict[int, dict[str, nn.Module]]:
    return {1000 * (i + 1): {"raw": kind(level)} for i, level in enumerate(levels)}


def build(root: Path) -> tuple[Path, Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception, "POOL_DIM", POOL)
        return _build(root)


def _build(root: Path) -> tuple[Path, Path]:
    results, recipes = root / "results", root / "recipes"
    recipes.mkdir(parents=True)
    weights = root / "weights" / "channel-stats.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"stand-in weights")
    extractor = Scaled(weights, "c" * 64)
    cifar = Extraction(extractor, reference_of(extractor, "cifar10", "train", 64))

    # CIFAR-10, conditional BigGAN-32, the paper protocol (raw G, as the official code for CIFAR-10).
    for method, seed, cr, levels in (
        ("sn", 0, 0.0, (0.5, 0.3, 0.35)),
        ("gn", 0, 0.0, (0.4, 0.2, 0.25)),
        ("gn", 1, 0.0, (0.35, 0.15, 0.3)),
        ("gn", 0, 5.0, (0.3, 0.12, 0.2)),
        ("pgn", 0, 0.0, (0.45, 0.18, 0.22)),
    ):
        name = f"cifar10_biggan_{method}" + ("_cr" if cr else "")
        made = recipe(name, "biggan32", method, seed, 50000, "raw", cr, classes=10)
        run(results, recipes, f"biggan/{name}/seed-{seed}", made, raw(*levels, kind=ClassLevel), cifar)
    # CIFAR-10 unconditional, standard CNN: the paper table of unconditional generation.
    uncond = recipe("cifar10_cnn_gn", "cnn32", "gn", 0, 50000, "raw")
    run(results, recipes, "cifar10/cnn-gn/seed-0", uncond, raw(0.6, 0.33, 0.4), cifar)
    # A conditional standard CNN and an unconditional BigGAN: no paper table holds either.
    cond_cnn = recipe("cifar10_cnn_gn_conditional", "cnn32", "gn", 0, 50000, "raw", classes=10)
    train_run(results / "cifar10/cnn-gn-conditional/seed-0", cond_cnn, raw(0.7, 0.9, kind=ClassLevel), cifar)
    plain = recipe("cifar10_biggan_gn_unconditional", "biggan32", "gn", 0, 50000, "raw")
    train_run(results / "cifar10/biggan-unconditional/seed-0", plain, raw(0.8, 0.75), cifar)

    # CelebA-HQ: 128 px trains on images 1-27,000 and compares with the last 3,000; 256 px trains on and compares
    # with all 30,000.
    refs = {
        (dataset, n_real): Extraction(extractor, reference_of(extractor, dataset, split, n_real))
        for dataset, split, n_real in (
            ("celebahq128", "test", 3000),
            ("celebahq128", "all", 30000),
            ("celebahq256", "all", 30000),
        )
    }

    def celeba(
        dataset: str, method: str, seed: int, levels: tuple[float, ...], samples: int = 0, n_real: int = 0, **kw: Any
    ) -> None:
        n_fake, paper_real = RESOLUTION[dataset]
        name = f"{dataset}_resnet_{method}"
        split = "train" if dataset == "celebahq128" else "all"
        made = recipe(
            name, f"resnet{dataset[-3:]}", method, seed, n_fake, kw.get("select", "ema"), data=(dataset, split)
        )
        if not (samples or n_real or kw):  # the paper recipe is written by the first run under the paper protocol
            where = f"{dataset}/{method}/seed-{seed}"
            run(results, recipes, where, made, raw_and_ema(*levels), refs[dataset, paper_real])
            return
        changed = dataclasses.replace(made, eval=dataclasses.replace(made.eval, num_samples=samples or n_fake))
        extraction = refs[dataset, n_real or paper_real]
        tag = "-".join(f"{k}{v}" for k, v in (("n", samples), ("real", n_real), *kw.items()) if v)
        train_run(results / f"{dataset}/{method}-{tag}/seed-{seed}", changed, raw_and_ema(*levels), extraction)

    celeba("celebahq128", "pgn", 0, (0.3, 0.12, 0.2))
    celeba("celebahq128", "pgn", 1, (0.25, 0.14, 0.18))
    celeba("celebahq128", "gn", 0, (0.35, 0.16, 0.25))
    celeba("celebahq128", "sn", 0, (0.5, 0.3, 0.35))
    celeba("celebahq128", "gran", 0, (0.4, 0.2, 0.22))
    celeba("celebahq128", "gn", 0, (0.34, 0.17, 0.26), samples=1000)
    celeba("celebahq128", "pgn", 0, (0.3, 0.13, 0.2), n_real=30000)
    celeba("celebahq256", "pgn", 0, (0.2, 0.08, 0.1))
    celeba("celebahq256", "gn", 0, (0.25, 0.1, 0.15))
    celeba("celebahq256", "sn", 0, (0.45, 0.25, 0.3))  # writes the SN paper recipe (EMA G)
    celeba("celebahq256", "sn", 1, (0.45, 0.25, 0.3), select="raw")
    return results, recipes


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build(tmp_path_factory.mktemp("biggan-celebahq"))


@pytest.fixture(scope="module")
def cells(tree: tuple[Path, Path]) -> list[dict[str, str]]:
    folder, recipes = tree
    return list(csv.DictReader(io.StringIO(build_report(folder, "csv", None, recipe_dirs=[recipes])[0])))


@pytest.fixture(scope="module")
def markdown(tree: tuple[Path, Path]) -> str:
    folder, recipes = tree
    return build_report(folder, "markdown", None, recipe_dirs=[recipes], figures=False)[0]


def find(cells: list[dict[str, str]], **where: str) -> list[dict[str, str]]:
    return [cell for cell in cells if all(cell[key] == value for key, value in where.items())]


# ----------------------------------------------------------------------------------------------------
# CIFAR-10, conditional BigGAN.


def test_conditional_runs_fill_the_biggan_table_and_no_unconditional_one(
    tree: tuple[Path, Path], cells: list[dict[str, str]]
) -> None:
    folder, _ = tree
    for method, cr, seeds in (("sn", "", 1), ("gn", "", 2), ("gn", "cr", 1), ("pgn", "", 1)):
        name = f"cifar10_biggan_{method}" + ("_cr" if cr else "")
        picks = [best(folder / f"biggan/{name}/seed-{seed}") for seed in range(seeds)]
        for metric in ("fid", "is_mean"):
            (cell,) = find(cells, table="biggan", method=method, cr=cr, metric=metric)
            assert (cell["dataset"], cell["arch"], cell["comparable"], cell["n"]) == (
                "cifar10",
                "biggan",
                "true",
                str(seeds),
            )
            assert float(cell["mean"]) == pytest.approx(np.mean([p[metric] for p in picks]), rel=1e-9)
            assert cell["paper_mean"] == "" and cell["delta"] == ""  # no paper value transcribed: no Δ
    # The unconditional CIFAR-10 table holds the unconditional run alone, and its own table nothing conditional.
    (gn,) = find(cells, table="cifar10", arch="cnn", method="gn", cr="", metric="fid")
    assert (gn["n"], float(gn["mean"])) == ("1", pytest.approx(best(folder / "cifar10/cnn-gn/seed-0")["fid"], rel=1e-9))
    assert not find(cells, table="cifar10-other")
    assert {c["arch"] for c in find(cells, table="cifar10") if c["mean"]} == {"cnn"}
    assert {c["arch"] for c in find(cells, table="biggan")} == {"biggan"}
    assert not find(cells, table="biggan-other")  # the unconditional BigGAN-32 is not a conditional cell
    # Neither the conditional CNN nor the unconditional BigGAN stand in a paper table: each has its own summary.
    tables = {c["table"] for c in cells}
    assert {"generic-cifar10_cnn_gn_conditional", "generic-cifar10_biggan_gn_unconditional"} <= tables
    shown = {round(float(c["mean"]), 9) for c in cells if c["table"] in ("cifar10", "biggan") and c["mean"]}
    for where in ("cifar10/cnn-gn-conditional/seed-0", "cifar10/biggan-unconditional/seed-0"):
        assert round(best(folder / where)["fid"], 9) not in shown


def test_the_biggan_table_lists_the_recipes_rows_and_says_the_paper_column_is_empty(markdown: str) -> None:
    titles = re.findall(r"^## (.*)$", markdown, flags=re.MULTILINE)
    assert titles.index(CIFAR) < titles.index(BIGGAN) < titles.index(CELEBA)  # unconditional, conditional, CelebA-HQ
    head = next(line for line in section(markdown, BIGGAN).splitlines() if line.startswith("|"))
    assert head == "| Method | IS ours | paper | Δ | FID ours | paper | Δ |"
    rows = table_rows(markdown, BIGGAN)
    assert [row[0] for row in rows] == [
        "*BigGAN*",
        "SN-GAN",
        "SN-GAN-CR",
        "GN-GAN",
        "GN-GAN-CR",
        "PGN-GAN",
        "PGN-GAN-CR",
        "GraN-GAN",
        "GraN-GAN-CR",
    ]
    assert all(row[2] == row[5] == "–" for row in rows[1:])  # the paper's cells: none transcribed
    text = section(markdown, BIGGAN)
    assert "Paper values not transcribed" in text and "Paper values as printed in" not in text
    assert "Paper: 50k samples against CIFAR-10 train (50k) statistics" in text
    assert "raw generator" in next(line for line in text.splitlines() if line.startswith("Protocol: "))


def test_tables_biggan_is_a_choice(tree: tuple[Path, Path]) -> None:
    folder, recipes = tree
    text, _ = build_report(folder, "markdown", None, recipe_dirs=[recipes], tables=["biggan"], figures=False)
    assert re.findall(r"^## (.*)$", text, flags=re.MULTILINE) == [BIGGAN, "Appendix: protocols"]


# ----------------------------------------------------------------------------------------------------
# CelebA-HQ 128 and 256.


def test_celebahq_cells_take_their_resolutions_paper_value_and_delta(
    tree: tuple[Path, Path], cells: list[dict[str, str]]
) -> None:
    folder, _ = tree
    for dataset, method, seeds in (
        ("celebahq128", "pgn", 2),
        ("celebahq128", "gn", 1),
        ("celebahq128", "sn", 1),
        ("celebahq256", "pgn", 1),
        ("celebahq256", "gn", 1),
        ("celebahq256", "sn", 1),
    ):
        picks = [best(folder / f"{dataset}/{method}/seed-{seed}", generator="ema")["fid"] for seed in range(seeds)]
        (cell,) = find(cells, table="celebahq", dataset=dataset, method=method, metric="fid")
        paper = PAPER.get(dataset, "resnet", method, "fid")
        assert paper is not None and float(cell["paper_mean"]) == paper.value
        assert (cell["arch"], cell["comparable"], cell["n"]) == ("resnet", "true", str(seeds))
        assert float(cell["mean"]) == pytest.approx(np.mean(picks), rel=1e-9)
        assert float(cell["delta"]) == pytest.approx(np.mean(picks) - paper.value, rel=1e-9)
    # The published values themselves, as the issue quotes them: 128 px, then 256 px.
    printed = {
        (d, m): PAPER.get(d, "resnet", m, "fid").text  # type: ignore[union-attr]
        for d in ("celebahq128", "celebahq256")
        for m in ("pgn", "gn", "sn")
    }
    assert printed == {
        ("celebahq128", "pgn"): "14.66",
        ("celebahq128", "gn"): "14.78",
        ("celebahq128", "sn"): "25.95",
        ("celebahq256", "pgn"): "6.186",
        ("celebahq256", "gn"): "7.67",
        ("celebahq256", "sn"): "14.45",
    }
    (gran,) = find(cells, table="celebahq", dataset="celebahq128", method="gran", metric="fid")
    assert gran["mean"] and gran["paper_mean"] == "" and gran["delta"] == ""  # measured, not in the paper


def test_celebahq_reports_the_ema_generator(
    tree: tuple[Path, Path], cells: list[dict[str, str]], markdown: str
) -> None:
    """The stand-in raw G is nearer the reference than the EMA G at every step: a report of the raw G would differ."""
    folder, _ = tree
    runs = [folder / f"celebahq128/pgn/seed-{seed}" for seed in (0, 1)]
    ema = np.mean([best(path, generator="ema")["fid"] for path in runs])
    raw_fid = np.mean([best(path, generator="raw")["fid"] for path in runs])
    assert raw_fid < ema
    (cell,) = find(cells, table="celebahq", dataset="celebahq128", method="pgn", metric="fid")
    assert float(cell["mean"]) == pytest.approx(ema, rel=1e-9)
    line = next(line for line in section(markdown, CELEBA).splitlines() if line.startswith("Protocol: "))
    assert "ema generator" in line and "raw generator" not in line
    assert "CelebA-HQ 128: 3k samples against the last 3k images" in line
    assert "CelebA-HQ 256: 10k samples against all 30k images" in line


def test_celebahq_runs_under_other_protocols_go_to_their_own_table(
    tree: tuple[Path, Path], cells: list[dict[str, str]], markdown: str
) -> None:
    folder, _ = tree
    other = find(cells, table="celebahq-other", metric="fid")
    shown = {(c["dataset"], c["method"]): c for c in other if c["mean"]}
    assert set(shown) == {("celebahq128", "gn"), ("celebahq128", "pgn"), ("celebahq256", "sn")}
    assert all(c["delta"] == "" and c["paper_mean"] == "" and c["comparable"] == "false" for c in shown.values())
    for (dataset, method), where, generator in (
        (("celebahq128", "gn"), "celebahq128/gn-n1000/seed-0", "ema"),
        (("celebahq128", "pgn"), "celebahq128/pgn-real30000/seed-0", "ema"),
        (("celebahq256", "sn"), "celebahq256/sn-selectraw/seed-1", "raw"),
    ):
        value = best(folder / where, generator=generator)["fid"]
        assert float(shown[dataset, method]["mean"]) == pytest.approx(value, rel=1e-9)
    notes = section(markdown, CELEBA_OTHER)
    for words in (
        "n\\_fake 1000 (paper: 3000)",
        "reference statistics of 30000 images (paper: 3000)",
        "raw generator (paper: EMA)",
    ):
        assert words in notes, words
    # The paper rows kept their own cells: one seed of SN at 256 px, GN at 128 px from its 3k-sample run.
    (sn,) = find(cells, table="celebahq", dataset="celebahq256", method="sn", metric="fid")
    assert sn["n"] == "1" and sn["seeds"] == "0"


def test_celebahq_rows_and_columns_follow_the_paper(markdown: str) -> None:
    head = next(line for line in section(markdown, CELEBA).splitlines() if line.startswith("|"))
    assert head == "| Method | CelebA-HQ 128 FID ours | paper | Δ | CelebA-HQ 256 FID ours | paper | Δ |"
    rows = table_rows(markdown, CELEBA)
    assert [row[0] for row in rows] == ["*ResNet*", "PGN-GAN", "GN-GAN", "SN-GAN", "GraN-GAN"]  # papers.toml's order
    assert [row[2] for row in rows[1:]] == ["**14.66**", "14.78", "25.95", "–"]
    assert [row[5] for row in rows[1:]] == ["**6.186**", "7.67", "14.45", "–"]


def test_real_images_are_scored_only_for_tables_with_a_real_data_row(tree: tuple[Path, Path]) -> None:
    folder, _ = tree
    assert set(paper_datasets(folder)) == {"cifar10"}  # CelebA-HQ's table has no Real data row
