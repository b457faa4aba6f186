"""The table ``alexbench bench`` prints: one row per backend, precision, variant and batch size,
with the device, the peaks and the harness' own overhead above it and what was skipped or
failed below it. When several precisions ran, each backend's rows stand side by side with its
float32 row and a column says the speed-up; int8's calibration time is a line of its own, and so is
the interpreter each backend ran in when ``--python`` named another.
Training-step rows (bench --train) stand in a block of their own, under the FLOP count they use."""

from __future__ import annotations

from typing import Any

from ..workers.interpreter_text import interpreter_lines
from .precisions import BASELINE, NAMES
from .training import INPUTS as TRAIN_INPUTS

COLUMNS = ("backend", "execution", "precision", "batch", "median ms", "p10-p90 ms", "images/s", "GFLOP/s",
           "% matmul", "% theory", "reps")


TRAIN_SEMANTICS = "seeded labels and dropout masks drawn once per batch size"
CONTENDED = 0.25  # cores' worth of other work during a row that makes its figures suspect


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:,.1f}"


def _same_run(r: dict[str, Any]) -> tuple:
    return r["backend"], r.get("variant"), r["device"], r["batch"]


def speedups(rows: list[dict[str, Any]]) -> list[float | None]:
    """Each row's images/s over the float32 row of the same backend, variant, device and batch in
    the same run (None where that row is missing)."""
    base = {_same_run(r): r["images_per_s"] for r in rows if r["precision"] == BASELINE}
    return [r["images_per_s"] / base[k] if (k := _same_run(r)) in base else None for r in rows]


def _side_by_side(r: dict[str, Any]) -> tuple:
    order = NAMES.index(r["precision"]) if r["precision"] in NAMES else len(NAMES)
    return r["batch"], r["backend"], r.get("variant") or "", order, r["precision"]


def _calibration_lines(doc: dict[str, Any]) -> list[str]:
    how = doc["bench"]["settings"].get("calibration") or "seeded inputs"
    return [f"int8 calibration ({b['name']}{' ' + b['variant'] if b.get('variant') else ''}): "
            f"{b['timings_s']['calibration']:.2f} s on {how}, at build: not in the timed runs"
            for b in doc["backends"] if (b.get("timings_s") or {}).get("calibration") is not None]


def _row(r: dict[str, Any]) -> list[str]:
    execution = r.get("execution") or ""
    if r.get("variant"):
        execution = f"{execution} [{r['variant']}]"
    return [r["backend"], execution, r["precision"], str(r["batch"]), _ms(r["median_ms"]),
            f"{_ms(r['p10_ms'])}-{_ms(r['p90_ms'])}", _num(r["images_per_s"]), _num(r.get("gflops")),
            _pct(r.get("peak_share")), _pct(r.get("theoretical_share")), str(r.get("repetitions", ""))]


def _grid(header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    numeric = {i for i, h in enumerate(header) if h not in ("backend", "execution", "precision")}

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _peak_lines(peak: dict[str, Any]) -> list[str]:
    lines = []
    for precision, m in (peak.get("measured") or {}).items():
        if m.get("gflops"):
            others = ", ".join(f"{lib} {v['gflops']:,.0f}" for lib, v in (m.get("libraries") or {}).items()
                               if lib != m["library"])
            threads = f"{m['threads']} thread{'' if m['threads'] == 1 else 's'}, " if m.get("threads") else ""
            seen = ", ".join(f"{k} {v}" for k, v in ((m.get("libraries") or {}).get(m["library"], {})
                                                     .get("threads_seen") or {}).items())
            lines.append(f"matmul peak ({precision}, {m['n']}^3, {threads}the fastest library, measured in this run): "
                         f"{m['gflops']:,.1f} GFLOP/s with {m['library']}" + (f" (its pool: {seen})" if seen else "")
                         + (f"; also tried: {others}" if others else ""))
        else:
            lines.append(f"matmul peak ({precision}): not measured ({m.get('error')})")
    for precision, t in (peak.get("theoretical") or {}).items():
        if t.get("basis"):  # a figure is printed only with what it rests on
            lines.append(f"theoretical peak ({precision}): {t['gflops']:,.1f} GFLOP/s = {t['basis']}")
    return lines


def _rows_grid(rows: list[dict[str, Any]]) -> list[str]:
    if len({r["precision"] for r in rows}) > 1:
        rows = sorted(rows, key=_side_by_side)
        cells = [[*_row(r), "-" if x is None else f"{x:.2f}x"] for r, x in zip(rows, speedups(rows))]
        return _grid((*COLUMNS, f"vs {BASELINE}"), cells)
    rows = sorted(rows, key=lambda r: (r["precision"], r["batch"], -r["images_per_s"]))
    return _grid(COLUMNS, [_row(r) for r in rows]) if rows else ["(no rows)"]


def render_bench(doc: dict[str, Any]) -> str:
    bench = doc["bench"]
    s = bench["settings"]
    out = [f"alexbench bench · spec {doc['spec']['name']} ({doc['spec']['macs'] / 1e6:,.1f} M MACs per image) · "
           f"{s['device']}: {s['device_name']} · {s['threads']} threads"]
    m = s["method"]
    out.append(f"method: {m['warmup']} warm-up runs, then repetitions until {m['min_time_s']:g} s and "
               f"{m['min_reps']} runs; median with p10-p90; inputs "
               + (TRAIN_INPUTS if s.get("train") else "staged on the device"))
    out += _peak_lines(bench.get("peak") or {})
    for o in bench.get("overhead") or []:
        out.append(f"harness overhead (null backend): median {o['median_ms'] * 1e3:.2f} us per repetition "
                   f"({o['repetitions']} reps)")
    busy = [r for r in bench["rows"] if (r.get("other_cores_busy") or 0) >= CONTENDED]
    if s["device"] == "cpu" and busy:
        worst = max(busy, key=lambda r: r["other_cores_busy"])
        out.append(f"WARNING: other processes kept up to {worst['other_cores_busy']:.1f} of {s['threads']} cores busy "
                   f"while {len(busy)} row(s) were timed (e.g. {worst['backend']} batch {worst['batch']}): those "
                   f"figures are low; rerun on an idle machine")
    out.append("")
    inference = [r for r in bench["rows"] if not r.get("train")]
    train = [r for r in bench["rows"] if r.get("train")]
    if inference or not train:
        out += _rows_grid(inference)
    if train:
        t = s.get("train") or {}
        out += [""] if inference else []
        out.append(f"training step (forward + backward + SGD update; {TRAIN_SEMANTICS}): "
                   f"{t.get('macs_per_image', 0) / 1e6:,.1f} M MACs per image, {t.get('flop_count', '')}")
        out += _rows_grid(train)
    out += _calibration_lines(doc)
    # Where each backend ran, whenever --python named another interpreter (else every job ran in this one).
    out += interpreter_lines(doc["backends"], always=bool(s.get("python")))
    for skip in bench.get("skipped") or []:
        label = " ".join(filter(None, (skip["backend"], skip["precision"], skip.get("variant"),
                                       "train" if skip.get("train") else None)))
        out.append(f"skipped {label}: {skip['reason']}")
    for f in bench.get("failures") or []:
        out.append(f"FAILED {f['backend']} {f['precision']} batch {f['batch']}: {f['error']}")
    for b in doc["backends"]:
        if b["status"] != "ok":
            out.append(f"{b['status'].upper()} {b['name']} ({b.get('stage') or '?'}): {b['error']}")
    out.append("")
    out.append(("OK: " if doc["verdict"]["exit_code"] == 0 else "FAILED: ") + doc["verdict"]["summary"])
    return "\n".join(out)
