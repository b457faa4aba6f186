"""Judging a compare run: each backend's entry in the results document, its agreement with the
float64 reference (output and every named layer), the pairwise matrix and the verdict.
"""

from __future__ import annotations

import numpy as np

from ...spec import ModelSpec
from ..errors import ExitCode
from ..workers.runner import WorkerResult
from .metrics import Agreement, Tolerance, agreement, topk_agreement


def failed_entry(name: str, stage: str, error: str) -> dict:
    return {"name": name, "status": "failed", "stage": stage, "error": error, "stderr_tail": None,
            "output_shape": None, "shape_ok": None, "param_count": None, "param_count_ok": None,
            "metrics": None, "layers": [], "missing_layers": [], "first_divergent_layer": None}


def backend_entry(name: str, result: WorkerResult, spec: ModelSpec) -> dict:
    if result.status != "ok":
        entry = failed_entry(name, result.stage or "run", error_text(result))
        entry["status"] = "unavailable" if result.status == "unavailable" else "failed"
        entry["stderr_tail"] = result.stderr_tail or None
        entry["timings_s"] = {"total": round(result.elapsed_s, 3)}
        return entry
    r = result.result or {}
    shape = list(r.get("output_shape") or [])
    count = r.get("param_count")
    return {
        "name": name, "status": "ok", "stage": None, "error": None, "stderr_tail": None,
        "output_shape": shape, "shape_ok": shape[1:] == list(spec.output_shape),
        "param_count": count, "param_count_ok": count == spec.param_count or r.get("param_explained") is True,
        "param_note": r.get("param_note"),
        "metrics": None, "layers": [], "missing_layers": list(r.get("missing_layers") or []),
        "first_divergent_layer": None, "environment": r.get("environment") or {},
        "timings_s": {**{k: v for k, v in (r.get("timings_s") or {}).items()}, "total": round(result.elapsed_s, 3)},
    }


def error_text(result: WorkerResult) -> str:
    if result.status == "timeout":
        return f"timed out after {result.elapsed_s:.0f} s" + (f" during {result.stage}" if result.stage else "")
    if result.status == "crashed":
        return f"worker crashed ({result.signal or f'exit code {result.returncode}'})" + (
            f" during {result.stage}" if result.stage else "")
    return result.error or f"worker failed (exit code {result.returncode})"


def _layer_row(name: str, a: Agreement) -> dict:
    j = a.to_json()
    return {"name": name, "max_abs": j["max_abs"], "rel_l2": j["rel_l2"], "ok": a.ok, "min_atol": j["min_atol"]}


def judge(doc: dict, spec: ModelSpec, outputs: dict, tol: Tolerance, rel_l2: float) -> None:
    ref = outputs.get("reference")
    order = [layer.name for layer in spec.layers]
    mismatch = failed = False
    for entry in doc["backends"]:
        name = entry["name"]
        if entry["status"] != "ok":
            failed = True
            continue
        if ref is None or name == "reference":
            continue
        out, layers = outputs[name]
        a = agreement(ref[0], out, tol, rel_l2, names=("reference", name))
        metrics = a.to_json()
        metrics["top1"] = topk_agreement(ref[0], out, 1) if a.shape_ok else None
        metrics["top5"] = topk_agreement(ref[0], out, 5) if a.shape_ok else None
        entry["metrics"] = metrics
        rows = [_layer_row(n, agreement(ref[1][n], layers[n], tol, rel_l2)) for n in order
                if n in layers and n in ref[1]]
        entry["layers"] = rows
        entry["first_divergent_layer"] = next((row for row in rows if not row["ok"]), None)
        bad = (not a.ok or not entry["shape_ok"] or not entry["param_count_ok"]
               or entry["first_divergent_layer"] is not None)
        if bad:
            entry["status"] = "mismatch"
            mismatch = True
    doc["pairwise"] = pairwise({n: o[0] for n, o in outputs.items()})
    code = ExitCode.MISMATCH if mismatch else ExitCode.BACKEND if failed else ExitCode.OK
    doc["verdict"] = {"exit_code": int(code), "summary": verdict_text(doc, code)}


def pairwise(outputs: dict[str, np.ndarray]) -> dict:
    names = list(outputs)
    max_abs, rel = [], []
    for a in names:
        row_abs, row_rel = [], []
        for b in names:
            x, y = outputs[a].astype(np.float64), outputs[b].astype(np.float64)
            if x.shape != y.shape:
                row_abs.append(None)
                row_rel.append(None)
                continue
            scale = max(np.linalg.norm(x), np.linalg.norm(y))
            row_abs.append(float(np.abs(x - y).max(initial=0.0)))
            row_rel.append(float(np.linalg.norm(x - y) / scale) if scale > 0 else 0.0)
        max_abs.append(row_abs)
        rel.append(row_rel)
    return {"names": names, "max_abs": max_abs, "rel_l2": rel}


def verdict_text(doc: dict, code: int) -> str:
    entries = doc["backends"]
    compared = [e for e in entries if e["name"] != "reference"]
    ok = [e["name"] for e in compared if e["status"] == "ok"]
    bad = [e["name"] for e in compared if e["status"] == "mismatch"]
    failed = [e["name"] for e in entries if e["status"] in ("failed", "unavailable")]
    spec = doc["spec"]["name"]
    if code == ExitCode.OK:
        return f"PASS: {len(ok)} backends agree with the float64 reference on '{spec}' ({', '.join(ok)})"
    parts = []
    if bad:
        parts.append("mismatch: " + ", ".join(bad))
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if ok:
        parts.append("agree: " + ", ".join(ok))
    return f"FAIL on '{spec}': " + "; ".join(parts)
