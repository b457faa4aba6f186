"""The spec lowered to Keras 3: one builder per op in ``LOWERING``, assembled into a functional
NHWC model that holds the canonical weights (converted by ``layouts.py``).

The Keras layer named like the spec layer computes that layer's output; helper layers in
front of it (padding, permute) get derived names such as ``conv2_pad``. Importing this module
imports keras: the backend imports it only after choosing Keras' backend (``backend.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import keras

from ...spec import Layer, ModelSpec, check_weights, fmt_shape
from ...spec.ops import floor_mode_padding
from ..base import Weights
from . import layouts
from .layers import GroupedConv2D, LocalResponseNormalization, NegInfPadding2D, TorchAdaptiveAveragePooling2D
from .layouts import PERMUTE_NHWC_TO_NCHW

NHWC = "channels_last"

Builder = Callable[[Layer, "keras.KerasTensor"], "keras.KerasTensor"]


def _pads(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    top, bottom, left, right = padding
    return (top, bottom), (left, right)


def zero_pad(layer: Layer, x, padding):
    """Explicit zero padding in front of a 'valid' conv or average pool (never 'same')."""
    if not any(padding):
        return x
    return keras.layers.ZeroPadding2D(_pads(padding), data_format=NHWC, name=f"{layer.name}_pad")(x)


def conv2d(layer: Layer, x):
    a = layer.attrs
    x = zero_pad(layer, x, a["padding"])
    if a["groups"] == 1:
        conv = keras.layers.Conv2D(a["filters"], a["kernel"], strides=a["stride"], padding="valid",
                                   use_bias=a["bias"], data_format=NHWC, name=layer.name)
    else:
        conv = GroupedConv2D(a["filters"], a["kernel"], strides=a["stride"], groups=a["groups"],
                             use_bias=a["bias"], name=layer.name)
    return conv(x)


def maxpool2d(layer: Layer, x):
    padding = floor_mode_padding(layer.attrs, layer.input_shape)
    if any(padding):
        x = NegInfPadding2D(_pads(padding), name=f"{layer.name}_pad")(x)
    a = layer.attrs
    return keras.layers.MaxPooling2D(a["kernel"], strides=a["stride"], padding="valid", data_format=NHWC,
                                     name=layer.name)(x)


def avgpool2d(layer: Layer, x):
    a = layer.attrs  # zero padding counted in the divisor (count_include_pad), as the spec says
    x = zero_pad(layer, x, a["padding"])
    return keras.layers.AveragePooling2D(a["kernel"], strides=a["stride"], padding="valid", data_format=NHWC,
                                         name=layer.name)(x)


def flatten(layer: Layer, x):
    x = keras.layers.Permute(PERMUTE_NHWC_TO_NCHW, name=f"{layer.name}_chw")(x)  # see layouts.py
    return keras.layers.Flatten(name=layer.name)(x)


def lrn(layer: Layer, x):
    a = layer.attrs
    return LocalResponseNormalization(a["size"], a["alpha"], a["beta"], a["k"], name=layer.name)(x)


def batchnorm2d(layer: Layer, x):
    a = layer.attrs  # Keras' momentum is 1 - torch's; eps from the spec, never Keras' 1e-3 default
    return keras.layers.BatchNormalization(axis=-1, epsilon=a["eps"], momentum=1.0 - a["momentum"],
                                           name=layer.name)(x)


LOWERING: dict[str, Builder] = {
    "conv2d": conv2d,
    "relu": lambda layer, x: keras.layers.ReLU(name=layer.name)(x),
    "lrn": lrn,
    "maxpool2d": maxpool2d,
    "avgpool2d": avgpool2d,
    "adaptive_avgpool2d": lambda layer, x: TorchAdaptiveAveragePooling2D(layer.attrs["output"], name=layer.name)(x),
    "batchnorm2d": batchnorm2d,
    "dropout": lambda layer, x: keras.layers.Dropout(layer.attrs["rate"], name=layer.name)(x),
    "flatten": flatten,
    "linear": lambda layer, x: keras.layers.Dense(layer.attrs["units"], use_bias=layer.attrs["bias"],
                                                  name=layer.name)(x),
    # the spec's softmax is over axis 1 (channels / features): the last axis in NHWC
    "softmax": lambda layer, x: keras.layers.Softmax(axis=-1, name=layer.name)(x),
}


def keras_model_from_spec(spec: ModelSpec, weights: Weights, builders: Mapping[str, Builder] | None = None,
                          extra_inputs: Sequence["keras.KerasTensor"] = ()):
    """A Keras 3 functional model, input NHWC float32 with a free batch axis, computing the spec's
    function with the canonical ``weights``. Uses whatever backend keras was imported with.

    ``builders`` replace LOWERING's for some ops, and ``extra_inputs`` (which they read) follow the image
    input: the training model (training.py) swaps dropout and batch norm this way."""
    check_weights(spec, weights)
    table = {**LOWERING, **(builders or {})}
    c, h, w = spec.input_shape
    inputs = keras.Input(shape=(h, w, c), dtype="float32", name="input")
    x = inputs
    for layer in spec.layers:
        build = table.get(layer.op)
        if build is None:
            raise ValueError(f"spec '{spec.name}', layer '{layer.name}': no Keras builder for op '{layer.op}'; "
                             f"known ops: {', '.join(table)}")
        x = build(layer, x)
        expected = nhwc_shape(layer.output_shape)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"spec '{spec.name}', layer '{layer.name}' ({layer.op}): Keras output shape "
                             f"{fmt_shape(tuple(x.shape[1:]))} (NHWC), the spec's is {fmt_shape(expected)}")
    model = keras.Model([inputs, *extra_inputs] if extra_inputs else inputs, x, name=spec.name)
    for layer in spec.layers:
        arrays = layouts.keras_weights(layer.op, layer.name, weights)
        if arrays:
            model.get_layer(layer.name).set_weights(arrays)
    return model


def keras_layer_model(model, names: Sequence[str]):
    """A model on the same layers (shared weights) whose outputs are the named layers' outputs."""
    missing = [n for n in names if n not in {layer.name for layer in model.layers}]
    if missing:
        raise KeyError(f"model '{model.name}' has no layer {', '.join(map(repr, missing))}; "
                       f"layers: {', '.join(layer.name for layer in model.layers)}")
    return keras.Model(model.input, [model.get_layer(n).output for n in names], name=f"{model.name}_layers")


def load_keras_model(path: str | Path):
    """Reload a model saved with ``model.save('x.keras')`` (importing this module registered the
    custom layers)."""
    return keras.saving.load_model(str(path))


def nhwc_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)
