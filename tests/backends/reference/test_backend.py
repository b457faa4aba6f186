"""The float64 reference: every op against hand-computed answers and against the dumbest
textbook loops (written here, one per op), bugs planted into the reference that those loops
must catch, and whole specs end to end with shapes checked against the spec's inference.

No other framework is an oracle here (onnx.reference's LRN loops over the batch axis)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from alexbench.backends.reference import forward as reference
from alexbench.backends.reference.backend import ReferenceBackend
from alexbench.backends.reference.forward import LOWERING, reference_forward, run_layer
from alexbench.spec import canonical_weights, load_spec, parse_spec
from alexbench.spec.ops import window_output

OP_SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").glob("ops-*.yaml"))
SHIPPED_SPECS = ("alexnet", "alexnet-owt", "alexnet-blog-keras")
CLOSE = {"rtol": 1e-12, "atol": 1e-12}  # float64 summed in another order: ~1e-15 apart


def make_spec(input_chw, *layers: dict):
    """A spec from layer mappings; layers are named l0, l1, ... unless named."""
    lines = [yaml.safe_dump({"name": f"l{i}", **layer}, default_flow_style=True, sort_keys=False, width=10**6).strip()
             for i, layer in enumerate(layers)]
    return parse_spec(f"name: t\ninput: {list(input_chw)}\nlayers:\n" + "".join(f"  - {s}\n" for s in lines))


def run_one(layer: dict, x, weights=None):
    """The reference output of a one-layer spec on x (N, C, H, W); weights keyed by param name."""
    x = np.asarray(x, dtype=np.float64)
    spec = make_spec(x.shape[1:], {"name": "l0", **layer})
    out, _ = reference_forward(spec, {f"l0.{k}": np.asarray(v, np.float64) for k, v in (weights or {}).items()}, x)
    return out


# ---------------------------------------------------------------- hand-computed cases

def test_conv_hand_cases():
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out = run_one({"op": "conv2d", "filters": 1, "kernel": 2}, x, {"weight": np.ones((1, 1, 2, 2)), "bias": [0.5]})
    np.testing.assert_array_equal(out, [[[[12.5, 16.5], [24.5, 28.5]]]])
    # Asymmetric padding (1 row on top, 1 column on the right): the bias alone where only zeros are seen.
    out = run_one({"op": "conv2d", "filters": 1, "kernel": 1, "padding": [1, 0, 0, 1]},
                  np.ones((1, 1, 2, 2)), {"weight": [[[[2.0]]]], "bias": [1.0]})
    np.testing.assert_array_equal(out, [[[[1, 1, 1], [3, 3, 1], [3, 3, 1]]]])
    # Cross-correlation, not convolution: the kernel is not flipped.
    out = run_one({"op": "conv2d", "filters": 1, "kernel": [1, 2], "bias": False}, [[[[1.0, 10.0]]]],
                  {"weight": [[[[1.0, 0.0]]]]})
    np.testing.assert_array_equal(out, [[[[1.0]]]])
    # groups 2, stride 2: each output channel sees its own input channel only.
    x = np.stack([np.full((3, 3), 1.0), np.full((3, 3), 100.0)])[None]
    out = run_one({"op": "conv2d", "filters": 2, "kernel": 1, "stride": 2, "groups": 2, "bias": False}, x,
                  {"weight": [[[[3.0]]], [[[5.0]]]]})
    np.testing.assert_array_equal(out, np.stack([np.full((2, 2), 3.0), np.full((2, 2), 500.0)])[None])


def test_relu_dropout_flatten_hand_cases():
    x = np.array([-1.0, 0.0, 2.0, -0.5]).reshape(1, 2, 1, 2)
    np.testing.assert_array_equal(run_one({"op": "relu"}, x), [[[[0, 0]], [[2, 0]]]])
    np.testing.assert_array_equal(run_one({"op": "dropout", "rate": 0.5}, x), x)
    x = np.arange(12.0).reshape(1, 2, 2, 3)  # C, H, W order: the memory order of NCHW
    np.testing.assert_array_equal(run_one({"op": "flatten"}, x), [np.arange(12.0)])


def test_lrn_hand_cases():
    # alpha 3 / size 3 = 1, beta 1, k 1 on channels a = 1, 2, 3; the window is clipped at both edges.
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    out = run_one({"op": "lrn", "size": 3, "alpha": 3.0, "beta": 1.0, "k": 1.0}, x)
    np.testing.assert_allclose(out.ravel(), [1 / (1 + 1 + 4), 2 / (1 + 1 + 4 + 9), 3 / (1 + 4 + 9)], **CLOSE)
    # size 1: each channel alone; beta 0.5, k 2, alpha 2 -> a / sqrt(2 + 2 a^2).
    out = run_one({"op": "lrn", "size": 1, "alpha": 2.0, "beta": 0.5, "k": 2.0}, x)
    np.testing.assert_allclose(out.ravel(), [1 / 2, 2 / math.sqrt(10), 3 / math.sqrt(20)], **CLOSE)


def test_maxpool_hand_cases():
    neg = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: zero padding would win everywhere
    out = run_one({"op": "maxpool2d", "kernel": 2, "stride": 2, "padding": 1}, neg)
    np.testing.assert_array_equal(out, [[[[-1, -2], [-4, -5]]]])
    # ceil mode, no padding: 5 -> 3 windows, the last one hangs over the edge and sees row/column 4 only.
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    out = run_one({"op": "maxpool2d", "kernel": 2, "stride": 2, "ceil_mode": True}, x)
    np.testing.assert_array_equal(out, [[[[6, 8, 9], [16, 18, 19], [21, 23, 24]]]])
    np.testing.assert_array_equal(run_one({"op": "maxpool2d", "kernel": 2, "stride": 2}, x), [[[[6, 8], [16, 18]]]])
    # ceil mode with padding 1 on a row of 4 (kernel 3, stride 2): windows {0,1}, {1,2,3}, {3} of the row.
    out = run_one({"op": "maxpool2d", "kernel": [1, 3], "stride": [1, 2], "padding": [0, 0, 1, 1], "ceil_mode": True},
                  [[[[-3.0, -1.0, -4.0, -2.0]]]])
    np.testing.assert_array_equal(out, [[[[-1, -1, -2]]]])
    # torch's rule: a ceil-mode window may not start in the trailing padding (3 + 2 - 2 over 2 -> 2, not 3).
    out = run_one({"op": "maxpool2d", "kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, neg)
    np.testing.assert_array_equal(out, [[[[-1, -2], [-4, -5]]]])


def test_avgpool_hand_case():
    # Padding 1 on top and right: zeros are counted in the divisor (always kH * kW = 4).
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    out = run_one({"op": "avgpool2d", "kernel": 2, "stride": 1, "padding": [1, 0, 0, 1]}, x)
    np.testing.assert_array_equal(out, [[[[0.75, 0.5], [2.5, 1.5]]]])


def test_adaptive_avgpool_hand_cases():
    # 5 -> 2: bins [0, 3) and [2, 5) overlap at index 2; 7 -> 3: [0, 3), [2, 5), [4, 7).
    out = run_one({"op": "adaptive_avgpool2d", "output": [1, 2]}, [[[[1.0, 2, 3, 4, 5]]]])
    np.testing.assert_array_equal(out, [[[[2, 4]]]])
    out = run_one({"op": "adaptive_avgpool2d", "output": [3, 1]}, np.arange(7.0).reshape(1, 1, 7, 1))
    np.testing.assert_array_equal(out, [[[[1], [3], [5]]]])


def test_batchnorm_hand_case():
    # (3 - 1) / sqrt(3 + 1) * 2 + 0.5 = 2.5 on channel 0; channel 1: (0 - 0) / ... + -1 = -1.
    x = np.array([3.0, 0.0]).reshape(1, 2, 1, 1)
    out = run_one({"op": "batchnorm2d", "eps": 1.0}, x,
                  {"weight": [2.0, 7.0], "bias": [0.5, -1.0], "running_mean": [1.0, 0.0], "running_var": [3.0, 8.0]})
    np.testing.assert_array_equal(out.ravel(), [2.5, -1.0])


def test_linear_and_softmax_hand_cases():
    spec = make_spec((2, 1, 1), {"op": "flatten"}, {"op": "linear", "units": 3})
    weights = {"l1.weight": np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]]), "l1.bias": np.array([0.0, 1.0, 2.0])}
    out, _ = reference_forward(spec, weights, np.array([1.0, 2.0]).reshape(1, 2, 1, 1))
    np.testing.assert_array_equal(out, [[1.0, 4.0, 0.0]])
    # Over axis 1; shifted by the max, so 1000 does not overflow.
    for shift in (0.0, 1000.0):
        out = run_one({"op": "softmax"}, np.array([shift, shift + math.log(3)]).reshape(1, 2, 1, 1))
        np.testing.assert_allclose(out.ravel(), [0.25, 0.75], **CLOSE)


# ---------------------------------------------------------------- textbook loops

def _inside(r: int, q: int, h: int, w: int) -> bool:
    return 0 <= r < h and 0 <= q < w


def naive_conv2d(x, layer, p):
    a = layer.attrs
    n_, c_, h, w = x.shape
    o_, oh, ow = layer.output_shape
    cg, og = c_ // a["groups"], o_ // a["groups"]
    (kh, kw), (sh, sw), (top, _, left, _) = a["kernel"], a["stride"], a["padding"]
    y = np.zeros((n_, o_, oh, ow))
    for n in range(n_):
        for o in range(o_):
            g = o // og
            for i in range(oh):
                for j in range(ow):
                    s = p["bias"][o] if "bias" in p else 0.0
                    for c in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                r, q = i * sh + u - top, j * sw + v - left
                                if _inside(r, q, h, w):
                                    s += p["weight"][o, c, u, v] * x[n, g * cg + c, r, q]
                    y[n, o, i, j] = s
    return y


def _naive_pool(x, layer, start, combine, finish):
    a = layer.attrs
    n_, c_, h, w = x.shape
    _, oh, ow = layer.output_shape
    (kh, kw), (sh, sw), (top, _, left, _) = a["kernel"], a["stride"], a["padding"]
    y = np.zeros((n_, c_, oh, ow))
    for n in range(n_):
        for c in range(c_):
            for i in range(oh):
                for j in range(ow):
                    s = start
                    for u in range(kh):
                        for v in range(kw):
                            r, q = i * sh + u - top, j * sw + v - left
                            if _inside(r, q, h, w):  # outside: padding, or past the edge in ceil mode
                                s = combine(s, x[n, c, r, q])
                    y[n, c, i, j] = finish(s, kh * kw)
    return y


def naive_maxpool2d(x, layer, p):
    return _naive_pool(x, layer, -math.inf, max, lambda s, k: s)


def naive_avgpool2d(x, layer, p):
    return _naive_pool(x, layer, 0.0, lambda s, v: s + v, lambda s, k: s / k)


def naive_lrn(x, layer, p):
    a = layer.attrs
    half = (a["size"] - 1) // 2
    n_, c_, h, w = x.shape
    y = np.zeros_like(x)
    for n in range(n_):
        for c in range(c_):
            for i in range(h):
                for j in range(w):
                    s = sum(x[n, c2, i, j] ** 2 for c2 in range(max(0, c - half), min(c_ - 1, c + half) + 1))
                    y[n, c, i, j] = x[n, c, i, j] / (a["k"] + a["alpha"] / a["size"] * s) ** a["beta"]
    return y


def naive_adaptive_avgpool2d(x, layer, p):
    n_, c_, h, w = x.shape
    oh, ow = layer.attrs["output"]
    y = np.zeros((n_, c_, oh, ow))
    for n in range(n_):
        for c in range(c_):
            for i in range(oh):
                for j in range(ow):
                    rows = range(math.floor(i * h / oh), math.ceil((i + 1) * h / oh))
                    cols = range(math.floor(j * w / ow), math.ceil((j + 1) * w / ow))
                    y[n, c, i, j] = sum(x[n, c, r, q] for r in rows for q in cols) / (len(rows) * len(cols))
    return y


def naive_batchnorm2d(x, layer, p):
    n_, c_, h, w = x.shape
    y = np.zeros_like(x)
    for n in range(n_):
        for c in range(c_):
            for i in range(h):
                for j in range(w):
                    norm = (x[n, c, i, j] - p["running_mean"][c]) / math.sqrt(p["running_var"][c] + layer.attrs["eps"])
                    y[n, c, i, j] = norm * p["weight"][c] + p["bias"][c]
    return y


def naive_flatten(x, layer, p):
    n_, c_, h, w = x.shape
    y = np.zeros((n_, c_ * h * w))
    for n in range(n_):
        for c in range(c_):
            for i in range(h):
                for j in range(w):
                    y[n, c * h * w + i * w + j] = x[n, c, i, j]
    return y


def naive_linear(x, layer, p):
    n_, f = x.shape
    y = np.zeros((n_, layer.attrs["units"]))
    for n in range(n_):
        for o in range(layer.attrs["units"]):
            y[n, o] = sum(p["weight"][o, i] * x[n, i] for i in range(f)) + (p["bias"][o] if "bias" in p else 0.0)
    return y


def naive_softmax(x, layer, p):
    y = np.zeros_like(x)
    for n in range(x.shape[0]):
        for rest in np.ndindex(*x.shape[2:]):  # every position; softmax runs over the channels
            column = [x[(n, c, *rest)] for c in range(x.shape[1])]
            exps = [math.exp(v - max(column)) for v in column]
            for c, e in enumerate(exps):
                y[(n, c, *rest)] = e / sum(exps)
    return y


def naive_relu(x, layer, p):
    return np.array([v if v > 0 else 0.0 for v in x.ravel()]).reshape(x.shape)


def naive_dropout(x, layer, p):
    return x.copy()


NAIVE = {name[len("naive_"):]: f for name, f in dict(globals()).items() if name.startswith("naive_")}


def test_every_handler_has_a_textbook_twin():
    assert set(NAIVE) == set(LOWERING)


# Each case: the input (C, H, W) and the layers; the last layer is checked against its textbook
# loop on the input that reaches it. Batch 2, N != C != H != W, odd and even sizes.
CASES = {
    "conv-g1-pad1": ((6, 7, 9), [{"op": "conv2d", "filters": 4, "kernel": 3, "padding": 1}]),
    "conv-g2-asym-even": ((6, 8, 10), [{"op": "conv2d", "filters": 4, "kernel": [3, 2], "stride": [2, 1],
                                        "padding": [1, 0, 2, 1], "groups": 2}]),
    "conv-g3-nobias": ((6, 7, 9), [{"op": "conv2d", "filters": 9, "kernel": [2, 3], "stride": 2,
                                    "padding": [0, 1, 1, 0], "groups": 3, "bias": False}]),
    "conv-k5-s3": ((3, 11, 8), [{"op": "conv2d", "filters": 5, "kernel": 5, "stride": 3, "padding": 2}]),
    "maxpool-floor": ((6, 7, 9), [{"op": "maxpool2d", "kernel": 3, "stride": 2}]),
    "maxpool-floor-pad": ((6, 7, 9), [{"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1}]),
    "maxpool-ceil": ((6, 8, 10), [{"op": "maxpool2d", "kernel": 3, "stride": 2, "ceil_mode": True}]),
    "maxpool-ceil-pad": ((5, 8, 9), [{"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}]),
    "maxpool-ceil-drop-rule": ((5, 7, 9), [{"op": "maxpool2d", "kernel": 2, "stride": 2, "padding": 1,
                                            "ceil_mode": True}]),
    "maxpool-ceil-asym": ((6, 9, 8), [{"op": "maxpool2d", "kernel": [3, 2], "stride": [2, 3], "padding": [1, 0, 1, 1],
                                       "ceil_mode": True}]),
    "avgpool-pad": ((6, 7, 9), [{"op": "avgpool2d", "kernel": 3, "stride": 2, "padding": [1, 0, 1, 1]}]),
    "avgpool-even": ((6, 8, 10), [{"op": "avgpool2d", "kernel": [2, 3], "stride": [1, 2], "padding": [1, 1, 0, 1]}]),
    "lrn-1": ((6, 7, 9), [{"op": "lrn", "size": 1, "alpha": 0.5, "beta": 0.75, "k": 1.5}]),
    "lrn-3": ((6, 7, 9), [{"op": "lrn", "size": 3, "alpha": 0.5, "beta": 0.75, "k": 1.5}]),
    "lrn-5": ((6, 8, 5), [{"op": "lrn", "size": 5, "alpha": 0.9, "beta": 0.6, "k": 2.0}]),
    "lrn-5-over-3-channels": ((3, 7, 9), [{"op": "lrn", "size": 5, "alpha": 0.9, "beta": 1.0, "k": 1.0}]),
    "adaptive-5-7-to-2-3": ((6, 5, 7), [{"op": "adaptive_avgpool2d", "output": [2, 3]}]),
    "adaptive-7-5-to-3-2": ((4, 7, 5), [{"op": "adaptive_avgpool2d", "output": [3, 2]}]),
    "adaptive-upsample": ((4, 3, 6), [{"op": "adaptive_avgpool2d", "output": [5, 6]}]),
    "batchnorm-small-var": ((6, 7, 9), [{"op": "batchnorm2d", "eps": 1e-5, "init": {
        "running_var": {"dist": "uniform", "low": 1e-4, "high": 1e-2},
        "running_mean": {"dist": "normal", "std": 0.5}, "weight": {"dist": "normal", "mean": 1, "std": 0.3},
        "bias": {"dist": "normal", "std": 0.3}}}]),
    "relu": ((6, 7, 9), [{"op": "relu"}]),
    "dropout": ((6, 7, 9), [{"op": "dropout", "rate": 0.5}]),
    "flatten": ((6, 7, 9), [{"op": "flatten"}]),
    "linear": ((6, 3, 4), [{"op": "flatten"}, {"op": "linear", "units": 5}]),
    "linear-nobias": ((6, 3, 4), [{"op": "flatten"}, {"op": "linear", "units": 7, "bias": False}]),
    "softmax-channels": ((6, 7, 9), [{"op": "softmax"}]),
    "softmax-features": ((6, 3, 4), [{"op": "flatten"}, {"op": "softmax"}]),
}


def check_against_naive(case: str) -> None:
    input_chw, layers = CASES[case]
    spec = make_spec(input_chw, *layers)
    weights = canonical_weights(spec, seed=3)
    # Mostly negative: zero padding in a max pool (or a zero hanging ceil window) would win.
    x = np.random.default_rng(7).standard_normal((2, *input_chw)) - 1.0
    out, outs = reference_forward(spec, weights, x)
    last = spec.layers[-1]
    reaching = outs[spec.layers[-2].name] if len(spec.layers) > 1 else x
    params = {p: weights[f"{last.name}.{p}"].astype(np.float64) for p in last.params}
    expected = NAIVE[last.op](reaching, last, params)
    assert out.dtype == np.float64 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, **CLOSE, err_msg=f"case {case}")


@pytest.mark.parametrize("case", list(CASES))
def test_op_matches_textbook_loops(case):
    check_against_naive(case)


def test_ceil_cases_have_overhanging_and_dropped_windows():
    """Ceil mode adds a window hanging past the edge (rows of the first three cases), and torch's
    rule drops one that would start in the padding (the drop-rule case, and the columns of asym)."""
    def rows_cols(case):
        """Window counts per axis: ceil mode (the spec), ceil without the drop rule, floor mode."""
        (_, h, w), layers = CASES[case]
        a = make_spec((1, h, w), *layers).layers[0].attrs
        (kh, kw), (sh, sw), (pt, pb, pl, pr) = a["kernel"], a["stride"], a["padding"]
        axes = ((h, pt, pb, kh, sh), (w, pl, pr, kw, sw))
        return ([window_output(*axis, True) for axis in axes],
                [-(-(n + p0 + p1 - k) // s) + 1 for n, p0, p1, k, s in axes],
                [window_output(*axis) for axis in axes])

    for case in ("maxpool-ceil", "maxpool-ceil-pad", "maxpool-ceil-asym"):
        ceil, _, floor = rows_cols(case)
        assert ceil[0] == floor[0] + 1, case
    ceil, no_drop, floor = rows_cols("maxpool-ceil-drop-rule")
    assert ceil == floor and no_drop == [n + 1 for n in ceil]
    ceil, no_drop, _ = rows_cols("maxpool-ceil-asym")
    assert no_drop[1] == ceil[1] + 1


def test_cases_cover_every_op():
    assert {layers[-1]["op"] for _, layers in CASES.values()} == set(LOWERING)


# ---------------------------------------------------------------- planted bugs

def _with(layer, **attrs):
    return dataclasses.replace(layer, attrs={**layer.attrs, **attrs})


def _maxpool_zero_padded(x, layer, p):
    top, bottom, left, right = layer.attrs["padding"]
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    return reference.maxpool2d(xpad, _with(layer, padding=(0, 0, 0, 0)), p)


def _maxpool_ceil_overhang_zero(x, layer, p):
    xpad = np.pad(x, ((0, 0), (0, 0), (0, 2), (0, 2)))  # zeros where the last windows hang over
    return reference.maxpool2d(xpad, layer, p)[..., : layer.output_shape[1], : layer.output_shape[2]]


def _conv_groups_share_input(x, layer, p):
    cg = x.shape[1] // layer.attrs["groups"]
    return reference.conv2d(np.concatenate([x[:, :cg]] * layer.attrs["groups"], axis=1), layer, p)


PLANTED = {
    "max pool padded with zeros": ("maxpool-floor-pad", "maxpool2d", _maxpool_zero_padded),
    "ceil-mode overhang filled with zeros": ("maxpool-ceil", "maxpool2d", _maxpool_ceil_overhang_zero),
    "true convolution (flipped kernel)": ("conv-g2-asym-even", "conv2d", lambda x, layer, p: reference.conv2d(
        x, layer, {**p, "weight": p["weight"][:, :, ::-1, ::-1]})),
    "every group reads group 0's channels": ("conv-g3-nobias", "conv2d", _conv_groups_share_input),
    "LRN over the batch axis (onnx.reference)": ("lrn-3", "lrn", lambda x, layer, p: reference.lrn(
        x.swapaxes(0, 1), layer, p).swapaxes(0, 1)),
    "LRN alpha not divided by size": ("lrn-5", "lrn", lambda x, layer, p: reference.lrn(
        x, _with(layer, alpha=layer.attrs["alpha"] * layer.attrs["size"]), p)),
    "avg pool divides by real cells only": ("avgpool-pad", "avgpool2d", lambda x, layer, p: reference.avgpool2d(
        x, layer, p) / reference.avgpool2d(np.ones_like(x), layer, p)),
    "BatchNorm with Keras' eps": ("batchnorm-small-var", "batchnorm2d", lambda x, layer, p: reference.batchnorm2d(
        x, _with(layer, eps=1e-3), p)),
    "flatten in H, W, C order": ("flatten", "flatten", lambda x, layer, p: x.transpose(0, 2, 3, 1).reshape(
        x.shape[0], -1)),
    "softmax over the last axis": ("softmax-channels", "softmax", lambda x, layer, p: reference.softmax(
        x.swapaxes(1, 3), layer, p).swapaxes(1, 3)),
}


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_bug_is_caught(bug, monkeypatch):
    case, op, handler = PLANTED[bug]
    monkeypatch.setitem(LOWERING, op, handler)
    with pytest.raises(AssertionError):
        check_against_naive(case)


def test_planted_non_overlapping_adaptive_bins_are_caught(monkeypatch):
    monkeypatch.setattr(reference, "adaptive_bins", lambda size, out: [(i * size // out, (i + 1) * size // out)
                                                               for i in range(out)])
    with pytest.raises(AssertionError):
        check_against_naive("adaptive-5-7-to-2-3")


# ---------------------------------------------------------------- whole specs

@pytest.mark.parametrize("spec_path", [*OP_SPECS, *SHIPPED_SPECS], ids=lambda p: getattr(p, "stem", p))
def test_specs_run_end_to_end_with_inferred_shapes(spec_path):
    spec = load_spec(spec_path)
    batch = 3 if spec_path in OP_SPECS else 2
    x = np.random.default_rng(0).standard_normal((batch, *spec.input_shape)).astype(np.float32)
    out, outs = reference_forward(spec, canonical_weights(spec, seed=0), x)
    assert list(outs) == [layer.name for layer in spec.layers]
    for layer in spec.layers:
        assert outs[layer.name].shape == (batch, *layer.output_shape), layer.name
        assert outs[layer.name].dtype == np.float64, layer.name
    assert out is outs[spec.layers[-1].name]
    assert np.isfinite(out).all()


def test_float32_input_is_computed_in_float64():
    spec = load_spec(OP_SPECS[0])
    weights = canonical_weights(spec, seed=0)
    x32 = np.random.default_rng(1).standard_normal((2, *spec.input_shape)).astype(np.float32)
    out32, _ = reference_forward(spec, weights, x32, [])
    out64, _ = reference_forward(spec, weights, x32.astype(np.float64), [])
    np.testing.assert_array_equal(out32, out64)


def test_selected_layers_only_in_the_order_asked():
    spec = load_spec(OP_SPECS[0])
    x = np.zeros((1, *spec.input_shape), dtype=np.float32)
    _, outs = reference_forward(spec, canonical_weights(spec), x, ["pool1", "conv1"])
    assert list(outs) == ["pool1", "conv1"]
    assert reference_forward(spec, canonical_weights(spec), x, [])[1] == {}


def test_clear_errors():
    spec = load_spec(OP_SPECS[0])
    weights = canonical_weights(spec)
    x = np.zeros((1, *spec.input_shape), dtype=np.float32)
    with pytest.raises(KeyError, match="has no layer 'conv9'; its layers: conv1, norm1"):
        reference_forward(spec, weights, x, ["conv9"])
    with pytest.raises(ValueError, match=r"has shape \[4, 19, 23\]; expected \[N, 4, 19, 23\]"):
        reference_forward(spec, weights, x[0])
    with pytest.raises(ValueError, match="has dtype int64; expected a float dtype"):
        reference_forward(spec, weights, x.astype(np.int64))
    bad = {k: v for k, v in weights.items() if k != "conv2.bias"}
    bad["fc1.weight"] = np.zeros((3, 3), np.float32)
    bad["extra.weight"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="missing conv2.bias 12; unexpected extra.weight; "
                                         "fc1.weight has shape 3x3, expected 10x"):
        reference_forward(spec, bad, x)
    gelu = dataclasses.replace(spec.layers[5], op="gelu")
    with pytest.raises(NotImplementedError, match="layer 'relu3' has op 'gelu', which has no handler; "
                                                  "known ops: conv2d, relu, lrn, maxpool2d"):
        run_layer(gelu, x, weights)


def test_backend_interface():
    spec = load_spec(OP_SPECS[1])
    weights = canonical_weights(spec, seed=2)
    backend = ReferenceBackend()
    backend.build(spec, weights)
    assert backend.param_count() == spec.param_count
    assert backend.layer_names() == [layer.name for layer in spec.layers]
    assert backend.environment()["numpy"] == np.__version__
    x = np.random.default_rng(0).standard_normal((2, *spec.input_shape)).astype(np.float32)
    result = backend.run(x, ["bn1", "fc1"])
    out, outs = reference_forward(spec, weights, x)
    assert result.output.dtype == np.float64 and list(result.layers) == ["bn1", "fc1"]
    np.testing.assert_array_equal(result.output, out)
    np.testing.assert_array_equal(result.layers["bn1"], outs["bn1"])
    with pytest.raises(NotImplementedError, match="not benchmarked"):
        backend.bench_step(x, "cpu")
