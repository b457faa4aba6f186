"""Judging a training run: every backend's steps against the float64 reference's, step by step, each
tensor in backward order, against the derived limits (tolerance.py); the first divergence named.

Arrays are read from the workers' files one tensor at a time (AlexNet's 61M parameters, three kinds,
every step, every backend: they do not fit in memory together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ...spec import ModelSpec
from ..compare.judge import exit_code, verdict_text
from ..results.model import (
    CompareEntry,
    Divergence,
    StepCheck,
    TensorCheck,
    TrainingResult,
    TrainingTolerance,
    Verdict,
)
from .tolerance import CHAOTIC, KINDS, SPREAD_SAFETY, TrainLimits, backward_order, derivation


@dataclass(frozen=True)
class TrainRun:
    """What one worker's training left: losses per step and, per step, kind -> tensor -> .npy file; the
    reference's also its kink spread (kind -> tensor -> norm) and ambiguous decisions (layer -> count)."""

    losses: list[float]
    data_losses: list[float]
    files: list[dict[str, dict[str, Path]]]
    spread: list[dict[str, dict[str, float]]] = field(default_factory=list)
    ambiguous: list[dict[str, int]] = field(default_factory=list)

    @classmethod
    def from_result(cls, job_dir: Path, train: dict) -> TrainRun:
        files = [{kind: {t: job_dir / rel for t, rel in tensors.items()} for kind, tensors in step.items()}
                 for step in train["steps"]]
        return cls(list(train["losses"]), list(train["data_losses"]), files, list(train.get("spread") or []),
                   list(train.get("ambiguous") or []))

    def first(self, steps: int) -> TrainRun:
        """The first ``steps`` steps."""
        return TrainRun(self.losses[:steps], self.data_losses[:steps], self.files[:steps], self.spread[:steps],
                        self.ambiguous[:steps])


@dataclass(frozen=True)
class TrainJudgement:
    backends: list[CompareEntry]
    tolerance: TrainingTolerance
    verdict: Verdict


def _load(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def _checks(spec: ModelSpec, ref_step: Mapping[str, Mapping[str, Path]]) -> list[tuple[str, str, str]]:
    """(tensor, kind, folder) of one step in backward order: a trainable tensor's gradient, parameter and
    momentum, a running statistic's displacement; only what the reference wrote (no momentum at mu = 0)."""
    out = []
    for tensor, trainable in backward_order(spec):
        kinds = (("gradient", "gradient"), ("parameter", "parameter"), ("momentum", "momentum")) if trainable \
            else (("statistic", "parameter"),)
        out += [(tensor, kind, folder) for kind, folder in kinds if tensor in ref_step.get(folder, {})]
    return out


def _norm(a: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64).ravel()))


DISPLACED = ("parameter", "statistic")  # judged as displacements from the initial weights


@dataclass(frozen=True)
class Scale:
    """What one (step, kind, tensor) of a backend is measured against, from the reference's arrays."""

    norm: float  # the denominator of its relative L2
    w_norm: float  # the reference's ||w_k|| (the float32 storage term of a displacement)


def reference_scales(spec: ModelSpec, ref: TrainRun,
                     initial: Mapping[str, np.ndarray]) -> dict[tuple[int, str, str], Scale]:
    """(step, kind, tensor) -> its Scale: the reference's norm of the tensor (of its displacement for a
    parameter or statistic), or, when larger, what the layer's tensors of that kind hold per element
    times the tensor's size. A bias feeding batch norm has an exact gradient of 0 (batch norm removes any
    constant shift): its float32 gradient is the rounding noise of a sum that cancels, of any size
    relative to itself, but as small as its neighbours' rounding relative to the layer's gradients."""
    scales: dict[tuple[int, str, str], Scale] = {}
    for k, step in enumerate(ref.files, start=1):
        own: dict[tuple[str, str], tuple[float, float, int]] = {}
        for tensor, kind, folder in _checks(spec, step):
            a = np.asarray(_load(step[folder][tensor]), dtype=np.float64)
            w_norm = _norm(a)
            own[(kind, tensor)] = (_norm(a - initial[tensor]) if kind in DISPLACED else w_norm, w_norm, a.size)
        layer_sq: dict[tuple[str, str], list[float]] = {}
        for (kind, tensor), (norm, _, size) in own.items():
            totals = layer_sq.setdefault((kind, tensor.rpartition(".")[0]), [0.0, 0.0])
            totals[0] += norm * norm
            totals[1] += size
        for (kind, tensor), (norm, w_norm, size) in own.items():
            sq, n = layer_sq[(kind, tensor.rpartition(".")[0])]
            floor = math.sqrt(sq / n * size) if kind != "statistic" else 0.0
            scales[(k, kind, tensor)] = Scale(max(norm, floor), w_norm)
    return scales


def reference_limits(limits: TrainLimits, ref: TrainRun,
                     scales: Mapping[tuple[int, str, str], Scale]) -> TrainingTolerance:
    """The limits of this run, per (kind, tensor) one per step: the spec's, those the reference's own arrays
    set (displacements, the loss with penalties), widened by the reference's kink spread."""
    per_kind: dict[str, dict[str, list[float]]] = {kind: {} for kind in KINDS}
    for (k, kind, tensor), scale in scales.items():  # in step order
        spread = ref.spread[k - 1].get(kind, {}).get(tensor, 0.0) if k <= len(ref.spread) else 0.0
        per_kind[kind].setdefault(tensor, []).append(limits.limit(kind, tensor, k, scale.norm, scale.w_norm, spread))
    return TrainingTolerance(derivation(), limits.loss_limit(ref.losses, ref.data_losses), per_kind["gradient"],
                             per_kind["parameter"], per_kind["momentum"], per_kind["statistic"], list(ref.ambiguous))


def _tensor_check(tensor: str, kind: str, ref_path: Path, got_path: Path | None, limit: float,
                  scale: float) -> TensorCheck:
    """||got - ref|| / ``scale`` (a displacement's error is the tensors' difference: w_0 is shared)."""
    if got_path is None:
        return TensorCheck(tensor, kind, None, limit, False, "the backend returned no such tensor")
    ref, got = _load(ref_path), _load(got_path)
    if ref.shape != got.shape:
        return TensorCheck(tensor, kind, None, limit, False, f"shape {list(got.shape)}, reference {list(ref.shape)}")
    got64 = np.asarray(got, dtype=np.float64)
    if not np.isfinite(got64).all():
        what = "NaN" if np.isnan(got64).any() else "inf"
        return TensorCheck(tensor, kind, None, limit, False, f"holds {what}")
    err = _norm(got64 - np.asarray(ref, dtype=np.float64))
    if scale == 0:
        if err == 0:
            return TensorCheck(tensor, kind, 0.0, limit, True)
        return TensorCheck(tensor, kind, None, limit, False, "the reference's is zero, this backend's is not")
    return TensorCheck(tensor, kind, err / scale, limit, err / scale <= limit)


def loss_spread(ref: TrainRun, k: int) -> float:
    """The oracle's kink spread of the loss at step k, relative to the loss (0 where it has none)."""
    spread = ref.spread[k - 1].get("loss", {}).get("loss", 0.0) if k <= len(ref.spread) else 0.0
    return spread / abs(ref.losses[k - 1]) if spread else 0.0


def unjudged(ref: TrainRun) -> tuple[int, str | None]:
    """(how many steps can be judged, why not the rest). A step is not judged once the reference's loss is not
    finite (-log 0: the run diverged, every gradient after it NaN), or once the oracle's own two kink choices
    differ by more than CHAOTIC in the loss: the trajectories have parted (the loss of a diverging run), and a
    limit of 3x that spread would pass anything."""
    for k, loss in enumerate(ref.losses, start=1):
        if not math.isfinite(loss):
            return k - 1, f"not judged from step {k} on: the reference's loss is {loss} (training diverged)"
        if loss_spread(ref, k) > CHAOTIC:
            return k - 1, (f"not judged from step {k} on: deciding float32's ambiguous kinks the other way already "
                           f"moves the float64 oracle's loss by {loss_spread(ref, k):.0%} (training is chaotic "
                           f"there: docs/training.md)")
    return len(ref.losses), None


def judge_backend(spec: ModelSpec, ref: TrainRun, got: TrainRun, tolerance: TrainingTolerance,
                  scales: Mapping[tuple[int, str, str], Scale], note: str | None = None) -> TrainingResult:
    """``ref``: the reference's judged steps; ``note``: why later ones are not judged."""
    steps: list[StepCheck] = []
    first: Divergence | None = None
    for k, (ref_step, got_step) in enumerate(zip(ref.files, got.files), start=1):
        ref_loss, loss = ref.losses[k - 1], got.losses[k - 1]
        loss_err = abs(loss - ref_loss) / abs(ref_loss) if ref_loss else abs(loss - ref_loss)
        loss_limit = max(tolerance.loss, SPREAD_SAFETY * loss_spread(ref, k))
        loss_ok = math.isfinite(loss_err) and loss_err <= loss_limit
        tensors = []
        for tensor, kind, folder in _checks(spec, ref_step):
            limit_k = getattr(tolerance, kind)[tensor][k - 1]
            tensors.append(_tensor_check(tensor, kind, ref_step[folder][tensor], got_step.get(folder, {}).get(tensor),
                                         limit_k, scales[(k, kind, tensor)].norm))
        steps.append(StepCheck(k, loss_err if math.isfinite(loss_err) else None,
                               loss_ok and all(t.ok for t in tensors), tensors, loss_limit))
        if first is None and not loss_ok:
            first = Divergence(k, "loss", "loss", loss_err if math.isfinite(loss_err) else None, loss_limit)
        bad = next((t for t in tensors if not t.ok), None)
        if first is None and bad is not None:
            first = Divergence(k, bad.kind, bad.tensor, bad.rel_l2, bad.limit)
    return TrainingResult(got.losses, got.data_losses, steps, first, note)


def divergence_text(first: Divergence | Mapping, problem: str | None = None) -> str:
    """``step 2, parameter conv1.weight: relative L2 3.1e-03 > limit 2.0e-05`` (a Divergence or its JSON)."""
    d = first.to_json() if isinstance(first, Divergence) else first
    what = "loss: relative error" if d["kind"] == "loss" else f"{d['kind']} {d['tensor']}: relative L2"
    if d["rel_l2"] is None:
        return f"step {d['step']}, {what.rsplit(':', 1)[0]}: {problem or 'not comparable'}"
    return f"step {d['step']}, {what} {d['rel_l2']:.1e} > limit {d['limit']:.1e}"


def _problem(result: TrainingResult) -> str | None:
    first = result.first_divergent
    step = result.steps[first.step - 1]
    return next((t.problem for t in step.tensors if t.tensor == first.tensor and t.kind == first.kind), None)


def judge_training(entries: Sequence[CompareEntry], spec: ModelSpec, runs: Mapping[str, TrainRun],
                   limits: TrainLimits, initial: Mapping[str, np.ndarray]) -> TrainJudgement:
    """Judge every entry that trained against the reference's run (``runs``: backend -> its run)."""
    ref = runs.get("reference")
    judged_steps, note = unjudged(ref) if ref is not None else (0, None)
    finite = ref.first(judged_steps) if ref is not None else TrainRun([], [], [])
    scales = reference_scales(spec, finite, initial)
    tolerance = reference_limits(limits, finite, scales)
    judged = []
    for entry in entries:
        run = runs.get(entry.name)
        if run is None:
            judged.append(entry)
        elif ref is None or entry.name == "reference":
            judged.append(replace(entry, training=TrainingResult(run.losses, run.data_losses)))
        else:
            result = judge_backend(spec, finite, run, tolerance, scales, note)
            bad = result.first_divergent is not None or entry.param_count_ok is False
            judged.append(replace(entry, training=result, status="mismatch" if bad else entry.status))
    code, checked = exit_code(judged, ref is not None)

    def detail(e: CompareEntry) -> str:
        if e.training is None or e.training.first_divergent is None:
            return f"{e.param_count:,} parameters, spec says {spec.param_count:,}"
        return divergence_text(e.training.first_divergent, _problem(e.training))

    text = verdict_text(judged, spec.name, code, checked,
                        agree=f"train like the float64 reference over {judged_steps} step{'s' * (judged_steps != 1)}",
                        mismatch_detail=detail)
    note = next((e.training.note for e in judged if e.training is not None and e.training.note), None)
    return TrainJudgement(judged, tolerance, Verdict(int(code), text + (f"; {note}" if note else "")))
