"""A .tflite file as alexbench sees it: its ops and tensors (read with the flatbuffer schema that ships with
ai-edge-litert, without building an interpreter), and where each spec layer's output is among its tensors.

Spec layer -> tensor. The converter names a tensor after the TF ops it computes, ``<model>_1/<layer>_1/<op>``
(TF may append ``_<n>`` to keep scopes unique), and an op that fuses several joins their names with ``;``
(conv1's BiasAdd fused into relu1's Relu: ``.../conv1_1/BiasAdd;.../relu1_1/Relu``). The rule:

- a tensor belongs to the LAST spec layer (in spec order) its name mentions: a fused op computes the output
  of the last layer it absorbed; the layers before it have no tensor of their own (listed missing, with the
  fused tensor's name), even when an earlier op of theirs has the right shape (a grouped conv2's concat,
  before the bias add that the converter fused into relu2's op);
- a layer's tensor is the last op output (ops are stored in execution order) that belongs to it and has the
  layer's shape in NHWC (rank 4) or (N, F); outputs of TRANSPOSE ops are never a layer's: the only transpose
  the Keras model has is the Permute in front of Flatten, which the converter names after the layer before
  (``relu3_1/Relu1``), in NCHW;
- the last spec layer is the model's output tensor (renamed ``StatefulPartitionedCall_1:0`` by the converter);
- a dropout with no op is the identity at inference and shares the previous layer's tensor.

The shape check is what verifies the rule on every file: a tensor named after a layer with the wrong shape
is not taken, and the layer is listed missing with the shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...spec import ModelSpec

# Float tensor types whose constants are weights (the float32 conversion writes FLOAT32 only).
FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]  # batch axis as stored (1 for the converter's free batch)
    dtype: str  # the schema's TensorType name: FLOAT32, INT32, ...
    constant: bool  # its values are in the file (a weight, a shape, a pad amount)
    zero: bool = False  # a constant whose bytes are all zero (a bias the converter made up)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Op:
    index: int
    code: str  # the builtin op's name: CONV_2D, LOCAL_RESPONSE_NORMALIZATION, ...
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TfliteModel:
    tensors: list[Tensor]
    ops: list[Op]  # in execution order
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def op_codes(self) -> list[str]:
        """Every op kind in the file, once, in order of first use."""
        return list(dict.fromkeys(op.code for op in self.ops))


def _names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def read_model(path: str | Path) -> TfliteModel:
    """The first subgraph of a .tflite file (the converter writes one for a Keras model)."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(Path(path).read_bytes())
    model = schema.Model.GetRootAs(data, 0)
    op_names, type_names = _names(schema.BuiltinOperator), _names(schema.TensorType)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # codes past 127 live in builtin_code only; older files fill deprecated_builtin_code only
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else op_names.get(builtin, f"BUILTIN_{builtin}"))
    graph = model.Subgraphs(0)
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        raw = _buffer_bytes(model, data, t.Buffer())
        tensors.append(Tensor(i, t.Name().decode(), tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (),
                              type_names.get(t.Type(), str(t.Type())), raw is not None,
                              raw is not None and not raw.any()))
    ops = [Op(i, codes[op.OpcodeIndex()], tuple(int(v) for v in op.InputsAsNumpy()),
              tuple(int(v) for v in op.OutputsAsNumpy()))
           for i, op in ((i, graph.Operators(i)) for i in range(graph.OperatorsLength()))]
    return TfliteModel(tensors, ops, tuple(int(v) for v in graph.InputsAsNumpy()),
                       tuple(int(v) for v in graph.OutputsAsNumpy()))


def _buffer_bytes(model, data: bytearray, index: int) -> np.ndarray | None:
    """A constant tensor's bytes (inline, or at an offset in the file for models past 2 GB); None when
    the tensor has no data in the file (an activation)."""
    if not index:  # buffer 0 is the schema's empty sentinel
        return None
    buffer = model.Buffers(index)
    if buffer.DataLength():
        return buffer.DataAsNumpy()
    if buffer.Size():
        return np.frombuffer(data, np.uint8, buffer.Size(), buffer.Offset())
    return None


def layer_scopes(tensor_name: str, names: set[str]) -> list[str]:
    """The spec layers a tensor's name mentions (``;``-joined op names, each ``scope/.../op``)."""
    found = []
    for op_name in tensor_name.split(";"):
        for part in op_name.split("/")[:-1]:
            base = part if part in names else re.sub(r"_\d+$", "", part)
            if base in names:
                found.append(base)
                break
    return list(dict.fromkeys(found))


def expected_shape(spec: ModelSpec, layer: str) -> tuple[int, ...]:
    """The layer's output shape as the file holds it, batch excluded: NHWC for feature maps."""
    shape = tuple(spec.layer(layer).output_shape)
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


def layer_tensors(model: TfliteModel, spec: ModelSpec) -> tuple[dict[str, int], dict[str, str]]:
    """(spec layer -> tensor index, spec layer -> why it has none): the rule in the module docstring."""
    names = [layer.name for layer in spec.layers]
    order = {n: i for i, n in enumerate(names)}
    owned: dict[str, list[Tensor]] = {n: [] for n in names}  # layer -> its op outputs, in execution order
    fused_into: dict[str, str] = {}  # layer -> the tensor name of the op that absorbed it
    for op in model.ops:
        if op.code == "TRANSPOSE":
            continue
        for index in op.outputs:
            tensor = model.tensors[index]
            scopes = sorted(layer_scopes(tensor.name, set(names)), key=order.__getitem__)
            if not scopes:
                continue
            owned[scopes[-1]].append(tensor)
            for earlier in scopes[:-1]:  # its last op is this one: what it computed before is not its output
                fused_into[earlier] = tensor.name
                owned[earlier].clear()
    found: dict[str, int] = {}
    missing: dict[str, str] = {}
    for i, name in enumerate(names):
        want = expected_shape(spec, name)
        if i == len(names) - 1:
            found[name] = model.outputs[0]
            continue
        fitting = [t for t in owned[name] if t.shape[1:] == want]
        if fitting:
            found[name] = fitting[-1].index
        elif owned[name]:
            last = owned[name][-1]
            missing[name] = (f"tensor '{last.name}' has shape {list(last.shape[1:])} (batch excluded), "
                             f"the spec's is {list(want)} (NHWC)")
        elif name in fused_into:
            missing[name] = (f"fused or folded by the converter into a later layer's op (tensor '{fused_into[name]}'): "
                             f"its own output is never materialised")
        elif spec.layer(name).op == "dropout" and i and names[i - 1] in found:
            found[name] = found[names[i - 1]]  # the identity at inference
        else:
            missing[name] = "no tensor of the file is named after it"
    return found, missing
