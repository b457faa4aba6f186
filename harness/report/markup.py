"""Escaping for the report: every string from a spec or a results file is text, never markup.

HTML and SVG are built with ``el()``, which escapes every child and attribute unless it is
already ``Html`` (markup made here). Markdown text goes through ``md()``. Links are made only
from http(s) URLs, so a ``javascript:`` URL in a spec's provenance stays text.
"""

from __future__ import annotations

import html
import math
import re
from typing import Iterable

_SAFE_URL = re.compile(r"^https?://[^\s<>\"'`\\]+$")


class Html(str):
    """Markup that is already safe (built by ``el`` or generated here); never escaped again."""

    def __add__(self, other: object) -> Html:  # Html + text escapes the text; Html + Html stays Html
        return Html(str.__add__(self, esc(other)))


def esc(value: object) -> Html:
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(esc(sep).join(esc(p) for p in parts))


def el(tag: str, *children: object, **attrs: object) -> Html:
    """``<tag attrs>children</tag>``. Attribute names: a trailing ``_`` is dropped (``class_``), ``_``
    inside becomes ``-`` (``text_anchor`` -> ``text-anchor``); None/False attributes are left out."""
    parts = [tag]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{esc(value)}"')
    inner = join(c for c in children if c is not None)
    return Html(f"<{' '.join(parts)}>{inner}</{tag}>")


def safe_url(value: object) -> str | None:
    """The URL if it is a plain http(s) URL, else None (so it is shown as text, not linked)."""
    text = str(value).strip()
    return text if _SAFE_URL.match(text) else None


def link_or_text(value: object) -> Html:
    url = safe_url(value)
    return el("a", url, href=url) if url else esc(value)


# Markdown: backslash-escape what could start code, emphasis, links or table cells, and write
# <, > and & as entities so no raw HTML reaches the renderer. Newlines would end a table row.
_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def md(value: object) -> str:
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_link_or_text(value: object) -> str:
    url = safe_url(value)
    return f"<{url}>" if url else md(value)


# Numbers, the same in both formats.

def fmt_int(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def fmt_sci(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if x == 0:
        return "0"
    return f"{x:.{digits}e}"


def fmt_num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_pct(part: int, total: int) -> str:
    return f"{100 * part / total:.1f}%" if total else ""
