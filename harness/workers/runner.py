"""The harness side of process isolation: run one backend job in a fresh interpreter.

Each worker (``entry.py``) gets its own process group, so a timeout or Ctrl-C kills it and
everything it started; its stdout carries JSON progress events, its stderr goes to
JOB_DIR/stderr.log. It runs in this interpreter, or in the one job.json names (``compare --python``:
another environment, importing alexbench from the job's ``worker_code`` folder). A worker that
exits without result.json (a signal, an interpreter failure) is reported as "crashed" with the
signal's name and the tail of its stderr.

``WorkerProcess`` is polled rather than waited on, so that one thread can drive several workers
at once (``scheduler.py``); ``run_worker`` drives one to its end.

The caller owns the run directory; the runner never leaves a process behind.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

EventHandler = Callable[[dict[str, Any]], None]

STDERR_TAIL_LINES = 40
TERM_GRACE_S = 2.0  # between SIGTERM and SIGKILL
EXIT_GRACE_S = 0.5  # how long a child the worker left may hold its stdout open after it exited
POLL_S = 0.2  # the longest wait between two looks at a worker that sends no events
WORKER_MODULE = "alexbench.harness.workers.entry"


@dataclass
class WorkerResult:
    backend: str
    status: str  # ok | error | unavailable | crashed | timeout
    stage: str | None  # the stage that failed, or the last one announced before a crash/timeout
    error: str | None
    stderr_tail: str
    returncode: int | None
    signal: str | None  # e.g. "SIGSEGV", when the worker died of a signal
    result: dict[str, Any] | None  # the parsed result.json
    elapsed_s: float
    job_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _stderr_tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _read_events(stream, out: queue.Queue, wake: threading.Event) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").strip()
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        out.put(event if isinstance(event, dict) and "event" in event else {"event": "output", "line": line})
        wake.set()
    out.put(None)  # end of stream
    wake.set()


class WorkerProcess:
    """One worker: ``start()``, then ``poll()`` until it returns the result; ``stop_workers`` on
    the way out whatever happened.

    ``on_event`` gets each progress event (a dict with "event", plus "backend" and "pid") in the
    thread that polls. ``wake`` is set whenever an event arrives, so a poller can sleep on it;
    several workers may share one."""

    def __init__(self, job_dir: str | Path, timeout_s: float, on_event: EventHandler | None = None,
                 entry_module: str = WORKER_MODULE, wake: threading.Event | None = None):
        self.job_dir = Path(job_dir)
        job = json.loads((self.job_dir / "job.json").read_text())
        self.backend = job["backend"]
        self.python = job.get("python") or sys.executable  # another environment's (compare --python)
        self.worker_code = job.get("worker_code")  # alexbench's code for an environment without it
        self.timeout_s = timeout_s
        self.on_event = on_event
        self.entry_module = entry_module
        self.wake = wake or threading.Event()
        self.proc: subprocess.Popen | None = None
        self.result: WorkerResult | None = None
        self._events: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None
        self._stdout_closed = False
        self._stopped = False
        self._exited_at: float | None = None
        self._last_stage: str | None = None
        self._started = 0.0

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> WorkerProcess:
        (self.job_dir / "result.json").unlink(missing_ok=True)  # never read a previous run's result
        self._started = time.perf_counter()
        with open(self.job_dir / "stderr.log", "wb") as stderr:
            self.proc = subprocess.Popen([self.python, "-m", self.entry_module, str(self.job_dir)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                         env=self._env(), start_new_session=True)  # the worker leads its own group
        self._reader = threading.Thread(target=_read_events, args=(self.proc.stdout, self._events, self.wake),
                                        daemon=True)
        self._reader.start()
        return self

    def _env(self) -> dict[str, str] | None:
        """The worker's environment: this one, with the travelling code first on PYTHONPATH if any."""
        if self.worker_code is None:
            return None
        paths = [self.worker_code, os.environ.get("PYTHONPATH")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}

    def wait_hint(self) -> float:
        """How long a poller may sleep (unless woken) before this worker needs another look."""
        return max(0.0, min(POLL_S, self._started + self.timeout_s - time.perf_counter()))

    def poll(self) -> WorkerResult | None:
        """Deliver the events that arrived; return the result once the worker has ended or run out
        of time (its group is killed then), else None."""
        if self.result is not None:
            return self.result
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event is None:  # stdout closed: the worker is exiting
                self._stdout_closed = True
                continue
            if event.get("event") == "stage":
                self._last_stage = event.get("stage")
            if self.on_event is not None:
                self.on_event({**event, "backend": self.backend, "pid": self.proc.pid})
        now = time.perf_counter()
        timed_out = now >= self._started + self.timeout_s
        if not timed_out:
            if self.proc.poll() is None:
                return None
            # Normally stdout closes when the worker exits; a child it left may hold it open.
            self._exited_at = self._exited_at or now
            if not self._stdout_closed and now - self._exited_at <= EXIT_GRACE_S:
                return None
        stop_workers([self])
        self.result = _judge(self.backend, self.job_dir, self.proc.returncode, timed_out, self._last_stage,
                             time.perf_counter() - self._started, self.timeout_s)
        return self.result


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group's id is the worker's pid
    except ProcessLookupError:
        pass


def stop_workers(workers: Iterable[WorkerProcess]) -> None:
    """Kill every started worker's whole group (a worker that exited may have left children in it):
    SIGTERM to all at once, one shared grace period, then SIGKILL to whatever is left; reap."""
    started = [w for w in workers if w.proc is not None and not w._stopped]
    for w in started:
        _signal_group(w.proc, signal.SIGTERM)
    deadline = time.perf_counter() + TERM_GRACE_S
    for w in started:
        try:
            w.proc.wait(max(0.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            pass
    for w in started:
        _signal_group(w.proc, signal.SIGKILL)
        w.proc.wait()
        w._stopped = True
        if w._reader is not None:
            w._reader.join(timeout=1.0)
        w.proc.stdout.close()


def run_worker(job_dir: str | Path, timeout_s: float, on_event: EventHandler | None = None,
               entry_module: str = WORKER_MODULE) -> WorkerResult:
    """Run the job in ``job_dir`` in a fresh interpreter and report how it ended.

    ``on_event`` gets each progress event (a dict with "event", plus "backend"), in this thread.
    ``entry_module``: the worker's module (``python -m``); bench jobs use ``alexbench.harness.workers.bench_entry``,
    which speaks the same job/event/result protocol."""
    worker = WorkerProcess(job_dir, timeout_s, on_event, entry_module)
    try:
        worker.start()
        while (result := worker.poll()) is None:
            worker.wake.wait(worker.wait_hint())
            worker.wake.clear()
    finally:
        stop_workers([worker])  # on an interrupt or an exception from on_event: nothing left behind
    return result


def _judge(backend: str, job_dir: Path, returncode: int, timed_out: bool, last_stage: str | None,
           elapsed: float, timeout_s: float) -> WorkerResult:
    tail = _stderr_tail(job_dir / "stderr.log")
    sig = signal.Signals(-returncode).name if returncode is not None and returncode < 0 else None
    if timed_out:
        return WorkerResult(backend, "timeout", last_stage, f"no result within {timeout_s:g} s", tail,
                            returncode, sig, None, elapsed, job_dir)
    result = None
    try:
        result = json.loads((job_dir / "result.json").read_text())
    except (OSError, ValueError):
        pass
    if sig is not None or result is None:
        why = f"killed by {sig}" if sig else f"exited with code {returncode} without writing result.json"
        return WorkerResult(backend, "crashed", last_stage, f"worker {why}", tail, returncode, sig, result,
                            elapsed, job_dir)
    return WorkerResult(backend, result["status"], result.get("stage"), result.get("error"), tail, returncode,
                        None, result, elapsed, job_dir)


def run_workers(jobs: Iterable[str | Path], timeout_s: float,
                on_event: EventHandler | None = None) -> list[WorkerResult]:
    """Run jobs one at a time, in order; a failed, crashed or timed-out job never stops the ones
    after it. (``scheduler.run_jobs`` runs independent jobs side by side.)"""
    return [run_worker(job, timeout_s, on_event) for job in jobs]
