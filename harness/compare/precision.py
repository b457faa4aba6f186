"""Reduced-precision runs (`compare --precision`): each precision's tolerance profile, the margin-aware
top-k criterion, what precision a backend's tensors really had, and the diagnosis of an fp32 run whose
errors have the size of a lower precision's. The derivation of every number is in docs/precision.md.

The error model, per layer of a spec, in relative L2 against the float64 reference:

- one layer that computes new numbers (conv, linear, LRN, batch norm, average pools, softmax) rounds
  its input, its weights and its output to the precision: three roundings of relative RMS u/sqrt(3)
  each (u: the unit roundoff, backends/precision.py), about u together. Frameworks accumulate 16-bit
  products in float32, so the length K of a sum (K = 9216 in AlexNet's fc6) does not enter through
  the accumulation but only through the rounded inputs, whose errors are independent and add up
  like the terms themselves: the relative error of the sum stays ~u however long the sum is
  (accumulating in 16 bits would give ~sqrt(K) u instead). ReLU, max pooling, flatten and dropout
  select or copy values: they round nothing.
- layer after layer the fresh errors are independent: after n rounding layers they add like a
  random walk, ~sqrt(n) times one layer's, if every layer passed its input's relative error on
  unchanged. LRN and batch norm (a small variance divides), softmax (a logit scale multiplies) and a
  long fully connected sum of terms that cancel amplify it; ReLU and pooling shrink it.
- int8 rounds to a calibrated step instead: step = range / 255 per tensor (activations) or per
  output channel (weights), an error of RMS step/sqrt(12), which relative to the tensor's RMS is
  (range/RMS) / (255 sqrt(12)) ~ 1e-2 for a range of ~9 RMS.

Measured (numpy emulation of each precision on the float64 reference, identical to torch's casts where
torch runs them; batch 64, canonical weights, seed 0): one rounding layer gives 0.72-0.74 u (bf16:
2.8e-3 to 2.9e-3, fp16: 3.6e-4) and int8 1.1e-2 to 1.4e-2; deeper layers stay below sqrt(n) times
that (alexnet-owt, 9 rounding layers: bf16 at most 4.8e-3, fp16 5.8e-4, int8 1.1e-2; softmax doubles
its input's error). The profile's limit after n rounding layers is SAFETY x e1 x sqrt(n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ...backends.precision import DTYPE_NAMES, EXACT_OPS, UNIT_ROUNDOFF, precision_of_dtype
from ...spec import ModelSpec
from ..results.model import TopkResult
from .metrics import Tolerance

# One rounding layer's relative L2 error e1, calibrated: 0.75 u measured for the floats (theory: u);
# for int8 the quantization error of input and weights, measured 1.1e-2 to 1.4e-2 (theory ~1.4e-2).
FIRST_LAYER_ERROR = {"bf16": 0.75 * UNIT_ROUNDOFF["bf16"], "fp16": 0.75 * UNIT_ROUNDOFF["fp16"], "int8": 1.2e-2}
# Limits are this many times the expected error: the measured errors sit 2.5x (first layer, worst
# spec) to 8x (alexnet-owt's output) below them, leaving room for a framework that rounds once more.
SAFETY = 3.0
# The largest elementwise error, relative to max|ref|, measured at most 2.4x the relative L2 error.
MAX_TO_L2 = 2.5
# top-k: the least batch the criterion is judged on, and how many standard deviations of the allowed
# error an input's margin must exceed to count as decisive (see decisive_margin).
TOPK_MIN_BATCH = 64
MARGIN_SIGMAS = 3.0
# Largest finite value per precision: an inf in such a run is most likely an overflow.
LARGEST = {"fp16": "65,504", "bf16": "3.4e38", "fp32": "3.4e38"}


@dataclass(frozen=True)
class PrecisionProfile:
    """The tolerance of a precision: relative L2 <= SAFETY x e1 x sqrt(n) after n rounding layers."""

    name: str
    first_layer: float  # e1: one rounding layer's expected relative L2 error

    def expected(self, depth: int) -> float:
        return self.first_layer * math.sqrt(max(depth, 1))

    def rel_l2(self, depth: int) -> float:
        return SAFETY * self.expected(depth)

    def tolerance(self, depth: int) -> Tolerance:
        return Tolerance(atol=0.0, rtol=MAX_TO_L2 * self.rel_l2(depth))

    def describe(self) -> str:
        """The one line printed with the verdict."""
        base = (f"unit roundoff {sci(UNIT_ROUNDOFF[self.name])}" if self.name in UNIT_ROUNDOFF
                else "quantization step range/255")
        return (f"'{self.name}' profile: relative L2 <= {SAFETY:g} x {sci(self.first_layer)} x sqrt(n) after n "
                f"rounding layers ({base}; safety factor {SAFETY:g}), max abs <= {MAX_TO_L2:g} x that x max|ref| "
                f"(docs/precision.md)")


PRECISION_PROFILES = {name: PrecisionProfile(name, e1) for name, e1 in FIRST_LAYER_ERROR.items()}


def rounding_depths(spec: ModelSpec) -> dict[str, int]:
    """Layer name -> how many rounding layers its output has been through (at least 1: the input itself
    is rounded)."""
    depths, n = {}, 0
    for layer in spec.layers:
        n += layer.op not in EXACT_OPS
        depths[layer.name] = max(n, 1)
    return depths


def layer_limits(profile: PrecisionProfile, spec: ModelSpec) -> dict[str, tuple[Tolerance, float]]:
    return {name: (profile.tolerance(n), profile.rel_l2(n)) for name, n in rounding_depths(spec).items()}


# ---- top-k agreement -------------------------------------------------------------------------------


def sci(x: float) -> str:
    """``2.1e-3``: two significant digits, no padded exponent."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def decisive_margin(ref: np.ndarray, rel_l2: float) -> np.ndarray:
    """Per input, the margin that no error within the profile can close.

    Within the profile an input's output error has relative L2 <= rel_l2: spread over C outputs, a
    standard deviation of sigma = rel_l2 x RMS(z) per output. Two classes swap places when their errors
    differ by more than their margin; that difference has a standard deviation of sqrt(2) sigma, so a
    margin above MARGIN_SIGMAS x sqrt(2) x sigma is lost with probability below 1.3e-3 even at the
    profile's limit, and never at the measured errors (several times below it)."""
    z = ref.reshape(ref.shape[0], -1).astype(np.float64)
    rms = np.sqrt(np.mean(z * z, axis=1))
    return MARGIN_SIGMAS * math.sqrt(2.0) * rel_l2 * rms


def topk_check(ref: np.ndarray, got: np.ndarray, rel_l2: float) -> TopkResult:
    """Raw top-1/top-5 agreement, and the criterion: an input whose reference top-1 class leads the
    second by more than ``decisive_margin`` must keep its top-1 class; one whose top-1 leads the sixth
    by more must have its top-1 among the reference's top 5."""
    z = ref.reshape(ref.shape[0], -1).astype(np.float64)
    g = got.reshape(got.shape[0], -1)
    n, classes = z.shape
    order = np.argsort(-z, axis=1, kind="stable")
    picked = np.argmax(g, axis=1)
    in_top1 = picked == order[:, 0]
    in_top5 = np.array([p in row[:5] for p, row in zip(picked, order)])
    top1, top5 = float(in_top1.mean()), float(in_top5.mean())
    if n < TOPK_MIN_BATCH:
        return TopkResult(False, n, top1, top5, note=f"top-k agreement not judged: {n} inputs, "
                                                    f"fewer than the {TOPK_MIN_BATCH} it needs")
    ranked = np.take_along_axis(z, order, axis=1)
    margin = decisive_margin(z, rel_l2)
    decisive1 = ranked[:, 0] - ranked[:, 1] > margin
    # With 5 classes or fewer every top-1 is among the top 5: nothing to judge.
    decisive5 = ranked[:, 0] - ranked[:, 5] > margin if classes > 5 else np.zeros(n, dtype=bool)
    lost = (decisive1 & ~in_top1) | (decisive5 & ~in_top5)
    return TopkResult(True, n, top1, top5, int(decisive1.sum()), int((decisive1 & in_top1).sum()),
                      int(decisive5.sum()), int((decisive5 & in_top5).sum()),
                      tuple(int(i) for i in np.flatnonzero(lost)))


# ---- what ran ---------------------------------------------------------------------------------------


def computed_precisions(dtypes: Mapping[str, str]) -> list[str]:
    """The precisions the tensors were computed in, in backends/precision.py's order."""
    seen = {precision_of_dtype(d) for d in dtypes.values()}
    return [p for p in DTYPE_NAMES if p in seen]


def dtype_problem(requested: str, dtypes: Mapping[str, str], order: Sequence[str]) -> str | None:
    """Why the dtypes a backend reports contradict the precision asked for, or None.

    fp32: every tensor float32 (a bfloat16 layer is a silent precision change). bf16 and fp16: some
    layers may stay float32 (frameworks keep softmax or LRN there), but none in another low precision,
    and at least one in the one asked for. int8 runs dequantize between layers (their outputs are
    float32), so only a 16-bit float tensor contradicts them."""
    if not dtypes:
        return None
    names = [n for n in [*order, "output"] if n in dtypes] + [n for n in dtypes if n not in order and n != "output"]
    allowed = {"fp32": {"fp32"}, "bf16": {"fp32", "bf16"}, "fp16": {"fp32", "fp16"}, "int8": {"fp32", "int8"}}
    for name in names:
        ran = precision_of_dtype(dtypes[name])
        if ran is not None and ran not in allowed[requested]:
            where = "the output" if name == "output" else f"layer '{name}'"
            return f"asked for {requested}, but {where} ran in {dtypes[name]}"
    if requested in ("bf16", "fp16") and requested not in computed_precisions(dtypes):
        return (f"asked for {requested}, but no layer ran in it: every tensor reported is "
                f"{', '.join(sorted(set(dtypes.values())))}")
    return None


def nonfinite_problem(precision: str, order: Sequence[str], layers: Mapping[str, np.ndarray],
                      output: np.ndarray) -> str | None:
    """``layer 'conv3' holds inf: fp16's largest value is 65,504`` for the first layer (in spec order, then
    the output) holding inf or NaN, or None."""
    for name, array in [*((n, layers[n]) for n in order if n in layers), ("output", output)]:
        values = np.asarray(array)
        if not np.issubdtype(values.dtype, np.floating) or np.isfinite(values).all():
            continue
        where = "the output" if name == "output" else f"layer '{name}'"
        if np.isnan(values).any():
            return f"{where} holds NaN"
        return f"{where} holds inf" + (f": {precision}'s largest value is {LARGEST[precision]}"
                                       if precision in LARGEST else "")
    return None


def diagnose_fp32(layer: str, rel_l2: float | None, depth: int) -> str | None:
    """For an fp32 run out of tolerance: name the lower precision whose arithmetic gives errors of
    ``rel_l2`` at ``layer`` (between a third of one rounding layer's error and the profile's limit at
    that depth), the closest on a log scale when both fit; None when neither does."""
    if rel_l2 is None or not rel_l2 > 0:
        return None
    fits = []
    for name in ("bf16", "fp16"):
        profile = PRECISION_PROFILES[name]
        if profile.first_layer / 3 <= rel_l2 <= profile.rel_l2(depth):
            fits.append((abs(math.log(rel_l2 / profile.expected(depth))), name))
    if not fits:
        return None
    name = min(fits)[1]
    what, question = {"bf16": ("bf16", "did it run in bf16?"),
                      "fp16": ("fp16 or tf32", "did it run in fp16, or with TF32 matmuls?")}[name]
    return (f"errors of {sci(rel_l2)} relative at layer '{layer}' are what {what} arithmetic gives "
            f"(unit roundoff {sci(UNIT_ROUNDOFF[name])}): {question}")
