"""The Keras side of each spec op: custom layers, and one builder per op kind.

The custom layers use ``keras.ops`` only, so the same code runs on the TensorFlow, torch and
JAX backends, and they are registered serializable so a model saves to and reloads from
``.keras``. Everything is NHWC (``channels_last`` is passed explicitly, whatever keras.json
says). Weight layouts are in ``layouts.py``; the builders that use these layers are in ``lowering.py``.

Importing this module imports keras: set ``KERAS_BACKEND`` before (``runtime.import_keras`` does).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ...spec.ops import adaptive_bins

NHWC = "channels_last"
serializable = keras.saving.register_keras_serializable(package="alexbench")


@serializable
class LocalResponseNormalization(keras.layers.Layer):
    """LRN across channels with the spec's semantics (ONNX / torch / Caffe convention):

    y = x / (k + alpha / size * sum of x^2 over the channels c-(size-1)/2 .. c+(size-1)/2)^beta,

    the window clipped at the channel edges (zero-padded squares). ``alpha`` is divided by
    ``size`` here; TensorFlow's ``local_response_normalization`` does not divide, so passing it
    the spec's alpha unchanged is a bug. Written with keras.ops (a sum of ``size`` channel
    slices) so it runs on every Keras backend and exports to plain ONNX Pow/Slice/Add ops.
    """

    def __init__(self, size: int, alpha: float, beta: float, k: float, **kwargs):
        super().__init__(**kwargs)
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LRN size must be an odd positive integer, received {size}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def call(self, x):
        half = (self.size - 1) // 2
        channels = x.shape[-1]
        squares = ops.pad(ops.square(x), [[0, 0], [0, 0], [0, 0], [half, half]])
        window = squares[..., 0:channels]
        for d in range(1, self.size):
            window = window + squares[..., d:d + channels]
        return x / ops.power(self.k + (self.alpha / self.size) * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}


@serializable
class GroupedConv2D(keras.layers.Layer):
    """Grouped 'valid' convolution as split -> one conv per group -> concat.

    Keras' Conv2D(groups=g) runs on TensorFlow's CPU, but its ONNX export writes an invalid
    StatefulPartitionedCall node; this layer exports as ``groups`` plain Conv ops. The kernel
    is one (kH, kW, I/groups, O) tensor, Conv2D(groups)'s layout, so the parameter count is
    the spec's; group g reads input channels and writes kernel columns of block g.
    """

    def __init__(self, filters: int, kernel_size, strides=(1, 1), groups: int = 1, use_bias: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        if filters % groups:
            raise ValueError(f"GroupedConv2D: filters {filters} not divisible by groups {groups}")
        self.filters, self.groups, self.use_bias = int(filters), int(groups), bool(use_bias)
        self.kernel_size, self.strides = tuple(kernel_size), tuple(strides)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(f"GroupedConv2D '{self.name}': {channels} input channels not divisible by "
                             f"groups {self.groups}")
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, channels // self.groups,
                                                            self.filters), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") \
            if self.use_bias else None

    def call(self, x):
        cin, cout = x.shape[-1] // self.groups, self.filters // self.groups
        y = ops.concatenate([
            ops.conv(x[..., g * cin:(g + 1) * cin], self.kernel[..., g * cout:(g + 1) * cout],
                     strides=self.strides, padding="valid", data_format=NHWC)
            for g in range(self.groups)], axis=-1)
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        return (n, (h - kh) // sh + 1, (w - kw) // sw + 1, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "groups": self.groups, "use_bias": self.use_bias}


@serializable
class NegInfPadding2D(keras.layers.Layer):
    """Pad an NHWC map with -inf: the padding a max pool needs (zeros win over negative inputs)."""

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        (top, bottom), (left, right) = padding
        self.padding = ((int(top), int(bottom)), (int(left), int(right)))

    def call(self, x):
        return ops.pad(x, [[0, 0], list(self.padding[0]), list(self.padding[1]), [0, 0]],
                       constant_values=float("-inf"))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        (top, bottom), (left, right) = self.padding
        return (n, None if h is None else h + top + bottom, None if w is None else w + left + right, c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@serializable
class TorchAdaptiveAveragePooling2D(keras.layers.Layer):
    """Adaptive average pooling with torch's bins: output cell (i, j) is the mean of rows
    floor(i*H/oH) .. ceil((i+1)*H/oH) - 1 and the same for columns.

    A rectangle's mean is the mean over its rows of the mean over its columns, so this pools
    rows then columns (oH + oW slices, not oH * oW). When H and W divide evenly it is a plain
    average pool. Needs a static H and W (known from the spec).
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(v) for v in output_size)

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        oh, ow = self.output_size
        if h % oh == 0 and w % ow == 0:
            return ops.average_pool(x, (h // oh, w // ow), strides=(h // oh, w // ow), padding="valid",
                                    data_format=NHWC)
        x = ops.concatenate([ops.mean(x[:, a:b], axis=1, keepdims=True) for a, b in adaptive_bins(h, oh)], axis=1)
        return ops.concatenate([ops.mean(x[:, :, a:b], axis=2, keepdims=True) for a, b in adaptive_bins(w, ow)],
                               axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


# --- training only (training.py): the layers whose training form differs from Keras' own ---

@serializable
class MaskedDropout(keras.layers.Layer):
    """Inverted dropout with a keep mask given as the second input: y = x * mask / (1 - rate). The
    harness draws the masks, so every backend drops the same units; Keras' Dropout would draw its own."""

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, inputs):
        x, mask = inputs
        return x * mask / (1.0 - self.rate)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class TorchStatisticsBatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization whose training step updates the moving variance with the unbiased batch
    variance, as torch does: Keras normalises with the biased variance over (N, H, W) and also stores that
    one; torch stores it times n / (n - 1), n = N*H*W. ``variance_correction(n)`` gives that factor (the
    backend's hook). Inference, weights and their order are Keras' own."""

    def __init__(self, variance_correction, **kwargs):
        super().__init__(**kwargs)
        self.variance_correction = variance_correction

    def call(self, inputs, training=None, mask=None):
        if not training:
            return super().call(inputs, training=training, mask=mask)
        axes = list(range(len(inputs.shape) - 1))  # all but the channels (last)
        mean, variance = ops.moments(inputs, axes=axes)
        n = math.prod(int(inputs.shape[a]) for a in axes)  # static: the batch size is known when the step runs
        unbiased = ops.stop_gradient(variance) * self.variance_correction(n)
        m = self.momentum  # Keras' convention: the weight of the old value
        self.moving_mean.assign(self.moving_mean * m + ops.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + unbiased * (1.0 - m))
        return ops.batch_normalization(inputs, mean, variance, axis=-1, offset=self.beta, scale=self.gamma,
                                       epsilon=self.epsilon)
