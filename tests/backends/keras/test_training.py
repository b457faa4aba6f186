"""Training steps on the three Keras engines (TensorFlow, JAX, torch) against the float64 reference: the loss,
every gradient, parameter displacement, running statistic and momentum buffer over 3 steps, each engine in a
fresh interpreter (Keras picks its engine once per process). Then each of Keras' defaults that the backend
compensates for, planted back one at a time through its hook, must be caught where it shows first."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from alexbench.backends.keras.backend import KerasBackend
from alexbench.backends.precision import UNIT_ROUNDOFF
from alexbench.backends.reference.backend import reference_forward
from alexbench.backends.registry import load_backend_class
from alexbench.harness.train.data import dropout_masks
from alexbench.spec import canonical_weights, load_spec, parse_spec
from alexbench.spec.training import TrainingSpec

ROOT = Path(__file__).resolve().parents[3]
SPECS = ROOT / "tests" / "specs"
ENGINES = ("keras", "keras-jax", "keras-torch")
LIMIT = 1e-4  # relative L2 of a float32 step against float64, with the two allowances of ``errors``
U = UNIT_ROUNDOFF["fp32"]
# A tensor whose exact gradient is 0 (a conv's bias before batch norm: the normalisation removes it) gets
# float32 noise there, and its step is the weight decay's alone: each kind is compared relative to at least
# this share of its largest tensor in the step.
FLOOR = 1e-2

# Every op a training step must get right, N != C != H != W: grouped conv with asymmetric padding, batch
# norm (torch momentum 0.2), LRN, max pool, dropout on a feature map (an NCHW mask, NHWC in Keras) and on
# features, two linears.
TINY = """
name: tiny-train
input: [4, 9, 7]
init: {weight: {dist: normal, std: 0.3}, bias: {dist: normal, std: 0.2}}
layers:
  - {name: conv1, op: conv2d, filters: 6, kernel: 3, padding: [1, 0, 2, 1], groups: 2}
  - name: bn1
    op: batchnorm2d
    momentum: 0.2
    init: {running_mean: {dist: normal, std: 0.5}, running_var: {dist: uniform, low: 0.5, high: 1.5}}
  - {name: relu1, op: relu}
  - {name: norm1, op: lrn, size: 3, alpha: 0.2, beta: 0.75, k: 1.0}
  - {name: pool1, op: maxpool2d, kernel: 2, stride: 2}
  - {name: drop1, op: dropout, rate: 0.5}
  - {name: flatten, op: flatten}
  - {name: fc1, op: linear, units: 8}
  - {name: relu2, op: relu}
  - {name: drop2, op: dropout, rate: 0.25}
  - {name: fc2, op: linear, units: 5}
"""
TINY_SOFTMAX = TINY.replace("tiny-train", "tiny-train-softmax") + "  - {name: softmax, op: softmax}\n"

SETTINGS = TrainingSpec(learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=0.005,
                        penalties={"conv1.weight": 0.003, "fc1.weight": 0.002})
PARITY = {"tiny-train": TINY, "tiny-train-softmax": TINY_SOFTMAX,
          **{p.stem: str(p) for p in sorted(SPECS.glob("*.yaml"))}}
STEPS, BATCH = 3, 3


def _spec(source: str, training: TrainingSpec = SETTINGS):
    spec = parse_spec(source) if "\n" in source else load_spec(source)
    return replace(spec, training=training)


def _data(spec, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, *spec.input_shape)).astype(np.float32)
    labels = rng.integers(0, spec.output_shape[0], BATCH)
    return x, labels, dropout_masks(spec, BATCH, steps, seed)


def _train(cls, spec, weights, x, labels, masks, steps, readout=True):
    backend = cls()
    backend.build(spec, weights)
    backend.start_training()
    return [backend.train_step(x, labels, masks[k], readout) for k in range(1, steps + 1)]


def _rel(got, ref, scale) -> float:
    return float(np.linalg.norm(np.asarray(got, np.float64) - ref) / scale)


def errors(spec, weights, ref_steps, got_steps) -> list[dict]:
    """Per step: the losses' relative errors and, per kind, the tensors over their limit and the worst
    (tensor, error, limit). Parameters and running statistics compare displacements from the initial weights,
    with room for storing w in float32 once a step (k u ||w_k||); every kind is scaled by at least FLOOR of
    its largest tensor."""
    out = []
    for k, (ref, got) in enumerate(zip(ref_steps, got_steps), start=1):
        checks = {}
        for kind, refs, gots, initial in (("gradient", ref.grads, got.grads, None),
                                          ("momentum", ref.momentum, got.momentum, None),
                                          ("parameter", ref.params, got.params, weights)):
            moved = {t: a if initial is None else a - initial[t] for t, a in refs.items()}
            kinds = {t: "statistic" if initial is not None and t not in ref.grads else kind for t in refs}
            top = {c: max(np.linalg.norm(moved[t]) for t in refs if kinds[t] == c) for c in set(kinds.values())}
            for t, a in refs.items():
                scale = max(np.linalg.norm(moved[t]), FLOOR * top[kinds[t]])
                storage = 0.0 if initial is None else 2 * k * U * np.linalg.norm(a) / scale  # w_k in float32
                checks[(kinds[t], t)] = _rel(gots[t], a, scale), LIMIT + storage
        worst = {}
        for (kind, t), (err, limit) in sorted(checks.items(), key=lambda c: c[1][0] / c[1][1]):
            worst[kind] = (t, err, limit)  # ascending: the last one written is the worst
        out.append({"loss": abs(got.loss - ref.loss) / abs(ref.loss),
                    "data_loss": abs(got.data_loss - ref.data_loss) / abs(ref.data_loss),
                    "over": sorted(f"{kind} {t}" for (kind, t), (err, limit) in checks.items() if not err <= limit),
                    "worst": worst, "kinds": sorted({kind for kind, _ in checks}),
                    "momentum": sorted(got.momentum), "tensors": sorted(got.params)})
    return out


# --- Keras' defaults, planted back one at a time through the backend's hooks ---

class KerasWeightDecay:
    """Keras SGD's own weight_decay (decoupled: w -= lr wd w beside the momentum) for the coupled one."""

    def make_optimizer(self):
        t = self.spec.training
        return self.keras.optimizers.SGD(t.learning_rate, t.momentum, t.nesterov, weight_decay=t.weight_decay)

    def coupled_decay(self, g, w):
        return g


class BiasedRunningVariance:
    def running_var_correction(self, n):
        return 1.0


class ClippedCrossEntropy:
    """Keras' categorical_crossentropy on probabilities: clipped to [1e-7, 1 - 1e-7] (written out: on
    TensorFlow, Keras' own reads the logits behind a Softmax layer's output instead, and does not clip)."""

    def train_loss(self, out, labels):
        ops = self.keras.ops
        p = ops.softmax(out, axis=1)  # the trainer gives the logits (the softmax's input)
        picked = ops.take_along_axis(p, ops.expand_dims(labels, 1), axis=1)[:, 0]
        return -ops.mean(ops.log(ops.clip(picked, 1e-7, 1.0 - 1e-7)))


class L2ReadAsWeightDecay:
    """An l2 penalty x read as a decay x (its gradient x w, not 2x w)."""

    def penalty_gradient(self, tensor, w):
        return self.spec.training.l2(tensor) * w


class TorchMomentumGivenToKeras:
    def bn_momentum(self, layer):
        return layer.attrs["momentum"]


class ReshapedKernels:
    """Keras kernels reshaped to the canonical shapes instead of transposed."""

    def canonical_gradient(self, layer, param, array):
        return np.reshape(array, layer.params[param].shape)


PLANTED = (KerasWeightDecay, BiasedRunningVariance, ClippedCrossEntropy, L2ReadAsWeightDecay,
           TorchMomentumGivenToKeras, ReshapedKernels)


def _softmax_far_from_the_labels():
    """tiny-train-softmax with fc2 scaled up and every label the least likely class: probabilities < 1e-7,
    where Keras' clipping of categorical_crossentropy changes the loss and its gradient."""
    spec = _spec(TINY_SOFTMAX)
    weights = canonical_weights(spec, seed=0)
    weights["fc2.weight"] = weights["fc2.weight"] * np.float32(12.0)
    x, _, masks = _data(spec, 1)
    labels = np.argmin(reference_forward(spec, weights, x, [])[0], axis=1)
    return spec, weights, x, labels, masks


def engine_report(name: str) -> dict:
    """Everything the tests below check, for one Keras engine (run in its own interpreter)."""
    cls, reference = load_backend_class(name), load_backend_class("reference")

    def compare(spec, weights, x, labels, masks, steps, backend=cls):
        ref = _train(reference, spec, weights, x, labels, masks, steps)
        return errors(spec, weights, ref, _train(backend, spec, weights, x, labels, masks, steps))

    report: dict = {"parity": {}, "planted": {}}
    for case, source in PARITY.items():
        spec = _spec(source)
        report["parity"][case] = compare(spec, canonical_weights(spec, seed=0), *_data(spec, STEPS), STEPS)
    spec = _spec(PARITY["conv-bn"], TrainingSpec(learning_rate=0.1))  # momentum 0: plain SGD, no buffer
    report["no_momentum"] = compare(spec, canonical_weights(spec, seed=0), *_data(spec, 2), 2)
    spec = _spec(TINY)
    weights, (x, labels, masks) = canonical_weights(spec, seed=0), _data(spec, 2)
    full, losses = (_train(cls, spec, weights, x, labels, masks, 2, readout) for readout in (True, False))
    report["readout"] = {"losses": [[s.loss, s.data_loss] for s in full],
                         "bare": [[s.loss, s.data_loss, len(s.grads) + len(s.params) + len(s.momentum)]
                                  for s in losses]}
    for plant in PLANTED:
        planted = type(f"{plant.__name__}{cls.__name__}", (plant, cls), {})
        if plant is ClippedCrossEntropy:
            spec, weights, x, labels, masks = _softmax_far_from_the_labels()
            ref = _train(reference, spec, weights, x, labels, masks, 1)
            report["reference_data_loss"] = ref[0].data_loss
            report["planted"][plant.__name__] = errors(
                spec, weights, ref, _train(planted, spec, weights, x, labels, masks, 1))
            report["unplanted_far_from_the_labels"] = errors(
                spec, weights, ref, _train(cls, spec, weights, x, labels, masks, 1))
            continue
        # Keras' decoupled decay equals the coupled one on the first step without nesterov
        training = replace(SETTINGS, nesterov=False, weight_decay=0.05) if plant is KerasWeightDecay else SETTINGS
        spec = _spec(TINY, training)
        report["planted"][plant.__name__] = compare(spec, canonical_weights(spec, seed=0), *_data(spec, 2), 2,
                                                    backend=planted)
    return report


@pytest.fixture(scope="module", params=ENGINES)
def report(request) -> tuple[str, dict]:
    code = (f"import json; from tests.backends.keras.test_training import engine_report; "
            f"print(json.dumps(engine_report({request.param!r})))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    return request.param, json.loads(run.stdout.strip().splitlines()[-1])


def test_every_engine_trains_like_the_reference_step_after_step(report):
    engine, r = report
    assert set(r["parity"]) == set(PARITY)
    for case, steps in r["parity"].items():
        assert len(steps) == STEPS
        has_bn = any(layer.op == "batchnorm2d" for layer in _spec(PARITY[case]).layers)
        for k, step in enumerate(steps, start=1):
            where = f"{engine} on {case}, step {k}"
            assert step["over"] == [], f"{where}: over the limit: {step['over']} (worst: {step['worst']})"
            assert step["loss"] <= LIMIT and step["data_loss"] <= LIMIT, f"{where}: loss {step}"
            assert step["kinds"] == ["gradient", "momentum", "parameter"] + ["statistic"] * has_bn, where
            trainable = {t for t in step["tensors"] if "running" not in t}
            assert set(step["momentum"]) == trainable, where


def test_without_momentum_there_is_no_buffer_and_plain_sgd_matches(report):
    engine, r = report
    for step in r["no_momentum"]:
        assert step["over"] == [] and step["loss"] <= LIMIT, f"{engine}: {step}"
        assert step["momentum"] == [] and "momentum" not in step["kinds"], engine


def test_without_readout_the_step_returns_its_losses_only(report):
    engine, r = report
    assert [bare[:2] for bare in r["readout"]["bare"]] == r["readout"]["losses"], engine
    assert all(bare[2] == 0 for bare in r["readout"]["bare"]), engine


def test_keras_own_weight_decay_is_caught_in_the_buffers_then_in_the_parameters_at_step_2(report):
    engine, r = report
    first, second = r["planted"]["KerasWeightDecay"]
    # decoupled and coupled decay move the weights alike on a first step without nesterov; only the buffer,
    # which Keras' decay never enters, shows it
    assert first["over"] and all(o.startswith("momentum ") for o in first["over"]), f"{engine}: {first['over']}"
    assert any(o.startswith("parameter ") for o in second["over"]), f"{engine}: {second['worst']}"


def test_keras_biased_running_variance_is_caught_at_the_running_variance_only(report):
    engine, r = report
    assert r["planted"]["BiasedRunningVariance"][0]["over"] == ["statistic bn1.running_var"], engine


def test_keras_momentum_convention_is_caught_at_the_running_statistics_only(report):
    engine, r = report
    over = r["planted"]["TorchMomentumGivenToKeras"][0]["over"]
    assert over == ["statistic bn1.running_mean", "statistic bn1.running_var"], engine


def test_clipped_cross_entropy_is_caught_at_the_loss_where_a_label_is_below_1e_7(report):
    engine, r = report
    # a mean of -log p above -log 1e-7: some label's probability is below 1e-7, where Keras clips
    assert r["reference_data_loss"] > -np.log(1e-7)
    assert r["unplanted_far_from_the_labels"][0]["over"] == [], engine  # unclipped, it still matches
    step = r["planted"]["ClippedCrossEntropy"][0]
    assert step["data_loss"] > LIMIT, engine
    assert any(o.startswith("gradient ") for o in step["over"]), engine


def test_l2_read_as_weight_decay_is_caught_at_the_penalised_gradients(report):
    engine, r = report
    over = r["planted"]["L2ReadAsWeightDecay"][0]["over"]
    assert {"gradient conv1.weight", "gradient fc1.weight"} <= set(over), engine
    assert not any(o.startswith("gradient") and o.split()[1] not in SETTINGS.penalties for o in over), engine


def test_kernels_reshaped_instead_of_transposed_are_caught_at_their_gradients(report):
    engine, r = report
    over = set(r["planted"]["ReshapedKernels"][0]["over"])
    assert {"gradient conv1.weight", "gradient fc1.weight", "gradient fc2.weight"} <= over, engine
    assert not any(o.startswith("gradient") and o.endswith(".bias") for o in over), engine


# --- refusals, on TensorFlow in this process ---

def test_training_in_another_precision_is_refused_with_the_reason():
    spec = _spec(TINY)
    backend = KerasBackend(options={"precision": "bf16"})
    backend.build(spec, canonical_weights(spec, seed=0))
    with pytest.raises(ValueError, match=r"^backend 'keras': training runs in fp32 only, received precision 'bf16'"):
        backend.start_training()


@pytest.mark.parametrize("labels, masks, message", [
    (np.array([0, 1, 5]), None, r"^backend 'keras': label 5 \(sample 2\) is outside \[0, 5\)"),
    (np.array([0.0, 1.0, 2.0]), None, r"^backend 'keras': labels have dtype float64; expected integers"),
    (None, {"drop1"}, r"^backend 'keras': no mask for dropout layer 'drop2'"),
])
def test_bad_labels_and_masks_are_refused_in_one_line(labels, masks, message):
    spec = _spec(TINY)
    x, good_labels, good_masks = _data(spec, 1)
    backend = KerasBackend()
    backend.build(spec, canonical_weights(spec, seed=0))
    backend.start_training()
    given = {k: v for k, v in good_masks[1].items() if k in masks} if masks else good_masks[1]
    with pytest.raises(ValueError, match=message):
        backend.train_step(x, good_labels if labels is None else labels, given)
