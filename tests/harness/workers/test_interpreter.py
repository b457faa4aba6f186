"""The check of a `--python` interpreter (workers/interpreter.py) and the facts every worker records
(workers/interpreter_facts.py). The refusals through `alexbench compare` are in
tests/harness/compare/test_python.py."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from alexbench.harness.errors import UsageError
from alexbench.harness.workers import interpreter_facts
from alexbench.harness.workers.interpreter import InterpreterRefused, parse_python, probe
from alexbench.harness.workers.interpreter_facts import describe


def test_this_interpreter_described():
    facts = describe(["numpy", "alexbench_absent_module"])
    assert facts["executable"] == sys.executable and facts["prefix"] == sys.prefix
    assert facts["version"] == ".".join(map(str, sys.version_info[:3]))
    assert set(facts["packages"]) == {"numpy"} and facts["missing"] == ["alexbench_absent_module"]


def test_probe_finds_the_framework_and_looks_for_the_exporter():
    facts = probe("torch", sys.executable, ["torch"], ["alexbench_absent_exporter"])
    assert facts["executable"] == sys.executable and "torch" in facts["packages"]
    assert facts["missing"] == ["alexbench_absent_exporter"]  # looked for, not required


def test_probe_refuses_an_absent_framework_as_unavailable():
    with pytest.raises(InterpreterRefused) as info:
        probe("planted", sys.executable, ["alexbench_absent_framework"])
    assert str(info.value) == (f"--python planted={sys.executable}: lacks alexbench_absent_framework: install it "
                               f"there, e.g. {sys.executable} -m pip install alexbench_absent_framework")
    assert info.value.status == "unavailable"


# Older Pythons installed beside this one (pyenv's layout: <versions>/<version>/bin/pythonX.Y), if any.
OLD_PYTHONS = sorted(str(p) for v in ("2.7", "3.6", "3.8", "3.9")
                     for p in Path(sys.base_prefix).parent.glob(f"{v}*/bin/python{v}"))


def test_an_old_python_says_its_version():
    """The probe's source parses in old Pythons, so an old one is refused by its version, not by a
    SyntaxError: checked against Python 3.4's grammar everywhere, and by running every old Python found."""
    ast.parse(Path(interpreter_facts.__file__).read_text(encoding="utf-8"), feature_version=(3, 4))
    for python in OLD_PYTHONS:
        with pytest.raises(InterpreterRefused) as info:
            probe("torch", python, ["torch"])
        assert str(info.value).startswith(f"--python torch={python}: is Python ")
        assert str(info.value).endswith("; alexbench's worker needs Python >= 3.10")


def test_parse_python():
    assert parse_python(["torch=/a/bin/python", " keras = /b/python ", "torch=/a/bin/python"]) == {
        "torch": "/a/bin/python", "keras": "/b/python"}
    with pytest.raises(UsageError, match="expected BACKEND=PATH"):
        parse_python(["torch="])
