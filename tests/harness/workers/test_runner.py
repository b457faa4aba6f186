"""Process isolation with real workers: real backends, and a plugin that fails, crashes, hangs."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from alexbench.harness.compare.metrics import PROFILES, REL_L2_LIMIT, agreement
from alexbench.harness.workers.job import make_job
from alexbench.harness.workers.runner import run_worker, run_workers


def _job(root: Path, files, backend: str, **kwargs) -> Path:
    return make_job(root / backend, backend, files.spec_path, files.weights_path, files.input_path,
                    kwargs.pop("layers", "all"), **kwargs)


def test_torch_and_reference_workers_agree_and_export(job_files, tmp_path):
    onnx_file = tmp_path / "torch.onnx"
    jobs = [_job(tmp_path, job_files, "torch", export_onnx=onnx_file), _job(tmp_path, job_files, "reference")]
    events = []
    torch_run, ref_run = run_workers(jobs, timeout_s=300, on_event=events.append)

    for run in (torch_run, ref_run):
        assert run.status == "ok", (run.error, run.stderr_tail)
        r = run.result
        assert r["output_shape"] == [2, *job_files.spec.output_shape]
        assert set(r["layers"]) == {layer.name for layer in job_files.spec.layers}
        assert r["missing_layers"] == []
        assert set(r["timings_s"]) >= {"import", "build", "run"}
    assert torch_run.result["param_count"] == job_files.spec.param_count
    assert torch_run.result["environment"]["tf32_matmul"] is False
    assert torch_run.result["export"]["exporter"].startswith("torch.onnx.export(dynamo=True)")
    assert onnx_file.stat().st_size > 0
    assert [e["stage"] for e in events if e["backend"] == "torch" and e["event"] == "stage"] == [
        "import", "build", "export", "run"]

    ref = np.load(ref_run.job_dir / ref_run.result["output"])
    got = np.load(torch_run.job_dir / torch_run.result["output"])
    assert got.dtype == np.float32
    a = agreement(ref, got, PROFILES["default"], REL_L2_LIMIT["default"])
    assert a.ok, a.problem
    conv2 = np.load(torch_run.job_dir / torch_run.result["layers"]["conv2"])
    assert conv2.shape == (2, *job_files.spec.layer("conv2").output_shape)  # NCHW


def test_requested_layers_unknown_names_are_reported_missing(job_files, tmp_path):
    run = run_worker(_job(tmp_path, job_files, "torch", layers=["conv2", "no_such_layer"]), timeout_s=120)
    assert run.status == "ok", run.stderr_tail
    assert list(run.result["layers"]) == ["conv2"]
    assert run.result["missing_layers"] == ["no_such_layer"]


def test_null_backend_returns_zeros_of_the_output_shape(job_files, tmp_path):
    run = run_worker(_job(tmp_path, job_files, "null"), timeout_s=60)
    assert run.status == "ok", run.stderr_tail
    out = np.load(run.job_dir / run.result["output"])
    assert out.shape == (2, *job_files.spec.output_shape) and not out.any()


def test_failed_export_is_recorded_and_the_native_run_goes_on(job_files, tmp_path):
    # The reference has no ONNX export: the export stage fails, the run still completes, and the
    # harness reports the failure against the ONNX backend that would have run the file.
    run = run_worker(_job(tmp_path, job_files, "null", export_onnx=str(tmp_path / "x.onnx")), timeout_s=60)
    assert run.status == "ok", run.stderr_tail
    assert run.result["export_error"] == "ExportUnsupported: backend 'null' has no ONNX export"
    assert run.result["output"] and not (tmp_path / "x.onnx").exists()


def test_wrong_input_shape_is_an_error_at_run(job_files, tmp_path):
    np.save(job_files.input_path, np.zeros((2, 3, 19, 23), np.float32))
    run = run_worker(_job(tmp_path, job_files, "null"), timeout_s=60)
    assert (run.status, run.stage, run.returncode) == ("error", "run", 1)
    assert "float32 [2, 3, 19, 23]" in run.error and "expects float32 [N, 4, 19, 23]" in run.error


def test_failure_at_build_reports_the_stage_and_error(job_files, tmp_path, plugin):
    run = run_worker(_job(tmp_path, job_files, "planted", options={"behave": "fail_build"}), timeout_s=60)
    assert (run.status, run.stage, run.returncode) == ("error", "build", 1)
    assert run.error == "planted failure while building"
    assert run.result["error_type"] == "ValueError"
    assert "planted failure while building" in run.stderr_tail  # the traceback


def test_missing_framework_is_unavailable_with_the_install_hint(job_files, tmp_path, plugin):
    declared, imported = run_workers([_job(tmp_path, job_files, "planted-missing"),
                                      _job(tmp_path, job_files, "planted-import")], timeout_s=60)
    assert (declared.status, declared.stage) == ("unavailable", "import")
    assert declared.error == ("backend 'planted-missing' needs alexbench_absent_framework: "
                              "pip install 'alexbench[absent]'")
    # A module that imports its framework at the top (as a framework package's lowering module does) gets the same line.
    assert (imported.status, imported.stage) == ("unavailable", "import")
    assert imported.error == ("backend 'planted-import' needs alexbench_absent_framework: "
                              "pip install alexbench_absent_framework")


def test_segfault_is_reported_as_crashed_with_stderr_tail(job_files, tmp_path, plugin):
    run = run_worker(_job(tmp_path, job_files, "planted", options={"behave": "segfault"}), timeout_s=60)
    assert (run.status, run.signal, run.stage) == ("crashed", "SIGSEGV", "run")
    assert run.returncode == -signal.SIGSEGV and run.result is None
    assert "planted: about to read address 0" in run.stderr_tail
    assert "Segmentation fault" in run.stderr_tail  # faulthandler's Python traceback


def test_hang_times_out_and_leaves_no_process(job_files, tmp_path, plugin, processes):
    pid_file = tmp_path / "pids"
    job = _job(tmp_path, job_files, "planted", options={"behave": "hang", "pid_file": str(pid_file)})
    started = time.perf_counter()
    run = run_worker(job, timeout_s=3)
    elapsed = time.perf_counter() - started
    assert (run.status, run.stage) == ("timeout", "run")
    assert elapsed < 3 + 2 + 3  # the timeout, SIGTERM's grace, and slack: both ignore SIGTERM
    worker_pid, child_pid = map(int, pid_file.read_text().split())
    assert not processes.alive(worker_pid) and not processes.alive(child_pid)
    assert processes.group_alive(worker_pid) == []  # (os.killpg(pgid, 0) would still see unreaped zombies)


def test_killed_worker_is_crashed_and_the_next_job_still_runs(job_files, plugin):
    with tempfile.TemporaryDirectory() as run_dir:
        run_dir = Path(run_dir)
        jobs = [_job(run_dir, job_files, "planted", options={"behave": "sleep"}), _job(run_dir, job_files, "torch")]

        def kill_mid_run(event):
            if event["backend"] == "planted" and event.get("stage") == "run":
                os.kill(event["pid"], signal.SIGKILL)

        killed, torch_run = run_workers(jobs, timeout_s=120, on_event=kill_mid_run)
        assert (killed.status, killed.signal, killed.stage) == ("crashed", "SIGKILL", "run")
        assert torch_run.status == "ok", torch_run.stderr_tail
        assert np.load(torch_run.job_dir / torch_run.result["output"]).shape == (2, 10)
    assert not run_dir.exists()


def test_interrupt_in_the_harness_kills_the_worker_and_propagates(job_files, tmp_path, plugin, processes):
    seen = {}

    def interrupt(event):
        if event.get("stage") == "run":
            seen["pid"] = event["pid"]
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_worker(_job(tmp_path, job_files, "planted", options={"behave": "sleep"}), 120, on_event=interrupt)
    assert not processes.alive(seen["pid"]) and processes.group_alive(seen["pid"]) == []
