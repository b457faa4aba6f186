"""The reference's training step as the backend runs it: SGD written out by hand for a few steps (momentum,
nesterov, no momentum, coupled weight decay, l2 penalties), batch norm's statistics on hand numbers, what a
step returns, and the one-line errors for bad labels and masks. Planted wrong updates show the hand checks
fail when they should. (Gradients themselves are checked against finite differences in test_backward.py.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from alexbench.backends.reference import training
from alexbench.backends.reference.backend import ReferenceBackend
from alexbench.backends.reference.training import forward_layer, running_statistics, sgd_update
from alexbench.spec import canonical_weights, load_spec
from alexbench.spec.training import TrainingSpec
from tests.backends.reference.test_backend import make_spec
from tests.conftest import SPECS_DIR

CLOSE = {"rtol": 1e-12, "atol": 1e-15}


def trained(spec, weights, x, labels, masks=None, steps=1, readout=True):
    """The reference backend's TrainSteps for ``steps`` steps on the same batch and masks."""
    backend = ReferenceBackend()
    backend.build(spec, weights)
    backend.start_training()
    return [backend.train_step(x, labels, masks or {}, readout) for _ in range(steps)]


# ---------------------------------------------------------------- SGD by hand

# A softmax regression: flatten -> linear, whose gradient is written out below without the reference.
FEATURES, CLASSES, N = 4, 3, 5
SETTINGS = {
    "momentum": TrainingSpec(learning_rate=0.1, momentum=0.9, weight_decay=0.01),
    "nesterov": TrainingSpec(learning_rate=0.1, momentum=0.8, nesterov=True, weight_decay=0.02),
    "no momentum": TrainingSpec(learning_rate=0.2, momentum=0.0, weight_decay=0.05),
    "penalties, no decay": TrainingSpec(learning_rate=0.1, momentum=0.9, penalties={"fc.weight": 0.03, "fc.bias": 0.1}),
    "penalties and decay": TrainingSpec(learning_rate=0.05, momentum=0.5, nesterov=True, weight_decay=0.01,
                                        penalties={"fc.weight": 0.02}),
}


def regression(settings: TrainingSpec):
    spec = make_spec((FEATURES, 1, 1), {"name": "flat", "op": "flatten"}, {"name": "fc", "op": "linear",
                                                                            "units": CLASSES})
    spec = dataclasses.replace(spec, training=settings)
    rng = np.random.default_rng(11)
    weights = {"fc.weight": rng.standard_normal((CLASSES, FEATURES)), "fc.bias": rng.standard_normal(CLASSES)}
    x = rng.standard_normal((N, FEATURES, 1, 1))
    return spec, weights, x, np.array([0, 2, 1, 2, 0])


def by_hand(settings: TrainingSpec, weights, x, labels, steps):
    """(loss, gradients, weights after, PyTorch buffer) per step. Heavy-ball momentum in the paper's form
    (v = mu v - lr (g + wd w), w += v; PyTorch's buffer is -v / lr), nesterov in Sutskever's (w += mu v - lr d
    with the new v), no momentum as plain gradient descent."""
    lr, mu, wd = settings.learning_rate, settings.momentum, settings.weight_decay
    w = {k: v.copy() for k, v in weights.items()}
    v = {k: np.zeros_like(a) for k, a in w.items()}
    features = x.reshape(len(x), -1)
    history = []
    for _ in range(steps):
        z = features @ w["fc.weight"].T + w["fc.bias"]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(len(labels))
        loss = -np.mean(np.log(p[rows, labels]))
        p[rows, labels] -= 1
        grads = {"fc.weight": p.T @ features / len(labels), "fc.bias": p.sum(axis=0) / len(labels)}
        for name, factor in settings.penalties.items():
            loss += factor * np.sum(w[name] ** 2)
            grads[name] = grads[name] + 2 * factor * w[name]
        for name in w:
            d = grads[name] + wd * w[name]
            if not mu:
                w[name] = w[name] - lr * d
                continue
            v[name] = mu * v[name] - lr * d
            w[name] = w[name] + (mu * v[name] - lr * d if settings.nesterov else v[name])
        history.append((loss, grads, {k: a.copy() for k, a in w.items()},
                        {k: -a / lr for k, a in v.items()} if mu else {}))
    return history


def check_sgd_by_hand(setting: str, steps: int = 3) -> None:
    spec, weights, x, labels = regression(SETTINGS[setting])
    got = trained(spec, weights, x, labels, steps=steps)
    for k, (step, (loss, grads, after, buffers)) in enumerate(zip(got, by_hand(spec.training, weights, x, labels,
                                                                               steps)), start=1):
        assert step.loss == pytest.approx(loss, rel=1e-12), f"step {k}"
        assert list(step.momentum) == list(buffers), f"step {k}"
        for kind, ours, theirs in (("gradient", step.grads, grads), ("parameter", step.params, after),
                                   ("momentum", step.momentum, buffers)):
            for name in theirs:
                np.testing.assert_allclose(ours[name], theirs[name], **CLOSE, err_msg=f"step {k} {kind} {name}")


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_sgd_matches_the_update_written_by_hand(setting):
    check_sgd_by_hand(setting)


def _decoupled_decay(settings, weights, grads, buffers):
    """Weight decay applied to w after the momentum step (AdamW-style) instead of inside the gradient."""
    plain, new_buffers = sgd_update(dataclasses.replace(settings, weight_decay=0.0), weights, grads, buffers)
    return {k: plain[k] - settings.learning_rate * settings.weight_decay * weights[k] for k in plain}, new_buffers


def _keras_buffer(settings, weights, grads, buffers):
    """Keras' v = mu v - lr g reported as the buffer without converting it to PyTorch's b = -v / lr."""
    new_weights, new_buffers = sgd_update(settings, weights, grads, buffers)
    return new_weights, {k: -settings.learning_rate * b for k, b in new_buffers.items()}


def _nesterov_ignored(settings, weights, grads, buffers):
    return sgd_update(dataclasses.replace(settings, nesterov=False), weights, grads, buffers)


@pytest.mark.parametrize("bug, update, setting", [
    ("decoupled weight decay", _decoupled_decay, "momentum"),
    ("Keras' velocity as the buffer", _keras_buffer, "momentum"),
    ("nesterov ignored", _nesterov_ignored, "nesterov"),
])
def test_planted_wrong_update_is_caught(bug, update, setting, monkeypatch):
    monkeypatch.setattr(training, "sgd_update", update)
    with pytest.raises(AssertionError):
        check_sgd_by_hand(setting)


# ---------------------------------------------------------------- batch norm's statistics

def batchnorm_spec():
    spec = make_spec((2, 1, 2), {"name": "bn", "op": "batchnorm2d", "eps": 0.5, "momentum": 0.25},
                     {"name": "flat", "op": "flatten"}, {"name": "fc", "op": "linear", "units": 2})
    return dataclasses.replace(spec, training=TrainingSpec(learning_rate=0.1))


# Channel 0 sees 1, 3, 5, 7 (mean 4, biased variance 5, unbiased 20/3); channel 1 sees 0, 0, 2, 2 (mean 1,
# biased variance 1, unbiased 4/3). n = N * H * W = 4.
BN_X = np.array([[[[1.0, 3.0]], [[0.0, 0.0]]], [[[5.0, 7.0]], [[2.0, 2.0]]]])


def check_running_statistics() -> None:
    spec = batchnorm_spec()
    weights = canonical_weights(spec, seed=1)  # running mean 0, running variance 1
    steps = trained(spec, weights, BN_X, np.array([0, 1]), steps=2)
    mean, unbiased = np.array([4.0, 1.0]), np.array([20 / 3, 4 / 3])
    first_mean, first_var = 0.25 * mean, 0.75 + 0.25 * unbiased
    np.testing.assert_allclose(steps[0].params["bn.running_mean"], first_mean, **CLOSE)
    np.testing.assert_allclose(steps[0].params["bn.running_var"], first_var, **CLOSE)
    # The same batch again (batch norm comes first, so its statistics are the same).
    np.testing.assert_allclose(steps[1].params["bn.running_mean"], 0.75 * first_mean + 0.25 * mean, **CLOSE)
    np.testing.assert_allclose(steps[1].params["bn.running_var"], 0.75 * first_var + 0.25 * unbiased, **CLOSE)


def test_running_statistics_use_the_unbiased_variance():
    check_running_statistics()


def test_batchnorm_normalises_with_the_biased_batch_variance():
    spec = batchnorm_spec()
    bn = spec.layer("bn")
    weights = {"bn.weight": np.array([2.0, 1.0]), "bn.bias": np.array([0.5, -1.0]),
               "bn.running_mean": np.array([9.0, 9.0]), "bn.running_var": np.array([9.0, 9.0])}
    y = forward_layer(bn, BN_X, weights, {}).y
    expected = np.stack([(BN_X[:, 0] - 4) / np.sqrt(5 + 0.5) * 2 + 0.5, (BN_X[:, 1] - 1) / np.sqrt(1 + 0.5) - 1], 1)
    np.testing.assert_allclose(y, expected, **CLOSE)


def test_planted_biased_running_variance_is_caught(monkeypatch):
    def biased(layer, p, saved):
        n = saved.x.size // saved.x.shape[1]
        stats = running_statistics(layer, p, saved)
        m = layer.attrs["momentum"]
        return {**stats, "running_var": stats["running_var"] - m * saved.extra["var"] * (n / (n - 1) - 1)}

    monkeypatch.setattr(training, "running_statistics", biased)
    with pytest.raises(AssertionError):
        check_running_statistics()


# ---------------------------------------------------------------- what a step returns

def test_a_step_returns_every_tensor_in_float64():
    spec = batchnorm_spec()
    spec = dataclasses.replace(spec, training=TrainingSpec(learning_rate=0.1, momentum=0.9))
    (step,) = trained(spec, canonical_weights(spec, seed=1), BN_X.astype(np.float32), np.array([0, 1]))
    assert list(step.params) == list(spec.param_shapes())  # running statistics included
    assert list(step.grads) == list(step.momentum) == ["bn.weight", "bn.bias", "fc.weight", "fc.bias"]
    assert all(a.dtype == np.float64 for kind in (step.params, step.grads, step.momentum) for a in kind.values())
    assert step.loss == step.data_loss  # no penalties


@pytest.mark.parametrize("spec_path", sorted(SPECS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_test_specs_train(spec_path):
    spec = load_spec(spec_path)
    spec = dataclasses.replace(spec, training=TrainingSpec(learning_rate=0.01, momentum=0.9, weight_decay=5e-4))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *spec.input_shape)).astype(np.float32)
    masks = {layer.name: (rng.random((3, *layer.input_shape)) >= layer.attrs["rate"]).astype(np.float32)
             for layer in spec.layers if layer.op == "dropout"}
    steps = trained(spec, canonical_weights(spec, seed=0), x, rng.integers(0, spec.output_shape[0], 3), masks, 2)
    for step in steps:
        assert np.isfinite(step.loss)
        assert {k: a.shape for k, a in step.params.items()} == spec.param_shapes()
        assert all(np.isfinite(g).all() and g.shape == spec.param_shapes()[k] for k, g in step.grads.items())
    assert steps[1].loss != steps[0].loss  # the weights moved


def test_momentum_zero_keeps_no_buffer():
    spec, weights, x, labels = regression(SETTINGS["no momentum"])
    assert trained(spec, weights, x, labels)[0].momentum == {}


def test_readout_false_fills_the_losses_only_and_still_steps():
    spec, weights, x, labels = regression(SETTINGS["nesterov"])
    full = trained(spec, weights, x, labels, steps=2)
    quiet = trained(spec, weights, x, labels, steps=2, readout=False)
    assert [s.loss for s in quiet] == [s.loss for s in full]
    assert [s.data_loss for s in quiet] == [s.data_loss for s in full]
    assert all(s.grads == s.params == s.momentum == {} for s in quiet)


def test_dropout_applies_the_mask_scaled():
    spec = make_spec((4, 1, 1), {"name": "flat", "op": "flatten"}, {"name": "drop", "op": "dropout", "rate": 0.75})
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1)
    y = forward_layer(spec.layer("drop"), x.reshape(1, 4), {}, {"drop": np.array([[1.0, 0.0, 0.0, 1.0]])}).y
    np.testing.assert_array_equal(y, [[4.0, 0.0, 0.0, 16.0]])


# ---------------------------------------------------------------- clear errors

def dropout_spec():
    return make_spec((4, 1, 1), {"name": "flat", "op": "flatten"}, {"name": "drop", "op": "dropout", "rate": 0.5},
                     {"name": "fc", "op": "linear", "units": 3})


GOOD_MASK = {"drop": np.ones((2, 4), np.float32)}
BAD_INPUTS = {
    "labels shape": (np.zeros((2, 1), np.int64), GOOD_MASK,
                     "reference: labels have shape [2, 1]; expected [2] (one class index per sample)"),
    "labels dtype": (np.zeros(2), GOOD_MASK, "reference: labels have dtype float64; expected integers (class indices)"),
    "label too large": (np.array([0, 3]), GOOD_MASK,
                        "reference: label 3 (sample 1) is outside [0, 3): spec 't' has 3 classes"),
    "label negative": (np.array([-1, 0]), GOOD_MASK,
                       "reference: label -1 (sample 0) is outside [0, 3): spec 't' has 3 classes"),
    "mask missing": (np.array([0, 1]), {},
                     "reference: no mask for dropout layer 'drop'; expected a 0/1 keep mask of shape [2, 4]"),
    "mask shape": (np.array([0, 1]), {"drop": np.ones((2, 5), np.float32)},
                   "reference: mask for dropout layer 'drop' has shape [2, 5]; expected [2, 4] "
                   "(N, then the layer's input shape)"),
    "mask values": (np.array([0, 1]), {"drop": np.full((2, 4), 0.5, np.float32)},
                    "reference: mask for dropout layer 'drop' holds values other than 0 and 1; "
                    "expected a 0/1 keep mask"),
    "mask for another layer": (np.array([0, 1]), {**GOOD_MASK, "fc": np.ones((2, 4), np.float32)},
                               "reference: mask given for 'fc', which is not a dropout layer of spec 't' "
                               "(dropout layers: drop)"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_labels_and_masks_are_one_line_errors(case):
    labels, masks, message = BAD_INPUTS[case]
    spec = dropout_spec()
    with pytest.raises(ValueError) as caught:
        trained(spec, canonical_weights(spec), np.zeros((2, 4, 1, 1), np.float32), labels, masks)
    assert str(caught.value) == message


def test_specs_that_cannot_train_are_one_line_errors():
    spec = make_spec((2, 1, 1), {"name": "bn", "op": "batchnorm2d"}, {"name": "flat", "op": "flatten"})
    with pytest.raises(ValueError) as caught:
        trained(spec, canonical_weights(spec), np.ones((1, 2, 1, 1)), np.array([0]))
    assert str(caught.value) == ("reference: layer 'bn' (batchnorm2d) sees 1 value per channel in a batch of 1; "
                                 "training needs at least 2 (the running variance divides by n - 1)")
    spec = make_spec((2, 3, 3), {"name": "conv", "op": "conv2d", "filters": 2, "kernel": 1})
    with pytest.raises(ValueError) as caught:
        trained(spec, canonical_weights(spec), np.zeros((2, 2, 3, 3)), np.array([0, 1]))
    assert str(caught.value) == ("reference: spec 't' ends in a 2x3x3 feature map; "
                                 "cross-entropy needs class scores (N, classes)")


def test_train_step_needs_start_training():
    spec = dropout_spec()
    backend = ReferenceBackend()
    backend.build(spec, canonical_weights(spec))
    with pytest.raises(RuntimeError, match=r"train_step before start_training\(\)"):
        backend.train_step(np.zeros((2, 4, 1, 1)), np.array([0, 1]), GOOD_MASK)
