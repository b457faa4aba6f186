"""Another Python environment for a backend (``compare --python BACKEND=PYTHON``): the values, and
the check of each interpreter before any work.

A worker needs Python >= 3.10, NumPy and its backend's framework there, nothing else: alexbench's
own code travels with the job (``bundle.py``). An interpreter that cannot run the worker is refused
with one line, which its backend's entry carries (the run exits 3); the other backends run as usual.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ...backends.registry import load_backend_class
from ..errors import UsageError
from . import interpreter_facts
from .interpreter_facts import MIN_PYTHON

PROBE_TIMEOUT_S = 60.0  # a cold interpreter on a network file system can take a while to start


class InterpreterRefused(Exception):
    """The interpreter cannot run the backend's worker. ``status``: the backend's entry, "unavailable"
    when a package is missing there (as for a framework missing here), else "failed"."""

    def __init__(self, message: str, status: str = "failed"):
        super().__init__(message)
        self.status = status


def parse_python(values: Iterable[str]) -> dict[str, str]:
    """``BACKEND=PYTHON`` values (``--python``, repeatable) -> backend -> interpreter path."""
    found: dict[str, str] = {}
    for value in values:
        backend, sep, python = value.partition("=")
        backend, python = backend.strip(), python.strip()
        if not sep or not backend or not python:
            raise UsageError(f"--python: expected BACKEND=PATH (e.g. torch=/opt/torch-venv/bin/python); "
                             f"received {value!r}")
        if backend in found and found[backend] != python:
            raise UsageError(f"--python: two interpreters for '{backend}' ({found[backend]}, {python}); give one")
        found[backend] = python
    return found


def check_backends(python: Mapping[str, str], backends: Sequence[str]) -> None:
    """Each named backend must be one this run runs (a misspelled or absent one would be ignored)."""
    for backend, path in python.items():
        if backend not in backends:
            raise UsageError(f"--python {backend}={path}: '{backend}' is not a backend of this run; "
                             f"its backends are {', '.join(backends)}")


def probe_backends(python: Mapping[str, str],
                   names: Iterable[str]) -> tuple[dict[str, dict], dict[str, InterpreterRefused]]:
    """Probe the interpreter ``python`` names for each of ``names``: the facts of those that can run their
    worker (exporters' packages looked for, ``lacking``), the refusals of those that cannot."""
    facts: dict[str, dict] = {}
    refused: dict[str, InterpreterRefused] = {}
    for name in (n for n in names if n in python):
        try:
            cls = load_backend_class(name)
            # The exporter's packages are distributions named as their modules (torch, onnx, tf2onnx, ...).
            needs, wants = [module for module, _ in cls.needs], list(cls.onnx_export_packages)
        except Exception:  # a plugin that cannot be imported here: its worker reports why
            needs, wants = [], []
        try:
            facts[name] = probe(name, python[name], needs, wants)
        except InterpreterRefused as exc:
            refused[name] = exc
    return facts, refused


def probe(backend: str, python: str, needs: Sequence[str], wants: Sequence[str] = ()) -> dict[str, Any]:
    """What ``python`` is (``interpreter_facts.describe``), checked: it runs, is Python >= 3.10 and
    finds NumPy and every module of ``needs``. ``wants``: modules only looked for (an exporter's), whose
    absence the caller handles (``lacking``). Raises InterpreterRefused with the one line to show."""
    label = f"--python {backend}={python}"
    path = Path(python)
    if not path.exists():
        raise InterpreterRefused(f"{label}: no such file")
    if path.is_dir():
        raise InterpreterRefused(f"{label}: a folder, not an interpreter (e.g. {path / 'bin' / 'python'})")
    if not os.access(path, os.X_OK):
        raise InterpreterRefused(f"{label}: not executable")
    modules = list(dict.fromkeys(["numpy", *needs, *wants]))
    source = Path(interpreter_facts.__file__).read_text(encoding="utf-8")
    try:
        proc = subprocess.run([python, "-c", source, json.dumps(modules)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InterpreterRefused(f"{label}: no answer within {PROBE_TIMEOUT_S:g} s") from None
    except OSError as exc:  # e.g. a file that is no program (exec format error)
        raise InterpreterRefused(f"{label}: cannot be run: {exc.strerror}") from None
    if proc.returncode != 0:
        how = f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0 else f"exit {proc.returncode}"
        last = _last_line(proc.stderr)
        raise InterpreterRefused(f"{label}: the interpreter crashed ({how})" + (f": {last}" if last else ""))
    facts = _facts(proc.stdout)
    if facts is None:
        raise InterpreterRefused(f"{label}: did not answer like a Python interpreter (it printed "
                                 f"{_last_line(proc.stdout) or 'nothing'!r})")
    if tuple(int(v) for v in facts["version"].split(".")[:2]) < MIN_PYTHON:
        raise InterpreterRefused(f"{label}: is Python {facts['version']}; alexbench's worker needs Python >= "
                                 f"{'.'.join(map(str, MIN_PYTHON))}")
    missing = lacking(facts, [*needs, "numpy"])
    if missing:
        them = "it" if len(missing) == 1 else "them"
        raise InterpreterRefused(f"{label}: lacks {' and '.join(missing)}: install {them} there, e.g. "
                                 f"{python} -m pip install {' '.join(missing)}", "unavailable")
    return facts


def export_gap(source: str | None, facts: Mapping[str, dict], python: Mapping[str, str]) -> str | None:
    """Why the ONNX export of ``source`` cannot be made: ``source`` runs in another interpreter (``facts``:
    ``probe_backends``'), which lacks the exporter's packages; None when it can, or runs here."""
    if source not in facts:
        return None
    missing = lacking(facts[source], load_backend_class(source).onnx_export_packages)
    if not missing:
        return None
    return (f"runs the ONNX export of '{source}', whose interpreter {python[source]} lacks {' and '.join(missing)}: "
            f"install them there to run it, or give --no-onnx")


def lacking(facts: Mapping[str, Any], modules: Iterable[str]) -> list[str]:
    """The ``modules`` a probed interpreter did not find, in the order given."""
    return [m for m in modules if m in facts.get("missing", ())]


def _facts(stdout: str) -> dict[str, Any] | None:
    try:
        facts = json.loads(_last_line(stdout))  # the last line: a sitecustomize may print before it
    except ValueError:
        return None
    ok = isinstance(facts, dict) and isinstance(facts.get("version"), str) and "executable" in facts
    return facts if ok else None


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
