"""Render report tables as Markdown, LaTeX (booktabs), CSV (a tidy row per cell) or a standalone HTML page."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable
from dataclasses import dataclass

from ganbench.report.tables import RANK_MARK, Column, Entry, Report, Row, Stat, Table

FORMATS = ("markdown", "latex", "csv", "html")
APPENDIX_NOTE = (
    "Every evaluation the tables cite, with the fields its metric rows were measured under and their fingerprints, "
    "then every cell protocol (the CSV's protocol_id) with its evaluation, generator, selection and training."
)
TITLE = "ganbench report"
DASH = "–"


# ----------------------------------------------------------------------------------------------------
# Numbers as text, the same in every format.


@dataclass(frozen=True)
class Options:
    """What the renderers show: the paper tables' columns (ours, paper or both) and our numbers' decimals."""

    columns: str = "both"
    decimals: int | None = None  # None: each metric's own (FID and IS 2)

    def places(self, column: Column) -> int:
        return column.info.decimals if self.decimals is None else self.decimals

    def leaves(self, column: Column) -> list[str]:
        """The sub-columns of one metric column: ours, paper, Δ as --columns asks (tables without a paper: ours)."""
        if not column.paper:
            return ["ours"]
        return {"ours": ["ours"], "paper": ["paper"], "both": ["ours", "paper", "Δ"]}[self.columns]


COLUMN_CHOICES = ("ours", "paper", "both")


def number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text  # no "-0.00"


def stat_text(stat: Stat, decimals: int, seeds: bool = False) -> str:
    """`mean ± std (n=2)`; with `seeds`, `mean ± std (n=2; seeds 0, 1)` (one run: `mean (seed 3)`)."""
    text = number(stat.mean, decimals)
    if stat.std is not None:
        text += f" ± {number(stat.std, decimals)}"
    if seeds and stat.seeds:  # (our Real data row is no run's value: it has no seeds)
        listed = ", ".join(str(seed) for seed in stat.seeds)
        text += f" (n={stat.n}; seeds {listed})" if stat.n > 1 else f" (seed {listed})"
    elif not seeds and stat.n > 1:
        text += f" (n={stat.n})"
    return text


def delta_text(entry: Entry, decimals: int) -> str:
    """`+0.69 ≈` (within noise), `+10.69 *` (beyond it), `+0.69` (one seed: no test); "" where Δ is not shown."""
    delta = entry.delta
    if delta is None:
        return ""
    text = number(delta, decimals)
    text = text if text.startswith("-") else f"+{text}"
    return f"{text} {entry.noise_mark}" if entry.noise_mark else text


def _cells(row: Row, table: Table, options: Options, seeds: bool) -> list[tuple[str, str, bool, str]]:
    """(kind, text, bold, marker) per leaf cell of a row: kind is ours, paper or delta."""
    cells = []
    for column, entry in zip(table.columns, row.entries, strict=True):
        places = options.places(column)
        for leaf in options.leaves(column):
            if leaf == "ours":
                if entry.ours is None:
                    cells.append(("ours", DASH, False, ""))
                else:
                    text = stat_text(entry.ours, places, seeds)
                    marker = entry.ours.marker + (RANK_MARK if entry.ours.rank_note else "")
                    cells.append(("ours", text, entry.ours_bold, marker))
            elif leaf == "paper":
                if entry.paper is None:
                    cells.append(("paper", DASH, False, ""))
                else:
                    marker = f"[{entry.paper_marker}]" if entry.paper_marker else ""
                    cells.append(("paper", entry.paper.text, entry.paper_bold, marker))
            else:
                cells.append(("delta", delta_text(entry, places), False, ""))
    return cells


def _heading(column: Column) -> str:
    return " ".join(part for part in (column.heading, column.info.label) if part)


def _seeds_in_cells(table: Table) -> bool:
    """Paper tables list each cell's seeds in the cell; other tables have a seeds column."""
    return table.kind == "paper"


def _show_group(row: Row, table: Table) -> bool:
    return bool(row.group) and not (row.block == "real" and table.kind == "paper")


# ----------------------------------------------------------------------------------------------------
# Markdown


def _markdown_escape(text: str) -> str:
    """A table cell built by the renderer (numbers, bold, <sup> markers): only the column separator escaped."""
    return text.replace("|", "\\|")


_MARKDOWN_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]|#~"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"})


def markdown_text(text: str) -> str:
    """User-controlled text (run names, recipe values, messages) as literal GFM: nothing read as HTML or markup."""
    return " ".join(str(text).split("\n")).translate(_MARKDOWN_SPECIAL)


def _markdown_cell(kind: str, text: str, bold: bool, marker: str) -> str:
    text = markdown_text(text)
    text = f"**{text}**" if bold and text != DASH else text
    return text + (f"<sup>{markdown_text(marker)}</sup>" if marker else "")


def markdown_table(table: Table, options: Options) -> str:
    heads = [markdown_text(table.label_heading), *map(markdown_text, table.extra_columns)]
    for column in table.columns:
        prefix = markdown_text(_heading(column))
        leaves = options.leaves(column)
        if leaves == ["ours"] and not column.paper:
            heads.append(prefix)
        else:
            heads += [f"{prefix} {leaves[0]}", *leaves[1:]]
    aligns = ["---"] * (1 + len(table.extra_columns)) + ["---:"] * (len(heads) - 1 - len(table.extra_columns))
    lines = [f"## {markdown_text(table.title)}", "", "| " + " | ".join(heads) + " |", "|" + "|".join(aligns) + "|"]
    group = None
    seeds = _seeds_in_cells(table)
    for row in table.rows:
        if _show_group(row, table) and row.group != group:
            lines.append("| " + " | ".join([f"*{markdown_text(row.group)}*"] + [""] * (len(heads) - 1)) + " |")
        group = row.group
        cells = [markdown_text(row.label), *map(markdown_text, row.extra)]
        cells += [_markdown_cell(*cell) for cell in _cells(row, table, options, seeds)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if table.protocol:
        lines += [f"Protocol: {markdown_text(table.protocol)}", ""]
    for marker, text in table.footnotes:
        lines.append(f"- <sup>{markdown_text(marker)}</sup> {markdown_text(text)}")
    if table.footnotes:
        lines.append("")
    for note in table.notes:
        lines += [markdown_text(note), ""]
    for caption, path in table.images:
        lines += [f"![{markdown_text(caption)}]({path})", ""]
    return "\n".join(lines)


def markdown(report: Report, warnings: list[str], empty: str, options: Options) -> str:
    parts = [f"# {TITLE}", ""]
    if not report.tables:
        parts += [markdown_text(empty), ""]
    parts += [markdown_table(table, options) for table in report.tables]
    if report.protocols:
        parts += ["## Appendix: protocols", "", APPENDIX_NOTE, "", "Evaluations:", ""]
        parts += [f"- **{name}**: {markdown_text(text)}" for name, text in report.evaluations] + ["", "Cells:", ""]
        parts += [f"- **{markdown_text(pid)}**: {markdown_text(text)}" for pid, text in report.protocols] + [""]
    if warnings:
        parts += ["## Not included", ""] + [f"- {markdown_text(w)}" for w in warnings] + [""]
    return "\n".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------------
# LaTeX

_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "−": r"$-$",
    "–": "--",
    "×": r"$\times$",
    "²": r"\textsuperscript{2}",
    "·": r"$\cdot$",
    "‖": r"$\|$",
    "†": r"$\dagger$",
    "‡": r"$\ddagger$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "→": r"$\rightarrow$",
    "…": r"\ldots{}",
    "’": "'",
    "‘": "`",
    "≈": r"$\approx$",
    "|": r"$|$",
    "`": r"\textasciigrave{}",
    "“": "``",
    "”": "''",
}


def latex_escape(text: str) -> str:
    """Text as LaTeX that pdflatex typesets without extra packages; characters beyond Latin-1 that no mapping
    names become "?" rather than stopping the compilation. "--" stays two hyphens (an option, not a dash)."""
    out = []
    for index, char in enumerate(text):
        if char == "-" and text[index + 1 : index + 2] == "-":
            out.append("-{}")
        else:
            out.append(_LATEX.get(char, char if ord(char) < 256 else "?"))
    return "".join(out)


def _latex_cell(kind: str, text: str, bold: bool, marker: str) -> str:
    if kind == "delta" and text:  # the number in math (a real minus sign), the noise mark beside it
        number_text, _, mark = text.partition(" ")
        text = f"${number_text}$" + (rf"\,{latex_escape(mark)}" if mark else "")
    else:
        text = latex_escape(text)
    text = rf"\textbf{{{text}}}" if bold else text
    return text + (rf"\textsuperscript{{{latex_escape(marker)}}}" if marker else "")


def _latex_spans(
    table: Table, widths: list[int], lead: int, read: Callable[[Column], str]
) -> tuple[list[str], list[str]]:
    r"""A header line of \multicolumn spans over runs of columns with the same `read(column)`, and its cmidrules."""
    heads, rules, start, index = [""] * lead, [], lead + 1, 0
    while index < len(table.columns):
        text, span = read(table.columns[index]), 0
        while index < len(table.columns) and read(table.columns[index]) == text:
            span += widths[index]
            index += 1
        heads.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(text)}}}" if span > 1 else latex_escape(text))
        if span > 1:
            rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
        start += span
    return heads, rules


def latex_table(table: Table, options: Options) -> str:
    """One float per table: `table*` (both columns of a two-column paper), booktabs rules, and the tabular scaled
    down to the text width when it is wider (graphicx's \resizebox, only ever shrinking)."""
    lead = 1 + len(table.extra_columns)
    widths = [len(options.leaves(column)) for column in table.columns]
    total = lead + sum(widths)
    spec = "l" * lead + "".join("r" * width for width in widths)
    lines = [
        r"\begin{table*}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
        rf"\label{{tab:ganbench-{re.sub(r'[^A-Za-z0-9-]', '-', table.key)}}}",
        r"\resizebox{\ifdim\width>\textwidth\textwidth\else\width\fi}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
    ]
    if any(column.heading for column in table.columns):
        heads, rules = _latex_spans(table, widths, lead, lambda column: column.heading)
        lines += [" & ".join(heads) + r" \\", " ".join(rules)]
    split = any(width > 1 for width in widths)
    if split:
        heads, rules, start = [""] * lead, [], lead + 1
        for column, width in zip(table.columns, widths, strict=True):
            label = latex_escape(column.info.label)
            heads.append(rf"\multicolumn{{{width}}}{{c}}{{{label}}}" if width > 1 else label)
            if width > 1:
                rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        lines += [" & ".join(heads) + r" \\", " ".join(rules)]
    leaves = [latex_escape(table.label_heading), *map(latex_escape, table.extra_columns)]
    for column in table.columns:
        if split:
            leaves += [latex_escape(leaf) for leaf in options.leaves(column)]
        else:
            label = latex_escape(column.info.label)
            leaves.append(label if not column.paper else f"{label} {latex_escape(options.leaves(column)[0])}")
    lines += [" & ".join(leaves) + r" \\", r"\midrule"]
    group = None
    for row in table.rows:
        if row.group != group and group is not None:
            lines.append(r"\midrule")
        if _show_group(row, table) and row.group != group:
            lines.append(rf"\multicolumn{{{total}}}{{l}}{{\textit{{{latex_escape(row.group)}}}}} \\")
        group = row.group
        cells = [latex_escape(row.label), *map(latex_escape, row.extra)]
        cells += [_latex_cell(*cell) for cell in _cells(row, table, options, False)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}%", "}"]
    notes = ([f"Protocol: {table.protocol}"] if table.protocol else []) + table.notes
    if table.footnotes or notes:
        lines += [r"\par\smallskip", r"\begin{minipage}{\textwidth}\footnotesize"]
        lines += [rf"{latex_escape(note)}\par" for note in notes[:1]]
        for marker, text in table.footnotes:
            lines.append(rf"\textsuperscript{{{latex_escape(marker)}}} {latex_escape(text)}\par")
        lines += [rf"{latex_escape(note)}\par" for note in notes[1:]]
        lines.append(r"\end{minipage}")
    lines += [r"\end{table*}", ""]
    return "\n".join(lines)


def latex(report: Report, warnings: list[str], empty: str, options: Options) -> str:
    parts = [
        f"% {TITLE}: tables to \\input; they need \\usepackage{{booktabs}} and \\usepackage{{graphicx}}",
        "% (graphicx's \\resizebox shrinks a table wider than \\textwidth; nothing else is assumed)",
        "",
    ]
    if not report.tables:
        parts += [f"% {empty}", ""]
    parts += [latex_table(table, options) for table in report.tables]
    if report.protocols:
        parts.append(f"% Appendix: protocols. {APPENDIX_NOTE}")
        parts += [f"% {name}: {' '.join(text.split())}" for name, text in report.evaluations]
        parts += [f"% {pid}: {' '.join(text.split())}" for pid, text in report.protocols]
    parts += [f"% not included: {' '.join(warning.split())}" for warning in warnings]
    return "\n".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------------
# CSV: one tidy row per cell (ours or the paper's), full precision, for further analysis.

CSV_COLUMNS = (
    "table",
    "dataset",
    "arch",
    "method",
    "cr",
    "metric",
    "mean",
    "std",
    "n",
    "seeds",
    "paper_mean",
    "paper_std",
    "delta",
    "comparable",
    "protocol_id",
    "note",  # why a FID from N ≤ D samples compares only at equal N (the other formats' RANK_MARK footnote)
)


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


def csv_text(report: Report, warnings: list[str], empty: str, options: Options) -> str:
    """Every cell of every table but the table of all runs (one row per run, which the CSV's columns cannot name)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for table in report.tables:
        if table.kind == "runs":
            continue
        for row in table.rows:
            for column, entry in zip(table.columns, row.entries, strict=True):
                ours, paper = entry.ours, entry.paper
                if ours is None and paper is None:
                    continue
                comparable = "" if entry.comparable is None else str(entry.comparable).lower()
                writer.writerow(
                    [
                        table.key,
                        column.dataset or row.dataset,
                        row.block,
                        row.method,
                        row.cr,
                        column.metric,
                        _csv_number(ours.mean if ours else None),
                        _csv_number(ours.std if ours else None),
                        ours.n if ours else "",
                        " ".join(str(seed) for seed in ours.seeds) if ours else "",
                        _csv_number(paper.value if paper else None),
                        _csv_number(paper.std if paper else None),
                        _csv_number(entry.delta),
                        comparable if ours else "",
                        entry.protocol_id,
                        ours.rank_note if ours else "",
                    ]
                )
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------
# HTML: one standalone page; images are files beside it.

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; }
th { background: #f3f3f3; text-align: center; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.group { font-style: italic; background: #fafafa; }
td.paper { color: #555; }
.protocol, .footnotes, .notes, .appendix { font-size: 0.85em; color: #444; max-width: 1100px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
.warnings li { color: #a33; }
""".strip()


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _html_cell(kind: str, text: str, bold: bool, marker: str) -> str:
    inner = f"<b>{_h(text)}</b>" if bold else _h(text)
    inner += f"<sup>{_h(marker)}</sup>" if marker else ""
    css = {"ours": "num ours", "paper": "num paper", "delta": "num delta"}[kind]
    return f'<td class="{css}">{inner}</td>'


def html_table(table: Table, options: Options) -> str:
    lead = 1 + len(table.extra_columns)
    widths = [len(options.leaves(column)) for column in table.columns]
    split = any(width > 1 for width in widths)
    levels = int(any(c.heading for c in table.columns)) + 1 + int(split)
    out = [f'<section id="{_h(table.key)}">', f"<h2>{_h(table.title)}</h2>", "<table>", "<thead>"]
    first = [table.label_heading, *table.extra_columns]
    header = "".join(f'<th rowspan="{levels}">{_h(text)}</th>' for text in first)
    if any(c.heading for c in table.columns):
        index, spans = 0, []
        while index < len(table.columns):
            heading, span = table.columns[index].heading, 0
            while index < len(table.columns) and table.columns[index].heading == heading:
                span += widths[index]
                index += 1
            spans.append(f'<th colspan="{span}">{_h(heading)}</th>')
        out.append(f"<tr>{header}{''.join(spans)}</tr>")
        header = ""
    metric_row = "".join(
        f'<th colspan="{w}">{_h(c.info.label)}</th>' for c, w in zip(table.columns, widths, strict=True)
    )
    out.append(f"<tr>{header}{metric_row}</tr>")
    if split:
        leaves = "".join(f"<th>{_h(leaf)}</th>" for c in table.columns for leaf in options.leaves(c))
        out.append(f"<tr>{leaves}</tr>")
    out += ["</thead>", "<tbody>"]
    group = None
    total = lead + sum(widths)
    seeds = _seeds_in_cells(table)
    for row in table.rows:
        if _show_group(row, table) and row.group != group:
            out.append(f'<tr><td class="group" colspan="{total}">{_h(row.group)}</td></tr>')
        group = row.group
        texts = "".join(f"<td>{_h(text)}</td>" for text in [row.label, *row.extra])
        cells = "".join(_html_cell(*cell) for cell in _cells(row, table, options, seeds))
        out.append(f"<tr>{texts}{cells}</tr>")
    out += ["</tbody>", "</table>"]
    if table.protocol:
        out.append(f'<p class="protocol">Protocol: {_h(table.protocol)}</p>')
    if table.footnotes:
        items = "".join(f"<li><sup>{_h(m)}</sup> {_h(text)}</li>" for m, text in table.footnotes)
        out.append(f'<ul class="footnotes">{items}</ul>')
    for note in table.notes:
        out.append(f'<p class="notes">{_h(note)}</p>')
    for caption, path in table.images:
        image = f'<img src="{_h(path)}" alt="{_h(caption)}">'
        out.append(f"<figure>{image}<figcaption>{_h(caption)}</figcaption></figure>")
    out.append("</section>")
    return "\n".join(out)


def html_page(report: Report, warnings: list[str], empty: str, options: Options) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{TITLE}</title>",
        f"<style>\n{_STYLE}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{TITLE}</h1>",
    ]
    if not report.tables:
        out.append(f"<p>{_h(empty)}</p>")
    out += [html_table(table, options) for table in report.tables]
    if report.protocols:
        evaluations = "".join(f'<li id="{_h(n)}"><b>{_h(n)}</b>: {_h(text)}</li>' for n, text in report.evaluations)
        cells = "".join(f'<li id="{_h(pid)}"><b>{_h(pid)}</b>: {_h(text)}</li>' for pid, text in report.protocols)
        out.append(
            f'<section class="appendix"><h2>Appendix: protocols</h2><p>{_h(APPENDIX_NOTE)}</p>'
            f"<p>Evaluations:</p><ul>{evaluations}</ul><p>Cells:</p><ul>{cells}</ul></section>"
        )
    if warnings:
        items = "".join(f"<li>{_h(warning)}</li>" for warning in warnings)
        out.append(f'<section class="warnings"><h2>Not included</h2><ul>{items}</ul></section>')
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


RENDERERS: dict[str, Callable[[Report, list[str], str, Options], str]] = {
    "markdown": markdown,
    "latex": latex,
    "csv": csv_text,
    "html": html_page,
}
