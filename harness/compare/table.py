"""Plain-text rendering of a compare results document for the terminal."""

from __future__ import annotations


def _num(value, fmt: str = ".2e") -> str:
    return "-" if value is None else format(value, fmt)


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
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
    lines = [f"spec '{spec['name']}': {spec['param_count']:,} parameters, output {_shape(spec['output_shape'])}; "
             f"inputs {_shape(doc['inputs']['shape'])} ({doc['inputs']['source']}); weights {doc['weights']['source']}",
             f"tolerance {tol.get('label') or repr(tol['profile'])}: max abs <= {tol['atol']:g} + {tol['rtol']:g} "
             f"x max|ref|, relative L2 <= {tol['rel_l2']:g}", ""]
    rows = [["backend", "status", "output", "params", "max abs", "rel L2", "cosine", "top-1", "top-5", "time"]]
    for e in doc["backends"]:
        m = e.get("metrics") or {}
        shape = _shape(e.get("output_shape"))
        if e.get("shape_ok") is False:
            shape += " (!)"
        params = "-" if e.get("param_count") is None else f"{e['param_count']:,}"
        if e.get("param_count_ok") is False:
            params += " (!)"
        rows.append([e["name"], e["status"], shape, params, _num(m.get("max_abs")), _num(m.get("rel_l2")),
                     _num(m.get("cosine"), ".8f"), _num(m.get("top1"), ".0%"), _num(m.get("top5"), ".0%"),
                     _num((e.get("timings_s") or {}).get("total"), ".1f") + (" s" if e.get("timings_s") else "")])
    lines += _table(rows, right={3, 4, 5, 6, 7, 8, 9})

    pair = doc.get("pairwise") or {}
    names = pair.get("names") or []
    if len(names) > 1:
        lines += ["", "pairwise relative L2 difference of the outputs:"]
        matrix = [[""] + names] + [[a] + [_num(v, ".1e") for v in row] for a, row in zip(names, pair["rel_l2"])]
        lines += _table(matrix, right=set(range(1, len(names) + 1)))

    details = []
    for e in doc["backends"]:
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


def _mismatch_text(e: dict, spec: dict) -> str:
    parts = []
    if e.get("shape_ok") is False:
        parts.append(f"output shape {_shape(e['output_shape'])}, spec says N x {_shape(spec['output_shape'])}")
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
    return "; ".join(parts) or "out of tolerance"
