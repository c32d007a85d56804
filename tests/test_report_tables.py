"""The report's pure parts: the papers' numbers, choosing a run's value, averaging, protocols, formatting."""

from __future__ import annotations

import pandas as pd
import pytest

from ganbench.report import papers
from ganbench.report.collect import select_step
from ganbench.report.render import delta_text, latex_escape, number, stat_text
from ganbench.report.tables import (
    Entry,
    Markers,
    aggregate,
    differences,
    method_key,
    method_label,
    paper_dataset,
    paper_recipe_name,
)


def test_paper_numbers_are_those_printed_in_the_pgn_gan_paper() -> None:
    numbers = papers.load()
    gn = numbers.get("cifar10", "cnn", "gn", "fid")
    assert gn is not None and (gn.value, gn.std, gn.text) == (19.31, 0.76, "19.31 ± .76")
    pgn = numbers.get("cifar10", "resnet", "pgn-cr", "is")
    assert pgn is not None and (pgn.value, pgn.std) == (8.909, 0.123)
    assert numbers.get("stl10", "resnet", "sn", "fid").value == 40.10  # type: ignore[union-attr]
    assert numbers.get("celebahq256", "resnet", "pgn", "fid").value == 6.186  # type: ignore[union-attr]
    assert numbers.get("cifar10", "cnn", "sn", "fid") is None  # "–" in the paper
    assert numbers.get("cifar10", "real", "real", "is").value == 11.24  # type: ignore[union-attr]
    # Counted by hand in the paper's tables: CIFAR-10 15 IS + 10 FID, STL-10 14 + 14, CelebA-HQ 6 FID, real data 2 IS.
    assert len(numbers.values) == 25 + 28 + 6 + 2
    assert all(value.source.startswith("Xia 2023") and value.table for value in numbers.values)
    assert numbers.rows("cifar10", "resnet") == ["wgan-gp", "sn", "sn-cr", "gn", "gn-cr", "pgn", "pgn-cr"]


def test_printed_numbers_parse() -> None:
    assert papers.parse_printed("8.506 ± .126") == (8.506, 0.126)
    assert papers.parse_printed("18.675") == (18.675, None)
    with pytest.raises(ValueError):
        papers.parse_printed("n/a")


def _rows(metric: str, values: dict[int, float]) -> list[dict]:
    return [{"step": step, "metric": metric, "value": value} for step, value in values.items()]


def test_select_step_takes_the_lowest_fid_and_its_earliest_tie() -> None:
    rows = pd.DataFrame(_rows("fid", {1000: 30.0, 2000: 19.0, 3000: 19.0, 4000: 25.0}) + _rows("is_mean", {2000: 7.0}))
    assert select_step(rows) == (2000, "best FID")


def test_select_step_for_2d_sets_prefers_modes_then_quality() -> None:
    rows = pd.DataFrame(
        _rows("modes_covered", {500: 8.0, 1000: 8.0, 1500: 7.0})
        + _rows("hq_percent", {500: 70.0, 1000: 90.0, 1500: 99.0})
    )
    assert select_step(rows) == (1000, "most modes covered, then highest % HQ")


def test_select_step_without_fid_or_modes() -> None:
    assert select_step(pd.DataFrame(_rows("is_mean", {1: 5.0, 2: 7.0, 3: 6.0})))[0] == 2
    assert select_step(pd.DataFrame(_rows("kid_mean", {1: 5.0, 2: 7.0})))[0] == 2  # the last evaluation
    assert select_step(pd.DataFrame(columns=["step", "metric", "value"]))[0] is None


def test_aggregate_is_mean_and_sample_std() -> None:
    stat = aggregate([(1, 20.5, "b"), (0, 19.5, "a"), (2, 21.0, "c")], "a")
    assert stat.mean == pytest.approx(61.0 / 3)
    # sample variance: ((20.5-m)^2 + (19.5-m)^2 + (21-m)^2) / 2 with m = 20.333...
    m = 61.0 / 3
    assert stat.std == pytest.approx((((20.5 - m) ** 2 + (19.5 - m) ** 2 + (21 - m) ** 2) / 2) ** 0.5)
    assert (stat.n, stat.seeds) == (3, (0, 1, 2))
    single = aggregate([(0, 7.0, "a")], "b")
    assert single.std is None and stat_text(single, 2) == "7.00"
    assert stat_text(aggregate([(0, 19.5, "a"), (1, 20.5, "b")], "a"), 2) == "20.00 ± 0.71 (n=2)"


def test_markers_are_letters_in_order_of_use() -> None:
    assert [Markers.letter(i) for i in (0, 1, 25, 26, 27)] == ["a", "b", "z", "aa", "ab"]


def test_method_keys_labels_and_recipe_names() -> None:
    assert method_key({"method.name": "gn", "method.cr_lambda": 5.0}) == "gn-cr"
    assert method_key({"method.name": "gn", "method.cr_lambda": 5.0, "method.bcr": True}) == "gn-bcr"
    assert method_key({"method.name": "wgan-gp", "method.cr_lambda": 0.0}) == "wgan-gp"
    assert method_label("pgn-cr") == "PGN-GAN-CR" and method_label("gran") == "GraN-GAN"
    assert paper_recipe_name("cifar10", "cnn", "wgan-gp-cr") == "cifar10_cnn_wgangp_cr"
    assert paper_recipe_name("stl10", "resnet", "gn") == "stl10_resnet_gn"
    assert paper_dataset({"data.name": "cifar10-jpeg"}) == "cifar10"
    assert paper_dataset({"data.name": "celebahq", "data.size": 0, "model.arch": "resnet256"}) == "celebahq256"
    assert paper_dataset({"data.name": "ring8"}) is None


def test_differences_ignore_seed_name_method_and_non_semantic_keys() -> None:
    ours = {
        "name": "a",
        "seed": 3,
        "method.name": "sn",
        "train.steps": 300,
        "train.device": "cpu",
        "data.root": "x",
    }
    ref = {"name": "b", "seed": 0, "method.name": "gn", "train.steps": 200000, "train.device": "auto"}
    assert differences(ours, ref) == (("train.steps", "300", "200000"),)


def test_number_formatting() -> None:
    assert number(-0.001, 2) == "0.00"  # never "-0.00"
    assert latex_escape("E²GAN 8.5 ± .1 n_fake 50% <x>") == (
        r"E\textsuperscript{2}GAN 8.5 $\pm$ .1 n\_fake 50\% \textless{}x\textgreater{}"
    )
    paper = papers.load().get("cifar10", "cnn", "gn", "fid")
    entry = Entry(ours=aggregate([(0, 19.0, "a")], "a"), paper=paper, comparable=True)
    assert delta_text(entry, 2) == "-0.31"
    entry = Entry(ours=aggregate([(0, 20.0, "a")], "a"), paper=paper, comparable=True)
    assert delta_text(entry, 2) == "+0.69"
    assert delta_text(Entry(ours=None, paper=paper), 2) == ""
    # Under another protocol than the paper's: no Δ at all.
    assert delta_text(Entry(ours=aggregate([(0, 20.0, "a")], "a"), paper=paper, comparable=False), 2) == ""
