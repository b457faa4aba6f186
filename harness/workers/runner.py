"""The harness side of process isolation: run one backend job in a fresh interpreter.

Each worker (``worker.py``) gets its own process group, so a timeout or Ctrl-C kills it and
everything it started; its stdout carries JSON progress events, its stderr goes to
JOB_DIR/stderr.log. A worker that exits without result.json (a signal, an interpreter
failure) is reported as "crashed" with the signal's name and the tail of its stderr.

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

# Process groups of workers still running, so that an interrupt can kill them all.
_LIVE_GROUPS: set[int] = set()


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



def _kill_group(pgid: int, proc: subprocess.Popen) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left of it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGTERM:
            try:
                proc.wait(TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
    proc.wait()


def _stderr_tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _read_events(stream, out: queue.Queue) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").strip()
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        out.put(event if isinstance(event, dict) and "event" in event else {"event": "output", "line": line})
    out.put(None)  # end of stream


def run_worker(job_dir: str | Path, timeout_s: float, on_event: EventHandler | None = None,
               entry_module: str = "alexbench.harness.workers.entry") -> WorkerResult:
    """Run the job in ``job_dir`` in a fresh interpreter and report how it ended.

    ``on_event`` gets each progress event (a dict with "event", plus "backend"), in this thread.
    ``entry_module``: the worker's module (``python -m``); bench jobs use ``alexbench.harness.workers.bench_entry``,
    which speaks the same job/event/result protocol."""
    job_dir = Path(job_dir)
    backend = json.loads((job_dir / "job.json").read_text())["backend"]
    (job_dir / "result.json").unlink(missing_ok=True)  # never read a previous run's result
    stderr_path = job_dir / "stderr.log"
    events: queue.Queue = queue.Queue()
    last_stage: str | None = None
    timed_out = False
    start = time.perf_counter()
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", entry_module, str(job_dir)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                start_new_session=True)
    pgid = proc.pid  # start_new_session: the worker leads its own group
    _LIVE_GROUPS.add(pgid)
    reader = threading.Thread(target=_read_events, args=(proc.stdout, events), daemon=True)
    reader.start()
    try:
        deadline = start + timeout_s
        exited_at = None
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                timed_out = True
                break
            try:
                event = events.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                # Normally stdout closes when the worker exits; a child it left may hold it open.
                if proc.poll() is not None:
                    exited_at = exited_at or time.perf_counter()
                    if time.perf_counter() - exited_at > 0.5:
                        break
                continue
            if event is None:  # stdout closed: the worker is exiting
                break
            if event.get("event") == "stage":
                last_stage = event.get("stage")
            if on_event is not None:
                on_event({**event, "backend": backend, "pid": proc.pid})
        if not timed_out:
            try:
                proc.wait(max(0.0, deadline - time.perf_counter()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        # Always: the worker itself (on timeout or interrupt) and anything it left in its group.
        _kill_group(pgid, proc)
        _LIVE_GROUPS.discard(pgid)
        reader.join(timeout=1.0)
        proc.stdout.close()
    elapsed = time.perf_counter() - start
    return _judge(backend, job_dir, proc.returncode, timed_out, last_stage, elapsed, timeout_s)


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
    """Run jobs one at a time (frameworks' thread pools must not compete for the cores), in
    order; a failed, crashed or timed-out job never stops the ones after it."""
    return [run_worker(job, timeout_s, on_event) for job in jobs]


def kill_live_workers() -> None:
    """Kill every worker group still running (e.g. from a signal handler)."""
    for pgid in list(_LIVE_GROUPS):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _LIVE_GROUPS.discard(pgid)
