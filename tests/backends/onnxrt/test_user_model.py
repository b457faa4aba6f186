"""`compare --model file.onnx`: ONNX Runtime runs the user's own file; every readable layer matches
the float64 reference of the imported spec, and a planted bug shows at the layer it is in."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from alexbench.backends.onnx import importer
from alexbench.backends.onnxrt.user_model import OnnxModelBackend
from alexbench.backends.reference.backend import reference_forward
from alexbench.spec.imported import build_spec
from tests.backends.onnx.test_importer import export_keras, export_torch

TOL = 1e-4


@pytest.fixture(scope="module")
def files(tmp_path_factory, test_model):

    folder = tmp_path_factory.mktemp("onnx-user-model")
    net = test_model("torch_models.py:small_functional_net")
    keras_net = test_model("keras_models.py:small_functional_keras")
    return {"torch": export_torch(net, (3, 32, 28), folder / "small_torch.onnx"),
            "keras": export_keras(keras_net, folder / "small_keras.onnx", "stateless")}


def _backend(spec, path):
    """Built as a worker builds it: from the SOURCE in its options (its own weights, not the spec's)."""
    backend = OnnxModelBackend(options={"source": str(path)})
    backend.build(spec, {})
    return backend


def _first_divergence(spec, weights, backend, x):
    names = [layer.name for layer in spec.layers]
    _, ref = reference_forward(spec, weights, x, names)
    got = backend.run(x, names)
    for name in names:
        if name in got.layers:
            scale = max(1.0, float(np.abs(ref[name]).max()))
            if got.layers[name].shape != ref[name].shape or np.abs(got.layers[name] - ref[name]).max() > TOL * scale:
                return name, got
    return None, got


@pytest.mark.parametrize("kind", ["torch", "keras"])
def test_every_layer_matches_the_reference(files, kind):
    path = files[kind]
    result = build_spec(importer.import_model(importer.load_file(path), str(path), None))
    backend = _backend(result.spec, path)
    assert backend.layer_names() == [layer.name for layer in result.spec.layers]
    x = np.random.default_rng(2).standard_normal((3, *result.spec.input_shape)).astype(np.float32)
    diverged, got = _first_divergence(result.spec, result.weights, backend, x)
    assert diverged is None
    ref_out, _ = reference_forward(result.spec, result.weights, x, [])
    assert np.abs(got.output - ref_out).max() <= TOL * max(1.0, float(np.abs(ref_out).max()))
    # the float initializers are the model's weights; integer shapes, axes and indices do not count
    assert backend.param_count() == sum(w.size for w in result.weights.values())
    assert backend.environment()["providers"] == ["CPUExecutionProvider"]


def test_planted_bug_shows_at_its_layer(files, tmp_path):
    path = files["torch"]
    result = build_spec(importer.import_model(importer.load_file(path), str(path), None))
    broken = onnx.load(str(path))
    # conv2's kernel flipped upside down in the file (a weight-layout slip): same shapes, wrong values
    conv2 = [n for n in broken.graph.node if n.op_type == "Conv"][1]
    weight = next(t for t in broken.graph.initializer if t.name == conv2.input[1])
    array = onnx.numpy_helper.to_array(weight)
    weight.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(array[:, :, ::-1, :]), weight.name))
    bad = tmp_path / "broken.onnx"
    onnx.save_model(broken, str(bad))
    backend = _backend(result.spec, bad)
    x = np.random.default_rng(3).standard_normal((2, *result.spec.input_shape)).astype(np.float32)
    diverged, _ = _first_divergence(result.spec, result.weights, backend, x)
    assert diverged == "conv2"


def test_layer_count_must_match(files):
    from alexbench.spec.loader import parse_spec

    spec = parse_spec("name: one\ninput: [3, 32, 28]\nlayers:\n  - {name: relu1, op: relu}\n", "<test>")
    with pytest.raises(ValueError) as err:
        _backend(spec, files["torch"])
    assert str(err.value) == f"'{files['torch']}' has 10 layers, spec 'one' has 1: they cannot be matched by position"
