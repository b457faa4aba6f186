"""ONNX Runtime at reduced precision: fp16 (converted, float32 I/O) and int8 (static QDQ) against the
float64 reference within bounds derived below; dtypes and what ran recorded; refusals with their exact
messages; a badly calibrated layer and an fp16 overflow caught at their layer.

Bounds (relative L2 of each layer's readout against the float64 reference):

- fp16: ONNX Runtime rounds the weights and each read-out tensor to float16 (unit roundoff
  u = 2^-11; on x86 it computes Conv, Gemm, pooling in float32 on them, see precision.py). Each layer
  adds at most one rounding of its weights (relative u per product, so at most u on these sums of
  same-scale random terms) and one of its output (u), carried forward unchanged by the next layers:
  after the layer at depth d (1-based) the error is at most 2·d·u; a factor 2 for LRN's and the max
  pool's gain: FP16_BOUND(d) = 4·d·u (d = 9: 1.8e-2; measured ≤ 6e-4).
- int8: each quantization point (a per-channel weight, an activation) rounds to a step
  Δ = range / 255, an error of RMS Δ/√12; relative to the tensor's RMS, (range/rms)/(255·√12), and
  range/rms ≤ 10 for these seeded normal tensors (±5 standard deviations): 0.0113 per point. Two
  points per layer (weights, output), ≤ 9 layers, independent errors adding in quadrature:
  √18 · 0.0113 = 0.048; a factor 2 for LRN's and the pools' gain: INT8_BOUND = 0.1 (measured ≤ 0.05).
  A range shrunk 100x clips the layer at 1% of its values' span: an error near 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alexbench.backends.onnx.cache import cached_export
from alexbench.backends.onnxrt.backend import OnnxFromKerasBackend, OnnxFromTorchBackend
from alexbench.backends.onnxrt.precision import BF16_REASON, FP16_KIND
from alexbench.backends.precision import UNIT_ROUNDOFF
from alexbench.backends.reference.backend import reference_forward
from alexbench.harness.inputs import seeded_inputs
from alexbench.spec import canonical_weights, load_spec

SPEC = Path(__file__).resolve().parents[2] / "specs" / "ops-conv-groups.yaml"  # groups, LRN, pool, softmax
BACKENDS = {"torch": OnnxFromTorchBackend, "keras": OnnxFromKerasBackend}
INT8_BOUND = 0.1


def fp16_bound(depth: int) -> float:
    return 4 * depth * UNIT_ROUNDOFF["fp16"]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "onnx-export-cache"  # shared with test_backend.py


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Spec, weights, a batch of 6 (also the calibration input) and its float64 reference."""
    spec = load_spec(SPEC)
    weights = canonical_weights(spec, seed=0)
    x = seeded_inputs(spec, 6, seed=0)
    calibration = tmp_path_factory.mktemp("calibration") / "x.npy"
    np.save(calibration, x)
    names = [layer.name for layer in spec.layers]
    ref_out, ref_layers = reference_forward(spec, weights, x, names)
    return spec, weights, x, calibration, ref_out, ref_layers


def _built(cls, spec, weights, cache, **options):
    path, _, _ = cached_export(cls.onnx_source, spec, weights, cache)
    backend = cls(options=options)
    backend.build(spec, weights, path)
    return backend


def _rel_l2(got, ref) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def _errors(spec, got, ref_layers) -> dict[str, float]:
    """Layer -> relative L2 against the reference, in spec order, for the layers read out."""
    return {layer.name: _rel_l2(got.layers[layer.name], ref_layers[layer.name])
            for layer in spec.layers if layer.name in got.layers}


@pytest.mark.parametrize("kind", list(BACKENDS))
def test_fp16_agrees_with_the_reference_and_records_float16(kind, case, onnx_cache):
    spec, weights, x, _, ref_out, ref_layers = case
    backend = _built(BACKENDS[kind], spec, weights, onnx_cache, precision="fp16")
    names = [layer.name for layer in spec.layers]
    got = backend.run(x, names)
    assert set(got.layers) == set(names)  # the conversion keeps every layer's tensor findable
    depth = {name: i + 1 for i, name in enumerate(names)}
    for name, error in _errors(spec, got, ref_layers).items():
        assert error <= fp16_bound(depth[name]), f"{name}: {error:.3g}"
        assert got.dtypes[name] == "float16" and got.layers[name].dtype == np.float32
    assert _rel_l2(got.output, ref_out) <= fp16_bound(len(names))
    assert got.dtypes["output"] == "float32"  # keep_io_types: the graph's output is cast back
    facts = backend.environment()["precision"]
    assert facts["model"] == FP16_KIND and facts["providers"] == ["CPUExecutionProvider"]
    assert "Conv" in facts["kernels"]  # what each kernel ran in, read from a profile


@pytest.mark.parametrize("kind", list(BACKENDS))
def test_int8_agrees_with_the_reference_within_the_quantization_bound(kind, case, onnx_cache):
    spec, weights, x, calibration, ref_out, ref_layers = case
    backend = _built(BACKENDS[kind], spec, weights, onnx_cache, precision="int8", calibration_input=str(calibration))
    got = backend.run(x, [layer.name for layer in spec.layers])
    errors = _errors(spec, got, ref_layers)
    # conv3 feeds a ReLU: quantized with the ReLU's range, it is that ReLU's output, so not read out
    assert "conv3" not in errors and "int8" in backend.environment()["missing_layers"]["conv3"]
    assert errors and all(error <= INT8_BOUND for error in errors.values()), errors
    assert _rel_l2(got.output, ref_out) <= INT8_BOUND
    assert set(got.dtypes.values()) == {"float32"}  # read-outs are the dequantized tensors
    facts = backend.environment()["precision"]
    assert facts["model"] == "int8 QDQ static, per-channel weights, MinMax calibration on 6 inputs"
    assert facts["calibration_s"] > 0 and "layer_outputs_change_output_by" in facts
    assert any(op.startswith("QLinear") or op == "QGemm" for op in facts["kernels"])


class Miscalibrated(OnnxFromTorchBackend):
    """Plants a badly calibrated layer: conv2's activation range shrunk 100x."""

    def calibration_ranges(self, model_path, feeds, workdir):
        ranges = super().calibration_ranges(model_path, feeds, workdir)
        lo, hi = ranges[self.tensors["conv2"]]
        ranges[self.tensors["conv2"]] = (lo / 100, hi / 100)
        return ranges


def test_planted_badly_calibrated_layer_is_the_first_out_of_the_int8_bound(case, onnx_cache):
    spec, weights, x, calibration, _, ref_layers = case
    backend = _built(Miscalibrated, spec, weights, onnx_cache, precision="int8", calibration_input=str(calibration))
    errors = _errors(spec, backend.run(x, [layer.name for layer in spec.layers]), ref_layers)
    first = next(name for name, error in errors.items() if error > INT8_BOUND)
    assert first == "conv2" and errors["conv2"] > 0.5


def test_planted_fp16_overflow_shows_first_at_its_layer(case, tmp_path):
    """conv2's weights x 1e5 (still below 65,504): its activations exceed float16's largest value."""
    spec, weights, x, _, _, _ = case
    planted = {**weights, "conv2.weight": weights["conv2.weight"] * np.float32(1e5)}
    names = [layer.name for layer in spec.layers]
    fp32 = _built(OnnxFromTorchBackend, spec, planted, tmp_path).run(x, names)
    assert all(np.isfinite(fp32.layers[name]).all() for name in names)  # float32 holds these values
    assert np.abs(fp32.layers["conv2"]).max() > 65504
    fp16 = _built(OnnxFromTorchBackend, spec, planted, tmp_path, precision="fp16").run(x, names)
    first = next(name for name in names if not np.isfinite(fp16.layers[name]).all())
    assert first == "conv2" and np.isinf(fp16.layers["conv2"]).any()


def test_int8_without_calibration_input_is_refused_with_its_name(case, onnx_cache):
    spec, weights, *_ = case
    with pytest.raises(ValueError) as caught:
        _built(OnnxFromTorchBackend, spec, weights, onnx_cache, precision="int8")
    assert str(caught.value) == ("backend 'onnx-torch': precision int8 needs options['calibration_input'], the path "
                                 "of an .npy float32 [N, C, H, W] batch to calibrate the activation ranges on")


def test_bf16_is_unsupported_with_the_measured_reason(case, onnx_cache):
    spec, weights, *_ = case
    reason = ("ONNX Runtime's CPU provider has no bfloat16 kernels (Gemm, LRN, Relu: 'Could not find an "
              "implementation'; opset-18 Conv and MaxPool do not admit bfloat16) and inserts float32 casts for "
              "float16 only")
    assert OnnxFromKerasBackend.precision_reason("bf16") == BF16_REASON == reason
    assert OnnxFromTorchBackend.precision_reason("fp16") is None
    with pytest.raises(ValueError) as caught:
        _built(OnnxFromTorchBackend, spec, weights, onnx_cache, precision="bfloat16")
    assert str(caught.value) == reason


def test_bench_converts_in_prepare_bench_untimed(case, onnx_cache):
    """A float32 build benched at float16 and int8: the model is made in prepare_bench; a build after
    before_build("int8") is quantized in build."""
    spec, weights, x, calibration, *_ = case
    backend = _built(OnnxFromTorchBackend, spec, weights, onnx_cache, calibration_input=str(calibration))
    assert {"float16", "int8"} <= set(backend.bench_precisions)
    for precision, model in (("float16", FP16_KIND), ("int8", "int8 QDQ")):
        backend.prepare_bench(precision, False, "cpu", 1)
        backend.bench_step(x, "cpu", precision)()
        facts = backend.environment()["precision"]
        assert facts["model"].startswith(model)
    assert facts["calibration_s"] > 0
    ahead = OnnxFromTorchBackend(options={"calibration_input": str(calibration)})
    ahead.before_build("int8", 1)  # what the bench worker calls: the calibration is then part of build
    ahead.build(spec, weights, cached_export("torch", spec, weights, onnx_cache)[0])
    assert ahead.environment()["precision"]["calibration_s"] > 0
