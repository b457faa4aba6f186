"""The limits a training step is judged by: a float32 backend against the float64 reference, derived
from the rounding-error model of compare's precision profiles (compare/precision.py, docs/precision.md)
and written out in docs/training.md, where the measured errors sit beside them.

The model, in relative L2 error against the float64 reference:

- one float32 operation rounds by about ROUNDING = 0.75 u (u = 2^-24, the unit roundoff; 0.75 u is what
  precision.py measured for one rounding layer), and a float32 sum of K terms accumulates ~ROUNDING
  sqrt(K): the rounding errors of the partial sums are independent, and a sum of random-sign terms
  grows like sqrt(K) (blocked BLAS sums do better: the model is an upper estimate there);
- independent errors add in quadrature, so a tensor's expected error is sqrt(sum ROUNDING^2 K) over
  every sum it went through:
  - forward: each rounding layer's sum (conv and linear: their fan-in; batch norm's batch statistics:
    N H W; LRN: its window; softmax and the loss' logsumexp: the classes; the mean over the batch),
    up to the loss for the gradients (the backward pass starts from the loss' gradient);
  - backward, from the loss down to the tensor's layer: each rounding layer's data gradient (conv:
    filters/groups x kH x kW; linear: its outputs; batch norm: N H W);
  - the weight gradient's own reduction over the batch: N oH oW for a conv's weight and bias, N for a
    linear's, N H W for batch norm's;
  ReLU, max pooling, dropout (masks of 0 and 1/(1 - rate) = 2) and flatten select or copy: no rounding.
- the momentum buffer sums gradients (its relative error is at most theirs) and rounds once a step;
- a parameter's displacement w_k - w_0 carries its gradients' errors plus storing w in float32 after
  every step: sqrt(k/3) u ||w_k|| relative to ||w_k - w_0||, from the reference's own arrays, so a
  small displacement of a large tensor gets the room its storage needs; batch norm's running statistics
  likewise, with their batch statistics' error (variance: twice the input's relative error);
- the loss: the forward error at the loss, and for an l2 penalty x sum(w^2) a float32 sum over the
  whole tensor, weighted by the penalty's share of the loss (the reference's).

Every limit is SAFETY (compare/precision.py) times the expected error, or SPREAD_SAFETY times the float64
oracle's kink spread where that is larger: ReLU and max pooling decide by comparisons that float32 may take
the other way where the float64 margin is within its rounding error, and both results are right
(subgradients); the oracle measures how far deciding every such case the other way moves each tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...backends.precision import FP32_ROUNDING, UNIT_ROUNDOFF, float32_sums
from ...spec import ModelSpec
from ..compare.precision import SAFETY, sci

U = UNIT_ROUNDOFF["fp32"]
ROUNDING = FP32_ROUNDING
# A limit is at least this many times the oracle's kink spread (backends/reference/spread.py): the spread flips
# every ambiguous decision at once, a float32 backend a handful of them; measured on AlexNet, torch's errors
# were 0.01-0.59 of the spread (docs/training.md).
SPREAD_SAFETY = 3.0
# Steps are judged while the oracle's kink spread of the loss stays below this share of the loss: beyond it
# two equally right float64 trajectories already disagree by more than 10%, so any limit wide enough for them
# (3x: 30%) checks nothing (a diverging run: alexnet-blog-keras' loss 4 -> 42 -> 145 at batch 8).
CHAOTIC = 0.1
KINDS = ("gradient", "parameter", "momentum", "statistic")


def _var(k: int) -> float:
    """The variance of a float32 sum of k terms (0 terms: no rounding)."""
    return ROUNDING ** 2 * k if k > 0 else 0.0


def backward_order(spec: ModelSpec) -> list[tuple[str, bool]]:
    """(tensor, trainable) of every parameter tensor, last layer first: the order of the backward pass,
    in which a wrong gradient first shows."""
    return [(f"{layer.name}.{param}", p.trainable) for layer in reversed(spec.layers)
            for param, p in layer.params.items()]


@dataclass(frozen=True)
class TrainLimits:
    """Expected relative errors (without SAFETY) from the spec, the batch and the step count; the limits
    that also need the reference's values (loss with penalties, displacements) are methods."""

    steps: int
    data_loss: float
    gradient: dict[str, float]  # tensor -> expected relative L2 of its gradient
    momentum: dict[str, float]
    statistic: dict[str, float]  # non-trainable tensor (running statistics) -> its batch statistic's error
    penalty: dict[str, float]  # penalised tensor -> expected relative error of its sum of squares

    def loss_limit(self, losses: list[float], data_losses: list[float]) -> float:
        """From the reference's losses: the data loss' error and each penalty's, by its share of the loss."""
        worst_pen = max(self.penalty.values(), default=0.0)
        expected = 0.0
        for loss, data in zip(losses, data_losses):
            if loss == 0:
                continue
            share = abs(loss - data) / abs(loss)
            expected = max(expected, math.hypot(self.data_loss * abs(data) / abs(loss), worst_pen * share))
        return SAFETY * max(expected, self.data_loss)

    def displacement_limit(self, expected: float, k: int, w_norm: float, d_norm: float) -> float:
        """A displacement's limit at step k: ``expected`` (its gradient's or batch statistic's error) and
        k float32 stores of a tensor of norm ``w_norm``, relative to the displacement's ``d_norm``."""
        # A tensor that did not move was never rounded on storing: nothing to add (and it is judged exactly).
        storage = math.sqrt(k / 3) * U * w_norm / d_norm if d_norm > 0 else 0.0
        return SAFETY * math.hypot(expected, storage)

    def limit(self, kind: str, tensor: str, k: int, scale: float, w_norm: float, spread: float) -> float:
        """The limit of (step k, kind, tensor), relative to ``scale`` (the reference's norm the error is divided
        by): the float32 limit, or SPREAD_SAFETY times the oracle's kink spread when that is larger."""
        if kind == "gradient":
            base = SAFETY * self.gradient[tensor]
        elif kind == "momentum":
            base = SAFETY * self.momentum[tensor]
        else:  # a displacement: parameter or statistic
            expected = (self.gradient if kind == "parameter" else self.statistic)[tensor]
            base = self.displacement_limit(expected, k, w_norm, scale)
        return max(base, SPREAD_SAFETY * spread / scale) if scale > 0 else base


def train_limits(spec: ModelSpec, batch: int, steps: int) -> TrainLimits:
    layers = spec.layers
    lengths = [float32_sums(layer, batch) for layer in layers]
    forward = []  # variance of each layer's output
    total = 0.0
    for f, _, _ in lengths:
        total += _var(f)
        forward.append(total)
    classes = math.prod(spec.output_shape)
    at_loss = total + _var(classes) + _var(batch)  # logsumexp over the classes, mean over the batch
    gradient, momentum, statistic = {}, {}, {}
    below = at_loss  # the backward signal's variance at the current layer's output
    for i in range(len(layers) - 1, -1, -1):
        layer, (_, b, w) = layers[i], lengths[i]
        before = forward[i - 1] if i > 0 else 0.0  # the layer's input (the batch itself is exact)
        for param, p in layer.params.items():
            tensor = f"{layer.name}.{param}"
            if p.trainable:
                gradient[tensor] = math.sqrt(before + below + _var(w))
                momentum[tensor] = math.sqrt(gradient[tensor] ** 2 + steps * U ** 2)
            else:  # running statistics: the batch's mean and variance of the layer's input
                statistic[tensor] = math.sqrt(4 * before + _var(w))
        below += _var(b)
    penalty = {t: math.sqrt(_var(_size(spec, t))) for t in spec.training.penalties}
    return TrainLimits(steps, math.sqrt(at_loss), gradient, momentum, statistic, penalty)


def _size(spec: ModelSpec, tensor: str) -> int:
    layer, _, param = tensor.partition(".")
    return next(lay.params[param].size for lay in spec.layers if lay.name == layer)


def derivation() -> str:
    """The one line printed with the verdict."""
    return (f"float32 against float64: relative L2 <= {SAFETY:g} x sqrt(sum of ({sci(ROUNDING)})^2 K) over every "
            f"float32 sum of K terms the tensor went through (forward to the loss, backward to its layer, its own "
            f"reduction over the batch); displacements add sqrt(k/3) u ||w_k|| / ||w_k - w_0|| for storing w in "
            f"float32 (u {sci(U)}); at least {SPREAD_SAFETY:g} x the float64 oracle's kink spread (ReLU and max-pool "
            f"decisions within float32's error, taken the other way; docs/training.md)")
