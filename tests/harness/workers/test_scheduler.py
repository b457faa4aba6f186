"""The scheduler with real worker processes: never more at once than the limit, side by side when
allowed, a task only after those it waits for, and nothing left running after an interrupt."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from alexbench.harness.workers.job import make_job
from alexbench.harness.workers.scheduler import WORKERS_ENV, Task, run_jobs, run_tasks, worker_limit

# Sleeps in its run stage and logs, from inside the worker, when that stage began and ended.
SLEEPER = '''
import json, time
import numpy as np
from alexbench.backends.base import Backend, RunOutput


class Sleeper(Backend):
    def build(self, spec, weights, onnx_path=None):
        self.spec = spec

    def run(self, x, layers=()):
        began = time.time()
        time.sleep(float(self.options["seconds"]))
        with open(self.options["log"], "w") as f:
            json.dump([began, time.time()], f)
        return RunOutput(np.zeros((x.shape[0], *self.spec.output_shape), dtype=np.float32))

    def param_count(self):
        return 0

    def layer_names(self):
        return []
'''


@pytest.fixture
def sleeper(make_plugin, job_files, tmp_path):
    """make(tag, seconds) -> a job directory whose worker sleeps that long in its run stage."""
    make_plugin({"alexbench_sleeper": SLEEPER}, {"sleeper": "alexbench_sleeper:Sleeper"})

    def make(tag: str, seconds: float) -> Path:
        return make_job(tmp_path / tag, "sleeper", job_files.spec_path, job_files.weights_path,
                        job_files.input_path, options={"seconds": seconds, "log": str(tmp_path / f"{tag}.log")})

    return make


def _interval(job_dir: Path) -> tuple[float, float]:
    return tuple(json.loads((job_dir.parent / f"{job_dir.name}.log").read_text()))


def test_never_more_than_the_limit_at_once_and_side_by_side_up_to_it(sleeper):
    jobs = {tag: sleeper(tag, 3.0) for tag in "abcd"}
    running, most = set(), 0

    def on_start(name, worker):
        nonlocal most
        running.add(name)
        most = max(most, len(running))

    started = time.perf_counter()
    results = run_tasks([Task(tag, lambda job=job: job, timeout_s=120) for tag, job in jobs.items()], limit=2,
                        on_start=on_start, on_done=lambda name, result: running.discard(name))
    wall = time.perf_counter() - started
    assert all(r.status == "ok" for r in results.values()), [r.stderr_tail for r in results.values()]
    assert most == 2
    # From the workers' own clocks: at no instant were three of them in their run stage.
    spans = [_interval(job) for job in jobs.values()]
    for t, _ in spans:
        assert sum(1 for a, b in spans if a <= t < b) <= 2
    assert any(a < t < b for t, _ in spans for a, b in spans), "no two workers ever ran at once"
    assert wall < 4 * 3.0  # one after another would take at least 12 s of sleep alone


def test_a_task_starts_only_after_those_it_waits_for(sleeper):
    order = []
    jobs = {"native": sleeper("native", 2.0), "onnx": sleeper("onnx", 0.0), "free": sleeper("free", 0.0)}

    def make(tag):
        order.append(f"make {tag}")
        return jobs[tag]

    # Listed first and the limit is free, yet "onnx" must wait for "native" to end; "free" need not.
    tasks = [Task("onnx", lambda: make("onnx"), after=("native",), timeout_s=120),
             Task("native", lambda: make("native"), timeout_s=120),
             Task("free", lambda: make("free"), timeout_s=120)]
    results = run_tasks(tasks, limit=3, on_done=lambda name, result: order.append(f"done {name}"))
    assert all(r.status == "ok" for r in results.values())
    assert order.index("make onnx") == order.index("done native") + 1
    assert order.index("make free") < order.index("done native")
    assert _interval(jobs["onnx"])[0] >= _interval(jobs["native"])[1]


def test_a_task_with_nothing_to_run_still_releases_those_waiting_for_it(sleeper):
    job = sleeper("after", 0.0)
    results = run_tasks([Task("skipped", lambda: None), Task("after", lambda: job, after=("skipped",))], limit=1)
    assert results["skipped"] is None and results["after"].status == "ok"


def test_run_jobs_keeps_the_job_order(sleeper):
    slow, fast = sleeper("slow", 1.5), sleeper("fast", 0.0)
    results = run_jobs([slow, fast], timeout_s=120, limit=2)
    assert [r.job_dir for r in results] == [slow, fast] and all(r.ok for r in results)


def test_an_interrupt_stops_every_running_worker(sleeper, processes):
    pids = {}

    def on_event(event):
        if event.get("stage") == "run":
            pids[event["backend"] + str(event["pid"])] = event["pid"]
            if len(pids) == 2:
                raise KeyboardInterrupt

    tasks = [Task(tag, lambda tag=tag: sleeper(tag, 600.0), timeout_s=120, on_event=on_event) for tag in "ab"]
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_tasks(tasks, limit=2)
    assert time.perf_counter() - started < 60
    assert len(pids) == 2
    for pid in pids.values():
        assert not processes.alive(pid) and processes.group_alive(pid) == []


def test_bad_dependencies_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="unknown tasks: nowhere"):
        run_tasks([Task("a", lambda: None, after=("nowhere",))], limit=1)
    with pytest.raises(ValueError, match="wait for each other"):
        run_tasks([Task("a", lambda: None, after=("b",)), Task("b", lambda: None, after=("a",))], limit=1)


def test_worker_limit_rule(monkeypatch):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    gib = 1 << 30
    assert worker_limit(3 * gib, cores=2, available=64 * gib) == 3  # cores + 1
    assert worker_limit(3 * gib, cores=16, available=10 * gib) == 3  # what memory holds
    assert worker_limit(3 * gib, cores=2, available=1 * gib) == 1  # never none
    monkeypatch.setenv(WORKERS_ENV, "1")
    assert worker_limit(3 * gib, cores=8, available=64 * gib) == 1
