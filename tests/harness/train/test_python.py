"""`compare --train --python BACKEND=PYTHON`: a backend trains in another virtual environment (numpy and
torch only; tests/harness/conftest.py), judged against the reference trained here; an interpreter that
cannot run the worker fails that backend with compare's line, exit 3."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from alexbench.harness.cli.main import main
from alexbench.harness.errors import ExitCode

SPEC = str(Path(__file__).parents[2] / "specs" / "train-small.yaml")


def test_torch_trains_in_another_venv_like_the_reference(torch_venv, tmp_path, capsys):
    venv = torch_venv.parent.parent
    results = tmp_path / "r.json"
    code = main(["compare", "--train", "--backends", "torch", "--python", f"torch={torch_venv}", "--spec", SPEC,
                 "--json", str(results)])
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out
    entries = {e["name"]: e for e in json.loads(results.read_text())["backends"]}
    ran = entries["torch"]["environment"]["interpreter"]
    assert ran["prefix"] == str(venv) != sys.prefix and ran["executable"] == str(torch_venv)
    assert entries["reference"]["environment"]["interpreter"]["prefix"] == sys.prefix
    assert entries["torch"]["status"] == "ok" and len(entries["torch"]["training"]["losses"]) == 1
    assert f"torch ran in {torch_venv} (Python {ran['version']}, prefix {venv}): " in out


def test_an_interpreter_that_cannot_run_the_worker_fails_its_backend(tmp_path, capsys):
    python = tmp_path / "nowhere" / "python"
    code = main(["compare", "--train", "--backends", "torch", "--python", f"torch={python}", "--spec", SPEC])
    out = capsys.readouterr().out
    assert code == ExitCode.BACKEND
    assert f"torch: failed during start: --python torch={python}: no such file" in out.splitlines()
