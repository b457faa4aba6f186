"""``alexbench summary``: after the totals, the training setup and the weight decay each trainable
tensor feels (coupled decay + 2 x l2), grouped so that AlexNet's 16 tensors take a line."""

from __future__ import annotations

import json
from pathlib import Path

from alexbench.harness.cli.main import main

SPECS = Path(__file__).resolve().parents[2] / "specs"


def summary_tail(capsys, spec: str, lines: int) -> list[str]:
    assert main(["summary", spec]) == 0
    return capsys.readouterr().out.splitlines()[-lines:]


def test_alexnet_decays_every_tensor_as_the_paper_says(capsys):
    assert summary_tail(capsys, "alexnet", 3) == [
        "Training: sgd, learning rate 0.01, momentum 0.9, weight decay 0.0005 (coupled), batch size 128, "
        "loss cross_entropy on the logits",
        "Effective weight decay per step (coupled decay + 2 x l2; the gradient gains decay x w):",
        "  every trainable tensor (16): 0.0005"]


def test_the_articles_l2_doubles_the_decay_of_the_conv_kernels_only(capsys):
    assert summary_tail(capsys, "alexnet-blog-keras", 4) == [
        "Training: sgd, learning rate 0.01, momentum 0.9, no weight decay, batch size 128, "
        "loss cross_entropy on the probabilities",
        "Effective weight decay per step (coupled decay + 2 x l2; the gradient gains decay x w):",
        "  conv1.weight, conv2.weight, conv3.weight, conv4.weight, conv5.weight: 0.001 (l2 0.0005)",
        "  every other trainable tensor (21): 0"]


def test_a_spec_without_training_says_what_compare_train_uses(capsys):
    assert summary_tail(capsys, str(SPECS / "conv-bn.yaml"), 1) == [
        "No training section: compare --train uses the defaults (sgd, learning rate 0.01, no momentum, "
        "no weight decay, loss cross_entropy)"]


def test_unmodelled_settings_are_named(tmp_path, capsys):
    spec = tmp_path / "net.yaml"
    spec.write_text("name: tiny\ninput: [1, 4, 4]\n"
                    "training: {weight_decay: 0.001, layers: {fc1: {kernel_regularizer: {l1: 0.1, l2: 0.25}}}}\n"
                    "layers:\n  - {name: flatten, op: flatten}\n  - {name: fc1, op: linear, units: 2}\n")
    assert summary_tail(capsys, str(spec), 5) == [
        "Training: sgd, learning rate 0.01, no momentum, weight decay 0.001 (coupled), loss cross_entropy on the "
        "logits",
        "Not modelled (compare --train refuses the spec): fc1 {'kernel_regularizer': {'l1': 0.1}}",
        "Effective weight decay per step (coupled decay + 2 x l2; the gradient gains decay x w):",
        "  fc1.weight: 0.501 (l2 0.25)",
        "  fc1.bias: 0.001"]


def test_json_has_the_settings_and_every_trainable_tensors_decay(capsys):
    assert main(["summary", "alexnet-blog-keras", "--json"]) == 0
    training = json.loads(capsys.readouterr().out)["training"]
    assert training["learning_rate"] == 0.01 and training["momentum"] == 0.9 and training["declared"]
    assert training["loss_on"] == "probabilities" and training["unmodelled"] == {}
    assert training["penalties"] == {f"conv{i}.weight": 0.0005 for i in range(1, 6)}
    decay = training["effective_decay"]
    assert len(decay) == 26 and "bn1.running_mean" not in decay
    assert {t for t, x in decay.items() if x} == {f"conv{i}.weight" for i in range(1, 6)}
    assert decay["conv1.weight"] == 0.001
