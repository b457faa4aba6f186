"""The torch backend in each precision it declares, against the float64 reference on every layer, with
the dtypes it records; int8's refusal; half precision in the bench step on the CPU; and a backend that
runs bfloat16 under a float32 request, caught by the dtypes it records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from alexbench.backends.precision import DTYPE_NAMES, UNIT_ROUNDOFF
from alexbench.backends.reference.backend import reference_forward
from alexbench.backends.torch.backend import TorchBackend, run_with_hooks
from alexbench.harness.inputs import seeded_inputs
from alexbench.spec import canonical_weights, load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"
OP_SPECS = [SPECS / "ops-conv-groups.yaml", SPECS / "ops-pool-norm.yaml"]  # every spec op between them

# Relative L2 error bound, as c * u (u: the precision's unit roundoff).
# bf16/fp16: each layer rounds its input, weights and output to 16 bits once (relative error <= u, about
# u/sqrt(3) rms for round to nearest) and accumulates in float32; over the <= 4 weighted layers of these
# specs the roundings add in quadrature, sqrt(3 * 4) * u / sqrt(3) = 2u, and a softmax turns its logits'
# absolute error into relative error (logits of a few units). Measured worst: 2.7u (torch), 3.4u (Keras
# on TensorFlow), both at the softmax; c = 6 leaves room for other seeds and CPUs.
# fp32: roundings are 2^16 times smaller, so the float32 sums of K <= 120 products dominate (error
# growing like sqrt(K) * u, about 11u), times the softmax's factor. Measured worst: 4.1u (torch), 9.6u
# (Keras), at the softmax; c = 16.
BOUND_UNITS = {"fp32": 16.0, "bf16": 6.0, "fp16": 6.0}


def relative_l2(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - ref) / np.linalg.norm(ref))


def parity_errors(spec, precision: str, got, ref_out, ref_layers) -> dict[str, float]:
    """Each layer's and the output's relative L2 error, in units of the precision's unit roundoff."""
    errors = {name: relative_l2(ref_layers[name], got.layers[name]) for name in ref_layers}
    errors["output"] = relative_l2(ref_out, got.output)
    return {name: e / UNIT_ROUNDOFF[precision] for name, e in errors.items()}


def _run(spec, precision: str, backend_class=TorchBackend, batch: int = 3, seed: int = 0):
    """Weights seed 0 keeps ops-pool-norm's LRN input below 256, whose square float16 still holds."""
    weights, x = canonical_weights(spec, seed=seed), seeded_inputs(spec, batch, seed=batch)
    backend = backend_class(options={"precision": precision})
    backend.build(spec, weights)
    names = [layer.name for layer in spec.layers]
    return backend, backend.run(x, names), reference_forward(spec, weights, x, names)


@pytest.mark.parametrize("precision", TorchBackend.precisions)
@pytest.mark.parametrize("spec_path", OP_SPECS, ids=lambda p: p.stem)
def test_each_precision_matches_the_reference_on_every_layer_and_records_its_dtype(spec_path, precision):
    spec = load_spec(spec_path)
    backend, got, (ref_out, ref_layers) = _run(spec, precision)
    units = parity_errors(spec, precision, got, ref_out, ref_layers)
    over = {name: round(u, 2) for name, u in units.items() if u > BOUND_UNITS[precision]}
    assert not over, f"torch {precision} on {spec.name}: relative L2 over {BOUND_UNITS[precision]}u at {over}"
    computed = DTYPE_NAMES[precision][0]
    assert got.dtypes == {**{layer.name: computed for layer in spec.layers}, "output": computed}
    assert {a.dtype for a in (got.output, *got.layers.values())} == {np.dtype(np.float32)}
    assert {p.dtype for p in backend.model.parameters()} == {getattr(torch, computed)}


def test_environment_says_what_ran():
    spec = load_spec(OP_SPECS[0])
    backend, _, _ = _run(spec, "bf16", batch=2)
    assert backend.environment()["precision"] == {
        "requested": "bf16", "parameter_dtype": "bfloat16", "float32_matmul_precision": "highest",
        "tf32_matmul": False, "tf32_cudnn": False}


def test_int8_is_unsupported_with_the_reason():
    reason = ("torch runs int8 only as a torch.ao-quantized model (observers, calibration, quantized kernels), "
              "which alexbench does not build; ONNX Runtime's static QDQ model is the int8 route (backend "
              "'onnx-torch')")
    assert_refused(TorchBackend, "int8", reason)


def assert_refused(backend_class, precision: str, reason: str) -> None:
    """The reason the harness shows before it starts a worker, and the one build() gives if asked anyway."""
    assert backend_class.precision_reason(precision) == reason
    spec = load_spec(OP_SPECS[0])
    with pytest.raises(ValueError) as caught:
        backend_class(options={"precision": precision}).build(spec, canonical_weights(spec))
    assert str(caught.value) == reason


def test_torchs_own_lrn_has_no_half_precision_cpu_kernel():
    """Why lowering.LocalResponseNorm exists: when this starts passing the plain module would do."""
    with pytest.raises(RuntimeError, match="avg_pool3d_out_frame.* not implemented for 'BFloat16'"):
        torch.nn.LocalResponseNorm(3)(torch.ones(1, 4, 2, 2, dtype=torch.bfloat16))


def test_float16_overflow_in_the_lrn_squares_is_caught_at_the_lrn():
    """With weights seed 1, two inputs of ops-pool-norm's LRN exceed 256: their squares pass float16's
    largest value, 65504, become inf and zero those outputs. bfloat16 has float32's range."""
    spec = load_spec(OP_SPECS[1])
    for precision, worst in (("fp16", "norm1"), ("bf16", None)):
        _, got, (ref_out, ref_layers) = _run(spec, precision, seed=1)
        assert np.abs(ref_layers["pool1"]).max() > 256
        units = parity_errors(spec, precision, got, ref_out, ref_layers)
        first = next((name for name, u in units.items() if u > BOUND_UNITS[precision]), None)
        assert first == worst, f"{precision}: {units}"


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_bench_step_runs_half_precision_on_the_cpu(precision):
    """The bench's names for the precisions; the step's output is the compare run's, in that dtype."""
    spec = load_spec(OP_SPECS[1])
    weights, x = canonical_weights(spec, seed=1), seeded_inputs(spec, 2, seed=0)
    compared = TorchBackend(options={"precision": {"bfloat16": "bf16", "float16": "fp16"}[precision]})
    compared.build(spec, weights)
    benched = TorchBackend()
    benched.build(spec, weights)
    out = benched.bench_step(x, "cpu", precision)()
    assert out.dtype == getattr(torch, precision)
    assert np.array_equal(out.float().numpy(), compared.run(x).output)


class SilentBf16Torch(TorchBackend):
    """Planted bug: runs bfloat16 inside run() while the request (and environment) say float32."""

    def run(self, x, layers=()):
        self.model.to(torch.bfloat16)
        modules = {name: module for name, module in self.model.named_children() if name in set(layers)}
        return run_with_hooks(self.model, x, self.device, modules, dtype=torch.bfloat16)


def test_bfloat16_under_a_float32_request_shows_in_the_dtypes():
    spec = load_spec(OP_SPECS[0])
    backend, got, (ref_out, ref_layers) = _run(spec, "fp32", backend_class=SilentBf16Torch)
    assert backend.precision == "fp32"
    assert set(got.dtypes.values()) == {"bfloat16"}  # what the harness flags against the fp32 request
    assert max(parity_errors(spec, "fp32", got, ref_out, ref_layers).values()) > BOUND_UNITS["fp32"]
