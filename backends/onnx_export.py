"""Both models to ONNX, checked, and the facts about each file (``ExportInfo``).

Exporters (opset 18, batch axis free):

- torch: ``torch.onnx.export(dynamo=True)`` on ``torch_model_from_spec``, the batch a
  ``torch.export.Dim`` given by position. Its optimizer may fold BatchNorm into the Conv in
  front of it, drop all-zero biases and share initializers with identical values.
- Keras: tf2onnx on the Keras model's own ``stateless_call``, traced as a ``tf.function`` that
  takes the input AND every variable as arguments; the variables' values are then attached as
  initializers named by their Keras path (``conv1/kernel``). The graph tf2onnx converts and
  optimises therefore holds no weights: ``tf2onnx.convert.from_keras`` freezes the weights into
  the TF graph and its optimizer copies them before each pass (~70-90 s for 61M parameters,
  see docs/benchmarks.md); this route takes about a second. The file keeps the weights in
  Keras layout, with the layout ops (kernel transposes, group slices, BatchNorm scale/shift)
  as nodes on the initializers that ONNX Runtime folds when it loads the file.
  ``keras_route="from_keras"`` runs the classic path (the benchmark's "before").

Every file passes ``onnx.checker.check_model(full_check=True)`` and strict shape inference,
its input and output shapes are checked against the spec with a symbolic batch axis, and a
failure of the exporter or of a check raises ``ExportFailed`` with the exporter's message.

Spec layer -> ONNX tensor (``layer_tensors``), by exporter:

- torch: the dynamo exporter tags each node with the module path it came from (metadata
  ``pkg.torch.onnx.name_scopes``); ``torch_model_from_spec``'s children carry the spec's names.
- tf2onnx: node names are TF op names, ``[<model>_1/]<layer>[_<n>]/<op>``; the first path
  component that is a layer name (TF may append ``_<n>`` to keep scopes unique) is the scope.

A layer's tensor is the output of its last node (in graph order, among nodes that depend on
the input) that leaves the scope (read by another scope or a graph output). A dropout with no
node is the identity at inference and shares the previous layer's tensor. Layers with no node
of their own (fused or renamed by the exporter's optimizer) are listed with the reason. The
tf2onnx graph may hold a mapped tensor NCHW or NHWC: ``backend_onnxrt`` tells by its shape.
"""

from __future__ import annotations

import ast
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..spec import ModelSpec
from .base import ExportUnsupported, Weights

OPSET = 18
KINDS = ("torch", "keras")
KERAS_ROUTES = ("stateless", "from_keras")
# Keras variable name -> canonical parameter name (layouts.py has the array conversions).
KERAS_PARAM = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
               "moving_mean": "running_mean", "moving_variance": "running_var"}
TORCH_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


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


# ---- exporters ---------------------------------------------------------------------------

def onnx_from_torch(spec: ModelSpec, weights: Weights, path: str | Path, opset: int = OPSET) -> ExportInfo:
    from .backend_torch import torch_model_from_spec

    return export_torch_model(torch_model_from_spec(spec, weights), spec, path, opset)


def onnx_from_keras(spec: ModelSpec, weights: Weights, path: str | Path, opset: int = OPSET,
                    keras_route: str = "stateless") -> ExportInfo:
    from .backend_keras import import_keras, keras_model_from_spec

    import_keras("tensorflow")
    return export_keras_model(keras_model_from_spec(spec, weights), spec, path, opset, keras_route)


@contextmanager
def _out_of_place_relus(model):
    """An in-place ReLU merges into the node before it in the exported graph, and that spec
    layer loses its own tensor (no per-layer comparison); export with out-of-place ones."""
    import torch

    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU) and m.inplace]
    for m in relus:
        m.inplace = False
    try:
        yield
    finally:
        for m in relus:
            m.inplace = True


def export_torch_model(model, spec: ModelSpec, path: str | Path, opset: int = OPSET) -> ExportInfo:
    """Export a built torch model (``torch_model_from_spec``) to ``path`` and check the file."""
    import onnxscript
    import torch

    path = Path(path)
    exporter = f"torch.onnx.export(dynamo=True) {torch.__version__}, onnxscript {onnxscript.__version__}"
    start = time.perf_counter()
    try:
        device = next(iter(model.parameters())).device
        # Batch 2 in the example: torch.export specialises sizes 0 and 1, so batch 1 would pin it.
        example = torch.zeros((2, *spec.input_shape), dtype=torch.float32, device=device)
        batch = torch.export.Dim("batch", min=1)
        with _logged("onnxscript", "torch.onnx") as logged, _out_of_place_relus(model):
            program = torch.onnx.export(model, (example,), None, dynamo=True, dynamic_shapes=({0: batch},),
                                        opset_version=opset, input_names=["input"], output_names=["output"],
                                        verbose=False)
        program.save(str(path), external_data=False)
    except Exception as exc:  # the exporter's own message is the useful part
        raise _failed("torch", exporter, spec, opset, exc) from exc
    export_s = time.perf_counter() - start
    got = program.model.opset_imports.get("", 0)
    if got != opset:  # torch writes opset 18 when it cannot convert down, and only logs why
        why = [m for m in logged if "convert" in m.lower()] or logged[-2:]
        raise ExportFailed(f"torch -> ONNX export of spec '{spec.name}': asked for opset {opset}, {exporter} wrote "
                           f"opset {got}; it logged: {' | '.join(why) or 'nothing'}")
    versions = {"torch": torch.__version__, "onnxscript": onnxscript.__version__}
    # The model's state_dict is the canonical weight set: the breakdown checks shared values on it.
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return describe(path, spec, weights, exporter, versions, opset, export_s)


def export_keras_model(model, spec: ModelSpec, path: str | Path, opset: int = OPSET,
                       keras_route: str = "stateless") -> ExportInfo:
    """Export a built Keras model (``keras_model_from_spec``, TensorFlow backend) to ``path``."""
    import keras
    import tensorflow as tf
    import tf2onnx

    if keras_route not in KERAS_ROUTES:
        raise ValueError(f"keras_route '{keras_route}': expected one of {', '.join(KERAS_ROUTES)}")
    path = Path(path)
    exporter = (f"tf2onnx {tf2onnx.__version__} "
                + ("from_function on the Keras model's stateless_call, weights attached as initializers"
                   if keras_route == "stateless" else "convert.from_keras (weights frozen into the graph)"))
    c, h, w = spec.input_shape
    x_spec = tf.TensorSpec((None, h, w, c), tf.float32, name="input")
    start = time.perf_counter()
    try:
        if keras_route == "stateless":
            proto = _keras_stateless_proto(model, x_spec, opset)
        else:
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=[x_spec], opset=opset)
        left = _unconverted(proto)
        if left:
            raise ExportFailed(f"keras -> ONNX export of spec '{spec.name}': {exporter} (opset {opset}) cannot convert "
                               f"{len(left)} op(s), left in the graph: {', '.join(left[:5])}")
        _name_io(proto)
        proto.doc_string = f"alexbench: spec '{spec.name}' ({spec.sha256[:12]}) through {exporter}"
        _save(proto, path)
    except ExportFailed:
        raise
    except Exception as exc:
        raise _failed("keras", exporter, spec, opset, exc) from exc
    export_s = time.perf_counter() - start
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__}
    return describe(path, spec, None, exporter, versions, opset, export_s, proto)


def _keras_stateless_proto(model, x_spec, opset: int):
    """tf2onnx on ``model.stateless_call(variables, x)`` with the variables as graph inputs, which
    then become initializers holding the model's own values."""
    import onnx
    import tensorflow as tf
    import tf2onnx
    from onnx import numpy_helper

    trainable, non_trainable = list(model.trainable_variables), list(model.non_trainable_variables)
    variables = trainable + non_trainable
    # Placeholder names cannot hold "/"; the Keras paths are restored below.
    arg_names = [f"alexbench_var_{i}" for i in range(len(variables))]
    signature = [x_spec] + [tf.TensorSpec(v.shape, v.dtype, name=n) for v, n in zip(variables, arg_names)]

    @tf.function(input_signature=signature)
    def forward(x, *values):
        out, _ = model.stateless_call(list(values[:len(trainable)]), list(values[len(trainable):]), x,
                                      training=False)
        return out

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=opset)
    graph = proto.graph
    by_arg = {n: v for n, v in zip(arg_names, variables)}
    constants = {t.name for t in graph.initializer}  # listed as inputs too below IR version 4
    data = [i.name for i in graph.input if i.name not in by_arg and i.name not in constants]
    if data != [x_spec.name]:
        raise ExportFailed(f"keras -> ONNX: tf2onnx gave graph inputs {data} besides the model's variables; "
                           f"expected only '{x_spec.name}'")
    rename = {i.name: by_arg[i.name].path for i in graph.input if i.name in by_arg}
    for node in graph.node:
        node.input[:] = [rename.get(name, name) for name in node.input]
    kept = [i for i in graph.input if i.name not in by_arg]
    del graph.input[:]
    graph.input.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(np.asarray(by_arg[arg].numpy()), name)
                             for arg, name in rename.items())
    onnx.helper.set_model_props(proto, {"alexbench.keras_weights": "initializers named by Keras variable path, "
                                        "Keras layout (conv kernel HWIO, dense kernel (in, out))"})
    return proto


@contextmanager
def _logged(*loggers: str) -> Iterator[list[str]]:
    """Collect warnings the exporter only logs (e.g. why a version conversion failed)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            messages.append(" ".join(text.split()))

    handler = Collect(logging.WARNING)
    for name in loggers:
        logging.getLogger(name).addHandler(handler)
    try:
        yield messages
    finally:
        for name in loggers:
            logging.getLogger(name).removeHandler(handler)


def _unconverted(proto) -> list[str]:
    """Nodes whose op has no ONNX schema: TF ops tf2onnx could not convert and left in the graph."""
    import onnx

    return [f"{n.op_type} (node '{n.name}')" for n in proto.graph.node
            if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)]


def _name_io(proto) -> None:
    """One output named "output"; the input's and outputs' batch axis named "batch"."""
    graph = proto.graph
    if len(graph.output) != 1:
        raise ExportFailed(f"expected one graph output, the export has {len(graph.output)}")
    old = graph.output[0].name
    if old != "output":
        for node in graph.node:
            node.output[:] = ["output" if name == old else name for name in node.output]
            node.input[:] = ["output" if name == old else name for name in node.input]
        graph.output[0].name = "output"
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


def _save(proto, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))


def _failed(kind: str, exporter: str, spec: ModelSpec, opset: int, exc: BaseException) -> ExportFailed:
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
    tensors: dict[str, str] = {}
    missing: dict[str, str] = {}
    previous = None
    for layer in spec.layers:
        if layer.name in found:
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

    ``weight_params`` (initializers named after a spec tensor, and other float initializers of
    more than one value) is what an ONNX backend reports as its parameter count;
    ``constant_params`` are the exporter's constants (integer shapes, axes, pads, indices, and
    single float values such as epsilons). A spec tensor without an initializer of its name is explained when it is
    a BatchNorm folded into the Conv before it, an all-zero bias dropped, or a tensor equal to
    one that is there (shared); with ``weights`` the last two are checked on the values.
    """
    from onnx import TensorProto

    kind = exporter_kind(proto)
    floats = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    expected = spec.param_shapes()
    total = weight = 0
    present: dict[str, Any] = {}  # canonical name -> initializer
    unnamed: list[str] = []
    for init in proto.graph.initializer:
        size = int(np.prod(init.dims, dtype=np.int64))
        total += size
        canonical = _spec_name(kind, init.name)
        if canonical in expected:
            present[canonical] = init
        elif init.data_type not in floats or size <= 1:
            continue
        else:
            unnamed.append(init.name)
        weight += size
    index = {layer.name: i for i, layer in enumerate(spec.layers)}
    absent: dict[str, list[tuple[str, int]]] = {}  # reason -> [(tensor, size)]
    for canonical, shape in expected.items():
        if canonical not in present:
            reason = _why_absent(canonical, spec, index[canonical.rpartition(".")[0]], present, weights)
            absent.setdefault(reason or "UNEXPLAINED: not in the file", []).append((canonical, int(np.prod(shape))))
    notes = [f"{reason}: {', '.join(name for name, _ in items)} ({sum(n for _, n in items):,} values)"
             for reason, items in absent.items()]
    unexplained = sum(n for _, n in absent.get("UNEXPLAINED: not in the file", []))
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
            "explained": unexplained == 0 and not unnamed, "notes": notes}


def _why_absent(canonical: str, spec: ModelSpec, index: int, present: dict, weights: Weights | None) -> str | None:
    layer = spec.layers[index]
    before = spec.layers[index - 1] if index else None
    if layer.op == "batchnorm2d" and before is not None and before.op == "conv2d" \
            and f"{before.name}.weight" in present:
        return f"BatchNorm folded by the exporter into the Conv before it ('{before.name}', which holds the result)"
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
