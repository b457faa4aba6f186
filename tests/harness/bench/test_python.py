"""`bench --python BACKEND=PYTHON`: a backend's bench jobs in another virtual environment (numpy and torch
only; tests/harness/conftest.py), its interpreter in the results and the table; an interpreter that
cannot run the worker fails that backend with compare's line, exit 3, and the others bench as usual; the API's
bench(python=...) is the same."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import alexbench
from alexbench.harness import environment
from alexbench.harness.cli.main import main

TINY = str(Path(__file__).resolve().parents[2] / "specs" / "ops-conv-groups.yaml")
# One short row per backend: no overhead row, a small peak, a single timed repetition.
FAST = ["--spec", TINY, "--batch-sizes", "1", "--min-time", "0", "--min-reps", "1", "--warmup", "0",
        "--no-overhead", "--peak-size", "128", "--threads", "1", "--device", "cpu"]


def test_torch_benches_in_another_venv_and_says_where(torch_venv, tmp_path, capsys):
    venv = torch_venv.parent.parent
    results = tmp_path / "bench.json"
    code = main(["bench", *FAST, "--backends", "torch", "--python", f"torch={torch_venv}", "--json", str(results)])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(results.read_text())
    (entry,) = doc["backends"]
    ran = entry["environment"]["interpreter"]
    assert ran["prefix"] == str(venv) != sys.prefix and ran["executable"] == str(torch_venv)
    assert [row["backend"] for row in doc["bench"]["rows"]] == ["torch"]
    assert doc["bench"]["settings"]["python"] == {"torch": str(torch_venv)}
    line = (f"torch ran in {torch_venv} (Python {ran['version']}, prefix {venv}): torch {ran['packages']['torch']}, "
            f"numpy {ran['packages']['numpy']}")
    assert line in out.splitlines()


def test_an_interpreter_that_cannot_run_the_worker_fails_its_backend_alone(tmp_path, capsys):
    python = tmp_path / "nowhere" / "python"
    code = main(["bench", *FAST, "--backends", "null,torch", "--python", f"torch={python}"])
    out = capsys.readouterr().out.splitlines()
    assert code == 3
    assert f"FAILED torch (start): --python torch={python}: no such file" in out
    assert out[-1] == f"FAILED: 1 rows from 1 jobs on {environment.cpu_name()}; failed: torch"  # null's row


def test_the_api_takes_the_same_interpreters(tmp_path):
    python = tmp_path / "nowhere" / "python"
    result = alexbench.bench(TINY, ["null", "torch"], batch_sizes=[1], device="cpu", warmup=0, min_time_s=0,
                             min_reps=1, threads=1, overhead=False, peak=False, python={"torch": python})
    assert result.exit_code == 3
    (torch,) = [b for b in result.backends if b.name == "torch"]
    assert (torch.status, torch.stage, torch.error) == ("failed", "start", f"--python torch={python}: no such file")
