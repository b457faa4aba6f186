"""Acceptance of `alexbench import`: the same network from PyTorch code, Keras code, torch's ONNX export
and tf2onnx's ONNX export imports to one spec and bit-identical canonical weights; torchvision's AlexNet
imports to alexnet-owt; the seed article's broken view is refused at the layer that breaks; every
refusal of the command is one exact line, exit 2, and writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from alexbench.harness.cli.main import main
from alexbench.harness.model_import import import_source
from alexbench.spec import load_weights
from alexbench.spec.diff import diff_specs
from alexbench.spec.imported import ImportResult

TORCH_MODELS = Path(__file__).resolve().parents[1] / "models" / "torch_models.py"
INPUT = (3, 28, 20)  # C, H, W of parity_net: N (2 in the checks) != C != H != W
NAMES = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc3", "relu3", "fc4", "softmax"]
OTHERS = ("keras", "torch-onnx", "keras-onnx")  # each compared with "torch": equal to it, equal to each other


def keras_twin(torch_model, model, *, reorder_fc_rows: bool = True):
    """``model`` (keras_models.parity_net_keras) given the torch model's weights, from its own state_dict
    (not from an import, which would make the comparison circular). Keras' Flatten of the 7x5x12
    map reads H, W, C, so the first Dense kernel's rows are reordered from torch's C, H, W."""
    from alexbench.backends.keras.layouts import conv_weight_to_keras, linear_weight_to_keras

    sd = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    fc = sd["classifier.1.weight"]
    if reorder_fc_rows:
        fc = fc.reshape(16, 12, 7, 5).transpose(0, 2, 3, 1).reshape(16, -1)
    conv1, _, conv2, _, _, dense1, dense2 = model.layers
    conv1.set_weights([conv_weight_to_keras(sd["features.0.weight"]), sd["features.0.bias"]])
    conv2.set_weights([conv_weight_to_keras(sd["features.3.weight"]), sd["features.3.bias"]])
    dense1.set_weights([linear_weight_to_keras(fc), sd["classifier.1.bias"]])
    dense2.set_weights([linear_weight_to_keras(sd["classifier.3.weight"]), sd["classifier.3.bias"]])
    return model


@dataclass
class Sources:
    torch_model: object
    keras_model: object
    onnx: dict[str, Path]  # "torch-onnx" / "keras-onnx" -> the exported file
    results: dict[str, ImportResult]  # "torch", "keras", "torch-onnx", "keras-onnx"


@pytest.fixture(scope="module")
def sources(tmp_path_factory, test_model) -> Sources:
    """The four sources of parity_net, each imported; the ONNX files exported the way alexbench's own
    backends export theirs (backends/torch/export.py, backends/keras/export.py)."""
    from alexbench.backends.keras.export import export_keras_model
    from alexbench.backends.torch.export import export_torch_model

    folder = tmp_path_factory.mktemp("model-import")
    torch_model = test_model("torch_models.py:parity_net")
    keras_model = keras_twin(torch_model, test_model("keras_models.py:parity_net_keras"))
    results = {"torch": import_source(torch_model, input_shape=INPUT), "keras": import_source(keras_model)}
    onnx = {"torch-onnx": folder / "parity_torch.onnx", "keras-onnx": folder / "parity_keras.onnx"}
    export_torch_model(torch_model, results["torch"].spec, onnx["torch-onnx"])
    export_keras_model(keras_model, results["keras"].spec, onnx["keras-onnx"])
    results.update({kind: import_source(str(path)) for kind, path in onnx.items()})
    return Sources(torch_model, keras_model, onnx, results)


def differing_tensors(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    """The weight names whose tensors are not bit-identical (value, shape or dtype), or only one side has."""
    return sorted(name for name in a.keys() | b.keys()
                  if name not in a or name not in b or a[name].dtype != b[name].dtype
                  or not np.array_equal(a[name], b[name]))


def _structure(result: ImportResult) -> dict:
    canonical = result.spec.canonical()
    canonical.pop("name")  # each source names the model its own way
    return canonical


def test_the_keras_twin_computes_what_the_torch_model_computes(sources):
    """The premise of the comparison: the weights were carried over correctly."""
    import torch

    x = np.random.default_rng(0).standard_normal((2, *INPUT)).astype(np.float32)
    with torch.no_grad():
        expected = sources.torch_model(torch.from_numpy(x)).numpy()
    got = np.asarray(sources.keras_model(x.transpose(0, 2, 3, 1), training=False))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_the_torch_module_imports_to_the_expected_spec(sources):
    result = sources.results["torch"]
    assert result.names == NAMES and [layer.name for layer in result.spec.layers] == NAMES
    assert list(result.spec.input_shape) == list(INPUT)
    assert sorted(result.weights) == sorted(f"{layer}.{p}" for layer in ("conv1", "conv2", "fc3", "fc4")
                                            for p in ("weight", "bias"))
    assert all(w.dtype == np.float32 and np.any(w != 0) for w in result.weights.values())


@pytest.mark.parametrize("kind", OTHERS)
def test_every_source_imports_to_the_same_spec_and_bit_identical_weights(sources, kind):
    base, other = sources.results["torch"], sources.results[kind]
    assert _structure(other) == _structure(base)
    assert diff_specs(base.spec, other.spec).same
    assert other.names == base.names == NAMES
    assert differing_tensors(base.weights, other.weights) == []


def test_a_dense_kernel_not_reordered_for_the_flatten_is_caught(sources, test_model):
    """Planted: the classic porting bug, torch's C,H,W-ordered fc rows given to Keras as they are. The
    structure cannot see it; the weight comparison names the one tensor."""
    planted = import_source(keras_twin(sources.torch_model, test_model("keras_models.py:parity_net_keras"),
                                      reorder_fc_rows=False))
    assert diff_specs(sources.results["torch"].spec, planted.spec).same
    assert differing_tensors(sources.results["torch"].weights, planted.weights) == ["fc3.weight"]


def _import(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["import", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_imports_code_and_onnx_files_to_the_same_spec_and_weights(sources, capsys, tmp_path):
    specs = {"torch": tmp_path / "from-code.yaml", **{kind: tmp_path / f"{kind}.yaml" for kind in sources.onnx}}
    code, out, err = _import(capsys, f"{TORCH_MODELS}:parity_net", "-o", str(specs["torch"]),
                             "--input-shape", "3,28,20")
    assert code == 0 and err == ""
    assert out.splitlines()[0] == (f"imported {TORCH_MODELS}:parity_net (torch.fx): 11 layers, input [3, 28, 20], "
                                   f"{sources.results['torch'].spec.param_count:,} parameters, "
                                   f"{sources.results['torch'].spec.macs:,} MACs")
    for kind, path in sources.onnx.items():
        assert _import(capsys, str(path), "-o", str(specs[kind]))[0] == 0
    weights = {kind: load_weights(spec.with_suffix(".safetensors")) for kind, spec in specs.items()}
    for kind in sources.onnx:
        assert main(["diff", str(specs["torch"]), str(specs[kind])]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "no structural difference"
        assert differing_tensors(weights["torch"], weights[kind]) == []
    # What was written is what the in-memory import holds.
    assert differing_tensors(weights["torch"], sources.results["torch"].weights) == []


def test_torchvision_alexnet_imports_to_alexnet_owt(capsys, tmp_path):
    spec = str(tmp_path / "tv.yaml")
    code, out, err = _import(capsys, f"{TORCH_MODELS}:TorchvisionAlexNet", "-o", spec)
    assert code == 0 and err == ""
    assert out.splitlines()[:2] == [
        f"imported {TORCH_MODELS}:TorchvisionAlexNet (torch.fx): 22 layers, input [3, 224, 224], "
        "61,100,840 parameters, 714,188,480 MACs",
        "  note: input 3x224x224 assumed (a PyTorch model does not record its input size)"]
    assert main(["summary", spec]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Total params: 61,100,840" in lines and "MACs (conv + linear, one image): 714,188,480" in lines
    assert main(["diff", spec, "alexnet-owt"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "no structural difference"


def test_the_article_alexnet_is_refused_at_its_broken_view(capsys, tmp_path):
    code, out, err = _import(capsys, f"{TORCH_MODELS}:ArticleAlexNet", "-o", str(tmp_path / "article.yaml"))
    assert code == 2 and out == ""
    assert err == ("alexbench import: error: layer 'fc6' (linear) from module 'fully_connected.0' (Linear): input "
                   "features disagree with in_features; received 1536 features from layer 'flatten' (= 384x2x2 from "
                   "layer 'pool5', flattened); expected 9216 (in_features)\n")
    assert list(tmp_path.iterdir()) == []


def _refusals(out: Path, code: Path) -> dict[str, tuple[list[str], str]]:
    """case -> (the command's arguments writing into ``out``, its one stderr line); ``code`` holds notes.py."""
    source = f"{TORCH_MODELS}:parity_net"
    spec = str(out / "net.yaml")
    missing = out / "missing" / "net.yaml"
    not_a_model = f"{code / 'notes.py'}:title"
    return {
        "output in a missing folder": (
            [source, "-o", str(missing)],
            f"-o {missing}: folder {missing.parent} does not exist; expected a file path for the spec in an "
            "existing folder (create the folder first)"),
        "weights-out is the spec": (
            [source, "-o", spec, "--weights-out", spec],
            f"--weights-out {spec}: the same file as -o; expected another file"),
        "input shape of two numbers": (
            [source, "-o", spec, "--input-shape", "3,224"],
            "--input-shape: received '3,224'; expected C,H,W of positive integers, e.g. 3,224,224"),
        "a source that is not a model": (
            [not_a_model, "-o", spec],
            f"source '{not_a_model}': 'title' is not a model; received str; expected a PyTorch nn.Module, a Keras "
            "model or an ONNX ModelProto, a class that builds one without arguments, or a factory"),
    }


@pytest.mark.parametrize("case", list(_refusals(Path("out"), Path("code"))))
def test_import_refusals_are_one_line_exit_2_and_write_nothing(capsys, tmp_path, case):
    out, code = tmp_path / "out", tmp_path / "code"  # Python caches notes.py's bytecode next to it
    out.mkdir()
    code.mkdir()
    (code / "notes.py").write_text('title = "AlexNet"  # a name in a file, not a model\n')
    args, line = _refusals(out, code)[case]
    assert _import(capsys, *args) == (2, "", f"alexbench import: error: {line}\n")
    assert list(out.iterdir()) == []
