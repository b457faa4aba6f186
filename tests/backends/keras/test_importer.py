"""The Keras 3 importer: the shared test models become the expected specs, imported weights reproduce
the Keras model on the float64 reference (a planted unpermuted fc kernel is caught), every refusal's
exact message, a .keras round trip."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from alexbench.backends.keras import importer
from alexbench.backends.keras.layouts import linear_weight_from_keras
from alexbench.backends.keras.runtime import import_keras
from alexbench.backends.layouts import nchw_to_nhwc
from alexbench.backends.reference.backend import ReferenceBackend
from alexbench.harness.compare.metrics import PROFILES, REL_L2_LIMIT, agreement
from alexbench.spec.imported import ImportRefused, build_spec

keras = import_keras("tensorflow")
layers = keras.layers
TOL, REL_L2 = PROFILES["default"], REL_L2_LIMIT["default"]
KERAS_MODELS = Path(__file__).resolve().parents[2] / "models" / "keras_models.py"
LINEAR_CHAIN = "a linear chain of layers, one input each (a Sequential, or a functional model without branches)"
BUILT_INS = f"built-in layers: {importer.SUPPORTED}"


def shared_model(name: str):
    """A model of tests/models/keras_models.py, loaded as a file (not through model_source, which
    needs every framework's importer)."""
    spec = importlib.util.spec_from_file_location("keras_models_for_import_tests", KERAS_MODELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)()


def imported(model, input_shape=None):
    return build_spec(importer.import_model(model, f"<{model.name}>", input_shape))


def refusal(model, input_shape=None) -> str:
    with pytest.raises(ImportRefused) as err:
        importer.import_model(model, "<test>", input_shape)
    return str(err.value)


def reference_and_keras(result, model, batch=2, seed=0, channels_last=True):
    """(float64 reference output from the imported spec and weights, the Keras model's own output)."""
    x = np.random.default_rng(seed).standard_normal((batch, *result.spec.input_shape)).astype(np.float32)
    reference = ReferenceBackend()
    reference.build(result.spec, result.weights)
    own = model.predict_on_batch(nchw_to_nhwc(x) if channels_last else x)
    return reference.run(x).output, np.asarray(own)


def structure(result) -> list[tuple]:
    return [(layer.name, layer.op, {k: v for k, v in layer.attrs.items() if k in ("filters", "kernel", "stride",
             "padding", "units", "eps", "momentum", "rate", "output")}) for layer in result.spec.layers]


# ---- the shared models ------------------------------------------------------------------------

def test_paper_alexnet_imports_with_explicit_padding_and_split_activations():
    result = imported(shared_model("paper_alexnet_keras"))
    assert result.spec.input_shape == (3, 227, 227)
    pool = {"kernel": (3, 3), "stride": (2, 2), "padding": (0, 0, 0, 0)}
    conv3 = {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1, 1, 1)}
    assert structure(result) == [
        ("conv1", "conv2d", {"filters": 96, "kernel": (11, 11), "stride": (4, 4), "padding": (0, 0, 0, 0)}),
        ("relu1", "relu", {}), ("pool1", "maxpool2d", pool),
        ("conv2", "conv2d", {"filters": 256, "kernel": (5, 5), "stride": (1, 1), "padding": (2, 2, 2, 2)}),
        ("relu2", "relu", {}), ("pool2", "maxpool2d", pool),
        ("conv3", "conv2d", {"filters": 384, **conv3}), ("relu3", "relu", {}),
        ("conv4", "conv2d", {"filters": 384, **conv3}), ("relu4", "relu", {}),
        ("conv5", "conv2d", {"filters": 256, **conv3}), ("relu5", "relu", {}), ("pool5", "maxpool2d", pool),
        ("flatten", "flatten", {}),
        ("fc6", "linear", {"units": 4096}), ("relu6", "relu", {}), ("drop7", "dropout", {"rate": 0.5}),
        ("fc7", "linear", {"units": 4096}), ("relu7", "relu", {}), ("drop8", "dropout", {"rate": 0.5}),
        ("fc8", "linear", {"units": 1000}), ("softmax", "softmax", {})]
    layers_in = result.model.layers
    # The fused activation takes the Conv2D's readout; maps are channels-last, and so is the flatten.
    assert (layers_in[0].readout, layers_in[1].readout) == (None, layers_in[1].origin.split("'")[3])
    assert [layer.layout for layer in layers_in[:14]] == ["nhwc"] * 14
    assert {layer.layout for layer in layers_in[14:]} == {"nchw"}
    assert "kernel rows permuted" in layers_in[14].note


def test_article_alexnet_keeps_batch_norm_in_torch_convention_and_the_regularizers():
    result = imported(shared_model("article_alexnet_keras"))
    bns = [layer for layer in result.spec.layers if layer.op == "batchnorm2d"]
    assert [(bn.name, bn.attrs["eps"], bn.attrs["momentum"]) for bn in bns] == [
        (f"bn{i}", 1e-3, 0.01) for i in range(1, 6)]
    assert result.spec.training.penalties == {f"conv{i}.weight": 0.0005 for i in range(1, 6)}
    assert "kernel_regularizer: {l2: 0.0005}" in result.yaml_text


def test_small_functional_pads_like_tensorflow_and_reproduces_the_keras_output():
    model = shared_model("small_functional_keras")
    result = imported(model)
    conv1 = result.spec.layer("conv1")
    # 'same' at stride 2, kernel 5: 28 -> 14 rows needs 3 padded rows, 32 -> 16 columns 3 padded
    # columns; TensorFlow puts the odd one at the bottom/right.
    assert conv1.attrs["padding"] == (1, 2, 1, 2)
    assert result.spec.input_shape == (3, 28, 32)
    assert result.spec.layer("bn2").attrs == {"eps": 1e-3, "momentum": pytest.approx(0.1)}
    assert result.model.versions == {"keras": keras.__version__, "tensorflow": importlib.import_module(
        "tensorflow").__version__}
    ref, own = reference_and_keras(result, model)
    check = agreement(ref, own, TOL, REL_L2)
    assert check.ok, check.problem


def test_an_unpermuted_fc_kernel_is_caught_by_the_reference():
    """Planted bug: fc3's kernel plainly transposed, as if Keras' Flatten read C,H,W."""
    model = shared_model("small_functional_keras")
    result = imported(model)
    result.weights["fc3.weight"] = linear_weight_from_keras(np.asarray(model.layers[-1].kernel))
    ref, own = reference_and_keras(result, model)
    assert not agreement(ref, own, TOL, REL_L2).ok


def test_folded_zero_padding_groups_pooling_and_flag_free_batch_norm_reproduce_keras():
    inputs = keras.Input((13, 11, 4))
    x = layers.ZeroPadding2D(((1, 2), (0, 1)))(inputs)
    x = layers.Conv2D(6, 3, groups=2, use_bias=False)(x)
    x = layers.BatchNormalization(center=False, scale=False)(x)
    x = layers.ReLU()(x)
    x = layers.ZeroPadding2D(1)(x)
    x = layers.MaxPool2D(3, strides=2)(x)
    x = layers.ZeroPadding2D((0, 1))(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(5, 2, padding="same", activation="softmax")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Activation("relu")(x)
    x = layers.Dense(7, activation="softmax", use_bias=False)(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(3)
    bn = model.layers[3]
    bn.set_weights([rng.uniform(-0.5, 0.5, 6), rng.uniform(0.5, 2.0, 6)])
    result = imported(model)
    assert [(layer.name, layer.attrs.get("padding")) for layer in result.spec.layers if "padding" in layer.attrs] == [
        ("conv1", (1, 2, 0, 1)), ("pool1", (1, 1, 1, 1)), ("avgpool1", (0, 0, 1, 1)), ("conv2", (0, 1, 0, 1))]
    assert result.spec.layer("conv1").attrs["groups"] == 2
    assert "scale=False: weight fixed at 1; center=False: bias fixed at 0" == result.model.layers[1].note
    ref, own = reference_and_keras(result, model)
    check = agreement(ref, own, TOL, REL_L2)
    assert check.ok, check.problem


def test_global_average_pooling_and_an_open_input_size_taken_from_the_asked_shape():
    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(2)(x))
    result = imported(model, (3, 15, 17))
    assert [(layer.name, layer.op) for layer in result.spec.layers] == [
        ("conv1", "conv2d"), ("avgpool", "adaptive_avgpool2d"), ("flatten", "flatten"), ("fc2", "linear")]
    assert result.spec.layer("conv1").attrs["padding"] == (1, 1, 1, 1)
    # Keras gives the pooled (N, C) at once: its readout is the flatten's.
    assert [layer.readout for layer in result.model.layers[1:3]] == [None, model.layers[2].name]
    ref, own = reference_and_keras(result, model)
    assert agreement(ref, own, TOL, REL_L2).ok


def test_an_unbuilt_sequential_is_built_at_the_asked_shape():
    model = keras.Sequential([layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(3)])
    result = imported(model, (2, 6, 5))
    assert result.spec.input_shape == (2, 6, 5)
    assert result.spec.layer("fc2").attrs["in_features"] == 4 * 4 * 3


def test_channels_first_maps_are_canonical_and_its_flatten_order_follows_the_flatten():
    def model(flatten_format):
        return keras.Sequential([
            keras.Input((4, 9, 7)), layers.Conv2D(6, 3, padding="same", data_format="channels_first"),
            layers.Flatten(data_format=flatten_format), layers.Dense(2)])

    plain = importer.import_model(model("channels_last"), "<cf>", None)
    assert plain.input_shape == (4, 9, 7)
    assert [layer.layout for layer in plain.layers] == ["nchw"] * 3 and plain.layers[2].note == ""
    # Flatten(data_format='channels_first') moves channels last first: H,W,C features.
    moved = importer.import_model(model("channels_first"), "<cf>", None)
    assert [layer.layout for layer in moved.layers] == ["nchw", "nhwc", "nchw"]
    assert "kernel rows permuted" in moved.layers[2].note


def test_regularizers_and_constraints_become_training_settings():
    model = keras.Sequential([
        keras.Input((5, 5, 2)),
        layers.Conv2D(3, 3, kernel_regularizer=keras.regularizers.L1L2(0.1, 0.2),
                      activity_regularizer="l2", kernel_constraint=keras.constraints.MaxNorm(2)),
        layers.BatchNormalization(gamma_regularizer=keras.regularizers.l1(0.01)),
        layers.Flatten(), layers.Dense(2, bias_constraint=keras.constraints.NonNeg())])
    result = imported(model)
    # The l2 factor is modelled; the l1 part, the activity penalty and the constraints are kept as written.
    assert result.spec.training.penalties == {"conv1.weight": 0.2}
    assert result.spec.training.unmodelled == {
        "conv1": {"kernel_regularizer": {"l1": 0.1}, "activity_regularizer": {"l2": 0.01},
                  "kernel_constraint": {"MaxNorm": {"max_value": 2, "axis": 0}}},
        "bn1": {"gamma_regularizer": {"l1": 0.01}},
        "fc2": {"bias_constraint": {"NonNeg": {}}}}


def test_an_l1l2_without_l1_writes_only_its_l2():
    model = keras.Sequential([keras.Input((5, 5, 2)),
                              layers.Conv2D(3, 3, kernel_regularizer=keras.regularizers.L1L2(l2=0.0005),
                                            bias_regularizer=keras.regularizers.L1L2(l1=0.0, l2=0.0))])
    result = imported(model)
    assert "    conv1: {kernel_regularizer: {l2: 0.0005}, bias_regularizer: {l2: 0.0}}" in result.yaml_text
    assert result.spec.training.penalties == {"conv1.weight": 0.0005} and not result.spec.training.unmodelled


def test_dot_keras_round_trip(tmp_path):
    model = shared_model("small_functional_keras")
    path = importer.save_model(model, tmp_path)
    assert path == tmp_path / "small_functional_keras.keras"
    again = importer.load_file(path)
    first, second = imported(model), imported(again)
    assert second.yaml_text == first.yaml_text
    assert second.weights.keys() == first.weights.keys()
    for key, array in first.weights.items():
        np.testing.assert_array_equal(second.weights[key], array)


def test_accepts_keras_models_only():
    assert importer.accepts(keras.Sequential([keras.Input((2, 2, 1)), layers.Flatten()]))
    assert not importer.accepts(object()) and not importer.accepts(np.zeros(3))


# ---- refusals, each with its exact message ----------------------------------------------------

def test_branching_keras_is_refused_at_the_merge():
    model = shared_model("branching_keras")
    source, conv, add = model.layers
    assert refusal(model) == (f"Keras layer '{add.name}' (Add): a branch: the layer takes 2 inputs; received inputs "
                              f"from '{source.name}', '{conv.name}'; expected {LINEAR_CHAIN}")


def test_lambda_keras_is_refused_naming_the_layer_and_its_function():
    model = shared_model("lambda_keras")
    lam = model.layers[1]
    assert refusal(model) == (f"Keras layer '{lam.name}' (Lambda): a Lambda layer: its Python function cannot be "
                              f"read as spec ops; received function lambda_keras.<locals>.<lambda>; "
                              f"expected {BUILT_INS}")


class DoubledConv2D(layers.Conv2D):
    def call(self, x):
        return 2.0 * super().call(x)


class SubclassedModel(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.dense = layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def chain(*stack, shape=(8, 8, 3)):
    return keras.Sequential([keras.Input(shape), *stack], name="net")


def shared_dense():
    inputs = keras.Input((2, 2, 1))
    dense = layers.Dense(4, name="shared")
    return keras.Model(inputs, dense(dense(layers.Flatten(name="flat")(inputs))), name="net")


def two_outputs():
    inputs = keras.Input((4, 4, 1))
    x = layers.Flatten(name="flat")(inputs)
    return keras.Model(inputs, [layers.Dense(2, name="a")(x), layers.Dense(3, name="b")(x)], name="net")


ZERO_PAD_TAKERS = "ZeroPadding2D right before a Conv2D, AveragePooling2D or MaxPooling2D"
REFUSALS = {
    "custom layer class": (
        lambda: chain(DoubledConv2D(4, 3, name="mine")),
        f"Keras layer 'mine' (DoubledConv2D): a layer the spec language has no op for; received class "
        f"{__name__}.DoubledConv2D; expected {BUILT_INS}"),
    "dilation": (
        lambda: chain(layers.Conv2D(4, 3, dilation_rate=2, name="dil")),
        "Keras layer 'dil' (Conv2D): a dilated convolution; received dilation_rate [2, 2]; expected dilation_rate 1"),
    "fused tanh": (
        lambda: chain(layers.Conv2D(4, 3, activation="tanh", name="c")),
        "Keras layer 'c' (Conv2D): an activation the spec has no op for; received activation='tanh'; "
        "expected activation 'relu', 'softmax' or 'linear'"),
    "Activation tanh": (
        lambda: chain(layers.Activation("tanh", name="act")),
        "Keras layer 'act' (Activation): an activation the spec has no op for; received activation='tanh'; "
        "expected 'relu', 'softmax' or 'linear'"),
    "ReLU with arguments": (
        lambda: chain(layers.ReLU(max_value=6.0, name="relu6")),
        "Keras layer 'relu6' (ReLU): a ReLU with arguments the spec's relu does not have; received max_value=6.0; "
        "expected ReLU() with default arguments (max_value None, negative_slope 0, threshold 0)"),
    "softmax over rows": (
        lambda: chain(layers.Softmax(axis=1, name="sm")),
        "Keras layer 'sm' (Softmax): a softmax over another axis than the channels or features; "
        "received axis 1 of a rank-4 input; expected axis 3"),
    "same average pooling": (
        lambda: chain(layers.AveragePooling2D(3, strides=2, padding="same", name="avg")),
        "Keras layer 'avg' (AveragePooling2D): 'same' average pooling that pads (Keras leaves the padded cells out "
        "of the average; the spec's avgpool2d counts them); received padding 'same' -> [0, 1, 0, 1]; expected "
        "padding 'valid', or a ZeroPadding2D before it (its zeros count, as in the spec)"),
    "zero padding before max pooling of signed values": (
        lambda: chain(layers.Conv2D(4, 3, name="c"), layers.ZeroPadding2D(1, name="zp"),
                      layers.MaxPooling2D(3, name="mp")),
        "Keras layer 'zp' (ZeroPadding2D): zero padding that no Conv2D or pooling layer takes; received before "
        "Keras layer 'mp' (MaxPooling2D), whose input may be negative (zeros would win the max; the spec's max "
        f"pooling pads with -inf); expected {ZERO_PAD_TAKERS}"),
    "zero padding before batch norm": (
        lambda: chain(layers.ZeroPadding2D(1, name="zp"), layers.BatchNormalization(name="bn")),
        "Keras layer 'zp' (ZeroPadding2D): zero padding that no Conv2D or pooling layer takes; received before "
        f"Keras layer 'bn' (BatchNormalization); expected {ZERO_PAD_TAKERS}"),
    "zero padding last": (
        lambda: chain(layers.Conv2D(4, 3, name="c"), layers.ZeroPadding2D(1, name="zp")),
        "Keras layer 'zp' (ZeroPadding2D): zero padding that no Conv2D or pooling layer takes; received at the end "
        f"of the model; expected {ZERO_PAD_TAKERS}"),
    "batch norm over rows": (
        lambda: chain(layers.BatchNormalization(axis=1, name="bn")),
        "Keras layer 'bn' (BatchNormalization): a batch normalization not over the channels of a feature map; "
        "received axis 1 of a rank-4 input; expected axis 3 (or -1 for channels_last) of a feature map"),
    "dense on a map": (
        lambda: chain(layers.Dense(5, name="d")),
        "Keras layer 'd' (Dense): a Dense layer on a feature map (it acts on the last axis only); received input "
        "shape [8, 8, 3]; expected a Flatten (or GlobalAveragePooling2D) before it"),
    "flatten of features": (
        lambda: chain(layers.Flatten(name="f1"), layers.Flatten(name="f2")),
        "Keras layer 'f2' (Flatten): a Flatten of what is not a feature map; received input shape [192]; "
        "expected a Flatten of a 4-D feature map"),
    "channels_first flatten": (
        lambda: chain(layers.Flatten(data_format="channels_first", name="f")),
        "Keras layer 'f' (Flatten): a channels_first Flatten in a channels_last model; received data_format "
        "'channels_first'; expected data_format 'channels_last', the model's"),
    "mixed data formats": (
        lambda: chain(layers.Conv2D(4, 3, name="c"), layers.MaxPooling2D(2, data_format="channels_first", name="p")),
        "Keras layer 'p' (MaxPooling2D): a data_format other than the model's; received channels_first after "
        "channels_last in Keras layer 'c' (Conv2D); expected one data_format for every layer"),
    "fused softmax over width": (
        lambda: chain(layers.Conv2D(4, 3, data_format="channels_first", activation="softmax", name="c")),
        "Keras layer 'c' (Conv2D): a softmax over the width axis (Keras' activation softmax acts on the last axis, "
        "the width of a channels_first map); received activation='softmax'; expected a softmax over channels: "
        "Softmax(axis=1)"),
    "training settings without a spec layer": (
        lambda: chain(layers.Activation("linear", activity_regularizer="l2", name="lin")),
        "Keras layer 'lin' (Activation): training settings on a layer that becomes no spec layer; received "
        "{'activity_regularizer': {'l2': 0.01}}; expected regularizers and constraints on Conv2D, Dense or "
        "BatchNormalization"),
    "shared layer": (
        shared_dense,
        f"Keras layer 'shared' (Dense): a layer applied more than once (shared weights); received 2 applications; "
        f"expected {LINEAR_CHAIN}"),
    "two outputs": (
        two_outputs,
        f"Keras model 'net': a model with several inputs or outputs; received 1 inputs, 2 outputs; "
        f"expected {LINEAR_CHAIN}"),
    "subclassed": (
        SubclassedModel,
        "Keras model 'subclassed': no recorded graph to read; received a SubclassedModel without inputs and outputs; "
        "expected a Sequential starting with keras.Input, or a functional keras.Model (a subclassed model's call() "
        "is Python code)"),
    "not images": (
        lambda: keras.Sequential([keras.Input((10,)), layers.Dense(2)], name="net"),
        "Keras model 'net': an input that is not a batch of images; received input shape [10]; expected "
        "(height, width, channels), or (channels, height, width) for channels_first"),
    "open input size": (
        lambda: chain(layers.Conv2D(4, 3), shape=(None, None, 3)),
        "Keras model 'net': an input whose size is open; received input shape [None, None, 3]; expected an input "
        "shape given for the import (C,H,W)"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_name_the_keras_layer(case):
    build, message = REFUSALS[case]
    assert refusal(build()) == message


def test_an_input_shape_that_disagrees_with_the_model_is_refused():
    model = shared_model("small_functional_keras")
    assert refusal(model, (3, 32, 28)) == (
        "Keras model 'small_functional_keras': the input shape asked for disagrees with the model's input; "
        "received [3, 32, 28] (C,H,W); expected [3, 28, 32] (the model's input [28, 32, 3], channels_last)")
    assert imported(model, (3, 28, 32)).spec.input_shape == (3, 28, 32)


def test_a_file_that_needs_unsafe_loading_is_refused(tmp_path):
    path = importer.save_model(shared_model("lambda_keras"), tmp_path)
    with pytest.raises(ImportRefused) as err:
        importer.load_file(path)
    message = str(err.value)
    prefix = f"file '{path}': Keras cannot load the model; received "
    suffix = ("; expected a .keras file saved by Keras 3 that loads with safe_mode=True (no Lambda layers)")
    assert message.startswith(prefix) and message.endswith(suffix)
    assert "lambda" in message[len(prefix):-len(suffix)].lower()  # Keras' own first line says why
