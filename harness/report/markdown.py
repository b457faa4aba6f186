"""report.md: the report's blocks as GitHub-flavoured Markdown. Figures are SVG files next to it."""

from __future__ import annotations

from .blocks import Block, Cell, CellLike, Columns, Facts, Figure, Para, Report, Section, Table
from .markup import md, md_link_or_text

MARK = {"ok": "✅ ", "bad": "❌ ", "warn": "⚠️ ", "added": "➕ ", "removed": "➖ ", "changed": "✏️ ", "moved": "↕️ ",
        "reshaped": "↔️ "}


def render_markdown(report: Report) -> str:
    out = [f"# {md(report.title)}", ""]
    if report.subtitle:
        out += [md(report.subtitle), ""]
    for section in report.sections:
        _section(section, out)
    return "\n".join(out).rstrip() + "\n"


def _section(section: Section, out: list[str]) -> None:
    out += [f"## {md(section.title)}", ""]
    for block in section.blocks:
        _block(block, out)


def _block(block: Block, out: list[str]) -> None:
    if isinstance(block, Columns):
        for b in block.blocks:
            _block(b, out)
    elif isinstance(block, Table):
        _table(block, out)
    elif isinstance(block, Facts):
        if block.cards:
            out += [" · ".join(f"**{md(k)}** {_cell(v)}" for k, v in block.items), ""]
        else:
            out += [f"- **{md(k)}**: {_cell(v)}" for k, v in block.items] + [""]
    elif isinstance(block, Figure):
        out += [f"![{md(block.caption)}]({block.file})", ""]
    elif isinstance(block, Para):
        out += [md(block.text), ""]
    elif isinstance(block, Section):
        _section(block, out)
    else:
        raise TypeError(f"no Markdown for block {type(block).__name__}")


def _cell(cell: CellLike) -> str:
    if not isinstance(cell, Cell):
        return md(cell)
    text = md_link_or_text(cell.text) if cell.url else md(cell.text)
    if cell.note:
        text += f" — *{md(cell.note)}*" if text else f"*{md(cell.note)}*"
    return MARK.get(cell.status, "") + text


def _table(table: Table, out: list[str]) -> None:
    if table.caption:
        out += [f"**{md(table.caption)}**", ""]
    numeric = {i for row in table.rows for i, c in enumerate(row) if isinstance(c, Cell) and c.num}
    align = ["---:" if i in numeric else "---" for i in range(len(table.headers))]
    out.append("| " + " | ".join(md(h) for h in table.headers) + " |")
    out.append("| " + " | ".join(align) + " |")
    for row in table.rows:
        out.append("| " + " | ".join(_cell(c) for c in row) + " |")
    for row in table.foot:
        out.append("| " + " | ".join(f"**{_cell(c)}**" if _cell(c) else "" for c in row) + " |")
    out.append("")
