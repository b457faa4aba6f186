"""The torch model against the float64 reference, on every named layer and the output, and
planted bugs that those checks must catch at the right layer."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from alexbench.backends.reference.backend import reference_forward
from alexbench.backends.torch.backend import TorchBackend
from alexbench.backends.torch.lowering import torch_model_from_spec
from alexbench.harness.compare.metrics import PROFILES, REL_L2_LIMIT, agreement, first_divergent_layer
from alexbench.spec import canonical_weights, load_spec, parse_spec

TOL, REL_L2 = PROFILES["default"], REL_L2_LIMIT["default"]
OP_SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").glob("ops-*.yaml"))
SHIPPED_SPECS = ("alexnet", "alexnet-owt", "alexnet-blog-keras")


def seeded_input(spec, batch: int, seed: int = 0) -> np.ndarray:
    """Standard-normal NCHW float32: negative values reach every pooling layer."""
    return np.random.default_rng(seed).standard_normal((batch, *spec.input_shape)).astype(np.float32)


def _torch_run(spec, weights, x, model=None):
    backend = TorchBackend()
    backend.build(spec, weights)
    if model is not None:  # a planted bug: a modified model in place of the built one
        backend.model = model
    out = backend.run(x, backend.layer_names())
    return backend, out.output, out.layers


def _check_parity(spec, weights, x, parity_log) -> None:
    """Every named layer, then the output, within tolerance; log the worst figures."""
    ref_out, ref_layers = reference_forward(spec, weights, x, [layer.name for layer in spec.layers])
    backend, out, layers = _torch_run(spec, weights, x)
    assert set(layers) == {layer.name for layer in spec.layers}
    results = {name: agreement(ref_layers[name], layers[name], TOL, REL_L2) for name in ref_layers}
    results["output"] = agreement(ref_out, out, TOL, REL_L2)
    worst = max(results, key=lambda name: results[name].rel_l2)
    parity_log("torch", spec.name, x.shape[0], results[worst].rel_l2,
               max(a.max_abs / a.ref_max for a in results.values() if a.ref_max > 0), worst)
    failing = {name: a.problem for name, a in results.items() if not a.ok}
    assert not failing, f"torch vs reference on {spec.name}, batch {x.shape[0]}: {failing}"
    assert backend.param_count() == spec.param_count


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("spec_path", OP_SPECS, ids=lambda p: p.stem)
def test_op_specs_match_the_reference_on_every_layer(spec_path, batch, parity_log):
    spec = load_spec(spec_path)
    _check_parity(spec, canonical_weights(spec, seed=1), seeded_input(spec, batch, seed=batch), parity_log)


@pytest.mark.parametrize("name", SHIPPED_SPECS)
def test_shipped_specs_match_the_reference_with_exact_counts(name, parity_log):
    spec = load_spec(name)
    weights = canonical_weights(spec, seed=0)
    model = torch_model_from_spec(spec, weights)
    assert set(model.state_dict()) == set(spec.param_shapes())
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == spec.param_shapes()
    _check_parity(spec, weights, seeded_input(spec, 1), parity_log)


@pytest.mark.parametrize("spec_path", OP_SPECS, ids=lambda p: p.stem)
def test_model_is_eval_float32_with_spec_names_and_counts(spec_path):
    spec = load_spec(spec_path)
    backend = TorchBackend()
    backend.build(spec, canonical_weights(spec))
    model = backend.model
    assert not any(m.training for m in model.modules())
    assert {t.dtype for t in model.state_dict().values()} == {torch.float32}
    assert list(model.state_dict()) == list(spec.param_shapes())  # no num_batches_tracked
    named = [name for name, _ in model.named_children() if not name.endswith("_pad")]
    assert named == [layer.name for layer in spec.layers]
    assert backend.param_count() == spec.param_count
    assert sum(p.numel() for p in model.parameters()) == spec.trainable_count


def test_asymmetric_padding_is_an_explicit_pad_before_the_named_layer():
    spec = load_spec(OP_SPECS[0])  # ops-conv-groups: conv1 pads [1, 2, 0, 3]
    model = torch_model_from_spec(spec, canonical_weights(spec))
    names = [name for name, _ in model.named_children()]
    assert names.index("conv1_pad") == names.index("conv1") - 1
    assert model.conv1_pad.padding == (0, 3, 1, 2)  # torch's order: left, right, top, bottom


def test_padded_ceil_mode_pooling_through_explicit_padding_equals_torchs_own():
    # Padded ceil-mode max pools are built as -inf padding + floor-mode pooling (ONNX's shape
    # inference disagrees with torch's ceil rule); the result must be torch's, bit for bit.
    for h, w, k, s, p in itertools.product([5, 6, 7, 13], [5, 10], [2, 3], [1, 2, 3], [1]):
        spec = parse_spec(f"name: t\ninput: [2, {h}, {w}]\nlayers:\n  - {{name: pool, op: maxpool2d, "
                          f"kernel: {k}, stride: {s}, padding: {p}, ceil_mode: true}}\n")
        x = torch.randn(1, 2, h, w)
        got = torch_model_from_spec(spec, {})(x)
        assert torch.equal(got, torch.nn.functional.max_pool2d(x, k, s, p, ceil_mode=True)), (h, w, k, s)


@pytest.mark.parametrize("pool", [
    "{op: maxpool2d, kernel: 3, stride: 2, padding: [1, 0, 0, 1], ceil_mode: true}",
    "{op: maxpool2d, kernel: [3, 2], stride: [2, 3], padding: [0, 1, 1, 0], ceil_mode: true}",
    "{op: maxpool2d, kernel: 3, stride: 2, padding: [0, 1, 1, 1]}",
    "{op: avgpool2d, kernel: [2, 3], stride: 2, padding: [0, 1, 1, 0]}",
])
def test_asymmetric_pooling_matches_the_reference(pool):
    # Not in the op-coverage specs: asymmetric max pooling, with and without ceil mode.
    spec = parse_spec(f"name: t\ninput: [5, 9, 8]\nlayers:\n  - {{name: pool, {pool[1:]}\n")
    x = seeded_input(spec, 2)  # negative values next to the -inf padding
    ref, _ = reference_forward(spec, {}, x)
    a = agreement(ref, _torch_run(spec, {}, x)[1], TOL, REL_L2)
    assert a.ok, a.problem


def _mutated(spec, weights, mutate):
    model = torch_model_from_spec(spec, weights)
    mutate(model)
    return model


def _swap_kernel_axes(weights, key):
    planted = dict(weights)
    planted[key] = np.ascontiguousarray(weights[key].transpose(0, 1, 3, 2))
    return planted


def _zero_padded_maxpool(model):
    model.pool1 = torch.nn.Sequential(torch.nn.ZeroPad2d(1), torch.nn.MaxPool2d(3, 2))


PLANTED = {
    # name: (spec file index, weights change, model change, layer that must be named)
    "conv kH/kW swapped": (0, lambda w: _swap_kernel_axes(w, "conv2.weight"), None, "conv2"),
    "LRN alpha times size": (1, None, lambda m: setattr(m.norm1, "alpha", m.norm1.alpha * m.norm1.size), "norm1"),
    "LRN alpha times size (size 3)": (0, None, lambda m: setattr(m.norm1, "alpha", m.norm1.alpha * 3), "norm1"),
    "max pool padded with zeros": (0, None, _zero_padded_maxpool, "pool1"),
    "ceil mode dropped": (1, None, lambda m: setattr(m, "pool1", torch.nn.MaxPool2d(3, 2)), "pool1"),
    "Keras' BatchNorm eps": (1, None, lambda m: setattr(m.bn1, "eps", 1e-3), "bn1"),
}


@pytest.mark.parametrize("bug", PLANTED)
def test_planted_bug_is_caught_at_its_layer(bug):
    index, change_weights, change_model, layer = PLANTED[bug]
    spec = load_spec(OP_SPECS[index])
    weights = canonical_weights(spec, seed=1)
    x = seeded_input(spec, 3, seed=3)
    planted_weights = change_weights(weights) if change_weights else weights
    model = _mutated(spec, planted_weights, change_model or (lambda m: None))
    order = [lay.name for lay in spec.layers]
    ref_out, ref_layers = reference_forward(spec, weights, x, order)
    _, out, layers = _torch_run(spec, weights, x, model)
    divergence = first_divergent_layer(order, ref_layers, layers, TOL, REL_L2)
    assert divergence is not None and divergence.layer == layer, divergence
    assert not agreement(ref_out, out, TOL, REL_L2).ok
