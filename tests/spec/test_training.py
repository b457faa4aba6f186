"""The spec's training section: typed, validated with located one-line errors, and what the shipped
specs say about how each network was trained."""

from __future__ import annotations

import pytest

from alexbench.spec import SpecError, load_spec, parse_spec
from alexbench.spec.training import TrainingSpec, decay_groups, describe

BASE = """\
name: tiny
input: [3, 8, 8]
training:
  optimizer: sgd
  learning_rate: 0.01
  momentum: 0.9
  weight_decay: 0.0005
  batch_size: 4
  layers:
    conv1: {kernel_regularizer: {l2: 0.0005}}
layers:
  - {name: conv1, op: conv2d, filters: 4, kernel: 3, padding: 1}
  - {name: relu1, op: relu}
  - {name: flatten, op: flatten}
  - {name: fc1, op: linear, units: 3, bias: false}
"""
KEYS = "one of: batch_size, layers, learning_rate, loss, momentum, nesterov, optimizer, weight_decay"
LAYER_KEYS = ("kernel_regularizer or bias_regularizer: {l2: x} (modelled); another Keras *_regularizer or "
              "*_constraint (kept, not modelled)")


def error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "net.yaml")
    return str(info.value)


def test_a_full_section_is_typed():
    training = parse_spec(BASE).training
    assert training == TrainingSpec(optimizer="sgd", learning_rate=0.01, momentum=0.9, nesterov=False,
                                    weight_decay=0.0005, loss="cross_entropy", batch_size=4,
                                    penalties={"conv1.weight": 0.0005}, unmodelled={}, declared=True)
    assert training.effective_decay("conv1.weight") == 0.0015
    assert training.effective_decay("conv1.bias") == 0.0005


def test_no_section_is_undeclared_and_an_empty_one_takes_the_defaults():
    without = BASE[:BASE.index("training:")] + BASE[BASE.index("layers:\n  - "):]
    assert parse_spec(without).training == TrainingSpec(declared=False)
    partial = parse_spec(BASE.replace("momentum: 0.9", "nesterov: true\n  momentum: 0.5")
                         .replace("  learning_rate: 0.01\n", "").replace("  batch_size: 4\n", ""))
    assert (partial.training.learning_rate, partial.training.momentum, partial.training.nesterov,
            partial.training.batch_size, partial.training.declared) == (0.01, 0.5, True, None, True)


def test_the_canonical_spec_and_its_hash_ignore_training():
    changed = parse_spec(BASE.replace("learning_rate: 0.01", "learning_rate: 0.1").replace("l2: 0.0005", "l2: 0.1"))
    assert changed.sha256 == parse_spec(BASE).sha256
    assert "training" not in parse_spec(BASE).canonical()


def test_keras_records_beyond_an_l2_are_kept_as_not_modelled():
    layers = """\
  layers:
    conv1:
      kernel_regularizer: {l1: 0.1, l2: 0.2}
      bias_regularizer: {OrthogonalRegularizer: {factor: 0.01, mode: rows}}
      activity_regularizer: {l2: 0.01}
      kernel_constraint: {MaxNorm: {max_value: 2, axis: 0}}
    fc1: {kernel_regularizer: {l1: 0.0, l2: 0.0}}
"""
    training = parse_spec(BASE.replace("  layers:\n    conv1: {kernel_regularizer: {l2: 0.0005}}\n", layers)).training
    # An l2 of 0 is no penalty, an l1 of 0 nothing left out.
    assert training.penalties == {"conv1.weight": 0.2}
    assert training.unmodelled == {"conv1": {
        "kernel_regularizer": {"l1": 0.1}, "bias_regularizer": {"OrthogonalRegularizer": {"factor": 0.01,
                                                                                            "mode": "rows"}},
        "activity_regularizer": {"l2": 0.01}, "kernel_constraint": {"MaxNorm": {"max_value": 2, "axis": 0}}}}
    assert describe(training).endswith(
        "; l2 0.2 on conv1.weight; not modelled: conv1 (kernel_regularizer, bias_regularizer, activity_regularizer, "
        "kernel_constraint)")


CASES = {
    "the old free-form penalty": (
        BASE.replace("  layers:\n    conv1: {kernel_regularizer: {l2: 0.0005}}\n", "  l2_conv_kernels: 0.0005\n"),
        "net.yaml:9:20: spec: unknown field 'training.l2_conv_kernels' (per-layer l2 penalties are written under "
        "'layers', e.g. layers: {conv1: {kernel_regularizer: {l2: 0.0005}}}; a decay of every tensor is "
        f"'weight_decay'); received 'l2_conv_kernels'; expected {KEYS}"),
    "PyTorch's name for the learning rate": (
        BASE.replace("learning_rate:", "lr:"),
        f"net.yaml:5:7: spec: unknown field 'training.lr' (did you mean 'learning_rate'?); received 'lr'; "
        f"expected {KEYS}"),
    "a misspelt key": (
        BASE.replace("momentum:", "momentun:"),
        f"net.yaml:6:13: spec: unknown field 'training.momentun' (did you mean 'momentum'?); received 'momentun'; "
        f"expected {KEYS}"),
    "not a mapping": (
        BASE[:BASE.index("training:")] + "training: 0.0005\n" + BASE[BASE.index("layers:\n  - "):],
        "net.yaml:3:11: spec: field 'training' must be a mapping; received 0.0005 (number); expected a mapping with "
        "optimizer, learning_rate, momentum, nesterov, weight_decay, loss, batch_size, layers (all optional)"),
    "another optimizer": (
        BASE.replace("optimizer: sgd", "optimizer: SGD"),
        "net.yaml:4:14: spec: field 'training.optimizer' names an optimizer alexbench does not model (did you mean "
        "'sgd'?); received 'SGD'; expected 'sgd'"),
    "another loss": (
        BASE.replace("optimizer: sgd", "optimizer: sgd\n  loss: mse"),
        "net.yaml:5:9: spec: field 'training.loss' names a loss alexbench does not model; received 'mse'; expected "
        "'cross_entropy'"),
    "a zero learning rate": (
        BASE.replace("learning_rate: 0.01", "learning_rate: 0"),
        "net.yaml:5:18: spec: field 'training.learning_rate' is out of range; received 0.0; expected a number > 0"),
    "momentum 1": (
        BASE.replace("momentum: 0.9", "momentum: 1"),
        "net.yaml:6:13: spec: field 'training.momentum' is out of range; received 1.0; expected a number in [0, 1)"),
    "a string weight decay": (
        BASE.replace("weight_decay: 0.0005", "weight_decay: 5e-4"),  # YAML 1.1 reads 5e-4 as a string
        "net.yaml:7:17: spec: field 'training.weight_decay' has the wrong type; received '5e-4' (string); expected "
        "a number >= 0"),
    "a negative weight decay": (
        BASE.replace("weight_decay: 0.0005", "weight_decay: -0.0005"),
        "net.yaml:7:17: spec: field 'training.weight_decay' is out of range; received -0.0005; expected a number "
        ">= 0"),
    "nesterov without momentum": (
        BASE.replace("momentum: 0.9", "momentum: 0.0\n  nesterov: true"),
        "net.yaml:7:13: spec: field 'training.nesterov' needs momentum (Nesterov's step is a look-ahead along the "
        "momentum buffer); received nesterov true with momentum 0; expected momentum in (0, 1), or nesterov false"),
    "nesterov with the default momentum": (
        BASE.replace("  momentum: 0.9\n", "  nesterov: true\n"),
        "net.yaml:6:13: spec: field 'training.nesterov' needs momentum (Nesterov's step is a look-ahead along the "
        "momentum buffer); received nesterov true with momentum 0; expected momentum in (0, 1), or nesterov false"),
    "a zero batch": (
        BASE.replace("batch_size: 4", "batch_size: 0"),
        "net.yaml:8:15: spec: field 'training.batch_size' must be positive; received 0; expected a positive "
        "integer"),
    "a layer the spec does not have": (
        BASE.replace("    conv1: {kernel", "    conv: {kernel"),
        "net.yaml:10:11: spec: field 'training.layers.conv' names no layer of the spec (did you mean 'conv1'?); "
        "received 'conv'; expected a layer with parameters: conv1, fc1"),
    "a parameter the layer does not have": (
        BASE.replace("conv1: {kernel_regularizer: {l2: 0.0005}}", "fc1: {bias_regularizer: {l2: 0.0005}}"),
        "net.yaml:10:29: spec: field 'training.layers.fc1.bias_regularizer': layer 'fc1' (linear) has no trainable "
        "'bias' to regularize; received {'l2': 0.0005} (mapping); expected one of this layer's: kernel_regularizer"),
    "a layer without parameters": (
        BASE.replace("conv1: {kernel_regularizer: {l2: 0.0005}}", "relu1: {kernel_regularizer: {l2: 0.0005}}"),
        "net.yaml:10:33: spec: field 'training.layers.relu1.kernel_regularizer': layer 'relu1' (relu) has no "
        "trainable 'weight' to regularize; received {'l2': 0.0005} (mapping); expected no entry: the layer has no "
        "weight or bias"),
    "a misspelt regularizer": (
        BASE.replace("kernel_regularizer", "kernel_regulariser"),
        "net.yaml:10:33: spec: unknown field 'training.layers.conv1.kernel_regulariser' (did you mean "
        f"'kernel_regularizer'?); received 'kernel_regulariser'; expected {LAYER_KEYS}"),
    "a misspelt factor": (
        BASE.replace("{l2: 0.0005}", "{l22: 0.0005}"),
        "net.yaml:10:39: spec: unknown field 'training.layers.conv1.kernel_regularizer.l22' (did you mean 'l2'?); "
        "received 'l22'; expected {l2: x} with x >= 0 (an l1 factor or {KerasClass: config} is kept, not "
        "modelled)"),
    "a negative l2": (
        BASE.replace("l2: 0.0005", "l2: -0.0005"),
        "net.yaml:10:38: spec: field 'training.layers.conv1.kernel_regularizer.l2' is out of range; received "
        "-0.0005; expected a number >= 0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_message(case):
    text, expected = CASES[case]
    assert error(text) == expected


def test_training_problems_come_in_file_order_with_the_layers():
    text = BASE.replace("momentum: 0.9", "momentum: 2").replace("units: 3", "units: 0")
    lines = error(text).splitlines()
    assert [line.split(": ")[0] for line in lines[:2]] == ["net.yaml:6:13", "net.yaml:15:36"]
    assert lines[2] == "2 problems in net.yaml"


def test_alexnet_trains_as_the_paper_says():
    training = load_spec("alexnet").training
    assert (training.optimizer, training.learning_rate, training.momentum, training.weight_decay,
            training.batch_size, training.loss, training.penalties) == ("sgd", 0.01, 0.9, 0.0005, 128,
                                                                        "cross_entropy", {})


def test_alexnet_owt_trains_with_torchvisions_recipe():
    training = load_spec("alexnet-owt").training
    assert (training.learning_rate, training.momentum, training.weight_decay, training.batch_size) == (
        0.01, 0.9, 0.0001, 256)


def test_the_articles_keras_l2_is_twice_the_papers_decay_on_conv_kernels_and_none_elsewhere():
    spec = load_spec("alexnet-blog-keras")
    training = spec.training
    assert training.weight_decay == 0.0 and not training.unmodelled
    trainable = [f"{layer.name}.{p}" for layer in spec.layers for p, param in layer.params.items() if param.trainable]
    kernels = [f"conv{i}.weight" for i in range(1, 6)]
    assert decay_groups(training, trainable) == [
        (kernels, 0.001, 0.0005), ([t for t in trainable if t not in kernels], 0.0, 0.0)]
    assert spec.loss_on == "probabilities"
