"""The bench table's speed-up column: each row against its own backend's float32 row."""

from __future__ import annotations

import pytest

from alexbench.harness.bench.table import speedups


def _row(backend: str, precision: str, batch: int, images_per_s: float, variant: str | None = None) -> dict:
    return {"backend": backend, "precision": precision, "batch": batch, "images_per_s": images_per_s,
            "variant": variant, "device": "cpu"}


def test_a_speed_up_is_against_the_same_backend_variant_and_batch_in_the_same_run():
    rows = [_row("torch", "float32", 1, 100.0), _row("torch", "bfloat16", 1, 150.0),
            _row("torch", "float32", 64, 400.0), _row("torch", "bfloat16", 64, 1000.0),
            _row("torch", "float32", 64, 800.0, "compiled"), _row("torch", "bfloat16", 64, 1200.0, "compiled"),
            _row("onnx-torch", "float32", 64, 200.0), _row("onnx-torch", "int8", 64, 500.0),
            _row("keras", "bfloat16", 64, 90.0)]  # keras' float32 row did not run (failed or not asked)
    assert speedups(rows) == pytest.approx([1.0, 1.5, 1.0, 2.5, 1.0, 1.5, 1.0, 2.5, None])


def test_a_speed_up_against_another_backends_float32_row_is_caught():
    """Planted bug: keyed on precision and batch only, onnx-torch's int8 row would be divided by
    torch's float32 row (the first one at batch 64) and read 1.25x instead of 2.5x."""
    rows = [_row("torch", "float32", 64, 400.0), _row("onnx-torch", "float32", 64, 200.0),
            _row("onnx-torch", "int8", 64, 500.0)]
    assert speedups(rows)[2] == pytest.approx(2.5)
