"""Exporting the samples `ganbench eval` scores, and scoring images made elsewhere as a run's samples would be: the
exported images are the extractor's very input, importing them gives eval's FID, the generator is chosen by the one
rule every command shares, an external entry stays out of the paper rows, and bad inputs are one line, exit 2."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganbench.cli import app
from ganbench.errors import MetricError, RunDirError
from ganbench.evaluation import Evaluation, evaluate_run
from ganbench.metrics import inception
from ganbench.metrics.compute import quantize_images
from ganbench.metrics.inception import build_extractor
from ganbench.recipe import Recipe
from ganbench.report import build_report
from ganbench.sample_sets import NPZ_KEY, export_samples, score_images
from ganbench.selection import selected_generator
from ganbench.store import EXTERNAL, PROTOCOL_FIELDS, RunDir
from tests.test_metrics_evaluate import image_recipe, make_run
from tests.test_metrics_inception import no_downloads  # noqa: F401  (autouse fixture)
from tests.test_report_render import POOL, ChannelStats, Extraction, Level, paper_recipe, reference, train_run

runner = CliRunner()
SAMPLING_FIELDS = ("generator", "bn_mode", "sample_seed")  # what an external set has none of


def fid_recipe(select: str = "ema") -> Recipe:
    made = image_recipe(["fid"])
    return dataclasses.replace(made, eval=dataclasses.replace(made.eval, select=select))


def fed_to_the_extractor(monkeypatch: pytest.MonkeyPatch, weights: str) -> list[torch.Tensor]:
    """Every image batch an extractor of `weights` is given from now on, as it is given."""
    seen: list[torch.Tensor] = []
    cls = type(build_extractor(weights=weights))
    original = cls.features

    def spy(self: inception.Extractor, images: torch.Tensor, on_device: bool = False) -> dict[str, torch.Tensor]:
        seen.append(images.detach().cpu().clone())
        return original(self, images, on_device)

    monkeypatch.setattr(cls, "features", spy)
    return seen


@pytest.mark.parametrize("select", ["ema", "raw"])
def test_exported_samples_are_exactly_what_eval_feeds_the_extractor(
    tmp_path: Path, trunk: str, monkeypatch: pytest.MonkeyPatch, select: str
) -> None:
    # G and EMA-G differ in every checkpoint, BatchNorm in batch mode over batches of 128 (the recipe's G batch)
    run = make_run(tmp_path / "run", fid_recipe(select), steps=(10, 20))
    seen = fed_to_the_extractor(monkeypatch, trunk)
    rows = evaluate_run(run, checkpoints="20", inception_weights=trunk, device="cpu")
    assert list(rows["generator"]) == [select]  # eval's default: the recipe's eval.select
    # the last 40 images the extractor saw: the samples (the reference images and a probe come before them)
    scored = torch.cat([batch for batch in seen if batch.shape[-1] == 32])[-40:].permute(0, 2, 3, 1).numpy()
    assert scored.dtype == np.uint8 and scored.shape == (40, 32, 32, 3)

    done = export_samples(run, tmp_path / "s.npz", checkpoint="20")
    with np.load(tmp_path / "s.npz") as exported:
        assert list(exported) == [NPZ_KEY]  # one array: the images, N x H x W x 3
        assert exported[NPZ_KEY].dtype == np.uint8 and np.array_equal(exported[NPZ_KEY], scored)
    assert (done.generator, done.step, done.count, done.bn_mode) == (select, 20, 40, "batch")

    export_samples(run, tmp_path / "pngs", checkpoint="20")
    files = sorted((tmp_path / "pngs").iterdir())
    assert [f.name for f in files[:2]] == ["000000.png", "000001.png"] and len(files) == 40
    assert np.array_equal(np.stack([np.asarray(Image.open(f)) for f in files]), scored)

    other = "raw" if select == "ema" else "ema"
    export_samples(run, tmp_path / "other.npz", checkpoint="20", generator=other)
    with np.load(tmp_path / "other.npz") as exported:
        assert not np.array_equal(exported[NPZ_KEY], scored)  # the other generator's samples differ


def test_importing_exported_samples_gives_evals_fid_under_evals_protocol(tmp_path: Path, trunk: str) -> None:
    run = make_run(tmp_path / "run", fid_recipe(), steps=(10,))
    evaluated = evaluate_run(run, checkpoints="10", inception_weights=trunk, device="cpu").iloc[0]
    export_samples(run, tmp_path / "s.npz", checkpoint="10")
    export_samples(run, tmp_path / "pngs", checkpoint="10")
    results = tmp_path / "results"
    entry, rows = score_images(tmp_path / "s.npz", run.root, "mine", results, inception_weights=trunk, device="cpu")
    (row,) = rows.to_dict("records")
    assert row["value"] == pytest.approx(evaluated["value"], rel=1e-6, abs=1e-9)
    raw = evaluate_run(run, checkpoints="10", ema=False, inception_weights=trunk, device="cpu")["value"].iloc[0]
    assert abs(raw - evaluated["value"]) > 1e-3 * evaluated["value"]  # another generator's FID is not within rel
    for field in PROTOCOL_FIELDS:  # the evaluation's own protocol; the set names no generator, BatchNorm or seed
        if field not in SAMPLING_FIELDS:
            assert row[field] == evaluated[field], field
    assert (row["generator"], row["bn_mode"], row["sample_seed"], row["checkpoint"]) == (EXTERNAL, "", "", EXTERNAL)
    assert entry.root == results / "external" / "mine"
    assert entry.read_run()["external"]["count"] == 40 and entry.read_recipe().hash() == run.read_recipe().hash()

    # the PNG folder and the recipe file score the same; the same images again are already scored
    _, from_pngs = score_images(
        tmp_path / "pngs", run.recipe_path, "pngs", results, inception_weights=trunk, device="cpu"
    )
    assert from_pngs["value"].iloc[0] == pytest.approx(row["value"], rel=1e-9)
    again = score_images(tmp_path / "s.npz", run.root, "mine", results, inception_weights=trunk, device="cpu")
    assert again[1].empty
    with pytest.raises(RunDirError, match="an external entry of other images"):
        score_images(tmp_path / "pngs", run.root, "mine", results, inception_weights=trunk, device="cpu")


def test_one_rule_picks_the_generator_for_best_pt_eval_sample_and_report(tmp_path: Path, trunk: str) -> None:
    assert [selected_generator(s, True) for s in ("ema", "raw", None)] == ["ema", "raw", "ema"]
    assert selected_generator("ema", has_ema=False) == "raw"
    # a run without EMA whose recipe says "ema": eval, sample and the report all take the raw G
    made = fid_recipe("ema")
    no_ema = dataclasses.replace(made, train=dataclasses.replace(made.train, ema_decay=0.0))
    run = make_run(tmp_path / "results" / "run", no_ema, steps=(10,))
    rows = evaluate_run(run, checkpoints="10", inception_weights=trunk, device="cpu")
    assert list(rows["generator"]) == ["raw"]
    assert export_samples(run, tmp_path / "s.npz", checkpoint="10").generator == "raw"
    text, _ = build_report(tmp_path / "results", "markdown", tables=["runs"])
    assert "10 (raw, step-10)" in text
    with pytest.raises(RunDirError, match="no EMA generator"):
        export_samples(run, tmp_path / "t.npz", checkpoint="10", generator="ema")


def test_an_external_entry_stands_among_the_other_protocols_never_in_the_paper_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inception, "POOL_DIM", POOL)
    weights = tmp_path / "channel-stats.pt"
    weights.write_bytes(b"stand-in weights")
    extractor = ChannelStats(weights, "c" * 64)
    cifar = Extraction(extractor, reference(extractor, "cifar10", "train"))
    results, recipes = tmp_path / "results", tmp_path / "recipes"
    recipes.mkdir()
    recipe = paper_recipe("cifar10", "cnn32", "gn", select="raw")
    (recipes / f"{recipe.name}.toml").write_text(recipe.to_toml())
    train_run(results / "gn", recipe, {1000: {"raw": Level(0.5)}}, cifar)
    # an entry as `ganbench eval --images` writes it, of images far better than the run's (level 0.05)
    entry = RunDir(results / "external" / "theirs")
    entry.root.mkdir(parents=True)
    entry.write_recipe(recipe)
    info = {"images": "theirs.npz", "sha256": "0" * 64, "count": 40, "like": str(results / "gn")}
    entry.write_run({"name": "theirs", "status": "finished", "step": 0, "steps": 0, "external": info})  # type: ignore[typeddict-item]
    images = quantize_images(Level(0.05)(torch.randn(40, 8, generator=torch.Generator().manual_seed(5))))
    evaluation = Evaluation(recipe, "cpu", metrics=["fid"], num_samples=40, extractor=extractor, ref=cifar.ref)
    entry.append_metrics(evaluation.external_rows(images.split(16)))
    theirs = float(entry.read_metrics()["value"].iloc[0])
    ours = float(pd.read_parquet(results / "gn" / "metrics.parquet").query("metric == 'fid'")["value"].iloc[0])
    assert theirs < ours

    import csv
    import io

    text, warnings = build_report(results, "csv", recipe_dirs=[recipes])
    cells = [c for c in csv.DictReader(io.StringIO(text)) if c["metric"] == "fid" and c["mean"]]
    assert not [c for c in cells if c["table"] == "cifar10"]  # 40 samples: neither is the papers' protocol
    # the run and the entry share every field of the evaluation, yet stand in two rows: the entry never as GN-GAN
    (run_cell,) = [c for c in cells if c["table"] == "cifar10-other" and c["method"] == "gn"]
    (other,) = [c for c in cells if c["table"] == "cifar10-other" and c["method"] == EXTERNAL]
    assert float(run_cell["mean"]) == pytest.approx(ours) and float(other["mean"]) == pytest.approx(theirs)
    assert other["delta"] == other["paper_mean"] == "" and other["comparable"] == "false"
    markdown, _ = build_report(results, "markdown", recipe_dirs=[recipes], figures=False)
    others = markdown.split("other protocols", 1)[1]
    assert "| theirs (external)" in others and "images made elsewhere" in others
    assert "theirs.npz, 40 images" in markdown  # the appendix says where the images came from
    assert not any("theirs" in warning for warning in warnings)


def _bad(tmp_path: Path, run: RunDir, images: Path, *extra: str) -> str:
    command = ["eval", "--images", str(images), "--like", str(run.root), "--name", "x"]
    result = runner.invoke(app, [*command, "--results", str(tmp_path / "results"), *extra])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_bad_images_are_one_line_and_exit_2(tmp_path: Path, trunk: str) -> None:
    run = make_run(tmp_path / "run", fid_recipe(), steps=(10,))
    good = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "float.npz", good.astype(np.float32))
    assert "float32 values, not uint8" in _bad(tmp_path, run, tmp_path / "float.npz")
    np.savez(tmp_path / "nchw.npz", good.transpose(0, 3, 1, 2).copy())
    assert "transpose it to (N, H, W, 3)" in _bad(tmp_path, run, tmp_path / "nchw.npz")
    np.savez(tmp_path / "small.npz", np.zeros((4, 16, 16, 3), np.uint8))
    assert "16x16 images" in _bad(tmp_path, run, tmp_path / "small.npz")
    np.savez(tmp_path / "one.npz", good[:1])
    assert "fid: 1 samples give no covariance; give more images" in _bad(
        tmp_path, run, tmp_path / "one.npz", "--inception-weights", trunk
    )
    np.savez(tmp_path / "two.npz", a=good, b=good)
    assert "which array holds the images" in _bad(tmp_path, run, tmp_path / "two.npz")
    (tmp_path / "notes.txt").write_text("not images")
    assert "not an .npz file or a folder" in _bad(tmp_path, run, tmp_path / "notes.txt")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "not a readable .npz file" in _bad(tmp_path, run, tmp_path / "junk.npz")
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray(good[0]).save(folder / "0.png")
    (folder / "readme.md").write_text("x")
    assert "readme.md is not an image" in _bad(tmp_path, run, folder)
    (folder / "readme.md").unlink()
    (folder / "1.png").write_bytes(b"broken")
    assert "1.png is not a readable image" in _bad(tmp_path, run, folder)

    missing = runner.invoke(app, ["eval", "--images", str(tmp_path / "two.npz"), "--name", "x"])
    assert missing.exit_code == 2 and "also give --like" in missing.stderr
    mixed = runner.invoke(app, ["eval", str(run.root), "--images", str(tmp_path / "two.npz"), "--like", "r"])
    assert mixed.exit_code == 2 and "leave out RUN_DIR" in mixed.stderr
    unset = runner.invoke(app, ["eval"])
    assert unset.exit_code == 2 and "give RUN_DIR" in unset.stderr
    assert not (tmp_path / "results").exists()  # nothing written for any of them


def test_sample_through_the_command_line(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", fid_recipe(), steps=(10,))
    out = tmp_path / "s.npz"
    done = runner.invoke(app, ["sample", str(run.root), "--checkpoint", "10", "--num", "5", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "5 samples of the ema G of step-10" in done.stdout
    with np.load(out) as exported:
        assert exported[NPZ_KEY].shape == (5, 32, 32, 3)
    again = runner.invoke(app, ["sample", str(run.root), "--checkpoint", "10", "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.stderr  # never written over
    for option, words in (("--checkpoint=all", "one checkpoint at a time"), ("--generator=best", "choose one of")):
        bad = runner.invoke(app, ["sample", str(run.root), option, "--out", str(tmp_path / "t.npz")])
        assert bad.exit_code == 2 and words in bad.stderr, bad.output
    with pytest.raises(MetricError, match="2-D point set"):
        from tests.test_metrics_evaluate import points_recipe

        export_samples(make_run(tmp_path / "points", points_recipe(), steps=(10,)), tmp_path / "p.npz")
