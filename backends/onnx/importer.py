"""ONNX -> spec: `alexbench import model.onnx` and the layer map of `compare --model model.onnx`.

The graph must be a chain: one input, every activation read by one node (``Shape`` nodes aside:
they only compute a reshape's target). Constant subgraphs (tf2onnx's kernel transposes, batch
norm scale/shift on initializers, ``Constant`` nodes) are evaluated first with ONNX's own
reference evaluator, so a weight is whatever value the file computes for it.

What the exporters write, measured with torch 2.13 and tf2onnx 1.17:

- torch.onnx.export(dynamo=True) decomposes ``LocalResponseNorm`` (Mul(x, x) -> Reshape -> Pad ->
  AveragePool over channels -> Squeeze -> Mul alpha -> Add k -> Pow beta -> Div(x, .)) and an
  adaptive average pool whose bins differ from a plain pooling window (Transpose -> GatherND of
  the bins -> Transpose -> ReduceMean); both are read back into one layer, the pool after checking
  its gather indices are torch's bins. An adaptive pool to the input's own size is exported as
  AveragePool kernel 1, stride 1, and read back as ``adaptive_avgpool2d`` to that size.
- Dropout never appears in an inference export; it is not in the imported spec.
- tf2onnx takes an NHWC input and transposes it to NCHW first (the spec input is then C, H, W),
  and transposes back to NHWC before a flatten (the flatten's layout is "nhwc" and the next
  linear's weight columns are permuted into C, H, W order).

Batch norms folded into a convolution by the exporter stay folded (the file holds no separate
batch norm to read). The evidence each exporter leaves on such a Conv (``_folding_evidence``):
torch's dynamo route tags the node with ``pkg.onnxscript.rewriter.rule_name =
FuseBatchNormIntoConv``; its TorchScript route replaces the module's named weight by an
initializer named ``onnx::Conv_<n>``; tf2onnx names the fused tensors ``.../batchnorm/...`` or
``.../merged_input``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...spec.errors import first_line
from ...spec.imported import ImportedLayer, ImportedModel, ImportRefused, layer_names
from ...spec.ops import adaptive_bins

FRAMEWORK = "onnx"
FILE_SUFFIXES = (".onnx",)

TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
TORCH_FOLD_RULE = "FuseBatchNormIntoConv"


def accepts(obj: Any) -> bool:
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(obj, onnx.ModelProto)


def load_file(path: Path):
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ImportRefused(f"file '{path}'", "not a valid ONNX model", first_line(exc),
                            "a file onnx.checker accepts") from None
    return model


def save_model(obj, folder: Path) -> Path:
    import onnx

    path = Path(folder) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(obj, str(path))
    return path


def origin(node) -> str:
    return f"node '{node.name or node.output[0]}' ({node.op_type})"


def graph_inputs(model) -> list:
    """The graph's inputs that are data (older exporters also list every initializer as an input)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def input_layout(model) -> str:
    """"nhwc" when the graph input goes straight into a Transpose to NCHW (tf2onnx), else "nchw"."""
    name = graph_inputs(model)[0].name
    users = [n for n in model.graph.node if name in n.input and n.op_type != "Shape"]
    if len(users) == 1 and users[0].op_type == "Transpose" and _attrs(users[0]).get("perm") == TO_NCHW:
        return "nhwc"
    return "nchw"


def readout_to_canonical(array: np.ndarray, layout: str, map_shape: tuple[int, ...]) -> np.ndarray:
    """A layer's tensor in canonical layout: NHWC maps to NCHW, an H,W,C-ordered flatten of the
    (C, H, W) map ``map_shape`` to C,H,W order."""
    if layout == "nchw":
        return array
    if array.ndim == 4:
        return np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    c, h, w = map_shape
    return np.ascontiguousarray(array.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(array), -1))


def import_model(obj, source: str, input_shape: tuple[int, int, int] | None) -> ImportedModel:
    import onnx

    graph = _Graph(obj, input_shape)
    walk = _Walk(graph)
    walk.run()
    notes = []
    names = layer_names(walk.layers)
    folded = [f"{name} ({layer.origin})" for name, layer in zip(names, walk.layers) if layer.note == FOLDED_NOTE]
    if folded:
        notes.append("batch norms folded into convolutions by the exporter (no batchnorm2d in the spec there): "
                     + ", ".join(folded))
    if not walk.saw_dropout:
        notes.append("no dropout layers: an inference export holds none")
    name = Path(source.rpartition(":")[2] or source).stem or obj.graph.name or "onnx_model"
    return ImportedModel(name=name, input_shape=graph.input_shape, layers=walk.layers, importer="onnx",
                         source=source, versions={"onnx": onnx.__version__, "producer": _producer(obj)}, notes=notes)


FOLDED_NOTE = "a batch norm folded in by the exporter"


def _producer(model) -> str:
    """The file's producer and version, without a missing part: tf2onnx installed from a wheel writes
    its absent git hash as "None" ("1.17.0 None")."""
    words = [model.producer_name, *(w for w in model.producer_version.split() if w != "None")]
    return " ".join(w for w in words if w)


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _evaluate(node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    feeds = {name: value for name, value in zip(node.input, inputs) if name}
    return ReferenceEvaluator(node).run(None, feeds)


class _Graph:
    """The model's nodes with constant subgraphs evaluated, who reads each tensor, and static shapes
    (batch symbolic, a dynamic H/W taken from ``input_shape``)."""

    def __init__(self, model, input_shape: tuple[int, int, int] | None):
        from onnx import numpy_helper

        graph = model.graph
        self.model = model
        self.const: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.made_by: dict[str, Any] = {}  # a constant computed in the file -> the node that computed it
        inputs = graph_inputs(model)
        if len(inputs) != 1:
            raise ImportRefused("graph", f"{len(inputs)} inputs", [i.name for i in inputs], "one input tensor")
        self.input = inputs[0]
        self.outputs = [o.name for o in graph.output]
        self.nodes = []
        for node in graph.node:
            if node.op_type == "Constant" or (node.op_type not in ("Shape", "Size")
                                              and all(not n or n in self.const for n in node.input)):
                for name, value in zip(node.output, _evaluate(node, [self.const.get(n) for n in node.input])):
                    self.const[name], self.made_by[name] = value, node
            else:
                self.nodes.append(node)
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.readers: dict[str, list] = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.input):
                self.readers.setdefault(name, []).append(node)
        self._infer_shapes(input_shape)

    def users(self, tensor: str) -> list:
        """The nodes reading ``tensor`` as data (a Shape node only reads its size)."""
        return [n for n in self.readers.get(tensor, []) if n.op_type != "Shape"]

    def _infer_shapes(self, input_shape: tuple[int, int, int] | None) -> None:
        import onnx

        dims = self.input.type.tensor_type.shape.dim
        static = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        where = f"graph input '{self.input.name}'"
        if len(static) != 4:
            raise ImportRefused(where, f"a rank-{len(static)} input", static,
                                "an image batch [N, C, H, W] or [N, H, W, C]")
        order = (3, 1, 2) if input_layout(self.model) == "nhwc" else (1, 2, 3)  # C, H, W positions in the file's input
        chw = [static[i] for i in order]
        if input_shape is not None:
            for got, want in zip(chw, input_shape):
                if got is not None and got != want:
                    raise ImportRefused(where, "the input shape given disagrees with the file's",
                                        ",".join(map(str, input_shape)), ",".join(str(d or "?") for d in chw))
            chw = list(input_shape)
        if None in chw:
            raise ImportRefused(where, "the file leaves the input's size open",
                                [d if d is not None else "?" for d in static], "--input-shape C,H,W")
        self.input_shape = tuple(int(d) for d in chw)
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        fixed = {pos: self.input_shape[i] for i, pos in enumerate(order)}
        for value in model.graph.input:
            if value.name == self.input.name:
                for pos, size in fixed.items():
                    value.type.tensor_type.shape.dim[pos].dim_value = size
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
        self.shape: dict[str, tuple] = {}
        for value in (*inferred.input, *inferred.value_info, *inferred.output):
            dims = value.type.tensor_type.shape.dim
            self.shape[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)

    def value(self, tensor: str, batch: int) -> np.ndarray:
        """A shape-like tensor's value for a batch of ``batch`` (follows Shape nodes to static sizes)."""
        if tensor in self.const:
            return self.const[tensor]
        node = self.producer[tensor]
        if node.op_type == "Shape":
            dims = [batch, *self.shape[node.input[0]][1:]]
            a = _attrs(node)
            return np.array(dims[a.get("start", 0):a.get("end", len(dims))], dtype=np.int64)
        inputs = [self.value(n, batch) if n else None for n in node.input]
        return _evaluate(node, inputs)[list(node.output).index(tensor)]


@dataclass
class _Walk:
    """Follows the chain from the input, one layer (one node or one known pattern) at a time."""

    graph: _Graph
    layers: list[ImportedLayer] = field(default_factory=list)
    layout: str = "nchw"
    saw_dropout: bool = False
    pending_permute: tuple[int, int, int] | None = None  # an NHWC flatten's map, for the next linear

    def run(self) -> None:
        g = self.graph
        tensor = g.input.name
        while True:
            users = g.users(tensor)
            if not users:
                if tensor not in g.outputs:
                    raise ImportRefused(f"tensor '{tensor}'", "no node reads it and it is no graph output")
                return
            if len(users) > 1 or tensor in g.outputs:
                node = g.producer.get(tensor)
                matched = _lrn_decomposition(self, tensor, users) if len(users) == 2 else None
                if matched is None:
                    readers = ", ".join(f"{n.op_type} '{n.name or n.output[0]}'" for n in users)
                    where = origin(node) if node is not None else f"graph input '{tensor}'"
                    raise ImportRefused(where, f"its output '{tensor}' is read by {len(users)} nodes "
                                        f"({readers}): a branch", None, "a chain of layers")
                tensor = matched
                continue
            node = users[0]
            handler = HANDLERS.get(node.op_type)
            if handler is None:
                raise ImportRefused(origin(node), f"op {node.op_type} is not supported", None,
                                    "one of " + ", ".join(sorted(HANDLERS)))
            if any(name in g.outputs for name in node.output[1:] if name) or any(
                    g.readers.get(name) for name in node.output[1:] if name):
                raise ImportRefused(origin(node), "its second output is used", list(node.output), "one output")
            tensor = handler(self, node)

    # --- helpers for the handlers ---
    def map_shape(self, tensor: str) -> tuple[int, ...]:
        """The canonical (C, H, W) or (F,) shape of an activation."""
        shape = self.graph.shape.get(tensor)
        if shape is None:
            raise ImportRefused(f"tensor '{tensor}'", "ONNX shape inference gives no shape for it")
        if len(shape) == 4 and self.layout == "nhwc":
            return (shape[3], shape[1], shape[2])
        return tuple(shape[1:])

    def const(self, node, index: int, what: str) -> np.ndarray:
        name = node.input[index] if index < len(node.input) else ""
        if name not in self.graph.const:
            raise ImportRefused(origin(node), f"its {what} is computed from the input, not a constant", name,
                                "an initializer or a Constant")
        return self.graph.const[name]

    def add(self, node, op: str, attrs: dict, out: str, weights: dict | None = None, note: str = "") -> str:
        if self.pending_permute is not None and op not in ("dropout", "linear"):
            raise ImportRefused(origin(node), f"a {op} after a channels-last flatten", None, "a linear layer")
        if op == "dropout":
            self.saw_dropout = True
        self.layers.append(ImportedLayer(op, attrs, origin(node),
                                         {k: np.asarray(v, np.float32) for k, v in (weights or {}).items()},
                                         readout=out, layout=self.layout, note=note))
        return out

    def nchw(self, node) -> None:
        if self.layout != "nchw":
            raise ImportRefused(origin(node), f"{node.op_type} on a channels-last tensor", None, "an NCHW tensor")

    def only_user(self, tensor: str, op_type: str):
        users = self.graph.users(tensor)
        only = len(users) == 1 and users[0].op_type == op_type and tensor not in self.graph.outputs
        return users[0] if only else None


def _refuse_attr(node, name: str, value: Any, expected: str) -> ImportRefused:
    return ImportRefused(origin(node), f"attribute {name} is not supported", value, expected)


def _given(node, index: int) -> bool:
    """Is the optional input ``index`` there (left out, or given as the empty name)?"""
    return index < len(node.input) and bool(node.input[index])


def _pair(values, default: int) -> list[int]:
    return [int(v) for v in values] if values else [default, default]


def _padding(walk: _Walk, node, a: dict, kernel: list[int], stride: list[int]) -> list[int]:
    """ONNX pads [t, l, b, r] or auto_pad, as the spec's explicit [top, bottom, left, right]."""
    auto = a.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        _, h, w = walk.map_shape(node.input[0])
        out = []
        for size, k, s in ((h, kernel[0], stride[0]), (w, kernel[1], stride[1])):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            small = total // 2
            out += [small, total - small] if auto == "SAME_UPPER" else [total - small, small]
        return out
    if auto != "NOTSET":
        raise _refuse_attr(node, "auto_pad", auto, "NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    t, left, b, r = a.get("pads", [0, 0, 0, 0])
    return [int(t), int(b), int(left), int(r)]


def _check_dilations(node, a: dict) -> None:
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise _refuse_attr(node, "dilations", list(a["dilations"]), "1 (the spec has no dilation)")


def _folding_evidence(walk: _Walk, node) -> bool:
    """Does this Conv carry a batch norm the exporter folded into it? (module docstring)"""
    if any(p.key == "pkg.onnxscript.rewriter.rule_name" and p.value == TORCH_FOLD_RULE for p in node.metadata_props):
        return True
    weights = [name for name in node.input[1:] if name]
    if walk.graph.model.producer_name == "pytorch":
        return any(name.startswith("onnx::Conv_") for name in weights)
    return any("/batchnorm/" in name or "merged_input" in name for name in weights)


def _conv(walk: _Walk, node) -> str:
    walk.nchw(node)
    a = _attrs(node)
    _check_dilations(node, a)
    w = walk.const(node, 1, "weight")
    kernel, stride = list(w.shape[2:]), _pair(a.get("strides"), 1)
    weights = {"weight": w}
    if _given(node, 2):
        weights["bias"] = walk.const(node, 2, "bias")
    attrs = {"filters": int(w.shape[0]), "kernel": kernel, "stride": stride,
             "padding": _padding(walk, node, a, kernel, stride), "groups": int(a.get("group", 1)),
             "bias": "bias" in weights}
    note = FOLDED_NOTE if _folding_evidence(walk, node) else ""
    return walk.add(node, "conv2d", attrs, node.output[0], weights, note)


def _relu(walk: _Walk, node) -> str:
    return walk.add(node, "relu", {}, node.output[0])


def _lrn(walk: _Walk, node) -> str:
    walk.nchw(node)
    a = _attrs(node)
    return walk.add(node, "lrn", {"size": int(a["size"]), "alpha": _f32(a.get("alpha", 1e-4)),
                                  "beta": _f32(a.get("beta", 0.75)), "k": _f32(a.get("bias", 1.0))}, node.output[0])


def _window(walk: _Walk, node, a: dict) -> dict:
    walk.nchw(node)
    _check_dilations(node, a)
    kernel = _pair(a["kernel_shape"], 1)
    stride = _pair(a.get("strides"), 1)
    return {"kernel": kernel, "stride": stride, "padding": _padding(walk, node, a, kernel, stride)}


def _maxpool(walk: _Walk, node) -> str:
    a = _attrs(node)
    if a.get("storage_order", 0) != 0:
        raise _refuse_attr(node, "storage_order", a["storage_order"], "0")
    attrs = _window(walk, node, a)
    return walk.add(node, "maxpool2d", {**attrs, "ceil_mode": bool(a.get("ceil_mode", 0))}, node.output[0])


def _avgpool(walk: _Walk, node) -> str:
    a = _attrs(node)
    attrs = _window(walk, node, a)
    if a.get("ceil_mode", 0):
        raise _refuse_attr(node, "ceil_mode", 1, "0 (the spec's avgpool2d has no ceil mode)")
    if any(attrs["padding"]) and not a.get("count_include_pad", 0):
        raise _refuse_attr(node, "count_include_pad", 0, "1 with padding (the spec's avgpool2d counts padded zeros)")
    if attrs["kernel"] == [1, 1] and attrs["stride"] == [1, 1] and not any(attrs["padding"]):
        # torch exports an adaptive pool to the input's own size (torchvision's avgpool) as this identity
        _, h, w = walk.map_shape(node.input[0])
        return walk.add(node, "adaptive_avgpool2d", {"output": [h, w]}, node.output[0])
    return walk.add(node, "avgpool2d", attrs, node.output[0])


def _global_avgpool(walk: _Walk, node) -> str:
    walk.nchw(node)
    return walk.add(node, "adaptive_avgpool2d", {"output": [1, 1]}, node.output[0])


def _adaptive_decomposition(walk: _Walk, node) -> str:
    """torch's adaptive pool as Transpose [2, 3, 0, 1] -> GatherND(bins) -> Transpose -> ReduceMean."""
    walk.nchw(node)
    gather = walk.only_user(node.output[0], "GatherND")
    back = gather and walk.only_user(gather.output[0], "Transpose")
    mean = back and walk.only_user(back.output[0], "ReduceMean")
    if _attrs(node).get("perm") != [2, 3, 0, 1] or mean is None:
        raise ImportRefused(origin(node), "a Transpose that is neither a layout change nor part of an adaptive pool",
                            _attrs(node).get("perm"), f"perm {TO_NCHW} or {TO_NHWC}")
    _, h, w = walk.map_shape(node.input[0])
    _, oh, ow = walk.map_shape(mean.output[0])
    indices = walk.const(gather, 1, "indices")
    bins_h, bins_w = adaptive_bins(h, oh), adaptive_bins(w, ow)
    kh, kw = bins_h[0][1] - bins_h[0][0], bins_w[0][1] - bins_w[0][0]
    # indices[i, u, j, v] = (row, column) of window (i, j)'s cell (u, v); ReduceMean then takes u and v
    want = np.array([[[[(y0 + u, x0 + v) for v in range(kw)] for x0, _ in bins_w] for u in range(kh)]
                     for y0, _ in bins_h])
    if indices.shape != want.shape or not np.array_equal(indices, want):
        raise ImportRefused(origin(gather), "gather indices that are not an adaptive pool's bins", list(indices.shape),
                            f"torch's bins for {h}x{w} -> {oh}x{ow}")
    return walk.add(mean, "adaptive_avgpool2d", {"output": [oh, ow]}, mean.output[0])


def _transpose(walk: _Walk, node) -> str:
    perm = _attrs(node).get("perm")
    if node.input[0] == walk.graph.input.name and perm == TO_NCHW:
        return node.output[0]  # tf2onnx: the NHWC input to NCHW
    if perm == TO_NHWC and walk.layout == "nchw":
        walk.layout = "nhwc"
        return node.output[0]
    if perm == TO_NCHW and walk.layout == "nhwc":
        walk.layout = "nchw"
        return node.output[0]
    return _adaptive_decomposition(walk, node)


def _f32(value) -> float:
    """An ONNX float (attributes and these constants are float32) as the number written: 2e-4, not
    0.00019999999494757503."""
    return float(str(np.float32(value)))


def _momentum(m: float) -> float:
    return float(f"{1.0 - m:.12g}")  # ONNX's momentum is Keras' convention; 12 digits drop the float noise


def _batchnorm(walk: _Walk, node) -> str:
    walk.nchw(node)
    a = _attrs(node)
    if a.get("training_mode", 0):
        raise _refuse_attr(node, "training_mode", 1, "0 (inference)")
    names = ("weight", "bias", "running_mean", "running_var")
    weights = {n: walk.const(node, i + 1, n) for i, n in enumerate(names)}
    attrs = {"eps": _f32(a.get("epsilon", 1e-5)), "momentum": _momentum(_f32(a.get("momentum", 0.9)))}
    return walk.add(node, "batchnorm2d", attrs, node.output[0], weights)


def _scale_shift(walk: _Walk, node) -> str:
    """tf2onnx's inference batch norm on initializers, read back to its tensors: x * scale + shift with
    scale = gamma * Reciprocal(Sqrt(var + eps)) and shift = beta - mean * scale."""
    g = walk.graph
    scale = next((n for n in node.input if n in g.const), None)
    add = walk.only_user(node.output[0], "Add")
    shift = add and next((n for n in add.input if n != node.output[0]), None)
    per_channel = (walk.map_shape(node.input[0])[0],) if walk.layout == "nhwc" else None
    try:
        mul, sub = g.made_by[scale], g.made_by[shift]
        recip = next(g.made_by[n] for n in mul.input if n in g.made_by and g.made_by[n].op_type == "Reciprocal")
        add_eps = g.made_by[g.made_by[recip.input[0]].input[0]]
        var, eps = sorted((g.const[n] for n in add_eps.input), key=np.ndim, reverse=True)
        gamma = g.const[next(n for n in mul.input if n != recip.output[0])]
        mean_mul = g.made_by[sub.input[1]]
        mean = g.const[next(n for n in mean_mul.input if n != scale)]
        ok = (mul.op_type, sub.op_type, add_eps.op_type, mean_mul.op_type) == ("Mul", "Sub", "Add", "Mul") \
            and np.shape(g.const[scale]) == per_channel
    except (KeyError, StopIteration, TypeError, ValueError):
        ok = False
    if not ok:
        raise ImportRefused(origin(node), "a Mul that is not a batch norm's scale", None,
                            "tf2onnx's channels-last batch norm: x * gamma / sqrt(var + eps) + (beta - mean * scale)")
    weights = {"weight": gamma, "bias": g.const[sub.input[0]], "running_mean": mean, "running_var": var}
    return walk.add(add, "batchnorm2d", {"eps": _f32(eps)}, add.output[0], weights,
                    "momentum is not in the file: the spec's default")


def _dropout(walk: _Walk, node) -> str:
    if _given(node, 2) and bool(walk.const(node, 2, "training_mode")):
        raise _refuse_attr(node, "training_mode", True, "false (inference)")
    rate = _f32(walk.const(node, 1, "ratio") if _given(node, 1) else _attrs(node).get("ratio", 0.5))
    return walk.add(node, "dropout", {"rate": rate}, node.output[0])


def _identity(walk: _Walk, node) -> str:
    return node.output[0]


def _flatten_layer(walk: _Walk, node) -> str:
    shape = walk.map_shape(node.input[0])
    if len(shape) == 1:
        return node.output[0]  # already (N, F): nothing to flatten
    out = walk.add(node, "flatten", {}, node.output[0])
    if walk.layout == "nhwc":
        walk.pending_permute = shape
    return out


def _flatten(walk: _Walk, node) -> str:
    axis = _attrs(node).get("axis", 1)
    if axis != 1:
        raise _refuse_attr(node, "axis", axis, "1")
    return _flatten_layer(walk, node)


def _reshape(walk: _Walk, node) -> str:
    in_shape = walk.graph.shape[node.input[0]][1:]
    for batch in (2, 3):  # a batch size baked into the target shows at one of them
        target = [int(v) for v in walk.graph.value(node.input[1], batch)]
        got = [batch if v == 0 else v for v in target]
        want = [batch, int(np.prod(in_shape))]
        if len(got) != 2 or (got[0], got[1]) not in ((batch, want[1]), (batch, -1), (-1, want[1])):
            raise ImportRefused(origin(node), "a reshape other than a flatten", target, "[N, -1], [-1, K] or [0, -1]")
    return _flatten_layer(walk, node)


def _linear(walk: _Walk, node, weight: np.ndarray, bias: np.ndarray | None, out: str) -> str:
    if walk.pending_permute is not None:
        c, h, w = walk.pending_permute
        weight = weight.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(weight.shape[0], -1)
        walk.pending_permute, walk.layout = None, "nchw"
    weights = {"weight": weight} if bias is None else {"weight": weight, "bias": bias.reshape(-1)}
    attrs = {"units": int(weight.shape[0]), "in_features": int(weight.shape[1]), "bias": bias is not None}
    return walk.add(node, "linear", attrs, out, weights)


def _gemm(walk: _Walk, node) -> str:
    a = _attrs(node)
    for name, want in (("alpha", 1.0), ("beta", 1.0), ("transA", 0)):
        if a.get(name, want) != want:
            raise _refuse_attr(node, name, a[name], str(want))
    b = walk.const(node, 1, "weight")
    bias = walk.const(node, 2, "bias") if _given(node, 2) else None
    return _linear(walk, node, b if a.get("transB", 0) else b.T, bias, node.output[0])


def _matmul(walk: _Walk, node) -> str:
    b = walk.const(node, 1, "weight")
    add = walk.only_user(node.output[0], "Add")
    bias_name = add and next((n for n in add.input if n != node.output[0]), None)
    if bias_name in walk.graph.const:
        return _linear(walk, node, b.T, walk.graph.const[bias_name], add.output[0])
    return _linear(walk, node, b.T, None, node.output[0])


def _softmax(walk: _Walk, node) -> str:
    axis = _attrs(node).get("axis", -1)
    rank = len(walk.graph.shape.get(node.input[0], (None, None)))
    if axis not in (1, -1) or (rank != 2 and axis != 1) or (rank == 4 and walk.layout != "nchw"):
        raise _refuse_attr(node, "axis", axis, "the channel / feature axis (1, or -1 on (N, F))")
    return walk.add(node, "softmax", {}, node.output[0])


def _lrn_decomposition(walk: _Walk, tensor: str, users: list) -> str | None:
    """torch's LocalResponseNorm as Mul(x, x) -> Reshape -> Pad -> AveragePool [size, 1, 1] over
    channels -> Squeeze -> Mul alpha -> Add k -> Pow beta, then Div(x, .); the tensor after the Div."""
    square = next((n for n in users if n.op_type == "Mul" and list(n.input) == [tensor, tensor]), None)
    div = next((n for n in users if n.op_type == "Div" and n.input[0] == tensor), None)
    if square is None or div is None or walk.layout != "nchw":
        return None
    chain, current = [], square.output[0]
    for op in ("Reshape", "Pad", "AveragePool", "Squeeze", "Mul", "Add", "Pow"):
        node = walk.only_user(current, op)
        if node is None:
            return None
        chain.append(node)
        current = node.output[0]
    if div.input[1] != current:
        return None
    _, _, pool, _, mul, add, power = chain
    a = _attrs(pool)
    size = int(a["kernel_shape"][0])
    if list(a["kernel_shape"][1:]) != [1, 1] or any(s != 1 for s in a.get("strides", [1])) \
            or not a.get("count_include_pad", 0):
        return None
    value = {n: _f32(walk.graph.const[n]) for n in (mul.input[1], add.input[1], power.input[1])
             if n in walk.graph.const}
    if len(value) != 3:
        return None
    attrs = {"size": size, "alpha": value[mul.input[1]], "beta": value[power.input[1]], "k": value[add.input[1]]}
    return walk.add(div, "lrn", attrs, div.output[0], note="torch's decomposition of LocalResponseNorm")


HANDLERS: dict[str, Callable[[_Walk, Any], str]] = {
    "Conv": _conv, "Relu": _relu, "LRN": _lrn, "MaxPool": _maxpool, "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool, "BatchNormalization": _batchnorm, "Dropout": _dropout,
    "Flatten": _flatten, "Reshape": _reshape, "Gemm": _gemm, "MatMul": _matmul, "Softmax": _softmax,
    "Identity": _identity, "Transpose": _transpose, "Mul": _scale_shift,
}
