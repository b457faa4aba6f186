"""OpenVINO on both exports: output and every mapped layer within float32 tolerance of the float64
reference on the op specs (and full AlexNet, slow), parameters reconciled with the spec and with
OpenVINO's own constants, the precision OpenVINO compiled and ran in reported as read back from the
compiled model, one run through a real worker, refusals worded exactly, and the bench hooks.

Exports come from the session's on-disk cache shared with tests/backends/onnx and onnxrt."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from alexbench.backends.onnx.cache import cached_export
from alexbench.backends.openvino.backend import OpenVinoFromKerasBackend, OpenVinoFromTorchBackend
from alexbench.backends.reference.backend import reference_forward
from alexbench.harness.compare.metrics import PROFILES, REL_L2_LIMIT, agreement, first_divergent_layer
from alexbench.harness.inputs import seeded_inputs
from alexbench.harness.workers.job import make_job
from alexbench.harness.workers.runner import run_worker
from alexbench.spec import canonical_weights, load_spec, save_weights

TOL, REL_L2 = PROFILES["default"], REL_L2_LIMIT["default"]
SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
SMALL = ["ops-conv-groups", "ops-pool-norm", "conv-bn"]
BACKENDS = {"torch": OpenVinoFromTorchBackend, "keras": OpenVinoFromKerasBackend}
# Convolutions whose batch norm torch's exporter folded into them: their own output is in no tensor.
FOLDED = {("torch", "ops-pool-norm"): {"conv1"}, ("torch", "conv-bn"): {"conv1", "conv2"}}
PARITY_SETTINGS = "INFERENCE_PRECISION_HINT f32, EXECUTION_MODE_HINT ACCURACY"


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "onnx-export-cache"  # shared with tests/backends/onnx and onnxrt


def _spec(name: str):
    return load_spec(SPECS_DIR / f"{name}.yaml" if (SPECS_DIR / f"{name}.yaml").exists() else name)


def _built(kind: str, spec, weights, cache: Path, **options):
    path, _, _ = cached_export(kind, spec, weights, cache)
    backend = BACKENDS[kind](options={"threads": 2, **options})
    backend.build(spec, weights, path)
    return backend


def _check_parity(kind, spec, backend, parity_log) -> None:
    weights = canonical_weights(spec, seed=0)
    names = [layer.name for layer in spec.layers]
    x = seeded_inputs(spec, 2, seed=5)
    ref_out, ref_layers = reference_forward(spec, weights, x, names)
    assert set(names) - set(backend.layer_names()) == FOLDED.get((kind, spec.name), set())
    got = backend.run(x, names)
    assert set(got.layers) == set(backend.layer_names())
    # What OpenVINO ran each tensor in, read from the execution graph: float32 everywhere.
    assert got.dtypes == {name: "float32" for name in ["output", *got.layers]}
    diverged = first_divergent_layer(names, ref_layers, got.layers, TOL, REL_L2)
    assert diverged is None, f"openvino-{kind}: {diverged}"
    final = agreement(ref_out, got.output, TOL, REL_L2)
    assert final.ok, final.problem
    rows = {name: agreement(ref_layers[name], got.layers[name], TOL, REL_L2) for name in got.layers}
    worst = max(rows, key=lambda name: rows[name].rel_l2)
    parity_log(f"openvino-{kind}", spec.name, 2, max(final.rel_l2, rows[worst].rel_l2),
               max(final.max_abs / final.ref_max, *(r.max_abs / max(r.ref_max, 1e-30) for r in rows.values())), worst)


@pytest.mark.parametrize("kind", list(BACKENDS))
@pytest.mark.parametrize("spec_name", SMALL)
def test_op_specs_match_the_reference_at_every_layer(kind, spec_name, onnx_cache, parity_log):
    spec = _spec(spec_name)
    backend = _built(kind, spec, canonical_weights(spec, seed=0), onnx_cache)
    _check_parity(kind, spec, backend, parity_log)
    precision = backend.environment()["precision"]
    assert precision["settings"] == PARITY_SETTINGS and "note" not in precision
    assert set(precision["runtime_precisions"]) == {"f32"} and precision["layer_outputs_change_output_by"] == 0.0


@pytest.mark.slow
def test_alexnet_matches_the_reference(onnx_cache, parity_log):
    spec = load_spec("alexnet")
    _check_parity("torch", spec, _built("torch", spec, canonical_weights(spec, seed=0), onnx_cache), parity_log)


def test_planted_weight_bug_is_caught_at_its_layer(onnx_cache, tmp_path):
    """conv2's Keras kernel scaled by 1.001 inside the file: conv2 is the first layer out of tolerance."""
    spec = _spec("ops-conv-groups")
    weights = canonical_weights(spec, seed=0)
    model = onnx.load(str(cached_export("keras", spec, weights, onnx_cache)[0]))
    tensor = next(t for t in model.graph.initializer if t.name == "conv2/kernel")
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(1.001), tensor.name))
    onnx.save(model, str(tmp_path / "planted.onnx"))
    backend = OpenVinoFromKerasBackend()
    backend.build(spec, weights, tmp_path / "planted.onnx")
    x = seeded_inputs(spec, 2, seed=1)
    names = [layer.name for layer in spec.layers]
    _, ref_layers = reference_forward(spec, weights, x, names)
    diverged = first_divergent_layer(names, ref_layers, backend.run(x, names).layers, TOL, REL_L2)
    assert diverged is not None and diverged.layer == "conv2"


def test_parameters_reconciled_with_the_spec_and_with_openvinos_constants(onnx_cache):
    spec = _spec("ops-pool-norm")
    weights = canonical_weights(spec, seed=0)
    torch_side, keras_side = (_built(kind, spec, weights, onnx_cache) for kind in ("torch", "keras"))
    assert keras_side.param_count() == spec.param_count and keras_side.param_explained
    assert torch_side.param_count() == spec.param_count - 24 and torch_side.param_explained
    assert "bn1 folded into conv1" in torch_side.param_note()
    for backend in (torch_side, keras_side):
        held = backend.environment()["params_in_openvino_constants"]
        # Every weight value of the file is in a float Constant of the model OpenVINO read, no more.
        assert held["weights"] == backend.param_count()
        assert held["all"] > backend.params["initializer_params"]  # the ONNX frontend's own shape constants
        assert f"{held['weights']:,} in float constants of more than one value = the file's" in held["note"]


def test_environment_records_device_threads_and_compiled_hints(onnx_cache):
    spec = _spec("ops-conv-groups")
    backend = _built("keras", spec, canonical_weights(spec, 0), onnx_cache, threads=1)
    env = backend.environment()
    assert env["device"] == "CPU" and env["device_name"] and "FP32" in env["optimization_capabilities"]
    assert env["threads"] == 1 == backend.threads_seen()["openvino"] and env["input_layout"] == "NHWC"
    assert env["producer"].startswith("tf2onnx") and env["performance_hint"] == "LATENCY"
    assert env["precision"]["hints_compiled"] == {"INFERENCE_PRECISION_HINT": "f32", "EXECUTION_MODE_HINT": "ACCURACY"}


class DefaultHints(OpenVinoFromTorchBackend):
    """OpenVINO's CPU defaults with a bf16 precision hint, nothing else changed."""

    def compile_properties(self):
        return {"INFERENCE_PRECISION_HINT": "bf16", "EXECUTION_MODE_HINT": "PERFORMANCE"}


def test_a_bf16_hint_is_reported_as_requested_and_as_compiled(onnx_cache):
    spec = _spec("ops-conv-groups")
    backend = DefaultHints(options={"threads": 2})
    backend.build(spec, canonical_weights(spec, 0), cached_export("torch", spec, canonical_weights(spec, 0),
                                                                  onnx_cache)[0])
    precision = backend.environment()["precision"]
    assert precision["hints_requested"]["INFERENCE_PRECISION_HINT"] == "bf16"
    if "BF16" in backend.capabilities():  # a CPU with native bf16 honours the hint
        assert precision["settings"] == "INFERENCE_PRECISION_HINT bf16, EXECUTION_MODE_HINT PERFORMANCE"
        assert "bfloat16" in backend.run(seeded_inputs(spec, 2, seed=0)).dtypes.values()
        return
    # This CPU has none: OpenVINO compiles f32 without a word, and the results say so.
    assert precision["hints_compiled"] == {"INFERENCE_PRECISION_HINT": "f32", "EXECUTION_MODE_HINT": "PERFORMANCE"}
    assert precision["settings"] == ("INFERENCE_PRECISION_HINT bf16 requested (compiled: f32; this CPU has no native "
                                     "bf16), EXECUTION_MODE_HINT PERFORMANCE")
    assert precision["note"].startswith("INFERENCE_PRECISION_HINT bf16 was requested but the compiled model has f32")
    assert set(precision["runtime_precisions"]) == {"f32"}


def test_worker_runs_openvino_on_the_harness_export(tmp_path):
    """Through a real worker process, as compare runs it: no ONNX path given, so it exports through the cache."""
    spec_path = SPECS_DIR / "ops-conv-groups.yaml"
    spec = load_spec(spec_path)
    save_weights(canonical_weights(spec, 0), tmp_path / "w.safetensors")
    np.save(tmp_path / "x.npy", seeded_inputs(spec, 2, seed=0))
    names = [layer.name for layer in spec.layers]
    job = make_job(tmp_path / "job", "openvino-torch", spec_path, tmp_path / "w.safetensors", tmp_path / "x.npy",
                   names, options={"cache_dir": str(tmp_path / "cache"), "threads": 1})
    result = run_worker(job, 300)
    assert result.status == "ok", result.error
    env = result.result["environment"]
    assert env["export_cache_hit"] is False and env["precision"]["settings"] == PARITY_SETTINGS
    assert result.result["dtypes"] == {name: "float32" for name in ["output", *names]}


def test_wrong_exporter_file_is_a_clear_error(onnx_cache):
    spec = _spec("ops-conv-groups")
    weights = canonical_weights(spec, 0)
    path, _, _ = cached_export("keras", spec, weights, onnx_cache)
    with pytest.raises(ValueError, match=f"^backend 'openvino-torch' runs torch exports; {path} was written by "
                                         f"'tf2onnx' \\(a keras export: use openvino-keras\\)$"):
        OpenVinoFromTorchBackend().build(spec, weights, path)


def test_a_device_openvino_lacks_is_a_clear_error(onnx_cache):
    spec = _spec("ops-conv-groups")
    weights = canonical_weights(spec, 0)
    path, _, _ = cached_export("torch", spec, weights, onnx_cache)
    with pytest.raises(ValueError) as caught:
        OpenVinoFromTorchBackend(options={"device": "cuda"}).build(spec, weights, path)
    assert str(caught.value) == "backend 'openvino-torch': device 'cuda' is not an OpenVINO device here; available: cpu"


@pytest.mark.parametrize(("precision", "why"), [("bf16", "computes bf16 only on CPUs with native bf16"),
                                               ("fp16", "computes f16 only on CPUs with native f16"),
                                               ("int8", "from a model quantized by NNCF")])
def test_only_fp32_is_offered_and_the_others_say_why(precision, why):
    reason = OpenVinoFromTorchBackend.precision_reason(precision)
    assert why in reason and OpenVinoFromTorchBackend.precision_reason("fp32") is None
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        OpenVinoFromTorchBackend(options={"precision": precision}).build(_spec("ops-conv-groups"), {})


def test_bench_step_runs_the_compared_model(onnx_cache):
    spec = _spec("ops-conv-groups")
    weights = canonical_weights(spec, 0)
    backend = OpenVinoFromKerasBackend()
    backend.before_build("float32", 1)
    backend.build(spec, weights, cached_export("keras", spec, weights, onnx_cache)[0])
    assert backend.prepare_bench("float32", False, "cpu", 1) == "openvino CPU, LATENCY, f32 ACCURACY"
    assert backend.threads_seen() == {"openvino": 1}
    x = seeded_inputs(spec, 3, seed=0)
    step = backend.bench_step(x, "cpu")
    step()
    ref_out, _ = reference_forward(spec, weights, x, [])
    assert agreement(ref_out, step()[0], TOL, REL_L2).ok  # the Keras model's output is (N, classes)
    with pytest.raises(ValueError, match="asked to bench on 'cuda', its model is compiled for OpenVINO's CPU plugin"):
        backend.bench_step(x, "cuda")


def test_matmul_peak_step_multiplies_on_the_cpu():
    step, library = OpenVinoFromTorchBackend.matmul_peak_step("cpu", "float32", 1, 64)
    assert re.fullmatch(r"openvino \d+\.\d+\.\d+", library) and step()[0].shape == (64, 64)
    with pytest.raises(NotImplementedError, match="CPU at float32"):
        OpenVinoFromTorchBackend.matmul_peak_step("cuda", "float32", 1, 64)
