"""The report's training section, from compare --train results (a document's "training" and each
backend's "training", schema alexbench.results/3, docs/results.md): the loss curve of every backend
over the steps, per layer the worst gradient error against its limit, and where each backend first
diverged, with the settings the steps ran under. Blocks only (see report_content)."""

from __future__ import annotations

import math
from typing import Any

from ...spec import ModelSpec
from ...spec.training import TrainingSpec, describe
from ..train.table import kinks_text
from .blocks import Block, Cell, Facts, Figure, Section, Table
from .charts import Point, Series, color_for, line_chart
from .markup import fmt_num, fmt_sci
from .model import Results, Run


# The settings a run lists, in this order (TrainingSpec.settings() plus loss_on).
def training_runs(results: Results) -> list[Run]:
    return [run for run in results.compare_runs if run.doc.get("training")]


def training_section(spec: ModelSpec, results: Results, everyone: list[str]) -> Section:
    """``everyone``: the backend names in colour order, shared with the other charts of the report."""
    blocks: list[Block] = []
    for i, run in enumerate(training_runs(results), start=1):
        trained = [b for b in run.doc["backends"] if b.get("training")]
        blocks.append(Facts("training-settings", _settings(run)))
        blocks.append(Table("training", ["backend", "steps", "final loss", "first divergence"],
                            [_backend_row(run, b) for b in run.doc["backends"]],
                            caption=f"Training steps against the float64 reference · {run.label}"))
        if trained:
            blocks.append(Figure("chart chart-loss", _loss_chart(run, trained, everyone), f"chart-loss-{i}.svg",
                                 f"Loss after each step, every backend on the same batch · {run.label}"))
            blocks.append(_gradient_table(spec, run, trained))
    return Section("training", "Training", blocks)


def _settings(run: Run) -> list[tuple[str, Any]]:
    t = run.doc["training"]
    s = t.get("settings") or {}
    opt = describe(TrainingSpec.from_settings(s), loss_on=s.get("loss_on"))
    if s.get("declared") is False:
        opt += " (the spec has no training section: defaults)"
    facts: list[tuple[str, Any]] = [
        ("run", run.label), ("steps", f"{t.get('steps')} on one batch of {t.get('batch')}"), ("settings", opt),
        ("labels", (t.get("labels") or {}).get("source", "?")),
        ("dropout masks", _masks(t.get("masks") or {}))]
    derivation = (t.get("tolerance") or {}).get("derivation")
    if derivation:
        facts.append(("tolerance", derivation))
    kinks = kinks_text((t.get("tolerance") or {}).get("ambiguous") or [])
    if kinks:
        facts.append(("kinks within float32's error (their spread widens the limits)", kinks))
    return facts


def _masks(masks: dict[str, Any]) -> str:
    layers = masks.get("layers") or []
    return f"{masks.get('source', '?')}; " + (f"layers {', '.join(layers)}" if layers else "no dropout layer")


def _backend_row(run: Run, b: dict[str, Any]) -> list[Cell | str]:
    t = b.get("training")
    if not t:  # unsupported (an ONNX runtime, with its reason), unavailable or failed
        status = b.get("status", "?")
        text = "did not train" if status == "ok" else status
        return [b["name"], "", "", Cell(text, "bad" if status == "failed" else "warn", note=b.get("error") or "")]
    losses = t.get("losses") or []
    final = Cell(fmt_num(losses[-1], 6) if losses else "–", num=True)
    first = t.get("first_divergent")
    if first:
        what = first["kind"] if first["kind"] == first["tensor"] else f"{first['kind']} {first['tensor']}"
        where = f"step {first['step']}: {what}, rel_l2 {fmt_sci(first['rel_l2'])} (limit {fmt_sci(first['limit'])})"
        return [b["name"], Cell(str(len(losses)), num=True), final, Cell("diverged", "bad", note=where)]
    if b["name"] == "reference":
        return [b["name"], Cell(str(len(losses)), num=True), final, Cell("reference (float64)")]
    return [b["name"], Cell(str(len(losses)), num=True), final, Cell("none", "ok", note="every step within tolerance")]


def _loss_chart(run: Run, trained: list[dict[str, Any]], everyone: list[str]) -> str:
    steps = max(len(b["training"].get("losses") or []) for b in trained)
    series = [Series(b["name"], [Point(k, loss if _finite(loss) else None, f"step {k + 1}: loss {fmt_num(loss, 6)}")
                                 for k, loss in enumerate(b["training"].get("losses") or [])])
              for b in trained]
    colors = [color_for(s.name, everyone) for s in series]
    return line_chart(f"Loss per step · {run.label}", [str(k) for k in range(1, steps + 1)], series, log_y=False,
                      css_class="chart chart-loss", y_label="loss", x_label="step", colors=colors, zoom=True)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)  # a NaN loss is a gap in its line, not an axis


def _gradient_table(spec: ModelSpec, run: Run, trained: list[dict[str, Any]]) -> Table:
    """Per layer with a trainable tensor, per backend: its gradient entry with the worst margin (rel_l2 over
    limit) across the layer's tensors and every step."""
    judged = [b for b in trained if any(s.get("tensors") for s in b["training"].get("steps") or [])]
    worst: dict[str, dict[str, dict[str, Any]]] = {b["name"]: _worst_gradients(b["training"]) for b in judged}
    layers = [layer.name for layer in spec.layers if any(layer.name in w for w in worst.values())]
    rows = [[name, *(_gradient_cell(worst[b["name"]].get(name)) for b in judged)] for name in layers]
    return Table("training-gradients", ["layer", *(f"{b['name']}: rel_l2 / limit" for b in judged)], rows,
                 caption="Gradient error per layer: the worst relative L2 of the layer's tensors over every step, "
                         f"against its limit · {run.label}")


def _worst_gradients(training: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Layer -> its worst gradient entry, with the step it came from and whether all of the layer's were ok."""
    worst: dict[str, dict[str, Any]] = {}
    failed: set[str] = set()
    for step in training.get("steps") or []:
        for t in step.get("tensors") or []:
            if t.get("kind") != "gradient":
                continue
            layer = t["tensor"].rsplit(".", 1)[0]  # canonical names are <layer>.<param>
            if not t["ok"]:
                failed.add(layer)
            if layer not in worst or _margin(t) > _margin(worst[layer]):
                worst[layer] = {**t, "step": step["step"]}
    return {layer: {**t, "all_ok": layer not in failed} for layer, t in worst.items()}


def _margin(t: dict[str, Any]) -> float:
    """rel_l2 over its limit: a missing rel_l2 (a missing tensor, a NaN: its "problem") is the worst there is,
    and with a zero limit any error is infinitely far outside."""
    if t.get("rel_l2") is None:
        return float("inf")
    if t.get("limit"):
        return t["rel_l2"] / t["limit"]
    return float("inf") if t["rel_l2"] else 0.0


def _gradient_cell(t: dict[str, Any] | None) -> Cell:
    if t is None:
        return Cell("–")
    where = f"{t['tensor']}, step {t['step']}" + (f": {t['problem']}" if t.get("problem") else "")
    return Cell(f"{fmt_sci(t['rel_l2'])} / {fmt_sci(t['limit'])}", "ok" if t["all_ok"] else "bad", num=True,
                note=where)
