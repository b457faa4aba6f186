"""Layout conversions canonical <-> Keras: each round-trips, and each computes the same function
in both layouts (checked with NumPy convolutions and products, no framework)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alexbench.backends.keras import layouts
from alexbench.backends.layouts import activation_to_canonical, nchw_to_nhwc, nhwc_to_nchw
from alexbench.spec import canonical_weights, load_spec

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
RNG = np.random.default_rng(7)


def _conv_nchw(x, w_oihw, groups):
    """Canonical grouped 'valid' convolution, stride 1: x (N, C, H, W), w (O, C/groups, kH, kW)."""
    o, cin_g, kh, kw = w_oihw.shape
    og = o // groups
    n, _, h, wd = x.shape
    y = np.zeros((n, o, h - kh + 1, wd - kw + 1))
    for g in range(groups):
        xs = x[:, g * cin_g:(g + 1) * cin_g]
        for u in range(kh):
            for v in range(kw):
                patch = xs[:, :, u:u + h - kh + 1, v:v + wd - kw + 1]
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, w_oihw[g * og:(g + 1) * og, :, u, v])
    return y


def _conv_nhwc(x, k_hwio, groups):
    """Keras' grouped convolution (what GroupedConv2D computes): x (N, H, W, C), k (kH, kW, C/groups, O)."""
    kh, kw, cin_g, o = k_hwio.shape
    og = o // groups
    n, h, wd, _ = x.shape
    y = np.zeros((n, h - kh + 1, wd - kw + 1, o))
    for g in range(groups):
        xs = x[..., g * cin_g:(g + 1) * cin_g]
        for u in range(kh):
            for v in range(kw):
                patch = xs[:, u:u + h - kh + 1, v:v + wd - kw + 1]
                y[..., g * og:(g + 1) * og] += patch @ k_hwio[u, v][:, g * og:(g + 1) * og]
    return y


def test_activation_round_trip_and_axes():
    x = RNG.standard_normal((2, 3, 5, 7))
    nhwc = nchw_to_nhwc(x)
    assert nhwc.shape == (2, 5, 7, 3) and nhwc[1, 4, 6, 2] == x[1, 2, 4, 6]
    assert np.array_equal(nhwc_to_nchw(nhwc), x)
    assert np.array_equal(activation_to_canonical(nhwc), x)
    features = RNG.standard_normal((2, 11))
    assert np.array_equal(activation_to_canonical(features), features)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv_weight_round_trip_and_same_function(groups):
    x = RNG.standard_normal((2, 8, 6, 5))
    w = RNG.standard_normal((12, 8 // groups, 3, 2))
    k = layouts.conv_weight_to_keras(w)
    assert k.shape == (3, 2, 8 // groups, 12)
    assert np.array_equal(layouts.conv_weight_from_keras(k), w)
    want = _conv_nchw(x, w, groups)
    got = nhwc_to_nchw(_conv_nhwc(nchw_to_nhwc(x), k, groups))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_linear_weight_round_trip_and_same_function():
    x = RNG.standard_normal((3, 10))
    w = RNG.standard_normal((4, 10))
    k = layouts.linear_weight_to_keras(w)
    assert k.shape == (10, 4) and np.array_equal(layouts.linear_weight_from_keras(k), w)
    np.testing.assert_allclose(x @ k, x @ w.T, rtol=1e-12)


def test_permute_flatten_is_canonical_and_plain_transpose_after_keras_flatten_is_wrong():
    x = RNG.standard_normal((2, 4, 3, 5))  # N != C != H != W
    w = RNG.standard_normal((6, 4 * 3 * 5))  # fc6: (out, C*H*W)
    want = x.reshape(2, -1) @ w.T
    nhwc = nchw_to_nhwc(x)
    ours = layouts.flatten_like_keras_permute(nhwc) @ layouts.linear_weight_to_keras(w)
    np.testing.assert_allclose(ours, want, rtol=1e-12)
    keras_native = nhwc.reshape(2, -1) @ layouts.linear_weight_to_keras(w)  # Flatten (H,W,C) + plain W.T
    assert not np.allclose(keras_native, want, rtol=1e-3)
    # The order is the Permute dims the Keras model uses: 1-based, batch excluded, NHWC -> NCHW.
    assert tuple(np.transpose(nhwc, (0, *layouts.PERMUTE_NHWC_TO_NCHW)).shape) == x.shape


@pytest.mark.parametrize("spec_file", ["ops-conv-groups.yaml", "ops-pool-norm.yaml"])
def test_keras_weight_lists_round_trip_for_every_layer(spec_file):
    spec = load_spec(SPECS_DIR / spec_file)
    weights = canonical_weights(spec, seed=1)
    back = {}
    for layer in spec.layers:
        arrays = layouts.keras_weights(layer.op, layer.name, weights)
        assert len(arrays) == len(layer.params), layer.name
        assert all(a.dtype == np.float32 for a in arrays)
        back.update(layouts.canonical_weights_from_keras(layer.op, layer.name, list(layer.params), arrays))
    assert back.keys() == weights.keys()
    assert all(np.array_equal(back[k], weights[k]) for k in weights)


def test_batchnorm_order_is_gamma_beta_moving_mean_moving_variance():
    weights = {f"bn.{p}": np.full(3, i, np.float32) for i, p in enumerate(("weight", "bias", "running_mean",
                                                                            "running_var"))}
    assert [a[0] for a in layouts.keras_weights("batchnorm2d", "bn", weights)] == [0, 1, 2, 3]


def test_wrong_ranks_and_counts_say_what_was_received():
    with pytest.raises(ValueError, match=r"conv weight: expected a rank-4 array, received shape \[3, 4\]"):
        layouts.conv_weight_to_keras(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"layer 'fc1' \(linear\): Keras gave 1 arrays, expected 2"):
        layouts.canonical_weights_from_keras("linear", "fc1", ["weight", "bias"], [np.zeros((2, 3))])


def test_layouts_import_no_framework():
    code = ("import sys, alexbench.backends.keras.layouts; "
            "print(sorted({'tensorflow', 'torch', 'keras', 'jax'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
