"""The precisions a bench row runs in, under the names bench results have always carried
(``float32``, ``tf32``, ``float16``, ``bfloat16``) plus ``int8``; ``compare --precision``'s spellings
(``fp32``, ``bf16``, ``fp16``: ``backends/precision.py``) are accepted and mean the same.

``tf32`` is the bench's own: float32 storage with TF32 matrix products on CUDA tensor cores, a
switch rather than a precision a model is built in, so a CUDA GPU's business only.
"""

from __future__ import annotations

from ...backends.precision import ALIASES, UnknownPrecision, canonical_precision
from ...backends.precision import PRECISIONS as CANONICAL

TF32 = "tf32"
# canonical name -> the name bench rows, skip reasons and peaks carry (kept for old results' readers)
ROW_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}
NAMES = ("float32", TF32, "float16", "bfloat16", "int8")  # in the order a table lists them
# Every spelling `--precision` takes (the API checks against this too).
ACCEPTED = tuple(dict.fromkeys((*NAMES, *CANONICAL, *ALIASES)))
# The reference a speed-up is measured against.
BASELINE = "float32"


class UnknownBenchPrecision(ValueError):
    pass


def row_name(name: str) -> str | None:
    """The row name for any accepted spelling (``bf16`` -> ``bfloat16``), or None."""
    key = str(name).strip().lower()
    if key == TF32:
        return TF32
    try:
        return ROW_NAMES[canonical_precision(key)]
    except UnknownPrecision:
        return None


def requested(names) -> tuple[str, ...]:
    """``--precision``'s names as row names, once each in the order given (``fp32,float32`` is one
    row set); UnknownBenchPrecision naming every unknown one and what is accepted."""
    unknown = [str(n) for n in names if row_name(n) is None]
    if unknown:
        raise UnknownBenchPrecision(f"unknown precision {', '.join(unknown)}; known: {', '.join(NAMES)} "
                                    f"(or compare's names {', '.join(c for c in CANONICAL if c not in NAMES)})")
    return tuple(dict.fromkeys(row_name(n) for n in names))


def declared(names) -> tuple[str, ...]:
    """A backend's ``bench_precisions`` as row names, whichever spelling it declares them in; a name
    this harness does not know is left out (nobody can ask for it)."""
    return tuple(dict.fromkeys(r for r in map(row_name, names) if r is not None))


def canonical(name: str) -> str:
    """What a backend's options["precision"] says for a row name: tf32 builds a float32 model."""
    return "fp32" if name == TF32 else canonical_precision(name)
