"""`compare --precision`: the plumbing (which backends run, with what options, on how many inputs), the
profiles derived from the unit roundoff, the margin-aware top-k criterion, per-layer error growth, and
the checks of what precision really ran. Plugin backends compute the reference's formulas with every
layer rounded to a precision (no framework), so each planted bug is exact: a backend that silently runs
bf16 under an fp32 request, one that says so, one in the wrong 16-bit type, an fp16 overflow, a class
lost on a decisive input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import alexbench
from alexbench.backends.precision import UNIT_ROUNDOFF
from alexbench.harness.cli.main import main
from alexbench.harness.compare.precision import (
    PRECISION_PROFILES,
    SAFETY,
    decisive_margin,
    diagnose_fp32,
    dtype_problem,
    nonfinite_problem,
    rounding_depths,
    topk_check,
)
from alexbench.harness.compare.run import CompareConfig, unsupported_backends
from alexbench.harness.compare.table import render_compare
from alexbench.harness.results.document import read_results
from alexbench.spec import load_spec

SPECS = Path(__file__).parents[2] / "specs"
GROUPS = str(SPECS / "ops-conv-groups.yaml")  # conv, LRN, grouped convs, pool, linear, softmax
CONV_BN = str(SPECS / "conv-bn.yaml")

PLUGIN = '''
import numpy as np
from alexbench.backends.reference.backend import ReferenceBackend, run_layer

EXACT = {"relu", "maxpool2d", "flatten", "dropout"}
DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "float32"}


def bf16(a):
    """Round float32 to bfloat16 (nearest, ties to even), kept in a float32 array."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def fp16(a):
    with np.errstate(over="ignore"):  # an overflow gives inf, as in a framework
        return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


ROUND = {"bf16": bf16, "fp16": fp16}


class Emulated(ReferenceBackend):
    """The reference's formulas with each layer's input, weights and output rounded to the precision
    (products exact, sums wide: what float32 accumulation gives), returned as float32."""
    name = "emulated"
    precisions = ("fp32", "bf16", "fp16", "int8")
    computes = None  # the precision it really computes in (None: the one asked for)
    reports = None  # the dtype name it reports for every tensor (None: the truth)

    def run(self, x, layers=()):
        p = self.computes or self.precision
        r = ROUND.get(p, lambda a: np.asarray(a, np.float32))
        y, captured = np.asarray(x, np.float32), {}
        for layer in self.spec.layers:
            w = {k: r(v) for k, v in self.weights.items() if k.startswith(layer.name + ".")}
            y = run_layer(layer, r(y), w)
            y = y if layer.op in EXACT else r(y)
            captured[layer.name] = np.asarray(y, np.float32)
        out = self.tamper(captured[self.spec.layers[-1].name].copy())
        dtype = self.reports or DTYPE[p]
        return RunOutput(out, {n: captured[n] for n in layers},
                         {**{n: dtype for n in layers}, "output": dtype})

    def tamper(self, out):
        return out

    def environment(self):
        return {"options": dict(self.options)}


class SilentBf16(Emulated):
    """Computes in bf16 whatever it is asked, and says float32: the planted silent precision change."""
    name = "silent-bf16"
    precisions = ("fp32",)
    computes = "bf16"
    reports = "float32"


class HonestBf16(SilentBf16):
    name = "honest-bf16"
    reports = "bfloat16"


class Fp16ForBf16(Emulated):
    """Asked for bf16, runs fp16 (and says so)."""
    name = "fp16-for-bf16"
    computes = "fp16"


class NoBf16(ReferenceBackend):
    name = "no-bf16"
    precision_reasons = {"bf16": "this test backend has no bf16 kernels"}


class LosesAClass(Emulated):
    """Honest bf16, but swaps the two leading classes of the decisive input with the smallest margin:
    an error small in L2 that changes what a user sees."""
    name = "loses-a-class"

    def tamper(self, out):
        from alexbench.harness.compare.precision import PRECISION_PROFILES, decisive_margin, rounding_depths

        from alexbench.backends.reference.backend import reference_forward
        ref, _ = reference_forward(self.spec, self.weights, self.x)
        depth = rounding_depths(self.spec)[self.spec.layers[-1].name]
        limit = PRECISION_PROFILES[self.precision].rel_l2(depth)
        ranked = np.sort(ref, axis=1)[:, ::-1]
        margin = ranked[:, 0] - ranked[:, 1]
        decisive = np.flatnonzero(margin > decisive_margin(ref, limit))
        i = decisive[np.argmin(margin[decisive])]
        a, b = np.argsort(-ref[i])[:2]
        out[i, [a, b]] = out[i, [b, a]]
        return out

    def run(self, x, layers=()):
        self.x = x
        return super().run(x, layers)
'''.replace("import numpy as np\n", "import numpy as np\nfrom alexbench.backends.base import RunOutput\n", 1)

NAMES = ("emulated", "silent-bf16", "honest-bf16", "fp16-for-bf16", "no-bf16", "loses-a-class")
CLASSES = ("Emulated", "SilentBf16", "HonestBf16", "Fp16ForBf16", "NoBf16", "LosesAClass")

# Activations that overflow fp16 at conv2 (|x| ~ 1e5 > 65,504) and nowhere before it.
OVERFLOW_SPEC = """name: fp16-overflow
input: [3, 10, 9]
init:
  weight: {dist: normal, std: 30.0}
  bias: {dist: constant, value: 0.0}
layers:
  - {name: conv1, op: conv2d, filters: 4, kernel: 3, padding: 1}
  - {name: relu1, op: relu}
  - {name: conv2, op: conv2d, filters: 5, kernel: 3, padding: 1, init: {weight: {dist: normal, std: 200.0}}}
  - {name: relu2, op: relu}
  - {name: conv3, op: conv2d, filters: 3, kernel: 3, padding: 1}
  - {name: flatten, op: flatten}
  - {name: fc1, op: linear, units: 6, init: {weight: {dist: normal, std: 0.001}}}
"""


@pytest.fixture
def plugins(make_plugin):
    make_plugin({"alexbench_precision_plugin": PLUGIN},
                {n: f"alexbench_precision_plugin:{c}" for n, c in zip(NAMES, CLASSES)})


def compare(tmp_path, capsys, spec: str, backends: str, *extra: str) -> tuple[int, dict, str, str]:
    out = tmp_path / "results.json"
    code = main(["compare", "--spec", spec, "--backends", backends, "--no-onnx", "--json", str(out),
                 "--save", str(tmp_path / "run"), "--timeout", "120", *extra])
    captured = capsys.readouterr()
    return code, read_results(out), captured.out, captured.err


def entry(doc: dict, name: str) -> dict:
    return next(e for e in doc["backends"] if e["name"] == name)


# ---- the profiles ---------------------------------------------------------------------------------


def test_profiles_follow_the_unit_roundoff_and_grow_like_a_random_walk():
    bf16, fp16 = PRECISION_PROFILES["bf16"], PRECISION_PROFILES["fp16"]
    # One rounding layer: 0.75 u measured; the limit is SAFETY times that, then sqrt(n) deeper.
    assert bf16.rel_l2(1) == pytest.approx(SAFETY * 0.75 * 2.0 ** -8)
    assert fp16.rel_l2(1) == pytest.approx(SAFETY * 0.75 * 2.0 ** -11)
    assert bf16.rel_l2(9) == pytest.approx(3 * bf16.rel_l2(1))
    # The first layer's limits sit beside torch.testing.assert_close's per-dtype rtol (bf16 1.6e-2, fp16 1e-3).
    assert 0.5 < bf16.rel_l2(1) / 1.6e-2 < 1 and 1 < fp16.rel_l2(1) / 1e-3 < 2
    assert bf16.describe() == ("'bf16' profile: relative L2 <= 3 x 2.9e-3 x sqrt(n) after n rounding layers (unit "
                               "roundoff 3.9e-3; safety factor 3), max abs <= 2.5 x that x max|ref| "
                               "(docs/precision.md)")


def test_only_layers_that_compute_new_numbers_deepen_the_error():
    depths = rounding_depths(load_spec(GROUPS))
    assert depths == {"conv1": 1, "norm1": 2, "conv2": 3, "pool1": 3, "conv3": 4, "relu3": 4, "flatten": 4,
                      "fc1": 5, "softmax": 6}


def test_the_bf16_criteria_grow_per_layer_and_overrides_replace_what_they_name():
    spec = load_spec(GROUPS)
    criteria = CompareConfig(precision="bf16").criteria(spec)
    bf16 = PRECISION_PROFILES["bf16"]
    assert criteria.rel_l2 == pytest.approx(bf16.rel_l2(6)) and criteria.tol.rtol == pytest.approx(2.5 * bf16.rel_l2(6))
    assert criteria.limits["conv1"][1] == pytest.approx(bf16.rel_l2(1))
    custom = CompareConfig(precision="bf16", rel_l2=0.5)
    assert {l2 for _, l2 in custom.criteria(spec).limits.values()} == {0.5}
    assert custom.tolerance_label() == "custom (bf16 with relative L2 0.5)"
    # A named profile wins over the precision's own; fp32 keeps the default bar.
    assert CompareConfig(precision="bf16", profile="loose").criteria(spec).limits == {}
    assert CompareConfig().criteria(spec).rel_l2 == 1e-5
    assert CompareConfig(precision="bf16").default_batch() == 64 and CompareConfig().default_batch() is None


# ---- top-k ----------------------------------------------------------------------------------------


def test_topk_criterion_judges_only_decisive_margins():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 10))
    ref[:, 3] += 4.0  # class 3 leads every input by a wide margin ...
    ref[0, 5] = ref[0, 3] - 1e-6  # ... except input 0, where class 5 nearly ties it
    limit = 0.01
    margin = decisive_margin(ref, limit)
    assert margin[1] == pytest.approx(3 * math.sqrt(2) * limit * np.sqrt(np.mean(ref[1] ** 2)))
    noisy = ref + 1e-4 * rng.standard_normal(ref.shape)
    noisy[0, [3, 5]] = noisy[0, [5, 3]]  # a near tie flips: allowed
    check = topk_check(ref, noisy, limit)
    assert check.judged and check.ok and check.top1 == 63 / 64 and check.decisive_top1 == 63
    lost = noisy.copy()
    lost[7, 3] -= 10.0  # a decisive input loses its class, and its top 5
    check = topk_check(ref, lost, limit)
    assert not check.ok and check.lost == (7,) and check.kept_top1 == 62
    few = topk_check(ref[:8], lost[:8], limit)
    assert not few.judged and few.ok and few.note == "top-k agreement not judged: 8 inputs, fewer than the 64 it needs"


# ---- what ran --------------------------------------------------------------------------------------


def test_dtype_problems_name_the_first_layer():
    order = ["conv1", "conv2", "conv3"]
    bad = {"conv1": "float32", "conv2": "float32", "conv3": "bfloat16", "output": "float32"}
    assert dtype_problem("fp32", bad, order) == "asked for fp32, but layer 'conv3' ran in bfloat16"
    assert dtype_problem("fp32", {n: "float32" for n in bad}, order) is None
    # Frameworks keep some layers in float32 under bf16; another 16-bit type, or none in bf16, is wrong.
    assert dtype_problem("bf16", bad, order) is None
    assert dtype_problem("bf16", {"conv1": "float16"}, order) == "asked for bf16, but layer 'conv1' ran in float16"
    assert dtype_problem("bf16", {"conv1": "float32", "output": "float32"}, order) == (
        "asked for bf16, but no layer ran in it: every tensor reported is float32")
    assert dtype_problem("int8", {"conv1": "float32"}, order) is None  # QDQ dequantizes between layers
    assert dtype_problem("fp32", {}, order) is None  # a backend that reports nothing: nothing to contradict


def test_nonfinite_values_are_named_by_layer():
    finite = np.ones((2, 3))
    layers = {"conv1": finite, "conv2": np.array([[1.0, np.inf]]), "conv3": np.array([[np.nan, 1.0]])}
    assert nonfinite_problem("fp16", ["conv1", "conv2", "conv3"], layers, finite) == (
        "layer 'conv2' holds inf: fp16's largest value is 65,504")
    assert nonfinite_problem("fp32", ["conv3", "conv2"], layers, finite) == "layer 'conv3' holds NaN"
    assert nonfinite_problem("int8", [], {}, np.array([np.inf])) == "the output holds inf"
    assert nonfinite_problem("fp16", ["conv1"], layers, finite) is None


def test_fp32_errors_are_diagnosed_by_their_size():
    assert diagnose_fp32("conv1", 2.1e-3, 1) == ("errors of 2.1e-3 relative at layer 'conv1' are what bf16 "
                                                 "arithmetic gives (unit roundoff 3.9e-3): did it run in bf16?")
    assert diagnose_fp32("fc6", 4.0e-4, 1) == (
        "errors of 4.0e-4 relative at layer 'fc6' are what fp16 or tf32 arithmetic gives (unit roundoff "
        "4.9e-4): did it run in fp16, or with TF32 matmuls?")
    assert diagnose_fp32("conv1", 0.5, 1) is None and diagnose_fp32("conv1", 2e-5, 1) is None
    assert diagnose_fp32("conv1", None, 1) is None
    assert UNIT_ROUNDOFF["bf16"] == 2.0 ** -8  # the numbers these messages print


# ---- plumbing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["fp8", "int4", ""])
def test_unknown_precision_is_one_line_exit_2(value, tmp_path, capsys):
    code = main(["compare", "--spec", GROUPS, "--backends", "torch", "--precision", value,
                 "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == (f"alexbench compare: error: --precision: unknown precision {value!r}; expected one "
                                 "of fp32, bf16, fp16, int8 (or float32, bfloat16, float16, half)")
    assert not (tmp_path / "r.json").exists()


def test_unknown_precision_in_the_api():
    with pytest.raises(alexbench.UsageError, match=r"^precision: unknown precision 'fp8'; expected one of fp32"):
        alexbench.compare(GROUPS, "torch", precision="fp8")


def test_backends_that_cannot_run_a_precision_are_unsupported_without_a_worker(plugins):
    spec = load_spec(GROUPS)
    found = unsupported_backends(["reference", "no-bf16", "silent-bf16", "emulated"], spec, "bf16")
    assert found == {"no-bf16": "this test backend has no bf16 kernels",
                     "silent-bf16": "backend 'silent-bf16' runs fp32 only, not bf16"}
    assert unsupported_backends(["reference", "no-bf16", "emulated"], spec, "fp32") == {}


def test_bf16_run_passes_with_profile_layers_and_classes(plugins, tmp_path, capsys):
    code, doc, out, err = compare(tmp_path, capsys, GROUPS, "emulated,no-bf16", "--precision", "bfloat16")
    assert code == 0, out
    assert doc["schema"] == "alexbench.results/3" and doc["precision"] == "bf16"
    assert doc["inputs"]["batch"] == 64  # the top-k criterion's least batch, by default
    tol = doc["tolerance"]
    assert tol["profile"] == "bf16" and tol["rel_l2"] == pytest.approx(PRECISION_PROFILES["bf16"].rel_l2(6))
    assert tol["derivation"] == PRECISION_PROFILES["bf16"].describe()
    assert tol["layers"]["conv1"] == pytest.approx(PRECISION_PROFILES["bf16"].rel_l2(1))
    e = entry(doc, "emulated")
    assert e["status"] == "ok" and e["dtypes"]["conv1"] == "bfloat16" and e["dtypes"]["output"] == "bfloat16"
    assert e["precision"] == {"requested": "bf16", "computed": ["bf16"], "problem": None, "diagnosis": None}
    assert e["topk"]["judged"] and e["topk"]["ok"] and e["topk"]["inputs"] == 64
    # Errors of one rounding layer: about 0.75 u, well inside the limit.
    conv1 = next(r for r in e["layers"] if r["name"] == "conv1")
    assert 0.5 * UNIT_ROUNDOFF["bf16"] < conv1["rel_l2"] < UNIT_ROUNDOFF["bf16"]
    # The reference runs in float64, never asked for a precision; the backend was, in canonical form.
    jobs = tmp_path / "run"
    assert "precision" not in json.loads((jobs / "reference" / "job.json").read_text())["options"]
    assert e["environment"]["options"]["precision"] == "bf16"
    assert "calibration_input" not in e["environment"]["options"]
    skipped = entry(doc, "no-bf16")
    assert (skipped["status"], skipped["error"]) == ("unsupported", "this test backend has no bf16 kernels")
    assert not (jobs / "no-bf16").exists()
    assert doc["verdict"]["summary"] == ("PASS: 1 backends agree with the float64 reference within the bf16 profile "
                                         "on 'ops-conv-groups' (emulated); unsupported: no-bf16 (this test backend "
                                         "has no bf16 kernels)")
    lines = out.splitlines()
    assert "precision bf16: every backend but the float64 reference" in lines
    assert f"  {tol['derivation']}" in lines
    assert ("relative L2 error per layer against the float64 reference (limit: the bf16 profile; !: above it):"
            in lines)
    assert re.search(r"^conv1\s+8\.8e-03\s+2\.\de-03$", out, re.M), out
    assert "emulated: every layer within the bf16 profile" in lines
    assert any(line.startswith("emulated: top-1 ") and "every input with a decisive margin kept its class" in line
               for line in lines)


def test_small_batch_says_classes_were_not_judged(plugins, tmp_path, capsys):
    code, doc, _, _ = compare(tmp_path, capsys, GROUPS, "emulated", "--precision", "bf16", "--batch", "4")
    assert code == 0 and doc["inputs"]["batch"] == 4
    assert entry(doc, "emulated")["topk"]["judged"] is False
    assert doc["verdict"]["summary"].endswith(
        "(emulated); top-k agreement not judged: 4 inputs, fewer than the 64 it needs")


def test_int8_calibrates_on_the_run_batch(plugins, tmp_path, capsys):
    code, doc, _, _ = compare(tmp_path, capsys, CONV_BN, "emulated", "--precision", "int8", "--batch", "4")
    assert code == 0, doc["verdict"]
    options = entry(doc, "emulated")["environment"]["options"]
    assert options["precision"] == "int8"
    calibration = Path(options["calibration_input"])
    assert calibration == (tmp_path / "run" / "calibration.npy").resolve()
    assert np.array_equal(np.load(calibration), np.load(tmp_path / "run" / "input.npy"))


def test_silent_bf16_under_fp32_is_caught_with_a_diagnosis(plugins, tmp_path, capsys):
    """The planted bug: computes in bf16, returns float32 and reports float32 dtypes."""
    code, doc, out, _ = compare(tmp_path, capsys, GROUPS, "silent-bf16", "--batch", "2")
    assert code == 1 == doc["verdict"]["exit_code"]
    e = entry(doc, "silent-bf16")
    assert e["status"] == "mismatch" and e["precision"]["problem"] is None  # its dtypes say nothing wrong
    assert e["first_divergent_layer"]["name"] == "conv1"
    diagnosis = e["precision"]["diagnosis"]
    assert re.fullmatch(r"errors of \d\.\de-3 relative at layer 'conv1' are what bf16 arithmetic gives "
                        r"\(unit roundoff 3\.9e-3\): did it run in bf16\?", diagnosis), diagnosis
    assert "silent-bf16: first diverges at layer 'conv1'" in out and diagnosis in out
    assert doc["verdict"]["summary"] == "FAIL on 'ops-conv-groups': mismatch: silent-bf16"


def test_reported_bf16_under_fp32_is_flagged_by_layer(plugins, tmp_path, capsys):
    code, doc, out, _ = compare(tmp_path, capsys, GROUPS, "honest-bf16", "--batch", "2")
    assert code == 1
    e = entry(doc, "honest-bf16")
    assert e["status"] == "mismatch"
    assert e["precision"]["problem"] == "asked for fp32, but layer 'conv1' ran in bfloat16"
    assert e["precision"]["computed"] == ["bf16"]
    assert "honest-bf16: asked for fp32, but layer 'conv1' ran in bfloat16; first diverges at layer 'conv1'" in out


def test_wrong_16_bit_type_is_flagged(plugins, tmp_path, capsys):
    code, doc, _, _ = compare(tmp_path, capsys, GROUPS, "fp16-for-bf16", "--precision", "bf16", "--batch", "2")
    assert code == 1
    e = entry(doc, "fp16-for-bf16")
    assert e["status"] == "mismatch"
    assert e["precision"]["problem"] == "asked for bf16, but layer 'conv1' ran in float16"
    assert e["first_divergent_layer"] is None  # fp16 is more precise than bf16: only its dtypes give it away


def test_fp16_overflow_fails_naming_the_layer(plugins, tmp_path, capsys):
    spec = tmp_path / "overflow.yaml"
    spec.write_text(OVERFLOW_SPEC)
    code, doc, out, _ = compare(tmp_path, capsys, str(spec), "emulated", "--precision", "fp16", "--batch", "2")
    assert code == 1, doc["verdict"]
    e = entry(doc, "emulated")
    assert e["status"] == "mismatch" and e["error"] == "layer 'conv2' holds inf: fp16's largest value is 65,504"
    assert e["first_divergent_layer"]["name"] == "conv2" and e["first_divergent_layer"]["rel_l2"] is None
    assert "topk" not in e  # no classes of an inf output
    assert "emulated: layer 'conv2' holds inf: fp16's largest value is 65,504" in out
    pair = doc["pairwise"]["rel_l2"]
    assert pair[0][1] is None and pair[1][0] is None  # no NaN distance, no crash writing JSON


def test_a_decisive_input_that_loses_its_class_fails(plugins, tmp_path, capsys):
    # 100 classes: leading margins come in every size, some just above the decisive one, whose swap
    # stays within the profile's L2 and max abs limits.
    text = (SPECS / "conv-bn.yaml").read_text()
    assert "units: 7}" in text
    spec = tmp_path / "conv-bn-100.yaml"
    spec.write_text(text.replace("name: conv-bn", "name: conv-bn-100").replace("units: 7}", "units: 100}"))
    code, doc, out, _ = compare(tmp_path, capsys, str(spec), "loses-a-class", "--precision", "bf16")
    assert code == 1, doc["verdict"]
    e = entry(doc, "loses-a-class")
    assert e["status"] == "mismatch" and e["metrics"]["ok"]  # within the profile in L2 and max abs ...
    topk = e["topk"]
    assert topk["judged"] and not topk["ok"] and len(topk["lost"]) == 1  # ... but one class is lost
    assert topk["kept_top1"] == topk["decisive_top1"] - 1
    assert f"lost their class (input {topk['lost'][0]})" in out


def test_render_reads_a_results_1_document():
    old = Path(__file__).parents[1] / "results" / "results-1-compare-alexnet-owt.json"
    doc = json.loads(old.read_text())
    assert doc["schema"] == "alexbench.results/1" and "precision" not in doc
    text = render_compare(doc)
    assert "relative L2 error per layer" not in text and "precision" not in text.splitlines()[1]


def test_torch_bf16_end_to_end(tmp_path, capsys):
    """The real torch backend in bf16: within the profile at every layer, its dtypes saying bfloat16."""
    code, doc, out, _ = compare(tmp_path, capsys, str(SPECS / "ops-pool-norm.yaml"), "torch", "--precision", "bf16")
    assert code == 0, out
    e = entry(doc, "torch")
    assert e["status"] == "ok" and "bf16" in e["precision"]["computed"] and e["precision"]["problem"] is None
    assert e["topk"]["judged"] and e["topk"]["ok"]
    conv1 = next(r for r in e["layers"] if r["name"] == "conv1")
    assert 0.5 * UNIT_ROUNDOFF["bf16"] < conv1["rel_l2"] < UNIT_ROUNDOFF["bf16"]  # one rounding layer: ~0.75 u
    assert "torch: every layer within the bf16 profile" in out
