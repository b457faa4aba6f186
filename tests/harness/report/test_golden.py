"""report.md pinned byte for byte: the alexnet spec alone, and alexnet with variants and the results
fixtures. A change in the report shows up here as a diff to review.

Regenerate on purpose (after reviewing the diff) with:

    ALEXBENCH_REGEN_GOLDEN=1 pytest tests/harness/report/test_golden.py

which also refreshes the "spec" section of the results fixtures (golden/results-*.json) when
alexnet.yaml has changed, so they keep describing the shipped spec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from alexbench import __version__
from alexbench.harness.report.write import write_report
from alexbench.harness.results.document import read_results, spec_summary, validate_results
from alexbench.spec import load_spec

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("ALEXBENCH_REGEN_GOLDEN") == "1"
CASES = {
    "report-alexnet.md": {},
    "report-alexnet-full.md": {"variants": ["alexnet-owt", "alexnet-blog-keras"],
                               "results": ["results-compare-cpu.json", "results-compare-gpu.json",
                                           "results-bench-cpu.json", "results-bench-gpu.json",
                                           "results-bench-gpu-host.json"]},
}


def normalise(text: str) -> str:
    """Keep the version out of the golden files (timestamps are never in a report)."""
    return text.replace(f"alexbench {__version__}", "alexbench <version>")


@pytest.fixture(scope="module", autouse=True)
def fresh_fixtures():
    if not REGEN:
        return
    summary = spec_summary(load_spec("alexnet"))
    for path in GOLDEN.glob("results-*.json"):
        doc = json.loads(path.read_text())
        if doc["spec"] != summary:
            doc["spec"] = summary
            validate_results(doc)
            path.write_text(json.dumps(doc, indent=1) + "\n")


@pytest.mark.parametrize("golden", sorted(CASES))
def test_golden_report_md(tmp_path, golden):
    case = CASES[golden]
    spec = load_spec("alexnet")
    docs = [(name, read_results(GOLDEN / name)) for name in case.get("results", [])]
    write_report(spec, tmp_path, results=docs, variants=[load_spec(v) for v in case.get("variants", [])])
    got = normalise((tmp_path / "report.md").read_text("utf-8"))
    path = GOLDEN / golden
    if REGEN:
        path.write_text(got, "utf-8")
    assert path.exists(), f"no golden {path}; create it with ALEXBENCH_REGEN_GOLDEN=1 pytest {__file__}"
    want = path.read_text("utf-8")
    assert got == want, (f"report.md differs from {path}; if the change is intended, regenerate with "
                         f"ALEXBENCH_REGEN_GOLDEN=1 pytest tests/harness/report/test_golden.py and review the diff")
