"""Arrange run results into tables: each paper table in the paper's layout (CIFAR-10, STL-10, conditional BigGAN on
CIFAR-10, CelebA-HQ), a table of the cells measured under other protocols beside each, a summary per recipe
matching no layout, and a table of every run; each measured cell carries the protocol it was measured under.

A paper row holds exactly one cell per method and block: the one measured under the paper's protocol (the paper
recipe's training, the papers' samples, reference statistics and generator, the best checkpoint of training). Cells
under any other protocol go to the "other protocols" table and never get a Δ against the paper. Runs are averaged
over seeds only when everything else agrees: the same recipe apart from the seed, the same generator, the same
selection and the same evaluation protocol (metric fingerprints).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ganbench.metrics.fid import RANK_MARK, feature_dim, rank_deficiency_note
from ganbench.report.collect import IN_TRAINING, RECORD_COLUMNS, Measurement, RunResult, _text, config_key, semantic
from ganbench.report.papers import PaperNumbers, PaperProtocol, PaperValue
from ganbench.store import EXTERNAL

DATASETS = {
    "cifar10": "CIFAR-10",
    "stl10": "STL-10",
    "celebahq128": "CelebA-HQ 128",
    "celebahq256": "CelebA-HQ 256",
}
DATASET_ALIASES = {"cifar10": "cifar10", "cifar10-jpeg": "cifar10", "stl10": "stl10"}
CELEBAHQ_NAMES = ("celebahq", "celeba-hq", "celeba_hq")
ARCH_FAMILIES = {
    "cnn32": "cnn",
    "cnn48": "cnn",
    "resnet32": "resnet",
    "resnet48": "resnet",
    "resnet128": "resnet",
    "resnet256": "resnet",
    "biggan32": "biggan",
}
GROUPS = {
    "cnn": "Standard CNN",
    "resnet": "ResNet",
    "biggan": "BigGAN",
    "nas": "Architecture search",
    "real": "Real data",
}
# The recipe keys that make a model class-conditional: a run is conditional when one of them is above zero.
CLASS_KEYS = ("model.num_classes",)
METHODS = {
    "sn": "SN-GAN",
    "wgan-gp": "WGAN-GP",
    "gn": "GN-GAN",
    "pgn": "PGN-GAN",
    "gran": "GraN-GAN",
    "lgan": "LGAN max-GP",
    "none": "GAN (no constraint)",
    "autogan": "AutoGAN",
    "e2gan": "E²GAN",
    "real": "Real data",
}
METHOD_ORDER = ("sn", "wgan-gp", "gn", "pgn", "gran", "lgan", "none")
RECIPE_TAGS = {"wgan-gp": "wgangp"}  # recipe file names carry method tags without dashes


@dataclass(frozen=True)
class Layout:
    """One paper table: which datasets (one column group each), metrics and blocks, in the paper's order."""

    key: str  # the --tables name
    title: str
    datasets: tuple[str, ...]
    metrics: tuple[str, ...]
    blocks: tuple[str, ...]
    conditional: bool = False  # whether its runs are class-conditional (never mixed with unconditional ones)
    # Rows shown before papers.toml holds any of the table's cells: the methods of the shipped recipes, in order
    rows: tuple[str, ...] = ()


LAYOUTS = (
    Layout(
        "cifar10",
        "CIFAR-10, unconditional generation",
        ("cifar10",),
        ("is_mean", "fid"),
        ("real", "cnn", "resnet", "nas"),
    ),
    Layout(
        "stl10", "STL-10, unconditional generation", ("stl10",), ("is_mean", "fid"), ("real", "cnn", "resnet", "nas")
    ),
    Layout(
        "biggan",
        "CIFAR-10, conditional (BigGAN)",
        ("cifar10",),
        ("is_mean", "fid"),
        ("biggan",),
        conditional=True,
        rows=("sn", "sn-cr", "gn", "gn-cr", "pgn", "pgn-cr", "gran", "gran-cr"),
    ),
    Layout("celebahq", "CelebA-HQ", ("celebahq128", "celebahq256"), ("fid",), ("resnet",)),
)
TABLE_NAMES = (*(layout.key for layout in LAYOUTS), "other", "runs")  # other: recipes matching no paper table


@dataclass(frozen=True)
class MetricInfo:
    label: str
    higher_is_better: bool
    decimals: int
    image: bool  # measured with an image feature extractor (so the Inception protocol applies)


METRICS = {
    "modes_covered": MetricInfo("modes covered", True, 1, False),
    "hq_percent": MetricInfo("% HQ", True, 1, False),
    "fid": MetricInfo("FID", False, 2, True),
    "is_mean": MetricInfo("IS", True, 2, True),
    "kid_mean": MetricInfo("KID", False, 4, True),
    "precision": MetricInfo("precision", True, 3, True),
    "recall": MetricInfo("recall", True, 3, True),
}
PAPER_METRIC = {"fid": "fid", "is_mean": "is"}
FULL_EVAL_MARK = "†"  # a paper-row cell from a re-evaluation of the chosen checkpoint after training
WITHIN_NOISE, BEYOND_NOISE = "≈", "*"
ALPHA = 0.05


# ----------------------------------------------------------------------------------------------------
# The table model every renderer reads.


@dataclass
class Stat:
    """Our value of one cell: mean and sample std over the seeds of one protocol."""

    mean: float
    std: float | None
    n: int
    seeds: tuple[int, ...]
    marker: str  # the cell's footnote marker: a protocol letter, FULL_EVAL_MARK, or ""
    runs: tuple[str, ...]
    rank_note: str = ""  # a FID from N ≤ D samples on a side: why (fid.rank_deficiency_note); marked RANK_MARK


@dataclass
class Column:
    key: str
    heading: str  # the dataset over the metric ("CelebA-HQ 128"), "" in tables of one dataset
    metric: str  # a METRICS key
    paper: bool  # whether the column has "paper" and "Δ" beside "ours"
    dataset: str = ""  # the dataset its cells belong to, for the CSV; "" when each row says

    @property
    def info(self) -> MetricInfo:
        return METRICS[self.metric]


@dataclass
class Entry:
    ours: Stat | None = None
    paper: PaperValue | None = None
    ours_bold: bool = False
    paper_bold: bool = False
    paper_marker: str = ""  # the source's number, when a table cites more than one source
    comparable: bool | None = None  # ours under the paper's protocol; None where no paper protocol applies
    protocol_id: str = ""  # the appendix entry of ours's protocol
    p_value: float | None = None  # of the test whether ours differs from the paper beyond noise

    @property
    def delta(self) -> float | None:
        """ours − paper, only where ours was measured under the paper's protocol."""
        if self.ours is None or self.paper is None or not self.comparable:
            return None
        return self.ours.mean - self.paper.value

    @property
    def noise_mark(self) -> str:
        if self.delta is None or self.p_value is None:
            return ""
        return WITHIN_NOISE if self.p_value >= ALPHA else BEYOND_NOISE


@dataclass
class Row:
    group: str  # the block's heading ("Standard CNN"), "" in tables without blocks
    label: str
    entries: list[Entry]
    extra: list[str] = field(default_factory=list)  # text cells, one per Table.extra_columns
    block: str = ""  # cnn, resnet, nas, real; the model architecture in tables without blocks
    method: str = ""  # the registry name (gn), "real", or "" for rows that are not a method
    cr: str = ""  # "", "cr" or "bcr"
    dataset: str = ""  # for tables whose columns do not name a dataset


@dataclass
class Table:
    key: str
    title: str
    label_heading: str
    columns: list[Column]
    rows: list[Row]
    extra_columns: list[str] = field(default_factory=list)
    footnotes: list[tuple[str, str]] = field(default_factory=list)  # (marker, text)
    notes: list[str] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, path relative to the report)
    bold: bool = True  # whether the table marks the best value per block and column
    protocol: str = ""  # the table's protocol line, shown under it
    kind: str = "generic"  # paper, other, generic, runs
    selector: str = ""  # the --tables name that selects it


@dataclass
class Report:
    tables: list[Table]
    evaluations: list[tuple[str, str]] = field(default_factory=list)  # (E1, every field and fingerprint)
    protocols: list[tuple[str, str]] = field(default_factory=list)  # (protocol id, its evaluation and the rest)


# ----------------------------------------------------------------------------------------------------
# Classifying runs.


def method_key(config: dict[str, Any]) -> str:
    """`gn`, `gn-cr` (consistency regularization on reals), `gn-bcr` (on reals and fakes)."""
    name = str(config.get("method.name", "none"))
    if float(config.get("method.cr_lambda", 0.0) or 0.0) > 0:
        return f"{name}-bcr" if config.get("method.bcr") else f"{name}-cr"
    return name


def method_label(key: str) -> str:
    base, cr = split_key(key)
    return METHODS.get(base, base) + {"": "", "cr": "-CR", "bcr": "-bCR"}[cr]


def split_key(key: str) -> tuple[str, str]:
    """`gn-cr` -> ("gn", "cr"); `gn` -> ("gn", "")."""
    for suffix in ("-bcr", "-cr"):
        if key.endswith(suffix):
            return key[: -len(suffix)], suffix[1:]
    return key, ""


def method_order(key: str) -> tuple[int, str, int, str]:
    base, cr = split_key(key)
    rank = METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER)
    return rank, base, ["", "cr", "bcr"].index(cr), key


def paper_dataset(config: dict[str, Any]) -> str | None:
    """The papers' dataset a run belongs to (cifar10, stl10, celebahq128, celebahq256), or None."""
    name = str(config.get("data.name", ""))
    if name in DATASET_ALIASES:
        return DATASET_ALIASES[name]
    if name in CELEBAHQ_NAMES or name.startswith("celebahq"):
        size = int(config.get("data.size", 0) or 0)
        if not size:
            arch = str(config.get("model.arch", ""))
            size = int("".join(ch for ch in arch if ch.isdigit()) or 0)
        if size in (128, 256):
            return f"celebahq{size}"
    return None


def arch_family(config: dict[str, Any]) -> str | None:
    return ARCH_FAMILIES.get(str(config.get("model.arch", "")))


def conditional(config: dict[str, Any]) -> bool:
    """Whether the run's model is class-conditional (its recipe gives it classes)."""
    return any(int(config.get(key, 0) or 0) > 0 for key in CLASS_KEYS)


def paper_recipe_name(dataset: str, arch: str, key: str) -> str:
    """The shipped recipe of one paper configuration: cifar10_cnn_gn_cr, celebahq128_resnet_sn, ..."""
    base, cr = split_key(key)
    return f"{dataset}_{arch}_{RECIPE_TAGS.get(base, base)}{'_' + cr if cr else ''}"


def layout_of(run: RunResult) -> str:
    """The paper table a run belongs to (cifar10, stl10, biggan, celebahq), or generic. Conditional and
    unconditional runs never share a table: the papers' conditional numbers are BigGAN's on CIFAR-10 alone."""
    dataset, family = paper_dataset(run.config), arch_family(run.config)
    for layout in LAYOUTS:
        if conditional(run.config) == layout.conditional and dataset in layout.datasets and family in layout.blocks:
            return layout.key
    return "generic"


# ----------------------------------------------------------------------------------------------------
# Protocols: what must agree before runs are averaged, and how they are described.

ROW_KEYS = ("name", "seed", "method.name", "method.cr_lambda", "method.bcr")
# Recipe keys that only say how the evaluation was made: the rows themselves are checked for what they change
# (samples, reference split, generator, sampling mode), so a run scored again after training is not held to its
# recipe's in-training settings.
EVALUATION_KEYS = ("eval.num_samples", "eval.metrics", "eval.ref_split", "eval.backend", "eval.bn_mode", "eval.select")


def differences(ours: dict[str, Any], reference: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """(key, ours, reference) for every semantic key that differs, sorted by key."""
    a, b = semantic(ours, ROW_KEYS), semantic(reference, ROW_KEYS)
    found = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, _ABSENT) != b.get(key, _ABSENT):
            found.append((key, _show(a.get(key, _ABSENT)), _show(b.get(key, _ABSENT))))
    return tuple(found)


_ABSENT = object()


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, str):
        return repr(value).replace("'", '"')
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class Protocol:
    """Everything that must agree before two runs' numbers share a cell's mean."""

    generator: str
    selection: str
    selection_kind: str  # in-training, or the checkpoint label of an evaluation after training (best, step-N)
    training: tuple[tuple[str, str, str], ...]  # differences from the reference recipe
    reference: tuple[str, str]  # what `training` is measured against, in words: in full, and short
    evaluation: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]  # (metric, fingerprint, fields)
    every: int  # in-training evaluation interval
    ema_decay: float
    steps: int = 0  # train.steps

    @property
    def id(self) -> str:
        """A short stable name for the appendix and the CSV: the same protocol gets the same id in every report."""
        text = json.dumps(
            [self.generator, self.selection, self.selection_kind, self.training, self.reference, self.evaluation],
            default=str,
        )
        return "p" + hashlib.sha256(text.encode()).hexdigest()[:8]

    def field(self, name: str, metric: str = "fid") -> str | None:
        """One evaluation field of `metric`'s rows (or of any metric's when `metric` has none)."""
        for found_metric, _, fields in sorted(self.evaluation, key=lambda item: item[0] != metric):
            values = dict(fields)
            if name in values and (found_metric == metric or metric not in self.metrics):
                return values[name]
        return None

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(metric for metric, _, _ in self.evaluation)


def protocol_of(
    run: RunResult,
    measurement: Measurement,
    metrics: Iterable[str],
    training: tuple[tuple[str, str, str], ...],
    reference: tuple[str, str],
) -> Protocol:
    evaluation = tuple(
        (metric, measurement.values[metric].fingerprint, measurement.values[metric].protocol)
        for metric in metrics
        if metric in measurement.values
    )
    return Protocol(
        generator=run.generator,
        selection=measurement.selection,
        selection_kind=measurement.checkpoint,
        training=training,
        reference=reference,
        evaluation=evaluation,
        every=int(run.get("eval.every", 0) or 0),
        ema_decay=float(run.get("train.ema_decay", 0.0) or 0.0),
        steps=int(run.get("train.steps", 0) or 0),
    )


# How the appendix names the protocol columns, in order. Image metrics always name the first seven ("unknown" when
# a row lacks them); 2-D measures have no extractor, resize or quantization to name.
FIELD_WORDS = (
    ("n_fake", "n_fake"),
    ("n_real", "n_real"),
    ("reference", "reference"),
    ("extractor", "extractor"),
    ("weights_hash", "weights"),
    ("resize", "resize"),
    ("quantize", "quantized"),
    ("precision", "precision"),
    ("bn_mode", "BatchNorm"),
    ("sample_seed", "sample seed"),
    ("params", "settings"),
    ("backend", "backend"),
    ("protocol_version", "protocol version"),
    ("versions", "versions"),
)
REQUIRED_IMAGE = 7
POINT_FIELDS = ("n_fake", "reference", "sample_seed", "params", "protocol_version", "versions")
HIDDEN_FIELDS = ("ref_key", "generator")  # folded into others: the reference, the generator sentence


def evaluation_words(fields: dict[str, str], image: bool) -> str:
    fields = {name: value for name, value in fields.items() if value != "" and name not in HIDDEN_FIELDS}
    reference = " ".join(part for part in (fields.pop("ref_dataset", ""), fields.pop("ref_split", "")) if part)
    ref_hash = fields.pop("ref_hash", "")
    if reference:
        fields["reference"] = reference + (f" (data {ref_hash[:8]})" if ref_hash else "")
    if "versions" in fields:
        fields["versions"] = _versions(fields["versions"])
    words = []
    for index, (name, shown) in enumerate(FIELD_WORDS):
        if image:
            wanted = name in fields or index < REQUIRED_IMAGE
        else:
            wanted = name in POINT_FIELDS and (name in fields or name == "n_fake")
        if wanted:
            words.append(f"{shown} {fields.get(name, 'unknown')}")
    known = {name for name, _ in FIELD_WORDS}
    if image:  # columns added to the metrics after this report was written: still shown, never dropped
        words += [f"{name} {fields[name]}" for name in sorted(set(fields) - known)]
    return ", ".join(words)


def _versions(text: str) -> str:
    """The metrics' `versions` JSON ({"torch": "2.4", ...}) as "torch 2.4, ..."."""
    try:
        found = json.loads(text)
    except ValueError:
        return text
    if not isinstance(found, dict):
        return text
    return ", ".join(f"{name} {version}" for name, version in sorted(found.items()))


def generator_words(protocol: Protocol) -> str:
    if protocol.generator == EXTERNAL:
        return "samples read from files, not drawn from a generator of ours"
    if protocol.generator == "ema":
        return f"EMA generator (decay {protocol.ema_decay:g})"
    return "raw generator" + (" (no EMA in this recipe)" if protocol.ema_decay == 0 else "")


def selection_words(protocol: Protocol) -> str:
    if protocol.selection_kind == IN_TRAINING:
        every = f" (every {protocol.every} steps)" if protocol.every else ""
        return f"the in-training evaluation{every} with the {protocol.selection}"
    return protocol.selection


def training_words(protocol: Protocol) -> str:
    full, short = protocol.reference
    if protocol.training:
        changes = "; ".join(f"{key} = {ours} ({short}: {theirs})" for key, ours, theirs in protocol.training)
        return f"training differs from the {full}: {changes}"
    return f"training as the {full}"


def describe(protocol: Protocol) -> str:
    """A footnote: generator, selection and training, without the evaluation's fields (those are in the appendix)."""
    parts = [generator_words(protocol), selection_words(protocol)]
    if protocol.generator != EXTERNAL:  # images made elsewhere were not trained by the recipe they are filed under
        parts.append(training_words(protocol))
    return _sentences(parts) + f" Evaluation: protocol {protocol.id} (appendix)."


def evaluation_entry(protocol: Protocol) -> str:
    """Every field of a protocol's evaluation, fingerprints included: printed once per report, in its appendix.
    Fields the metrics share are named once; each metric then names its own settings and fingerprint."""
    image = any(METRICS[m].image if m in METRICS else True for m in protocol.metrics)
    fields = [dict(found) for _, _, found in protocol.evaluation]
    if not fields:
        return "No metric rows."
    common = {name: value for name, value in fields[0].items() if all(f.get(name) == value for f in fields)}
    common.pop("params", None)
    parts = [evaluation_words(common, image)]
    words = dict(FIELD_WORDS)
    for (metric, fingerprint, _), found in zip(protocol.evaluation, fields, strict=True):
        label = METRICS[metric].label if metric in METRICS else metric
        own = [f"{words.get(name, name)} {value}" for name, value in sorted(found.items()) if name not in common]
        parts.append(f"{label}: {', '.join(own + [f'fingerprint {fingerprint or DASH}'])}")
    return ". ".join(parts) + "."


def protocol_entry(protocol: Protocol, evaluation: str) -> str:
    """A cell protocol in the appendix: its evaluation (by name), generator, selection and training."""
    if protocol.generator == REAL_GENERATOR:
        return _sentences([f"evaluation {evaluation}", protocol.selection])
    parts = [f"evaluation {evaluation}", generator_words(protocol), selection_words(protocol)]
    if protocol.generator == EXTERNAL:
        return _sentences(parts)
    return _sentences([*parts, training_words(protocol)])


DASH = "–"


def _sentences(parts: list[str]) -> str:
    return ". ".join(part[0].upper() + part[1:] for part in parts if part) + "."


class Markers:
    """Footnote letters for protocols, in order of first use: a, b, ..., z, aa, ab, ..."""

    def __init__(self) -> None:
        self.order: list[Protocol] = []

    def __call__(self, protocol: Protocol) -> str:
        if protocol not in self.order:
            self.order.append(protocol)
        return self.letter(self.order.index(protocol))

    @staticmethod
    def letter(index: int) -> str:
        letters = ""
        index += 1
        while index:
            index, rest = divmod(index - 1, 26)
            letters = chr(ord("a") + rest) + letters
        return letters


# ----------------------------------------------------------------------------------------------------
# The paper's protocol: which cells may stand in a paper row and get a Δ.


def paper_gaps(
    protocol: Protocol, paper: PaperProtocol | None, recipe_found: bool, metrics: Iterable[str]
) -> list[str]:
    """Where a cell's protocol departs from the paper's, in words; empty when the cell is comparable."""
    if protocol.generator == EXTERNAL:  # never a paper cell, whatever else agrees
        return ["images made elsewhere, not samples of a run of ours"]
    gaps: list[str] = []
    if not recipe_found:
        gaps.append(f"no paper recipe to compare the training with ({protocol.reference[0]})")
    gaps += [f"{key} = {ours} (paper recipe: {theirs})" for key, ours, theirs in protocol.training]
    if paper is None:
        return gaps + ["the papers state no protocol for this dataset"]
    for metric in metrics:
        fields = next((dict(f) for m, _, f in protocol.evaluation if m == metric), None)
        if fields is None:
            continue
        n_fake = fields.get("n_fake")
        if paper.n_fake is not None and n_fake != str(paper.n_fake):
            gaps.append(f"n_fake {n_fake} (paper: {paper.n_fake})")
        if metric != "fid":  # IS has no reference statistics
            continue
        if paper.ref_dataset is not None and fields.get("ref_dataset") != paper.ref_dataset:
            gaps.append(f"reference statistics of {fields.get('ref_dataset')} (paper: {paper.ref_dataset})")
        if paper.ref_split is not None and fields.get("ref_split") != paper.ref_split:
            gaps.append(f"reference split {fields.get('ref_split')} (paper: {paper.ref_split})")
        if paper.n_real is not None and fields.get("n_real") != str(paper.n_real):
            gaps.append(f"reference statistics of {fields.get('n_real')} images (paper: {paper.n_real})")
    if protocol.generator != paper.generator:
        words = {"ema": "EMA", "raw": "raw"}
        gaps.append(f"{words.get(protocol.generator, protocol.generator)} generator (paper: {words[paper.generator]})")
    if protocol.selection_kind not in (IN_TRAINING, "best") and not protocol.selection.startswith("the step-"):
        gaps.append(f"{protocol.selection} (paper: the best FID over training)")
    return list(dict.fromkeys(gaps))


def noise_test(ours: Stat, paper: PaperValue) -> float | None:
    """p of a two-sided test that ours and the paper differ: Welch's t-test where the paper says over how many runs
    its ± is, else a one-sample t-test of our seeds against the paper's mean; None for fewer than two seeds."""
    from scipy import stats  # only where a paper table is built

    if ours.n < 2 or ours.std is None:
        return None
    if paper.runs is not None and paper.runs >= 2 and paper.std is not None:
        if ours.std == 0 and paper.std == 0:
            return 1.0 if ours.mean == paper.value else 0.0
        result = stats.ttest_ind_from_stats(
            ours.mean, ours.std, ours.n, paper.value, paper.std, paper.runs, equal_var=False
        )
        return float(result.pvalue)
    if ours.std == 0:
        return 1.0 if ours.mean == paper.value else 0.0
    t = (ours.mean - paper.value) / (ours.std / math.sqrt(ours.n))
    return float(2 * stats.t.sf(abs(t), ours.n - 1))


# ----------------------------------------------------------------------------------------------------
# Cells: one (row, column) of measured values, split by protocol.


def aggregate(values: list[tuple[int, float, str]], marker: str, rank_note: str = "") -> Stat:
    """(seed, value, run) triples of one protocol -> mean and sample standard deviation."""
    numbers = [value for _, value, _ in values]
    std = statistics.stdev(numbers) if len(numbers) > 1 else None
    return Stat(
        mean=statistics.fmean(numbers),
        std=std,
        n=len(numbers),
        seeds=tuple(sorted(seed for seed, _, _ in values)),
        marker=marker,
        runs=tuple(run for _, _, run in values),
        rank_note=rank_note,
    )


def cell_rank_note(fields: dict[str, str] | None, metric: str) -> str:
    """The rank-deficiency note of a `metric` cell measured under the protocol `fields` (a FID from N ≤ D samples on
    a side: the row's n_fake, n_real and its extractor's feature width); "" for any other cell."""
    if metric != "fid" or not fields:
        return ""
    return rank_deficiency_note(fields.get("n_fake"), fields.get("n_real"), feature_dim(fields.get("extractor", "")))


def _protocol_note(protocol: Protocol, metric: str) -> str:
    fields = next((dict(found) for m, _, found in protocol.evaluation if m == metric), None)
    return cell_rank_note(fields, metric)


def note_rank_deficiency(table: Table) -> None:
    """One footnote under a table with FID cells from N ≤ D samples (their cells carry RANK_MARK), naming each N."""
    notes = [entry.ours.rank_note for row in table.rows for entry in row.entries if entry.ours and entry.ours.rank_note]
    if notes:
        table.footnotes.append((RANK_MARK, " ".join(f"FID from {note}." for note in dict.fromkeys(notes))))


@dataclass
class _Group:
    """The runs of one (block, method, protocol): per column key, [(seed, value, run)]."""

    block: str
    method: str
    protocol: Protocol
    comparable: bool
    gaps: list[str]
    dataset: str = ""
    values: dict[str, list[tuple[int, float, str]]] = field(default_factory=dict)
    label: str = ""  # the row's label when not the method's: an external entry's name

    @property
    def row_label(self) -> str:
        return self.label or method_label(self.method)

    @property
    def row_method(self) -> tuple[str, str]:
        """(method, cr) of its row: an external entry's method is EXTERNAL, whatever recipe scored it."""
        return (EXTERNAL, "") if self.label else split_key(self.method)

    def add(self, column: str, seed: int, value: float, run: str) -> None:
        self.values.setdefault(column, []).append((seed, value, run))

    @property
    def n(self) -> int:
        return max((len(found) for found in self.values.values()), default=0)

    def stat(self, column: str, marker: str) -> Stat | None:
        found = self.values.get(column)
        return aggregate(found, marker, _protocol_note(self.protocol, column.split("/")[-1])) if found else None


def mark_best(table: Table) -> None:
    """Bold the best of ours and the best paper value per block and column; the Real data block never."""
    for index, column in enumerate(table.columns):
        info = column.info
        pick = max if info.higher_is_better else min
        blocks: dict[str, list[Entry]] = {}
        for row in table.rows:
            if row.block != "real":
                blocks.setdefault(row.group, []).append(row.entries[index])
        for entries in blocks.values():
            ours = [entry for entry in entries if entry.ours is not None]
            if len(ours) >= 2:
                best = pick(round(entry.ours.mean, info.decimals) for entry in ours if entry.ours)
                for entry in ours:
                    if entry.ours is not None and round(entry.ours.mean, info.decimals) == best:
                        entry.ours_bold = True
            papers = [entry for entry in entries if entry.paper is not None]
            if len(papers) >= 2:
                best_paper = pick(entry.paper.value for entry in papers if entry.paper)
                for entry in papers:
                    if entry.paper is not None and entry.paper.value == best_paper:
                        entry.paper_bold = True


def cite_sources(table: Table) -> None:
    """One note naming the paper and tables when one source is cited, numbered markers when several are."""
    sources: dict[str, list[str]] = {}
    for row in table.rows:
        for entry in row.entries:
            if entry.paper is not None:
                tables = sources.setdefault(entry.paper.source, [])
                if entry.paper.table not in tables:
                    tables.append(entry.paper.table)
    if not sources:
        return
    numbers = {source: str(index + 1) for index, source in enumerate(sources)}
    if len(sources) > 1:
        for row in table.rows:
            for entry in row.entries:
                if entry.paper is not None:
                    entry.paper_marker = numbers[entry.paper.source]
    for source, tables in sources.items():
        prefix = f"[{numbers[source]}] " if len(sources) > 1 else ""
        table.notes.append(f"{prefix}Paper values as printed in {source}; tables: {'; '.join(tables)}.")


# ----------------------------------------------------------------------------------------------------
# The paper tables.

RecipeLookup = Callable[[str], dict[str, Any] | None]  # shipped recipe name -> flattened config, or None


def _finished(runs: Iterable[RunResult]) -> list[RunResult]:
    return [run for run in runs if run.status == "finished" and run.measurements]


_PAPER_REFERENCE = ("paper recipe of its row (<dataset>_<arch>_<method>[_cr].toml)", "paper recipe")


def _paper_groups(layout: Layout, runs: list[RunResult], papers: PaperNumbers, lookup: RecipeLookup) -> list[_Group]:
    """Each finished run's measurement, grouped by (block, method, protocol); one measurement per run: one under the
    paper's protocol when the run has one, the preferred (`Measurement.rank`) among those."""
    groups: dict[tuple[str, str, Protocol], _Group] = {}
    for run in _finished(runs):
        dataset, family, key = paper_dataset(run.config), arch_family(run.config), method_key(run.config)
        assert dataset is not None and family is not None
        recipe_name = paper_recipe_name(dataset, family, key)
        reference_config = lookup(recipe_name)
        if reference_config is None:  # group by the recipe itself, so different recipes are never averaged
            digest = hashlib.sha256(config_key(run.config, ROW_KEYS).encode()).hexdigest()[:8]
            training: tuple[tuple[str, str, str], ...] = ()
            reference = (f"recipe {digest} (no paper recipe {recipe_name}.toml was found to compare with)", "")
        else:
            every = differences(run.config, reference_config)
            training, reference = tuple(d for d in every if d[0] not in EVALUATION_KEYS), _PAPER_REFERENCE
        options = []
        for measurement in run.measurements:
            protocol = protocol_of(run, measurement, layout.metrics, training, reference)
            gaps = paper_gaps(protocol, papers.protocols.get(dataset), reference_config is not None, layout.metrics)
            options.append((not gaps, measurement.rank(), protocol, gaps, measurement))
        comparable, _, protocol, gaps, measurement = max(options, key=lambda option: option[:2])
        group = groups.setdefault(
            (family, key, protocol), _Group(family, key, protocol, comparable, gaps, dataset, label=_entry_label(run))
        )
        for metric in layout.metrics:
            if metric in measurement.values:
                group.add(f"{dataset}/{metric}", run.seed, measurement.values[metric].value, run.rel)
    return list(groups.values())


REAL_GENERATOR = "real"


def _entry_label(run: RunResult) -> str:
    """The row label of an external entry (its name, marked), "" for a run of ours (labelled by its method)."""
    return f"{run.name} ({EXTERNAL})" if run.external else ""


def _real_cells(
    layout: Layout, reference: pd.DataFrame | None, papers: PaperNumbers, chosen: list[_Group]
) -> dict[str, tuple[Protocol, dict[str, float]]]:
    """Per dataset of `layout`, our Real data values (ganbench.report.real's rows of the reference images) measured
    as the papers' protocol says: its reference dataset and split, its n_fake (or the whole split when smaller);
    with the extractor of the paper rows' cells when several were used."""
    found: dict[str, tuple[Protocol, dict[str, float]]] = {}
    if reference is None or reference.empty or "ref_dataset" not in reference.columns:
        return found
    weights = {g.protocol.field("weights_hash") for g in chosen}
    for dataset in layout.datasets:
        paper = papers.protocols.get(dataset)
        if paper is None or paper.ref_dataset is None:
            continue
        rows = reference[
            (reference["ref_dataset"].astype(str) == paper.ref_dataset)
            & (reference["ref_split"].astype(str) == str(paper.ref_split))
        ]
        if paper.n_fake is not None and not rows.empty:
            whole = rows["n_fake"].astype(int) == rows["n_real"].astype(int)
            rows = rows[
                (rows["n_fake"].astype(int) == paper.n_fake) | (whole & (rows["n_real"].astype(int) < paper.n_fake))
            ]
        if rows.empty:
            continue
        matching = rows[rows["weights_hash"].astype(str).isin(weights)] if "weights_hash" in rows.columns else rows
        rows = matching if not matching.empty else rows
        rows = rows[rows["weights_hash"] == rows["weights_hash"].iloc[-1]] if "weights_hash" in rows else rows
        values: dict[str, float] = {}
        evaluation = []
        for metric in layout.metrics:
            chosen_rows = rows[rows["metric"] == metric]
            if chosen_rows.empty:
                continue
            row = chosen_rows.iloc[-1].to_dict()
            values[metric] = float(row["value"])
            fields = tuple(
                (name, _text(value))
                for name, value in sorted(row.items())
                if name not in RECORD_COLUMNS
                and not (value is None or (isinstance(value, float) and math.isnan(value)))
            )
            evaluation.append((metric, str(row.get("fingerprint", "")), fields))
        if not values:
            continue
        n = int(rows["n_fake"].iloc[-1])
        selection = (
            f"the reference images themselves, the first {n:,} of the {paper.ref_dataset} {paper.ref_split} split, "
            "scored as a generator's samples (`ganbench report --score-real`)"
        )
        protocol = Protocol(
            REAL_GENERATOR, selection, "reference", (), ("reference images", ""), tuple(evaluation), 0, 0.0
        )
        found[dataset] = (protocol, values)
    return found


def _row_keys(layout: Layout, block: str, papers: PaperNumbers, measured: Iterable[str]) -> list[str]:
    """The paper's rows of a block in the paper's order (the layout's own rows where papers.toml holds none of the
    table), then measured methods not among them, in METHOD_ORDER."""
    keys: list[str] = []
    for dataset in layout.datasets:
        keys += [key for key in papers.rows(dataset, block) if key not in keys]
    if not _transcribed(layout, papers):
        keys = list(layout.rows)
    return keys + sorted({key for key in measured if key not in keys}, key=method_order)


def _transcribed(layout: Layout, papers: PaperNumbers) -> bool:
    """Whether papers.toml holds any of the paper's cells of this table."""
    return any(papers.rows(dataset, block) for dataset in layout.datasets for block in layout.blocks)


def paper_tables(
    layout: Layout,
    runs: list[RunResult],
    papers: PaperNumbers,
    lookup: RecipeLookup,
    reference: pd.DataFrame | None = None,
    always: bool = False,
    seen: dict[str, Protocol] | None = None,
) -> list[Table]:
    """The paper table of `layout` (one row per method and block) and the table of its cells under other protocols."""
    mine = [run for run in runs if layout_of(run) == layout.key]
    if not mine and not always:
        return []
    several = len(layout.datasets) > 1
    columns = [
        Column(f"{d}/{m}", DATASETS[d] if several else "", m, paper=True, dataset=d)
        for d in layout.datasets
        for m in layout.metrics
    ]
    groups = _paper_groups(layout, mine, papers, lookup)
    if seen is not None:
        seen.update((group.protocol.id, group.protocol) for group in groups)
    # Per dataset (a column group: CelebA-HQ 128 and 256 share the ResNet rows), block and method: the comparable
    # cell with most seeds; an evaluation after training before an in-training one.
    chosen: dict[tuple[str, str, str], _Group] = {}
    for group in groups:
        if not group.comparable:
            continue
        rank = (group.protocol.selection_kind != IN_TRAINING, group.n)
        current = chosen.get(_slot(group))
        if current is None or rank > (current.protocol.selection_kind != IN_TRAINING, current.n):
            chosen[_slot(group)] = group
    real = _real_cells(layout, reference, papers, list(chosen.values()))
    if seen is not None:
        seen.update((protocol.id, protocol) for protocol, _ in real.values())
    rows: list[Row] = []
    for block in layout.blocks:
        measured = [method for (_, b, method) in chosen if b == block]
        for key in _row_keys(layout, block, papers, measured):
            entries = []
            for column in columns:
                dataset, metric = column.key.split("/")
                found = chosen.get((dataset, block, key))
                paper = papers.get(dataset, block, key, PAPER_METRIC.get(metric, metric))
                ours = None
                if found is not None:
                    mark = FULL_EVAL_MARK if found.protocol.selection_kind != IN_TRAINING else ""
                    ours = found.stat(column.key, mark)
                elif block == "real" and dataset in real and metric in real[dataset][1]:
                    value = real[dataset][1][metric]
                    ours = Stat(value, None, 1, (), "", (), _protocol_note(real[dataset][0], metric))
                entry = Entry(ours=ours, paper=paper, comparable=True if ours is not None else None)
                if found is not None and ours is not None:
                    entry.protocol_id = found.protocol.id
                elif ours is not None:
                    entry.protocol_id = real[dataset][0].id
                if ours is not None and paper is not None and found is not None:
                    entry.p_value = noise_test(ours, paper)
                entries.append(entry)
            base, cr = split_key(key)
            rows.append(Row(GROUPS[block], method_label(key), entries, block=block, method=base, cr=cr))
    table = Table(
        key=layout.key,
        title=layout.title,
        label_heading="Method",
        columns=columns,
        rows=rows,
        kind="paper",
        selector=layout.key,
    )
    table.protocol = _protocol_line(layout, list(chosen.values()), papers)
    if any(group.protocol.selection_kind != IN_TRAINING for group in chosen.values()):
        table.footnotes.append(
            (FULL_EVAL_MARK, "the chosen checkpoint evaluated again after training (`ganbench eval --checkpoint best`)")
        )
    mark_best(table)
    cite_sources(table)
    if not _transcribed(layout, papers):
        table.notes.append(
            "Paper values not transcribed: papers.toml holds none of this table's published numbers yet (no "
            "source was at hand to read them from), so the paper column and Δ stay empty rather than guessed."
        )
    table.notes.append(_PAPER_NOTE)
    _note_unfinished(table, mine)
    other = _other_table(layout, [group for group in groups if chosen.get(_slot(group)) is not group])
    if other is not None:
        table.notes.append(f"Cells measured under other protocols: table “{other.title}”.")
    return [table] + ([other] if other is not None else [])


def _slot(group: _Group) -> tuple[str, str, str]:
    """Where a cell of ours stands in a paper table: its dataset's columns, its block and method's row."""
    return group.dataset, group.block, group.method


_PAPER_NOTE = (
    "Ours: mean ± sample standard deviation over seeds of the runs under the paper's protocol (one cell per method "
    "and block; cells under other protocols are in the table of other protocols, without Δ). Δ = ours − paper. "
    "Bold: the best value per block and column. – means not reported."
)


def _protocol_line(layout: Layout, groups: list[_Group], papers: PaperNumbers) -> str:
    """What every cell of ours in the paper rows was measured with, and the test behind the noise marks."""
    described = [
        (f"{DATASETS[d]}: " if len(layout.datasets) > 1 else "") + papers.protocols[d].description
        for d in layout.datasets
        if d in papers.protocols
    ]
    paper = "Paper: " + "; ".join(described) + "." if described else ""
    if not groups:
        return f"Ours: no finished run under the paper's protocol yet. {paper}".strip()

    def values(read: Callable[[Protocol], Any]) -> str:
        found = list(dict.fromkeys(str(read(group.protocol)) for group in groups))
        return " / ".join(found)

    def samples(protocol: Protocol) -> str:
        n = protocol.field("n_fake")
        return f"{int(n):,}" if n and n.isdigit() else str(n)

    def statistics_of(protocol: Protocol) -> str:
        n_real = protocol.field("n_real")
        count = f"{int(n_real):,} images" if n_real and n_real.isdigit() else "size unknown"
        return f"{protocol.field('ref_dataset')} {protocol.field('ref_split')} ({count})"

    def selection(protocol: Protocol) -> str:
        every = f", evaluated every {protocol.every:,} steps" if protocol.every else ""
        return f"best FID over training{every}"

    seeds = {group.n for group in groups}
    parts = [
        f"{values(samples)} samples",
        f"FID against {values(statistics_of)} statistics" if "fid" in layout.metrics else "",
        f"{values(lambda p: p.generator)} generator",
        values(selection) + (", IS at that evaluation" if "is_mean" in layout.metrics else ""),
        f"{values(lambda p: f'{p.steps:,}')} steps trained",
        f"n = {'/'.join(str(n) for n in sorted(seeds))} seeds per cell",
    ]
    test = (
        f"{WITHIN_NOISE}: |Δ| within noise, {BEYOND_NOISE}: p < {ALPHA} in a two-sided Welch's t-test of our seeds "
        "against the paper's mean ± std (a one-sample t-test against the paper's mean where the paper does not say "
        "over how many runs its ± is); no mark for one seed"
    )
    ours = "Ours: " + "; ".join(part for part in parts if part) + ". " + test + "."
    return f"{ours} {paper}".strip()


def _other_table(layout: Layout, groups: list[_Group]) -> Table | None:
    """The cells of `layout`'s datasets measured under another protocol than the paper's: ours only, no Δ."""
    if not groups:
        return None
    columns = [
        Column(f"{d}/{m}", DATASETS[d] if len(layout.datasets) > 1 else "", m, paper=False, dataset=d)
        for d in layout.datasets
        for m in layout.metrics
    ]
    markers = Markers()
    order = {block: index for index, block in enumerate(layout.blocks)}
    groups = sorted(groups, key=lambda g: (order.get(g.block, len(order)), method_order(g.method)))
    rows = []
    for group in groups:
        marker = markers(group.protocol)
        entries = [
            Entry(ours=group.stat(column.key, ""), comparable=group.comparable, protocol_id=group.protocol.id)
            for column in columns
        ]
        seeds = sorted({seed for found in group.values.values() for seed, _, _ in found})
        base, cr = group.row_method
        rows.append(
            Row(
                GROUPS.get(group.block, group.block),
                group.row_label,
                entries,
                extra=[marker, ", ".join(map(str, seeds))],
                block=group.block,
                method=base,
                cr=cr,
            )
        )
    table = Table(
        key=f"{layout.key}-other",
        title=f"{layout.title}: other protocols",
        label_heading="Method",
        columns=columns,
        rows=rows,
        extra_columns=["protocol", "seeds"],
        bold=False,
        kind="other",
        selector=layout.key,
    )
    for index, protocol in enumerate(markers.order):
        group = next(g for g in groups if g.protocol == protocol)
        if group.comparable:
            why = "the paper's protocol, but another cell of the same method stands in the paper row"
        else:
            why = "differs from the paper's protocol: " + "; ".join(group.gaps)
        table.footnotes.append((markers.letter(index), f"{why}. Protocol {protocol.id} (appendix)."))
    table.notes.append(
        "Not comparable with the papers' numbers, so no paper column and no Δ; each row is one protocol (letter), "
        "mean ± sample standard deviation over its seeds."
    )
    return table


def _note_unfinished(table: Table, runs: list[RunResult]) -> None:
    left = [run for run in runs if run.status != "finished" or not run.measurements]
    if left:
        states = Counter("no evaluations" if run.status == "finished" else run.status for run in left)
        words = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        table.notes.append(f"Not in this table ({words}): see the table of all runs.")


# ----------------------------------------------------------------------------------------------------
# Recipes matching no paper layout, and every run.


def generic_tables(runs: list[RunResult], seen: dict[str, Protocol] | None = None) -> list[Table]:
    """One summary per recipe name matching no paper layout: methods × (mean ± std over seeds) per metric."""
    names: dict[str, list[RunResult]] = {}
    for run in runs:
        if layout_of(run) == "generic":
            names.setdefault(run.name, []).append(run)
    tables = []
    for name in sorted(names):
        group = names[name]
        finished = _finished(group)
        present = {metric for run in finished for metric in run.values}
        metrics = [metric for metric in METRICS if metric in present]
        columns = [Column(metric, "", metric, paper=False) for metric in metrics]
        base = _most_common([semantic(run.config, ROW_KEYS) for run in finished])
        markers = Markers()
        cells: dict[tuple[str, Protocol], _Group] = {}
        for run in finished:
            training = differences(run.config, base)
            measurement = run.measurements[0]
            protocol = protocol_of(
                run, measurement, metrics, training, ("most common recipe of this table", "most common")
            )
            key = method_key(run.config)
            cell = cells.setdefault(
                (key, protocol),
                _Group(
                    str(run.get("model.arch", "")),
                    key,
                    protocol,
                    False,
                    [],
                    str(run.get("data.name", "")),
                    label=_entry_label(run),
                ),
            )
            for metric in metrics:
                if metric in measurement.values:
                    cell.add(metric, run.seed, measurement.values[metric].value, run.rel)
        if seen is not None:
            seen.update((protocol.id, protocol) for _, protocol in cells)
        rows: list[Row] = []
        for cell in sorted(cells.values(), key=lambda c: method_order(c.method)):
            marker = markers(cell.protocol)
            entries = [Entry(ours=cell.stat(c.key, marker), protocol_id=cell.protocol.id) for c in columns]
            seeds = sorted({seed for found in cell.values.values() for seed, _, _ in found})
            method, cr = cell.row_method
            rows.append(
                Row(
                    "",
                    cell.row_label,
                    entries,
                    extra=[", ".join(map(str, seeds))],
                    block=cell.block,
                    method=method,
                    cr=cr,
                    dataset=cell.dataset,
                )
            )
        table = Table(
            key=f"generic-{name}",
            title=f"{name}: methods over seeds",
            label_heading="Method",
            columns=columns,
            rows=rows,
            extra_columns=["seeds"],
            selector="other",
        )
        table.footnotes = [(markers.letter(i), describe(p)) for i, p in enumerate(markers.order)]
        _mark_best_per_protocol(table)
        table.notes.append(
            "Each run reports one evaluation: the best FID when the recipe measures FID, else the one with the most "
            "modes covered, then the highest % HQ (the rule that picks best.pt); mean ± sample standard deviation "
            "over (n=) seeds. Bold: the best value per column among cells of one protocol."
        )
        if not rows:
            table.notes.append("No finished run with evaluations yet.")
        _note_unfinished(table, group)
        tables.append(table)
    return tables


def _mark_best_per_protocol(table: Table) -> None:
    """Bold the best of ours per column among the cells of one protocol (a table without a paper protocol)."""
    for index, column in enumerate(table.columns):
        info = column.info
        pick = max if info.higher_is_better else min
        by_marker: dict[str, list[Entry]] = {}
        for row in table.rows:
            entry = row.entries[index]
            if entry.ours is not None:
                by_marker.setdefault(entry.ours.marker, []).append(entry)
        for entries in by_marker.values():
            if len(entries) < 2:
                continue
            best = pick(round(entry.ours.mean, info.decimals) for entry in entries if entry.ours)
            for entry in entries:
                if entry.ours is not None and round(entry.ours.mean, info.decimals) == best:
                    entry.ours_bold = True


def _most_common(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The configuration most runs share (the first seen of equally common ones); {} for none."""
    frozen = [config_key(config, ()) for config in configs]
    if not frozen:
        return {}
    counts = Counter(frozen)
    best = max(counts.values())
    return configs[next(i for i, key in enumerate(frozen) if counts[key] == best)]


def runs_table(runs: list[RunResult]) -> Table:
    """Every run, one row each, with its state and the values it reports."""
    present = {metric for run in runs for metric in run.values}
    metrics = [metric for metric in METRICS if metric in present]
    columns = [Column(metric, "", metric, paper=False) for metric in metrics]
    rows = []
    for run in runs:
        entries = []
        for metric in metrics:
            chosen = run.values.get(metric)
            stat = None
            if chosen is not None:
                note = cell_rank_note(dict(chosen.protocol), metric)
                stat = Stat(chosen.value, None, 1, (run.seed,), "", (run.rel,), note)
            entries.append(Entry(ours=stat))
        step = f"{run.step}/{run.steps}"
        chosen_at = "–" if run.selected_step is None else f"{run.selected_step} ({run.generator}, {run.selection_kind})"
        status = run.status + (f": {run.error}" if run.error else "")
        method = EXTERNAL if run.external else method_label(method_key(run.config))
        extra = [run.name, method, str(run.seed), status, step, chosen_at]
        rows.append(Row(group="", label=run.rel, entries=entries, extra=extra, method=method_key(run.config)))
    return Table(
        key="runs",
        title="All runs",
        label_heading="Run",
        columns=columns,
        rows=rows,
        extra_columns=["recipe", "method", "seed", "status", "step", "reported step (G, evaluation)"],
        notes=["Each run's reported evaluation (see above); runs not finished are included here."],
        bold=False,
        kind="runs",
        selector="runs",
    )


def arrange(
    runs: list[RunResult],
    papers: PaperNumbers,
    lookup: RecipeLookup,
    selected: Iterable[str] | None = None,
    reference: pd.DataFrame | None = None,
    explicit: bool | None = None,
) -> Report:
    """The tables `selected` names (TABLE_NAMES; default all) and the appendix of the protocols they cite; paper
    tables are shown without runs of theirs when `explicit` (default: when `selected` is given)."""
    wanted = set(TABLE_NAMES if selected is None else selected)
    explicit = selected is not None if explicit is None else explicit
    seen: dict[str, Protocol] = {}
    tables: list[Table] = []
    for layout in LAYOUTS:
        if layout.key in wanted:
            tables += paper_tables(layout, runs, papers, lookup, reference, always=explicit, seen=seen)
    if "other" in wanted:
        tables += generic_tables(runs, seen)
    if "runs" in wanted and runs:
        tables.append(runs_table(runs))
    for table in tables:
        note_rank_deficiency(table)
    cited = [entry.protocol_id for table in tables for row in table.rows for entry in row.entries if entry.protocol_id]
    report = Report(tables)
    names: dict[tuple[tuple[str, str], ...], str] = {}
    for pid in dict.fromkeys(cited):
        protocol = seen[pid]
        key = tuple((metric, fingerprint) for metric, fingerprint, _ in protocol.evaluation)
        if key not in names:
            names[key] = f"E{len(names) + 1}"
            report.evaluations.append((names[key], evaluation_entry(protocol)))
        report.protocols.append((pid, protocol_entry(protocol, names[key])))
    return report
