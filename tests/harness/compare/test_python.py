"""`compare --python BACKEND=PYTHON`: a backend's worker in another virtual environment, which has
only numpy and the framework (alexbench's code travels with the job), recorded in the results and
the table; every interpreter that cannot run the worker refused with one line, exit 3; bad values
exit 2. The venvs are tests/harness/conftest.py's (bench and compare --train use them too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alexbench.harness.cli.main import main
from alexbench.harness.workers import interpreter

ROOT = Path(__file__).resolve().parents[3]
SMALL = str(ROOT / "tests" / "specs" / "ops-pool-norm.yaml")


def compare(capsys, *args: str) -> tuple[int, str]:
    code = main(["compare", "--spec", SMALL, "--batch", "2", *args])
    return code, capsys.readouterr().out


def test_torch_runs_in_another_venv_that_has_no_alexbench(torch_venv, tmp_path, capsys):
    venv = torch_venv.parent.parent
    no_alexbench = subprocess.run([str(torch_venv), "-c", "import alexbench"], capture_output=True, text=True)
    assert no_alexbench.returncode != 0 and "No module named 'alexbench'" in no_alexbench.stderr

    results = tmp_path / "out.json"
    code, out = compare(capsys, "--backends", "torch", "--python", f"torch={torch_venv}", "--json", str(results))
    assert code == 0, out
    entries = {e["name"]: e for e in json.loads(results.read_text())["backends"]}
    ran = entries["torch"]["environment"]["interpreter"]
    assert ran["prefix"] == str(venv) != sys.prefix and ran["executable"] == str(torch_venv)
    assert set(ran["packages"]) == {"torch", "numpy"}  # the venv has no ONNX exporter
    assert entries["reference"]["environment"]["interpreter"]["prefix"] == sys.prefix
    line = (f"torch ran in {torch_venv} (Python {ran['version']}, prefix {venv}): torch {ran['packages']['torch']}, "
            f"numpy {ran['packages']['numpy']}")
    assert line in out.splitlines()
    # Its ONNX export would need onnx and onnxscript there: not run, and the run does not fail for it.
    reason = (f"runs the ONNX export of 'torch', whose interpreter {torch_venv} lacks onnxscript and onnx: install "
              f"them there to run it, or give --no-onnx")
    assert entries["onnx-torch"]["status"] == "unsupported" and entries["onnx-torch"]["error"] == reason


def test_an_export_made_in_another_interpreter_is_run_and_not_cached(tmp_path, capsys, monkeypatch):
    """The export cache's key holds this interpreter's versions, so another's export stays in the run."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ALEXBENCH_CACHE_DIR", str(cache))
    code, out = compare(capsys, "--backends", "torch", "--python", f"torch={sys.executable}")
    assert code == 0, out
    assert "PASS: 2 backends agree" in out and "(torch, onnx-torch)" in out
    assert not list(cache.glob("*.onnx"))


def _script(tmp_path: Path, body: str, mode: int = 0o755) -> Path:
    """A stand-in for an interpreter: a shell script."""
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


REFUSALS = {
    "missing": (lambda tmp: tmp / "nowhere" / "python", "{p}: no such file"),
    "folder": (lambda tmp: tmp, "{p}: a folder, not an interpreter (e.g. {p}/bin/python)"),
    "not executable": (lambda tmp: _script(tmp, "exit 0", 0o644), "{p}: not executable"),
    "signal": (lambda tmp: _script(tmp, 'echo "Fatal Python error: init_fs_encoding" >&2; kill -SEGV $$'),
               "{p}: the interpreter crashed (signal SIGSEGV): Fatal Python error: init_fs_encoding"),
    "exit": (lambda tmp: _script(tmp, "echo 'first line' >&2; echo 'broken site.py' >&2; exit 7"),
             "{p}: the interpreter crashed (exit 7): broken site.py"),
    "old": (lambda tmp: _script(tmp, """echo '{"executable": "/usr/bin/python3.8", "version": "3.8.10"}'"""),
            "{p}: is Python 3.8.10; alexbench's worker needs Python >= 3.10"),
    "not python": (lambda tmp: _script(tmp, "echo hello"),
                   "{p}: did not answer like a Python interpreter (it printed 'hello')"),
    "no program": (lambda tmp: _not_a_program(tmp), "{p}: cannot be run: Exec format error"),
}


def _not_a_program(tmp_path: Path) -> Path:
    path = tmp_path / "python"
    path.write_bytes(b"\x7fELF, but cut short")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("case", list(REFUSALS))
def test_an_interpreter_that_cannot_run_the_worker_is_one_line_exit_3(case, tmp_path, capsys):
    make, message = REFUSALS[case]
    python = make(tmp_path)
    code, out = compare(capsys, "--backends", "torch", "--no-onnx", "--python", f"torch={python}")
    assert code == 3
    refusal = message.format(p=python)
    assert f"torch: failed during start: --python torch={refusal}" in out.splitlines()
    assert out.splitlines()[-1] == "FAIL on 'ops-pool-norm': nothing was checked: no backend was compared with the " \
                                   "float64 reference (torch failed)"


def test_an_interpreter_that_does_not_answer_in_time(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(interpreter, "PROBE_TIMEOUT_S", 0.5)
    python = _script(tmp_path, "exec sleep 30")
    code, out = compare(capsys, "--backends", "torch", "--no-onnx", "--python", f"torch={python}")
    assert code == 3
    assert f"torch: failed during start: --python torch={python}: no answer within 0.5 s" in out.splitlines()


def test_an_interpreter_without_the_framework_leaves_the_backend_unavailable(bare_venv, capsys):
    code, out = compare(capsys, "--backends", "torch", "--no-onnx", "--python", f"torch={bare_venv}")
    assert code == 3
    assert (f"torch: unavailable during start: --python torch={bare_venv}: lacks torch and numpy: install them "
            f"there, e.g. {bare_venv} -m pip install torch numpy") in out.splitlines()


def test_the_other_backends_run_as_usual(torch_venv, capsys):
    """keras' interpreter lacks its framework; torch in the same venv runs, and so does the reference."""
    code, out = compare(capsys, "--backends", "torch,keras", "--no-onnx", "--python", f"keras={torch_venv}",
                        "--python", f"torch={torch_venv}")
    assert code == 3
    assert (f"keras: unavailable during start: --python keras={torch_venv}: lacks tensorflow and keras: install "
            f"them there, e.g. {torch_venv} -m pip install tensorflow keras") in out.splitlines()
    assert out.splitlines()[-1] == "FAIL on 'ops-pool-norm': failed: keras; agree: torch"


@pytest.mark.parametrize("args, message", [
    (["--python", "torch"], "--python: expected BACKEND=PATH (e.g. torch=/opt/torch-venv/bin/python); "
                            "received 'torch'"),
    (["--python", "=/usr/bin/python3"], "--python: expected BACKEND=PATH (e.g. torch=/opt/torch-venv/bin/python); "
                                        "received '=/usr/bin/python3'"),
    (["--python", "torch=/a/python", "--python", "torch=/b/python"],
     "--python: two interpreters for 'torch' (/a/python, /b/python); give one"),
    (["--python", "tourch=/a/python"], "--python tourch=/a/python: 'tourch' is not a backend of this run; its "
                                       "backends are reference, torch"),
    (["--python", "keras=/a/python"], "--python keras=/a/python: 'keras' is not a backend of this run; its "
                                      "backends are reference, torch"),
])
def test_bad_values_are_usage_errors(args, message, capsys):
    code = main(["compare", "--spec", SMALL, "--backends", "torch", "--no-onnx", *args])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"alexbench compare: error: {message}"


def test_the_refusal_reaches_the_results_and_the_onnx_run_of_its_export(tmp_path, capsys):
    results = tmp_path / "out.json"
    code, _ = compare(capsys, "--backends", "torch", "--python", f"torch={tmp_path / 'no'}", "--json", str(results))
    assert code == 3
    entries = {e["name"]: e for e in json.loads(results.read_text())["backends"]}
    refusal = f"--python torch={tmp_path / 'no'}: no such file"
    assert [(e["status"], e["stage"], e["error"]) for e in (entries["torch"], entries["onnx-torch"])] == [
        ("failed", "start", refusal), ("failed", "export", f"ONNX export from 'torch' failed: {refusal}")]
