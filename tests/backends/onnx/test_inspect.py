"""Both exporters on every shipped valid spec and both op-coverage specs: the files pass the ONNX
checker and strict shape inference with a symbolic batch, their parameters are accounted for,
their layers are mapped; checks catch planted defects; what an exporter cannot handle is a
clear ExportFailed with the exporter's own message.

Exports are shared through one on-disk cache for the whole session (tests/backends/onnxrt
points at the same directory), so each (spec, exporter) is exported once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from alexbench.backends.base import ExportUnsupported
from alexbench.backends.keras.export import onnx_from_keras
from alexbench.backends.onnx import cache as export_cache
from alexbench.backends.onnx.inspect import ExportFailed, check_file, layer_tensors, param_breakdown
from alexbench.backends.torch.export import onnx_from_torch
from alexbench.spec import canonical_weights, load_spec

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
SPECS = ["alexnet", "alexnet-owt", "alexnet-blog-keras", str(SPECS_DIR / "ops-conv-groups.yaml"),
         str(SPECS_DIR / "ops-pool-norm.yaml"), str(SPECS_DIR / "conv-bn.yaml")]
KINDS = ("torch", "keras")
# The only layers an exporter leaves without a tensor of their own, and why.
# Conv+BatchNorm folded by torch's optimizer: the conv's pre-BN output exists nowhere.
EXPECTED_MISSING = {("torch", "ops-pool-norm"): {"conv1"}, ("torch", "conv-bn"): {"conv1", "conv2"}}


def _id(spec: str) -> str:
    return Path(spec).stem


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "onnx-export-cache"  # shared with tests/backends/onnxrt


def _export(kind: str, spec_ref: str, cache: Path):
    spec = load_spec(spec_ref)
    weights = canonical_weights(spec, seed=0)
    path, info, _ = export_cache.cached_export(kind, spec, weights, cache)
    return spec, weights, path, info


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("spec_ref", SPECS, ids=_id)
def test_export_passes_checks_and_accounts_for_parameters(kind, spec_ref, onnx_cache):
    spec, weights, path, info = _export(kind, spec_ref, onnx_cache)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)

    assert info.kind == kind and info.opset >= 18 and info.opset == max(
        o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert info.producer.startswith("pytorch" if kind == "torch" else "tf2onnx")
    assert set(info.versions) >= ({"torch", "onnxscript", "onnx"} if kind == "torch"
                                  else {"tensorflow", "keras", "tf2onnx", "onnx"})
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and not dims[0].HasField("dim_value")
    c, h, w = spec.input_shape
    assert [d.dim_value for d in dims[1:]] == ([c, h, w] if kind == "torch" else [h, w, c])

    params = info.params
    assert params["spec_params"] == spec.param_count
    assert params["explained"], params["notes"]
    assert params["initializer_params"] == params["weight_params"] + params["constant_params"]
    if kind == "keras":  # the Keras route keeps every variable as an initializer
        assert params["weight_params"] == spec.param_count
    assert set(info.missing_layers) == EXPECTED_MISSING.get((kind, spec.name), set())
    assert set(info.layers) | set(info.missing_layers) == {layer.name for layer in spec.layers}


def test_batchnorm_folding_is_reported_not_hidden(onnx_cache):
    """torch's optimizer folds ops-pool-norm's bn1 into conv1: 24 parameters fewer, said so."""
    spec, _, _, info = _export("torch", str(SPECS_DIR / "ops-pool-norm.yaml"), onnx_cache)
    assert info.params["difference"] == -4 * 6 and info.params["explained"]
    assert "bn1 folded into conv1: conv1.weight rescaled, conv1.bias rescaled, BN's 24 values absorbed" \
        in info.params["notes"]


def test_folded_conv_without_bias_is_explained_by_construction(onnx_cache):
    """conv (bias: false) -> batchnorm2d: torch's exporter creates a bias (conv1.weight_bias); it and the
    rescaled weight are traced back to conv1.weight and bn1's four tensors, checked on the values."""
    spec, weights, path, info = _export("torch", str(SPECS_DIR / "conv-bn.yaml"), onnx_cache)
    model = onnx.load(str(path))
    params = param_breakdown(model, spec, weights)
    assert params["explained"], params["notes"]
    assert params["difference"] == -4 * 5 + 5 - 4 * 4
    assert any(note.startswith("bn1 folded into conv1: conv1.weight rescaled, bias of 5 values created")
               and "BN's 20 values absorbed" in note for note in params["notes"])
    tensors, missing = layer_tensors(model, spec)
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and "conv1.weight" in n.input)
    assert tensors["bn1"] == conv.output[0]  # the folded conv's output IS the batch norm's
    assert "conv1" not in tensors and missing["conv1"].startswith("folded")


@pytest.mark.parametrize("plant", ["drop_created_bias", "wrong_fold"])
def test_planted_fold_defects_stay_unexplained(plant, onnx_cache):
    """A fold whose numbers are not the spec's, or whose created bias is dropped, is not explained away."""
    spec, weights, path, _ = _export("torch", str(SPECS_DIR / "conv-bn.yaml"), onnx_cache)
    model = onnx.load(str(path))
    if plant == "drop_created_bias":
        kept = [t for t in model.graph.initializer if t.name != "conv1.weight_bias"]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    else:
        weights = dict(weights, **{"bn1.running_var": weights["bn1.running_var"] * 2})
    params = param_breakdown(model, spec, weights)
    assert not params["explained"]
    assert any(note.startswith("UNEXPLAINED: bn1 looks folded into conv1") for note in params["notes"])


def test_planted_missing_initializer_is_unexplained(onnx_cache):
    """A weight taken out of the file is not explained away."""
    spec, weights, path, _ = _export("torch", str(SPECS_DIR / "ops-conv-groups.yaml"), onnx_cache)
    model = onnx.load(str(path))
    kept = [t for t in model.graph.initializer if t.name != "conv2.weight"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    params = param_breakdown(model, spec, weights)
    assert not params["explained"]
    assert params["difference"] == -int(np.prod(spec.param_shapes()["conv2.weight"]))
    assert any(note.startswith("UNEXPLAINED") and "conv2.weight" in note for note in params["notes"])


@pytest.mark.parametrize("defect", ["fixed_batch", "dangling_input"])
def test_checks_catch_planted_defects(defect, onnx_cache, tmp_path):
    spec, _, path, _ = _export("keras", str(SPECS_DIR / "ops-conv-groups.yaml"), onnx_cache)
    model = onnx.load(str(path))
    if defect == "fixed_batch":
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
        expected = "symbolic batch axis"
    else:  # a node reading a tensor nothing produces
        model.graph.node[-1].input[0] = "nowhere"
        expected = "fails onnx.checker"
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ExportFailed, match=expected):
        check_file(bad, spec)


def test_layer_map_follows_scopes_and_dropout_shares_its_input(onnx_cache):
    spec, _, path, info = _export("torch", "alexnet", onnx_cache)
    assert info.layers["drop6"] == info.layers["relu6"]  # identity at inference
    assert info.layers["fc8"] == "output"
    assert layer_tensors(onnx.load(str(path)), spec) == (info.layers, info.missing_layers)


def test_torch_exporter_that_cannot_convert_an_op_gives_its_reason(tmp_path):
    """torch exports opset 18 and converts down; ONNX has no Pad adapter to opset 17, so the
    exporter keeps 18 and only logs why. That is an error with the logged reason, not a file."""
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    with pytest.raises(ExportFailed, match=r"opset 17.*Pad") as caught:
        onnx_from_torch(spec, canonical_weights(spec, 0), tmp_path / "low.onnx", opset=17)
    assert isinstance(caught.value, ExportUnsupported)  # what the worker and harness report as unsupported


def test_keras_op_tf2onnx_cannot_convert_is_named(tmp_path):
    """Keras' own Conv2D(groups=2) runs inside an XLA function; tf2onnx leaves a PartitionedCall
    it cannot convert (why the Keras model splits grouped convolutions): named, not a crash."""
    from alexbench.backends.keras.export import export_keras_model
    from alexbench.backends.keras.runtime import import_keras

    keras = import_keras("tensorflow")
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    c, h, w = spec.input_shape
    inputs = keras.Input((h, w, c), name="input")
    x = keras.layers.Conv2D(8, 3, groups=2, name="conv1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, name="fc1")(keras.layers.Flatten(name="flatten")(x)))
    with pytest.raises(ExportFailed, match=r"cannot convert 1 op.*PartitionedCall \(node 'conv1"):
        export_keras_model(model, spec, tmp_path / "grouped.onnx")
    assert not (tmp_path / "grouped.onnx").exists()


def test_both_keras_routes_export_the_same_function(tmp_path):
    """The fast route (stateless_call, weights attached) and tf2onnx's from_keras (weights frozen)
    give files that compute the same thing in ONNX Runtime."""
    import onnxruntime as ort

    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    weights = canonical_weights(spec, 0)
    x = np.random.default_rng(3).standard_normal((3, *spec.input_shape[1:], spec.input_shape[0]))
    outputs = {}
    for route in ("stateless", "from_keras"):
        info = onnx_from_keras(spec, weights, tmp_path / f"{route}.onnx", keras_route=route)
        assert ("from_function" in info.exporter) == (route == "stateless")
        session = ort.InferenceSession(str(tmp_path / f"{route}.onnx"), providers=["CPUExecutionProvider"])
        outputs[route] = session.run(None, {"input": x.astype(np.float32)})[0]
    np.testing.assert_allclose(outputs["stateless"], outputs["from_keras"], rtol=1e-5, atol=1e-6)
