"""Every layout conversion between the canonical (torch-like) layouts and Keras', in one place.

Canonical (``spec/weights.py``, docs/architecture.md): activations NCHW; conv weight OIHW, a grouped conv
(O, I/groups, kH, kW); linear weight (out, in); flatten in C, H, W order; batchnorm weight,
bias, running_mean, running_var.

Keras side: activations NHWC (TensorFlow's CPU convolution only runs NHWC); conv kernel HWIO;
a grouped conv kernel (kH, kW, I/groups, O) -- the layout of Keras' own Conv2D(groups=g) kernel,
which our split->conv->concat layer (``layers.GroupedConv2D``) keeps: group g reads input
channels [g*I/groups, (g+1)*I/groups) and owns kernel columns [g*O/groups, (g+1)*O/groups);
Dense kernel (in, out); BatchNormalization weights gamma, beta, moving_mean, moving_variance.

Flatten order -- the one choice here. torch flattens C,H,W; a Keras Flatten of an NHWC map
flattens H,W,C, so a plain ``W.T`` for the first linear after a flatten (fc6) is wrong. Of
the two fixes (permute fc6's rows, or a Permute((3, 1, 2)) layer before Flatten) we use the
**Permute**, because then every (N, F) tensor in the Keras model is already in canonical
order: the named outputs of ``flatten`` and of anything between it and fc6 (dropout, relu)
need no conversion, every Dense kernel is a plain transpose (one rule, no bookkeeping of which
linear follows which flatten, even through intervening layers), and the cost is one transpose
of a 256x6x6 map per image. ``flatten_like_keras_permute`` below is that layer in NumPy.

Pure NumPy: nothing here imports a framework.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..layouts import need_rank, nhwc_to_nchw

# Keras' Permute dims (1-based, batch excluded) taking NHWC to NCHW: the layer placed before
# every Flatten so that it flattens in C, H, W order.
PERMUTE_NHWC_TO_NCHW = (3, 1, 2)


def flatten_like_keras_permute(x_nhwc: np.ndarray) -> np.ndarray:
    """What Permute((3, 1, 2)) + Flatten computes on an NHWC map: the canonical C,H,W flatten."""
    return nhwc_to_nchw(x_nhwc).reshape(len(x_nhwc), -1)


def conv_weight_to_keras(w: np.ndarray) -> np.ndarray:
    """OIHW (or grouped O, I/groups, kH, kW) -> HWIO (grouped: kH, kW, I/groups, O)."""
    return np.ascontiguousarray(np.transpose(need_rank(w, 4, "conv weight"), (2, 3, 1, 0)))


def conv_weight_from_keras(k: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(need_rank(k, 4, "conv kernel"), (3, 2, 0, 1)))


def linear_weight_to_keras(w: np.ndarray) -> np.ndarray:
    """(out, in) -> Dense kernel (in, out). Plain transpose: see the flatten note above."""
    return np.ascontiguousarray(need_rank(w, 2, "linear weight").T)


def linear_weight_from_keras(k: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(need_rank(k, 2, "dense kernel").T)


# Per op: the canonical parameter names in the order of the Keras layer's get_weights(),
# and the converter (to Keras, from Keras) applied to each.
_IDENTITY = (np.asarray, np.asarray)
_KERAS_WEIGHT_ORDER: dict[str, tuple[tuple[str, tuple], ...]] = {
    "conv2d": (("weight", (conv_weight_to_keras, conv_weight_from_keras)), ("bias", _IDENTITY)),
    "linear": (("weight", (linear_weight_to_keras, linear_weight_from_keras)), ("bias", _IDENTITY)),
    "batchnorm2d": (("weight", _IDENTITY), ("bias", _IDENTITY), ("running_mean", _IDENTITY),
                    ("running_var", _IDENTITY)),
}


def keras_weights(op: str, layer: str, weights: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The canonical tensors ``<layer>.<param>`` of one layer as its Keras get_weights() list."""
    return [convert[0](weights[f"{layer}.{param}"]).astype(np.float32, copy=False)
            for param, convert in _KERAS_WEIGHT_ORDER.get(op, ()) if f"{layer}.{param}" in weights]


def keras_param_order(op: str, params) -> list[str]:
    """The canonical parameter names of a layer with ``params``, in the order of its Keras weights."""
    return [p for p, _ in _KERAS_WEIGHT_ORDER.get(op, ()) if p in params]


def canonical_from_keras(op: str, param: str, array: np.ndarray) -> np.ndarray:
    """One Keras tensor of an ``op`` layer (a weight, or its gradient) in the canonical layout of ``param``."""
    return dict(_KERAS_WEIGHT_ORDER[op])[param][1](array)


def canonical_weights_from_keras(op: str, layer: str, params: list[str],
                                 arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of ``keras_weights``: a Keras layer's get_weights() back to ``<layer>.<param>``.

    ``params`` are the canonical parameter names the layer has (e.g. no bias)."""
    order = keras_param_order(op, params)
    if len(order) != len(arrays):
        raise ValueError(f"layer '{layer}' ({op}): Keras gave {len(arrays)} arrays, "
                         f"expected {len(order)} ({', '.join(order)})")
    return {f"{layer}.{p}": canonical_from_keras(op, p, a) for p, a in zip(order, arrays)}
