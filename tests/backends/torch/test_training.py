"""torch's training step against the float64 reference (losses, gradients, updated parameters, batch norm's
running statistics, momentum buffers over several steps), planted bugs those checks must catch, and what
the step returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexbench.backends.base import TrainStep
from alexbench.backends.reference.backend import ReferenceBackend
from alexbench.backends.torch.backend import TorchBackend
from alexbench.harness.bench.training import training_batch
from alexbench.spec import canonical_weights, load_spec, parse_spec
from alexbench.spec.training import TrainingSpec

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
LIMIT = 1e-4  # relative L2 per tensor
LOSS_LIMIT = 1e-6  # relative
# A conv bias feeding training-mode batch norm has an exactly zero gradient (the batch mean removes it), where
# float32 leaves rounding noise (~1e-8 of the step's whole gradient): a gradient's error is therefore relative to
# at least this fraction of the step's whole gradient.
GRADIENT_FLOOR = 1e-2

# Every op training touches once: a grouped, asymmetrically padded conv (bias before batch norm), LRN, max
# pooling, dropout on a feature map and on features; ``{head}`` ends it in logits or in softmax.
TINY = """
name: train-tiny
description: every op training touches, once
input: [4, 11, 9]
init:
  weight: {{dist: normal, std: 0.3}}
  bias: {{dist: normal, std: 0.2}}
layers:
  - {{name: conv1, op: conv2d, filters: 6, kernel: 3, stride: 1, padding: [1, 0, 2, 1], groups: 2}}
  - name: bn1
    op: batchnorm2d
    momentum: 0.2
    init:
      running_mean: {{dist: normal, std: 0.5}}
      running_var: {{dist: uniform, low: 0.5, high: 1.5}}
  - {{name: relu1, op: relu}}
  - {{name: norm1, op: lrn, size: 3, alpha: 0.2, beta: 0.75, k: 1.0}}
  - {{name: pool1, op: maxpool2d, kernel: 2, stride: 2}}
  - {{name: drop1, op: dropout, rate: 0.3}}
  - {{name: flatten, op: flatten}}
  - {{name: fc1, op: linear, units: 8}}
  - {{name: relu2, op: relu}}
  - {{name: drop2, op: dropout, rate: 0.5}}
  - {{name: fc2, op: linear, units: 5}}
{head}"""
HEADS = {"logits": "", "softmax": "  - {name: softmax, op: softmax}\n"}
# lr and decay large enough that a tensor moved by the decay alone (that conv bias) moves well above
# float32's rounding of its value.
NESTEROV = TrainingSpec(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)
VARIANTS = {"nesterov": NESTEROV, "heavy-ball": dataclasses.replace(NESTEROV, nesterov=False),
            "no-momentum": dataclasses.replace(NESTEROV, momentum=0.0, nesterov=False)}


def tiny_spec(head: str = "logits"):
    return parse_spec(TINY.format(head=HEADS[head]), "train-tiny.yaml")


def training_spec(spec, settings: TrainingSpec = NESTEROV):
    """``spec`` with ``settings`` and l2 penalties on its first and last weight tensors."""
    matrices = [name for name, shape in spec.param_shapes().items() if name.endswith(".weight") and len(shape) > 1]
    penalties = {matrices[0]: 0.002, matrices[-1]: 0.004}
    return dataclasses.replace(spec, training=dataclasses.replace(settings, penalties=penalties))


def run_steps(backend, spec, weights, steps: int = 3, batch: int = 4) -> list[TrainStep]:
    """``steps`` steps on one seeded batch and its labels, with fresh seeded dropout masks per step."""
    x = np.random.default_rng(batch).standard_normal((batch, *spec.input_shape)).astype(np.float32)
    labels, _ = training_batch(spec, batch, seed=0)
    backend.build(spec, weights)
    backend.start_training()
    return [backend.train_step(x, labels, training_batch(spec, batch, seed=step)[1]) for step in range(1, steps + 1)]


def _rel(got: np.ndarray, ref: np.ndarray, floor: float = 0.0) -> float:
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), floor, np.finfo(np.float64).tiny))


def divergences(got: list[TrainStep], ref: list[TrainStep], w0) -> list[tuple[int, str, str, float]]:
    """(step, kind, tensor, error) of every quantity over its limit, by step, then loss, gradient, parameter,
    statistic, momentum. Parameters and statistics compare displacements from ``w0``: w_k itself would
    hide a wrong update in its initial value."""
    found = []
    for k, (g, r) in enumerate(zip(got, ref), start=1):
        for kind, a, b in (("loss", g.loss, r.loss), ("data_loss", g.data_loss, r.data_loss)):
            if abs(a - b) > LOSS_LIMIT * abs(b):
                found.append((k, kind, "", abs(a - b) / abs(b)))
        floor = GRADIENT_FLOOR * float(np.sqrt(sum(np.sum(np.square(v)) for v in r.grads.values())))
        errors = [("gradient", t, _rel(g.grads[t], r.grads[t], floor)) for t in r.grads]
        errors += [("parameter" if t in r.grads else "statistic", t, _rel(g.params[t] - w0[t], r.params[t] - w0[t]))
                   for t in r.params]
        errors += [("momentum", t, _rel(g.momentum[t], r.momentum[t])) for t in r.momentum]
        found += [(k, kind, t, e) for kind, t, e in errors if not e <= LIMIT]
        for kind, a, b in (("gradient", g.grads, r.grads), ("parameter", g.params, r.params),
                           ("momentum", g.momentum, r.momentum)):
            if set(a) != set(b):
                found.append((k, kind, f"names {sorted(a)} != {sorted(b)}", float("inf")))
    return found


CASES = [*(pytest.param(load_spec(path), "nesterov", id=path.stem) for path in sorted(SPECS_DIR.glob("*.yaml"))),
         *(pytest.param(tiny_spec(head), "nesterov", id=f"tiny-{head}") for head in HEADS),
         *(pytest.param(tiny_spec(), variant, id=f"tiny-{variant}") for variant in VARIANTS if variant != "nesterov")]


@pytest.mark.parametrize(("spec", "variant"), CASES)
def test_steps_match_the_reference(spec, variant):
    spec = training_spec(spec, VARIANTS[variant])
    weights = canonical_weights(spec, seed=1)
    got = run_steps(TorchBackend(), spec, weights)
    ref = run_steps(ReferenceBackend(), spec, weights)
    assert divergences(got, ref, weights) == []
    assert all(v.dtype == np.float32 for step in got for d in (step.grads, step.params, step.momentum)
               for v in d.values())
    assert bool(got[0].momentum) == bool(spec.training.momentum)


# --- planted bugs: each overrides one hook, as a third-party backend might get it wrong -----------------

class UnscaledDropout(TorchBackend):
    def train_dropout(self, x, mask, rate):
        return x * mask  # forgets the 1 / (1 - rate) of inverted dropout


class FrameworkDropout(TorchBackend):
    def train_dropout(self, x, mask, rate):
        return F.dropout(x, rate, training=True)  # torch's RNG in place of the harness' mask


class SoftmaxTwice(TorchBackend):
    def train_loss(self, out, labels):
        return F.cross_entropy(F.softmax(out, dim=1), labels)  # the probabilities read as logits


class NoNesterov(TorchBackend):
    def make_optimizer(self, params):
        t = self.spec.training
        return torch.optim.SGD(params, lr=t.learning_rate, momentum=t.momentum, weight_decay=t.weight_decay)


class Dampened(TorchBackend):
    def make_optimizer(self, params):  # dampening = momentum: b = mu b + (1 - mu) d from the second step
        t = self.spec.training
        return torch.optim.SGD(params, lr=t.learning_rate, momentum=t.momentum, dampening=t.momentum,
                               weight_decay=t.weight_decay)


class DecayInTheLoss(TorchBackend):
    def make_optimizer(self, params):  # decay as an l2 penalty in the loss: the gradient then carries it
        t = self.spec.training
        return torch.optim.SGD(params, lr=t.learning_rate, momentum=t.momentum, nesterov=t.nesterov)

    def train_loss(self, out, labels):
        decay = sum(p.square().sum() for p in self.model.parameters())
        return super().train_loss(out, labels) + 0.5 * self.spec.training.weight_decay * decay


class DecayInTheGradient(DecayInTheLoss):
    """The decay moved from the optimizer into the gradient, the loss's value left alone: the same update, so
    only the reported gradients show it."""

    def train_loss(self, out, labels):
        decay = 0.5 * self.spec.training.weight_decay * sum(p.square().sum() for p in self.model.parameters())
        return TorchBackend.train_loss(self, out, labels) + (decay - decay.detach())


@pytest.mark.parametrize(("planted", "head", "variant", "caught"), [
    (UnscaledDropout, "logits", "nesterov", (1, "loss")),
    (FrameworkDropout, "logits", "nesterov", (1, "loss")),
    (SoftmaxTwice, "softmax", "nesterov", (1, "loss")),
    (NoNesterov, "logits", "nesterov", (1, "parameter")),
    (Dampened, "logits", "heavy-ball", (2, "parameter")),  # torch's first buffer ignores dampening
    (DecayInTheLoss, "logits", "nesterov", (1, "loss")),
    (DecayInTheGradient, "logits", "nesterov", (1, "gradient")),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_planted_bug_is_caught(planted, head, variant, caught):
    spec = training_spec(tiny_spec(head), VARIANTS[variant])
    weights = canonical_weights(spec, seed=1)
    found = divergences(run_steps(planted(), spec, weights), run_steps(ReferenceBackend(), spec, weights), weights)
    assert found and found[0][:2] == caught, found[:3]


# --- what a step returns --------------------------------------------------------------------------------

def test_a_zero_mask_cuts_every_gradient_upstream_of_its_layer():
    spec = dataclasses.replace(tiny_spec(), training=NESTEROV)  # no penalties: they would add 2x * w
    backend = TorchBackend()
    backend.build(spec, canonical_weights(spec, seed=1))
    backend.start_training()
    labels, masks = training_batch(spec, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((4, *spec.input_shape)).astype(np.float32)
    grads = backend.train_step(x, labels, {**masks, "drop2": np.zeros_like(masks["drop2"])}).grads
    assert [name for name, g in grads.items() if g.any()] == ["fc2.bias"]


def test_readout_false_returns_the_losses_only_and_still_steps():
    spec = training_spec(tiny_spec())
    weights = canonical_weights(spec, seed=1)
    x = np.random.default_rng(0).standard_normal((4, *spec.input_shape)).astype(np.float32)
    labels, masks = training_batch(spec, 4, seed=0)
    quiet, full = TorchBackend(), TorchBackend()
    for backend in (quiet, full):
        backend.build(spec, weights)
        backend.start_training()
    first, reference = quiet.train_step(x, labels, masks, readout=False), full.train_step(x, labels, masks)
    assert (first.grads, first.params, first.momentum) == ({}, {}, {})
    assert (first.loss, first.data_loss) == (reference.loss, reference.data_loss)
    after_quiet, after_full = quiet.train_step(x, labels, masks), full.train_step(x, labels, masks)
    assert after_quiet.loss == after_full.loss
    assert all(np.array_equal(after_quiet.params[t], after_full.params[t]) for t in after_full.params)


def test_run_after_training_infers_with_the_trained_weights():
    spec = training_spec(tiny_spec("softmax"))
    weights = canonical_weights(spec, seed=1)
    trained, reference = TorchBackend(), ReferenceBackend()
    run_steps(trained, spec, weights, steps=2)
    run_steps(reference, spec, weights, steps=2)
    x = np.random.default_rng(7).standard_normal((3, *spec.input_shape)).astype(np.float32)  # another batch size
    got, ref = trained.run(x, ["bn1"]), reference.run(x, ["bn1"])
    assert _rel(got.output, ref.output) <= LIMIT and _rel(got.layers["bn1"], ref.layers["bn1"]) <= LIMIT
    assert trained.model.training  # and training goes on after it


@pytest.mark.parametrize(("options", "masks", "message"), [
    ({"precision": "bf16"}, {}, "training runs in fp32 only; received precision 'bf16'"),
    ({}, {"drop1": None}, "backend 'torch': no mask for dropout layer 'drop2'; expected a 0/1 keep mask of shape "
                          "[4, 8]"),
    ({}, {"drop1": None, "drop2": None, "fc1": None}, "mask given for 'fc1', which is not a dropout layer"),
    ({}, {"drop1": (4, 6, 5), "drop2": None}, "backend 'torch': mask for dropout layer 'drop1' has shape [4, 6, 5]; "
                                              "expected [4, 6, 5, 5] (N, then the layer's input shape)"),
])
def test_a_wrong_setting_or_mask_is_a_one_line_error(options, masks, message):
    spec = tiny_spec()
    _, good = training_batch(spec, 4, seed=0)
    x = np.zeros((4, *spec.input_shape), dtype=np.float32)
    given = {name: good.get(name, np.ones(1)) if shape is None else np.ones(shape, np.float32)
             for name, shape in masks.items()}
    backend = TorchBackend(options=options)
    backend.build(spec, canonical_weights(spec))
    with pytest.raises(ValueError) as caught:
        backend.start_training()
        backend.train_step(x, np.zeros(4, np.int64), given)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_alexnet_step_returns_every_tensor_in_canonical_names_and_shapes():
    spec = load_spec("alexnet")
    spec = dataclasses.replace(spec, training=dataclasses.replace(spec.training, momentum=0.9))
    (step,) = run_steps(TorchBackend(), spec, canonical_weights(spec), steps=1, batch=2)
    shapes = spec.param_shapes()
    trainable = {f"{layer.name}.{p}" for layer in spec.layers for p, param in layer.params.items() if param.trainable}
    assert {t: v.shape for t, v in step.params.items()} == shapes
    assert {t: v.shape for t, v in step.grads.items()} == {t: shapes[t] for t in trainable}
    assert {t: v.shape for t, v in step.momentum.items()} == {t: shapes[t] for t in trainable}
    assert np.isfinite(step.loss) and step.loss >= step.data_loss > 0


def test_a_step_before_start_training_says_what_to_call():
    backend = TorchBackend()
    backend.build(tiny_spec(), canonical_weights(tiny_spec()))
    with pytest.raises(RuntimeError, match=r"train_step before start_training\(\); call build, start_training"):
        backend.train_step(np.zeros((2, 4, 11, 9), np.float32), np.zeros(2, np.int64), {})
