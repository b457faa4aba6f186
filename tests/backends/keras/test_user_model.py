"""A user's own Keras model as a backend (``compare --model``): every readable layer of the shared
small functional model against the float64 reference on the imported spec and weights, and two
planted bugs (a transposed fc kernel in the model, a skipped flatten-order conversion) caught at
the layer that is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from alexbench.backends.keras import importer, user_model
from alexbench.backends.keras.runtime import import_keras
from alexbench.backends.keras.user_model import KerasModelBackend
from alexbench.backends.reference.backend import ReferenceBackend
from alexbench.harness.compare.metrics import PROFILES, REL_L2_LIMIT, agreement, first_divergent_layer
from alexbench.spec import parse_spec
from tests.backends.keras.test_importer import KERAS_MODELS, imported, shared_model

keras = import_keras("tensorflow")
TOL, REL_L2 = PROFILES["default"], REL_L2_LIMIT["default"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(the model, its .keras file, its import): the backend loads the file, the reference gets the
    import of the same weights."""
    model = shared_model("small_functional_keras")
    return model, importer.save_model(model, tmp_path_factory.mktemp("small")), imported(model)


def names(spec) -> list[str]:
    return [layer.name for layer in spec.layers]


def batch(spec, n=2, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *spec.input_shape)).astype(np.float32)


def run_both(source, spec, weights, x):
    backend = KerasModelBackend(options={"source": str(source)})
    backend.build(spec, {})
    reference = ReferenceBackend()
    reference.build(spec, weights)
    return backend, backend.run(x, names(spec)), reference.run(x, names(spec))


def test_every_readable_layer_matches_the_reference(small):
    model, path, result = small
    backend, got, ref = run_both(path, result.spec, result.weights, batch(result.spec))
    # conv1's own output is hidden by its fused relu (relu1 reads the Conv2D layer).
    assert backend.layer_names() == [n for n in names(result.spec) if n != "conv1"] == list(got.layers)
    bad = first_divergent_layer(names(result.spec), ref.layers, got.layers, TOL, REL_L2)
    assert bad is None, f"first divergent layer '{bad.layer}': {bad.agreement.problem}"
    check = agreement(ref.output, got.output, TOL, REL_L2)
    assert check.ok, check.problem
    assert backend.param_count() == model.count_params() == result.spec.param_count
    assert backend.environment()["keras_backend"] == "tensorflow"


def test_spec_layers_are_matched_by_position_whatever_their_names(small):
    _, path, result = small
    spec = parse_spec(result.yaml_text.replace('"flatten"', '"features"', 1).replace('"fc3"', '"classifier"'),
                      "<renamed>")
    backend = KerasModelBackend(options={"source": str(path)})
    backend.build(spec, {})
    got = backend.run(batch(spec), ["features", "classifier"])
    assert {n: a.shape for n, a in got.layers.items()} == {"features": (2, 504), "classifier": (2, 10)}


def test_a_python_source_builds_its_own_model():
    spec = imported(shared_model("small_functional_keras")).spec
    backend = KerasModelBackend(options={"source": f"{KERAS_MODELS}:small_functional_keras"})
    backend.build(spec, {})
    assert backend.run(batch(spec), ["pool1"]).layers["pool1"].shape == (2, 8, 6, 7)


def test_a_transposed_fc_kernel_in_the_model_is_caught_at_fc3(small, tmp_path):
    """Planted bug: a copy of the model whose Dense kernel reads the flatten as C,H,W (what loading
    canonical weights with a plain transpose gives), against the original's import."""
    model, _, result = small
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    dense = copy.layers[-1]
    c, h, w = result.spec.layer("flatten").input_shape
    kernel = dense.kernel.numpy()
    dense.kernel.assign(kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(kernel.shape))
    path = importer.save_model(copy, tmp_path)
    _, got, ref = run_both(path, result.spec, result.weights, batch(result.spec))
    bad = first_divergent_layer(names(result.spec), ref.layers, got.layers, TOL, REL_L2)
    assert bad is not None and bad.layer == "fc3"


def test_a_skipped_flatten_order_conversion_is_caught_at_flatten(small, monkeypatch):
    """Planted bug: the H,W,C features handed back as they are."""
    _, path, result = small
    convert = user_model.canonical_readout
    monkeypatch.setattr(user_model, "canonical_readout",
                        lambda x, layout, shape: x if x.ndim == 2 else convert(x, layout, shape))
    _, got, ref = run_both(path, result.spec, result.weights, batch(result.spec))
    bad = first_divergent_layer(names(result.spec), ref.layers, got.layers, TOL, REL_L2)
    assert bad is not None and bad.layer == "flatten"


def test_a_spec_of_another_length_is_refused(small):
    _, path, result = small
    spec = parse_spec("name: tiny\ninput: [3, 28, 32]\nlayers:\n  - {name: flatten, op: flatten}\n"
                      "  - {name: fc1, op: linear, units: 10}\n", "<tiny>")
    with pytest.raises(ValueError) as err:
        KerasModelBackend(options={"source": str(path)}).build(spec, {})
    assert str(err.value) == f"model '{path}' imports to 9 layers, spec 'tiny' has 2"


def test_input_must_be_float32_nchw(small):
    _, path, result = small
    backend = KerasModelBackend(options={"source": str(path)})
    backend.build(result.spec, {})
    with pytest.raises(ValueError) as err:
        backend.run(np.zeros((1, 28, 32, 3), np.float32))
    assert str(err.value) == ("backend 'keras-model': input float32 [1, 28, 32, 3], expected float32 NCHW "
                              "[N, 3, 28, 32]")
