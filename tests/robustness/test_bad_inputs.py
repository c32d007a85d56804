"""Every wrong input through the real command line exits 2 with one line on stderr, before anything is written: the
file tree the command could touch is compared byte for byte before and after. A damaged run (a value of the wrong
type in its recipe.toml or run.json) is skipped by `ganbench report` with one warning naming the file and the key,
and refused by `train` and `eval`, saying how to recover.

One case of each kind runs `python -m ganbench` in a new interpreter; the others run the console script's main() in
this one, which parses the same command line without paying for another torch import.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tests.robustness.trees import (
    Done,
    assert_unchanged,
    copy_run,
    damage_recipe,
    damage_run_json,
    ganbench,
    ganbench_here,
    snapshot,
)


@pytest.fixture
def work(tmp_path: Path, points_run: Path) -> Path:
    """A folder holding the recipe (recipe.toml) and a copy of its finished run (run/), nothing else."""
    (tmp_path / "recipe.toml").write_text((points_run.parent / "recipe.toml").read_text())
    copy_run(points_run, tmp_path / "run")
    return tmp_path


def refused(done: Done, *words: str) -> str:
    """The one stderr line of a refusal (exit code 2), checked to name each of `words`."""
    assert done.code == 2, (done.code, done.out, done.err)
    assert len(done.lines) == 1, done.err
    line = done.lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in done.err and "unexpected" not in line, line
    for word in words:
        assert word in line, (word, line)
    return line


# ---------------------------------------------------------------------------------------------------------------
# 1. damaged runs

RUN_JSON_DAMAGE = [  # (key, value): a string where a number belongs, a list where a table belongs, ...
    ("step", "four"),
    ("best", [1, 2]),
    ("best.step", "2"),
    ("dataset", ["ring8"]),
    ("status", 3),
]
RECIPE_DAMAGE = [
    ("seed", "zero"),
    ("model", [1, 2]),
    ("train.steps", "4"),
    ("train.lr_d", "fast"),
    ("eval.metrics", 5),
]


def test_report_skips_each_damaged_run_with_one_warning_naming_file_and_key(tmp_path: Path, points_run: Path) -> None:
    results = tmp_path / "results"
    copy_run(points_run, results / "good")
    damaged: dict[str, tuple[str, str]] = {}
    for i, (key, value) in enumerate(RUN_JSON_DAMAGE):
        damage_run_json(copy_run(points_run, results / f"json-{i}"), key, value)
        damaged[f"json-{i}"] = ("run.json", key)
    for i, (key, value) in enumerate(RECIPE_DAMAGE):
        damage_recipe(copy_run(points_run, results / f"toml-{i}"), key, value)
        damaged[f"toml-{i}"] = ("recipe.toml", key)
    before = snapshot(tmp_path)
    done = ganbench("report", "--results", results, cwd=tmp_path)
    assert done.code == 0, done.err
    assert "Traceback" not in done.err and "unexpected" not in done.err
    assert re.search(r"\|\s*good\s*\|", done.out), done.out  # the readable run is reported
    for name, (file, key) in damaged.items():
        mine = [line for line in done.lines if line.startswith(f"warning: {name}: ")]
        assert len(mine) == 1, (name, done.err)
        assert f"{name}/{file}: damaged ({key} holds " in mine[0], mine[0]
        assert "restore it from a backup" in mine[0]
        assert f"| {name} " not in done.out  # skipped, not reported
    assert len(done.lines) == len(damaged), done.err
    assert_unchanged(tmp_path, before)


def test_train_refuses_a_damaged_recipe_toml_saying_how_to_recover(work: Path) -> None:
    damage_recipe(work / "run", "train.steps", "4")
    before = snapshot(work)
    done = ganbench("train", "recipe.toml", "--run-dir", "run", cwd=work)
    refused(done, "run/recipe.toml: damaged (train.steps holds '4', not an integer)", "restore it", "new run directory")
    assert_unchanged(work, before)


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize(
    ("file", "key", "value"),
    [("run.json", key, value) for key, value in RUN_JSON_DAMAGE[:4]]
    + [("recipe.toml", key, value) for key, value in RECIPE_DAMAGE[:2]],
)
def test_train_and_eval_refuse_a_damaged_run(
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    file: str,
    key: str,
    value: object,
) -> None:
    (damage_run_json if file == "run.json" else damage_recipe)(work / "run", key, value)
    before = snapshot(work)
    args = ["train", "recipe.toml", "--run-dir", "run"] if command == "train" else ["eval", "run", "--force"]
    done = ganbench_here(*args, cwd=work, monkeypatch=monkeypatch, capsys=capsys)
    refused(done, f"run/{file}: damaged ({key} holds ", "restore it from a backup", "new run directory")
    assert_unchanged(work, before)


# ---------------------------------------------------------------------------------------------------------------
# 2. output paths that cannot be written as asked


def test_report_output_naming_a_folder_is_refused_with_nothing_beside_it(tmp_path: Path, points_run: Path) -> None:
    copy_run(points_run, tmp_path / "results" / "good")
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    done = ganbench("report", "--results", "results", "--output", "out", cwd=tmp_path)
    refused(done, "--output out: is a folder, not a file")
    assert_unchanged(tmp_path, before)  # no out_plots/, no .out.*.tmp


OUTPUTS = [  # (command line, words of the refusal); `file` is a file, `folder` a folder, `results` a results tree
    (["report", "--results", "results", "--output", "file/report.md"], "--output file/report.md: file is a file"),
    (["report", "--results", "results", "--format", "html", "--output", "r.html"], "figures' folder r_plots: is a"),
    (["report", "--results", "results", "--format", "csv", "--output", "folder"], "--output folder: is a folder"),
    (["report", "--results", "results", "--score-real"], "results/reference: is a file"),
    (["compare", "--methods", "gn", "--results", "file", "--dry-run"], "--results file: is a file, not a folder"),
    (["compare", "--methods", "gn", "--results", "file/sub", "--dry-run"], "--results file/sub: file is a file"),
    (["compare", "--methods", "gn", "--results", "file"], "--results file: is a file, not a folder"),
    (["compare", "--methods", "gn", "--results", "results", "--dry-run"], "results/compare is a file"),
    (["train", "recipe.toml", "--run-dir", "file/run"], "--run-dir file/run: file is a file"),
    (["train", "recipe.toml", "--run-dir", "file"], "file: is a file, not a folder"),
    (["stats", "ring8", "--export", "folder"], "--export folder: is a folder, not a file"),
    (["stats", "ring8", "--export", "file/stats.npz"], "--export file/stats.npz: file is a file"),
    (["pack", "celebahq", "folder", "file/out.lmdb"], "pack OUT file/out.lmdb: file is a file"),
]


@pytest.mark.parametrize(("args", "words"), OUTPUTS, ids=[" ".join(args) for args, _ in OUTPUTS])
def test_an_output_path_that_cannot_be_written_is_refused_before_anything_is_written(
    tmp_path: Path,
    points_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: str,
) -> None:
    (tmp_path / "recipe.toml").write_text((points_run.parent / "recipe.toml").read_text())
    copy_run(points_run, tmp_path / "results" / "good")
    (tmp_path / "results" / "reference").write_text("a file where the reference rows' folder would go\n")
    (tmp_path / "results" / "compare").write_text("a file where the compared runs would go\n")
    (tmp_path / "file").write_text("a file\n")
    (tmp_path / "r_plots").write_text("a file where the figures would go\n")
    (tmp_path / "folder").mkdir()
    before = snapshot(tmp_path)
    done = ganbench_here(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    refused(done, words)
    assert_unchanged(tmp_path, before)


# ---------------------------------------------------------------------------------------------------------------
# 3. option values, checked before anything runs (--dry-run included)


def test_an_unknown_launcher_is_refused_before_the_plan(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    done = ganbench("compare", "--methods", "gn", "--launcher", "slurmm", "--dry-run", cwd=tmp_path)
    refused(done, "--launcher slurmm", "choose one of local, slurm")
    assert done.out == ""  # no plan printed
    assert_unchanged(tmp_path, before)


OPTIONS = [
    (["compare", "--methods", "gn", "--jobs", "0", "--dry-run"], "--jobs 0: give 1 to 64"),
    (["compare", "--methods", "gn", "--launcher", "ssh"], "choose one of local, slurm"),
    (["report", "--results", "results", "--format", "pdf", "--output", "r.md"], "markdown, latex, csv, html"),
    (["report", "--results", "results", "--generator", "best", "--output", "r.md"], "selected, ema, raw"),
    (["report", "--results", "results", "--tables", "cifar100", "--output", "r.md"], "cifar10, stl10, biggan"),
    (["report", "--results", "results", "--format", "pdf", "--score-real"], "markdown, latex, csv, html"),
    (["report", "--results", "results", "--columns", "all"], "ours, paper, both"),
    (["eval", "results/good", "--force", "--backend", "tf"], "torch-fidelity, pytorch-fid"),
    (["eval", "results/good", "--force", "--bn-mode", "eval"], "batch, running"),
    (["eval", "results/good", "--force", "--checkpoint", "first"], "best, last, all or a step number"),
]


@pytest.mark.parametrize(("args", "words"), OPTIONS, ids=[" ".join(args) for args, _ in OPTIONS])
def test_an_unknown_option_value_is_refused_naming_the_choices(
    tmp_path: Path,
    points_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: str,
) -> None:
    copy_run(points_run, tmp_path / "results" / "good")
    before = snapshot(tmp_path)
    done = ganbench_here(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    refused(done, words)
    assert done.out == ""
    assert_unchanged(tmp_path, before)


# ---------------------------------------------------------------------------------------------------------------
# 4. eval --ema on a run without EMA


def test_eval_ema_of_a_run_without_ema_is_refused_before_any_scoring(tmp_path: Path, images_run: Path) -> None:
    run = copy_run(images_run, tmp_path / "run")
    before = snapshot(tmp_path)
    done = ganbench("eval", run, "--ema", "--checkpoint", "last", cwd=tmp_path, GANBENCH_CACHE=str(tmp_path / "cache"))
    refused(done, "the run has no EMA generator", "--no-ema")
    assert_unchanged(tmp_path, before)  # no metrics.parquet, no reference statistics in the cache


def test_eval_ema_of_a_points_run_without_ema_is_refused(
    work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(work)
    done = ganbench_here("eval", "run", "--ema", "--force", cwd=work, monkeypatch=monkeypatch, capsys=capsys)
    refused(done, "run: the run has no EMA generator", "--no-ema")
    assert_unchanged(work, before)


def test_eval_no_ema_of_the_same_run_scores_it(
    work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = len(pd.read_parquet(work / "run" / "metrics.parquet"))
    done = ganbench_here("eval", "run", "--no-ema", "--force", cwd=work, monkeypatch=monkeypatch, capsys=capsys)
    assert done.code == 0, done.err
    assert len(pd.read_parquet(work / "run" / "metrics.parquet")) > rows
