"""The printed training table: the header lists the kinks whose spread widened the limits, step by step."""

from __future__ import annotations

from alexbench.harness.train.table import _kinks


def test_the_kinks_line_names_each_step_and_layer_with_its_count():
    assert _kinks([{}, {}]) == []
    line = _kinks([{"pool2": 166, "pool5": 2376}, {}, {"relu3": 2}])
    assert line == ["kinks within float32's error (ReLU inputs near 0, max-pool near-ties; the oracle's spread over "
                    "both choices widens the limits of the tensors they reach): step 1: pool2 166, pool5 2,376; "
                    "step 3: relu3 2"]
