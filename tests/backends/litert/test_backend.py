"""The LiteRT backend against the float64 reference: the converted .tflite run by the interpreter on the op
specs (grouped convolutions, LRN through TensorFlow's builtin op, a batch norm the converter folds), batch 2,
the output and every layer the file exposes within the native backends' tolerances; which kernels ran what
is recorded; parameters reconciled; the bench hooks; the full AlexNet (grouped conv2/4/5, LRN) as one slow test.

Files come from a module-wide conversion cache, so each spec converts once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alexbench.backends.litert.backend import LiteRtBackend
from alexbench.backends.litert.params import param_breakdown
from alexbench.backends.reference.backend import reference_forward
from alexbench.harness.compare.metrics import PROFILES, REL_L2_LIMIT, agreement, first_divergent_layer
from alexbench.harness.inputs import seeded_inputs
from alexbench.spec import canonical_weights, load_spec

TOL, REL_L2 = PROFILES["default"], REL_L2_LIMIT["default"]
SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
# Layers whose output the converter fuses into a later op (flatbuffer.py's rule lists them missing).
EXPECTED_MISSING = {"ops-conv-groups": set(), "ops-pool-norm": {"conv1", "pool2"},
                    "alexnet": {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"}}


@pytest.fixture(scope="module")
def tflite_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tflite-cache")


_BUILT: dict[str, LiteRtBackend] = {}


def built(spec_ref: str, cache: Path) -> LiteRtBackend:
    if spec_ref not in _BUILT:
        spec = load_spec(spec_ref)
        backend = LiteRtBackend(options={"cache_dir": str(cache)})
        backend.build(spec, canonical_weights(spec, seed=0))
        _BUILT[spec_ref] = backend
    return _BUILT[spec_ref]


def check_parity(backend: LiteRtBackend, batch: int, parity_log=None) -> None:
    spec = backend.spec
    names = [layer.name for layer in spec.layers]
    x = seeded_inputs(spec, batch, seed=3)
    ref_out, ref_layers = reference_forward(spec, canonical_weights(spec, seed=0), x, names)
    got = backend.run(x, names)
    assert set(names) - set(got.layers) == EXPECTED_MISSING[spec.name]
    assert set(backend.missing) == EXPECTED_MISSING[spec.name]
    diverged = first_divergent_layer(names, ref_layers, got.layers, TOL, REL_L2)
    assert diverged is None, diverged
    final = agreement(ref_out, got.output, TOL, REL_L2)
    assert final.ok, final.problem
    if parity_log is not None:
        rows = {n: agreement(ref_layers[n], got.layers[n], TOL, REL_L2) for n in got.layers}
        worst = max(rows, key=lambda n: rows[n].rel_l2)
        parity_log("litert", spec.name, batch, max(final.rel_l2, rows[worst].rel_l2),
                   max(final.max_abs / final.ref_max, *(r.max_abs / max(r.ref_max, 1e-30) for r in rows.values())),
                   worst)


@pytest.mark.parametrize("spec_name", ["ops-conv-groups", "ops-pool-norm"])
def test_output_and_every_readable_layer_match_the_reference(spec_name, tflite_cache, parity_log):
    check_parity(built(str(SPECS_DIR / f"{spec_name}.yaml"), tflite_cache), 2, parity_log)


def test_grouped_convolutions_reach_the_file_as_one_conv_per_group(tflite_cache):
    """ops-conv-groups: conv1 (1 group), conv2 (2), conv3 (4) -> 7 CONV_2D ops, all taken by XNNPACK."""
    backend = built(str(SPECS_DIR / "ops-conv-groups.yaml"), tflite_cache)
    assert sum(op.code == "CONV_2D" for op in backend.model.ops) == 7
    assert "CONV_2D" not in backend.output_runner.kernels(backend.model)["builtin_ops"]


def test_lrn_is_the_builtin_op_with_tensorflows_alpha(tflite_cache):
    backend = built(str(SPECS_DIR / "ops-pool-norm.yaml"), tflite_cache)
    assert "LOCAL_RESPONSE_NORMALIZATION" in backend.model.op_codes
    layer = backend.spec.layer("norm1")
    assert LiteRtBackend.tflite_lrn_alpha(layer) == pytest.approx(0.01 / 5)


def test_environment_says_which_kernels_ran_the_output_and_the_layers(tflite_cache):
    backend = built(str(SPECS_DIR / "ops-pool-norm.yaml"), tflite_cache)
    backend.run(seeded_inputs(backend.spec, 2, seed=0), ["norm1"])
    env = backend.environment()
    kernels = env["kernels"]
    output, layers = kernels["detail"]["output"], kernels["detail"]["layers"]
    assert output["delegate"] == layers["delegate"] == "XNNPACK" and kernels["same_delegate"]
    assert kernels["output"].startswith("XNNPACK delegate (default)")
    # XNNPACK has no LRN: that op runs on the built-in kernel on both paths
    assert output["builtin_ops"]["LOCAL_RESPONSE_NORMALIZATION"] == 1
    # the readout interpreter keeps every tensor: one partition per delegated op, fewer for the output
    assert layers["partitions"] == layers["delegated_ops"] > output["partitions"] >= 1
    assert "second interpreter" in kernels["note"] and "op by op" in kernels["note"]
    assert kernels["readout_output_difference"]["max_abs"] < 1e-5
    assert env["file"].endswith(".tflite") and env["ops"] == backend.model.op_codes
    assert env["ai_edge_litert"] and env["tensorflow"] and env["precision"]["settings"].startswith("float32 .tflite")


def test_parameters_are_the_files_float_constants_reconciled_with_the_spec(tflite_cache):
    groups = built(str(SPECS_DIR / "ops-conv-groups.yaml"), tflite_cache)
    spec = groups.spec
    # + the zero biases TFLite's CONV_2D needs: conv3 has none (2 per group, shared by its 4 groups), conv2's
    # groups get one of 6 (its own bias is added after the concatenation)
    assert groups.param_count() == spec.param_count + 8 and groups.param_explained
    assert "2 zero biases of the converter's own (8 values" in groups.param_note()
    norm = built(str(SPECS_DIR / "ops-pool-norm.yaml"), tflite_cache)
    assert norm.param_count() == norm.spec.param_count - 24 and norm.param_explained
    assert "bn1 folded into conv1 by the converter" in norm.param_note()


def test_a_file_whose_weights_are_not_the_specs_is_not_explained(tflite_cache):
    """Planted: the spec's fc1 bias said to be zero while the file holds the real one: 10 values too many."""
    backend = built(str(SPECS_DIR / "ops-conv-groups.yaml"), tflite_cache)
    weights = canonical_weights(backend.spec, seed=0)
    planted = param_breakdown(backend.model, backend.spec, {**weights, "fc1.bias": np.zeros(10, np.float32)})
    assert not planted["explained"]
    unexplained = "UNEXPLAINED: 2,286 non-zero values in the file (+0 shared), the spec's weights give 2,276"
    assert unexplained in planted["notes"]


def test_wrong_input_is_a_clear_error(tflite_cache):
    backend = built(str(SPECS_DIR / "ops-conv-groups.yaml"), tflite_cache)
    with pytest.raises(ValueError, match=r"backend 'litert', spec 'ops-conv-groups': input float64 \[2, 4, 19, 23\], "
                                         r"expected float32 NCHW \[N, 4, 19, 23\]"):
        backend.run(np.zeros((2, 4, 19, 23)))


def test_only_float32_runs_with_the_reason():
    assert LiteRtBackend.precision_reason("fp32") is None
    assert "converted without optimizations" in LiteRtBackend.precision_reason("int8")


def test_bench_hooks_run_on_the_xnnpack_interpreter(tflite_cache):
    spec = load_spec(SPECS_DIR / "ops-conv-groups.yaml")
    backend = LiteRtBackend(options={"cache_dir": str(tflite_cache)})
    backend.before_build("float32", 1)
    backend.build(spec, canonical_weights(spec, seed=0))
    assert backend.threads_seen() == {"litert_num_threads": 1}
    assert backend.prepare_bench("float32", False, "cpu", 1).startswith("LiteRT interpreter, XNNPACK delegate")
    with pytest.raises(ValueError, match="the LiteRT interpreter runs on the CPU; received device 'cuda:0'"):
        backend.prepare_bench("float32", False, "cuda:0", 1)
    x = seeded_inputs(spec, 3, seed=0)
    step = backend.bench_step(x, "cpu")
    step()
    ref_out, _ = reference_forward(spec, canonical_weights(spec, seed=0), x, [])
    out = backend.output_runner.tensor(backend.output_runner.output_index)
    assert agreement(ref_out, out, TOL, REL_L2).ok


def test_matmul_peak_step_multiplies_through_xnnpack():
    step, library = LiteRtBackend.matmul_peak_step("cpu", "float32", 1, 64)
    step()
    assert library.startswith("LiteRT ") and library.endswith(" XNNPACK")
    with pytest.raises(NotImplementedError):
        LiteRtBackend.matmul_peak_step("cuda", "float16", 1, 64)


@pytest.mark.slow
def test_full_alexnet_matches_the_reference_layer_by_layer(tflite_cache, parity_log):
    """Grouped conv2/4/5 and LRN at full size; the readable layers and the output within tolerance."""
    check_parity(built("alexnet", tflite_cache), 2, parity_log)
