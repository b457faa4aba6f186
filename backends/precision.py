"""The precisions a model can run in, under the names users type, and what each one is.

``fp32`` is the parity default; ``bf16`` and ``fp16`` compute with 16-bit floats (float32 inputs,
outputs and, where the framework allows, accumulation); ``int8`` runs a statically quantized model
(8-bit weights and activations, calibrated). The bench's historical names (``float32``,
``bfloat16``, ``float16``) are accepted everywhere and mean the same. Pure data: nothing here
imports a framework.
"""

from __future__ import annotations

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
