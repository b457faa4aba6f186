"""The parameters in a .tflite file next to the spec's, with the difference accounted for.

A LiteRT model has no parameter API: its weights are the float constant tensors of the file. Those of more
than one value are the count this backend reports (``weight_params``); integer constants (shapes, pads,
axes, slice bounds) and single floats (a max pool's -inf padding value) are converter constants. What the
float32 conversion does to the spec's tensors, measured on TF 2.21's converter:

- a batch norm right after a convolution is folded into it (weight rescaled, bias shifted): the batch
  norm's 4*C values disappear, and the convolution has a bias of C values;
- any other batch norm is a multiply by a scale of C values and an add of a shift of C values;
- all-zero tensors carry no information and the converter treats them so: a zero bias or shift is dropped
  (no ADD; FULLY_CONNECTED without a bias), and TFLite's CONV_2D gets a zero bias of its size where it
  needs one, one constant shared by every convolution of that size (grouped convolutions included, whose
  bias the Keras layer adds after the concatenation);
- equal constants are stored once, however many ops read them (two batch norms with the same statistics).

So the check is on the non-zero values: the file's non-zero constants, plus what sharing saved, must equal
what the spec's values give under the rules above (computed from the weights, so a zero bias in the seeded
weights counts as zero). Zero constants are listed, not checked. Layouts differ without changing counts:
conv kernels OHWI (a grouped one split into one kernel per group), fully-connected weights (out, in).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...spec import Layer, ModelSpec
from ..base import Weights
from .flatbuffer import FLOAT_TYPES, TfliteModel


def param_breakdown(model: TfliteModel, spec: ModelSpec, weights: Weights) -> dict[str, Any]:
    constants = [t for t in model.tensors if t.constant]
    floats = [t for t in constants if t.dtype in FLOAT_TYPES and t.size > 1]
    weight = sum(t.size for t in floats)
    nonzero = [t for t in floats if not t.zero]
    readers: dict[int, int] = {}
    for op in model.ops:
        for i in set(op.inputs):
            readers[i] = readers.get(i, 0) + 1
    shared = {t.index: (readers.get(t.index, 1) - 1) * t.size for t in nonzero if readers.get(t.index, 1) > 1}
    expected, notes = _expected_nonzero(spec, weights)
    found = sum(t.size for t in nonzero)
    explained = found + sum(shared.values()) == expected
    if shared:
        notes.append(f"{len(shared)} constant{'s' if len(shared) > 1 else ''} read by several ops (equal values "
                     f"stored once): {sum(shared.values()):,} values saved")
    zeros = [t for t in floats if t.zero]
    spec_zero = sum(int(np.size(a)) for a in weights.values() if not np.any(a))
    if spec_zero:
        notes.append(f"the spec's all-zero tensors ({spec_zero:,} values: biases, batch norm means or shifts) "
                     f"dropped by the converter")
    if zeros:
        notes.append(f"{len(zeros)} zero bias{'es' if len(zeros) != 1 else ''} of the converter's own "
                     f"({sum(t.size for t in zeros):,} values, one per convolution size)")
    if not explained:
        notes.append(f"UNEXPLAINED: {found:,} non-zero values in the file (+{sum(shared.values()):,} shared), "
                     f"the spec's weights give {expected:,}")
    if sum(t.size for t in constants) - weight:
        notes.append(f"{sum(t.size for t in constants) - weight:,} values in converter constants (int32 shapes/"
                     f"pads/axes/slice bounds, single floats)")
    return {"weight_params": weight, "constant_params": sum(t.size for t in constants) - weight,
            "weight_tensors": len(floats), "nonzero_params": found, "spec_params": spec.param_count,
            "difference": weight - spec.param_count, "explained": explained, "notes": notes}


def _expected_nonzero(spec: ModelSpec, weights: Weights) -> tuple[int, list[str]]:
    """The non-zero values the converter's rules give the spec's weights, and a note per batch norm."""
    def values(name: str) -> np.ndarray | None:
        return None if name not in weights else np.asarray(weights[name], np.float64)

    def counted(array: np.ndarray | None) -> int:
        return int(array.size) if array is not None and np.any(array) else 0

    total, notes, standalone = 0, [], []
    layers = spec.layers
    for i, layer in enumerate(layers):
        after = layers[i + 1] if i + 1 < len(layers) else None
        if layer.op in ("conv2d", "linear"):
            weight, bias = values(f"{layer.name}.weight"), values(f"{layer.name}.bias")
            if after is not None and after.op == "batchnorm2d" and layer.op == "conv2d":
                scale, shift = _scale_shift(after, weights)
                bias = (np.zeros_like(shift) if bias is None else bias) * scale + shift
                notes.append(f"{after.name} folded into {layer.name} by the converter ({layer.name}'s weight "
                             f"rescaled, its bias shifted; {after.name}'s {4 * len(scale):,} values absorbed)")
            total += counted(weight) + counted(bias)
        elif layer.op == "batchnorm2d" and not (i and layers[i - 1].op == "conv2d"):
            scale, shift = _scale_shift(layer, weights)
            total += counted(scale) + counted(shift)
            standalone.append(f"{layer.name} {counted(scale) + counted(shift):,} of {4 * len(scale):,}")
    if standalone:
        notes.append(f"batch norms as a multiply by a scale and an add of a shift (none when the shift is zero): "
                     f"{', '.join(standalone)} values")
    return total, notes


def _scale_shift(layer: Layer, weights: Weights) -> tuple[np.ndarray, np.ndarray]:
    """The batch norm as y = x * scale + shift."""
    gamma, beta, mean, var = (np.asarray(weights[f"{layer.name}.{p}"], np.float64)
                              for p in ("weight", "bias", "running_mean", "running_var"))
    scale = gamma / np.sqrt(var + float(layer.attrs["eps"]))
    return scale, beta - mean * scale
