"""The Keras model against the float64 reference, on every named layer and the output: on
TensorFlow in this process, on torch and JAX (and TensorFlow again) in worker processes; planted
bugs that those checks must catch at the right layer; .keras and ONNX round trips."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from alexbench.backends.base import RunOutput
from alexbench.backends.keras import layouts
from alexbench.backends.keras.backend import KerasBackend
from alexbench.backends.keras.lowering import keras_model_from_spec, load_keras_model
from alexbench.backends.keras.runtime import import_keras
from alexbench.backends.layouts import activation_to_canonical, nchw_to_nhwc
from alexbench.backends.reference.backend import reference_forward
from alexbench.backends.registry import load_backend_class
from alexbench.harness.compare.metrics import PROFILES, REL_L2_LIMIT, agreement, first_divergent_layer
from alexbench.harness.inputs import seeded_inputs
from alexbench.harness.workers.job import make_job
from alexbench.harness.workers.runner import run_worker
from alexbench.spec import canonical_weights, load_spec, parse_spec, save_weights
from alexbench.spec.ops import adaptive_bins

keras = import_keras("tensorflow")  # before the Keras backend's layers, which import keras
from alexbench.backends.keras import layers as keras_layers  # noqa: E402
from alexbench.backends.keras import lowering  # noqa: E402

TOL, REL_L2 = PROFILES["default"], REL_L2_LIMIT["default"]
OP_SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").glob("ops-*.yaml"))
SHIPPED_SPECS = ("alexnet", "alexnet-owt", "alexnet-blog-keras")

# 3x3 stride 2 padding 1 on an even size: 'same' gives the same shape, other values (Keras pads
# bottom/right only). N != C != H != W.
SAME_TRAP = """
name: same-trap
input: [3, 16, 14]
init: {weight: {dist: normal, std: 0.3}, bias: {dist: normal, std: 0.1}}
layers:
  - {name: conv1, op: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1}
  - {name: relu1, op: relu}
  - {name: flatten, op: flatten}
  - {name: fc1, op: linear, units: 5}
"""


def _names(spec) -> list[str]:
    return [layer.name for layer in spec.layers]


def _keras_run(spec, weights, x) -> RunOutput:
    backend = KerasBackend()
    backend.build(spec, weights)
    return backend.run(x, _names(spec))


def _check_parity(backend_name, spec, got: RunOutput, ref_out, ref_layers, batch, parity_log) -> None:
    """Every named layer (first divergence named), then the output, within tolerance; log the worst."""
    assert set(got.layers) == set(_names(spec))
    bad = first_divergent_layer(_names(spec), ref_layers, got.layers, TOL, REL_L2)
    assert bad is None, (f"{backend_name} vs reference on {spec.name}, batch {batch}: first divergent layer "
                         f"'{bad.layer}': {bad.agreement.problem}")
    results = {name: agreement(ref_layers[name], got.layers[name], TOL, REL_L2) for name in ref_layers}
    results["output"] = agreement(ref_out, got.output, TOL, REL_L2, names=("reference", backend_name))
    assert results["output"].ok, f"{backend_name} on {spec.name}: output {results['output'].problem}"
    worst = max(results, key=lambda name: results[name].rel_l2)
    parity_log(backend_name, spec.name, batch, results[worst].rel_l2,
               max(a.max_abs / a.ref_max for a in results.values() if a.ref_max > 0), worst)


def _first_divergence(spec, weights, x):
    ref_out, ref_layers = reference_forward(spec, weights, x, _names(spec))
    got = _keras_run(spec, weights, x)
    return first_divergent_layer(_names(spec), ref_layers, got.layers, TOL, REL_L2)


def _with_attrs(layer, **attrs):
    return replace(layer, attrs={**layer.attrs, **attrs})


# ---- parity -----------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("spec_path", OP_SPECS, ids=lambda p: p.stem)
def test_op_specs_match_the_reference_on_every_layer(spec_path, batch, parity_log):
    spec = load_spec(spec_path)
    weights, x = canonical_weights(spec, seed=1), seeded_inputs(spec, batch, seed=batch)
    ref_out, ref_layers = reference_forward(spec, weights, x, _names(spec))
    backend = KerasBackend()
    backend.build(spec, weights)
    _check_parity("keras", spec, backend.run(x, _names(spec)), ref_out, ref_layers, batch, parity_log)
    assert backend.param_count() == spec.param_count


@pytest.mark.parametrize("name", SHIPPED_SPECS)
def test_shipped_specs_match_the_reference_with_exact_counts(name, parity_log):
    spec = load_spec(name)
    weights, x = canonical_weights(spec, seed=0), seeded_inputs(spec, 1, seed=0)
    ref_out, ref_layers = reference_forward(spec, weights, x, _names(spec))
    backend = KerasBackend()
    backend.build(spec, weights)
    assert backend.param_count() == spec.param_count
    _check_parity("keras", spec, backend.run(x, _names(spec)), ref_out, ref_layers, 1, parity_log)


@pytest.mark.parametrize("backend_name", ["keras", "keras-torch", "keras-jax"])
def test_same_builder_matches_the_reference_in_a_worker_on_each_keras_backend(backend_name, tmp_path, parity_log):
    """The worker sets KERAS_BACKEND in a fresh interpreter; the builder is the same."""
    for spec_path in OP_SPECS:
        spec = load_spec(spec_path)
        weights, x = canonical_weights(spec, seed=2), seeded_inputs(spec, 3, seed=2)
        save_weights(weights, tmp_path / f"{spec.name}.safetensors")
        np.save(tmp_path / f"{spec.name}.npy", x)
        job = make_job(tmp_path / spec.name / backend_name, backend_name, spec_path,
                       tmp_path / f"{spec.name}.safetensors", tmp_path / f"{spec.name}.npy", "all")
        run = run_worker(job, timeout_s=300)
        assert run.ok, f"{backend_name} worker on {spec.name}: {run.status} at {run.stage}: {run.error}\n" \
                       f"{run.stderr_tail}"
        assert run.result["environment"]["keras_backend"] == load_backend_class(backend_name).env["KERAS_BACKEND"]
        assert run.result["param_count"] == spec.param_count
        got = RunOutput(np.load(job / run.result["output"]),
                        {name: np.load(job / path) for name, path in run.result["layers"].items()})
        ref_out, ref_layers = reference_forward(spec, weights, x, _names(spec))
        _check_parity(backend_name, spec, got, ref_out, ref_layers, 3, parity_log)


# ---- planted bugs: each caught, at the layer that is wrong -----------------------------------

def test_plain_flatten_with_plain_transposed_fc_is_caught_at_flatten(monkeypatch):
    """Keras' own Flatten (H, W, C order) with fc1 = W.T: the classic fc6 bug."""
    monkeypatch.setitem(lowering.LOWERING, "flatten",
                        lambda layer, x: keras.layers.Flatten(name=layer.name)(x))
    spec = load_spec(OP_SPECS[0])  # ops-conv-groups: flatten of an 8x5x3 map into fc1
    bad = _first_divergence(spec, canonical_weights(spec, seed=1), seeded_inputs(spec, 2, seed=0))
    assert bad is not None and bad.layer == "flatten", bad


def test_lrn_with_undivided_alpha_is_caught_at_the_lrn(monkeypatch):
    """TensorFlow's convention: alpha not divided by size (as if the spec's alpha went to tf.nn.lrn)."""
    monkeypatch.setitem(lowering.LOWERING, "lrn", lambda layer, x: lowering.lrn(
        _with_attrs(layer, alpha=layer.attrs["alpha"] * layer.attrs["size"]), x))
    spec = load_spec(OP_SPECS[0])
    bad = _first_divergence(spec, canonical_weights(spec, seed=1), seeded_inputs(spec, 2, seed=0))
    assert bad is not None and bad.layer == "norm1", bad


def test_keras_default_batchnorm_eps_is_caught_at_the_batchnorm(monkeypatch):
    monkeypatch.setitem(lowering.LOWERING, "batchnorm2d",
                        lambda layer, x: lowering.batchnorm2d(_with_attrs(layer, eps=1e-3), x))
    spec = load_spec(OP_SPECS[1])  # ops-pool-norm: eps 1e-5, running variances 1e-4 .. 1e-2
    bad = _first_divergence(spec, canonical_weights(spec, seed=1), seeded_inputs(spec, 2, seed=0))
    assert bad is not None and bad.layer == "bn1", bad


def _same_conv(layer, x):
    a = layer.attrs
    return keras.layers.Conv2D(a["filters"], a["kernel"], strides=a["stride"], padding="same",
                               use_bias=a["bias"], name=layer.name)(x)


def test_same_padding_is_caught_at_the_conv(monkeypatch):
    monkeypatch.setitem(lowering.LOWERING, "conv2d", _same_conv)
    spec = parse_spec(SAME_TRAP)
    bad = _first_divergence(spec, canonical_weights(spec, seed=1), seeded_inputs(spec, 2, seed=0))
    assert bad is not None and bad.layer == "conv1", bad


def test_same_padding_that_changes_the_shape_fails_the_build_naming_the_layer(monkeypatch):
    """11x11 stride 4 padding 2 on 224 (alexnet-owt's conv1): torch 55, Keras 'same' 56."""
    monkeypatch.setitem(lowering.LOWERING, "conv2d", _same_conv)
    spec = parse_spec(SAME_TRAP.replace("[3, 16, 14]", "[3, 224, 224]")
                      .replace("kernel: 3, stride: 2, padding: 1", "kernel: 11, stride: 4, padding: 2"))
    with pytest.raises(ValueError, match=r"layer 'conv1' \(conv2d\): Keras output shape 56x56x4 \(NHWC\), "
                                         r"the spec's is 55x55x4"):
        keras_model_from_spec(spec, canonical_weights(spec))


# ---- the model's structure ---------------------------------------------------------------------

@pytest.mark.parametrize("spec_path", OP_SPECS, ids=lambda p: p.stem)
def test_model_names_padding_and_batchnorm_come_from_the_spec(spec_path):
    spec = load_spec(spec_path)
    model = keras_model_from_spec(spec, canonical_weights(spec))
    names = [layer.name for layer in model.layers[1:]]  # after the input
    assert [n for n in names if n in set(_names(spec))] == _names(spec)
    helpers = [n for n in names if n not in set(_names(spec))]
    assert all(n.rpartition("_")[0] in set(_names(spec)) and n.rpartition("_")[2] in ("pad", "chw")
               for n in helpers), helpers
    assert {getattr(layer, "padding", "valid") for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D))
            } == {"valid"}
    for layer in spec.layers:
        if layer.op == "batchnorm2d":
            bn = model.get_layer(layer.name)
            assert bn.epsilon == layer.attrs["eps"] and bn.momentum == pytest.approx(1 - layer.attrs["momentum"])
    assert model.count_params() == spec.param_count
    assert model.input.shape == (None, spec.input_shape[1], spec.input_shape[2], spec.input_shape[0])


def test_grouped_conv_keeps_the_spec_parameter_count_and_one_kernel_layout():
    spec = load_spec(OP_SPECS[0])  # conv2 groups 2, conv3 groups 4 without bias
    weights = canonical_weights(spec)
    model = keras_model_from_spec(spec, weights)
    for name in ("conv2", "conv3"):
        layer = model.get_layer(name)
        assert isinstance(layer, keras_layers.GroupedConv2D)
        assert layer.count_params() == spec.layer(name).param_count
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        assert np.array_equal(layouts.conv_weight_from_keras(kernel), weights[f"{name}.weight"])


def test_permute_and_flatten_equal_the_numpy_layout_function():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)  # NHWC
    inputs = keras.Input((3, 4, 5))
    flat = keras.layers.Flatten()(keras.layers.Permute(layouts.PERMUTE_NHWC_TO_NCHW)(inputs))
    got = keras.Model(inputs, flat).predict_on_batch(x)
    assert np.array_equal(got, layouts.flatten_like_keras_permute(x))


def test_adaptive_pool_uses_torchs_bins_when_the_size_does_not_divide():
    assert adaptive_bins(5, 3) == [(0, 2), (1, 4), (3, 5)]
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3)).astype(np.float32)
    got = keras.ops.convert_to_numpy(keras_layers.TorchAdaptiveAveragePooling2D((3, 2))(x))
    want = np.stack([np.stack([x[:, a:b, c:d].mean(axis=(1, 2)) for c, d in adaptive_bins(7, 2)], 1)
                     for a, b in adaptive_bins(5, 3)], 1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# ---- round trips: .keras and ONNX --------------------------------------------------------------

@pytest.mark.parametrize("spec_path", OP_SPECS, ids=lambda p: p.stem)
def test_keras_file_reloads_with_identical_outputs(spec_path, tmp_path):
    spec = load_spec(spec_path)
    model = keras_model_from_spec(spec, canonical_weights(spec, seed=3))
    model.save(tmp_path / "model.keras")
    reloaded = load_keras_model(tmp_path / "model.keras")
    x = nchw_to_nhwc(seeded_inputs(spec, 3, seed=3))
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]
    assert reloaded.count_params() == spec.param_count
    assert np.array_equal(reloaded.predict_on_batch(x), model.predict_on_batch(x))


@pytest.mark.parametrize("spec_path", OP_SPECS, ids=lambda p: p.stem)
def test_onnx_export_is_valid_with_a_free_batch_and_matches_the_reference(spec_path, tmp_path):
    import onnx
    import onnxruntime as ort

    spec = load_spec(spec_path)
    weights = canonical_weights(spec, seed=4)
    backend = KerasBackend()
    backend.build(spec, weights)
    info = backend.export_onnx(tmp_path / "model.onnx")  # runs the ONNX checker
    assert info["input_layout"] == "NHWC" and "tf2onnx" in info["exporter"]
    ops = Counter(node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node)
    assert "StatefulPartitionedCall" not in ops
    assert ops["Conv"] == sum(layer.attrs["groups"] for layer in spec.layers if layer.op == "conv2d")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = seeded_inputs(spec, batch, seed=batch)
        (out,) = session.run(None, {info["input_name"]: nchw_to_nhwc(x)})
        ref_out, _ = reference_forward(spec, weights, x, [])
        a = agreement(ref_out, activation_to_canonical(out), TOL, REL_L2, names=("reference", "onnx"))
        assert a.ok, f"ONNX of keras on {spec.name}, batch {batch}: {a.problem}"


# ---- the backend's other verbs and the process contract ------------------------------------------

def test_bench_step_environment_and_input_checks():
    spec = load_spec(OP_SPECS[0])
    backend = KerasBackend()
    backend.build(spec, canonical_weights(spec))
    x = seeded_inputs(spec, 2, seed=0)
    step = backend.bench_step(x, "cpu")
    assert np.array_equal(step(), backend.run(x).output)
    env = backend.environment()
    assert env["keras_backend"] == "tensorflow" and env["keras"] == keras.__version__ and "tensorflow" in env
    assert "CPU" in env["device"].upper()
    with pytest.raises(ValueError, match="asked to bench on 'cuda'"):
        backend.bench_step(x, "cuda")
    with pytest.raises(ValueError, match=r"input float64 \[2, 4, 19, 23\], expected float32 NCHW"):
        backend.run(x.astype(np.float64))
    with pytest.raises(KeyError, match="no layer 'conv9'"):
        backend.run(x, ["conv9"])


@pytest.mark.parametrize("backend_name", ["keras-torch", "keras-jax"])
def test_bench_step_on_other_keras_backends_computes_the_output_and_export_is_declined(backend_name):
    """In a fresh interpreter (the backend sets KERAS_BACKEND itself when keras is not imported yet)."""
    code = f"""
import numpy as np
from alexbench.backends.base import ExportUnsupported
from alexbench.backends.registry import load_backend_class
from alexbench.harness.inputs import seeded_inputs
from alexbench.spec import canonical_weights, load_spec
spec = load_spec({str(OP_SPECS[0])!r})
backend = load_backend_class({backend_name!r})()
backend.build(spec, canonical_weights(spec))
x = seeded_inputs(spec, 2, seed=0)
got, want = np.asarray(backend.bench_step(x, "cpu")()), backend.run(x).output
try:
    backend.export_onnx("unused.onnx")
except ExportUnsupported as exc:
    print(exc)
print(float(np.abs(got - want).max() / np.abs(want).max()), backend.environment()["keras_backend"])
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    *_, unsupported, figures = run.stdout.strip().splitlines()
    rel, keras_backend = figures.split()
    assert float(rel) < 1e-5 and keras_backend == backend_name.removeprefix("keras-")
    assert unsupported == f"backend '{backend_name}' has no ONNX export: the Keras ONNX file is exported on " \
                          "TensorFlow by backend 'keras'"


def test_importing_the_backend_module_does_not_import_keras():
    """The worker reads the class's env and sets KERAS_BACKEND before anything imports keras."""
    code = ("import sys; from alexbench.backends.keras.backend import KerasOnJaxBackend as B; "
            "print(B.env, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "{'KERAS_BACKEND': 'jax'} False"


def test_a_process_whose_keras_runs_elsewhere_is_refused_with_the_reason():
    code = ("import os; os.environ['KERAS_BACKEND'] = 'torch'; import keras; "
            "from alexbench.backends.keras.backend import KerasBackend; from alexbench.spec import load_spec; "
            f"KerasBackend().build(load_spec({str(OP_SPECS[0])!r}), {{}})")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode != 0
    assert "keras in this process runs on 'torch', expected 'tensorflow'" in run.stderr
