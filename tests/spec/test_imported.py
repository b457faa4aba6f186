"""spec/imported.py: naming imported layers, writing and validating the spec, checking tensors."""

import numpy as np
import pytest

from alexbench.spec import load_spec, parse_spec
from alexbench.spec.errors import SpecError
from alexbench.spec.imported import ImportedLayer, ImportedModel, build_spec, layer_names


def _layers_like(spec_name: str) -> list[ImportedLayer]:
    return [ImportedLayer(layer.op, dict(layer.attrs), f"module '{i}'") for i, layer in
            enumerate(load_spec(spec_name).layers)]


def test_names_follow_the_shipped_specs():
    assert layer_names(_layers_like("alexnet-owt")) == [layer.name for layer in load_spec("alexnet-owt").layers]
    # The paper's spec names a dropout after the layer before it; imports name it after the layer it feeds.
    names = layer_names(_layers_like("alexnet"))
    assert [n for n in names if n.startswith("drop")] == ["drop7", "drop8"]


def test_repeated_names_get_a_suffix():
    layers = [ImportedLayer("conv2d", {}, "a"), ImportedLayer("relu", {}, "b"), ImportedLayer("relu", {}, "c")]
    assert layer_names(layers) == ["conv1", "relu1", "relu1_2"]


def _model(layers, **kwargs) -> ImportedModel:
    return ImportedModel("net", (3, 8, 6), layers, "test", "net.py:Net", {"test": "1"}, **kwargs)


def _conv(filters=4, in_channels=3, **attrs) -> ImportedLayer:
    return ImportedLayer("conv2d", {"filters": filters, "kernel": [3, 3], "padding": [1, 1, 1, 1], **attrs},
                         "module 'body.0' (Conv2d)", {"weight": np.ones((filters, in_channels, 3, 3), np.float32),
                                                      "bias": np.arange(filters, dtype=np.float32)})


def test_a_spec_round_trips_with_its_weights_and_exact_constants():
    bn = ImportedLayer("batchnorm2d", {"eps": 1e-5, "momentum": 0.01}, "module 'bn'",
                       {p: np.full(4, v, np.float32) for p, v in
                        (("weight", 1), ("bias", 0), ("running_mean", 0.5), ("running_var", 2))})
    lrn = ImportedLayer("lrn", {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}, "module 'norm'")
    fc = ImportedLayer("linear", {"units": 2, "in_features": 4 * 8 * 6}, "module 'fc'",
                       {"weight": np.zeros((2, 192), np.float32), "bias": np.zeros(2, np.float32)})
    layers = [_conv(), bn, lrn, ImportedLayer("flatten", {}, "call 'flatten'"), fc]
    layers[0].training = {"kernel_regularizer": {"l2": 0.0005}}
    result = build_spec(_model(layers, notes=["one note"]))
    again = parse_spec(result.yaml_text)
    assert again.sha256 == result.spec.sha256
    assert again.layer("bn1").attrs["eps"] == 1e-5 and again.layer("norm1").attrs["alpha"] == 1e-4
    assert again.training.penalties == {"conv1.weight": 0.0005} and not again.training.unmodelled
    assert again.provenance["source"] == "net.py:Net" and "one note" in again.provenance["notes"]
    assert again.layer("conv1").note == "from module 'body.0' (Conv2d)"
    np.testing.assert_array_equal(result.weights["conv1.bias"], np.arange(4, dtype=np.float32))
    assert sorted(result.weights) == sorted(result.spec.param_shapes())


def test_a_layer_that_cannot_run_names_its_module():
    fc = ImportedLayer("linear", {"units": 2, "in_features": 9216}, "module 'classifier.1' (Linear)",
                       {"weight": np.zeros((2, 9216), np.float32), "bias": np.zeros(2, np.float32)})
    with pytest.raises(SpecError) as caught:
        build_spec(_model([_conv(), ImportedLayer("flatten", {}, "x"), fc]))
    assert str(caught.value) == (
        "layer 'fc2' (linear) from module 'classifier.1' (Linear): input features disagree with in_features; "
        "received 192 features from layer 'flatten' (= 4x8x6 from layer 'conv1', flattened); expected 9216 "
        "(in_features)")


def test_a_tensor_that_does_not_fit_is_refused():
    with pytest.raises(SpecError) as caught:
        build_spec(_model([_conv(in_channels=5)]))
    assert str(caught.value) == ("layer 'conv1' (conv2d) from module 'body.0' (Conv2d): 'weight' does not fit what "
                                 "reaches the layer; received [4, 5, 3, 3]; expected [4, 3, 3, 3] for input [3, 8, 6]")


def test_a_missing_tensor_is_refused():
    conv = _conv()
    del conv.weights["bias"]
    with pytest.raises(SpecError, match=r"layer 'conv1' \(conv2d\) from module 'body.0' \(Conv2d\): the source has "
                                        r"no tensor for bias"):
        build_spec(_model([conv]))
