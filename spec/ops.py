"""The spec's ops: one handler per op kind, looked up by name.

A handler knows its fields (with defaults), its output shape, its parameters and its
multiply-accumulates, all from the spec alone. Shapes are ``(C, H, W)`` for feature maps
and ``(F,)`` after ``flatten``; the batch axis is never part of a spec shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .fields import (
    Field,
    FieldProblem,
    boolean,
    number_in,
    odd_positive_int,
    padding4,
    positive_int,
    positive_number,
    positive_pair,
)

Shape = tuple[int, ...]


class ShapeProblem(ValueError):
    """The layer cannot accept what reaches it. ``field`` names the field to point at, if any."""

    def __init__(self, what: str, received: object, expected: object, field: str | None = None):
        super().__init__(what)
        self.what, self.received, self.expected, self.field = what, received, expected, field


@dataclass(frozen=True)
class ParamShape:
    shape: tuple[int, ...]
    trainable: bool = True


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def _need_map(op: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeProblem(f"{op} needs a CxHxW feature map", f"{fmt_shape(shape)} features",
                           "a layer before any 'flatten'")
    return shape  # type: ignore[return-value]


def window_output(size: int, pad_before: int, pad_after: int, kernel: int, stride: int,
                  ceil_mode: bool = False) -> int:
    """Output length of a sliding window (torch's rule: a ceil-mode window may not start in the
    trailing padding)."""
    span = size + pad_before + pad_after - kernel
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_before:
        out -= 1
    return out


def floor_mode_padding(attrs: dict[str, Any], input_shape: Shape) -> tuple[int, int, int, int]:
    """The padding with which a floor-mode window gives the layer's output size: the spec's
    padding, plus for ceil mode the cells its last window hangs over the bottom/right edge.
    Backends pad with this and pool in floor mode (-inf cells never win a max)."""
    (kh, kw), (sh, sw), (top, bottom, left, right) = attrs["kernel"], attrs["stride"], attrs["padding"]
    _, h, w = input_shape
    ceil = attrs.get("ceil_mode", False)
    oh = window_output(h, top, bottom, kh, sh, ceil)
    ow = window_output(w, left, right, kw, sw, ceil)
    return top, max(bottom, (oh - 1) * sh + kh - h - top), left, max(right, (ow - 1) * sw + kw - w - left)


def adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling bins: [floor(i*size/out), ceil((i+1)*size/out)) for i < out;
    neighbours may overlap."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _spatial(op: str, a: dict, shape: Shape, ceil_mode: bool = False) -> tuple[int, int]:
    _, h, w = _need_map(op, shape)
    (kh, kw), (sh, sw), (pt, pb, pl, pr) = a["kernel"], a["stride"], a["padding"]
    oh = window_output(h, pt, pb, kh, sh, ceil_mode)
    ow = window_output(w, pl, pr, kw, sw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ShapeProblem(
            f"spatial size collapses to {max(oh, 0)}x{max(ow, 0)}",
            f"input {fmt_shape(shape)} with kernel {kh}x{kw}, stride {sh}x{sw}, padding {pt},{pb},{pl},{pr}",
            f"a kernel no larger than the padded input ({h + pt + pb}x{w + pl + pr})", "kernel")
    return oh, ow


class Op:
    name: str = ""
    summary: str = ""
    formula: str = ""
    fields: dict[str, Field] = {}
    # What kind of layer this is, for diagrams and tables (the report colours by family).
    family: str = ""
    # Parameters whose initial value is fixed by the op, whatever the model's init block says:
    # param -> (distribution, arguments), e.g. batch norm's weight 1 and running_var 1.
    fixed_init: dict[str, tuple[str, dict[str, float]]] = {}

    def check(self, a: dict[str, Any]) -> None:
        """Cross-field rules that need no input shape."""

    def output_shape(self, a: dict[str, Any], shape: Shape) -> Shape:
        return shape

    def param_shapes(self, a: dict[str, Any], shape: Shape) -> dict[str, ParamShape]:
        return {}

    def macs(self, a: dict[str, Any], shape: Shape, out: Shape) -> int:
        return 0

    def fan_in_out(self, a: dict[str, Any], shape: Shape) -> tuple[int, int]:
        return (0, 0)


_kernel = Field(positive_pair, "a positive integer or [height, width]")
_padding = Field(padding4, "an integer >= 0, [vertical, horizontal] or [top, bottom, left, right]", 0)


class Conv2d(Op):
    name = "conv2d"
    family = "convolution"
    summary = "2-D convolution (cross-correlation), optionally grouped"
    formula = ("y[n, o, i, j] = bias[o] + sum over c in group(o), u < kH, v < kW of "
               "weight[o, c - g(o)*Cin/groups, u, v] * xpad[n, c, i*sH + u, j*sW + v]; "
               "xpad is x zero-padded by [top, bottom, left, right]")
    fields = {
        "filters": Field(positive_int, "a positive integer (output channels)"),
        "kernel": _kernel,
        "stride": Field(positive_pair, "a positive integer or [height, width]", 1),
        "padding": _padding,
        "groups": Field(positive_int, "a positive integer dividing input and output channels", 1),
        "bias": Field(boolean, "true or false", True),
    }

    def check(self, a):
        if a["filters"] % a["groups"]:
            raise FieldProblem("filters must be divisible by groups",
                               f"filters {a['filters']}, groups {a['groups']}",
                               "groups dividing both input and output channels")

    def output_shape(self, a, shape):
        c = _need_map(self.name, shape)[0]
        if c % a["groups"]:
            raise ShapeProblem("input channels are not divisible by groups",
                               f"{c} input channels, groups {a['groups']}",
                               "groups dividing both input and output channels", "groups")
        return (a["filters"], *_spatial(self.name, a, shape))

    def param_shapes(self, a, shape):
        kh, kw = a["kernel"]
        params = {"weight": ParamShape((a["filters"], shape[0] // a["groups"], kh, kw))}
        if a["bias"]:
            params["bias"] = ParamShape((a["filters"],))
        return params

    def macs(self, a, shape, out):
        kh, kw = a["kernel"]
        return math.prod(out) * (shape[0] // a["groups"]) * kh * kw

    def fan_in_out(self, a, shape):
        kh, kw = a["kernel"]
        return shape[0] // a["groups"] * kh * kw, a["filters"] * kh * kw


class ReLU(Op):
    name = "relu"
    family = "activation"
    summary = "rectified linear unit"
    formula = "y = max(x, 0)"
    fields = {}


class LRN(Op):
    name = "lrn"
    family = "normalization"
    summary = "local response normalisation across channels (ONNX / PyTorch / Caffe convention)"
    formula = ("b[n, c, i, j] = a[n, c, i, j] / (k + alpha / size * sum over c' from "
               "max(0, c - (size-1)/2) to min(C-1, c + (size-1)/2) of a[n, c', i, j]^2)^beta. "
               "alpha is divided by size: the 2012 paper's (and TensorFlow's) alpha equals "
               "this alpha / size")
    fields = {
        "size": Field(odd_positive_int, "an odd positive integer (channels in the window)"),
        "alpha": Field(number_in(0.0, math.inf), "a number >= 0 (divided by size)", 1e-4),
        "beta": Field(number_in(0.0, math.inf), "a number >= 0", 0.75),
        "k": Field(positive_number, "a number > 0", 1.0),
    }

    def output_shape(self, a, shape):
        return _need_map(self.name, shape)


class MaxPool2d(Op):
    name = "maxpool2d"
    family = "pooling"
    summary = "max pooling; padded cells are -inf, never 0"
    formula = ("y[n, c, i, j] = max over u < kH, v < kW of xpad[n, c, i*sH + u, j*sW + v], "
               "xpad padded with -inf. Output size floor((H + pt + pb - kH) / sH) + 1, or with "
               "ceil_mode the ceiling, dropping a last window that would start in the bottom/right "
               "padding (torch's rule)")
    fields = {
        "kernel": _kernel,
        "stride": Field(positive_pair, "a positive integer or [height, width] (default: the kernel)", None),
        "padding": _padding,
        "ceil_mode": Field(boolean, "true or false", False),
    }

    def check(self, a):
        if a["stride"] is None:
            a["stride"] = a["kernel"]
        _check_half_kernel_padding(a)

    def output_shape(self, a, shape):
        return (shape[0], *_spatial(self.name, a, shape, a.get("ceil_mode", False)))


def _check_half_kernel_padding(a: dict[str, Any]) -> None:
    (kh, kw), (pt, pb, pl, pr) = a["kernel"], a["padding"]
    if max(pt, pb) > kh // 2 or max(pl, pr) > kw // 2:
        raise FieldProblem("pooling padding may be at most half the kernel (else a window sees only padding)",
                           f"padding {pt},{pb},{pl},{pr} with kernel {kh}x{kw}",
                           f"each side <= {kh // 2} (rows) and <= {kw // 2} (columns)")


class AvgPool2d(Op):
    name = "avgpool2d"
    family = "pooling"
    summary = "average pooling; zero padding counts in the divisor (count_include_pad)"
    formula = ("y[n, c, i, j] = (1 / (kH*kW)) * sum over u < kH, v < kW of "
               "xpad[n, c, i*sH + u, j*sW + v], xpad zero-padded; output size "
               "floor((H + pt + pb - kH) / sH) + 1")
    fields = {
        "kernel": _kernel,
        "stride": Field(positive_pair, "a positive integer or [height, width] (default: the kernel)", None),
        "padding": _padding,
    }

    check = MaxPool2d.check

    def output_shape(self, a, shape):
        return (shape[0], *_spatial(self.name, a, shape))


class AdaptiveAvgPool2d(Op):
    name = "adaptive_avgpool2d"
    family = "pooling"
    summary = "average pooling to a fixed output size (torch's bins)"
    formula = ("y[n, c, i, j] = mean of x[n, c, floor(i*H/oH) : ceil((i+1)*H/oH), "
               "floor(j*W/oW) : ceil((j+1)*W/oW)]")
    fields = {"output": Field(positive_pair, "a positive integer or [height, width]")}

    def output_shape(self, a, shape):
        return (_need_map(self.name, shape)[0], *a["output"])


class BatchNorm2d(Op):
    name = "batchnorm2d"
    family = "normalization"
    summary = "batch normalisation with running statistics (inference form)"
    formula = ("y = (x - running_mean[c]) / sqrt(running_var[c] + eps) * weight[c] + bias[c]. "
               "momentum is torch's convention (new = (1 - momentum) * old + momentum * batch); "
               "Keras' momentum is 1 - this")
    fields = {
        "eps": Field(positive_number, "a number > 0 (torch's default 1e-5, Keras' 1e-3)", 1e-5),
        "momentum": Field(number_in(0.0, 1.0), "a number in [0, 1] (torch convention)", 0.1),
    }

    fixed_init = {"weight": ("constant", {"value": 1.0}), "bias": ("constant", {"value": 0.0}),
                  "running_mean": ("constant", {"value": 0.0}), "running_var": ("constant", {"value": 1.0})}

    def output_shape(self, a, shape):
        return _need_map(self.name, shape)

    def param_shapes(self, a, shape):
        c = (shape[0],)
        return {"weight": ParamShape(c), "bias": ParamShape(c),
                "running_mean": ParamShape(c, False), "running_var": ParamShape(c, False)}


class Dropout(Op):
    name = "dropout"
    family = "regularization"
    summary = "dropout; the identity at inference"
    formula = "y = x (inference); training zeroes with probability rate and scales by 1 / (1 - rate)"
    fields = {"rate": Field(number_in(0.0, 1.0, high_open=True), "a number in [0, 1)", 0.5)}


class Flatten(Op):
    name = "flatten"
    family = "reshape"
    summary = "flatten a feature map in C, H, W order"
    formula = "y[n, c*H*W + i*W + j] = x[n, c, i, j]"
    fields = {}

    def output_shape(self, a, shape):
        return (math.prod(_need_map(self.name, shape)),)


class Linear(Op):
    name = "linear"
    family = "dense"
    summary = "fully connected layer"
    formula = "y[n, o] = bias[o] + sum over i of weight[o, i] * x[n, i]"
    fields = {
        "units": Field(positive_int, "a positive integer (output features)"),
        "in_features": Field(positive_int, "a positive integer (checked against what reaches the layer)", None),
        "bias": Field(boolean, "true or false", True),
    }

    def output_shape(self, a, shape):
        if len(shape) != 1:
            raise ShapeProblem("linear needs flattened features", f"a {fmt_shape(shape)} feature map",
                               "a 'flatten' layer before it")
        if a["in_features"] is not None and a["in_features"] != shape[0]:
            raise ShapeProblem("input features disagree with in_features", f"{shape[0]} features",
                               f"{a['in_features']} (in_features)", "in_features")
        return (a["units"],)

    def param_shapes(self, a, shape):
        params = {"weight": ParamShape((a["units"], shape[0]))}
        if a["bias"]:
            params["bias"] = ParamShape((a["units"],))
        return params

    def macs(self, a, shape, out):
        return shape[0] * a["units"]

    def fan_in_out(self, a, shape):
        return shape[0], a["units"]


class Softmax(Op):
    name = "softmax"
    family = "activation"
    summary = "softmax over the channel / feature axis"
    formula = "y[n, c, ...] = exp(x[n, c, ...] - max_c x) / sum over c' of exp(x[n, c', ...] - max_c x)"
    fields = {}


OPS: dict[str, Op] = {op.name: op for op in (
    Conv2d(), ReLU(), LRN(), MaxPool2d(), AvgPool2d(), AdaptiveAvgPool2d(),
    BatchNorm2d(), Dropout(), Flatten(), Linear(), Softmax())}
