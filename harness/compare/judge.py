"""Judging a compare run: each backend's entry in the results document, its agreement with the
float64 reference (output and every named layer), the pairwise matrix and the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from ...spec import ModelSpec
from ..errors import ExitCode
from ..results.model import CompareEntry, LayerDiff, OutputMetrics, Pairwise, PrecisionInfo, Verdict
from ..workers.runner import WorkerResult
from .metrics import Tolerance, agreement, first_divergence, layer_agreements, topk_agreement
from .precision import computed_precisions, diagnose_fp32, dtype_problem, nonfinite_problem, rounding_depths, topk_check


def failed_entry(name: str, stage: str, error: str, status: str = "failed") -> CompareEntry:
    """A backend that never produced a result (its ONNX export failed, its ``--python`` interpreter was
    refused: "unavailable" when a package is missing there, ...)."""
    return CompareEntry(name=name, status=status, stage=stage, error=error)


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
        dtypes={str(k): str(v) for k, v in r["dtypes"].items()} if r.get("dtypes") else None,
    )


def error_text(result: WorkerResult) -> str:
    if result.status == "timeout":
        return f"timed out after {result.elapsed_s:.0f} s" + (f" during {result.stage}" if result.stage else "")
    if result.status == "crashed":
        return f"worker crashed ({result.signal or f'exit code {result.returncode}'})" + (
            f" during {result.stage}" if result.stage else "")
    return result.error or f"worker failed (exit code {result.returncode})"


@dataclass(frozen=True)
class Criteria:
    """What every backend is judged by: the output's tolerance, each layer's own limits where a
    precision's profile sets them, and the precision the backends were asked to run in."""

    tol: Tolerance
    rel_l2: float
    precision: str = "fp32"
    limits: Mapping[str, tuple[Tolerance, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgement:
    """The verdict of a compare run, and what it rests on: every entry judged, the pairwise matrix."""

    backends: list[CompareEntry]
    pairwise: Pairwise
    verdict: Verdict


def judge(entries: Sequence[CompareEntry], spec: ModelSpec, outputs: dict, criteria: Criteria) -> Judgement:
    """Judge every entry against the reference's outputs; the entries themselves are left as they are.

    ``outputs``: backend name -> (output, {layer: array}) for every backend that ran."""
    ref = outputs.get("reference")
    judged = []
    for entry in entries:
        if entry.status != "ok" or ref is None or entry.name == "reference":
            judged.append(entry)
            continue
        judged.append(_judged(entry, ref, outputs[entry.name], spec, criteria))
    code, checked = exit_code(judged, ref is not None)
    return Judgement(judged, pairwise({n: o[0] for n, o in outputs.items()}),
                     Verdict(int(code), verdict_text(judged, spec.name, code, checked, criteria.precision)))


def exit_code(judged: Sequence[CompareEntry], reference_ran: bool) -> tuple[ExitCode, bool]:
    """The exit code of judged entries, and whether anything was checked against the reference."""
    mismatch = any(e.status == "mismatch" for e in judged)
    failed = any(e.status in ("failed", "unavailable") for e in judged)
    # A gate that checked nothing (every backend failed, unavailable or unsupported) must not pass.
    checked = reference_ran and any(e.name != "reference" and e.status in ("ok", "mismatch") for e in judged)
    code = ExitCode.MISMATCH if mismatch else ExitCode.BACKEND if failed or not checked else ExitCode.OK
    return code, checked


def _judged(entry: CompareEntry, ref: tuple, got: tuple, spec: ModelSpec, criteria: Criteria) -> CompareEntry:
    (ref_out, ref_layers), (out, layers) = ref, got
    order = [layer.name for layer in spec.layers]
    precision = criteria.precision
    a = agreement(ref_out, out, criteria.tol, criteria.rel_l2, names=("reference", entry.name))
    metrics = OutputMetrics.from_agreement(a, top1=topk_agreement(ref_out, out, 1) if a.shape_ok else None,
                                           top5=topk_agreement(ref_out, out, 5) if a.shape_ok else None)
    per_layer = list(layer_agreements(order, ref_layers, layers, criteria.tol, criteria.rel_l2, criteria.limits))
    rows = [LayerDiff.from_agreement(d.layer, d.agreement) for d in per_layer]
    divergence = first_divergence(per_layer)
    first = None if divergence is None else LayerDiff.from_agreement(divergence.layer, divergence.agreement)
    # inf/NaN fail by name (an fp16 overflow), never as a NaN that compares as nothing.
    nonfinite = nonfinite_problem(precision, order, layers, out)
    # Classes: judged for a lower precision only (fp32 keeps its elementwise bar), on finite outputs.
    topk = topk_check(ref_out, out, criteria.rel_l2) if (
        precision != "fp32" and a.shape_ok and nonfinite is None) else None
    dtypes = entry.dtypes or {}
    diagnosis = None
    if precision == "fp32" and first is not None and nonfinite is None:
        diagnosis = diagnose_fp32(first.name, first.rel_l2, rounding_depths(spec)[first.name])
    reported = (entry.environment or {}).get("precision")
    settings = reported.get("settings") if isinstance(reported, dict) else None
    info = PrecisionInfo(precision, computed_precisions(dtypes), dtype_problem(precision, dtypes, order), diagnosis,
                         settings if isinstance(settings, str) else None)
    bad = (not a.ok or not entry.shape_ok or not entry.param_count_ok or first is not None or nonfinite is not None
           or info.problem is not None or (topk is not None and not topk.ok))
    return replace(entry, status="mismatch" if bad else entry.status, metrics=metrics, layers=rows,
                   first_divergent_layer=first, error=nonfinite or entry.error, precision=info, topk=topk)


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
            if not (np.isfinite(x).all() and np.isfinite(y).all()):  # an overflow: no distance (JSON has no NaN)
                row_abs.append(None)
                row_rel.append(None)
                continue
            scale = max(np.linalg.norm(x), np.linalg.norm(y))
            row_abs.append(float(np.abs(x - y).max(initial=0.0)))
            row_rel.append(float(np.linalg.norm(x - y) / scale) if scale > 0 else 0.0)
        max_abs.append(row_abs)
        rel.append(row_rel)
    return Pairwise(names, max_abs, rel)


def verdict_text(entries: Sequence[CompareEntry], spec_name: str, code: int, checked: bool = True,
                 precision: str = "fp32", agree: str = "agree with the float64 reference",
                 mismatch_detail: Callable[[CompareEntry], str] | None = None) -> str:
    """The verdict line. ``agree``: what the passing backends do (training: "train like ..."); a
    mismatching backend is named with ``mismatch_detail``'s text after it, in parentheses, when given."""
    compared = [e for e in entries if e.name != "reference"]
    ok = [e.name for e in compared if e.status == "ok"]
    bad = [e.name + (f" ({mismatch_detail(e)})" if mismatch_detail else "") for e in compared
           if e.status == "mismatch"]
    failed = [e.name for e in entries if e.status in ("failed", "unavailable")]
    # Not a failure, but the verdict must say what was not compared, and why.
    skipped = [f"{e.name} ({e.error})" for e in entries if e.status == "unsupported"]
    unsupported = "; unsupported: " + ", ".join(skipped) if skipped else ""
    # A low-precision verdict says by which profile, and when the batch was too small to judge classes.
    notes = list(dict.fromkeys(e.topk.note for e in compared if e.topk is not None and not e.topk.judged))
    unsupported += "".join(f"; {note}" for note in notes)
    within = "" if precision == "fp32" else f" within the {precision} profile"
    if code == ExitCode.OK:
        return f"PASS: {len(ok)} backends {agree}{within} on '{spec_name}' ({', '.join(ok)})" + unsupported
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
    run_in = "" if precision == "fp32" else f" in {precision}"
    return f"FAIL on '{spec_name}'{run_in}: " + "; ".join(parts) + unsupported
