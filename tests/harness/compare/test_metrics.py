"""Agreement metrics: shape before dtype before values, smallest passing tolerance, first divergent layer."""

from __future__ import annotations

import numpy as np

from alexbench.harness.compare.metrics import Tolerance, agreement, first_divergent_layer, topk_agreement


def test_identical_arrays_pass():
    x = np.linspace(-1, 1, 24).reshape(2, 3, 4)
    a = agreement(x, x.astype(np.float32), Tolerance(rtol=1e-6), rel_l2_limit=1e-7)
    assert a.ok and a.max_abs < 1e-7 and a.cosine > 0.999999


def test_values_out_of_tolerance_report_smallest_passing_atol():
    ref = np.array([1.0, -2.0, 4.0])
    got = ref + np.array([0.0, 0.0, 0.01])
    a = agreement(ref, got, Tolerance(atol=0.0, rtol=1e-3))
    assert not a.ok
    assert np.isclose(a.min_atol, 0.01 - 1e-3 * 4.0)
    assert agreement(ref, got, Tolerance(atol=a.min_atol + 1e-12, rtol=1e-3)).ok
    assert a.problem.startswith("values: max abs error 0.01 > 0.004")


def test_rel_l2_limit_is_checked():
    ref = np.ones(1000)
    got = ref + 1e-4
    assert agreement(ref, got, Tolerance(rtol=1e-3)).ok
    a = agreement(ref, got, Tolerance(rtol=1e-3), rel_l2_limit=1e-5)
    assert not a.ok and a.problem.startswith("values: relative L2 error")


def test_shape_then_dtype_then_nan():
    ref = np.zeros((2, 3))
    a = agreement(ref, np.zeros((3, 2)), Tolerance(), names=("reference", "keras"))
    assert not a.ok and a.problem == "shape: keras [3, 2] vs reference [2, 3]"
    b = agreement(ref, np.zeros((2, 3), dtype=np.int32), Tolerance())
    assert not b.ok and b.problem.startswith("dtype:")
    c = agreement(ref, np.full((2, 3), np.nan), Tolerance())
    assert not c.ok and c.problem == "values: backend has 6 NaN/Inf"
    assert c.to_json()["cosine"] is None


def test_first_divergent_layer_in_spec_order():
    ref = {"a": np.ones(4), "b": np.ones(4), "c": np.ones(4)}
    got = {"a": np.ones(4), "b": np.ones(4) * 2, "c": np.ones(4) * 3}
    found = first_divergent_layer(["c", "a", "b"], ref, got, Tolerance(rtol=1e-3))
    assert found.layer == "c"
    found = first_divergent_layer(["a", "b", "c"], ref, got, Tolerance(rtol=1e-3))
    assert found.layer == "b"
    assert first_divergent_layer(["a"], ref, got, Tolerance()) is None


def test_topk():
    ref = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    got = np.array([[0.1, 0.4, 0.5], [0.8, 0.1, 0.1]])
    assert topk_agreement(ref, got, 1) == 0.5
    assert topk_agreement(ref, got, 2) == 1.0
