"""Small SVG charts drawn here (no plotting library, no script): per-layer error on a log scale and
throughput against batch size. Positions along x are categories (layers, batch sizes) evenly spaced;
hovering a point shows its value through an SVG <title>.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .markup import Html, el, fmt_num, fmt_sci, join

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#999999")
BAD = "#d62728"

W, H = 720, 330
RIGHT, TOP = 16, 44


@dataclass
class Point:
    x: int  # index into the categories
    y: float | None  # None: no value (a gap); 0 on a log axis: drawn at the bottom, hollow
    note: str = ""  # tooltip
    bad: bool = False  # drawn with a red ring
    low: float | None = None  # whisker, same units as y
    high: float | None = None


@dataclass
class Series:
    name: str
    points: list[Point] = field(default_factory=list)


def color_for(name: str, names: Sequence[str]) -> str:
    return PALETTE[list(names).index(name) % len(PALETTE)] if name in names else PALETTE[-1]


class _LogAxis:
    def __init__(self, values: list[float], top: float, bottom: float):
        positive = [v for v in values if v > 0]
        lo = math.floor(math.log10(min(positive))) if positive else -8
        hi = math.ceil(math.log10(max(positive))) if positive else -7
        self.lo, self.hi = lo - (1 if lo == hi else 0), hi
        self.top, self.bottom = top, bottom

    def __call__(self, v: float) -> float:
        e = math.log10(v) if v > 0 else self.lo
        return self.bottom - (e - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)

    def ticks(self) -> list[tuple[float, str]]:
        step = max(1, math.ceil((self.hi - self.lo) / 8))
        return [(10.0 ** e, f"1e{e}") for e in range(self.lo, self.hi + 1, step)]


class _LinearAxis:
    """From 0 (throughput), or ``zoom``: from just below the smallest value, so that curves close together
    (losses of backends that agree to 1e-4) stay apart, with as many tick decimals as the step needs."""

    def __init__(self, values: list[float], top: float, bottom: float, zoom: bool = False):
        finite = [v for v in values if v is not None]
        peak = max(finite or [1.0]) or 1.0
        low = min(finite) if zoom and finite else 0.0
        raw = (peak - low) / 5 or abs(peak) / 500 or 1.0
        mag = 10 ** math.floor(math.log10(raw))
        multiple = next(m for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        self.step = multiple * mag
        self.lo = self.step * math.floor(low / self.step)
        self.hi = max(self.step * math.ceil(peak / self.step), self.lo + self.step)
        # a 2.5 step (0.0025) needs one decimal more than its magnitude (0.001)
        self.decimals = max(0, -math.floor(math.log10(mag)) + (multiple == 2.5)) if zoom else None
        self.top, self.bottom = top, bottom

    def __call__(self, v: float) -> float:
        return self.bottom - (v - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)

    def ticks(self) -> list[tuple[float, str]]:
        values = [self.lo + i * self.step for i in range(round((self.hi - self.lo) / self.step) + 1)]
        if self.decimals is None:
            return [(v, fmt_num(v)) for v in values]
        return [(v, f"{v:.{self.decimals}f}") for v in values]


def line_chart(title: str, categories: Sequence[str], series: Sequence[Series], *, y_label: str, x_label: str,
               log_y: bool, css_class: str, colors: Sequence[str] | None = None, zoom: bool = False) -> Html:
    """One SVG chart: a line per series over categorical x, log or linear y, legend on top. ``zoom``: a
    linear axis starts just below the smallest value instead of at 0."""
    rotate = max((len(c) for c in categories), default=0) * len(categories) > 90
    bottom = H - (78 if rotate else 46)
    values = [v for s in series for p in s.points for v in (p.y, p.low, p.high) if v is not None]
    axis = _LogAxis(values, TOP + 8, bottom) if log_y else _LinearAxis(values, TOP + 8, bottom, zoom)
    left = 30 + 6 * max(len(label) for _, label in axis.ticks())  # room for the widest tick label
    xs = _x_positions(len(categories), left)
    parts: list[Html] = [el("title", title), el("rect", x=0, y=0, width=W, height=H, fill="white")]
    parts.append(el("text", title, x=left, y=18, font_size=14, font_weight="bold"))
    for v, label in axis.ticks():  # grid and y labels
        y = axis(v)
        parts.append(el("line", x1=left, x2=W - RIGHT, y1=f"{y:.1f}", y2=f"{y:.1f}", stroke="#e5e5e5"))
        parts.append(el("text", label, x=left - 6, y=f"{y + 4:.1f}", font_size=10, text_anchor="end"))
    parts.append(el("line", x1=left, x2=left, y1=TOP + 4, y2=bottom, stroke="#888"))
    parts.append(el("line", x1=left, x2=W - RIGHT, y1=bottom, y2=bottom, stroke="#888"))
    for x, cat in zip(xs, categories):
        if rotate:
            parts.append(el("text", cat, x=f"{x:.1f}", y=bottom + 12, font_size=10, text_anchor="end",
                            transform=f"rotate(-45 {x:.1f} {bottom + 12})"))
        else:
            parts.append(el("text", cat, x=f"{x:.1f}", y=bottom + 16, font_size=10, text_anchor="middle"))
    parts.append(el("text", x_label, x=(left + W - RIGHT) / 2, y=H - 6, font_size=11, text_anchor="middle"))
    parts.append(el("text", y_label, x=14, y=(TOP + bottom) / 2, font_size=11, text_anchor="middle",
                    transform=f"rotate(-90 14 {(TOP + bottom) / 2:.1f})"))
    names = [s.name for s in series]
    legend_x = left
    for k, s in enumerate(series):
        color = colors[k] if colors else color_for(s.name, names)
        parts.append(_series(s, xs, axis, color, log_y))
        parts.append(el("rect", x=legend_x, y=27, width=10, height=10, fill=color))
        parts.append(el("text", s.name, x=legend_x + 14, y=36, font_size=11))
        legend_x += 24 + 6.5 * len(s.name)
    return el("svg", *parts, xmlns="http://www.w3.org/2000/svg", viewBox=f"0 0 {W} {H}", class_=css_class,
              role="img", aria_label=title, font_family="Helvetica, Arial, sans-serif")


def _x_positions(n: int, left: float) -> list[float]:
    span = W - RIGHT - left - 30
    return [left + 15 + (span * i / (n - 1) if n > 1 else span / 2) for i in range(n)]


def _series(s: Series, xs: list[float], axis, color: str, log_y: bool) -> Html:
    parts: list[Html] = []
    run: list[str] = []  # consecutive points form one polyline; a None breaks it
    for p in s.points + [Point(-1, None)]:
        if p.y is None:
            if len(run) > 1:
                parts.append(el("polyline", points=" ".join(run), fill="none", stroke=color, stroke_width=2))
            run = []
            continue
        x, y = xs[p.x], axis(p.y)
        run.append(f"{x:.1f},{y:.1f}")
        if p.low is not None and p.high is not None:
            parts.append(el("line", x1=f"{x:.1f}", x2=f"{x:.1f}", y1=f"{axis(p.low):.1f}",
                            y2=f"{axis(p.high):.1f}", stroke=color, stroke_width=1))
        hollow = log_y and p.y <= 0
        tip = f"{s.name}: {p.note or (fmt_sci(p.y) if log_y else fmt_num(p.y))}"
        parts.append(el("circle", el("title", tip), cx=f"{x:.1f}", cy=f"{y:.1f}", r=3.5,
                        fill="white" if hollow else color, stroke=color, stroke_width=1.5))
        if p.bad:
            parts.append(el("circle", cx=f"{x:.1f}", cy=f"{y:.1f}", r=7, fill="none", stroke=BAD, stroke_width=2))
    return el("g", join(parts), class_="series")
