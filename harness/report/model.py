"""What a report shows, gathered once and rendered twice (Markdown and HTML).

Everything about the architecture comes from the spec alone; results files (schema
alexbench.results/1, /2 or /3) add parity, training and throughput. Files from several machines merge: each
machine becomes one column, each benchmarked device one chart.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from ...spec import Layer, ModelSpec, fmt_shape
from ..errors import UsageError
from .markup import fmt_pct


class ReportError(UsageError):
    """A report cannot be made (bad results file, results for another spec, no Graphviz): exit 2."""


# ---- layer table ----------------------------------------------------------------------------

# Attribute values that mean "nothing special"; left out of the one-line description.
_NEUTRAL = {"groups": 1, "stride": (1, 1), "padding": (0, 0, 0, 0), "bias": True, "ceil_mode": False,
            "in_features": None}


def fmt_attr_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        if len(value) == 4 and len(set(value)) == 1:  # padding on all four sides
            return str(value[0])
        if len(value) == 2:
            return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def key_attrs(layer: Layer) -> str:
    """``filters 96 · kernel 11×11 · stride 4``: the attributes that say what this layer does."""
    if "kernel" in layer.attrs:  # a kernel always shows both sides
        shown = {**layer.attrs, "kernel": _pair(layer.attrs.get("kernel"))}
    else:
        shown = layer.attrs
    return " · ".join(f"{k} {v if isinstance(v, str) else fmt_attr_value(v)}" for k, v in shown.items()
                      if k not in _NEUTRAL or layer.attrs[k] != _NEUTRAL[k])


def _pair(value: Any) -> Any:
    return f"{value[0]}×{value[1]}" if isinstance(value, tuple) and len(value) == 2 else value


@dataclass(frozen=True)
class LayerRow:
    name: str
    op: str
    attrs: str
    output_shape: str
    params: int
    macs: int
    param_share: str
    mac_share: str


def layer_rows(spec: ModelSpec) -> list[LayerRow]:
    return [LayerRow(layer.name, layer.op, key_attrs(layer), fmt_shape(layer.output_shape), layer.param_count,
                     layer.macs, fmt_pct(layer.param_count, spec.param_count) if layer.param_count else "",
                     fmt_pct(layer.macs, spec.macs) if layer.macs else "")
            for layer in spec.layers]


# ---- variants --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffRow:
    """One aligned row: the layer of each spec (None where absent) and, per spec after the first,
    how it differs from the first: "" (same), "added", "removed", "moved", "changed: ..." or
    "reshaped: ..." (see describe_change)."""

    layers: tuple[Layer | None, ...]
    changes: tuple[str, ...]

    @property
    def name(self) -> str:
        return next(layer.name for layer in self.layers if layer is not None)


def describe_change(base: Layer, other: Layer) -> str:
    """"changed: ..." when the op or its attributes differ, "reshaped: ..." when only the shapes and
    parameter counts do (they follow from an earlier change), "" when the layers are the same."""
    parts = []
    if base.op != other.op:
        parts.append(f"op {base.op} → {other.op}")
    else:
        for key in dict.fromkeys([*base.attrs, *other.attrs]):
            a, b = base.attrs.get(key), other.attrs.get(key)
            if a != b:
                parts.append(f"{key} {fmt_attr_value(a)} → {fmt_attr_value(b)}")
    kind = "changed" if parts else "reshaped"
    if base.output_shape != other.output_shape:
        parts.append(f"output {fmt_shape(base.output_shape)} → {fmt_shape(other.output_shape)}")
    if base.param_count != other.param_count:
        parts.append(f"params {base.param_count:,} → {other.param_count:,}")
    return f"{kind}: " + "; ".join(parts) if parts else ""


def align_layers(specs: Sequence[ModelSpec]) -> list[DiffRow]:
    """Rows aligned on layer names (difflib over the name sequences), first spec as the base. A layer
    whose name exists in both specs but at a different place shows as "moved" on both rows."""
    rows: list[list[Layer | None]] = [[layer] + [None] * (len(specs) - 1) for layer in specs[0].layers]
    for k, spec in enumerate(specs[1:], start=1):
        names = [next(x for x in row if x is not None).name for row in rows]
        merged: list[list[Layer | None]] = []
        ops = difflib.SequenceMatcher(None, names, [layer.name for layer in spec.layers], autojunk=False)
        for tag, i1, i2, j1, j2 in ops.get_opcodes():
            if tag == "equal":
                for row, layer in zip(rows[i1:i2], spec.layers[j1:j2]):
                    row[k] = layer
            merged += rows[i1:i2]
            if tag in ("insert", "replace"):
                merged += [[None] * k + [layer] + [None] * (len(specs) - 1 - k) for layer in spec.layers[j1:j2]]
        rows = merged
    out = []
    for row in rows:
        base = row[0]
        changes = []
        for k, layer in enumerate(row[1:], start=1):
            names_k = {x.name for x in specs[k].layers}
            if base is None and layer is None:
                changes.append("")
            elif base is None:
                changes.append("moved" if layer.name in {x.name for x in specs[0].layers} else "added")
            elif layer is None:
                changes.append("moved" if base.name in names_k else "removed")
            else:
                changes.append(describe_change(base, layer))
        out.append(DiffRow(tuple(row), tuple(changes)))
    return out


# ---- results ---------------------------------------------------------------------------------

@dataclass
class Run:
    """One results file."""

    path: str
    doc: dict[str, Any]
    machine: str = ""  # the machine's column label
    label: str = ""  # this run's column label (the machine, plus the time when a machine has several)

    @property
    def kind(self) -> str:
        return self.doc["kind"]


@dataclass
class DeviceBench:
    label: str
    machine: str
    rows: list[dict[str, Any]]

    def series(self) -> dict[str, list[dict[str, Any]]]:
        """Rows by series (backend, plus precision or variant when the device has several, plus "train" for
        training-step rows), batch order."""
        many_prec = len({r["precision"] for r in self.rows}) > 1
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.rows:
            name = r["backend"] + (f" {r['precision']}" if many_prec else "")
            if r.get("variant"):
                name += f" [{r['variant']}]"
            if r.get("train"):
                name += " train"
            out.setdefault(name, []).append(r)
        return {k: sorted(v, key=lambda r: r["batch"]) for k, v in out.items()}


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> environment

    @property
    def compare_runs(self) -> list[Run]:
        return [r for r in self.runs if r.kind == "compare"]

    @property
    def bench_runs(self) -> list[Run]:
        return [r for r in self.runs if r.kind == "bench"]

    def backend_names(self) -> list[str]:
        return list(dict.fromkeys(b["name"] for r in self.compare_runs for b in r.doc["backends"]))

    def devices(self) -> list[DeviceBench]:
        found: dict[tuple, DeviceBench] = {}
        for run in self.bench_runs:
            for row in run.doc.get("bench", {}).get("rows", []):
                key = (run.machine, row["device_name"] or row["device"])
                if key not in found:
                    found[key] = DeviceBench(key[1], run.machine, [])
                found[key].rows.append(row)
        devices = list(found.values())
        names = [d.label for d in devices]
        for d in devices:  # the same device model on two machines: say which machine
            if names.count(d.label) > 1:
                d.label = f"{d.label} · {d.machine}"
        return devices


def machine_label(env: dict[str, Any]) -> str:
    gpus = env.get("gpus") or []
    if gpus:
        counts = {g: gpus.count(g) for g in gpus}
        return ", ".join(g if n == 1 else f"{n}× {g}" for g, n in counts.items())
    cpus = env.get("cpu_count")
    return f"{env.get('cpu') or 'unknown CPU'}" + (f" ({cpus} CPUs)" if cpus else "")


def _machine_key(env: dict[str, Any]) -> str:
    keep = {k: env.get(k) for k in ("platform", "machine", "cpu", "cpu_count", "gpus", "python")}
    return json.dumps(keep, sort_keys=True)


def gather_results(docs: Sequence[tuple[str, dict[str, Any]]], spec: ModelSpec) -> Results:
    """Check that every document is about ``spec`` and label machines and runs."""
    results = Results()
    keys: dict[str, str] = {}  # machine key -> label
    for path, doc in docs:
        theirs = doc["spec"]
        if theirs["sha256"] != spec.sha256:
            raise ReportError(
                f"{path}: these results are for spec '{theirs['name']}' (sha256 {theirs['sha256'][:12]}…, "
                f"from {theirs['source']}), but the report is for '{spec.name}' (sha256 {spec.sha256[:12]}…, "
                f"from {spec.source}); pass the spec the results were made with")
        key = _machine_key(doc["environment"])
        if key not in keys:
            label = machine_label(doc["environment"])
            taken = set(keys.values())
            n = 2
            while label in taken:
                label = f"{machine_label(doc['environment'])} #{n}"
                n += 1
            keys[key] = label
            results.machines[label] = doc["environment"]
        results.runs.append(Run(path, doc, keys[key], keys[key]))
    for run in results.bench_runs:  # a bench run measures one device, which names it
        settings = run.doc.get("bench", {}).get("settings") or {}
        rows = run.doc.get("bench", {}).get("rows") or [{}]
        run.label = settings.get("device_name") or rows[0].get("device_name") or run.machine
    for runs in (results.compare_runs, results.bench_runs):
        labels = [r.label for r in runs]
        for run in runs:
            if labels.count(run.label) > 1:
                run.label = f"{run.label} · {run.doc['created']}"
    return results
