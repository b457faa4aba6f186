"""A backend that declares an op unsupported is reported as such, with its reason, without a worker;
the run does not fail because of it, and the same backend runs normally on a spec without that op."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexbench.harness.cli.main import main
from alexbench.harness.results.document import read_results

SPECS = Path(__file__).parents[2] / "specs"
WITH_LRN = str(SPECS / "ops-pool-norm.yaml")

# The reference's numbers, so that wherever it does run it agrees; building it records that a worker ran.
PLUGIN = '''
import os
from alexbench.backends.reference.backend import ReferenceBackend

WHY = "this test backend has no LRN kernel"


class NoLrn(ReferenceBackend):
    unsupported_ops = {"lrn": WHY}
    onnx_exporter = "test-no-lrn"

    def build(self, spec, weights, onnx_path=None):
        with open(os.environ["ALEXBENCH_TEST_BUILT"], "a") as f:
            f.write(type(self).__name__ + "\\n")
        super().build(spec, weights, onnx_path)


class OnnxNoLrn(NoLrn):
    """Runs no-lrn's exports: declares no unsupported op of its own."""
    unsupported_ops = {}
    onnx_exporter = None
    onnx_source = "no-lrn"
'''

REASON = "layer 'norm1': op 'lrn' is not supported: this test backend has no LRN kernel"


@pytest.fixture
def built(make_plugin, tmp_path, monkeypatch) -> Path:
    """Install the plugin; return the file each worker that builds one of its backends appends to."""
    make_plugin({"alexbench_no_lrn": PLUGIN},
                {"no-lrn": "alexbench_no_lrn:NoLrn", "onnx-no-lrn": "alexbench_no_lrn:OnnxNoLrn"})
    path = tmp_path / "built.txt"
    monkeypatch.setenv("ALEXBENCH_TEST_BUILT", str(path))
    return path


def compare(tmp_path, capsys, spec: str, backends: str, *extra: str) -> tuple[int, dict, str, str]:
    out = tmp_path / "results.json"
    code = main(["compare", "--spec", spec, "--backends", backends, "--batch", "2", "--json", str(out),
                 "--save", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--timeout", "120",
                 *extra])
    captured = capsys.readouterr()
    return code, read_results(out), captured.out, captured.err


def entry(doc: dict, name: str) -> dict:
    return next(e for e in doc["backends"] if e["name"] == name)


def test_unsupported_op_is_a_status_not_a_failure(tmp_path, capsys, built):
    code, doc, out, err = compare(tmp_path, capsys, WITH_LRN, "no-lrn,torch", "--no-onnx")
    assert code == 0, doc["verdict"]
    assert [e["name"] for e in doc["backends"]] == ["reference", "no-lrn", "torch"]
    bad = entry(doc, "no-lrn")
    assert (bad["status"], bad["stage"], bad["error"]) == ("unsupported", "build", REASON)
    assert "timings_s" not in bad and bad["metrics"] is None
    assert entry(doc, "torch")["status"] == "ok"
    # No worker: nothing built, no job directory, no start announced.
    assert not built.exists()
    assert not (tmp_path / "run" / "no-lrn").exists() and (tmp_path / "run" / "torch").is_dir()
    assert "no-lrn: starting" not in err and "torch: starting" in err
    summary = doc["verdict"]["summary"]
    assert summary.startswith("PASS") and summary.endswith(f"; unsupported: no-lrn ({REASON})")
    row = next(line for line in out.splitlines() if line.startswith("no-lrn "))
    assert row.split()[1] == "unsupported"
    assert f"no-lrn: unsupported, not run: {REASON}" in out


def test_onnx_run_of_an_unsupported_backend_is_unsupported_too(tmp_path, capsys, built):
    code, doc, _, _ = compare(tmp_path, capsys, WITH_LRN, "no-lrn")
    # Nothing was compared with the reference: not a pass (exit 3), and the verdict says why.
    assert code == 3 and "nothing was checked" in doc["verdict"]["summary"], doc["verdict"]
    assert [(e["name"], e["status"]) for e in doc["backends"]] == [
        ("reference", "ok"), ("no-lrn", "unsupported"), ("onnx-no-lrn", "unsupported")]
    assert entry(doc, "onnx-no-lrn")["error"] == f"runs the ONNX export of 'no-lrn': {REASON}"
    assert not built.exists()


def test_the_same_backend_runs_on_a_spec_without_the_op(tmp_path, capsys, built):
    # Both small test specs have an LRN layer: this one is ops-conv-groups without it.
    lines = (SPECS / "ops-conv-groups.yaml").read_text().splitlines()
    without = [line.replace("name: ops-conv-groups", "name: ops-conv-groups-no-lrn") for line in lines
               if "op: lrn" not in line]
    assert len(without) == len(lines) - 1
    spec = tmp_path / "no-lrn.yaml"
    spec.write_text("\n".join(without) + "\n")
    code, doc, _, _ = compare(tmp_path, capsys, str(spec), "no-lrn", "--no-onnx")
    assert code == 0, doc["verdict"]
    ran = entry(doc, "no-lrn")
    assert ran["status"] == "ok" and ran["metrics"]["ok"]
    assert "unsupported" not in doc["verdict"]["summary"]
    assert built.read_text() == "NoLrn\n"
