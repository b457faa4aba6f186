"""The reference's backward pass against central finite differences in float64: every op alone through a
random projection loss sum(r * y), the cross-entropy on logits and on probabilities, and whole small specs
(every parameter, l2 penalties included). Hand cases pin what differences cannot see (max pooling's tie
rule, ReLU at 0), and planted wrong backwards show the checks fail when they should."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pytest

from alexbench.backends.reference import training
from alexbench.backends.reference.training import (
    BACKWARD,
    Saved,
    backward_layer,
    cross_entropy,
    forward_layer,
    forward_loss,
    forward_train,
    loss_and_gradients,
    penalties,
)
from alexbench.spec import canonical_weights, parse_spec
from alexbench.spec.training import TrainingSpec
from tests.backends.reference.test_backend import make_spec

EPS = 1e-6
LIMIT = 1e-7  # relative L2 error of the analytic gradient against the central differences
BATCH = 2


def central_differences(f: Callable[[], float], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """d f / d every element of every array, each nudged by +-EPS in place (f reads the arrays)."""
    numeric = {}
    for name, a in arrays.items():
        g = np.empty_like(a)
        for i in np.ndindex(a.shape):
            keep = a[i]
            a[i] = keep + EPS
            up = f()
            a[i] = keep - EPS
            down = f()
            a[i] = keep
            g[i] = (up - down) / (2 * EPS)
        numeric[name] = g
    return numeric


def relative_errors(analytic: dict[str, np.ndarray], numeric: dict[str, np.ndarray]) -> dict[str, float]:
    assert set(analytic) == set(numeric)
    return {k: float(np.linalg.norm(analytic[k] - numeric[k]) / max(np.linalg.norm(numeric[k]), 1e-300))
            for k in numeric}


def assert_close(errors: dict[str, float], what: str) -> None:
    bad = {k: f"{e:.2e}" for k, e in errors.items() if not e < LIMIT}
    assert not bad, f"{what}: gradient off the finite differences by more than {LIMIT:g}: {bad}"


# Each case: the input (C, H, W) and the layers; the LAST layer's backward is checked, on an input of its
# own input shape. N = 2 and C != H != W throughout.
OP_CASES = {
    "conv2d-grouped-strided-asym": ((4, 7, 5), [{"op": "conv2d", "filters": 6, "kernel": [3, 2], "stride": [2, 1],
                                                 "padding": [1, 0, 2, 1], "groups": 2}]),
    "conv2d-no-bias": ((3, 7, 5), [{"op": "conv2d", "filters": 6, "kernel": [2, 3], "stride": 2,
                                    "padding": [0, 1, 1, 0], "groups": 3, "bias": False}]),
    "relu": ((3, 7, 5), [{"op": "relu"}]),
    "lrn-3": ((6, 7, 5), [{"op": "lrn", "size": 3, "alpha": 0.5, "beta": 0.75, "k": 1.5}]),
    "lrn-5": ((6, 7, 5), [{"op": "lrn", "size": 5, "alpha": 0.9, "beta": 0.6, "k": 2.0}]),
    "lrn-5-over-3-channels": ((3, 7, 5), [{"op": "lrn", "size": 5, "alpha": 0.9, "beta": 1.0, "k": 1.0}]),
    "maxpool2d-floor-overlapping": ((3, 7, 5), [{"op": "maxpool2d", "kernel": 3, "stride": 2}]),
    "maxpool2d-ceil-padded": ((3, 8, 5), [{"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1,
                                           "ceil_mode": True}]),
    "maxpool2d-ceil-asym": ((3, 9, 8), [{"op": "maxpool2d", "kernel": [3, 2], "stride": [2, 3],
                                         "padding": [1, 0, 1, 1], "ceil_mode": True}]),
    "avgpool2d-padded": ((3, 7, 5), [{"op": "avgpool2d", "kernel": 3, "stride": 2, "padding": [1, 0, 1, 1]}]),
    "adaptive_avgpool2d-non-divisible": ((3, 7, 5), [{"op": "adaptive_avgpool2d", "output": [3, 2]}]),
    "batchnorm2d-training": ((3, 7, 5), [{"op": "batchnorm2d", "eps": 1e-3, "init": {
        "weight": {"dist": "normal", "mean": 1, "std": 0.3}, "bias": {"dist": "normal", "std": 0.5}}}]),
    "dropout": ((3, 7, 5), [{"op": "dropout", "rate": 0.25}]),
    "flatten": ((3, 7, 5), [{"op": "flatten"}]),
    "linear": ((3, 2, 4), [{"op": "flatten"}, {"op": "linear", "units": 5}]),
    "linear-no-bias": ((3, 2, 4), [{"op": "flatten"}, {"op": "linear", "units": 5, "bias": False}]),
    "softmax-channels": ((4, 3, 5), [{"op": "softmax"}]),
    "softmax-features": ((3, 2, 4), [{"op": "flatten"}, {"op": "softmax"}]),
}


def op_case(case: str, seed: int = 0):
    """(the checked layer, its float64 weights, an input, the projection r, dropout masks)."""
    input_chw, layers = OP_CASES[case]
    spec = make_spec(input_chw, *layers)
    layer = spec.layers[-1]
    rng = np.random.default_rng(seed)
    weights = {k: v.astype(np.float64) for k, v in canonical_weights(spec, seed=seed + 1).items()}
    x = rng.standard_normal((BATCH, *layer.input_shape)) - 0.5  # mostly negative: -inf padding must not win
    if layer.op == "relu":
        x = np.sign(x) * (0.1 + np.abs(x))  # away from the kink
    masks = {layer.name: (rng.random(x.shape) >= 0.25).astype(np.float64)} if layer.op == "dropout" else {}
    r = rng.standard_normal((BATCH, *layer.output_shape))
    return layer, weights, x, r, masks


def op_gradient_errors(case: str) -> dict[str, float]:
    """The relative error of d sum(r * y) / d (input, each trainable parameter) of the case's layer."""
    layer, weights, x, r, masks = op_case(case)
    dx, grads = backward_layer(layer, r, weights, forward_layer(layer, x, weights, masks))
    trainable = {f"{layer.name}.{p}": weights[f"{layer.name}.{p}"] for p, param in layer.params.items()
                 if param.trainable}
    numeric = central_differences(lambda: float(np.sum(r * forward_layer(layer, x, weights, masks).y)),
                                  {"input": x, **trainable})
    return relative_errors({"input": dx, **grads}, numeric)


@pytest.mark.parametrize("case", list(OP_CASES))
def test_op_backward_matches_finite_differences(case, record_property):
    errors = op_gradient_errors(case)
    record_property("worst_rel_err", max(errors.values()))
    assert_close(errors, case)


def test_cases_cover_every_backward():
    assert {layers[-1]["op"] for _, layers in OP_CASES.values()} == set(BACKWARD)


# ---------------------------------------------------------------- the loss

def test_cross_entropy_gradient():
    rng = np.random.default_rng(3)
    labels = np.array([2, 0, 4])
    logits = rng.standard_normal((3, 5))
    _, dlogits = cross_entropy(logits, labels)
    numeric = central_differences(lambda: cross_entropy(logits, labels)[0], {"logits": logits})
    assert_close(relative_errors({"logits": dlogits}, numeric), "cross-entropy")


def test_cross_entropy_values():
    # Logits [0, log 3] for label 1: logsumexp = log 4, loss = log 4 - log 3, which is -log p[1] for p = [1/4, 3/4].
    logits = np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]])  # the second row would overflow unshifted
    loss, _ = cross_entropy(logits, np.array([1, 0]))
    assert loss == pytest.approx((np.log(4 / 3) + np.log(2)) / 2, rel=1e-15)


def test_a_softmax_network_reads_its_loss_from_the_softmax_input_so_it_never_underflows():
    # The label's probability exp(-800) underflows to 0 even in float64: -log p would be inf, the loss is 800.
    spec = parse_spec(SOFTMAX_ONLY, file="softmax.yaml")
    x = np.array([[[[0.0]], [[800.0]]]])
    tape, loss, dlogits, start = forward_loss(spec, {}, x, np.array([0]), {})
    assert tape[-1].y[0, 0] == 0.0 and loss == pytest.approx(800.0, rel=1e-15)
    assert start == 1 and dlogits.tolist() == [[-1.0, 1.0]]  # p - onehot: the softmax's backward is skipped


SOFTMAX_ONLY = """
name: softmax-only
input: [2, 1, 1]
layers:
  - {name: flatten, op: flatten}
  - {name: softmax, op: softmax}
"""


# ---------------------------------------------------------------- whole specs

WHOLE_SPEC = """
name: train-small
input: [3, 9, 7]
init:
  weight: {dist: normal, std: 0.4}
  bias: {dist: normal, std: 0.2}
layers:
  # No bias before batch norm: its gradient is exactly 0 there, which a relative error cannot judge.
  - {name: conv1, op: conv2d, filters: 4, kernel: 3, padding: [1, 0, 1, 1], bias: false}
  - name: bn1
    op: batchnorm2d
    eps: 1.0e-3
    init: {weight: {dist: normal, mean: 1, std: 0.2}, bias: {dist: normal, std: 0.3}}
  - {name: relu1, op: relu}
  - {name: norm1, op: lrn, size: 3, alpha: 0.4, beta: 0.75, k: 1.5}
  - {name: pool1, op: maxpool2d, kernel: 3, stride: 2, padding: 1, ceil_mode: true}
  - {name: conv2, op: conv2d, filters: 6, kernel: 2, groups: 2, bias: false}
  - {name: pool2, op: avgpool2d, kernel: 2, stride: 1, padding: [0, 1, 1, 0]}
  - {name: adapt, op: adaptive_avgpool2d, output: [1, 3]}
  - {name: flatten, op: flatten}
  - {name: drop, op: dropout, rate: 0.4}
  - {name: fc1, op: linear, units: 5}
  - {name: softmax, op: softmax}
"""
PENALTIES = {"conv1.weight": 0.01, "bn1.bias": 0.02, "conv2.weight": 0.05, "fc1.bias": 0.03}


def whole_spec(loss_on: str):
    spec = parse_spec(WHOLE_SPEC)
    if loss_on == "logits":
        spec = dataclasses.replace(spec, layers=spec.layers[:-1])
    return dataclasses.replace(spec, training=TrainingSpec(penalties=PENALTIES))


def whole_spec_errors(loss_on: str) -> dict[str, float]:
    spec = whole_spec(loss_on)
    assert spec.loss_on == loss_on
    rng = np.random.default_rng(5)
    weights = {k: v.astype(np.float64) for k, v in canonical_weights(spec, seed=4).items()}
    x = rng.standard_normal((BATCH, *spec.input_shape))
    labels = np.array([3, 1])
    masks = {"drop": (rng.random((BATCH, *spec.layer("drop").input_shape)) >= 0.4).astype(np.float64)}
    result = loss_and_gradients(spec, weights, x, labels, masks)
    assert list(result.grads) == [k for k in spec.param_shapes() if "running" not in k]

    def loss() -> float:  # forward only, the loss written out independently: the differences need no backward
        out = forward_train(spec, weights, x, masks)[-1].y
        picked = out[np.arange(len(labels)), labels]
        data = -np.log(picked) if loss_on == "probabilities" else np.log(np.exp(out).sum(axis=1)) - picked
        return float(np.mean(data)) + penalties(spec, weights)[0]

    assert loss() == result.loss
    numeric = central_differences(loss, {k: weights[k] for k in result.grads})
    return relative_errors(result.grads, numeric)


@pytest.mark.parametrize("loss_on", ["logits", "probabilities"])
def test_whole_spec_gradients_with_penalties(loss_on):
    assert_close(whole_spec_errors(loss_on), f"spec ending in {loss_on}")


def test_penalties_enter_the_loss():
    spec = whole_spec("logits")
    weights = {k: v.astype(np.float64) for k, v in canonical_weights(spec, seed=4).items()}
    x = np.random.default_rng(5).standard_normal((BATCH, *spec.input_shape))
    masks = {"drop": np.ones((BATCH, *spec.layer("drop").input_shape))}
    result = loss_and_gradients(spec, weights, x, np.array([3, 1]), masks)
    penalty = sum(factor * np.sum(weights[name] ** 2) for name, factor in PENALTIES.items())
    assert result.loss - result.data_loss == pytest.approx(penalty, rel=1e-12)
    bare = loss_and_gradients(dataclasses.replace(spec, training=TrainingSpec()), weights, x, np.array([3, 1]), masks)
    for name, factor in PENALTIES.items():
        np.testing.assert_allclose(result.grads[name] - bare.grads[name], 2 * factor * weights[name], rtol=1e-12)


# ---------------------------------------------------------------- what differences cannot see

def _hand_backward(op_layer: dict, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    layer = make_spec(x.shape[1:], {"name": "l0", **op_layer}).layers[0]
    return BACKWARD[layer.op](dy, layer, {}, Saved(x, np.zeros_like(dy)))[0]


def test_maxpool_ties_go_to_the_first_maximum():
    # All-equal 3x4 input, 2x2 windows at stride 1: window (i, j)'s first cell in row-major order is (i, j).
    dx = _hand_backward({"op": "maxpool2d", "kernel": 2, "stride": 1}, np.ones((1, 1, 3, 4)),
                        np.arange(1.0, 7.0).reshape(1, 1, 2, 3))
    np.testing.assert_array_equal(dx, [[[[1, 2, 3, 0], [4, 5, 6, 0], [0, 0, 0, 0]]]])


def test_maxpool_partial_tie_and_padding():
    # Row [2, 5, 5, 1] padded by 1 with -inf, kernel 3 stride 2: windows {pad, 2, 5} and {5, 5, 1}; the first
    # 5 wins both and takes both gradients, and the -inf pad never wins.
    dx = _hand_backward({"op": "maxpool2d", "kernel": [1, 3], "stride": [1, 2], "padding": [0, 0, 1, 1]},
                        np.array([[[[2.0, 5.0, 5.0, 1.0]]]]), np.array([[[[10.0, 1.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0, 11, 0, 0]]]])


def test_relu_gradient_is_zero_at_zero():
    dx = _hand_backward({"op": "relu"}, np.array([[[[-1.0, 0.0, 2.0]]]]), np.array([[[[5.0, 6.0, 7.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0, 0, 7]]]])


# ---------------------------------------------------------------- planted wrong backwards

def _shifted_window_sum(v, size):
    """LRN's channel window one channel off (as an even-size or off-by-one port would have it)."""
    half = (size - 1) // 2
    padded = np.pad(v, ((0, 0), (half + 1, max(half - 1, 0)), (0, 0), (0, 0)))
    return np.lib.stride_tricks.sliding_window_view(padded, size, axis=1).sum(axis=-1)[:, : v.shape[1]]


def _batchnorm_statistics_constant(dy, layer, p, saved):
    """Batch norm's backward as if mean and variance did not depend on x (the inference form)."""
    _, grads = training.batchnorm2d_backward(dy, layer, p, saved)
    return dy * (p["weight"] * saved.extra["inv_std"])[None, :, None, None], grads


def _maxpool_last_max(xpad, offsets):
    best = xpad[(..., *offsets[0][2])]
    chosen = np.zeros(best.shape, dtype=np.intp)
    for k, (_, _, window) in enumerate(offsets[1:], start=1):
        candidate = xpad[(..., *window)]
        chosen[candidate >= best] = k
        best = np.maximum(candidate, best)
    return chosen


def _backward(op, handler):
    return lambda mp: mp.setitem(BACKWARD, op, handler)


def _op_check(case):
    return lambda: assert_close(op_gradient_errors(case), case)


# bug -> (how to plant it, the check that must then fail)
PLANTED = {
    # The forward (forward.py) keeps its own window: only the backward's is shifted.
    "LRN backward window shifted by one channel": (
        lambda mp: mp.setattr(training, "channel_window_sum", _shifted_window_sum), _op_check("lrn-5")),
    "batch norm backward ignores the batch statistics": (
        _backward("batchnorm2d", _batchnorm_statistics_constant), _op_check("batchnorm2d-training")),
    "dropout backward without 1 / (1 - rate)": (
        _backward("dropout", lambda dy, layer, p, saved: (dy * saved.extra["mask"], {})), _op_check("dropout")),
    "softmax backward without the normalisation term": (
        _backward("softmax", lambda dy, layer, p, saved: (dy * saved.y, {})), _op_check("softmax-channels")),
    "conv backward with a flipped kernel": (
        _backward("conv2d", lambda dy, layer, p, saved: training.conv2d_backward(
            dy, layer, {**p, "weight": p["weight"][:, :, ::-1, ::-1]}, saved)),
        _op_check("conv2d-grouped-strided-asym")),
    "max pool gradient to the last maximum of a tie": (
        lambda mp: mp.setattr(training, "first_max_offset", _maxpool_last_max),
        test_maxpool_ties_go_to_the_first_maximum),
    "ReLU gradient 1 at 0": (
        _backward("relu", lambda dy, layer, p, saved: (dy * (saved.x >= 0), {})), test_relu_gradient_is_zero_at_zero),
    "l2 penalty gradient x * w instead of 2x * w": (
        lambda mp: mp.setattr(training, "penalties", lambda spec, weights: (
            penalties(spec, weights)[0], {k: g / 2 for k, g in penalties(spec, weights)[1].items()})),
        lambda: assert_close(whole_spec_errors("logits"), "whole spec")),
}


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_backward_is_caught(bug, monkeypatch):
    plant, check = PLANTED[bug]
    plant(monkeypatch)
    with pytest.raises(AssertionError):
        check()
