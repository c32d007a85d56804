"""`ganbench report` renderings against golden files, from run directories written here by hand (no training).

The golden files are tests/golden/report.{md,tex,csv}. After a deliberate change of the report's layout,
regenerate them with

    GANBENCH_REGEN_GOLDEN=1 pytest tests/test_report_render.py

then read the diff (`git diff tests/golden`) before committing: every number in them was checked by hand once
(for example GN-GAN CIFAR-10 FID: seeds 19.5 and 20.5 -> 20.00 ± 0.71, Δ = 20.00 − 19.31 = +0.69).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ganbench.recipe import DataConfig, EvalConfig, LossConfig, MethodConfig, ModelConfig, Recipe, TrainConfig
from ganbench.report import build_report
from ganbench.store import RunDir

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("GANBENCH_REGEN_GOLDEN") == "1"

VERSIONS = '{"ganbench": "0.1.0", "pytorch-fid": "0.3.0", "torch": "2.4.0", "torch-fidelity": "0.3.0"}'
FID_PROTOCOL = {  # the columns ganbench.metrics writes beside each value
    "extractor": "inception-v3-tf",
    "weights_hash": "7ff4a85c",
    "resize": "bilinear-299",
    "quantize": True,
    "n_fake": 50000,
    "n_real": 50000,
    "ref_dataset": "cifar10",
    "ref_split": "train",
    "ref_hash": "bf3aabd5c0ffee00",
    "versions": VERSIONS,
    "fingerprint": "c10fid01",
    "backend": "torch-fidelity",
    "precision": "fp32",
    "sample_seed": 2147483647,
    "params": '{"is_splits": 10}',
    "protocol_version": 1,
    "ref_key": "cifar10-train-7ff4a85c",
    "weights": "/somewhere/on/this/machine/default_1.pt",  # machine-specific: never in a report
    "device": "cuda:0",
    "wall_time_s": 26.0,
    "time": "2026-01-01T00:00:00+0000",
}
MODES_PROTOCOL = {
    "extractor": "2d-modes",
    "weights_hash": "",
    "resize": "none",
    "quantize": False,
    "n_fake": 2500,
    "n_real": 0,
    "ref_dataset": "ring8",
    "ref_split": "train",
    "ref_hash": "51ab2e6f00000000",
    "versions": VERSIONS,
    "fingerprint": "ring8q01",
    "backend": "none",
}


def paper_recipe(dataset: str, arch: str, method: str, seed: int = 0, **train: Any) -> Recipe:
    """A recipe shaped like the paper recipes (built directly: no dataset or registry needed)."""
    family = "cnn" if arch.startswith("cnn") else "resnet"
    return Recipe(
        name=f"{dataset}_{family}_{method}",
        seed=seed,
        data=DataConfig(name=dataset, split="unlabeled" if dataset == "stl10" else "train"),
        model=ModelConfig(arch=arch),
        method=MethodConfig(name=method),
        loss=LossConfig(name="bce" if family == "cnn" else "hinge"),
        train=TrainConfig(**{"steps": 200000, "sample_every": 5000, "checkpoint_every": 5000, **train}),
        eval=EvalConfig(every=5000),
    )


def quickstart(method: str, seed: int, steps: int = 1500) -> Recipe:
    return Recipe(
        name="quickstart",
        seed=seed,
        model=ModelConfig(arch="mlp", z_dim=16, g_channels=128, d_channels=128),
        method=MethodConfig(name=method),
        train=TrainConfig(steps=steps, ema_decay=0.0, sample_every=500, checkpoint_every=500),
        eval=EvalConfig(every=500, num_samples=2500, metrics=["modes"]),
    )


def image_rows(fids: list[float], iss: list[float], fid_protocol: dict[str, Any] | None = None) -> list[dict]:
    """In-training rows every 5000 steps for the EMA and (1 worse) raw generators."""
    rows = []
    for index, (fid, inception) in enumerate(zip(fids, iss, strict=True)):
        step = 5000 * (index + 1)
        for generator, worse in (("ema", 0.0), ("raw", 1.0)):
            protocol = dict(fid_protocol or FID_PROTOCOL)
            protocol["fingerprint"] += "" if generator == "ema" else "-raw"  # the generator is part of it
            base = {"step": step, "checkpoint": "in-training", "generator": generator, **protocol}
            rows.append({**base, "metric": "fid", "value": fid + worse})
            rows.append({**base, "metric": "is_mean", "value": inception - worse})
            rows.append({**base, "metric": "is_std", "value": 0.1})
    return rows


def mode_rows(modes: list[float], hq: list[float]) -> list[dict]:
    rows = []
    for index, (covered, quality) in enumerate(zip(modes, hq, strict=True)):
        base = {"step": 500 * (index + 1), "checkpoint": "in-training", "generator": "raw", **MODES_PROTOCOL}
        rows.append({**base, "metric": "modes_covered", "value": covered})
        rows.append({**base, "metric": "hq_percent", "value": quality})
    return rows


def write_run(root: Path, rel: str, recipe: Recipe, rows: list[dict], status: str = "finished") -> RunDir:
    run = RunDir(root / rel)
    run.root.mkdir(parents=True)
    run.write_recipe(recipe)
    run.write_run(
        {
            "name": recipe.name,
            "recipe_hash": recipe.hash(),
            "status": status,
            "step": recipe.train.steps,
            "steps": recipe.train.steps,
            "dataset": {"name": recipe.data.name, "split": recipe.data.split, "content_hash": "0" * 16},
            "environment": {"python": "3.11"},
        }
    )
    if rows:
        run.append_metrics(rows)
    sample = np.full((32, 32, 3), (40 * recipe.seed) % 256, dtype=np.uint8)
    sample[:, : 8 + 4 * len(recipe.method.name)] = 255
    run.samples_dir.mkdir()
    Image.fromarray(sample).save(run.sample_path(recipe.train.steps))
    return run


def build_results(root: Path) -> tuple[Path, Path]:
    """A results folder with every kind of cell, and a folder of the paper recipes it is compared with."""
    results, recipes = root / "results", root / "recipes"
    recipes.mkdir(parents=True)
    for name, recipe in {
        "cifar10_cnn_gn": paper_recipe("cifar10", "cnn32", "gn"),
        "cifar10_cnn_sn": paper_recipe("cifar10", "cnn32", "sn"),
        "stl10_resnet_pgn_cr": paper_recipe("stl10", "resnet48", "pgn"),
    }.items():
        if name.endswith("_cr"):
            recipe.method.cr_lambda = 5.0
        (recipes / f"{name}.toml").write_text(recipe.to_toml())

    # CIFAR-10, standard CNN: GN over two seeds under the paper recipe; best FID 19.5 and 20.5.
    write_run(
        results,
        "cifar10/gn/seed-0",
        paper_recipe("cifar10", "cnn32", "gn", 0),
        image_rows([30, 20.5, 21], [6, 7.5, 7.9]),
    )
    write_run(
        results,
        "cifar10/gn/seed-1",
        paper_recipe("cifar10", "cnn32", "gn", 1),
        image_rows([28, 19.5, 22], [6, 7.7, 7.6]),
    )
    # SN without the paper's FID cell; its FID 25 is worse than GN's 20 (bold goes to GN).
    write_run(
        results,
        "cifar10/sn/seed-0",
        paper_recipe("cifar10", "cnn32", "sn", 0),
        image_rows([35, 25.0], [6.5, 7.1]),
    )
    # A short GN run: another training protocol, so its own row and footnote, never averaged with the others.
    write_run(
        results,
        "cifar10/gn-short/seed-2",
        paper_recipe("cifar10", "cnn32", "gn", 2, steps=10000),
        image_rows([40.0, 38.0], [5.0, 5.5]),
    )
    # A run still going: only in the table of all runs.
    write_run(
        results,
        "cifar10/gn/seed-3",
        paper_recipe("cifar10", "cnn32", "gn", 3),
        image_rows([31.0], [6.0]),
        status="interrupted",
    )

    # STL-10 ResNet PGN-CR evaluated with 10k samples against train statistics: not the papers' protocol.
    stl = paper_recipe("stl10", "resnet48", "pgn", 0)
    stl.method.cr_lambda = 5.0
    stl_protocol = {**FID_PROTOCOL, "n_fake": 10000, "ref_dataset": "stl10", "fingerprint": "stlfid01"}
    write_run(results, "stl10/pgn-cr/seed-0", stl, image_rows([30.0, 24.25], [9.0, 9.5], stl_protocol))

    # CelebA-HQ 128 with an older metrics table: no protocol columns at all, so the footnote says "unknown".
    celeba = Recipe(
        name="celebahq128_resnet_gn",
        data=DataConfig(name="celebahq", size=128),
        model=ModelConfig(arch="resnet128"),
        method=MethodConfig(name="gn"),
        loss=LossConfig(name="hinge"),
        train=TrainConfig(steps=100000, n_dis=5, ema_start=10000),
        eval=EvalConfig(every=5000, num_samples=3000, metrics=["fid"]),
    )
    write_run(
        results,
        "celebahq/gn/seed-0",
        celeba,
        [
            {"step": 5000 * i, "checkpoint": "in-training", "generator": "ema", "metric": "fid", "value": v}
            for i, v in ((1, 20.0), (2, 15.25))
        ],
    )

    # The quickstart through compare: GN over two seeds, SN over one (its second diverged), a longer GN run.
    write_run(results, "compare/quickstart/gn/seed-0", quickstart("gn", 0), mode_rows([6, 8, 8], [70, 80, 85]))
    write_run(results, "compare/quickstart/gn/seed-1", quickstart("gn", 1), mode_rows([7, 8, 7], [75, 82, 90]))
    write_run(results, "compare/quickstart/sn/seed-0", quickstart("sn", 0), mode_rows([5, 6, 7], [60, 70, 72]))
    write_run(
        results,
        "compare/quickstart/sn/seed-1",
        quickstart("sn", 1),
        mode_rows([5, 6], [61, 71]),
        status="diverged",
    )
    write_run(
        results,
        "compare/quickstart-long/gn/seed-0",
        quickstart("gn", 0, steps=3000),
        mode_rows([8, 8], [88, 91]),
    )

    # Damaged results: a run whose metrics.parquet is not Parquet, a run of another schema, an empty folder.
    broken = write_run(results, "damaged/parquet", quickstart("gn", 7), [])
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


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} missing; run with GANBENCH_REGEN_GOLDEN=1 to create it, then check it by hand"
    assert text == path.read_text(), f"report differs from {path}; if intended, regenerate (see module docstring)"


@pytest.mark.parametrize(("fmt", "name"), [("markdown", "report.md"), ("latex", "report.tex"), ("csv", "report.csv")])
def test_rendering_matches_golden(results: tuple[Path, Path], fmt: str, name: str) -> None:
    folder, recipes = results
    text, warnings = build_report(folder, fmt, None, recipe_dirs=[recipes])
    check_golden(name, text)
    assert len(warnings) == 2  # the damaged Parquet file and the old schema; the empty folder is no run


def test_warnings_name_each_problem_and_the_rest_renders(results: tuple[Path, Path]) -> None:
    folder, recipes = results
    text, warnings = build_report(folder, "markdown", None, recipe_dirs=[recipes])
    assert any("damaged/parquet" in w and "unreadable Parquet" in w for w in warnings)
    assert any("damaged/old-schema" in w and "schema 0" in w for w in warnings)
    assert "| damaged/parquet |" in text  # the run itself is still listed, without values
    assert "CIFAR-10 and STL-10" in text and "CelebA-HQ" in text and "quickstart: methods over seeds" in text
    assert "/somewhere" not in text and "cuda:0" not in text and "2026-01-01" not in text


def test_hand_computed_cells(results: tuple[Path, Path]) -> None:
    folder, recipes = results
    text, _ = build_report(folder, "csv", None, recipe_dirs=[recipes])
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text)))
    gn_fid = [
        r
        for r in rows
        if r["table"] == "cifar-stl"
        and r["row"] == "GN-GAN"
        and r["metric"] == "fid"
        and r["dataset"] == "CIFAR-10"
        and r["n"] == "2"
    ]
    assert len(gn_fid) == 1
    (cell,) = gn_fid
    assert float(cell["ours_mean"]) == pytest.approx(20.0)
    assert float(cell["ours_std"]) == pytest.approx(np.std([19.5, 20.5], ddof=1))
    assert float(cell["delta"]) == pytest.approx(20.0 - 19.31)
    assert cell["ours_best"] == "1"
    # IS at the step of the best FID (10000 for both seeds): 7.5 and 7.7, not the later 7.9.
    gn_is = [r for r in rows if r["row"] == "GN-GAN" and r["metric"] == "is_mean" and r["n"] == "2"]
    assert float(gn_is[0]["ours_mean"]) == pytest.approx(7.6)
    # The short run has its own protocol marker and is not averaged in.
    short = [
        r
        for r in rows
        if r["table"] == "cifar-stl"
        and r["row"] == "GN-GAN"
        and r["metric"] == "fid"
        and r["n"] == "1"
        and r["dataset"] == "CIFAR-10"
    ]
    assert len(short) == 1 and float(short[0]["ours_mean"]) == 38.0
    assert short[0]["protocol"] != cell["protocol"]
    assert "train.steps = 10000" in short[0]["protocol_detail"]
    # STL-10 names where its protocol differs from the papers'.
    stl = [r for r in rows if r["dataset"] == "STL-10" and r["metric"] == "fid" and r["ours_mean"]]
    assert "n_fake 10000 (papers: 50000)" in stl[0]["protocol_detail"]
    assert "reference split train (papers: unlabeled)" in stl[0]["protocol_detail"]
    # CelebA-HQ: no protocol columns in its metrics, so they read "unknown".
    celeba = [r for r in rows if r["table"] == "celebahq" and r["ours_mean"]]
    assert float(celeba[0]["ours_mean"]) == 15.25 and float(celeba[0]["paper_value"]) == 14.78
    assert "n_fake unknown" in celeba[0]["protocol_detail"]
    # Quickstart: GN seed 0 picks step 1500 (8 modes, 85 %), seed 1 step 1000 (8 modes, 82 %); the longer
    # GN run (8 modes, 91 %) is a row of its own.
    quick = [r for r in rows if r["table"] == "generic-quickstart" and r["row"] == "GN-GAN" and r["n"] == "2"]
    assert {r["metric"]: float(r["ours_mean"]) for r in quick} == {"modes_covered": 8.0, "hq_percent": 83.5}
    assert float(next(r for r in quick if r["metric"] == "hq_percent")["ours_std"]) == pytest.approx(2.1213203)


def test_markdown_and_html_embed_figures_that_exist(results: tuple[Path, Path], tmp_path: Path) -> None:
    folder, recipes = results
    for fmt, name in (("markdown", "report.md"), ("html", "report.html")):
        output = tmp_path / name
        text, warnings = build_report(folder, fmt, output, recipe_dirs=[recipes])
        assert output.read_text() == text
        assert not any("figure not drawn" in w for w in warnings)
        images = sorted((tmp_path / f"{output.stem}_plots").glob("*.png"))
        names = {image.name for image in images}
        assert {
            "generic-quickstart-curves.png",
            "generic-quickstart-samples.png",
            "cifar-stl-curves.png",
        } <= names
        for image in images:
            assert f"{output.stem}_plots/{image.name}" in text
            assert Image.open(image).size[0] > 200


def test_empty_results_say_so(tmp_path: Path) -> None:
    text, warnings = build_report(tmp_path, "markdown", None)
    assert "Nothing to report" in text
    assert warnings and "no run directories" in warnings[0]
    text, warnings = build_report(tmp_path / "absent", "csv", None)
    assert text.startswith("table,group,row")
    assert "no such folder" in warnings[0]
