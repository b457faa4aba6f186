"""The reference's training step in float64 NumPy: the oracle `compare --train` judges backends against.

One step (semantics in spec/training.py, PyTorch's where frameworks differ):

    forward in training mode, keeping what each backward reads (``Saved``): batch norm normalises with the
        batch statistics and updates its running ones, dropout applies the harness' keep mask; every other
        op is its inference handler (forward.py)
    loss: cross-entropy on the logits (when the network ends in softmax, -log p[label] computed from the
        softmax's input), plus the spec's l2 penalties
    backward: one handler per op in ``BACKWARD``, the derivative of the formula in spec/ops.py
    SGD: coupled weight decay, PyTorch's momentum buffer, nesterov

Windowed ops go backward as a loop over the kH*kW kernel offsets, each adding one strided slice of the
padded input's gradient: vectorised, and never a scatter (np.add.at) over big arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ...spec import Layer, ModelSpec
from ...spec.ops import adaptive_bins, floor_mode_padding
from ...spec.training import TrainingSpec
from ..base import TrainStep, Weights
from ..training_inputs import check_training_batch
from .forward import (
    Params,
    channel_window_sum,
    check_input,
    check_weights,
    im2col,
    layer_params,
    pad,
    run_layer,
    windows,
)


@dataclass
class Saved:
    """What a layer's backward reads: its input, its output and op-specific values."""

    x: np.ndarray
    y: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


# (d loss / d output, layer, its float64 parameters, what its forward saved) -> (d loss / d input, d loss / d param)
Backward = Callable[[np.ndarray, Layer, Params, Saved], tuple[np.ndarray, Params]]


# ---------------------------------------------------------------- training-mode forward

def batchnorm2d_train(x: np.ndarray, layer: Layer, p: Params) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Normalise with the batch's mean and BIASED variance over (N, H, W)."""
    mean = x.mean(axis=(0, 2, 3))
    var = ((x - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
    inv_std = 1.0 / np.sqrt(var + layer.attrs["eps"])
    xhat = (x - mean[None, :, None, None]) * inv_std[None, :, None, None]
    y = xhat * p["weight"][None, :, None, None] + p["bias"][None, :, None, None]
    return y, {"xhat": xhat, "inv_std": inv_std, "mean": mean, "var": var}


def running_statistics(layer: Layer, p: Params, saved: Saved) -> Params:
    """Torch's update: new = (1 - m) old + m batch, the variance made unbiased by n / (n - 1), n = N*H*W."""
    n = saved.x.size // saved.x.shape[1]
    m = layer.attrs["momentum"]
    return {"running_mean": (1 - m) * p["running_mean"] + m * saved.extra["mean"],
            "running_var": (1 - m) * p["running_var"] + m * saved.extra["var"] * n / (n - 1)}


def forward_layer(layer: Layer, x: np.ndarray, weights: Weights, masks: dict[str, np.ndarray]) -> Saved:
    """One layer in training mode on a float64 batch (masks: checked keep masks by dropout layer)."""
    if layer.op == "batchnorm2d":
        y, extra = batchnorm2d_train(x, layer, layer_params(layer, weights))
        return Saved(x, y, extra)
    if layer.op == "dropout":
        mask = masks[layer.name]
        return Saved(x, x * mask / (1.0 - layer.attrs["rate"]), {"mask": mask})
    return Saved(x, run_layer(layer, x, weights))


# ---------------------------------------------------------------- backward, one per op

def kernel_offsets(kernel: tuple[int, int], stride: tuple[int, int],
             out_hw: tuple[int, int]) -> Iterator[tuple[int, int, tuple[slice, slice]]]:
    """For each kernel offset (u, v), row-major: the (rows, columns) of the padded input that offset
    reads in every window, as strided slices (window (i, j) reads xpad[i*sH + u, j*sW + v])."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    for u in range(kh):
        for v in range(kw):
            yield u, v, (slice(u, u + (oh - 1) * sh + 1, sh), slice(v, v + (ow - 1) * sw + 1, sw))


def _unpad(dxpad: np.ndarray, padding: tuple[int, int, int, int], hw: tuple[int, int]) -> np.ndarray:
    """The gradient of the real cells (what landed on padding is dropped)."""
    top, _, left, _ = padding
    return dxpad[:, :, top : top + hw[0], left : left + hw[1]]


def conv2d_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    a = layer.attrs
    groups, (kh, kw) = a["groups"], a["kernel"]
    n, c, h, w = saved.x.shape
    oh, ow = dy.shape[2:]
    cg, og = c // groups, a["filters"] // groups
    xpad = pad(saved.x, a["padding"], 0.0)
    win = windows(xpad, a["kernel"], a["stride"], (oh, ow))
    dxpad = np.zeros_like(xpad)
    dw = np.empty_like(p["weight"])
    for g in range(groups):
        out_g, in_g = slice(g * og, (g + 1) * og), slice(g * cg, (g + 1) * cg)
        dy_g = dy[:, out_g].transpose(0, 2, 3, 1).reshape(n * oh * ow, og)  # rows (n, i, j), like im2col's
        # (cols^T dy)^T rather than dy^T cols: the same numbers, and OpenBLAS is ~2x faster at this shape.
        dw[out_g] = (im2col(win[:, in_g]).T @ dy_g).T.reshape(og, cg, kh, kw)
        # Every window's input gradient, offset-major so each offset's (cg, n, oH, oW) block is contiguous,
        # then each kernel offset adds its block to the strided slice of the input it read.
        w_g = p["weight"][out_g].transpose(2, 3, 1, 0).reshape(kh * kw * cg, og)
        dcols = (w_g @ dy_g.T).reshape(kh, kw, cg, n, oh, ow)
        for u, v, (rows, cols) in kernel_offsets(a["kernel"], a["stride"], (oh, ow)):
            dxpad[:, in_g, rows, cols] += dcols[u, v].transpose(1, 0, 2, 3)
    grads = {"weight": dw}
    if "bias" in p:
        grads["bias"] = dy.sum(axis=(0, 2, 3))
    return _unpad(dxpad, a["padding"], (h, w)), grads


def relu_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    # torch's rule: 0 at x == 0. A shadow step (spread.py) passes its own choice at the kinks as "passes".
    passes = saved.extra["passes"] if "passes" in saved.extra else saved.x > 0
    return dy * passes, {}


def lrn_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    # y_c = x_c s_c^-beta, s_c = k + alpha/size * sum_{c' in W(c)} x_c'^2. x_j enters s_c for every c whose
    # window holds j, and c is in W(j) exactly when j is in W(c): the backward sum is the same window sum.
    a = layer.attrs
    x, size, beta = saved.x, a["size"], a["beta"]
    s = a["k"] + a["alpha"] / size * channel_window_sum(x * x, size)
    through_s = channel_window_sum(dy * x * s ** (-beta - 1), size)
    return dy * s**-beta - 2.0 * beta * a["alpha"] / size * x * through_s, {}


def first_max_offset(xpad: np.ndarray, offsets: list[tuple[int, int, tuple[slice, slice]]]) -> np.ndarray:
    """Per window, the index in ``offsets`` of its FIRST maximum in row-major (kH, kW) order (torch's and
    TF's tie rule): a later cell takes over only when strictly greater."""
    best = xpad[(..., *offsets[0][2])]
    first = np.zeros(best.shape, dtype=np.intp)
    for k, (_, _, window) in enumerate(offsets[1:], start=1):
        candidate = xpad[(..., *window)]
        greater = candidate > best
        best = np.where(greater, candidate, best)
        first[greater] = k
    return first


def maxpool2d_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    a = layer.attrs
    padding = floor_mode_padding(a, layer.input_shape)  # the forward's -inf padding (ceil mode included)
    xpad = pad(saved.x, padding, -np.inf)
    offsets = list(kernel_offsets(a["kernel"], a["stride"], dy.shape[2:]))
    # Each window's gradient goes to its first maximum; a shadow step (spread.py) gives its own "route".
    route = saved.extra["route"] if "route" in saved.extra else first_max_offset(xpad, offsets)
    dxpad = np.zeros_like(xpad)
    for k, (_, _, (rows, cols)) in enumerate(offsets):  # overlapping windows accumulate
        dxpad[:, :, rows, cols] += np.where(route == k, dy, 0.0)
    return _unpad(dxpad, padding, saved.x.shape[2:]), {}


def avgpool2d_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    a = layer.attrs
    kh, kw = a["kernel"]
    dxpad = np.zeros_like(pad(saved.x, a["padding"], 0.0))
    share = dy / (kh * kw)  # padded zeros count in the divisor
    for _, _, (rows, cols) in kernel_offsets(a["kernel"], a["stride"], dy.shape[2:]):
        dxpad[:, :, rows, cols] += share
    return _unpad(dxpad, a["padding"], saved.x.shape[2:]), {}


def adaptive_avgpool2d_backward(dy: np.ndarray, layer: Layer, p: Params,
                                saved: Saved) -> tuple[np.ndarray, Params]:
    h, w = saved.x.shape[2:]
    oh, ow = dy.shape[2:]
    dx = np.zeros_like(saved.x)
    for i, (h0, h1) in enumerate(adaptive_bins(h, oh)):
        for j, (w0, w1) in enumerate(adaptive_bins(w, ow)):  # overlapping bins accumulate
            dx[:, :, h0:h1, w0:w1] += dy[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
    return dx, {}


def batchnorm2d_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    # Through the batch statistics too: dx = gamma / sigma / n * (n dy - sum dy - xhat sum(dy xhat)).
    xhat, inv_std = saved.extra["xhat"], saved.extra["inv_std"]
    n = dy.size // dy.shape[1]
    dbeta = dy.sum(axis=(0, 2, 3))
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    scale = (p["weight"] * inv_std / n)[None, :, None, None]
    dx = scale * (n * dy - dbeta[None, :, None, None] - xhat * dgamma[None, :, None, None])
    return dx, {"weight": dgamma, "bias": dbeta}


def dropout_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    return dy * saved.extra["mask"] / (1.0 - layer.attrs["rate"]), {}


def flatten_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    return dy.reshape(saved.x.shape), {}


def linear_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    grads = {"weight": dy.T @ saved.x}
    if "bias" in p:
        grads["bias"] = dy.sum(axis=0)
    return dy @ p["weight"], grads


def softmax_backward(dy: np.ndarray, layer: Layer, p: Params, saved: Saved) -> tuple[np.ndarray, Params]:
    y = saved.y
    return y * (dy - (dy * y).sum(axis=1, keepdims=True)), {}


BACKWARD: dict[str, Backward] = {f.__name__[: -len("_backward")]: f for f in (
    conv2d_backward, relu_backward, lrn_backward, maxpool2d_backward, avgpool2d_backward,
    adaptive_avgpool2d_backward, batchnorm2d_backward, dropout_backward, flatten_backward, linear_backward,
    softmax_backward)}


def backward_layer(layer: Layer, dy: np.ndarray, weights: Weights, saved: Saved) -> tuple[np.ndarray, Params]:
    """One layer's backward; parameter gradients keyed by canonical name."""
    dx, grads = BACKWARD[layer.op](dy, layer, layer_params(layer, weights), saved)
    return dx, {f"{layer.name}.{p}": g for p, g in grads.items()}


# ---------------------------------------------------------------- loss

def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean cross-entropy logsumexp(z) - z[label], its gradient with respect to the logits ``z``)."""
    n = len(labels)
    rows = np.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1))
    loss = float(np.mean(log_sum - shifted[rows, labels]))
    dlogits = np.exp(shifted - log_sum[:, None])
    dlogits[rows, labels] -= 1.0
    return loss, dlogits / n


# ---------------------------------------------------------------- one step

@dataclass
class Gradients:
    loss: float  # data loss + penalties
    data_loss: float
    grads: dict[str, np.ndarray]  # every trainable tensor, spec order, penalties included
    statistics: dict[str, np.ndarray]  # batch norm's running statistics after this forward


def trainable(spec: ModelSpec) -> list[str]:
    return [f"{layer.name}.{p}" for layer in spec.layers for p, param in layer.params.items() if param.trainable]


def forward_train(spec: ModelSpec, weights: Weights, x: np.ndarray, masks: dict[str, np.ndarray]) -> list[Saved]:
    """Every layer in training mode, in spec order (inputs already checked, float64)."""
    tape: list[Saved] = []
    y = x
    for layer in spec.layers:
        tape.append(forward_layer(layer, y, weights, masks))
        y = tape[-1].y
    return tape


def penalties(spec: ModelSpec, weights: Weights) -> tuple[float, dict[str, np.ndarray]]:
    """The spec's l2 penalties: (sum of x * sum(w^2), their gradients 2x * w by tensor)."""
    total, grads = 0.0, {}
    for name, factor in spec.training.penalties.items():
        w = np.asarray(weights[name], dtype=np.float64)
        total += factor * float(np.sum(w * w))
        grads[name] = 2.0 * factor * w
    return total, grads


def forward_loss(spec: ModelSpec, weights: Weights, x: np.ndarray, labels: np.ndarray,
                 masks: dict[str, np.ndarray]) -> tuple[list[Saved], float, np.ndarray, int]:
    """The training forward's tape, the data loss, its gradient with respect to the logits, and where the
    backward starts (``backward``'s ``start``). A network ending in softmax has the loss -log p[label]
    computed from the softmax's input as logsumexp(z) - z[label]: the same function, which even float64
    cannot underflow to -log 0 once a run diverges; the softmax's own backward is then skipped."""
    tape = forward_train(spec, weights, x, masks)
    if spec.loss_on == "probabilities":
        logits = tape[-2].y if len(tape) > 1 else x
        data_loss, dlogits = cross_entropy(logits, labels)
        return tape, data_loss, dlogits, len(spec.layers) - 1
    data_loss, dlogits = cross_entropy(tape[-1].y, labels)
    return tape, data_loss, dlogits, len(spec.layers)


def backward(spec: ModelSpec, weights: Weights, tape: list[Saved], dy: np.ndarray, start: int | None = None,
             keep: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Backward through layers ``start - 1`` down to 0 (all of them by default), ``dy`` being d loss / d the
    output of layer ``start - 1``: (the data loss' gradient of their tensors, d loss / d the output of layer
    ``keep`` as it passed, or None)."""
    start = len(spec.layers) if start is None else start
    grads: dict[str, np.ndarray] = {}
    kept = None
    for i in range(start - 1, -1, -1):
        if i == keep:
            kept = dy
        dy, layer_grads = backward_layer(spec.layers[i], dy, weights, tape[i])
        grads.update(layer_grads)
    return grads, kept


def statistics(spec: ModelSpec, weights: Weights, tape: list[Saved]) -> dict[str, np.ndarray]:
    """Batch norm's running statistics after this forward, by canonical name."""
    found: dict[str, np.ndarray] = {}
    for layer, saved in zip(spec.layers, tape):
        if layer.op == "batchnorm2d":
            found.update({f"{layer.name}.{k}": v for k, v in
                          running_statistics(layer, layer_params(layer, weights), saved).items()})
    return found


def with_penalties(spec: ModelSpec, weights: Weights, data_loss: float,
                   grads: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
    """(the loss, every trainable tensor's gradient in spec order) once the l2 penalties join the data loss."""
    penalty, penalty_grads = penalties(spec, weights)
    grads = {**grads, **{name: grads[name] + g for name, g in penalty_grads.items()}}
    return data_loss + penalty, {name: grads[name] for name in trainable(spec)}


def loss_and_gradients(spec: ModelSpec, weights: Weights, x: np.ndarray, labels: np.ndarray,
                       masks: dict[str, np.ndarray]) -> Gradients:
    """Forward in training mode, the loss, and every trainable tensor's gradient (inputs already checked,
    float64: see ``prepare_step``)."""
    tape, data_loss, dout, start = forward_loss(spec, weights, x, labels, masks)
    loss, grads = with_penalties(spec, weights, data_loss, backward(spec, weights, tape, dout, start)[0])
    return Gradients(loss, data_loss, grads, statistics(spec, weights, tape))


# Values per block of the SGD update: 2 MiB of float64, so its temporaries stay in cache (fc6 alone is 38M values,
# and every whole-tensor temporary would be another pass over memory).
BLOCK = 1 << 18


def sgd_update(training: TrainingSpec, weights: Weights, grads: dict[str, np.ndarray],
               buffers: dict[str, np.ndarray]) -> tuple[Weights, dict[str, np.ndarray]]:
    """PyTorch's SGD: d = g + wd w; b = mu b + d; w -= lr (d + mu b if nesterov else b). Buffers start at
    zero, so b = d on the first step; momentum 0 keeps no buffer and steps by d. Fresh arrays: the inputs are
    left as they are."""
    lr, mu, wd = training.learning_rate, training.momentum, training.weight_decay
    new_weights, new_buffers = dict(weights), {}
    for name, g in grads.items():
        w = np.ascontiguousarray(weights[name], dtype=np.float64).reshape(-1)
        g = np.ascontiguousarray(g, dtype=np.float64).reshape(-1)
        new_w = np.empty_like(w)
        new_weights[name] = new_w.reshape(np.shape(weights[name]))
        if mu:
            b_old = np.ascontiguousarray(buffers[name], dtype=np.float64).reshape(-1)
            new_b = np.empty_like(w)
            new_buffers[name] = new_b.reshape(np.shape(weights[name]))
        for start in range(0, w.size, BLOCK):
            part = slice(start, start + BLOCK)
            d = w[part] * wd
            d += g[part]  # d = g + wd w
            step = d
            if mu:
                b = new_b[part]
                np.multiply(b_old[part], mu, out=b)
                b += d  # b = mu b + d
                if training.nesterov:
                    d += mu * b  # step = d + mu b
                else:
                    step = b
            np.multiply(step, -lr, out=new_w[part])
            new_w[part] += w[part]  # w - lr step
    return new_weights, new_buffers


def zero_buffers(spec: ModelSpec) -> dict[str, np.ndarray]:
    """The momentum buffers before the first step: zeros per trainable tensor, none when momentum is 0."""
    if not spec.training.momentum:
        return {}
    shapes = spec.param_shapes()
    return {name: np.zeros(shapes[name]) for name in trainable(spec)}


def prepare_step(spec: ModelSpec, weights: Weights, x: np.ndarray, labels: np.ndarray,
                 masks: dict[str, np.ndarray]) -> tuple[Weights, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Weights, x, labels and masks checked against the spec (one-line errors); weights, x and masks as float64,
    labels as int64, once, not per use."""
    check_weights(spec, weights)
    x = check_input(spec, x)
    labels, masks = check_training_batch("reference", spec, len(x), labels, masks)
    return ({name: np.asarray(w, dtype=np.float64) for name, w in weights.items()}, x, labels,
            {name: np.asarray(mask, dtype=np.float64) for name, mask in masks.items()})


def reference_train_step(spec: ModelSpec, weights: Weights, buffers: dict[str, np.ndarray], x: np.ndarray,
                         labels: np.ndarray, masks: dict[str, np.ndarray],
                         readout: bool = True) -> tuple[TrainStep, Weights, dict[str, np.ndarray]]:
    """One SGD step: (the step as a backend reports it, the weights after it, the momentum buffers after it).
    ``buffers``: from ``zero_buffers`` before the first step, then what the previous step returned. No spread:
    the backend's steps with readout add it (spread.py)."""
    weights, x, labels, masks = prepare_step(spec, weights, x, labels, masks)
    result = loss_and_gradients(spec, weights, x, labels, masks)
    new_weights, new_buffers = sgd_update(spec.training, weights, result.grads, buffers)
    new_weights.update(result.statistics)
    if not readout:
        return TrainStep(result.loss, result.data_loss), new_weights, new_buffers
    params = {name: new_weights[name] for name in spec.param_shapes()}
    return TrainStep(result.loss, result.data_loss, result.grads, params, new_buffers), new_weights, new_buffers
