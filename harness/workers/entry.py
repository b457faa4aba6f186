"""One backend, one job, one fresh interpreter: ``python -m alexbench.harness.workers.entry JOB_DIR``.

JOB_DIR/job.json says what to do::

    {"backend": "torch", "spec": "spec.yaml", "weights": "w.safetensors", "input": "x.npy",
     "layers": ["conv1", ...] | "all" | [], "onnx_path": null, "export_onnx": null,
     "options": {}, "env": {}, "python": null, "worker_code": null}

(``python``, ``worker_code``: read by the harness, ``runner.py``: the interpreter this runs in and the
folder it imports alexbench from, for ``compare --python``.)

The worker writes JOB_DIR/out/output.npy, JOB_DIR/out/layers/<name>.npy and, last and
atomically, JOB_DIR/result.json (see ``_new_result`` for its fields); with options["train"] it runs
SGD steps instead (``training.py``). Progress goes to stdout as JSON lines (``{"event": "stage",
"stage": "build"}``); anything else a library prints to stdout is diverted to stderr so it cannot
corrupt that stream. Exit code: 0 ok, 1 a handled
failure (status "error" or "unavailable"); a crash or a kill leaves no result.json and the
harness (``runner.py``) reports it from the exit signal and stderr.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from ...backends.base import OPSET, BackendUnavailable, RunOutput
from ...spec.files import atomic_write
from .interpreter_facts import describe
from .training import run_training


class StageFailed(Exception):
    def __init__(self, stage: str, status: str, error: BaseException):
        super().__init__(str(error))
        self.stage, self.status, self.error = stage, status, error


def _new_result() -> dict[str, Any]:
    return {"status": "ok", "stage": None, "error": None, "error_type": None, "param_count": None,
            "param_note": None, "output": None, "output_shape": None, "layers": {}, "missing_layers": [],
            "dtypes": {},
            "environment": {}, "timings_s": {}, "export": None, "pid": os.getpid()}


def _events_stream() -> IO[str]:
    """Keep the real stdout for events only; route fd 1 (Python's and C libraries' prints) to stderr."""
    sys.stdout.flush()
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return events


def _resolve(job_dir: Path, path: str | None) -> Path | None:
    return None if path is None else (job_dir / path if not os.path.isabs(path) else Path(path))


class Worker:
    def __init__(self, job_dir: Path, events: IO[str]):
        self.job_dir = job_dir
        self.events = events
        self.result = _new_result()

    def emit(self, event: str, **fields: Any) -> None:
        self.events.write(json.dumps({"event": event, **fields}) + "\n")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage, announce it, and turn its exception into StageFailed."""
        self.emit("stage", stage=name)
        start = time.perf_counter()
        try:
            yield
        except BackendUnavailable as exc:
            raise StageFailed(name, "unavailable", exc) from exc
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            raise StageFailed(name, "error", exc) from exc
        finally:
            self.result["timings_s"][name] = round(time.perf_counter() - start, 6)

    def run(self) -> int:
        try:
            job = json.loads((self.job_dir / "job.json").read_text())
            self.emit("start", backend=job.get("backend"), pid=os.getpid())
            self._do(job)
        except StageFailed as failed:
            self.result.update(status=failed.status, stage=failed.stage, error=str(failed.error),
                               error_type=type(failed.error).__name__)
        except Exception as exc:  # job.json unreadable: not a stage of the backend
            traceback.print_exc(file=sys.stderr)
            self.result.update(status="error", stage=None, error=f"bad job: {exc}", error_type=type(exc).__name__)
        atomic_write(self.job_dir / "result.json", json.dumps(self.result, indent=1, default=str))
        self.emit("done", status=self.result["status"], stage=self.result["stage"])
        return 0 if self.result["status"] == "ok" else 1

    def _do(self, job: dict[str, Any]) -> None:
        backend = self.import_backend(job)
        spec = self.build_backend(job, backend)
        train = (job.get("options") or {}).get("train")
        if train:  # compare --train: SGD steps instead of a run (training.py)
            run_training(self, backend, train)
            return
        export_path = _resolve(self.job_dir, job.get("export_onnx"))
        if export_path is not None:
            # A failed export fails only the ONNX run of this export; the native run goes on.
            try:
                with self.stage("export"):
                    export_path.parent.mkdir(parents=True, exist_ok=True)
                    self.result["export"] = {"path": str(export_path), **backend.export_onnx(export_path, OPSET)}
            except StageFailed as failed:
                self.result["export_error"] = f"{type(failed.error).__name__}: {failed.error}"

        with self.stage("run"):
            x = np.load(_resolve(self.job_dir, job["input"]))
            expected = spec.input_shape
            if x.ndim != 4 or tuple(x.shape[1:]) != tuple(expected) or x.dtype != np.float32:
                raise ValueError(f"input {job['input']} is {x.dtype} {list(x.shape)}; spec '{spec.name}' "
                                 f"expects float32 [N, {', '.join(map(str, expected))}] (NCHW)")
            available = backend.layer_names()
            requested = job.get("layers") or []
            requested = list(available) if requested == "all" else list(requested)
            wanted = [n for n in requested if n in available]
            out = backend.run(x, wanted)
            self._save(out, requested)
            # After the run: some backends only then know what they really used (ORT's providers).
            self.result["environment"] = self.environment(backend)

    @staticmethod
    def environment(backend) -> dict[str, Any]:
        """What the backend reports, and where this worker ran (``compare --python`` may name another
        environment): the interpreter, and the versions of NumPy and the backend's packages there."""
        cls = type(backend)
        where = describe([*(module for module, _ in cls.needs), *cls.onnx_export_packages, "numpy"])
        where.pop("missing")
        return {**backend.environment(), "interpreter": where}

    def import_backend(self, job: dict[str, Any]):
        """The import stage: find the backend's class, set its environment, check its framework."""
        name = job["backend"]
        with self.stage("import"):
            from ...backends import registry

            try:
                target = job.get("backend_class")
                cls = registry.load_target(target) if target else registry.load_backend_class(name)
            except ImportError as exc:  # a built-in backend's module imports its framework at the top
                missing = registry.missing_module(exc)
                if missing is None:
                    raise
                raise BackendUnavailable(registry.install_hint(name, missing)) from exc
            # Before the framework is imported (backend modules import Keras lazily, in build):
            # Keras reads KERAS_BACKEND once per process. A job's own env comes last.
            os.environ.update(getattr(cls, "env", {}))
            os.environ.update({str(k): str(v) for k, v in (job.get("env") or {}).items()})
            cls.check_available(name)
            return cls(options=dict(job.get("options") or {}))

    def build_backend(self, job: dict[str, Any], backend):
        """The build stage: spec and weights from the job's files, the backend's own count."""
        with self.stage("build"):
            from ...spec import load_spec, load_weights

            spec = load_spec(_resolve(self.job_dir, job["spec"]))
            weights = load_weights(_resolve(self.job_dir, job["weights"]), spec)
            backend.build(spec, weights, _resolve(self.job_dir, job.get("onnx_path")))
            self.result["param_count"] = int(backend.param_count())
            note = getattr(backend, "param_note", None)
            self.result["param_note"] = note() if callable(note) else note
            # True when every difference from the spec's count has a known cause (an exporter
            # dropping all-zero biases or sharing equal tensors); the note says which.
            self.result["param_explained"] = bool(getattr(backend, "param_explained", False))
        return spec

    def _save(self, out: RunOutput, requested: list[str]) -> None:
        layers_dir = self.job_dir / "out" / "layers"
        layers_dir.mkdir(parents=True, exist_ok=True)
        output = np.asarray(out.output)
        np.save(self.job_dir / "out" / "output.npy", output)
        self.result["output"] = "out/output.npy"
        self.result["output_shape"] = list(output.shape)
        for name in requested:
            if name in out.layers:
                np.save(layers_dir / f"{name}.npy", np.asarray(out.layers[name]))
                self.result["layers"][name] = f"out/layers/{name}.npy"
        self.result["missing_layers"] = [n for n in requested if n not in out.layers]
        self.result["dtypes"] = {k: str(v) for k, v in out.dtypes.items()}


def main(argv: list[str] | None = None, worker_class: type[Worker] = Worker) -> int:
    """Entry point of a worker process (also of the bench's, with its own ``worker_class``)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m {worker_class.__module__} JOB_DIR", file=sys.stderr)
        return 2
    events = _events_stream()
    faulthandler.enable(sys.stderr)  # a segfault leaves a Python traceback in the stderr tail
    return worker_class(Path(argv[0]), events).run()


if __name__ == "__main__":
    sys.exit(main())
