"""Render report tables as Markdown, LaTeX (booktabs), CSV (a tidy row per cell) or a standalone HTML page."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable

from ganbench.report.tables import Column, Entry, Row, Stat, Table

FORMATS = ("markdown", "latex", "csv", "html")
TITLE = "ganbench report"
DASH = "–"


# ----------------------------------------------------------------------------------------------------
# Numbers as text, the same in every format.


def number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text  # no "-0.00"


def stat_text(stat: Stat, decimals: int) -> str:
    text = number(stat.mean, decimals)
    if stat.std is not None:
        text += f" ± {number(stat.std, decimals)}"
    if stat.n > 1:
        text += f" (n={stat.n})"
    return text


def delta_text(entry: Entry, decimals: int) -> str:
    delta = entry.delta
    if delta is None:
        return ""
    text = number(delta, decimals)
    return text if text.startswith("-") else f"+{text}"


def leaf_headings(column: Column) -> list[str]:
    return ["ours", "paper", "Δ"] if column.paper else [column.info.label]


# ----------------------------------------------------------------------------------------------------
# Markdown


def _markdown_cells(row: Row, columns: list[Column]) -> list[str]:
    cells = []
    for column, entry in zip(columns, row.entries, strict=True):
        decimals = column.info.decimals
        ours = DASH
        if entry.ours is not None:
            ours = stat_text(entry.ours, decimals)
            ours = f"**{ours}**" if entry.ours_bold else ours
            ours += f"<sup>{entry.ours.marker}</sup>" if entry.ours.marker else ""
        cells.append(ours)
        if column.paper:
            paper = DASH
            if entry.paper is not None:
                paper = f"**{entry.paper.text}**" if entry.paper_bold else entry.paper.text
                paper += f"<sup>[{entry.paper_marker}]</sup>" if entry.paper_marker else ""
            cells += [paper, delta_text(entry, decimals)]
    return cells


def _markdown_escape(text: str) -> str:
    """A table cell built by the renderer (numbers, bold, <sup> markers): only the column separator escaped."""
    return text.replace("|", "\\|")


_MARKDOWN_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]|#~"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"})


def markdown_text(text: str) -> str:
    """User-controlled text (run names, recipe values, messages) as literal GFM: nothing read as HTML or markup."""
    return " ".join(str(text).split("\n")).translate(_MARKDOWN_SPECIAL)


def markdown_table(table: Table) -> str:
    heads = [markdown_text(table.label_heading), *map(markdown_text, table.extra_columns)]
    for column in table.columns:
        prefix = markdown_text(" ".join(part for part in (column.heading, column.info.label) if part))
        if column.paper:
            heads += [f"{prefix} ours", "paper", "Δ"]
        else:
            heads.append(prefix)
    aligns = ["---"] * (1 + len(table.extra_columns)) + ["---:"] * (len(heads) - 1 - len(table.extra_columns))
    lines = [f"## {markdown_text(table.title)}", "", "| " + " | ".join(heads) + " |", "|" + "|".join(aligns) + "|"]
    group = None
    for row in table.rows:
        if row.group and row.group != group:
            group = row.group
            lines.append("| " + " | ".join([f"*{markdown_text(group)}*"] + [""] * (len(heads) - 1)) + " |")
        cells = [markdown_text(row.label), *map(markdown_text, row.extra)]
        cells += [_markdown_escape(cell) for cell in _markdown_cells(row, table.columns)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for marker, text in table.footnotes:
        lines.append(f"- <sup>{marker}</sup> {markdown_text(text)}")
    if table.footnotes:
        lines.append("")
    for note in table.notes:
        lines += [markdown_text(note), ""]
    for caption, path in table.images:
        lines += [f"![{caption}]({path})", ""]
    return "\n".join(lines)


def markdown(tables: list[Table], warnings: list[str], empty: str) -> str:
    parts = [f"# {TITLE}", ""]
    if not tables:
        parts += [empty, ""]
    parts += [markdown_table(table) for table in tables]
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
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(char, char) for char in text)


def _latex_cells(row: Row, columns: list[Column]) -> list[str]:
    cells = []
    for column, entry in zip(columns, row.entries, strict=True):
        decimals = column.info.decimals
        ours = "--"
        if entry.ours is not None:
            ours = latex_escape(stat_text(entry.ours, decimals))
            ours = rf"\textbf{{{ours}}}" if entry.ours_bold else ours
            ours += rf"\textsuperscript{{{entry.ours.marker}}}" if entry.ours.marker else ""
        cells.append(ours)
        if column.paper:
            paper = "--"
            if entry.paper is not None:
                paper = latex_escape(entry.paper.text)
                paper = rf"\textbf{{{paper}}}" if entry.paper_bold else paper
                paper += rf"\textsuperscript{{[{entry.paper_marker}]}}" if entry.paper_marker else ""
            delta = delta_text(entry, decimals)
            cells += [paper, f"${delta}$" if delta else ""]
    return cells


def latex_table(table: Table) -> str:
    lead = 1 + len(table.extra_columns)
    widths = [3 if column.paper else 1 for column in table.columns]
    total = lead + sum(widths)
    spec = "l" * lead + " ".join("r" * width for width in widths)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
        rf"\label{{tab:ganbench-{table.key.replace('_', '-')}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
    ]
    if any(column.heading for column in table.columns):
        heads, rules, start = [""] * lead, [], lead + 1
        index = 0
        while index < len(table.columns):
            heading, span = table.columns[index].heading, 0
            while index < len(table.columns) and table.columns[index].heading == heading:
                span += widths[index]
                index += 1
            heads.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(heading)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        lines += [" & ".join(heads) + r" \\", " ".join(rules)]
    if any(column.paper for column in table.columns):
        metric_heads = [""] * lead
        metric_heads += [
            rf"\multicolumn{{{w}}}{{c}}{{{latex_escape(c.info.label)}}}"
            for c, w in zip(table.columns, widths, strict=True)
        ]
        lines.append(" & ".join(metric_heads) + r" \\")
        leaves = [latex_escape(table.label_heading), *map(latex_escape, table.extra_columns)]
        leaves += [latex_escape(leaf) for column in table.columns for leaf in leaf_headings(column)]
    else:
        leaves = [latex_escape(table.label_heading), *map(latex_escape, table.extra_columns)]
        leaves += [latex_escape(column.info.label) for column in table.columns]
    lines += [" & ".join(leaves) + r" \\", r"\midrule"]
    group = None
    for row in table.rows:
        if row.group and row.group != group:
            if group is not None:
                lines.append(r"\midrule")
            group = row.group
            lines.append(rf"\multicolumn{{{total}}}{{l}}{{\textit{{{latex_escape(group)}}}}} \\")
        cells = [latex_escape(row.label), *map(latex_escape, row.extra), *_latex_cells(row, table.columns)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.footnotes or table.notes:
        lines += [r"\par\smallskip", r"\begin{minipage}{\linewidth}\footnotesize"]
        for marker, text in table.footnotes:
            lines.append(rf"\textsuperscript{{{marker}}} {latex_escape(text)}\par")
        for note in table.notes:
            lines.append(rf"{latex_escape(note)}\par")
        lines.append(r"\end{minipage}")
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


def latex(tables: list[Table], warnings: list[str], empty: str) -> str:
    parts = [f"% {TITLE}: tables to \\input; they need \\usepackage{{booktabs}}", ""]
    if not tables:
        parts += [f"% {empty}", ""]
    parts += [latex_table(table) for table in tables]
    parts += [f"% not included: {warning}" for warning in warnings]
    return "\n".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------------
# CSV: one row per measured or paper cell, full precision, for further analysis.

CSV_COLUMNS = (
    "table",
    "group",
    "row",
    "info",
    "dataset",
    "metric",
    "protocol",
    "ours_mean",
    "ours_std",
    "n",
    "seeds",
    "ours_best",
    "paper",
    "paper_value",
    "paper_std",
    "paper_best",
    "delta",
    "paper_source",
    "protocol_detail",
)


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


def csv_text(tables: list[Table], warnings: list[str], empty: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for table in tables:
        details = dict(table.footnotes)
        for row in table.rows:
            info = "; ".join(f"{h}={v}" for h, v in zip(table.extra_columns, row.extra, strict=True))
            written = False
            for column, entry in zip(table.columns, row.entries, strict=True):
                if entry.ours is None and entry.paper is None:
                    continue
                written = True
                ours, paper = entry.ours, entry.paper
                writer.writerow(
                    [
                        table.key,
                        row.group,
                        row.label,
                        info,
                        column.heading,
                        column.metric,
                        ours.marker if ours else "",
                        _csv_number(ours.mean if ours else None),
                        _csv_number(ours.std if ours else None),
                        ours.n if ours else "",
                        " ".join(str(seed) for seed in ours.seeds) if ours else "",
                        int(entry.ours_bold) if ours else "",
                        paper.text if paper else "",
                        _csv_number(paper.value if paper else None),
                        _csv_number(paper.std if paper else None),
                        int(entry.paper_bold) if paper else "",
                        _csv_number(entry.delta),
                        f"{paper.source}; {paper.table}" if paper else "",
                        details.get(ours.marker, "") if ours else "",
                    ]
                )
            if not written:  # a run with nothing evaluated still gets its line
                writer.writerow([table.key, row.group, row.label, info] + [""] * (len(CSV_COLUMNS) - 4))
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
.footnotes, .notes { font-size: 0.85em; color: #444; max-width: 1100px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
.warnings li { color: #a33; }
""".strip()


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _html_cells(row: Row, columns: list[Column]) -> list[str]:
    cells = []
    for column, entry in zip(columns, row.entries, strict=True):
        decimals = column.info.decimals
        ours = DASH
        if entry.ours is not None:
            ours = _h(stat_text(entry.ours, decimals))
            ours = f"<b>{ours}</b>" if entry.ours_bold else ours
            ours += f"<sup>{_h(entry.ours.marker)}</sup>" if entry.ours.marker else ""
        cells.append(f'<td class="num">{ours}</td>')
        if column.paper:
            paper = DASH
            if entry.paper is not None:
                paper = f"<b>{_h(entry.paper.text)}</b>" if entry.paper_bold else _h(entry.paper.text)
                paper += f"<sup>[{_h(entry.paper_marker)}]</sup>" if entry.paper_marker else ""
            cells.append(f'<td class="num paper">{paper}</td>')
            cells.append(f'<td class="num">{_h(delta_text(entry, decimals))}</td>')
    return cells


def html_table(table: Table) -> str:
    lead = 1 + len(table.extra_columns)
    widths = [3 if column.paper else 1 for column in table.columns]
    levels = int(any(c.heading for c in table.columns)) + 1 + int(any(c.paper for c in table.columns))
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
    if any(c.paper for c in table.columns):
        leaves = "".join(f"<th>{_h(leaf)}</th>" for c in table.columns for leaf in leaf_headings(c))
        out.append(f"<tr>{leaves}</tr>")
    out += ["</thead>", "<tbody>"]
    group = None
    total = lead + sum(widths)
    for row in table.rows:
        if row.group and row.group != group:
            group = row.group
            out.append(f'<tr><td class="group" colspan="{total}">{_h(group)}</td></tr>')
        texts = "".join(f"<td>{_h(text)}</td>" for text in [row.label, *row.extra])
        out.append(f"<tr>{texts}{''.join(_html_cells(row, table.columns))}</tr>")
    out += ["</tbody>", "</table>"]
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


def html_page(tables: list[Table], warnings: list[str], empty: str) -> str:
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
    if not tables:
        out.append(f"<p>{_h(empty)}</p>")
    out += [html_table(table) for table in tables]
    if warnings:
        items = "".join(f"<li>{_h(warning)}</li>" for warning in warnings)
        out.append(f'<section class="warnings"><h2>Not included</h2><ul>{items}</ul></section>')
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


RENDERERS: dict[str, Callable[[list[Table], list[str], str], str]] = {
    "markdown": markdown,
    "latex": latex,
    "csv": csv_text,
    "html": html_page,
}
