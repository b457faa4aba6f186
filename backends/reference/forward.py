"""The reference's forward pass: every op of ``spec/ops.py`` in float64 NumPy, the parity oracle.

Each op is one handler, looked up by name in ``LOWERING``, that follows the formula written
in ``spec/ops.py`` literally (padding values, window rules, the LRN window clipped at the
channel edges, torch's adaptive bins). Speed comes only from vectorising those formulas:
windows are ``sliding_window_view`` views, convolution is im2col + one matmul per group.
Nothing is float32 here: inputs and weights are promoted to float64 before any arithmetic.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...spec import Layer, ModelSpec, fmt_shape
from ...spec.ops import adaptive_bins, floor_mode_padding
from ..base import Weights

Params = dict[str, np.ndarray]
Handler = Callable[[np.ndarray, Layer, Params], np.ndarray]


def pad(x: np.ndarray, padding: tuple[int, int, int, int], value: float) -> np.ndarray:
    top, bottom, left, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def windows(xpad: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
             out_hw: tuple[int, int]) -> np.ndarray:
    """View (N, C, oH, oW, kH, kW): window (i, j) starts at xpad[..., i*sH, j*sW]."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    view = sliding_window_view(xpad, (kh, kw), axis=(2, 3))
    return view[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]


def im2col(win: np.ndarray) -> np.ndarray:
    """Windows (N, C, oH, oW, kH, kW) as a matrix: rows (n, i, j), columns (c, u, v) in a conv weight's
    (I/groups, kH, kW) order."""
    n, c, oh, ow, kh, kw = win.shape
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)


def _out_hw(layer: Layer) -> tuple[int, int]:
    return layer.output_shape[1], layer.output_shape[2]


def conv2d(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    a = layer.attrs
    groups, (kh, kw) = a["groups"], a["kernel"]
    n, c = x.shape[:2]
    oh, ow = _out_hw(layer)
    cg, og = c // groups, a["filters"] // groups
    win = windows(pad(x, a["padding"], 0.0), a["kernel"], a["stride"], (oh, ow))
    out = np.empty((n, a["filters"], oh, ow))
    for g in range(groups):
        cols = im2col(win[:, g * cg : (g + 1) * cg])
        w = p["weight"][g * og : (g + 1) * og].reshape(og, cg * kh * kw)
        out[:, g * og : (g + 1) * og] = (cols @ w.T).reshape(n, oh, ow, og).transpose(0, 3, 1, 2)
    if "bias" in p:
        out += p["bias"][None, :, None, None]
    return out


def relu(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    return np.maximum(x, 0.0)


def channel_window_sum(v: np.ndarray, size: int) -> np.ndarray:
    """LRN's window: sum over channels c - (size-1)/2 .. c + (size-1)/2 of v, clipped to [0, C-1]
    (zeros beyond the edges). The window is symmetric, so its backward is the same sum."""
    half = (size - 1) // 2
    padded = np.pad(v, ((0, 0), (half, half), (0, 0), (0, 0)))
    return sliding_window_view(padded, size, axis=1).sum(axis=-1)


def lrn(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    a = layer.attrs
    return x / (a["k"] + a["alpha"] / a["size"] * channel_window_sum(x * x, a["size"])) ** a["beta"]


def maxpool2d(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    a = layer.attrs
    # Ceil mode's last window may hang past the bottom/right edge: -inf covers it, so it never wins.
    padding = floor_mode_padding(a, layer.input_shape)
    win = windows(pad(x, padding, -np.inf), a["kernel"], a["stride"], _out_hw(layer))
    return win.max(axis=(-2, -1))


def avgpool2d(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    a = layer.attrs
    kh, kw = a["kernel"]
    win = windows(pad(x, a["padding"], 0.0), a["kernel"], a["stride"], _out_hw(layer))
    return win.sum(axis=(-2, -1)) / (kh * kw)  # padded zeros count in the divisor


def adaptive_avgpool2d(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    oh, ow = layer.attrs["output"]
    h, w = x.shape[2:]
    out = np.empty((*x.shape[:2], oh, ow))
    for i, (h0, h1) in enumerate(adaptive_bins(h, oh)):
        for j, (w0, w1) in enumerate(adaptive_bins(w, ow)):
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


def batchnorm2d(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    def per_channel(v: np.ndarray) -> np.ndarray:
        return v[None, :, None, None]

    scale = per_channel(p["weight"]) / np.sqrt(per_channel(p["running_var"]) + layer.attrs["eps"])
    return (x - per_channel(p["running_mean"])) * scale + per_channel(p["bias"])


def dropout(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    return x  # inference


def flatten(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    return x.reshape(x.shape[0], -1)  # C-order reshape of NCHW: C, H, W order


def linear(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    y = x @ p["weight"].T
    return y + p["bias"] if "bias" in p else y


def softmax(x: np.ndarray, layer: Layer, p: Params) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))  # shifted: exp never overflows
    return e / e.sum(axis=1, keepdims=True)


LOWERING: dict[str, Handler] = {f.__name__: f for f in (
    conv2d, relu, lrn, maxpool2d, avgpool2d, adaptive_avgpool2d, batchnorm2d, dropout, flatten, linear, softmax)}


def check_input(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(spec.input_shape) or x.shape[0] < 1:
        raise ValueError(f"reference: input for spec '{spec.name}' has shape {list(x.shape)}; "
                         f"expected [N, {', '.join(map(str, spec.input_shape))}] (NCHW, N >= 1)")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"reference: input for spec '{spec.name}' has dtype {x.dtype}; expected a float dtype")
    return x.astype(np.float64)


def check_weights(spec: ModelSpec, weights: Weights) -> None:
    """Names and shapes against the spec (any float dtype: tests pass float64 weights)."""
    expected = spec.param_shapes()
    problems = [f"missing {k} {fmt_shape(s)}" for k, s in expected.items() if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in expected]
    problems += [f"{k} has shape {fmt_shape(np.shape(weights[k]))}, expected {fmt_shape(s)}"
                 for k, s in expected.items() if k in weights and tuple(np.shape(weights[k])) != tuple(s)]
    if problems:
        raise ValueError(f"reference: weights do not fit spec '{spec.name}': " + "; ".join(problems))


def _wanted(spec: ModelSpec, layers: Sequence[str] | None) -> set[str]:
    names = [layer.name for layer in spec.layers]
    if layers is None:
        return set(names)
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise KeyError(f"reference: spec '{spec.name}' has no layer {', '.join(map(repr, unknown))}; "
                       f"its layers: {', '.join(names)}")
    return set(layers)


def layer_params(layer: Layer, weights: Weights) -> Params:
    """A layer's tensors by parameter name ("weight"), as float64."""
    return {p: np.asarray(weights[f"{layer.name}.{p}"], dtype=np.float64) for p in layer.params}


def run_layer(layer: Layer, x: np.ndarray, weights: Weights) -> np.ndarray:
    """One spec layer on a float64 batch, its output shape checked against the spec's inference."""
    handler = LOWERING.get(layer.op)
    if handler is None:
        raise NotImplementedError(f"reference: layer '{layer.name}' has op '{layer.op}', which has no handler; "
                                  f"known ops: {', '.join(LOWERING)}")
    y = handler(x, layer, layer_params(layer, weights))
    if tuple(y.shape[1:]) != tuple(layer.output_shape):
        raise RuntimeError(f"reference: layer '{layer.name}' ({layer.op}) produced {fmt_shape(y.shape[1:])}; "
                           f"the spec infers {fmt_shape(layer.output_shape)}")
    return y


def reference_forward(spec: ModelSpec, weights: Weights, x: np.ndarray,
                      layers: Sequence[str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run ``spec`` on the NCHW batch ``x`` in float64. Returns the final output and the outputs
    of the named ``layers`` (None: every layer), NCHW or (N, F), all float64. A layer output
    may be the same array as the one before it (dropout): treat the results as read-only."""
    wanted = _wanted(spec, layers)
    check_weights(spec, weights)
    y = check_input(spec, x)
    captured: dict[str, np.ndarray] = {}
    for layer in spec.layers:
        y = run_layer(layer, y, weights)
        if layer.name in wanted:
            captured[layer.name] = y
    order = [layer.name for layer in spec.layers] if layers is None else list(dict.fromkeys(layers))
    return y, {name: captured[name] for name in order}
