"""What OpenVINO really did with a model, read back from it rather than assumed from what was asked.

Precision: the CPU plugin takes ``INFERENCE_PRECISION_HINT`` as a wish. Where the CPU has no
native bf16 (``OPTIMIZATION_CAPABILITIES`` without "BF16": AVX2 and plain AVX-512 machines) a bf16
hint is ignored without a word and the compiled model reports f32; where it has (AVX512_BF16,
AMX) OpenVINO's default PERFORMANCE mode computes convolutions and matrix products in bf16 even for
an f32 model. So the compiled model's properties are recorded next to the requested ones, and the
precision each node ran in is read from the execution graph (``compiled.get_runtime_model()``),
whose nodes carry ``runtimePrecision`` and ``originalLayersNames``: the friendly names of the
model's ops fused into that node. A tensor's precision is that of the execution node its producing
op went into; a producer that went into no node (folded away, or renamed by a transformation)
gets none, and such tensors are listed rather than guessed.

Parameters: the ONNX frontend turns every initializer into a Constant and adds small integer ones
(shapes, axes) for the ops it decomposes; the compiled model folds further (the Keras export's
weight transposes), so constants are counted in the model as read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# OpenVINO element type names -> the dtype names backends/precision.py knows.
DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64", "i8": "int8", "u8": "uint8"}
# Execution graph layer types that compute nothing.
NOT_COMPUTING = frozenset({"Input", "Output", "Const"})
# Hint value -> the OPTIMIZATION_CAPABILITIES entry without which the CPU plugin ignores it.
NATIVE_CAPABILITY = {"bf16": "BF16", "f16": "FP16"}


def rt_text(node, key: str) -> str:
    info = node.get_rt_info()
    return info[key].astype(str) if key in info else ""


def property_text(value: Any) -> str:
    """A property as its name is spelled when set: Type f32 -> "f32", ExecutionMode.ACCURACY -> "ACCURACY"."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    return getattr(value, "name", None) or str(value)


def runtime_precision_counts(compiled) -> dict[str, int]:
    """Precision -> how many computing nodes of the execution graph ran in it."""
    counts: dict[str, int] = {}
    for node in compiled.get_runtime_model().get_ops():
        if rt_text(node, "layerType") not in NOT_COMPUTING:
            precision = rt_text(node, "runtimePrecision")
            counts[precision] = counts.get(precision, 0) + 1
    return dict(sorted(counts.items()))


def tensor_dtypes(model, compiled, tensors: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(key -> the dtype the node producing tensor ``tensors[key]`` ran in, keys whose producer is in no
    execution node). ``model``: the ov.Model that was compiled."""
    producer = {name: op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() != "Result"
                for port in op.outputs() for name in port.get_names()}
    ran_in: dict[str, str] = {}
    for node in compiled.get_runtime_model().get_ops():
        precision = rt_text(node, "runtimePrecision")
        for original in filter(None, rt_text(node, "originalLayersNames").split(",")):
            ran_in.setdefault(original, DTYPES.get(precision, precision))
    found, unmapped = {}, []
    for key, tensor in tensors.items():
        precision = ran_in.get(producer.get(tensor, ""))
        if precision:
            found[key] = precision
        else:
            unmapped.append(key)
    return found, unmapped


def hints_line(requested: dict[str, str], compiled: dict[str, str], capabilities: list[str]) -> tuple[str, list[str]]:
    """("NAME value, ..." as compiled, naming a requested value the compiled model does not have), and one
    sentence per such hint saying why."""
    parts, notes = [], []
    for name, want in requested.items():
        got = compiled[name]
        if str(want).lower() == got.lower():
            parts.append(f"{name} {got}")
            continue
        needed = NATIVE_CAPABILITY.get(str(want).lower()) if name == "INFERENCE_PRECISION_HINT" else None
        why = (f"this CPU has no native {want}" if needed and needed not in capabilities
               else "OpenVINO compiled another value")
        parts.append(f"{name} {want} requested (compiled: {got}; {why})")
        notes.append(f"{name} {want} was requested but the compiled model has {got}: {why} "
                     f"(OPTIMIZATION_CAPABILITIES {', '.join(capabilities)}), and OpenVINO ignores it without an error")
    return ", ".join(parts), notes


def constant_values(model, weight_params: int, file_constants: int) -> dict[str, Any]:
    """Values in the read model's Constants: all, the float ones of more than one value (weights), and
    how they stand to the ONNX file's (``inspect.param_breakdown``'s weight and constant values)."""
    weights = every = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        size = int(np.prod(op.get_output_shape(0), dtype=np.int64))
        every += size
        weights += size if op.get_element_type().is_real() and size > 1 else 0
    same = "=" if weights == weight_params else f"!= ({weights - weight_params:+,})"
    note = (f"{weights:,} in float constants of more than one value {same} the file's {weight_params:,} weight "
            f"values; the other {every - weights:,} are shapes, axes and scalars (the file has {file_constants:,}; "
            f"OpenVINO's ONNX frontend adds those of the ops it decomposes)")
    return {"weights": weights, "all": every, "note": note}
