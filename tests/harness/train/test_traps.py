"""The training traps of issue 14, each planted in a real backend and caught through the command line.

Every plant is a plugin backend (``make_plugin``): TorchBackend, KerasBackend (TensorFlow) or ReferenceBackend
with ONE hook overridden to do what a framework's default, or a plausible slip, would do. `alexbench compare
--train` must exit 1 and name the step, kind and tensor where the trap first shows. The same backends
unmodified pass on the same specs, so each failure is its plant's. The traps sharing a spec run in one
compare (one reference, workers side by side): the run is cached for the module, each trap is its own test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from alexbench.harness.cli.main import main
from alexbench.harness.errors import ExitCode
from alexbench.harness.results.document import read_results

TRAIN_SMALL = Path(__file__).parents[2] / "specs" / "train-small.yaml"

# Ends in softmax (the loss reads probabilities) with logits far apart at init: at batch 4 two of the seeded
# labels' probabilities are below Keras' clip of 1e-7 (1.5e-9 and 2.1e-8), none near float32's underflow.
# LRN with a large alpha, so its backward weighs in the gradient below it.
TRAIN_SOFTMAX = """\
name: train-softmax
description: conv, LRN, pooling and a linear layer ending in softmax, with logits far apart
input: [3, 7, 6]
init:
  weight: {dist: normal, std: 1.0}
  bias: {dist: normal, std: 0.1}
training: {optimizer: sgd, learning_rate: 0.01, momentum: 0.9}
layers:
  - {name: conv1, op: conv2d, filters: 4, kernel: 3, padding: 1}
  - {name: norm1, op: lrn, size: 3, alpha: 0.5, beta: 0.75, k: 1.0}
  - {name: relu1, op: relu}
  - {name: pool1, op: maxpool2d, kernel: 2, stride: 2}
  - {name: flatten, op: flatten}
  - {name: fc1, op: linear, units: 6}
  - {name: softmax, op: softmax}
"""

PLANTS = '''
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from alexbench.backends.keras.backend import KerasBackend
from alexbench.backends.reference import training
from alexbench.backends.reference.backend import ReferenceBackend
from alexbench.backends.reference.forward import channel_window_sum
from alexbench.backends.torch.backend import TorchBackend


class TorchControl(TorchBackend):
    name = "torch-control"


class KerasControl(KerasBackend):
    name = "keras-control"


class ReferenceControl(ReferenceBackend):
    name = "reference-control"


class KerasDecoupledDecay(KerasBackend):
    """Keras' own weight_decay= (w -= lr wd w beside the momentum), and no coupled decay in the gradient."""
    name = "keras-decoupled-decay"

    def make_optimizer(self):
        t = self.spec.training
        return self.keras.optimizers.SGD(learning_rate=t.learning_rate, momentum=t.momentum, nesterov=t.nesterov,
                                         weight_decay=t.weight_decay)

    def coupled_decay(self, g, w):
        return g


class KerasL2AsDecay(KerasBackend):
    """The l2 penalty x sum(w^2) read as a weight decay of x: gradient x w instead of 2x w."""
    name = "keras-l2-as-decay"

    def penalty_gradient(self, tensor, w):
        return self.spec.training.l2(tensor) * w


class KerasBiasedRunningVar(KerasBackend):
    """Keras' default: the running variance takes the biased batch variance."""
    name = "keras-biased-running-var"

    def running_var_correction(self, n):
        return 1.0


class KerasMomentumFlipped(KerasBackend):
    """The spec's (torch's) batch norm momentum handed to Keras, whose momentum is the old value's weight."""
    name = "keras-bn-momentum-flipped"

    def bn_momentum(self, layer):
        return layer.attrs["momentum"]


class TorchDropoutUnscaled(TorchBackend):
    """Dropout without the inverted scaling 1 / (1 - rate)."""
    name = "torch-dropout-unscaled"

    def train_dropout(self, x, mask, rate):
        return x * mask


class TorchDropoutOwnMask(TorchBackend):
    """A mask from torch's own RNG, not the harness' (same rate, other cells)."""
    name = "torch-dropout-own-mask"

    def train_dropout(self, x, mask, rate):
        import torch

        own = torch.rand(mask.shape, generator=torch.Generator().manual_seed(1)) >= rate
        return x * own.to(x.dtype) / (1.0 - rate)


class KerasClippedProbabilities(KerasBackend):
    """keras.losses.categorical_crossentropy on probabilities as JAX and torch Keras compute it (on TensorFlow
    it reads the softmax's cached logits instead): renormalised, clipped to [1e-7, 1 - 1e-7]."""
    name = "keras-clipped-probabilities"

    def train_loss(self, out, labels):
        ops = self.keras.ops
        p = ops.clip(ops.softmax(out, axis=1), 1e-7, 1.0 - 1e-7)  # the trainer gives the softmax's input
        return -ops.mean(ops.take_along_axis(ops.log(p), ops.expand_dims(labels, 1), axis=1))


class KerasFcRowsHWC(KerasBackend):
    """The first linear after a flatten reports its weight gradient with the input rows in Keras' NHWC
    flatten order (H, W, C), as a model without the Permute before Flatten would hold them."""
    name = "keras-fc-rows-hwc"

    def canonical_gradient(self, layer, param, array):
        g = super().canonical_gradient(layer, param, array)
        chw = None
        for spec_layer in self.spec.layers:
            if spec_layer.op == "flatten":
                chw = spec_layer.input_shape
            elif spec_layer.op == "linear" and chw is not None:
                break
        if (layer.name, param) != (spec_layer.name, "weight"):
            return g
        return g.reshape(len(g), *chw).transpose(0, 2, 3, 1).reshape(len(g), -1)


def even_window_lrn_backward(dy, layer, p, saved):
    """LRN's backward summing over an even window of size - 1 channels, padded like torch pads an even size
    (size // 2 before, (size - 1) // 2 after); the forward's s keeps the spec's window."""
    a = layer.attrs
    x, size, beta = saved.x, a["size"], a["beta"]
    s = a["k"] + a["alpha"] / size * channel_window_sum(x * x, size)
    even = size - 1
    padded = np.pad(dy * x * s ** (-beta - 1), ((0, 0), (even // 2, (even - 1) // 2), (0, 0), (0, 0)))
    through_s = sliding_window_view(padded, even, axis=1).sum(axis=-1)
    return dy * s**-beta - 2.0 * beta * a["alpha"] / size * x * through_s, {}


class ReferenceLrnEvenWindow(ReferenceBackend):
    """The reference with the even-window LRN backward, during its own steps only (the module's table is
    restored after each: nothing else in the process, nor the real reference's worker, sees it)."""
    name = "reference-lrn-even-window"

    def train_step(self, x, labels, masks, readout=True):
        right = training.BACKWARD["lrn"]
        training.BACKWARD["lrn"] = even_window_lrn_backward
        try:
            return super().train_step(x, labels, masks, readout)
        finally:
            training.BACKWARD["lrn"] = right
'''

PLUGIN_BACKENDS = {
    "torch-control": "TorchControl", "keras-control": "KerasControl", "reference-control": "ReferenceControl",
    "keras-decoupled-decay": "KerasDecoupledDecay", "keras-l2-as-decay": "KerasL2AsDecay",
    "keras-biased-running-var": "KerasBiasedRunningVar", "keras-bn-momentum-flipped": "KerasMomentumFlipped",
    "torch-dropout-unscaled": "TorchDropoutUnscaled", "torch-dropout-own-mask": "TorchDropoutOwnMask",
    "keras-clipped-probabilities": "KerasClippedProbabilities", "keras-fc-rows-hwc": "KerasFcRowsHWC",
    "reference-lrn-even-window": "ReferenceLrnEvenWindow",
}


@dataclass(frozen=True)
class Trap:
    backend: str
    spec: str
    first: tuple[int, str, str]  # (step, kind, tensor) of first_divergent
    # When the loss comes first: the first failing tensor of that step, in backward order (kind, tensor).
    first_tensor: tuple[str, str] | None = None
    # Every failing (kind, tensor) of step 1, in backward order, where the trap's reach is that small: a
    # reported-only gradient, a running statistic nothing in training reads, a penalty or an LRN window that
    # touches only the layer below.
    step1_failures: tuple[tuple[str, str], ...] | None = None


def own(*tensors: str, kinds: tuple[str, ...] = ("gradient", "parameter", "momentum")) -> tuple[tuple[str, str], ...]:
    return tuple((kind, tensor) for tensor in tensors for kind in kinds)


TRAPS = [
    # Step 1's weights agree (w -= lr wd w apart or inside b is the same at b = d), the buffers do not.
    Trap("keras-decoupled-decay", "train-small", (1, "momentum", "fc2.weight")),
    Trap("keras-l2-as-decay", "train-small", (1, "gradient", "conv1.weight"), step1_failures=own("conv1.weight")),
    Trap("keras-biased-running-var", "train-small", (1, "statistic", "bn1.running_var"),
         step1_failures=own("bn1.running_var", kinds=("statistic",))),
    Trap("keras-bn-momentum-flipped", "train-small", (1, "statistic", "bn1.running_mean"),
         step1_failures=own("bn1.running_mean", "bn1.running_var", kinds=("statistic",))),
    # A wrong dropout changes the forward, so the loss is named first; the gradients then from the last layer.
    Trap("torch-dropout-unscaled", "train-small", (1, "loss", "loss"), ("gradient", "fc2.weight")),
    Trap("torch-dropout-own-mask", "train-small", (1, "loss", "loss"), ("gradient", "fc2.weight")),
    Trap("keras-clipped-probabilities", "train-softmax", (1, "loss", "loss"), ("gradient", "fc1.weight")),
    # Only the reported gradient is permuted (the update uses Keras' own): nothing else fails.
    Trap("keras-fc-rows-hwc", "train-small", (1, "gradient", "fc1.weight"),
         step1_failures=own("fc1.weight", kinds=("gradient",))),
    Trap("reference-lrn-even-window", "train-softmax", (1, "gradient", "conv1.weight"),
         step1_failures=own("conv1.weight", "conv1.bias")),
]
CONTROLS = ("torch-control", "keras-control", "reference-control")


@dataclass
class Run:
    code: int
    doc: dict
    out: str

    def training(self, backend: str) -> dict:
        return next(e for e in self.doc["backends"] if e["name"] == backend)["training"]


@pytest.fixture(scope="module")
def runs() -> dict:
    """(spec, backends) -> Run, filled by ``compare_train``."""
    return {}


@pytest.fixture
def compare_train(make_plugin, runs, tmp_path_factory, capsys):
    """compare_train(spec, backends) -> the Run of `alexbench compare --train` (2 steps, batch 4) of the plugin
    backends on spec "train-small" or "train-softmax"; each (spec, backends) runs once per module."""
    make_plugin({"alexbench_trap_plugin": PLANTS},
                {name: f"alexbench_trap_plugin:{cls}" for name, cls in PLUGIN_BACKENDS.items()})

    def run(spec: str, backends: list[str]) -> Run:
        key = (spec, tuple(backends))
        if key not in runs:
            folder = tmp_path_factory.mktemp("traps")
            spec_path = TRAIN_SMALL if spec == "train-small" else folder / "train-softmax.yaml"
            if spec == "train-softmax":
                spec_path.write_text(TRAIN_SOFTMAX)
            capsys.readouterr()
            code = main(["compare", "--train", "--spec", str(spec_path), "--backends", ",".join(backends),
                         "--no-onnx", "--steps", "2", "--batch", "4", "--json", str(folder / "r.json")])
            runs[key] = Run(code, read_results(folder / "r.json"), capsys.readouterr().out)
        return runs[key]

    return run


def trap_run(compare_train, spec: str) -> Run:
    """The one run of every trap planted on ``spec``."""
    return compare_train(spec, [t.backend for t in TRAPS if t.spec == spec])


def divergence_words(first: dict) -> str:
    what = "loss: relative error" if first["kind"] == "loss" else f"{first['kind']} {first['tensor']}: relative L2"
    return f"step {first['step']}, {what} {first['rel_l2']:.1e} > limit {first['limit']:.1e}"


@pytest.mark.parametrize("trap", TRAPS, ids=[t.backend for t in TRAPS])
def test_each_trap_is_caught_at_its_step_kind_and_tensor(compare_train, trap):
    run = trap_run(compare_train, trap.spec)
    assert run.code == ExitCode.MISMATCH
    entry = next(e for e in run.doc["backends"] if e["name"] == trap.backend)
    assert entry["status"] == "mismatch", entry.get("error")
    first = entry["training"]["first_divergent"]
    assert (first["step"], first["kind"], first["tensor"]) == trap.first
    # Caught by far, not at the edge of float32's rounding.
    assert first["rel_l2"] > 10 * first["limit"], first
    step = entry["training"]["steps"][first["step"] - 1]
    if trap.first_tensor is not None:
        bad = next(t for t in step["tensors"] if not t["ok"])
        assert (bad["kind"], bad["tensor"]) == trap.first_tensor
        assert bad["rel_l2"] > 10 * bad["limit"], bad
    if trap.step1_failures is not None:
        step1 = entry["training"]["steps"][0]["tensors"]
        assert tuple((t["kind"], t["tensor"]) for t in step1 if not t["ok"]) == trap.step1_failures
    words = divergence_words(first)
    assert f"{trap.backend}: first diverges at {words}" in run.out
    assert f"{trap.backend} ({words})" in run.doc["verdict"]["summary"]


def test_decoupled_decay_leaves_step_1_parameters_right_and_shows_in_step_2s(compare_train):
    run = trap_run(compare_train, "train-small")
    steps = run.training("keras-decoupled-decay")["steps"]
    kinds_ok = [{kind: all(t["ok"] for t in s["tensors"] if t["kind"] == kind) for kind in ("parameter", "momentum")}
                for s in steps]
    assert kinds_ok == [{"parameter": True, "momentum": False}, {"parameter": False, "momentum": False}]
    assert steps[0]["loss_rel_err"] <= run.doc["training"]["tolerance"]["loss"]


def test_the_clipped_loss_trap_has_a_label_probability_below_the_clip(compare_train):
    # -log p averaged over the batch above -log 1e-7: some label's probability is below Keras' clip.
    run = trap_run(compare_train, "train-softmax")
    assert run.training("reference")["losses"][0] > -math.log(1e-7)


@pytest.mark.parametrize("spec", ["train-small", "train-softmax"])
def test_the_unmodified_backends_as_plugins_pass_on_the_same_specs(compare_train, spec):
    run = compare_train(spec, list(CONTROLS))
    assert run.code == ExitCode.OK, run.doc["verdict"]["summary"]
    assert [(e["name"], e["status"]) for e in run.doc["backends"]] == [
        ("reference", "ok"), *[(name, "ok") for name in CONTROLS]]
    assert all(run.training(name)["first_divergent"] is None for name in CONTROLS)
    assert run.doc["verdict"]["summary"].startswith("PASS: 3 backends train like the float64 reference over 2 steps")
