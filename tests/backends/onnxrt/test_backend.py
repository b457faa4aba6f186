"""ONNX Runtime on both exports of every shipped valid spec and both op-coverage specs: batch 1
and batch 3 through one file (the batch axis is dynamic), output and every mapped layer within
the native backends' tolerances of the float64 reference; planted bugs caught at their layer;
providers recorded; an export that fails is a reported error, not a crash.

Exports come from the session's on-disk cache shared with tests/backends/onnx."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from alexbench.backends.onnx.cache import cached_export
from alexbench.backends.onnxrt.backend import OnnxFromKerasBackend, OnnxFromTorchBackend, cuda_device_present
from alexbench.backends.reference.backend import reference_forward
from alexbench.harness.compare.metrics import PROFILES, REL_L2_LIMIT, agreement, first_divergent_layer
from alexbench.harness.inputs import seeded_inputs
from alexbench.harness.workers.job import make_job
from alexbench.harness.workers.runner import run_worker
from alexbench.spec import canonical_weights, load_spec, save_weights

TOL, REL_L2 = PROFILES["default"], REL_L2_LIMIT["default"]
SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
SPECS = ["alexnet", "alexnet-owt", "alexnet-blog-keras", str(SPECS_DIR / "ops-conv-groups.yaml"),
         str(SPECS_DIR / "ops-pool-norm.yaml")]
BACKENDS = {"torch": OnnxFromTorchBackend, "keras": OnnxFromKerasBackend}
EXPECTED_MISSING = {("torch", "ops-pool-norm"): {"conv1"}}  # fused into bn1 by torch's optimizer


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "onnx-export-cache"  # shared with tests/backends/onnx


_REFERENCE: dict[str, tuple] = {}


def _reference(spec, weights, x):
    """float64 reference of the batch-3 input, once per spec (batch 1 is its first row)."""
    if spec.name not in _REFERENCE:
        _REFERENCE[spec.name] = reference_forward(spec, weights, x, [layer.name for layer in spec.layers])
    return _REFERENCE[spec.name]


def _built(kind: str, spec, weights, cache: Path, **options):
    path, _, _ = cached_export(kind, spec, weights, cache)
    backend = BACKENDS[kind](options=options)
    backend.build(spec, weights, path)
    return backend


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(BACKENDS))
@pytest.mark.parametrize("spec_ref", SPECS, ids=lambda s: Path(s).stem)
def test_both_batches_through_one_file_match_the_reference(kind, spec_ref, onnx_cache, parity_log):
    spec = load_spec(spec_ref)
    weights = canonical_weights(spec, seed=0)
    x = seeded_inputs(spec, 3, seed=5)
    ref_out, ref_layers = _reference(spec, weights, x)
    backend = _built(kind, spec, weights, onnx_cache)
    names = [layer.name for layer in spec.layers]
    assert set(names) - set(backend.layer_names()) == EXPECTED_MISSING.get((kind, spec.name), set())
    for n in (1, 3):
        got = backend.run(x[:n], names)
        refs = {name: ref_layers[name][:n] for name in names}
        assert got.output.shape == (n, *spec.output_shape)
        assert set(got.layers) == set(backend.layer_names())
        diverged = first_divergent_layer(names, refs, got.layers, TOL, REL_L2)
        assert diverged is None, f"{kind} export, batch {n}: {diverged}"
        final = agreement(ref_out[:n], got.output, TOL, REL_L2)
        assert final.ok, final.problem
        rows = {name: agreement(refs[name], got.layers[name], TOL, REL_L2) for name in got.layers}
        worst = max(rows, key=lambda name: rows[name].max_abs / max(rows[name].ref_max, 1e-30))
        parity_log(f"onnx-{kind}", spec.name, n, max(final.rel_l2, *(r.rel_l2 for r in rows.values())),
                   max(final.max_abs / final.ref_max, rows[worst].max_abs / rows[worst].ref_max), worst)


def test_param_count_and_note_come_from_the_initializers(onnx_cache):
    spec = load_spec(SPECS_DIR / "ops-pool-norm.yaml")
    weights = canonical_weights(spec, seed=0)
    torch_side = _built("torch", spec, weights, onnx_cache)
    keras_side = _built("keras", spec, weights, onnx_cache)
    assert keras_side.param_count() == spec.param_count and keras_side.param_explained
    assert torch_side.param_count() == spec.param_count - 24 and torch_side.param_explained
    assert "bn1 folded into conv1" in torch_side.param_note() and f"{spec.param_count:,}" in torch_side.param_note()


@pytest.mark.parametrize("kind", list(BACKENDS))
def test_planted_weight_bug_is_caught_at_its_layer(kind, onnx_cache, tmp_path):
    """conv2's weights scaled by 1.001 inside the file: conv2 is the first layer out of tolerance."""
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    weights = canonical_weights(spec, seed=0)
    path, _, _ = cached_export(kind, spec, weights, onnx_cache)
    model = onnx.load(str(path))
    name = "conv2.weight" if kind == "torch" else "conv2/kernel"
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(1.001), name))
    onnx.save(model, str(tmp_path / "planted.onnx"))
    backend = BACKENDS[kind]()
    backend.build(spec, weights, tmp_path / "planted.onnx")
    x = seeded_inputs(spec, 2, seed=1)
    names = [layer.name for layer in spec.layers]
    ref_out, ref_layers = reference_forward(spec, weights, x, names)
    got = backend.run(x, names)
    diverged = first_divergent_layer(names, ref_layers, got.layers, TOL, REL_L2)
    assert diverged is not None and diverged.layer == "conv2"


def test_keras_boundary_planted_layout_bug_is_caught(onnx_cache):
    """Feeding the Keras export NCHW-as-NHWC data (no transpose at the boundary) is caught."""
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    weights = canonical_weights(spec, seed=0)
    backend = _built("keras", spec, weights, onnx_cache)
    x = seeded_inputs(spec, 2, seed=2)
    ref_out, _ = reference_forward(spec, weights, x, [])
    assert agreement(ref_out, backend.run(x).output, TOL, REL_L2).ok
    c, h, w = spec.input_shape
    wrong = np.ascontiguousarray(x.reshape(2, h, w, c))  # the right size, the wrong layout
    out = backend.session.run([backend.output_name], {backend.input_name: wrong})[0]
    assert not agreement(ref_out, out, TOL, REL_L2).ok


CUBE = """
name: cube
input: [3, 10, 11]
init: {weight: {dist: normal, std: 0.3}, bias: {dist: normal, std: 0.1}}
layers:
  - {name: conv1, op: conv2d, filters: 8, kernel: [3, 4]}
  - {name: relu1, op: relu}
  - {name: flatten, op: flatten}
  - {name: fc1, op: linear, units: 4}
"""


def test_keras_layer_whose_layout_cannot_be_told_is_missing_not_guessed(tmp_path):
    """conv1's output is 8x8x8: NCHW and NHWC have the same shape, so onnx-keras lists it missing."""
    from alexbench.spec import parse_spec

    spec = parse_spec(CUBE, "cube.yaml")
    weights = canonical_weights(spec, seed=0)
    backend = _built("keras", spec, weights, tmp_path)
    got = backend.run(seeded_inputs(spec, 2, seed=0), ["conv1", "relu1", "fc1"])
    assert "conv1" not in got.layers and "relu1" not in got.layers and "fc1" in got.layers
    assert "C == H == W" in backend.environment()["missing_layers"]["conv1"]


def test_environment_records_providers_and_threads(onnx_cache):
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    backend = _built("torch", spec, canonical_weights(spec, 0), onnx_cache, threads=1)
    env = backend.environment()
    assert env["providers"] == ["CPUExecutionProvider"] == env["providers_requested"]
    assert env["intra_op_threads"] == 1 and backend.session_options.intra_op_num_threads == 1
    assert env["opset"] >= 18 and env["producer"].startswith("pytorch")


def test_wrong_exporter_file_is_a_clear_error(onnx_cache):
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    weights = canonical_weights(spec, 0)
    path, _, _ = cached_export("keras", spec, weights, onnx_cache)
    with pytest.raises(ValueError, match="onnx-torch' runs torch exports.*tf2onnx.*onnx-keras"):
        OnnxFromTorchBackend().build(spec, weights, path)


@pytest.mark.skipif(cuda_device_present(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(onnx_cache):
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    weights = canonical_weights(spec, 0)
    path, _, _ = cached_export("torch", spec, weights, onnx_cache)
    with pytest.raises(ValueError, match="device 'cuda' requested, but"):
        OnnxFromTorchBackend(options={"device": "cuda"}).build(spec, weights, path)
    auto = OnnxFromTorchBackend(options={"device": "auto"})
    auto.build(spec, weights, path)
    assert auto.environment()["providers"] == ["CPUExecutionProvider"]


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")
def test_cuda_session_with_io_binding_matches_the_reference(onnx_cache):
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    weights = canonical_weights(spec, 0)
    backend = _built("torch", spec, weights, onnx_cache, device="cuda")
    assert "CUDAExecutionProvider" in backend.environment()["providers"]
    x = seeded_inputs(spec, 3, seed=0)
    ref_out, _ = reference_forward(spec, weights, x, [])
    assert agreement(ref_out, backend.run(x).output, TOL, REL_L2).ok
    backend.bench_step(x, "cuda")()


def test_build_without_a_file_exports_through_the_cache(tmp_path):
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    weights = canonical_weights(spec, 0)
    first, second = (OnnxFromKerasBackend(options={"cache_dir": str(tmp_path)}) for _ in range(2))
    first.build(spec, weights)
    second.build(spec, weights)
    assert (first.cache_hit, second.cache_hit) == (False, True) and first.path == second.path


def test_export_failure_is_reported_by_the_worker_not_a_crash(tmp_path):
    """An export torch cannot make (opset 17: no Pad adapter) ends as status 'error' at 'build'
    with the exporter's reason in result.json."""
    spec_path = SPECS_DIR / "ops-conv-groups.yaml"
    spec = load_spec(spec_path)
    save_weights(canonical_weights(spec, 0), tmp_path / "w.safetensors")
    np.save(tmp_path / "x.npy", seeded_inputs(spec, 1, seed=0))
    job = make_job(tmp_path / "job", "onnx-torch", spec_path, tmp_path / "w.safetensors", tmp_path / "x.npy",
                   [], options={"opset": 17, "cache_dir": str(tmp_path / "cache")})
    result = run_worker(job, 300)
    assert result.status == "error" and result.stage == "build"
    assert "ExportFailed" in result.result["error_type"] and "Pad" in result.error
