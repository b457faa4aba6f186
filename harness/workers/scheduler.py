"""Run worker jobs side by side: each as soon as the jobs it depends on have finished, and never
more at once than the machine holds.

The bound (``worker_limit``): at most one worker per core plus one, because a worker spends its
first seconds importing its framework and reading files, not computing, so one more than the
cores keeps them busy (on 2 cores, 3 at once was the fastest alexnet compare; see
docs/benchmarks.md); and at most as many as MemAvailable (/proc/meminfo) holds at the caller's
estimate of one worker's peak, so a large spec cannot push the machine into swap or the OOM
killer. ``ALEXBENCH_WORKERS`` overrides the bound.

One thread drives every worker (``WorkerProcess.poll``), so callbacks run in the caller's thread,
in a definite order: a task's ``on_done`` runs before any task that depends on it is made, and an
interrupt or an exception from a callback stops every worker still running.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .runner import WORKER_MODULE, EventHandler, WorkerProcess, WorkerResult, stop_workers

WORKERS_ENV = "ALEXBENCH_WORKERS"
DEFAULT_WORKER_BYTES = 3 << 30  # the Keras worker on alexnet peaks at about 2.4 GiB


@dataclass
class Task:
    """One job to run. ``make_job`` is called when the task may start (its ``after`` tasks have
    finished and a slot is free) and returns the job directory, or None when there is nothing to
    run after all (e.g. the export it would run was not made)."""

    name: str
    make_job: Callable[[], Path | None]
    after: tuple[str, ...] = ()
    timeout_s: float = 600.0
    on_event: EventHandler | None = None
    entry_module: str = WORKER_MODULE


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use, not what the host has
    except AttributeError:
        return os.cpu_count() or 1


def mem_available() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where there is no such file."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_limit(worker_bytes: int = DEFAULT_WORKER_BYTES, cores: int | None = None,
                 available: int | None = None) -> int:
    """How many workers may run at once: cores + 1, no more than memory holds, at least 1."""
    override = os.environ.get(WORKERS_ENV, "").strip()
    if override:
        if not override.isdigit() or int(override) < 1:
            raise ValueError(f"{WORKERS_ENV} must be a whole number >= 1; it is '{override}'")
        return int(override)
    cores = cpu_cores() if cores is None else cores
    available = mem_available() if available is None else available
    limit = cores + 1
    if available is not None:
        limit = min(limit, available // max(1, worker_bytes))
    return max(1, limit)


def run_tasks(tasks: Iterable[Task], limit: int,
              on_start: Callable[[str, WorkerProcess], None] | None = None,
              on_done: Callable[[str, WorkerResult], None] | None = None) -> dict[str, WorkerResult | None]:
    """Run every task, at most ``limit`` at once, each after the tasks named in its ``after``;
    among those ready, earlier tasks start first. Returns name -> result (None where ``make_job``
    returned None), in the order the tasks finished. A failed task never stops another."""
    pending = list(tasks)
    names = [t.name for t in pending]
    if len(set(names)) != len(names):
        raise ValueError(f"task names repeat: {names}")
    for task in pending:
        unknown = [d for d in task.after if d not in names]
        if unknown:
            raise ValueError(f"task '{task.name}' waits for unknown tasks: {', '.join(unknown)}")
    limit = max(1, limit)
    wake = threading.Event()  # set by every worker's event reader: one sleep covers them all
    running: dict[str, WorkerProcess] = {}
    results: dict[str, WorkerResult | None] = {}
    try:
        while pending or running:
            started_any = True
            while started_any:
                started_any = False
                for task in pending:
                    if len(running) >= limit:
                        break
                    if all(d in results for d in task.after):
                        pending.remove(task)
                        started_any = True
                        job = task.make_job()
                        if job is None:
                            results[task.name] = None
                        else:
                            worker = running[task.name] = WorkerProcess(job, task.timeout_s, task.on_event,
                                                                        task.entry_module, wake)
                            worker.start()  # listed first: an interrupt right after the fork still stops it
                            if on_start is not None:
                                on_start(task.name, worker)
                        break  # the list changed: scan again from the top
            if not running:
                if pending:
                    raise ValueError(f"tasks wait for each other: {', '.join(t.name for t in pending)}")
                break
            wake.wait(min(w.wait_hint() for w in running.values()))
            wake.clear()  # before polling: an event that arrives during the polls sets it again
            for name, worker in list(running.items()):
                result = worker.poll()
                if result is not None:
                    del running[name]
                    results[name] = result
                    if on_done is not None:
                        on_done(name, result)
    finally:
        stop_workers(running.values())  # an interrupt or a failed callback leaves nothing running
    return results


def run_jobs(jobs: Iterable[str | Path], timeout_s: float, limit: int | None = None,
             on_event: EventHandler | None = None) -> list[WorkerResult]:
    """Independent jobs side by side (``run_workers`` without the waiting); results in job order."""
    jobs = [Path(j) for j in jobs]
    tasks = [Task(str(i), lambda job=job: job, timeout_s=timeout_s, on_event=on_event) for i, job in enumerate(jobs)]
    results = run_tasks(tasks, worker_limit() if limit is None else limit)
    return [results[str(i)] for i in range(len(jobs))]
