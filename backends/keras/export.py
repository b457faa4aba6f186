"""Keras -> ONNX: tf2onnx on the Keras model's own ``stateless_call``, traced as a ``tf.function``
that takes the input AND every variable as arguments; the variables' values are then attached
as initializers named by their Keras path (``conv1/kernel``).

The graph tf2onnx converts and optimises therefore holds no weights: ``tf2onnx.convert.from_keras``
freezes the weights into the TF graph and its optimizer copies them before each pass (~40 s for
61M parameters, see docs/benchmarks.md); this route takes about a second. The file keeps the
weights in Keras layout, with the layout ops (kernel transposes, group slices, BatchNorm
scale/shift) as nodes on the initializers that ONNX Runtime folds when it loads the file.
``keras_route="from_keras"`` runs the classic path (the benchmark's "before").
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...spec import ModelSpec
from ..base import OPSET, Weights
from ..onnx.inspect import ExportFailed, ExportInfo, describe, export_failed, save_model

KERAS_ROUTES = ("stateless", "from_keras")


def onnx_from_keras(spec: ModelSpec, weights: Weights, path: str | Path, opset: int = OPSET,
                    keras_route: str = "stateless") -> ExportInfo:
    from .lowering import keras_model_from_spec
    from .runtime import import_keras

    import_keras("tensorflow")
    return export_keras_model(keras_model_from_spec(spec, weights), spec, path, opset, keras_route)




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
        save_model(proto, path)
    except ExportFailed:
        raise
    except Exception as exc:
        raise export_failed("keras", exporter, spec, opset, exc) from exc
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
