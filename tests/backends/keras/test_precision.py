"""The Keras backends in each precision they declare (mixed dtype policies), against the float64
reference on every layer, with the dtypes they record: on TensorFlow, torch and JAX, each in a fresh
interpreter (Keras picks its backend once per process); int8's refusal; half precision through the
bench hooks on the CPU; and a model built bfloat16 under a float32 request, caught by its dtypes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alexbench.backends.keras.backend import KerasBackend
from alexbench.backends.keras.runtime import import_keras
from alexbench.backends.precision import DTYPE_NAMES
from alexbench.harness.inputs import seeded_inputs
from alexbench.spec import canonical_weights, load_spec
from tests.backends.torch.test_precision import BOUND_UNITS, assert_refused  # one bound, derived there

keras = import_keras("tensorflow")  # this process's Keras runs on TensorFlow, as in test_backend.py

SPECS = Path(__file__).resolve().parents[2] / "specs"
OP_SPECS = [SPECS / "ops-conv-groups.yaml", SPECS / "ops-pool-norm.yaml"]  # every spec op between them
ROOT = Path(__file__).resolve().parents[3]

# Run in a fresh interpreter per Keras backend: the bench hooks with the bench's precision names (first:
# TensorFlow's thread pools are set once, before it runs anything, so it benches one precision per process),
# then each precision on each op spec (weights seed 0, batch 3, all layers). Prints one JSON line.
SCRIPT = """
import json
import numpy as np
from tests.backends.torch.test_precision import parity_errors
from alexbench.backends.reference.backend import reference_forward
from alexbench.backends.registry import load_backend_class
from alexbench.harness.inputs import seeded_inputs
from alexbench.spec import canonical_weights, load_spec
cls = load_backend_class({backend!r})
report = {{"precisions": list(cls.precisions), "runs": [], "bench": {{}}}}
spec = load_spec({specs!r}[0])
weights, x = canonical_weights(spec, seed=0), seeded_inputs(spec, 2, seed=0)
for precision in {bench!r}:
    backend = cls()
    backend.before_build(precision, 1)
    backend.build(spec, weights)
    out = np.asarray(backend.bench_step(x, "cpu", precision)())
    report["bench"][precision] = [str(out.dtype), bool(np.array_equal(out.astype(np.float32), backend.run(x).output))]
for path in {specs!r}:
    spec = load_spec(path)
    weights, x = canonical_weights(spec, seed=0), seeded_inputs(spec, 3, seed=3)
    names = [layer.name for layer in spec.layers]
    ref_out, ref_layers = reference_forward(spec, weights, x, names)
    for precision in cls.precisions:
        backend = cls(options={{"precision": precision}})
        backend.build(spec, weights)
        got = backend.run(x, names)
        report["runs"].append({{"spec": spec.name, "precision": precision, "dtypes": got.dtypes,
                               "units": parity_errors(spec, precision, got, ref_out, ref_layers),
                               "returned": sorted({{str(a.dtype) for a in (got.output, *got.layers.values())}}),
                               "environment": backend.environment()["precision"]}})
print(json.dumps(report))
"""

BENCH = {"keras": ("bfloat16",), "keras-torch": ("bfloat16", "float16"), "keras-jax": ("bfloat16", "float16")}
TF32_STATE = {"keras": {"tf32": False}, "keras-jax": {"jax_default_matmul_precision": "highest"},
              "keras-torch": {"float32_matmul_precision": "highest", "tf32_matmul": False, "tf32_cudnn": False}}


@pytest.mark.parametrize("backend_name", ["keras", "keras-torch", "keras-jax"])
def test_each_precision_matches_the_reference_on_every_layer_and_records_its_dtype(backend_name):
    bench = BENCH[backend_name]
    code = SCRIPT.format(backend=backend_name, specs=[str(p) for p in OP_SPECS], bench=bench)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["precisions"] == ["fp32", "bf16", "fp16"]
    for r in report["runs"]:
        where = f"{backend_name} {r['precision']} on {r['spec']}"
        bound = BOUND_UNITS[r["precision"]]
        over = {name: round(u, 2) for name, u in r["units"].items() if u > bound}
        assert not over, f"{where}: relative L2 over {bound}u at {over}"
        computed = DTYPE_NAMES[r["precision"]][0]
        assert set(r["dtypes"].values()) == {computed} and "output" in r["dtypes"], where
        assert len(r["dtypes"]) == len(load_spec(SPECS / f"{r['spec']}.yaml").layers) + 1, where
        assert r["returned"] == ["float32"], where
        policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[r["precision"]]
        assert r["environment"] == {"requested": r["precision"], "dtype_policy": policy,
                                    "compute_dtypes": [computed], "variable_dtypes": ["float32"],
                                    **TF32_STATE[backend_name]}, where
    assert report["bench"] == {precision: [precision, True] for precision in bench}


def test_int8_is_unsupported_with_the_reason():
    reason = ("Keras' int8 (model.quantize('int8')) covers Dense layers only, not convolutions, and scales "
              "activations on the fly per call; a statically calibrated int8 model runs on ONNX Runtime "
              "(backend 'onnx-keras')")
    assert_refused(KerasBackend, "int8", reason)


def test_the_policy_applies_to_the_model_built_and_no_other():
    spec = load_spec(OP_SPECS[0])
    backend = KerasBackend(options={"precision": "bf16"})
    backend.build(spec, canonical_weights(spec))
    assert keras.config.dtype_policy().name == "float32"
    assert backend.model.get_layer("conv1").dtype_policy.name == "mixed_bfloat16"


class SilentBf16Keras(KerasBackend):
    """Planted bug: builds under mixed_bfloat16 while the request (and environment) say float32."""

    def build(self, spec, weights, onnx_path=None):
        self.options["precision"] = "bf16"
        super().build(spec, weights, onnx_path)
        self.options["precision"] = "fp32"


def test_bfloat16_under_a_float32_request_shows_in_the_dtypes():
    spec = load_spec(OP_SPECS[0])
    backend = SilentBf16Keras()
    backend.build(spec, canonical_weights(spec))
    got = backend.run(seeded_inputs(spec, 2, seed=0), [layer.name for layer in spec.layers])
    assert backend.precision == "fp32"
    assert set(got.dtypes.values()) == {"bfloat16"}  # what the harness flags against the fp32 request
