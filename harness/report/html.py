"""report.html: one self-contained page (inline CSS and SVG, no script, no network). A
Content-Security-Policy forbids scripts and remote loads, so even a missed escape could not run."""

from __future__ import annotations

from .blocks import Block, Cell, CellLike, Columns, Facts, Figure, Para, Report, Section, Table
from .markup import Html, el, esc, join, link_or_text

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
:root { --ink:#1d1d1f; --muted:#6e6e73; --line:#e3e3e8; --ok:#1a7f37; --okbg:#e6f4ea; --bad:#b42318;
  --badbg:#fdecea; --warn:#8a5a00; --warnbg:#fff4d6; --accent:#0072B2; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
  background: #f6f6f8; }
header { background: #1d2b3a; color: #fff; padding: 20px 32px 14px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: #c9d3de; max-width: 70em; }
nav { margin-top: 10px; }
nav a { color: #9fd0ff; margin-right: 16px; text-decoration: none; font-size: 13px; }
main { padding: 8px 32px 40px; max-width: 1500px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 20px 18px;
  margin: 18px 0; }
h2 { font-size: 18px; margin: 10px 0 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 6px 0 14px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 140px; background: #fafafc; }
.card .k { color: var(--muted); font-size: 12px; }
.card .v { font-size: 18px; font-weight: 600; }
.card.ok { border-color: var(--ok); background: var(--okbg); }
.card.bad { border-color: var(--bad); background: var(--badbg); }
.card.ok .v, .card.bad .v { font-size: 13px; font-weight: 500; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 6px 0 14px; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.columns { display: flex; gap: 24px; align-items: flex-start; }
.columns > figure.diagram { flex: 0 0 370px; }
.columns > .table-wrap { flex: 1 1 auto; min-width: 0; }
@media (max-width: 1000px) { .columns { flex-direction: column; } .columns > figure.diagram { flex: none; } }
figure { margin: 8px 0 16px; }
figure svg { width: 100%; height: auto; display: block; }
figure.chart { max-width: 760px; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; }
.table-wrap { overflow-x: auto; margin: 6px 0 16px; }
table { border-collapse: collapse; font-size: 13px; }
caption { text-align: left; color: var(--muted); font-size: 12px; padding-bottom: 4px; caption-side: top; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px 4px 6px; text-align: left; vertical-align: top; }
th { background: #f0f1f4; font-weight: 600; white-space: nowrap; }
tfoot td { font-weight: 600; border-top: 2px solid #ccc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td .note { color: var(--muted); font-size: 11.5px; }
td .bar { height: 3px; background: #eef0f3; margin-top: 2px; }
td .bar span { display: block; height: 3px; background: var(--accent); }
td.ok { background: var(--okbg); } td.bad { background: var(--badbg); } td.warn { background: var(--warnbg); }
td.added { background: var(--okbg); } td.removed { background: var(--badbg); color: var(--muted); }
td.changed { background: var(--warnbg); } td.moved { background: #eef3fb; } td.reshaped { background: #f7f7f9; }
td.ok::before { content: "✓ "; color: var(--ok); } td.bad::before { content: "✗ "; color: var(--bad); }
td.warn::before { content: "! "; color: var(--warn); font-weight: 700; }
p.note { color: var(--muted); font-size: 12px; }
footer { color: var(--muted); font-size: 12px; padding: 0 32px 24px; }
@media print { body { background: #fff; } section { break-inside: avoid-page; border: none; } }
"""


def render_html(report: Report) -> str:
    nav = join(el("a", s.title, href=f"#{s.id}") for s in report.sections)
    header = el("header", el("h1", report.title), el("p", report.subtitle) if report.subtitle else None,
                el("nav", nav))
    body = el("main", join(_section(s) for s in report.sections))
    footer = el("footer", "Written by alexbench report. Self-contained: no scripts, no network.")
    head = join([
        Html('<meta charset="utf-8">'),
        Html(f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'),
        Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        el("title", report.title),
        el("style", Html(CSS)),
    ])
    return "<!DOCTYPE html>\n" + el("html", el("head", head), el("body", header, body, footer), lang="en") + "\n"


def _section(section: Section) -> Html:
    return el("section", el("h2", section.title), join(_block(b) for b in section.blocks), id=section.id)


def _block(block: Block) -> Html:
    if isinstance(block, Columns):
        return el("div", join(_block(b) for b in block.blocks), class_="columns")
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Facts):
        if block.cards:
            return el("div", join(_card(k, v) for k, v in block.items), class_=block.css)
        return el("dl", join(el("dt", k) + el("dd", _content(v)) for k, v in block.items), class_=f"facts {block.css}")
    if isinstance(block, Figure):  # the SVG is generated (Graphviz or report_charts), its text escaped there
        return el("figure", Html(block.svg), el("figcaption", block.caption), class_=block.css)
    if isinstance(block, Para):
        return el("p", block.text, class_=block.css or None)
    if isinstance(block, Section):
        return _section(block)
    raise TypeError(f"no HTML for block {type(block).__name__}")


def _card(key: str, value: CellLike) -> Html:
    status = value.status if isinstance(value, Cell) else ""
    return el("div", el("div", key, class_="k"), el("div", _content(value), class_="v"),
              class_=f"card {status}".strip())


def _content(cell: CellLike) -> Html:
    if not isinstance(cell, Cell):
        return esc(cell)
    parts = [link_or_text(cell.text) if cell.url else esc(cell.text)]
    if cell.note:
        parts.append(el("div", cell.note, class_="note"))
    if cell.share is not None and cell.text:
        parts.append(el("div", el("span", style=f"width:{100 * max(0.0, min(1.0, cell.share)):.1f}%"), class_="bar"))
    return join(parts)


def _td(cell: CellLike) -> Html:
    if not isinstance(cell, Cell):
        return el("td", cell)
    css = " ".join(x for x in ("num" if cell.num else "", cell.status) if x)
    return el("td", _content(cell), class_=css or None)


def _table(table: Table) -> Html:
    head = el("thead", el("tr", join(el("th", h, scope="col") for h in table.headers)))
    body = el("tbody", join(el("tr", join(_td(c) for c in row)) for row in table.rows))
    foot = el("tfoot", join(el("tr", join(_td(c) for c in row)) for row in table.foot)) if table.foot else None
    caption = el("caption", table.caption) if table.caption else None
    return el("div", el("table", caption, head, body, foot, class_=table.css), class_="table-wrap")
