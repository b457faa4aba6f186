"""A structural diff of two specs: which layers differ, and in which fields.

Layers are aligned by their op sequences, not by name: an imported model is named conv1, relu1, ...
while a hand-written spec of the same network may name its layers otherwise. Only what the
network computes is compared (ops, their fields, the input shape); output shapes, parameter and
MAC totals are shown as consequences, not counted.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from .model import Layer, ModelSpec
from .ops import fmt_shape

# Numbers this close are the same number: ONNX stores attributes as float32, so an imported LRN
# alpha of 5e-4 reads back as 0.0005000000237487257.
REL_TOL = 1e-6


@dataclass(frozen=True)
class LayerPair:
    """An aligned pair of layers, or a layer only one spec has (the other side None)."""

    a: Layer | None
    b: Layer | None
    fields: dict[str, tuple[Any, Any]]  # differing field -> (A's value, B's value); "op" when the ops differ

    @property
    def differs(self) -> bool:
        return self.a is None or self.b is None or bool(self.fields)

    def line(self) -> str:
        if self.a is None or self.b is None:
            layer, side = (self.a, "A") if self.b is None else (self.b, "B")
            return f"{layer.name}  {_described(layer)}: only in {side}"
        names = self.a.name if self.a.name == self.b.name else f"{self.a.name} / {self.b.name}"
        if "op" in self.fields:
            return f"{names}  {_described(self.a)} -> {_described(self.b)}"
        changes = [f"{k} {_fmt(va)} -> {_fmt(vb)}" for k, (va, vb) in self.fields.items()]
        if self.a.output_shape != self.b.output_shape:
            changes.append(f"output shape {fmt_shape(self.a.output_shape)} -> {fmt_shape(self.b.output_shape)}")
        return f"{names}  {self.a.op}: " + "; ".join(changes)

    def to_json(self) -> dict:
        status = "only_a" if self.b is None else "only_b" if self.a is None else "changed" if self.fields else "same"
        return {"status": status, "a": _layer_json(self.a), "b": _layer_json(self.b),
                "fields": {k: [_plain(va), _plain(vb)] for k, (va, vb) in self.fields.items()}}


@dataclass(frozen=True)
class SpecDiff:
    a: ModelSpec
    b: ModelSpec
    pairs: tuple[LayerPair, ...]  # in network order

    @property
    def input_differs(self) -> bool:
        return self.a.input_shape != self.b.input_shape

    @property
    def differences(self) -> int:
        """Differing layer pairs, layers only one spec has, and the input shape."""
        return int(self.input_differs) + sum(pair.differs for pair in self.pairs)

    @property
    def same(self) -> bool:
        return self.differences == 0

    def lines(self) -> list[str]:
        out = [f"A: {self.a.name} ({self.a.source})", f"B: {self.b.name} ({self.b.source})"]
        if self.input_differs:
            out.append(f"input {fmt_shape(self.a.input_shape)} -> {fmt_shape(self.b.input_shape)}")
        out += [pair.line() for pair in self.pairs if pair.differs]
        out += [_total("params", self.a.param_count, self.b.param_count),
                _total("MACs", self.a.macs, self.b.macs)]
        n = self.differences
        out.append("no structural difference" if n == 0 else f"{n} difference{'s' if n > 1 else ''}")
        return out

    def to_json(self) -> dict:
        return {
            "a": {"name": self.a.name, "source": self.a.source},
            "b": {"name": self.b.name, "source": self.b.source},
            "same": self.same,
            "differences": self.differences,
            "input_shape": [list(self.a.input_shape), list(self.b.input_shape)],
            "layers": [pair.to_json() for pair in self.pairs],
            "totals": {"params": [self.a.param_count, self.b.param_count], "macs": [self.a.macs, self.b.macs]},
        }


def diff_specs(a: ModelSpec, b: ModelSpec) -> SpecDiff:
    """Align A's and B's layers by their ops (difflib), then compare each aligned pair field by field.
    Within a replaced stretch (ops that differ) layers pair up in order; the rest are one side's only."""
    pairs: list[LayerPair] = []
    matcher = difflib.SequenceMatcher(None, [la.op for la in a.layers], [lb.op for lb in b.layers], autojunk=False)
    for _, i1, i2, j1, j2 in matcher.get_opcodes():
        left, right = a.layers[i1:i2], b.layers[j1:j2]
        common = min(len(left), len(right))
        pairs += [LayerPair(la, lb, _field_changes(la, lb)) for la, lb in zip(left, right)]
        pairs += [LayerPair(la, None, {}) for la in left[common:]]
        pairs += [LayerPair(None, lb, {}) for lb in right[common:]]
    return SpecDiff(a, b, tuple(pairs))


def _field_changes(a: Layer, b: Layer) -> dict[str, tuple[Any, Any]]:
    if a.op != b.op:
        return {"op": (a.op, b.op)}
    fa, fb = _fields(a), _fields(b)
    return {k: (fa.get(k), fb.get(k)) for k in dict.fromkeys([*fa, *fb]) if not _equal(fa.get(k), fb.get(k))}


def _fields(layer: Layer) -> dict[str, Any]:
    """The layer's fields as they act: a linear layer's in_features is what reaches it, written or not."""
    fields = dict(layer.attrs)
    if "in_features" in fields:
        fields["in_features"] = layer.input_shape[0]
    return fields


def _equal(x: Any, y: Any) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        return isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool) \
            and not isinstance(y, bool) and math.isclose(x, y, rel_tol=REL_TOL)
    return x == y


def _described(layer: Layer) -> str:
    """``lrn (size 5, alpha 0.0005, beta 0.75, k 2.0)``: the op with every field."""
    fields = ", ".join(f"{k} {_fmt(v)}" for k, v in _fields(layer).items())
    return f"{layer.op} ({fields})" if fields else layer.op


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return "none" if value is None else repr(value) if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _layer_json(layer: Layer | None) -> dict | None:
    if layer is None:
        return None
    return {"name": layer.name, "op": layer.op, "fields": {k: _plain(v) for k, v in _fields(layer).items()},
            "output_shape": list(layer.output_shape)}


def _total(what: str, a: int, b: int) -> str:
    return f"{what} {a:,} (same)" if a == b else f"{what} {a:,} -> {b:,} ({b - a:+,})"
