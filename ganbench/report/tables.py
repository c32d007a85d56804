"""Arrange run results into tables: the papers' layouts (CIFAR-10 / STL-10, CelebA-HQ), a summary per recipe
matching no layout, and a table of every run; each measured cell carries the protocol it was measured under.

Runs are averaged over seeds only when everything else agrees: the same recipe apart from the seed, the same
generator, the same selection rule and the same evaluation protocol (metric fingerprints). Anything else
becomes a separate cell with its own footnote marker, never a silent average.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ganbench.report.collect import RunResult, config_key, semantic
from ganbench.report.papers import PaperNumbers, PaperValue

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
}
GROUPS = {"cnn": "Standard CNN", "resnet": "ResNet", "nas": "Architecture search", "real": "Real data"}
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


# ----------------------------------------------------------------------------------------------------
# The table model every renderer reads.


@dataclass
class Stat:
    """Our value of one cell: mean and sample std over the seeds of one protocol."""

    mean: float
    std: float | None
    n: int
    seeds: tuple[int, ...]
    marker: str  # the protocol's footnote marker
    runs: tuple[str, ...]


@dataclass
class Column:
    key: str
    heading: str  # the dataset over the metric ("CIFAR-10"), "" in tables of one dataset
    metric: str  # a METRICS key
    paper: bool  # whether the column has "paper" and "Δ" beside "ours"

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

    @property
    def delta(self) -> float | None:
        if self.ours is None or self.paper is None:
            return None
        return self.ours.mean - self.paper.value


@dataclass
class Row:
    group: str
    label: str
    entries: list[Entry]
    extra: list[str] = field(default_factory=list)  # text cells, one per Table.extra_columns


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
    bold: bool = True  # whether the table marks the best value per column


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


def paper_recipe_name(dataset: str, arch: str, key: str) -> str:
    """The shipped recipe of one paper configuration: cifar10_cnn_gn_cr, celebahq128_resnet_sn, ..."""
    base, cr = split_key(key)
    return f"{dataset}_{arch}_{RECIPE_TAGS.get(base, base)}{'_' + cr if cr else ''}"


def layout_of(run: RunResult) -> str:
    """cifar-stl, celebahq, or generic."""
    dataset, family = paper_dataset(run.config), arch_family(run.config)
    if dataset in ("cifar10", "stl10") and family in ("cnn", "resnet"):
        return "cifar-stl"
    if dataset in ("celebahq128", "celebahq256") and family == "resnet":
        return "celebahq"
    return "generic"


# ----------------------------------------------------------------------------------------------------
# Protocols: what must agree before runs are averaged, and how a footnote describes it.

ROW_KEYS = ("name", "seed", "method.name", "method.cr_lambda", "method.bcr")


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
    selection_kind: str
    training: tuple[tuple[str, str, str], ...]  # differences from the reference recipe
    reference: tuple[str, str]  # what `training` is measured against, in words: in full, and short
    evaluation: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]  # (metric, fingerprint, fields)
    every: int  # in-training evaluation interval, for the footnote
    ema_decay: float
    dataset: str = ""  # the papers' dataset (cifar10, stl10, ...), whose protocol the footnote compares with


def protocol_of(
    run: RunResult,
    metrics: Iterable[str],
    training: tuple[tuple[str, str, str], ...],
    reference: tuple[str, str],
    dataset: str = "",
) -> Protocol:
    evaluation = tuple(
        (metric, run.values[metric].fingerprint, run.values[metric].protocol)
        for metric in metrics
        if metric in run.values
    )
    return Protocol(
        generator=run.generator,
        selection=run.selection,
        selection_kind=run.selection_kind,
        training=training,
        reference=reference,
        evaluation=evaluation,
        every=int(run.get("eval.every", 0) or 0),
        ema_decay=float(run.get("train.ema_decay", 0.0) or 0.0),
        dataset=dataset,
    )


# How a footnote names the protocol columns, in order. Image metrics always name the first seven ("unknown" when
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
    ("sample_seed", "sample seed"),
    ("params", "settings"),
    ("backend", "backend"),
    ("protocol_version", "protocol version"),
    ("versions", "versions"),
)
REQUIRED_IMAGE = 7
POINT_FIELDS = ("n_fake", "reference", "sample_seed", "params", "protocol_version", "versions")
HIDDEN_FIELDS = ("ref_key", "generator")  # folded into others: the reference, the generator sentence


def _evaluation_words(fields: dict[str, str], image: bool) -> str:
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


def describe(protocol: Protocol, paper_check: Callable[[Protocol], list[str]] | None = None) -> str:
    """One footnote: the evaluation protocol, the generator, the selection, the training recipe."""
    parts: list[str] = []
    by_words: dict[str, list[str]] = {}
    fingerprints: dict[str, list[str]] = {}
    for metric, fingerprint, fields in protocol.evaluation:
        info = METRICS.get(metric)
        words = _evaluation_words(dict(fields), info.image if info else True)
        by_words.setdefault(words, []).append(METRICS[metric].label if info else metric)
        fingerprints.setdefault(words, []).append(fingerprint or "none")
    for words, labels in by_words.items():
        prints = sorted(set(fingerprints[words]))
        parts.append(f"{', '.join(labels)}: {words}; fingerprint {', '.join(prints)}")
    if protocol.generator == "ema":
        parts.append(f"EMA generator (decay {protocol.ema_decay:g})")
    else:
        parts.append("raw generator" + (" (no EMA in this recipe)" if protocol.ema_decay == 0 else ""))
    if protocol.selection_kind == "in-training":
        every = f" (every {protocol.every} steps)" if protocol.every else ""
        parts.append(f"the in-training evaluation{every} with the {protocol.selection}")
    elif protocol.selection_kind == "best":
        parts.append("the best.pt checkpoint, evaluated after training")
    elif protocol.selection_kind:
        parts.append(f"the evaluation with the {protocol.selection} among all evaluations")
    full, short = protocol.reference
    if protocol.training:
        changes = "; ".join(f"{key} = {ours} ({short}: {theirs})" for key, ours, theirs in protocol.training)
        parts.append(f"training differs from the {full}: {changes}")
    else:
        parts.append(f"training as the {full}")
    if paper_check is not None:
        gaps = paper_check(protocol)
        if gaps:
            parts.append("differs from the papers' protocol: " + "; ".join(gaps))
    return ". ".join(part[0].upper() + part[1:] for part in parts) + "."


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
# Cells: one (row, column) of measured values, split by protocol.


def aggregate(values: list[tuple[int, float, str]], marker: str) -> Stat:
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
    )


@dataclass
class _Measured:
    """Per column key: protocol -> [(seed, value, run)], protocols in first-seen order."""

    cells: dict[str, dict[Protocol, list[tuple[int, float, str]]]] = field(default_factory=dict)

    def add(self, column: str, protocol: Protocol, seed: int, value: float, run: str) -> None:
        self.cells.setdefault(column, {}).setdefault(protocol, []).append((seed, value, run))


def _display_rows(
    group: str,
    label: str,
    columns: list[Column],
    measured: _Measured | None,
    papers: dict[str, PaperValue],
    markers: Markers,
    extra: Callable[[list[Entry]], list[str]] | None = None,
) -> list[Row]:
    """One row per protocol of the column with the most protocols (at least one row)."""
    per_column = {
        column.key: list((measured.cells.get(column.key, {}) if measured else {}).items()) for column in columns
    }
    height = max([1, *(len(cells) for cells in per_column.values())])
    rows = []
    for index in range(height):
        entries = []
        for column in columns:
            cells = per_column[column.key]
            ours = None
            if index < len(cells):
                protocol, values = cells[index]
                ours = aggregate(values, markers(protocol))
            entries.append(Entry(ours=ours, paper=papers.get(column.key)))
        rows.append(Row(group=group, label=label, entries=entries, extra=extra(entries) if extra else []))
    return rows


def mark_best(table: Table) -> None:
    """Bold the best of ours per column among cells of one protocol, and the best paper value per column."""
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
        papers = [row.entries[index] for row in table.rows if row.entries[index].paper and row.group != "Real data"]
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
# The tables.

RecipeLookup = Callable[[str], dict[str, Any] | None]  # shipped recipe name -> flattened config, or None


def _finished(runs: Iterable[RunResult]) -> list[RunResult]:
    return [run for run in runs if run.status == "finished" and run.values]


def paper_table(layout: str, runs: list[RunResult], papers: PaperNumbers, lookup: RecipeLookup) -> Table | None:
    """The CIFAR-10 / STL-10 table (IS and FID per dataset) or the CelebA-HQ table (FID per resolution)."""
    mine = [run for run in runs if layout_of(run) == layout]
    if not mine:
        return None
    if layout == "cifar-stl":
        datasets, metrics = ["cifar10", "stl10"], ["is_mean", "fid"]
        groups = ["cnn", "resnet", "nas", "real"]
        title = "CIFAR-10 and STL-10, unconditional generation"
    else:
        datasets, metrics = ["celebahq128", "celebahq256"], ["fid"]
        groups = ["resnet"]
        title = "CelebA-HQ"
    columns = [Column(f"{d}/{m}", DATASETS[d], m, paper=True) for d in datasets for m in metrics]
    markers = Markers()
    measured: dict[tuple[str, str], _Measured] = {}
    for run in _finished(mine):
        dataset, family, key = paper_dataset(run.config), arch_family(run.config), method_key(run.config)
        assert dataset is not None and family is not None
        recipe_name = paper_recipe_name(dataset, family, key)
        reference_config = lookup(recipe_name)
        if reference_config is None:  # group by the recipe itself, so different recipes are never averaged
            digest = hashlib.sha256(config_key(run.config, ROW_KEYS).encode()).hexdigest()[:8]
            training: tuple[tuple[str, str, str], ...] = ()
            reference = (
                f"recipe {digest} (no paper recipe {recipe_name}.toml was found to compare with)",
                "",
            )
        else:
            training, reference = differences(run.config, reference_config), _PAPER_REFERENCE
        protocol = protocol_of(run, metrics, training, reference, dataset)
        for metric in metrics:
            if metric in run.values:
                cell = measured.setdefault((family, key), _Measured())
                cell.add(f"{dataset}/{metric}", protocol, run.seed, run.values[metric].value, run.rel)
    rows: list[Row] = []
    for group in groups:
        keys: list[str] = []
        for dataset in datasets:
            keys += [key for key in papers.rows(dataset, group) if key not in keys]
        keys += [key for (family, key) in measured if family == group and key not in keys]
        if group in ("cnn", "resnet"):
            keys.sort(key=method_order)
        for key in keys:
            paper_cells = {}
            for column in columns:
                dataset, metric = column.key.split("/")
                found = papers.get(dataset, group, key, PAPER_METRIC.get(metric, metric))
                if found is not None:
                    paper_cells[column.key] = found
            label = method_label(key)
            rows += _display_rows(GROUPS[group], label, columns, measured.get((group, key)), paper_cells, markers)
    table = Table(key=layout, title=title, label_heading="Method", columns=columns, rows=rows)

    def paper_check(protocol: Protocol) -> list[str]:
        return _paper_gaps(protocol, papers)

    table.footnotes = [(markers.letter(i), describe(p, paper_check)) for i, p in enumerate(markers.order)]
    mark_best(table)
    cite_sources(table)
    table.notes.insert(0, _OURS_NOTE)
    _note_unfinished(table, mine)
    return table


_PAPER_REFERENCE = ("paper recipe of its row (<dataset>_<arch>_<method>[_cr].toml)", "paper recipe")
_OURS_NOTE = (
    "Ours: the best FID over training (the lowest in-training FID of the generator the recipe's protocol "
    "selects, named in each footnote), with IS taken at that same evaluation; mean ± sample standard "
    "deviation over (n=) seeds, a value without n is one run. Δ = ours − paper. Bold: the best value per "
    "column (ours: among cells of one protocol). Letters mark the protocol a value was measured under "
    "(footnotes below); – means not reported."
)


def _paper_gaps(protocol: Protocol, papers: PaperNumbers) -> list[str]:
    """Where an evaluation protocol differs from the papers' (n_fake, reference split, reported generator)."""
    gaps: list[str] = []
    reference = papers.protocols.get(protocol.dataset)
    for metric, _, fields in protocol.evaluation:
        values = dict(fields)
        if metric != "fid" or reference is None:
            continue
        n_fake = values.get("n_fake")
        if reference.n_fake is not None and n_fake is not None and n_fake != str(reference.n_fake):
            gaps.append(f"n_fake {n_fake} (papers: {reference.n_fake})")
        split = values.get("ref_split")
        if reference.ref_split is not None and split is not None and split != reference.ref_split:
            gaps.append(f"reference split {split} (papers: {reference.ref_split})")
    if reference is not None and protocol.generator != reference.generator:
        words = {"ema": "EMA", "raw": "raw"}
        gaps.append(f"{words[protocol.generator]} generator (papers: {words[reference.generator]})")
    if protocol.selection_kind != "in-training":
        gaps.append("not the best of the in-training evaluations (papers: best FID over training)")
    return sorted(set(gaps), key=gaps.index)


def _note_unfinished(table: Table, runs: list[RunResult]) -> None:
    left = [run for run in runs if run.status != "finished" or not run.values]
    if left:
        states = Counter("no evaluations" if run.status == "finished" else run.status for run in left)
        words = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        table.notes.append(f"Not in this table ({words}): see the table of all runs.")


def generic_tables(runs: list[RunResult]) -> list[Table]:
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
        measured: dict[str, _Measured] = {}
        for run in finished:
            training = differences(run.config, base)
            protocol = protocol_of(run, metrics, training, ("most common recipe of this table", "most common"))
            for metric in metrics:
                if metric in run.values:
                    cell = measured.setdefault(method_key(run.config), _Measured())
                    cell.add(metric, protocol, run.seed, run.values[metric].value, run.rel)
        rows: list[Row] = []
        for key in sorted(measured, key=method_order):
            rows += _display_rows("", method_label(key), columns, measured[key], {}, markers, _seeds_cell)
        table = Table(
            key=f"generic-{name}",
            title=f"{name}: methods over seeds",
            label_heading="Method",
            columns=columns,
            rows=rows,
            extra_columns=["seeds"],
        )
        table.footnotes = [(markers.letter(i), describe(p)) for i, p in enumerate(markers.order)]
        mark_best(table)
        table.notes.append(
            "Each run reports one in-training evaluation: the best FID when the recipe measures FID, else "
            "the one with the most modes covered, then the highest % HQ (the rule that picks best.pt); mean "
            "± sample standard deviation over (n=) seeds. Bold: the best value per column among cells of one "
            "protocol."
        )
        if not rows:
            table.notes.append("No finished run with evaluations yet.")
        _note_unfinished(table, group)
        tables.append(table)
    return tables


def _most_common(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The configuration most runs share (the first seen of equally common ones); {} for none."""
    frozen = [config_key(config, ()) for config in configs]
    if not frozen:
        return {}
    counts = Counter(frozen)
    best = max(counts.values())
    return configs[next(i for i, key in enumerate(frozen) if counts[key] == best)]


def _seeds_cell(entries: list[Entry]) -> list[str]:
    seeds = sorted({seed for entry in entries if entry.ours for seed in entry.ours.seeds})
    return [", ".join(str(seed) for seed in seeds)]


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
                stat = Stat(chosen.value, None, 1, (run.seed,), "", (run.rel,))
            entries.append(Entry(ours=stat))
        step = f"{run.step}/{run.steps}"
        chosen_at = "–" if run.selected_step is None else f"{run.selected_step} ({run.generator})"
        extra = [run.name, method_label(method_key(run.config)), str(run.seed), run.status, step, chosen_at]
        rows.append(Row(group="", label=run.rel, entries=entries, extra=extra))
    return Table(
        key="runs",
        title="All runs",
        label_heading="Run",
        columns=columns,
        rows=rows,
        extra_columns=["recipe", "method", "seed", "status", "step", "reported step (G)"],
        notes=["Each run's reported evaluation (see above); runs not finished are included here."],
        bold=False,
    )


def build_tables(runs: list[RunResult], papers: PaperNumbers, lookup: RecipeLookup) -> list[Table]:
    tables = [table for layout in ("cifar-stl", "celebahq") if (table := paper_table(layout, runs, papers, lookup))]
    tables += generic_tables(runs)
    if runs:
        tables.append(runs_table(runs))
    return tables
