"""A worker's job directory: job.json says which backend runs what (see ``entry.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ...spec.files import atomic_write


def make_job(job_dir: str | Path, backend: str, spec_path: str | Path, weights_path: str | Path,
             input_path: str | Path, layers: Sequence[str] | str = (), onnx_path: str | Path | None = None,
             export_onnx: str | Path | None = None, options: dict[str, Any] | None = None,
             env: dict[str, str] | None = None, backend_class: str | None = None, python: str | None = None,
             worker_code: str | Path | None = None) -> Path:
    """Create ``job_dir`` (parents included) with its job.json; return it.

    ``layers``: names, ``"all"``, or none. ``onnx_path``: the file an ONNX Runtime backend runs;
    ``export_onnx``: where a native backend writes its export; ``env``: extra environment;
    ``backend_class``: a ``module:Class`` target for a backend the registry does not name (a user's
    own model, ``compare --model``); ``python``: the interpreter that runs the worker (None: this one), with
    ``worker_code`` the folder of alexbench's code it imports (``bundle.py``; None: the installed one)."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "backend": backend,
        "backend_class": backend_class,
        "spec": str(Path(spec_path).resolve()),
        "weights": str(Path(weights_path).resolve()),
        "input": str(Path(input_path).resolve()),
        "layers": layers if layers == "all" else list(layers),
        "onnx_path": None if onnx_path is None else str(Path(onnx_path).resolve()),
        "export_onnx": None if export_onnx is None else str(Path(export_onnx).resolve()),
        "options": dict(options or {}),
        "env": dict(env or {}),
        "python": python,
        "worker_code": None if worker_code is None else str(Path(worker_code).resolve()),
    }
    atomic_write(job_dir / "job.json", json.dumps(job, indent=1))
    return job_dir
