"""`alexbench compare --json` on the shipped specs gives the documents recorded in golden/ (before
the package reorganisation), apart from what changes from run to run.

Floats are compared exactly when this machine and its packages are the ones that recorded the
file (every backend is bit-reproducible there); elsewhere float32 rounding differs by machine, so
only everything else is compared. Regenerate on purpose: ALEXBENCH_REGEN_GOLDEN=1 pytest THIS_FILE.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from alexbench.harness.cli.main import main
from alexbench.spec import shipped_spec_names

GOLDEN = Path(__file__).parent / "golden"
# Keys whose values differ between two runs of the same comparison: clocks, process ids, where a
# cold run exported to, whether the export cache already held the file, and where the worker's
# interpreter is (the checkout's virtual environment).
VOLATILE = {"created", "timings_s", "pid", "path", "cache_hit", "export_cache_hit", "export_s", "check_s",
            "interpreter"}


def normalized(value, floats: bool = True):
    if isinstance(value, dict):
        return {k: normalized(v, floats) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalized(v, floats) for v in value]
    if isinstance(value, float) and not floats:
        return "<float>"
    return value


def test_normalized_keeps_what_matters():
    doc = {"created": "x", "backends": [{"name": "torch", "metrics": {"rel_l2": 1e-7}, "timings_s": {"run": 1.0}}]}
    assert normalized(doc) == {"backends": [{"name": "torch", "metrics": {"rel_l2": 1e-7}}]}
    assert normalized(doc, floats=False) == {"backends": [{"name": "torch", "metrics": {"rel_l2": "<float>"}}]}
    assert normalized({"metrics": {"rel_l2": 1e-7}}) != normalized({"metrics": {"rel_l2": 2e-7}})


@pytest.mark.slow
@pytest.mark.parametrize("spec", shipped_spec_names())
def test_compare_document_is_unchanged(spec, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["compare", "--spec", spec, "--json", str(out), "--quiet"])
    capsys.readouterr()
    doc = json.loads(out.read_text())
    golden = GOLDEN / f"compare-{spec}.json"
    if os.environ.get("ALEXBENCH_REGEN_GOLDEN"):
        golden.write_text(out.read_text())
    recorded = json.loads(golden.read_text())
    assert code == recorded["verdict"]["exit_code"] == 0
    same_machine = normalized(doc["environment"]) == normalized(recorded["environment"])
    assert normalized(doc, floats=same_machine) == normalized(recorded, floats=same_machine)
