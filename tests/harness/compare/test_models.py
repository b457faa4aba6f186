"""``compare --model``: the user's own model runs itself as a backend, layer by layer against the
reference; its structure is checked against --spec first; planted bugs are caught at their layer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alexbench.harness.cli.main import main

MODELS = Path(__file__).parents[2] / "models"
TORCH = MODELS / "torch_models.py"


def _compare(tmp_path, *args: str) -> tuple[int, dict | None]:
    out = tmp_path / "r.json"
    code = main(["compare", *args, "--json", str(out), "-q"])
    return code, json.loads(out.read_text()) if out.exists() else None


def _entry(doc: dict, name: str) -> dict:
    return next(b for b in doc["backends"] if b["name"] == name)


def test_a_pytorch_model_runs_itself_against_the_reference(tmp_path):
    code, doc = _compare(tmp_path, "--model", f"{TORCH}:small_functional_net", "--input-shape", "3,32,28",
                         "--batch", "2")
    assert code == 0
    entry = _entry(doc, "small_functional_net")
    assert entry["status"] == "ok" and entry["param_count_ok"]
    assert [layer["name"] for layer in entry["layers"]] == ["conv1", "norm1", "conv2", "bn2", "fc3"]
    assert doc["weights"]["source"] == "the model's own (small_functional_net)"
    assert [b["name"] for b in doc["backends"]] == ["reference", "small_functional_net"]


def test_other_backends_run_the_models_weights_too(tmp_path):
    code, doc = _compare(tmp_path, "--model", f"{TORCH}:small_net", "--input-shape", "3,32,28", "--batch", "2",
                         "--backends", "torch", "--no-onnx")
    assert code == 0 and [b["name"] for b in doc["backends"]] == ["reference", "torch", "small_net"]


def test_a_structure_that_differs_from_the_spec_is_refused_with_the_diff(tmp_path, capsys):
    spec = tmp_path / "small.yaml"
    assert main(["import", f"{TORCH}:small_functional_net", "-o", str(spec), "--input-shape", "3,32,28"]) == 0
    text = spec.read_text().replace("stride: [2, 2], padding: [1, 1, 2, 2]", "stride: [1, 1], padding: [1, 1, 2, 2]")
    (tmp_path / "planted.yaml").write_text(text)
    code = main(["compare", "--model", f"{TORCH}:small_functional_net", "--spec", str(tmp_path / "planted.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    assert "--model small_functional_net does not have the structure of 'SmallFunctionalNet':" in out
    assert "conv1  conv2d: stride [2,2] -> [1,1]" in out


def test_weights_that_differ_from_what_the_model_should_hold_are_caught_at_their_layer(tmp_path):
    """--weights: the weights the model should hold (the reference uses them); a first linear layer whose
    inputs were reordered H, W, C (the classic port bug) diverges at exactly that layer."""
    spec, weights = tmp_path / "small.yaml", tmp_path / "small.safetensors"
    assert main(["import", f"{TORCH}:small_functional_net", "-o", str(spec), "--input-shape", "3,32,28"]) == 0
    code, doc = _compare(tmp_path, "--model", f"{TORCH}:small_functional_net", "--spec", str(spec),
                         "--weights", str(weights), "--batch", "2")
    assert code == 0
    code, doc = _compare(tmp_path, "--model", f"{TORCH}:small_net_fc_hwc", "--spec", str(spec),
                         "--weights", str(weights), "--batch", "2")
    assert code == 1
    entry = _entry(doc, "small_net_fc_hwc")
    assert entry["first_divergent_layer"]["name"] == "fc3"
    assert [layer["name"] for layer in entry["layers"] if not layer["ok"]] == ["fc3"]


def test_bad_model_sources_are_one_line_exit_2(tmp_path, capsys):
    code = main(["compare", "--model", f"{TORCH}:ArticleAlexNet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "alexbench compare: error: layer 'fc6' (linear) from module 'fully_connected.0' (Linear): input features "
        "disagree with in_features; received 1536 features from layer 'flatten' (= 384x2x2 from layer 'pool5', "
        "flattened); expected 9216 (in_features)")


@pytest.mark.slow
def test_torchvision_style_alexnet_against_alexnet_owt(tmp_path):
    """The acceptance run: the model passes against the shipped spec; fc7 transposed is caught at fc7
    (given the weights it should hold); a wrong stride is a structural difference."""
    spec, weights = tmp_path / "tv.yaml", tmp_path / "tv.safetensors"
    assert main(["import", f"{TORCH}:seeded_torchvision_alexnet", "-o", str(spec)]) == 0
    code, doc = _compare(tmp_path, "--model", f"{TORCH}:seeded_torchvision_alexnet", "--spec", "alexnet-owt",
                         "--batch", "2")
    assert code == 0
    assert all(layer["ok"] for layer in _entry(doc, "seeded_torchvision_alexnet")["layers"])
    code, doc = _compare(tmp_path, "--model", f"{TORCH}:torchvision_alexnet_fc7_transposed", "--spec",
                         "alexnet-owt", "--weights", str(weights), "--batch", "2")
    assert code == 1 and _entry(doc, "torchvision_alexnet_fc7_transposed")["first_divergent_layer"]["name"] == "fc7"
    code, _ = _compare(tmp_path, "--model", f"{TORCH}:torchvision_alexnet_wrong_stride", "--spec", "alexnet-owt")
    assert code == 1
