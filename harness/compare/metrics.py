"""Numeric agreement between two arrays, and the first layer where two runs part ways.

Tolerances follow numpy.allclose on the whole tensor: a result passes when
``max|got - ref| <= atol + rtol * max|ref|``. Every comparison also reports the smallest
atol (with the given rtol) that would have passed, so a failure says how far off it was.
Shape is checked first, then dtype, then values; messages name both sides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    atol: float = 0.0
    rtol: float = 1e-4  # of max|ref|; see PROFILES

    def bound(self, ref_max: float) -> float:
        return self.atol + self.rtol * ref_max


# Named profiles. "default" is the parity bar of the test suite: max abs error within
# 1e-4 of max|ref| (float32 against the float64 reference), relative L2 within 1e-5. A run in a
# lower precision (compare --precision bf16|fp16|int8) is judged by that precision's profile instead,
# whose limits grow with depth: derived from the unit roundoff in precision.py and docs/precision.md.
PROFILES: dict[str, Tolerance] = {
    "strict": Tolerance(atol=0.0, rtol=1e-5),
    "default": Tolerance(atol=0.0, rtol=1e-4),
    "loose": Tolerance(atol=0.0, rtol=1e-3),
    "half": Tolerance(atol=0.0, rtol=2e-2),  # float16 / bfloat16 runs
}
REL_L2_LIMIT = {"strict": 1e-6, "default": 1e-5, "loose": 1e-4, "half": 1e-2}


@dataclass(frozen=True)
class Agreement:
    shape_ok: bool
    max_abs: float
    rel_l2: float
    cosine: float
    ref_max: float
    ok: bool
    min_atol: float  # smallest atol that would pass with the same rtol
    problem: str = ""

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}


def agreement(ref: np.ndarray, got: np.ndarray, tol: Tolerance, rel_l2_limit: float | None = None,
              names: tuple[str, str] = ("reference", "backend")) -> Agreement:
    ref = np.asarray(ref)
    got = np.asarray(got)
    nan = float("nan")
    if ref.shape != got.shape:
        return Agreement(False, nan, nan, nan, nan, False, nan,
                         f"shape: {names[1]} {list(got.shape)} vs {names[0]} {list(ref.shape)}")
    if not np.issubdtype(got.dtype, np.floating):
        return Agreement(True, nan, nan, nan, nan, False, nan,
                         f"dtype: {names[1]} {got.dtype} vs {names[0]} {ref.dtype} (floating point expected)")
    r = ref.astype(np.float64).ravel()
    g = got.astype(np.float64).ravel()
    if not np.isfinite(g).all():
        bad = int((~np.isfinite(g)).sum())
        return Agreement(True, float("inf"), float("inf"), nan, float(np.abs(r).max(initial=0.0)), False,
                         float("inf"), f"values: {names[1]} has {bad} NaN/Inf")
    diff = np.abs(g - r)
    max_abs = float(diff.max(initial=0.0))
    ref_max = float(np.abs(r).max(initial=0.0))
    ref_norm = float(np.linalg.norm(r))
    rel_l2 = float(np.linalg.norm(g - r) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(g))
    denom = float(np.linalg.norm(r) * np.linalg.norm(g))
    cosine = float(np.dot(r, g) / denom) if denom > 0 else (1.0 if max_abs == 0 else 0.0)
    min_atol = max(0.0, max_abs - tol.rtol * ref_max)
    ok = max_abs <= tol.bound(ref_max) and (rel_l2_limit is None or rel_l2 <= rel_l2_limit)
    problem = "" if ok else (
        f"values: max abs error {max_abs:.3g} > {tol.bound(ref_max):.3g} (atol {tol.atol:g} + rtol {tol.rtol:g}"
        f" x max|ref| {ref_max:.3g})" if max_abs > tol.bound(ref_max)
        else f"values: relative L2 error {rel_l2:.3g} > {rel_l2_limit:g}")
    return Agreement(True, max_abs, rel_l2, cosine, ref_max, ok, min_atol, problem)


@dataclass(frozen=True)
class LayerDivergence:
    layer: str
    agreement: Agreement


def layer_agreements(order: Sequence[str], ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                     tol: Tolerance, rel_l2_limit: float | None = None,
                     limits: Mapping[str, tuple[Tolerance, float]] | None = None) -> Iterator[LayerDivergence]:
    """Every layer present on both sides, in spec order, with its agreement (lazily). ``limits``: a layer's
    own (tolerance, relative L2 limit) where it has one (a precision's profile grows with depth)."""
    for name in order:
        if name in ref and name in got:
            layer_tol, layer_l2 = (limits or {}).get(name, (tol, rel_l2_limit))
            yield LayerDivergence(name, agreement(ref[name], got[name], layer_tol, layer_l2))


def first_divergence(layers: Iterable[LayerDivergence]) -> LayerDivergence | None:
    """The first of ``layers`` (from ``layer_agreements``) that is out of tolerance."""
    return next((d for d in layers if not d.agreement.ok), None)


def first_divergent_layer(order: Sequence[str], ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                          tol: Tolerance, rel_l2_limit: float | None = None) -> LayerDivergence | None:
    """The first layer, in spec order, present on both sides that is out of tolerance."""
    return first_divergence(layer_agreements(order, ref, got, tol, rel_l2_limit))


def topk_agreement(ref: np.ndarray, got: np.ndarray, k: int) -> float:
    """Share of samples whose top-1 class of ``got`` is among the top-k classes of ``ref``.

    For k = 1 that is plain top-1 agreement."""
    ref2 = ref.reshape(ref.shape[0], -1)
    got2 = got.reshape(got.shape[0], -1)
    k = min(k, ref2.shape[1])
    top_ref = np.argsort(-ref2, axis=1, kind="stable")[:, :k]
    top_got = np.argmax(got2, axis=1)
    return float(np.mean([g in row for g, row in zip(top_got, top_ref)]))
