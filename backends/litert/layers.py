"""LRN as deployed TensorFlow Lite models carry it: ``tf.nn.local_response_normalization``, which the
converter turns into the builtin LOCAL_RESPONSE_NORMALIZATION op (the Keras backend's own LRN layer is a
sum of channel slices, portable to every Keras engine, and would reach the file as ~10 elementwise ops).

TensorFlow's convention differs from the spec's (ONNX / torch): y = x / (bias + alpha * sum)^beta with the
sum over 2 * depth_radius + 1 channels and alpha NOT divided by the window. So depth_radius = (size - 1) / 2,
bias = k, beta = beta, and alpha = the spec's alpha / size: the division is ``LiteRtBackend.tflite_lrn_alpha``,
one overridable method (a test plants the undivided alpha there and sees the comparison catch it at the LRN
layer).

Importing this module imports keras and tensorflow: only the LiteRT backend's build does, after the worker
set KERAS_BACKEND=tensorflow.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from ...spec import Layer


class TfLocalResponseNormalization(keras.layers.Layer):
    """LRN across the channels (last axis, NHWC) by TensorFlow's own op; ``alpha`` in TensorFlow's
    convention (not divided by the window)."""

    def __init__(self, depth_radius: int, bias: float, alpha: float, beta: float, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius, self.bias, self.alpha, self.beta = int(depth_radius), float(bias), float(alpha), float(beta)

    def call(self, x):
        return tf.nn.local_response_normalization(x, depth_radius=self.depth_radius, bias=self.bias,
                                                  alpha=self.alpha, beta=self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape


def lrn_builder(tflite_alpha: Callable[[Layer], float]):
    """The Keras builder of an ``lrn`` layer whose TensorFlow alpha is ``tflite_alpha(layer)``."""

    def lrn(layer: Layer, x):
        a = layer.attrs
        return TfLocalResponseNormalization((a["size"] - 1) // 2, a["k"], tflite_alpha(layer), a["beta"],
                                            name=layer.name)(x)

    return lrn
