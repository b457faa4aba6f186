"""Property-based fuzzing of the spec loader: any input validates or gives a located SpecError.

Profiles: CI runs `ALEXBENCH_FUZZ=ci` (the default, a few thousand examples in all); the nightly
profile `ALEXBENCH_FUZZ=nightly` runs many more. No other exception, no hang (each input has a
deadline), no allocation beyond the memory budget (huge sizes are refused before anything is drawn).
"""

from __future__ import annotations

import os
import random

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexbench.spec import SpecError, parse_spec
from alexbench.spec.loader import shipped_specs_dir

# The gate's profile draws the same examples on every run (a gate must not fail by chance); the
# nightly profile explores new ones, and what it finds becomes a fixed test here.
settings.register_profile("ci", max_examples=600, deadline=2000, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("nightly", max_examples=20000, deadline=2000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("ALEXBENCH_FUZZ", "ci"))

SHIPPED = {p.stem: yaml.safe_load(p.read_text()) for p in shipped_specs_dir().glob("*.yaml")}
TESTS = {p.stem: yaml.safe_load(p.read_text())
         for p in (shipped_specs_dir().parents[1] / "tests" / "specs").glob("*.yaml")} if (
    shipped_specs_dir().parents[1] / "tests" / "specs").is_dir() else {}
BUDGET = 64 << 20  # 64 MiB: fuzzed specs that would need more are refused, never allocated


def check(data) -> None:
    """The property: either a ModelSpec or a SpecError whose message is located."""
    try:
        spec = parse_spec(data, "fuzz.yaml", budget_bytes=BUDGET)
    except SpecError as exc:
        text = str(exc)
        assert text.startswith("fuzz.yaml:"), text
        for problem in getattr(exc, "problems", [exc]):  # several problems: each on its own located line
            assert problem.message.startswith("fuzz.yaml:") and "\n" not in problem.message, text
        assert "Traceback" not in text
        return
    assert 4 * spec.param_count <= BUDGET
    assert spec.layers and all(layer.output_shape for layer in spec.layers)


scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["same", "valid", "conv2d", "relu", "lrn", "", "é", "\u202e", "名前"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)), max_leaves=25)


@given(values)
def test_arbitrary_yaml_documents(doc):
    check(yaml.safe_dump(doc, allow_unicode=True))


@given(st.binary(max_size=300))
def test_arbitrary_bytes(data):
    check(data)


@given(st.text(max_size=300))
def test_arbitrary_text(text):
    check(text)


def _mutate(doc: dict, rnd: random.Random, replacement) -> dict:
    """Drop, rename, retype or duplicate one field somewhere in a spec."""
    doc = yaml.safe_load(yaml.safe_dump(doc))
    targets = [doc] + [layer for layer in doc["layers"] if isinstance(layer, dict)]
    target = rnd.choice(targets)
    if not target:
        return doc
    key = rnd.choice(sorted(target))
    action = rnd.choice(["drop", "rename", "retype", "duplicate_layer", "swap_layers"])
    if action == "drop":
        del target[key]
    elif action == "rename":
        target[key + rnd.choice(["s", "_", "x", ""]) or "x"] = target.pop(key)
    elif action == "retype":
        target[key] = replacement
    elif action == "duplicate_layer":
        doc["layers"].insert(rnd.randrange(len(doc["layers"]) + 1), rnd.choice(doc["layers"]))
    else:
        layers = doc["layers"]
        i, j = rnd.randrange(len(layers)), rnd.randrange(len(layers))
        layers[i], layers[j] = layers[j], layers[i]
    return doc


extreme = st.one_of(scalars, st.sampled_from([0, -1, 1, 2**31, 2**63, 10**12, 0.5, -0.0, 1e308, 3.7, [], {},
                                              [1, 2], [0, 0, 0, 0], [-1, 1, 1, 1], [10**9, 10**9]]))


@given(st.sampled_from(sorted({**SHIPPED, **TESTS})), st.randoms(use_true_random=False), extreme)
def test_mutated_valid_specs(name, rnd, replacement):
    base = {**SHIPPED, **TESTS}[name]
    check(yaml.safe_dump(_mutate(base, rnd, replacement), allow_unicode=True))


@given(st.integers(min_value=1, max_value=10**7), st.integers(min_value=1, max_value=10**6))
def test_huge_sizes_are_refused_before_allocation(units, size):
    text = (f"name: big\ninput: [3, {size}, {size}]\nlayers:\n"
            f"  - {{name: c, op: conv2d, filters: {units}, kernel: 1}}\n"
            f"  - {{name: f, op: flatten}}\n  - {{name: l, op: linear, units: {units}}}\n")
    check(text)
