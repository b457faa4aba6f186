"""The architecture diagram, drawn by Graphviz: one box per layer with its input and output shapes,
like Keras' ``plot_model(show_shapes=True)``. Graphviz places the boxes; nothing here is hand-placed.
"""

from __future__ import annotations

import re
import shutil

from ...spec import OPS, ModelSpec, fmt_shape
from .markup import esc, fmt_int
from .model import ReportError, key_attrs

INSTALL_HINT = ("install Graphviz: apt-get install graphviz (Debian/Ubuntu), brew install graphviz (macOS), "
                "conda install graphviz; or pass --no-diagram")

# Header colour per op family (spec/ops.py; light, so black text stays readable in print).
FAMILY_COLORS = {
    "convolution": "#c6dbef", "dense": "#fdd0a2", "pooling": "#c7e9c0", "normalization": "#dadaeb",
    "activation": "#f0f0f0", "regularization": "#fde0ef", "reshape": "#fff5b1",
}
FONT = "Helvetica,Arial,sans-serif"


def check_graphviz() -> None:
    """Raise ReportError with the install command when the diagram cannot be drawn."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        raise ReportError("the architecture diagram needs the Python package 'graphviz': "
                          "pip install 'alexbench[report]'; or pass --no-diagram") from None
    if shutil.which("dot") is None:
        raise ReportError(f"the architecture diagram needs Graphviz's 'dot' program, which is not on PATH; "
                          f"{INSTALL_HINT}")


def _label(title: str, op: str, attrs: str, shapes: list[tuple[str, str]], params: int) -> str:
    """A Graphviz HTML-like label (escaped like HTML)."""
    color = FAMILY_COLORS[OPS[op].family] if op else "#eeeeee"  # the input box has no op
    head = f"<B>{esc(title)}</B>" + (f"&#160;({esc(op)})" if op else "")  # Graphviz trims plain spaces
    rows = [f'<TR><TD COLSPAN="{len(shapes)}" BGCOLOR="{color}">{head}</TD></TR>']
    if attrs or params:
        detail = " · ".join(x for x in (attrs, f"{fmt_int(params)} params" if params else "") if x)
        rows.append(f'<TR><TD COLSPAN="{len(shapes)}"><FONT POINT-SIZE="9">{esc(detail)}</FONT></TD></TR>')
    rows.append("<TR>" + "".join(f'<TD><FONT POINT-SIZE="9">{esc(k)}: {esc(v)}</FONT></TD>' for k, v in shapes)
                + "</TR>")
    return '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">' + "".join(rows) + "</TABLE>>"


def diagram_dot(spec: ModelSpec):
    """The graphviz.Digraph of a spec (input node, then every layer in order)."""
    import graphviz

    g = graphviz.Digraph("architecture")
    g.attr(rankdir="TB", nodesep="0.2", ranksep="0.22", bgcolor="white")
    g.attr("node", shape="plain", fontname=FONT, fontsize="11")
    g.attr("edge", arrowsize="0.6", color="#555555")
    g.node("n0", _label("input", "", "", [("shape", fmt_shape(spec.input_shape))], 0))
    for i, layer in enumerate(spec.layers, start=1):
        shapes = [("input", fmt_shape(layer.input_shape)), ("output", fmt_shape(layer.output_shape))]
        g.node(f"n{i}", _label(layer.name, layer.op, key_attrs(layer), shapes, layer.param_count))
        g.edge(f"n{i - 1}", f"n{i}")
    return g


def diagram_svg(spec: ModelSpec) -> str:
    """The diagram as a standalone SVG document (for diagram.svg)."""
    import graphviz

    check_graphviz()
    try:
        return diagram_dot(spec).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError) as exc:
        raise ReportError(f"Graphviz failed to draw the diagram: {exc}; {INSTALL_HINT}") from None


_PROLOG = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<!--.*?-->", re.S)
_SIZE = re.compile(r'\s(width|height)="([\d.]+)pt"')


def inline_svg(svg: str, css_class: str, label: str) -> str:
    """An SVG document made fit for inlining in HTML: no XML prolog, doctype or comments; sized by
    CSS (at most its natural width) instead of fixed points; labelled for screen readers."""
    body = _PROLOG.sub("", svg).strip()
    open_tag_end = body.index(">")
    open_tag, rest = body[:open_tag_end], body[open_tag_end:]
    sizes = dict((k, float(v)) for k, v in _SIZE.findall(open_tag))
    open_tag = _SIZE.sub("", open_tag)
    style = f' style="max-width:{sizes["width"] * 4 / 3:.0f}px"' if "width" in sizes else ""
    return f'{open_tag} class="{esc(css_class)}" role="img" aria-label="{esc(label)}"{style}{rest}'
