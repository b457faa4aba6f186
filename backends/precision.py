"""The precisions a model can run in, under the names users type, and what each one is.

``fp32`` is the parity default; ``bf16`` and ``fp16`` compute with 16-bit floats (float32 inputs,
outputs and, where the framework allows, accumulation); ``int8`` runs a statically quantized model
(8-bit weights and activations, calibrated). The bench's historical names (``float32``,
``bfloat16``, ``float16``) are accepted everywhere and mean the same. Also float32 training's rounding-error
model. Pure data: nothing here imports a framework.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the bench worker imports this before NumPy may load (bench_entry.apply_job_env)
    from ..spec import Layer

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}

# Unit roundoff u (half the distance from 1 to the next number): the relative error of one rounding.
# int8 has none of its own: its step is the calibrated scale (range / 255), per tensor or channel.
UNIT_ROUNDOFF = {"fp32": 2.0 ** -24, "tf32": 2.0 ** -11, "fp16": 2.0 ** -11, "bf16": 2.0 ** -8}
# The dtype names a framework reports for tensors computed in each precision.
DTYPE_NAMES = {"fp32": ("float32",), "bf16": ("bfloat16",), "fp16": ("float16",), "int8": ("int8", "uint8")}


class UnknownPrecision(ValueError):
    pass


def canonical_precision(name: str) -> str:
    """``bf16`` for bf16 or bfloat16, ...; UnknownPrecision with the valid names otherwise."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise UnknownPrecision(f"unknown precision {name!r}; expected one of {', '.join(PRECISIONS)} "
                               f"(or {', '.join(ALIASES)})")
    return key


def precision_of_dtype(dtype: str) -> str | None:
    """The precision a tensor's dtype name belongs to (None for float64 and the like)."""
    return next((p for p, names in DTYPE_NAMES.items() if str(dtype) in names), None)


# ---- float32 training's rounding-error model (docs/training.md) --------------------------------------
# One float32 rounding is ~0.75 u in relative L2 (what `compare --precision` measured per rounding layer,
# 0.72-0.74 u), and a float32 sum of K terms ~0.75 u sqrt(K) (its partial sums' rounding errors are
# independent). harness/train/tolerance.py sizes the training limits with it; the reference sizes its
# kinks with it (reference/spread.py). One home, so the two cannot drift apart.
FP32_ROUNDING = 0.75 * UNIT_ROUNDOFF["fp32"]
# Ops that select or copy values: they round nothing.
EXACT_OPS = frozenset({"relu", "maxpool2d", "flatten", "dropout"})


def float32_sums(layer: Layer, batch: int) -> tuple[int, int, int]:
    """(forward, backward, weight gradient) lengths of the float32 sums ``layer`` does in a training step on a
    batch of ``batch``; 0 where it rounds nothing."""
    op, a = layer.op, layer.attrs
    if op in EXACT_OPS:
        return 0, 0, 0
    out = layer.output_shape
    positions = batch * math.prod(out[1:])  # N oH oW (N for a vector)
    if op == "conv2d":
        return layer.fan_in, layer.fan_out // a["groups"], positions
    if op == "linear":
        return layer.fan_in, layer.fan_out, batch
    if op == "batchnorm2d":
        return positions, positions, positions
    if op == "lrn":
        return a["size"], a["size"], 0
    if op == "softmax":
        return out[0], out[0], 0
    if op == "avgpool2d":
        return math.prod(a["kernel"]), 1, 0
    if op == "adaptive_avgpool2d":
        (h, w), (oh, ow) = layer.input_shape[1:], out[1:]
        return math.ceil(h / oh) * math.ceil(w / ow), 1, 0
    return 1, 1, 0  # an op this model does not know yet: one rounding each way
