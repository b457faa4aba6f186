"""Plain-text rendering of a compare results document for the terminal."""

from __future__ import annotations

from ..workers.interpreter_text import interpreter_lines


def _num(value, fmt: str = ".2e") -> str:
    return "-" if value is None else format(value, fmt)


def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def aligned_table(rows: list[list[str]], right: set[int]) -> list[str]:
    """Rows as aligned columns (those in ``right`` right-aligned), a rule under the header row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [f"{c:>{w}}" if i in right else f"{c:<{w}}" for i, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("-" * len(out[0]))
    return out


def render_compare(doc: dict) -> str:
    spec, tol = doc["spec"], doc["tolerance"]
    precision = doc.get("precision") or "fp32"  # absent: a results/1 document, always fp32
    lines = [f"spec '{spec['name']}': {spec['param_count']:,} parameters, output {shape_text(spec['output_shape'])}; "
             f"inputs {shape_text(doc['inputs']['shape'])} ({doc['inputs']['source']}); "
             f"weights {doc['weights']['source']}"]
    if precision != "fp32":
        lines.append(f"precision {precision}: every backend but the float64 reference")
    at_output = " at the output" if tol.get("layers") else ""
    lines += [f"tolerance {tol.get('label') or repr(tol['profile'])}: max abs <= {tol['atol']:g} + {tol['rtol']:g} "
              f"x max|ref|, relative L2 <= {tol['rel_l2']:g}{at_output}"]
    if tol.get("derivation"):
        lines.append(f"  {tol['derivation']}")
    lines.append("")
    rows = [["backend", "status", "output", "params", "max abs", "rel L2", "cosine", "top-1", "top-5", "time"]]
    for e in doc["backends"]:
        m = e.get("metrics") or {}
        shape = shape_text(e.get("output_shape"))
        if e.get("shape_ok") is False:
            shape += " (!)"
        params = "-" if e.get("param_count") is None else f"{e['param_count']:,}"
        if e.get("param_count_ok") is False:
            params += " (!)"
        rows.append([e["name"], e["status"], shape, params, _num(m.get("max_abs")), _num(m.get("rel_l2")),
                     _num(m.get("cosine"), ".8f"), _num(m.get("top1"), ".0%"), _num(m.get("top5"), ".0%"),
                     _num((e.get("timings_s") or {}).get("total"), ".1f") + (" s" if e.get("timings_s") else "")])
    lines += aligned_table(rows, right={3, 4, 5, 6, 7, 8, 9})

    pair = doc.get("pairwise") or {}
    names = pair.get("names") or []
    if len(names) > 1:
        lines += ["", "pairwise relative L2 difference of the outputs:"]
        matrix = [[""] + names] + [[a] + [_num(v, ".1e") for v in row] for a, row in zip(names, pair["rel_l2"])]
        lines += aligned_table(matrix, right=set(range(1, len(names) + 1)))

    if precision != "fp32":
        lines += _layer_errors(doc)

    details = interpreter_lines(doc["backends"])
    for e in doc["backends"]:
        # What a backend wants the user to know about how it ran (how its layer outputs were read, ...).
        details += [f"{e['name']}: {note}" for note in (e.get("environment") or {}).get("notes") or []]
        if e["status"] == "ok" and e.get("topk"):
            details.append(f"{e['name']}: {_topk_text(e['topk'])}")
        if e["status"] == "mismatch":
            details.append(f"{e['name']}: " + _mismatch_text(e, spec))
        elif e.get("param_count") is not None and e["param_count"] != spec["param_count"]:
            # Explained (or it would be a mismatch): say how, here and not only in the JSON.
            note = f": {e['param_note']}" if e.get("param_note") else ""
            details.append(f"{e['name']}: {e['param_count']:,} parameters vs the spec's {spec['param_count']:,}{note}")
        elif e["status"] == "unsupported":  # declared by the backend: no worker ran, nothing to tail
            details.append(f"{e['name']}: unsupported, not run: {e.get('error')}")
        elif e["status"] in ("failed", "unavailable"):
            details.append(f"{e['name']}: {e['status']} during {e.get('stage') or 'run'}: {e.get('error')}")
            tail = (e.get("stderr_tail") or "").strip().splitlines()[-6:]
            details += [f"    | {line}" for line in tail]
    if details:
        lines += [""] + details
    lines += ["", doc["verdict"]["summary"]]
    return "\n".join(lines)


def _layer_errors(doc: dict) -> list[str]:
    """Per layer, each backend's relative L2 error against the reference beside the profile's limit
    (``!``: above it), and the first layer where each backend exceeds it: where precision is lost."""
    tol = doc["tolerance"]
    limits = tol.get("layers") or {}
    backends = [e for e in doc["backends"] if e.get("layers")]
    if not backends:
        return []
    names = list(dict.fromkeys(row["name"] for e in backends for row in e["layers"]))
    rows = [["layer", "limit", *(e["name"] for e in backends)]]
    for name in names:
        cells = []
        for e in backends:
            row = next((r for r in e["layers"] if r["name"] == name), None)
            cells.append("-" if row is None else _num(row["rel_l2"], ".1e") + ("" if row["ok"] else " !"))
        limit = limits.get(name, tol["rel_l2"])
        rows.append([name, _num(limit, ".1e"), *cells])
    profile = tol.get("label") or f"the {tol['profile']} profile"
    out = ["", f"relative L2 error per layer against the float64 reference (limit: {profile}; !: above it):"]
    out += aligned_table(rows, right=set(range(1, len(backends) + 2)))
    for e in backends:
        first = e.get("first_divergent_layer")
        if first:
            limit = limits.get(first["name"], tol["rel_l2"])
            out.append(f"{e['name']}: first exceeds {profile} at layer '{first['name']}' (relative L2 "
                       f"{_num(first['rel_l2'], '.1e')}, limit {_num(limit, '.1e')})")
        else:
            out.append(f"{e['name']}: every layer within {profile}")
    return out


def _topk_text(t: dict) -> str:
    """The top-k line of a low-precision run (compare/precision.py topk_check)."""
    raw = f"top-1 {t['top1']:.0%} ({round(t['top1'] * t['inputs'])}/{t['inputs']}), top-5 {t['top5']:.0%}"
    if not t["judged"]:
        return f"{raw}; {t['note']}"
    if t["lost"]:
        shown = ", ".join(str(i) for i in t["lost"][:8]) + (", ..." if len(t["lost"]) > 8 else "")
        return (f"{raw}; {len(t['lost'])} input(s) with a decisive margin lost their class (input {shown}): kept "
                f"top-1 {t['kept_top1']}/{t['decisive_top1']}, top-5 {t['kept_top5']}/{t['decisive_top5']}")
    return (f"{raw}; every input with a decisive margin kept its class (top-1: {t['decisive_top1']}, "
            f"top-5: {t['decisive_top5']} of {t['inputs']})")


def _mismatch_text(e: dict, spec: dict) -> str:
    parts = []
    info = e.get("precision") or {}
    if info.get("problem"):
        parts.append(info["problem"])
    if e.get("error"):  # inf/NaN: the first layer holding one
        parts.append(e["error"])
    if e.get("shape_ok") is False:
        parts.append(f"output shape {shape_text(e['output_shape'])}, spec says N x {shape_text(spec['output_shape'])}")
    if e.get("param_count_ok") is False:
        note = f" ({e['param_note']})" if e.get("param_note") else ""
        parts.append(f"{e['param_count']:,} parameters, spec says {spec['param_count']:,}{note}")
    first = e.get("first_divergent_layer")
    if first:
        parts.append(f"first diverges at layer '{first['name']}': max abs {_num(first['max_abs'])}, "
                     f"rel L2 {_num(first['rel_l2'])}; smallest passing atol {_num(first['min_atol'])}")
    m = e.get("metrics") or {}
    if m and not m.get("ok", True):
        problem = m.get("problem") or "out of tolerance"
        parts.append(f"output {problem}; smallest passing atol {_num(m.get('min_atol'))}")
    if e.get("topk") and not e["topk"]["ok"]:
        parts.append(_topk_text(e["topk"]))
    if info.get("diagnosis"):
        parts.append(info["diagnosis"])
    if info.get("settings"):
        parts.append(f"ran with {info['settings']}")
    return "; ".join(parts) or "out of tolerance"
