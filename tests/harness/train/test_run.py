"""compare --train end to end, through real workers: the reference against plugin backends that train
(tests/harness/train/conftest.py). A float32-storage backend passes; a gradient 0.1% off and decoupled
weight decay fail by name; ONNX runners are unsupported; --save keeps what plain NumPy rechecks; the
refusals are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alexbench import compare
from alexbench.harness.cli.main import main
from alexbench.harness.errors import ExitCode, UsageError
from alexbench.harness.results.document import read_results

SPEC = str(Path(__file__).parents[2] / "specs" / "train-small.yaml")


def test_a_float32_backend_trains_like_the_reference_and_numpy_rechecks_the_saved_steps(training_plugin, tmp_path):
    run = tmp_path / "run"
    doc = compare(SPEC, ["f32-storage", "onnx-torch"], train=True, steps=2, save_dir=run)
    assert doc.exit_code == ExitCode.OK, doc.verdict.summary
    assert [(e.name, e.status) for e in doc.backends] == [
        ("reference", "ok"), ("f32-storage", "ok"), ("onnx-torch", "unsupported")]
    assert doc.entry("onnx-torch").error.startswith("ONNX Runtime runs inference graphs here; training needs")
    assert doc.verdict.summary.startswith("PASS: 1 backends train like the float64 reference over 2 steps on "
                                          "'train-small' (f32-storage); unsupported: onnx-torch (ONNX Runtime")
    f32 = doc.entry("f32-storage").training
    assert len(f32.losses) == 2 and f32.losses == pytest.approx(doc.entry("reference").training.losses, rel=1e-6)
    assert doc.training.steps == 2 and doc.training.batch == 8 and doc.inputs.shape == [8, 3, 13, 11]
    assert doc.training.settings["learning_rate"] == 0.05 and doc.training.settings["loss_on"] == "logits"
    assert doc.training.masks["layers"] == ["drop1"] and doc.training.labels["source"] == "seeded, seed 0"

    # Plain NumPy, from the manifest: step 2's gradient of fc1.weight and the displacement of conv1.weight.
    manifest = json.loads((run / "manifest.json").read_text())
    ref, got = manifest["training"]["reference"]["steps"][1], manifest["training"]["f32-storage"]["steps"][1]
    g_ref, g_got = np.load(run / ref["gradient"]["fc1.weight"]), np.load(run / got["gradient"]["fc1.weight"])
    rel = np.linalg.norm(g_got - g_ref) / np.linalg.norm(g_ref)
    checks = {(t.tensor, t.kind): t for t in f32.steps[1].tensors}
    assert rel == pytest.approx(checks[("fc1.weight", "gradient")].rel_l2, rel=1e-9)
    from safetensors.numpy import load_file

    w0 = load_file(run / manifest["weights"])["conv1.weight"].astype(np.float64)
    w_ref, w_got = np.load(run / ref["parameter"]["conv1.weight"]), np.load(run / got["parameter"]["conv1.weight"])
    rel = np.linalg.norm(w_got - w_ref) / np.linalg.norm(w_ref - w0)
    assert rel == pytest.approx(checks[("conv1.weight", "parameter")].rel_l2, rel=1e-9)
    assert manifest["train"] == "train.npz" and np.load(run / "train.npz")["labels"].shape == (8,)


def test_planted_training_bugs_fail_naming_the_first_divergent_tensor(training_plugin, tmp_path, capsys):
    results = tmp_path / "r.json"
    code = main(["compare", "--train", "--spec", SPEC, "--backends", "f32-storage,scaled-gradient,decoupled-decay",
                 "--steps", "2", "--json", str(results)])
    out = capsys.readouterr().out
    assert code == ExitCode.MISMATCH
    doc = read_results(results)  # validates against the schema
    assert doc["schema"] == "alexbench.results/3"
    entries = {e["name"]: e for e in doc["backends"]}
    assert entries["f32-storage"]["status"] == "ok"
    scaled = entries["scaled-gradient"]["training"]["first_divergent"]
    assert (scaled["step"], scaled["kind"], scaled["tensor"]) == (1, "gradient", "fc1.weight")
    assert scaled["rel_l2"] == pytest.approx(1e-3, rel=1e-2)
    # The canonical buffer holds the coupled decay; the decoupled one does not: the first buffer in
    # backward order is off at step 1, by far more than float32 could.
    decoupled = entries["decoupled-decay"]["training"]["first_divergent"]
    assert (decoupled["step"], decoupled["kind"], decoupled["tensor"]) == (1, "momentum", "fc2.weight")
    assert decoupled["rel_l2"] > 10 * decoupled["limit"]
    assert (f"scaled-gradient (step 1, gradient fc1.weight: relative L2 {scaled['rel_l2']:.1e} > limit "
            f"{scaled['limit']:.1e})") in doc["verdict"]["summary"]
    # The table: the header, one loss per step per backend, the verdict.
    assert ("training: 2 SGD steps on the same batch of 8 (the spec trained with batch_size 32; --batch changes "
            "it); sgd, learning rate 0.05, momentum 0.9, weight decay 0.0005 (coupled), loss cross_entropy on the "
            "logits; l2 0.0005 on conv1.weight") in out
    block = out.split("loss per step (data loss plus penalties):\n")[1].split("\n\n")[0].splitlines()
    assert block[0].split() == ["loss", "step", "1", "step", "2"]
    assert [row.split()[0] for row in block[2:]] == ["reference", "f32-storage", "scaled-gradient", "decoupled-decay"]
    assert all(len(row.split()) == 3 for row in block[2:])
    assert "scaled-gradient: first diverges at step 1, gradient fc1.weight: relative L2 1.0e-03 > limit" in out
    assert out.rstrip().endswith(doc["verdict"]["summary"])


@pytest.mark.parametrize("args, message", [
    (["--train", "--precision", "bf16"], "--train: received --precision bf16; training is compared in fp32 only"),
    (["--train", "--model", "net.py:Net"], "--train: received --model net.py:Net; a user's own model runs "
                                           "inference only for now"),
    (["--labels", "y.npy"], "--labels y.npy: is an option of training; received it without --train"),
    (["--steps", "3"], "--steps 3: is an option of training; received it without --train"),
    (["--train", "--steps", "1000000000", "--backends", "f32-storage"], "--train: 1000000000 step(s) of 2 backends "
                                                                        "keep up to"),
], ids=["precision", "model", "labels alone", "steps alone", "disk"])
def test_refusals_are_one_line_and_exit_2(training_plugin, capsys, args, message):
    assert main(["compare", "--spec", SPEC, *args]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_steps_below_1_are_refused_by_the_argument_parser(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["compare", "--train", "--spec", SPEC, "--steps", "0"])
    assert raised.value.code == ExitCode.USAGE
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "alexbench compare: error: argument --steps: expected a positive integer; received 0")


def test_a_spec_with_unmodelled_training_settings_is_refused(tmp_path, capsys):
    text = Path(SPEC).read_text().replace("conv1: {kernel_regularizer: {l2: 0.0005}}",
                                          "conv1: {kernel_regularizer: {l1: 0.01}}")
    (tmp_path / "l1.yaml").write_text(text)
    assert main(["compare", "--train", "--spec", str(tmp_path / "l1.yaml")]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--train: spec 'train-small' (" in err and "records training settings alexbench does not model: layer " \
                                                      "'conv1': " in err and "l1" in err


def test_a_bad_labels_file_is_refused_before_any_worker(tmp_path, capsys):
    np.save(tmp_path / "y.npy", np.arange(5))
    assert main(["compare", "--train", "--spec", SPEC, "--labels", str(tmp_path / "y.npy")]) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == (
        f"alexbench compare: error: --labels {tmp_path / 'y.npy'}: received 5 labels for 8 inputs; expected a 1-D "
        "integer .npy array of 8 labels (one per input) in [0, 7)")


def test_the_api_refuses_like_the_command_line():
    with pytest.raises(UsageError, match="steps: expected an integer >= 1; received 0"):
        compare(SPEC, ["reference"], train=True, steps=0)
    with pytest.raises(UsageError, match="--labels y.npy: is an option of training"):
        compare(SPEC, ["reference"], labels="y.npy")
