"""The oracle measures its own ambiguity: how far float32's legitimate choices at kinks can move a training step.

ReLU and max pooling are kinks: the gradient jumps where a ReLU input crosses 0 or where a pooling window's top
two cells swap. A float32 backend computes every value with a small error, so where the float64 margin of such a
decision is smaller than that error, float32 may take it the other way, and both gradients are right (each is a
subgradient). Such a decision is *ambiguous*:

- a ReLU input x with |x| < KINK_SIGMAS e RMS(input);
- a max-pool window whose first maximum leads the best other cell by less than
  KINK_SIGMAS sqrt(2) e max(|maximum|, RMS(input)); two cells that are both exact zeros (ReLU's) excepted, as
  float32 computes those zeros exactly too.

e is the expected float32 relative L2 error of the layer's input in the training limits' model
(backends/precision.py): FP32_ROUNDING sqrt(sum of K) over the float32 sums of K terms before it. An element's
error then has a standard deviation of about e times its scale, and two elements' errors differ by sqrt(2) of
that; a margin beyond KINK_SIGMAS of those is lost with probability below 3e-3 even at the model's error, which
overestimates float32's (blocked sums do better: 1.5-4x on AlexNet). The scale is the tensor's RMS for a value
near 0 (its error is that of the partial sums that cancelled), and the window's maximum itself when larger (a
value's error grows with it). Measured on AlexNet and alexnet-owt against torch float32, every window whose
argmax float32 changed lies within 0.27 tau (docs/training.md).

The shadow: a second state (weights, momentum buffers, running statistics) that starts equal to the main one and at
every step decides every ambiguous case of its own forward the other way: a max-pool window's gradient goes to the
runner-up, a ReLU passes the gradient where it was blocked and blocks it where it passed. The step's
``spread[kind][tensor]`` is the L2 norm of (main - shadow) (kind "loss": |main - shadow| of the loss), a scale for
how far float32's choices alone can take a backend from the oracle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...spec import Layer, ModelSpec
from ...spec.ops import floor_mode_padding
from ..base import TrainStep, Weights
from ..precision import FP32_ROUNDING, float32_sums
from . import training  # training.sgd_update looked up per call: a test may plant a wrong update there
from .forward import pad
from .training import Saved, backward, forward_loss, kernel_offsets, prepare_step, statistics, trainable, with_penalties

# How many standard deviations of the difference of two float32 errors a margin must exceed to be decisive
# (the same 3 as compare's top-k criterion, harness/compare/precision.py MARGIN_SIGMAS).
KINK_SIGMAS = 3.0


@dataclass
class State:
    """What a trajectory carries from step to step: every canonical tensor (float64) and the momentum buffers."""

    weights: Weights
    buffers: dict[str, np.ndarray]


@dataclass
class Kinks:
    """One layer's ambiguous decisions: how many, and the values its backward reads to decide them the other
    way (``Saved.extra``: "route" for max pooling, "passes" for ReLU)."""

    count: int
    flipped: dict[str, np.ndarray]


def input_errors(spec: ModelSpec, batch: int) -> dict[str, float]:
    """Per layer, the expected float32 relative L2 error of its input: FP32_ROUNDING sqrt(sum of K) over the
    forward's float32 sums before it (the batch itself is exact)."""
    errors, total = {}, 0
    for layer in spec.layers:
        errors[layer.name] = FP32_ROUNDING * math.sqrt(total)
        total += float32_sums(layer, batch)[0]
    return errors


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def top_two(xpad: np.ndarray, offsets: list[tuple[int, int, tuple[slice, slice]]]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per window: (the offset index of its first maximum, that maximum, the offset index of the best other cell,
    its value), scanning row-major; among equal cells the first wins (torch's tie rule), a window of one real
    cell has runner-up value -inf."""
    best = xpad[(..., *offsets[0][2])]
    first = np.zeros(best.shape, dtype=np.intp)
    second = np.full(best.shape, -np.inf)
    runner = np.zeros(best.shape, dtype=np.intp)
    for k, (_, _, window) in enumerate(offsets[1:], start=1):
        v = xpad[(..., *window)]
        greater = v > best
        # The old maximum becomes the runner-up where v takes over; elsewhere v does where it beats the runner-up.
        better = ~greater & (v > second)
        second = np.where(greater, best, np.where(better, v, second))
        runner = np.where(greater, first, np.where(better, k, runner))
        best = np.where(greater, v, best)
        first[greater] = k
    return first, best, runner, second


def maxpool2d_kinks(layer: Layer, saved: Saved, error: float) -> Kinks:
    a = layer.attrs
    xpad = pad(saved.x, floor_mode_padding(a, layer.input_shape), -np.inf)
    first, top, runner, second = top_two(xpad, list(kernel_offsets(a["kernel"], a["stride"], saved.y.shape[2:])))
    tau = KINK_SIGMAS * math.sqrt(2.0) * error * np.maximum(np.abs(top), _rms(saved.x))
    ambiguous = (top - second < tau) & ~((top == 0) & (second == 0))
    return Kinks(int(ambiguous.sum()), {"route": np.where(ambiguous, runner, first)})


def relu_kinks(layer: Layer, saved: Saved, error: float) -> Kinks:
    ambiguous = np.abs(saved.x) < KINK_SIGMAS * error * _rms(saved.x)
    return Kinks(int(ambiguous.sum()), {"passes": (saved.x > 0) ^ ambiguous})


# The ops whose backward holds a decision float32 may take the other way.
KINK_OPS = {"relu": relu_kinks, "maxpool2d": maxpool2d_kinks}


def find_kinks(spec: ModelSpec, tape: list[Saved], errors: dict[str, float]) -> dict[int, Kinks]:
    """Layer index -> its ambiguous decisions, for the layers that have any."""
    found = {}
    for i, (layer, saved) in enumerate(zip(spec.layers, tape)):
        if layer.op in KINK_OPS and errors[layer.name] > 0:
            kinks = KINK_OPS[layer.op](layer, saved, errors[layer.name])
            if kinks.count:
                found[i] = kinks
    return found


def flipped(tape: list[Saved], kinks: dict[int, Kinks]) -> list[Saved]:
    """The tape with every ambiguous decision taken the other way (the arrays are shared, not copied)."""
    return [Saved(s.x, s.y, {**s.extra, **kinks[i].flipped}) if i in kinks else s for i, s in enumerate(tape)]


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b||, block by block (training.BLOCK): no whole-tensor temporary."""
    if a is b:
        return 0.0
    a, b = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
    total = 0.0
    for start in range(0, a.size, training.BLOCK):
        d = a[start : start + training.BLOCK] - b[start : start + training.BLOCK]
        total += float(d @ d)
    return math.sqrt(total)


def spread_train_step(spec: ModelSpec, main: State, shadow: State | None, x: np.ndarray, labels: np.ndarray,
                      masks: dict[str, np.ndarray]) -> tuple[TrainStep, State, State | None]:
    """One SGD step read out in full, with its spread: (the step, the main state after it, the shadow after it).
    ``shadow`` None means identical to ``main``; it stays None (no shadow computed) until a step has an
    ambiguous decision."""
    weights, x, labels, masks = prepare_step(spec, main.weights, x, labels, masks)
    errors = input_errors(spec, len(x))
    tape, data_loss, dout, start = forward_loss(spec, weights, x, labels, masks)
    kinks = find_kinks(spec, tape, errors)
    # The shadow's forward is the main one while their states are equal: its backward differs from the topmost
    # kink down only, and starts there from the main backward's signal.
    top = max(kinks, default=None) if shadow is None else None
    raw, kept = backward(spec, weights, tape, dout, start, keep=top)
    loss, grads = with_penalties(spec, weights, data_loss, raw)
    stats = statistics(spec, weights, tape)
    new_weights, new_buffers = training.sgd_update(spec.training, weights, grads, main.buffers)
    new_weights.update(stats)
    new_main = State(new_weights, new_buffers)

    s_loss = loss  # the shadow's forward is the main one until their states part
    if shadow is None and top is None:
        new_shadow, s_grads = None, grads
    elif shadow is None:
        below, _ = backward(spec, weights, flipped(tape, kinks), kept, start=top + 1)
        _, s_grads = with_penalties(spec, weights, data_loss, {**raw, **below})
        # Only the tensors whose gradient the flips changed step apart; the others share the main arrays.
        changed = {name: s_grads[name] for name in below
                   if name in s_grads and not np.array_equal(s_grads[name], grads[name])}
        s_weights, s_buffers = training.sgd_update(spec.training, weights, changed, main.buffers)
        new_shadow = State({**new_weights, **{name: s_weights[name] for name in changed}},
                           {**new_buffers, **s_buffers}) if changed else None
    else:
        s_tape, s_data_loss, s_dout, _ = forward_loss(spec, shadow.weights, x, labels, masks)
        s_raw, _ = backward(spec, shadow.weights, flipped(s_tape, find_kinks(spec, s_tape, errors)), s_dout, start)
        s_loss, s_grads = with_penalties(spec, shadow.weights, s_data_loss, s_raw)
        s_weights, s_buffers = training.sgd_update(spec.training, shadow.weights, s_grads, shadow.buffers)
        s_weights.update(statistics(spec, shadow.weights, s_tape))
        new_shadow = State(s_weights, s_buffers)

    after = new_shadow or new_main
    spread = {"loss": {"loss": abs(loss - s_loss)},
              "gradient": {t: _distance(grads[t], s_grads[t]) for t in grads},
              "parameter": {t: _distance(new_weights[t], after.weights[t]) for t in trainable(spec)},
              "momentum": {t: _distance(b, after.buffers[t]) for t, b in new_buffers.items()},
              "statistic": {t: _distance(v, after.weights[t]) for t, v in stats.items()}}
    step = TrainStep(loss, data_loss, grads, {name: new_weights[name] for name in spec.param_shapes()}, new_buffers,
                     spread, {spec.layers[i].name: k.count for i, k in kinks.items()})
    return step, new_main, new_shadow
