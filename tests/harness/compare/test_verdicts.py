"""No false verdicts: a compare that checks nothing never passes, a correct model never fails, the
request is planned once per backend, an ONNX run needs no run of its source, and an overridden
tolerance says so."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alexbench.harness.cli.main import main
from alexbench.harness.compare.run import CompareConfig, plan_backends
from alexbench.harness.compare.table import render_compare
from alexbench.harness.results.document import read_results

SPECS = Path(__file__).parents[2] / "specs"
CONV_BN = str(SPECS / "conv-bn.yaml")
WITH_LRN = str(SPECS / "ops-pool-norm.yaml")

PLUGIN = '''
from alexbench.backends.reference.backend import ReferenceBackend


class NoLrn(ReferenceBackend):
    """The reference's numbers, but declares LRN unsupported."""
    unsupported_ops = {"lrn": "this test backend has no LRN kernel"}
'''


@pytest.mark.parametrize("backends, says", [
    ("reference", "the reference alone checks nothing"),
    ("null", "'null' computes nothing"),
    ("null,reference", "'null' computes nothing"),
])
def test_request_that_checks_nothing_is_refused_before_any_work(backends, says, tmp_path, capsys):
    started = time.perf_counter()
    code = main(["compare", "--spec", CONV_BN, "--backends", backends, "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err, err
    assert "alexbench bench" in err or "torch,keras" in err
    assert time.perf_counter() - started < 5 and not (tmp_path / "r.json").exists()


def test_run_where_nothing_was_compared_exits_3(make_plugin, tmp_path, capsys):
    """Before: every backend unsupported left 'PASS: 0 backends agree', exit 0."""
    make_plugin({"alexbench_verdict_plugin": PLUGIN}, {"no-lrn": "alexbench_verdict_plugin:NoLrn"})
    out = tmp_path / "r.json"
    code = main(["compare", "--spec", WITH_LRN, "--backends", "no-lrn", "--batch", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    doc = read_results(out)
    assert code == 3 == doc["verdict"]["exit_code"]
    assert "nothing was checked" in doc["verdict"]["summary"] and "PASS" not in printed
    assert "no-lrn unsupported" in doc["verdict"]["summary"]


def test_duplicate_backends_are_planned_once():
    assert plan_backends(["torch", "torch"], onnx=True) == ["reference", "torch", "onnx-torch"]
    assert plan_backends(["onnx-torch", "torch"], onnx=True) == ["reference", "onnx-torch", "torch"]


def test_overridden_tolerance_is_labelled():
    assert CompareConfig().tolerance_label() is None
    assert CompareConfig(rtol=1e-9).tolerance_label() == "custom (default with rtol 1e-09)"
    cfg = CompareConfig(profile="strict", atol=0.5, rel_l2=0.25)
    assert cfg.tolerance_label() == "custom (strict with atol 0.5, relative L2 0.25)"
    assert cfg.rel_l2_limit() == 0.25 and CompareConfig(profile="loose").rel_l2_limit() == 1e-4


def test_rtol_and_rel_l2_options_are_printed_and_recorded(make_plugin, tmp_path, capsys):
    make_plugin({"alexbench_verdict_plugin": PLUGIN}, {"no-lrn": "alexbench_verdict_plugin:NoLrn"})
    out = tmp_path / "r.json"
    code = main(["compare", "--spec", CONV_BN, "--backends", "no-lrn", "--batch", "2", "--rtol", "1e-9",
                 "--rel-l2", "0.5", "--json", str(out)])
    printed = capsys.readouterr().out
    tol = read_results(out)["tolerance"]
    assert code == 0
    assert tol == {"profile": "default", "atol": 0.0, "rtol": 1e-9, "rel_l2": 0.5,
                   "label": "custom (default with rtol 1e-09, relative L2 0.5)"}
    assert "tolerance custom (default with rtol 1e-09, relative L2 0.5):" in printed
    assert "tolerance 'default'" not in printed


@pytest.mark.slow
def test_conv_without_bias_then_batchnorm_passes_on_every_default_backend(tmp_path, capsys):
    """Before: torch's exporter folds bn1 into conv1 and creates conv1.weight_bias; onnx-torch was a
    mismatch (exit 1) although every number agreed."""
    out = tmp_path / "r.json"
    code = main(["compare", "--spec", CONV_BN, "--batch", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    doc = read_results(out)
    assert code == 0, doc["verdict"]["summary"]
    names = [e["name"] for e in doc["backends"]]
    assert names == ["reference", "torch", "keras", "onnx-torch", "onnx-keras"]
    assert all(e["status"] == "ok" and e["param_count_ok"] for e in doc["backends"])
    onnx_torch = doc["backends"][3]
    assert onnx_torch["environment"]["params"]["explained"]
    assert "bn1" in [row["name"] for row in onnx_torch["layers"]]  # the folded conv's output, compared
    assert "onnx-torch: 667 parameters vs the spec's 698: " in printed and "bn1 folded into conv1" in printed
    assert render_compare(doc).endswith(doc["verdict"]["summary"])


@pytest.mark.slow
def test_onnx_run_without_its_source_uses_or_makes_the_export(tmp_path, capsys):
    """Before: `--backends onnx-torch` exited 3 ('torch' did not produce an export), cache or not."""
    cache = tmp_path / "cache"
    runs = []
    for _ in range(2):  # empty cache: an export-only worker makes it; then the cached file is used
        out = tmp_path / "r.json"
        code = main(["compare", "--spec", CONV_BN, "--backends", "onnx-torch", "--batch", "2", "--json", str(out),
                     "--cache-dir", str(cache)])
        runs.append((code, read_results(out), capsys.readouterr().err))
    for code, doc, _ in runs:
        assert code == 0, doc["verdict"]["summary"]
        assert [e["name"] for e in doc["backends"]] == ["reference", "onnx-torch"]
        assert "1 backends agree" in doc["verdict"]["summary"] and "torch," not in doc["verdict"]["summary"]
    assert "torch (export only)" in runs[0][2]
    assert "torch: ONNX export found in the cache" in runs[1][2] and "export only" not in runs[1][2]
