"""Whatever breaks in one backend, the others still compare, the cause is reported, nothing is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexbench.harness.cli.main import main
from alexbench.harness.results.document import read_results

SPEC = str(Path(__file__).parents[2] / "specs" / "ops-conv-groups.yaml")


def compare(tmp_path, capsys, backends: str, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / "results.json"
    code = main(["compare", "--spec", SPEC, "--backends", backends, "--no-onnx", "--batch", "2",
                 "--json", str(out), "--timeout", "20", *extra])
    captured = capsys.readouterr()
    return code, read_results(out), captured.out


def entry(doc: dict, name: str) -> dict:
    return next(e for e in doc["backends"] if e["name"] == name)


@pytest.mark.parametrize("kind, cause", [
    ("segfault", "worker crashed (SIGSEGV) during run"),
    ("abort", "worker crashed (SIGABRT) during run"),
    ("oom", "Unable to allocate 8.00 TiB"),
])
def test_crashing_backend_is_reported_and_others_compare(tmp_path, capsys, faulty_backends, kind, cause):
    code, doc, out = compare(tmp_path, capsys, f"faulty-{kind},torch")
    assert code == 3
    bad = entry(doc, f"faulty-{kind}")
    assert bad["status"] == "failed" and bad["stage"] == "run" and cause in bad["error"]
    assert entry(doc, "torch")["status"] == "ok" and entry(doc, "reference")["status"] == "ok"
    assert f"faulty-{kind}: failed during run" in out
    if kind != "oom":
        assert bad["stderr_tail"], "a crash keeps the worker's last words"


def test_hanging_backend_times_out_and_leaves_no_process(tmp_path, capsys, faulty_backends, monkeypatch, processes):
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("ALEXBENCH_TEST_PID_FILE", str(pid_file))
    started = time.monotonic()
    # The timeout applies to every worker: the one that finishes beside the hang is the float64
    # reference, which needs no framework and so no start-up time on a loaded machine.
    code, doc, _ = compare(tmp_path, capsys, "faulty-hang", "--timeout", "4")
    assert time.monotonic() - started < 60
    assert code == 3
    assert entry(doc, "faulty-hang")["error"].startswith("timed out after 4 s")
    assert entry(doc, "reference")["status"] == "ok"
    assert not processes.alive(int(pid_file.read_text()))


def test_garbage_on_stdout_does_not_confuse_the_harness(tmp_path, capsys, faulty_backends):
    code, doc, _ = compare(tmp_path, capsys, "faulty-garbage")
    assert code == 0, doc["verdict"]
    assert entry(doc, "faulty-garbage")["status"] == "ok"


def test_wrong_shape_is_a_mismatch(tmp_path, capsys, faulty_backends):
    code, doc, out = compare(tmp_path, capsys, "faulty-wrong-shape,torch")
    assert code == 1
    bad = entry(doc, "faulty-wrong-shape")
    assert bad["status"] == "mismatch" and bad["shape_ok"] is False
    assert "output shape 2x7, spec says N x 10" in out


def test_deliberately_wrong_backend_names_first_diverging_layer(tmp_path, capsys, faulty_backends):
    code, doc, out = compare(tmp_path, capsys, "torch,faulty-permuted-fc")
    assert code == 1
    bad = entry(doc, "faulty-permuted-fc")
    assert bad["status"] == "mismatch"
    assert bad["first_divergent_layer"]["name"] == "fc1"
    assert [row["name"] for row in bad["layers"] if not row["ok"]][0] == "fc1"
    assert "faulty-permuted-fc: first diverges at layer 'fc1'" in out
    assert entry(doc, "torch")["status"] == "ok"


def test_missing_framework_exits_3_with_install_hint(tmp_path, capsys, faulty_backends):
    code, doc, out = compare(tmp_path, capsys, "faulty-needs-absent,torch")
    assert code == 3
    bad = entry(doc, "faulty-needs-absent")
    assert bad["status"] == "unavailable"
    assert bad["error"] == ("backend 'faulty-needs-absent' needs alexbench_absent_framework: "
                            "pip install 'alexbench[absent]'")
    assert entry(doc, "torch")["status"] == "ok"
    assert "PASS" not in out and "failed: faulty-needs-absent" in out


def test_ctrl_c_stops_every_worker_and_exits_130(tmp_path, faulty_backends, processes):
    pid_file = tmp_path / "pid"
    env = dict(os.environ, ALEXBENCH_TEST_PID_FILE=str(pid_file), TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "alexbench", "compare", "--spec", SPEC, "--backends",
                             "faulty-hang", "--no-onnx", "--batch", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), "the hanging worker never started"
    worker = int(pid_file.read_text())
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 15
    assert "interrupted" in err and "Traceback" not in err
    assert not processes.alive(worker)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("alexbench-")], "temporary run dir left behind"


def test_results_are_deterministic(tmp_path, capsys):
    docs = []
    for run in ("a", "b"):
        code, doc, _ = compare(tmp_path / run if (tmp_path / run).mkdir() is None else None, capsys, "torch,keras")
        assert code == 0
        docs.append(_without_volatile(doc))
    assert json.dumps(docs[0], sort_keys=True) == json.dumps(docs[1], sort_keys=True)


def _without_volatile(doc: dict) -> dict:
    """Timings, timestamps and process ids change from run to run; nothing else may."""
    doc = json.loads(json.dumps(doc))
    doc.pop("created")
    for e in doc["backends"]:
        e.pop("timings_s", None)
        (e.get("environment") or {}).pop("pid", None)
    return doc
