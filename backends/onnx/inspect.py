"""ONNX files as alexbench sees them: the checks every export passes, the facts about a file
(``ExportInfo``), where each spec layer's output is in its graph, and its parameters next to
the spec's. The exporters themselves live with their frameworks (``backends/torch/export.py``,
``backends/keras/export.py``); both end here, in ``describe``.

Every file passes ``onnx.checker.check_model(full_check=True)`` and strict shape inference,
its input and output shapes are checked against the spec with a symbolic batch axis, and a
failure of a check raises ``ExportFailed``.

Spec layer -> ONNX tensor (``layer_tensors``), by exporter:

- torch: the dynamo exporter tags each node with the module path it came from (metadata
  ``pkg.torch.onnx.name_scopes``); ``torch_model_from_spec``'s children carry the spec's names.
- tf2onnx: node names are TF op names, ``[<model>_1/]<layer>[_<n>]/<op>``; the first path
  component that is a layer name (TF may append ``_<n>`` to keep scopes unique) is the scope.

A layer's tensor is the output of its last node (in graph order, among nodes that depend on
the input) that leaves the scope (read by another scope or a graph output). A dropout with no
node is the identity at inference and shares the previous layer's tensor. Layers with no node
of their own (fused or renamed by the exporter's optimizer) are listed with the reason. The
tf2onnx graph may hold a mapped tensor NCHW or NHWC: the ONNX Runtime backend tells by its shape.

A batch norm folded into the convolution before it (``folds``: a Conv node reading
``<conv>.weight`` where the spec has conv -> batchnorm2d and the file has none of the batch
norm's tensors) is mapped by construction: the folded Conv's output IS the batch norm's
output, the convolution's own pre-batch-norm output exists nowhere (listed as folded), and the
Conv's weight and bias initializers are accounted to the five spec tensors they were computed
from (checked on the values when the weights are given).
"""

from __future__ import annotations

import ast
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...spec import ModelSpec
from ..base import ExportUnsupported, Weights

KINDS = ("torch", "keras")
# Keras variable name -> canonical parameter name (layouts.py has the array conversions).
KERAS_PARAM = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
               "moving_mean": "running_mean", "moving_variance": "running_var"}
TORCH_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
UNEXPLAINED = "UNEXPLAINED: not in the file"


class ExportFailed(ExportUnsupported):
    """The exporter could not export this model, or its file fails a check; the message has the
    exporter's own message."""


@dataclass
class ExportInfo:
    kind: str  # "torch" | "keras": the framework the file was exported from
    exporter: str  # the route, in words
    versions: dict[str, str]  # framework and exporter versions
    producer: str  # the file's producer_name and producer_version
    opset: int
    ir_version: int
    input_name: str
    input_layout: str  # "NCHW" | "NHWC"
    output_name: str
    batch_dim: str  # the symbolic batch axis of input and output
    params: dict[str, Any]  # see param_breakdown
    layers: dict[str, str]  # spec layer -> ONNX tensor
    missing_layers: dict[str, str]  # spec layer -> why it has no tensor
    checks: list[str] = field(default_factory=list)
    export_s: float = 0.0
    check_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# ---- shared by the exporters ------------------------------------------------------------

def save_model(proto, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))


def export_failed(kind: str, exporter: str, spec: ModelSpec, opset: int, exc: BaseException) -> ExportFailed:
    message = " ".join(str(exc).split())
    if len(message) > 1500:
        message = message[:1500] + " …"
    return ExportFailed(f"{kind} -> ONNX export of spec '{spec.name}' failed in {exporter} (opset {opset}): "
                        f"{type(exc).__name__}: {message}")


# ---- checks and facts ----------------------------------------------------------------------

def check_file(path: str | Path, spec: ModelSpec, proto=None):
    """Checker (full), strict shape inference, I/O shapes against the spec with a symbolic batch.
    Returns the loaded model and the list of checks passed; a failure raises ExportFailed."""
    import onnx

    path = Path(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportFailed(f"{path.name} fails onnx.checker.check_model(full_check=True): {exc}") from exc
    proto = onnx.load(str(path)) if proto is None else proto
    input_layout = "NHWC" if exporter_kind(proto) == "keras" else "NCHW"
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ExportFailed(f"{path.name} fails ONNX shape inference (strict): {exc}") from exc
    c, h, w = spec.input_shape
    want_in = (c, h, w) if input_layout == "NCHW" else (h, w, c)
    out_shape = tuple(spec.output_shape)
    want_out = out_shape if len(out_shape) != 3 or input_layout == "NCHW" else (*out_shape[1:], out_shape[0])
    graph = inferred.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    for what, values, want in (("input", inputs, want_in), ("output", graph.output, want_out)):
        if len(values) != 1:
            raise ExportFailed(f"{path.name}: expected one graph {what}, found {[v.name for v in values]}")
        dims = values[0].type.tensor_type.shape.dim
        got = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
        if len(got) != len(want) + 1 or tuple(got[1:]) != want or isinstance(got[0], int):
            raise ExportFailed(f"{path.name}: graph {what} '{values[0].name}' has shape {got}; expected "
                               f"[batch, {', '.join(map(str, want))}] ({input_layout}) with a symbolic batch axis")
    return proto, ["onnx.checker full_check", "shape inference strict",
                   f"input [batch, {', '.join(map(str, want_in))}] and output shapes match the spec"]


def describe(path: str | Path, spec: ModelSpec, weights: Weights | None = None, exporter: str = "",
             versions: dict[str, str] | None = None, opset: int | None = None, export_s: float = 0.0,
             proto=None) -> ExportInfo:
    """Check an exported file and collect its facts (``opset``: the one asked of the exporter)."""
    import onnx

    start = time.perf_counter()
    proto, checks = check_file(path, spec, proto)
    kind = exporter_kind(proto)
    layout = "NHWC" if kind == "keras" else "NCHW"
    got_opset = default_opset(proto)
    if opset is not None and got_opset != opset:
        raise ExportFailed(f"{kind} -> ONNX export of spec '{spec.name}': asked for opset {opset}, the exporter "
                           f"wrote opset {got_opset}")
    layers, missing = layer_tensors(proto, spec)
    inputs = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    return ExportInfo(
        kind=kind, exporter=exporter or f"{proto.producer_name} (described from the file)",
        versions={**(versions or {}), "onnx": onnx.__version__},
        producer=f"{proto.producer_name} {proto.producer_version}".strip(), opset=got_opset,
        ir_version=proto.ir_version, input_name=inputs[0], input_layout=layout,
        output_name=proto.graph.output[0].name, batch_dim="batch",
        params=param_breakdown(proto, spec, weights), layers=layers, missing_layers=missing, checks=checks,
        export_s=round(export_s, 3), check_s=round(time.perf_counter() - start, 3))


def default_opset(proto) -> int:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def exporter_kind(proto) -> str:
    """'torch' or 'keras' from the file's producer (torch writes "pytorch", tf2onnx "tf2onnx")."""
    producer = proto.producer_name.lower()
    if producer == "pytorch":
        return "torch"
    if producer == "tf2onnx":
        return "keras"
    raise ValueError(f"ONNX file produced by '{proto.producer_name}': alexbench maps layers for files from "
                     f"'pytorch' (torch.onnx) and 'tf2onnx' only")


# ---- spec layer -> ONNX tensor ---------------------------------------------------------------

def _torch_scope(node, names: set[str]) -> str | None:
    for prop in node.metadata_props:
        if prop.key == TORCH_SCOPES_KEY:
            scopes = ast.literal_eval(prop.value)  # ['', 'conv1', 'conv2d']: root, child, op
            return scopes[1] if len(scopes) > 2 and scopes[1] in names else None
    return None


def _tf_scope(node, names: set[str]) -> str | None:
    for part in node.name.split("/")[:-1]:
        base = part if part in names else re.sub(r"_\d+$", "", part)
        if base in names:
            return base
    return None


@dataclass(frozen=True)
class Fold:
    """A batch norm the exporter folded into the convolution before it."""

    conv: str  # spec layer names
    bn: str
    output: str  # the folded Conv's output tensor: the batch norm's output
    weight: str  # initializer names: the rescaled weight, and the bias (None when the Conv has none)
    bias: str | None


def folds(proto, spec: ModelSpec) -> list[Fold]:
    """Every batch norm folded into its convolution, read off the graph's structure (see the
    module docstring); the values are checked in ``param_breakdown``."""
    initializers = {t.name for t in proto.graph.initializer}
    kind = exporter_kind(proto)
    present = {_spec_name(kind, name) for name in initializers}
    found = []
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        conv, _, param = _spec_name(kind, node.input[1]).rpartition(".")
        index = next((i for i, layer in enumerate(spec.layers) if layer.name == conv), None)
        if param != "weight" or index is None or index + 1 >= len(spec.layers):
            continue
        bn = spec.layers[index + 1]
        if spec.layers[index].op != "conv2d" or bn.op != "batchnorm2d" \
                or any(f"{bn.name}.{p}" in present for p in BN_PARAMS):
            continue
        bias = node.input[2] if len(node.input) > 2 and node.input[2] in initializers else None
        found.append(Fold(conv, bn.name, node.output[0], node.input[1], bias))
    return found


def layer_tensors(proto, spec: ModelSpec) -> tuple[dict[str, str], dict[str, str]]:
    """Spec layer -> the ONNX tensor holding its output, and layer -> why it has none (see the
    module docstring for the rule)."""
    graph = proto.graph
    names = {layer.name for layer in spec.layers}
    scope_of = _torch_scope if exporter_kind(proto) == "torch" else _tf_scope
    initializers = {t.name for t in graph.initializer}
    live = {i.name for i in graph.input if i.name not in initializers}  # tensors that depend on the input
    nodes = []  # (scope, node) for nodes that depend on the input, in graph order
    for node in graph.node:
        if any(name in live for name in node.input):
            live.update(node.output)
            nodes.append((scope_of(node, names), node))
    readers: dict[str, set] = {}
    for scope, node in nodes:
        for name in node.input:
            readers.setdefault(name, set()).add(scope)
    outputs = {o.name for o in graph.output}
    found: dict[str, str] = {}
    for scope, node in nodes:
        if scope is None:
            continue
        leaving = [o for o in node.output if o in outputs or readers.get(o, set()) - {scope}]
        if leaving:
            found[scope] = leaving[0]  # later nodes overwrite: the last one wins
    folded: dict[str, str] = {}  # conv layer -> why it has no tensor
    for fold in folds(proto, spec):
        # Whichever scope the exporter tagged the Conv with, its output is the batch norm's.
        found[fold.bn] = fold.output
        if found.get(fold.conv) == fold.output:
            del found[fold.conv]
        folded[fold.conv] = (f"folded: the exporter folded '{fold.bn}' into this convolution, so its output before "
                             f"the batch norm exists in no tensor ('{fold.bn}' is the folded convolution's output)")
    tensors: dict[str, str] = {}
    missing: dict[str, str] = {}
    previous = None
    for layer in spec.layers:
        if layer.name in folded and layer.name not in found:
            missing[layer.name] = folded[layer.name]
        elif layer.name in found:
            tensors[layer.name] = found[layer.name]
        elif layer.op == "dropout" and previous in tensors:
            tensors[layer.name] = tensors[previous]  # identity at inference: no node
        else:
            missing[layer.name] = ("no node of the graph carries this layer's scope (the exporter's optimizer "
                                   "fused it into a neighbour or renamed its nodes)")
        previous = layer.name
    return tensors, missing


def with_layer_outputs(proto, tensors: list[str]):
    """A copy of the model whose graph also outputs ``tensors`` (for runs that want layers)."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    have = {o.name for o in model.graph.output}
    for name in dict.fromkeys(tensors):
        if name not in have:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model


# ---- parameters -----------------------------------------------------------------------------

def _spec_name(kind: str, initializer: str) -> str:
    """The canonical tensor an initializer is named after (torch: the same name; Keras: its path)."""
    if kind == "keras":
        layer, _, var = initializer.rpartition("/")
        return f"{layer}.{KERAS_PARAM[var]}" if layer and var in KERAS_PARAM else ""
    return initializer


def param_breakdown(proto, spec: ModelSpec, weights: Weights | None = None) -> dict[str, Any]:
    """Parameters in the file's initializers next to the spec's, with the differences explained.

    ``weight_params`` (initializers named after a spec tensor or computed from spec tensors, and
    other float initializers of more than one value) is what an ONNX backend reports as its
    parameter count; ``constant_params`` are the exporter's constants (integer shapes, axes, pads,
    indices, and single float values such as epsilons).

    Every initializer is mapped back to the spec tensors it comes from: its own (same name), or,
    for a batch norm folded into a convolution (``folds``), the convolution's weight and bias and
    the batch norm's four tensors (with ``weights``: checked by recomputing the fold). A spec
    tensor that no initializer comes from is explained when it is an all-zero bias dropped or a
    tensor equal to one that is there (shared); both are checked on the values, so without
    ``weights`` they stay unexplained.
    """
    from onnx import TensorProto

    kind = exporter_kind(proto)
    floats = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    expected = spec.param_shapes()
    by_name = {init.name: init for init in proto.graph.initializer}
    fold_list = folds(proto, spec)
    computed = {name for f in fold_list for name in (f.weight, f.bias) if name}  # initializers a fold made
    total = weight = 0
    present: dict[str, Any] = {}  # canonical name -> initializer
    unnamed: list[str] = []
    for init in proto.graph.initializer:
        size = int(np.prod(init.dims, dtype=np.int64))
        total += size
        canonical = _spec_name(kind, init.name)
        if canonical in expected:
            present[canonical] = init
        elif init.name in computed:
            pass
        elif init.data_type not in floats or size <= 1:
            continue
        else:
            unnamed.append(init.name)
        weight += size
    notes: list[str] = []
    covered: set[str] = set()  # spec tensors some initializer comes from
    bad_folds = 0
    for fold in fold_list:
        problem = _check_fold(fold, spec, by_name, weights)
        channels = spec.layer(fold.bn).output_shape[0]
        sources = [f"{fold.conv}.weight", *(f"{fold.bn}.{p}" for p in BN_PARAMS)]
        if f"{fold.conv}.bias" in expected:
            sources.append(f"{fold.conv}.bias")
        if problem:
            bad_folds += 1
            notes.append(f"UNEXPLAINED: {fold.bn} looks folded into {fold.conv}, but {problem}")
            continue
        covered.update(sources)
        if fold.bias is None:
            bias = "no bias (the folded one is all zeros)"
        elif f"{fold.conv}.bias" in expected:
            bias = f"{fold.conv}.bias rescaled"
        else:
            bias = f"bias of {channels:,} values created ({fold.bias})"
        notes.append(f"{fold.bn} folded into {fold.conv}: {fold.conv}.weight rescaled, {bias}, BN's "
                     f"{4 * channels:,} values absorbed")
    absent: dict[str, list[tuple[str, int]]] = {}  # reason -> [(tensor, size)]
    for canonical, shape in expected.items():
        if canonical not in present and canonical not in covered:
            reason = _why_absent(canonical, present, weights)
            absent.setdefault(reason or UNEXPLAINED, []).append((canonical, int(np.prod(shape))))
    notes += [f"{reason}: {', '.join(name for name, _ in items)} ({sum(n for _, n in items):,} values)"
              for reason, items in absent.items()]
    unexplained = sum(n for _, n in absent.get(UNEXPLAINED, []))
    if unnamed:
        count = sum(int(np.prod(i.dims)) for i in proto.graph.initializer if i.name in set(unnamed))
        notes.append(f"{len(unnamed)} float initializers ({count:,}) are not named after a spec tensor: "
                     f"{', '.join(unnamed[:6])}{' …' if len(unnamed) > 6 else ''}")
    if total - weight:
        notes.append(f"{total - weight:,} values in exporter constants (integer shapes/axes/pads/indices, "
                     f"single float values)")
    if kind == "keras" and present:
        notes.append("weights in Keras layout (conv kernels HWIO, dense kernels (in, out)); transposes, group "
                     "slices and BatchNorm scale/shift are nodes on them that ONNX Runtime folds at load")
    return {"initializer_params": total, "weight_params": weight, "constant_params": total - weight,
            "spec_params": spec.param_count, "difference": weight - spec.param_count,
            "explained": unexplained == 0 and not unnamed and not bad_folds, "notes": notes}


def _check_fold(fold: Fold, spec: ModelSpec, initializers: dict, weights: Weights | None) -> str | None:
    """Why the file's Conv is not ``fold.conv`` with ``fold.bn`` folded in, or None when it is
    (shapes always; values when ``weights`` are given: recomputed in float64)."""
    from onnx import numpy_helper

    w = numpy_helper.to_array(initializers[fold.weight]).astype(np.float64)
    b = None if fold.bias is None else numpy_helper.to_array(initializers[fold.bias]).astype(np.float64)
    want_w = tuple(spec.param_shapes()[f"{fold.conv}.weight"])
    channels = want_w[0]
    if w.shape != want_w:
        return f"its weight {fold.weight} has shape {list(w.shape)}, the spec's is {list(want_w)}"
    if b is not None and b.shape != (channels,):
        return f"its bias {fold.bias} has shape {list(b.shape)}, expected [{channels}]"
    names = [f"{fold.conv}.weight", *(f"{fold.bn}.{p}" for p in BN_PARAMS)]
    if weights is None or any(n not in weights for n in names):
        return None if b is not None else "it has no bias (without the weights, a zero folded bias cannot be checked)"
    gamma, beta, mean, var = (np.asarray(weights[f"{fold.bn}.{p}"], np.float64) for p in BN_PARAMS)
    scale = gamma / np.sqrt(var + float(spec.layer(fold.bn).attrs["eps"]))
    conv_bias = np.asarray(weights.get(f"{fold.conv}.bias", np.zeros(channels)), np.float64)
    want_w_values = np.asarray(weights[f"{fold.conv}.weight"], np.float64) * scale.reshape(-1, 1, 1, 1)
    want_b = (conv_bias - mean) * scale + beta
    for what, got, want in ((fold.weight, w, want_w_values), (fold.bias, b, want_b)):
        got = np.zeros_like(want) if got is None else got
        if not np.allclose(got, want, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(want).max(initial=0.0)))):
            return (f"{what or 'its missing bias'} differs from the folded value by up to "
                    f"{float(np.abs(got - want).max()):.3g}")
    return None


def _why_absent(canonical: str, present: dict, weights: Weights | None) -> str | None:
    if weights is None or canonical not in weights:
        return None
    from onnx import numpy_helper

    value = weights[canonical]
    if not np.any(value):
        return "all zeros, dropped (a zero bias) or shared with an equal initializer by the exporter's optimizer"
    for other, init in present.items():
        if tuple(init.dims) == value.shape and np.array_equal(numpy_helper.to_array(init), value):
            return f"equal to '{other}', whose initializer the exporter shares in their place"
    return None
