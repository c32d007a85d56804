"""The papers' published numbers (papers.toml), each with its source, as the report's "paper" column."""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

METRICS = ("is", "fid")
_NUMBER = r"\d*\.?\d+"
_PRINTED = re.compile(rf"^\s*(?P<value>{_NUMBER})\s*(?:±\s*(?P<std>{_NUMBER}))?\s*$")


@dataclass(frozen=True)
class PaperValue:
    """One number as a paper prints it: `text` keeps the paper's precision, `value`/`std` are for sums."""

    dataset: str  # cifar10, stl10, celebahq128, celebahq256
    arch: str  # cnn, resnet, biggan, nas, real
    method: str  # sn, sn-cr, gn, ..., autogan, real
    metric: str  # is, fid
    value: float
    std: float | None
    text: str
    source: str  # the citation, e.g. "Xia 2023, Penalty Gradient Normalization ... (arXiv:...)"
    table: str  # which table of that paper
    runs: int | None = None  # over how many runs the paper's ± is, where the source says; None: unknown


@dataclass(frozen=True)
class PaperProtocol:
    """How the papers measured a dataset's numbers, to name where ours differ."""

    dataset: str
    n_fake: int | None
    ref_split: str | None
    description: str
    generator: str = "ema"  # whose scores the official code selects and reports: raw or ema
    ref_dataset: str | None = None  # the dataset of the FID reference statistics (None: not checked)
    n_real: int | None = None  # the images behind the FID reference statistics (None: not checked)


def parse_printed(text: str) -> tuple[float, float | None]:
    """`"8.506 ± .126"` -> (8.506, 0.126); `"18.675"` -> (18.675, None)."""
    match = _PRINTED.match(text)
    if match is None:
        raise ValueError(f"papers.toml: {text!r} is not a number or 'number ± number'")
    std = match.group("std")
    return float(match.group("value")), None if std is None else float(std)


@dataclass(frozen=True)
class PaperNumbers:
    values: tuple[PaperValue, ...]
    protocols: dict[str, PaperProtocol]

    def get(self, dataset: str, arch: str, method: str, metric: str) -> PaperValue | None:
        for value in self.values:
            if (value.dataset, value.arch, value.method, value.metric) == (dataset, arch, method, metric):
                return value
        return None

    def rows(self, dataset: str, arch: str) -> list[str]:
        """The method keys the papers report for one dataset and architecture, in file order."""
        seen: list[str] = []
        for value in self.values:
            if value.dataset == dataset and value.arch == arch and value.method not in seen:
                seen.append(value.method)
        return seen


def parse(tree: dict[str, Any]) -> PaperNumbers:
    sources = {key: entry["paper"] for key, entry in tree.get("sources", {}).items()}
    runs = {key: entry.get("runs") for key, entry in tree.get("sources", {}).items()}
    values: list[PaperValue] = []
    for index, cell in enumerate(tree.get("cells", [])):
        where = f"papers.toml cells[{index}]"
        if cell.get("source") not in sources:
            raise ValueError(f"{where}: source {cell.get('source')!r} is not a key of [sources]")
        for metric in METRICS:
            if metric not in cell:
                continue
            value, std = parse_printed(cell[metric])
            values.append(
                PaperValue(
                    dataset=cell["dataset"],
                    arch=cell["arch"],
                    method=cell["method"],
                    metric=metric,
                    value=value,
                    std=std,
                    text=cell[metric].strip(),
                    source=sources[cell["source"]],
                    table=cell["table"],
                    runs=runs[cell["source"]],
                )
            )
    protocols = {
        name: PaperProtocol(
            dataset=name,
            n_fake=entry.get("n_fake"),
            ref_split=entry.get("ref_split"),
            description=entry["description"],
            generator=entry.get("generator", "ema"),
            ref_dataset=entry.get("ref_dataset"),
            n_real=entry.get("n_real"),
        )
        for name, entry in tree.get("protocols", {}).items()
    }
    return PaperNumbers(tuple(values), protocols)


@functools.cache
def load() -> PaperNumbers:
    """The numbers shipped with the package (ganbench/report/papers.toml)."""
    text = resources.files("ganbench.report").joinpath("papers.toml").read_text(encoding="utf-8")
    return parse(tomllib.loads(text))
