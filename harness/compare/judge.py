"""Judging a compare run: each backend's entry in the results document, its agreement with the
float64 reference (output and every named layer), the pairwise matrix and the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ...spec import ModelSpec
from ..errors import ExitCode
from ..results.model import CompareEntry, LayerDiff, OutputMetrics, Pairwise, Verdict
from ..workers.runner import WorkerResult
from .metrics import Tolerance, agreement, first_divergence, layer_agreements, topk_agreement


def failed_entry(name: str, stage: str, error: str) -> CompareEntry:
    """A backend that never produced a result (its ONNX export failed, ...)."""
    return CompareEntry(name=name, status="failed", stage=stage, error=error)


def backend_entry(name: str, result: WorkerResult, spec: ModelSpec) -> CompareEntry:
    """How ``name``'s worker ended, checked against the spec; not yet judged against the reference."""
    if result.status != "ok":
        return CompareEntry(name=name, status="unavailable" if result.status == "unavailable" else "failed",
                            stage=result.stage or "run", error=error_text(result),
                            stderr_tail=result.stderr_tail or None, timings_s={"total": round(result.elapsed_s, 3)})
    r = result.result or {}
    shape = list(r.get("output_shape") or [])
    count = r.get("param_count")
    return CompareEntry(
        name=name, status="ok", output_shape=shape, shape_ok=shape[1:] == list(spec.output_shape),
        param_count=count, param_count_ok=count == spec.param_count or r.get("param_explained") is True,
        param_note=r.get("param_note"), missing_layers=list(r.get("missing_layers") or []),
        environment=r.get("environment") or {},
        timings_s={**(r.get("timings_s") or {}), "total": round(result.elapsed_s, 3)},
    )


def error_text(result: WorkerResult) -> str:
    if result.status == "timeout":
        return f"timed out after {result.elapsed_s:.0f} s" + (f" during {result.stage}" if result.stage else "")
    if result.status == "crashed":
        return f"worker crashed ({result.signal or f'exit code {result.returncode}'})" + (
            f" during {result.stage}" if result.stage else "")
    return result.error or f"worker failed (exit code {result.returncode})"


@dataclass(frozen=True)
class Judgement:
    """The verdict of a compare run, and what it rests on: every entry judged, the pairwise matrix."""

    backends: list[CompareEntry]
    pairwise: Pairwise
    verdict: Verdict


def judge(entries: Sequence[CompareEntry], spec: ModelSpec, outputs: dict, tol: Tolerance,
          rel_l2: float) -> Judgement:
    """Judge every entry against the reference's outputs; the entries themselves are left as they are.

    ``outputs``: backend name -> (output, {layer: array}) for every backend that ran."""
    ref = outputs.get("reference")
    order = [layer.name for layer in spec.layers]
    judged = []
    for entry in entries:
        if entry.status != "ok" or ref is None or entry.name == "reference":
            judged.append(entry)
            continue
        judged.append(_judged(entry, ref, outputs[entry.name], order, tol, rel_l2))
    mismatch = any(e.status == "mismatch" for e in judged)
    failed = any(e.status in ("failed", "unavailable") for e in judged)
    # A gate that checked nothing (every backend failed, unavailable or unsupported) must not pass.
    checked = ref is not None and any(e.name != "reference" and e.status in ("ok", "mismatch") for e in judged)
    code = ExitCode.MISMATCH if mismatch else ExitCode.BACKEND if failed or not checked else ExitCode.OK
    return Judgement(judged, pairwise({n: o[0] for n, o in outputs.items()}),
                     Verdict(int(code), verdict_text(judged, spec.name, code, checked)))


def _judged(entry: CompareEntry, ref: tuple, got: tuple, order: list[str], tol: Tolerance,
            rel_l2: float) -> CompareEntry:
    (ref_out, ref_layers), (out, layers) = ref, got
    a = agreement(ref_out, out, tol, rel_l2, names=("reference", entry.name))
    metrics = OutputMetrics.from_agreement(a, top1=topk_agreement(ref_out, out, 1) if a.shape_ok else None,
                                           top5=topk_agreement(ref_out, out, 5) if a.shape_ok else None)
    per_layer = list(layer_agreements(order, ref_layers, layers, tol, rel_l2))
    rows = [LayerDiff.from_agreement(d.layer, d.agreement) for d in per_layer]
    divergence = first_divergence(per_layer)
    first = None if divergence is None else LayerDiff.from_agreement(divergence.layer, divergence.agreement)
    bad = not a.ok or not entry.shape_ok or not entry.param_count_ok or first is not None
    return replace(entry, status="mismatch" if bad else entry.status, metrics=metrics, layers=rows,
                   first_divergent_layer=first)


def pairwise(outputs: dict[str, np.ndarray]) -> Pairwise:
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
    return Pairwise(names, max_abs, rel)


def verdict_text(entries: Sequence[CompareEntry], spec_name: str, code: int, checked: bool = True) -> str:
    compared = [e for e in entries if e.name != "reference"]
    ok = [e.name for e in compared if e.status == "ok"]
    bad = [e.name for e in compared if e.status == "mismatch"]
    failed = [e.name for e in entries if e.status in ("failed", "unavailable")]
    # Not a failure, but the verdict must say what was not compared, and why.
    skipped = [f"{e.name} ({e.error})" for e in entries if e.status == "unsupported"]
    unsupported = "; unsupported: " + ", ".join(skipped) if skipped else ""
    if code == ExitCode.OK:
        agree = f"PASS: {len(ok)} backends agree with the float64 reference on '{spec_name}' ({', '.join(ok)})"
        return agree + unsupported
    if not checked:
        why = [f"{e.name} {e.status}" for e in entries if e.status in ("failed", "unavailable", "unsupported")]
        return (f"FAIL on '{spec_name}': nothing was checked: no backend was compared with the float64 reference"
                + (f" ({', '.join(why)})" if why else ""))
    parts = []
    if bad:
        parts.append("mismatch: " + ", ".join(bad))
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if ok:
        parts.append("agree: " + ", ".join(ok))
    return f"FAIL on '{spec_name}': " + "; ".join(parts) + unsupported
