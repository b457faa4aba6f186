"""The compare table's lines under the table: where each backend ran when interpreters differ
(`compare --python`), a backend's notes, and the settings a mismatching backend ran with."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from alexbench.harness.compare.table import render_compare

RESULTS = Path(__file__).parents[1] / "results" / "results-1-compare-alexnet-owt.json"


@pytest.fixture
def doc() -> dict:
    return copy.deepcopy(json.loads(RESULTS.read_text()))


def _ran_in(entry: dict, prefix: str, **packages: str) -> None:
    entry["environment"]["interpreter"] = {"executable": f"{prefix}/bin/python", "version": "3.11.7",
                                           "prefix": prefix, "packages": packages}


def test_one_interpreter_for_all_prints_no_line(doc):
    for entry in doc["backends"]:
        _ran_in(entry, "/venv", numpy="2.4.6")
    assert " ran in " not in render_compare(doc)


def test_where_each_backend_ran_when_interpreters_differ(doc):
    for entry in doc["backends"]:
        _ran_in(entry, "/venv", numpy="2.4.6")
    _ran_in(doc["backends"][1], "/tmp/v2", torch="2.13.0", numpy="2.4.6")
    doc["backends"][2]["environment"]["interpreter"]["packages"] = {"keras": None}
    lines = render_compare(doc).splitlines()
    assert "reference ran in /venv/bin/python (Python 3.11.7, prefix /venv): numpy 2.4.6" in lines
    assert "torch ran in /tmp/v2/bin/python (Python 3.11.7, prefix /tmp/v2): torch 2.13.0, numpy 2.4.6" in lines
    assert "keras ran in /venv/bin/python (Python 3.11.7, prefix /venv): keras (version unknown)" in lines


def test_a_backends_notes_are_printed_under_the_table(doc):
    doc["backends"][3]["environment"]["notes"] = ["layer outputs read with built-in kernels", "second note"]
    lines = render_compare(doc).splitlines()
    assert lines.index("onnx-torch: layer outputs read with built-in kernels") + 1 == lines.index(
        "onnx-torch: second note")


def test_a_mismatch_says_the_settings_it_ran_with(doc):
    torch = doc["backends"][1]
    torch["status"] = "mismatch"
    torch["precision"] = {"requested": "fp32", "computed": ["fp32"], "problem": None, "diagnosis": None,
                          "settings": "INFERENCE_PRECISION_HINT bf16"}
    torch["metrics"] |= {"ok": False, "problem": "out of tolerance"}
    line = next(x for x in render_compare(doc).splitlines() if x.startswith("torch: "))
    assert line.endswith("; ran with INFERENCE_PRECISION_HINT bf16")
