"""The reference's spread at kinks (backends/reference/spread.py) on hand cases: a max-pool near-tie and a ReLU
input at 1e-10 are ambiguous and move the gradients exactly as deciding them the other way by hand does, a clear
margin is not ambiguous, the threshold sits where its derivation puts it, and the shadow's difference carries on
into the parameters and momentum of later steps. A planted shadow that flips nothing is caught."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from alexbench.backends.precision import FP32_ROUNDING
from alexbench.backends.reference import spread, training
from alexbench.backends.reference.spread import KINK_SIGMAS, input_errors
from alexbench.backends.reference.training import reference_train_step, zero_buffers
from alexbench.spec.training import TrainingSpec
from tests.backends.reference.test_backend import make_spec
from tests.backends.reference.test_training import trained

SETTINGS = TrainingSpec(learning_rate=0.1, momentum=0.9, weight_decay=0.01)
LABELS = np.array([0])


def pool_case(gap: float):
    """conv 1x1 (x0 + x1) -> 2x2 max pool (one window) -> linear. The window's cells are 1 (from channel 0),
    1 + gap (channel 1), 0.25 and 0.5: the first maximum is cell (0, 1), the runner-up cell (0, 0)."""
    spec = make_spec((2, 2, 2), {"name": "conv", "op": "conv2d", "filters": 1, "kernel": 1},
                     {"name": "pool", "op": "maxpool2d", "kernel": 2, "stride": 2},
                     {"name": "flat", "op": "flatten"}, {"name": "fc", "op": "linear", "units": 2})
    spec = dataclasses.replace(spec, training=SETTINGS)
    weights = {"conv.weight": np.ones((1, 2, 1, 1)), "conv.bias": np.zeros(1),
               "fc.weight": np.array([[1.0], [-1.0]]), "fc.bias": np.zeros(2)}
    x = np.array([[[[1.0, 0.0], [0.25, 0.0]], [[0.0, 1.0 + gap], [0.0, 0.5]]]])
    return spec, weights, x


def pool_output_gradient(p: float) -> float:
    """d loss / d the pool's output p for label 0: logits (p, -p), so dz = softmax - (1, 0) and dp = dz0 - dz1."""
    e = np.exp([p, -p] - np.max([p, -p]))
    dz = e / e.sum() - np.array([1.0, 0.0])
    return float(dz[0] - dz[1])


def check_near_tie_spread() -> None:
    gap = 1e-9
    spec, weights, x = pool_case(gap)
    (step,) = trained(spec, weights, x, LABELS)
    assert step.ambiguous == {"pool": 1}
    g = pool_output_gradient(1.0 + gap)
    # The first maximum's conv weight gradient is g (x0, x1) = g (0, 1 + gap); routed to the runner-up, g (1, 0).
    np.testing.assert_allclose(step.grads["conv.weight"].ravel(), [0.0, g * (1 + gap)], rtol=1e-12)
    expected = abs(g) * math.hypot(1.0, 1.0 + gap)
    assert step.spread["gradient"]["conv.weight"] == pytest.approx(expected, rel=1e-12)
    # Step 1 from equal states: b = d, so the momentum differs by the gradient's difference, w by lr times it.
    assert step.spread["momentum"]["conv.weight"] == pytest.approx(expected, rel=1e-12)
    assert step.spread["parameter"]["conv.weight"] == pytest.approx(SETTINGS.learning_rate * expected, rel=1e-12)
    # The bias sees the window's gradient either way; fc sits above the pool, whose forward is unchanged.
    for kind in ("gradient", "parameter", "momentum"):
        assert {t: v for t, v in step.spread[kind].items() if t != "conv.weight"} == {
            "conv.bias": 0.0, "fc.weight": 0.0, "fc.bias": 0.0}, kind
    assert step.spread["statistic"] == {}


def test_near_tie_in_a_max_pool_window_spreads_as_routing_it_to_the_runner_up():
    check_near_tie_spread()


def test_planted_shadow_that_flips_nothing_is_caught(monkeypatch):
    monkeypatch.setattr(spread, "flipped", lambda tape, kinks: tape)
    with pytest.raises(AssertionError):
        check_near_tie_spread()


def test_a_clear_margin_is_not_ambiguous_and_spreads_nothing():
    spec, weights, x = pool_case(0.1)
    steps = trained(spec, weights, x, LABELS, steps=2)
    for step in steps:
        assert step.ambiguous == {}
        assert all(v == 0.0 for kind in step.spread.values() for v in kind.values())
        assert set(step.spread["gradient"]) == set(step.grads)


@pytest.mark.parametrize("share, ambiguous", [(0.9, True), (1.1, False)])
def test_the_pool_threshold_is_three_sigma_of_two_float32_errors(share, ambiguous):
    # The pool's input went through one float32 sum of K = 2 terms (the 1x1 conv over 2 channels): its expected
    # relative error is 0.75 u sqrt(2), and the window's maximum (about 1) is its scale.
    spec, weights, x = pool_case(0.0)
    error = input_errors(spec, 1)["pool"]
    assert error == FP32_ROUNDING * math.sqrt(2)
    tau = KINK_SIGMAS * math.sqrt(2) * error * 1.0
    spec, weights, x = pool_case(share * tau)
    (step,) = trained(spec, weights, x, LABELS)
    assert step.ambiguous == ({"pool": 1} if ambiguous else {})


def test_zeros_tied_by_relu_are_not_ambiguous():
    spec = make_spec((1, 2, 2), {"name": "conv", "op": "conv2d", "filters": 1, "kernel": 1},
                     {"name": "relu", "op": "relu"}, {"name": "pool", "op": "maxpool2d", "kernel": 2, "stride": 2},
                     {"name": "flat", "op": "flatten"}, {"name": "fc", "op": "linear", "units": 2})
    spec = dataclasses.replace(spec, training=SETTINGS)
    weights = {"conv.weight": np.ones((1, 1, 1, 1)), "conv.bias": np.zeros(1), "fc.weight": np.ones((2, 1)),
               "fc.bias": np.zeros(2)}
    (step,) = trained(spec, weights, -np.ones((1, 1, 2, 2)), LABELS)  # every cell is ReLU's exact 0
    assert step.ambiguous == {}


def relu_case():
    """conv 1x1 (weight 1) -> ReLU -> linear, over four cells: 1e-10 and -1e-10 sit within float32's error of
    0, 1 and -0.5 do not."""
    spec = make_spec((1, 2, 2), {"name": "conv", "op": "conv2d", "filters": 1, "kernel": 1},
                     {"name": "relu", "op": "relu"}, {"name": "flat", "op": "flatten"},
                     {"name": "fc", "op": "linear", "units": 2})
    spec = dataclasses.replace(spec, training=SETTINGS)
    weights = {"conv.weight": np.ones((1, 1, 1, 1)), "conv.bias": np.zeros(1),
               "fc.weight": np.array([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0]]), "fc.bias": np.zeros(2)}
    return spec, weights, np.array([[[[1e-10, -1e-10], [1.0, -0.5]]]])


def test_relu_inputs_near_zero_are_ambiguous_and_spread_as_deciding_them_the_other_way():
    spec, weights, x = relu_case()
    (step,) = trained(spec, weights, x, LABELS)
    assert step.ambiguous == {"relu": 2}
    # d loss / d the ReLU's output, by hand: logits z = fc.weight relu(x) (the 1e-10 cell adds 1e-10).
    features = np.maximum(x.ravel(), 0.0)
    z = weights["fc.weight"] @ features
    e = np.exp(z - z.max())
    dz = e / e.sum() - np.array([1.0, 0.0])
    dy = weights["fc.weight"].T @ dz
    # Main passes the 1e-10 cell and blocks the -1e-10 one; the shadow does the opposite. The conv weight
    # gradient is sum(dconv * x): the two flipped cells change it by -dy0 x0 + dy1 x1, the bias by -dy0 + dy1.
    assert step.spread["gradient"]["conv.weight"] == pytest.approx(abs(-dy[0] * 1e-10 + dy[1] * -1e-10), rel=1e-9)
    assert step.spread["gradient"]["conv.bias"] == pytest.approx(abs(-dy[0] + dy[1]), rel=1e-12)
    assert step.spread["gradient"]["fc.weight"] == 0.0


def _runner_up_backward(dy, layer, p, saved):
    """pool_case's one window routed by hand to its runner-up, cell (0, 0)."""
    dx = np.zeros_like(saved.x)
    dx[:, :, 0, 0] = dy[:, :, 0, 0]
    return dx, {}


def test_spread_carries_into_later_steps_as_two_trajectories_apart():
    spec, weights, x = pool_case(1e-9)
    steps = trained(spec, weights, x, LABELS, steps=3)
    # The trajectory that routed step 1's near-tie to the runner-up, then went on by the usual rules: after
    # step 1 both windows lead by far more than float32's error, so the shadow has no kink of its own either.
    alternative, buffers, w = [], zero_buffers(spec), weights
    for k in range(3):
        with pytest.MonkeyPatch.context() as patch:
            if k == 0:
                patch.setitem(training.BACKWARD, "maxpool2d", _runner_up_backward)
            step, w, buffers = reference_train_step(spec, w, buffers, x, LABELS, {})
        alternative.append(step)
    assert [s.ambiguous for s in steps] == [{"pool": 1}, {}, {}]
    for k, (ours, other) in enumerate(zip(steps, alternative), start=1):
        for kind, mine, theirs in (("gradient", ours.grads, other.grads), ("parameter", ours.params, other.params),
                                   ("momentum", ours.momentum, other.momentum)):
            for tensor in mine:
                if tensor in ours.spread[kind]:
                    expected = float(np.linalg.norm(mine[tensor] - theirs[tensor]))
                    assert ours.spread[kind][tensor] == pytest.approx(expected, rel=1e-9, abs=1e-300), \
                        f"step {k} {kind} {tensor}"
    # From step 2 on the conv's different weights change the forward: every tensor moves apart.
    assert all(v > 0 for kind in ("gradient", "parameter", "momentum") for v in steps[1].spread[kind].values())


def test_readout_false_computes_no_spread():
    spec, weights, x = pool_case(1e-9)
    (step,) = trained(spec, weights, x, LABELS, readout=False)
    assert step.spread == {} and step.ambiguous == {}
