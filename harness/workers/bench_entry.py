"""Bench jobs in a fresh interpreter: ``python -m alexbench.harness.workers.bench_entry JOB_DIR``.

The same job directory, events and result.json as the parity worker (``entry.py``, whose
``Worker`` this extends), plus JOB_DIR/bench.json::

    {"task": "model", "batch_sizes": [1, 8], "device": "cpu", "precision": "float32",
     "variant": null | "compiled", "threads": 2, "seed": 0, "method": {...}, "train": false}
    # train: time training steps instead of inferences (harness/bench/training.py): start_training
    # after build, then train_step(x, labels, masks, readout=False) per repetition; rows say "train"
    # precision: a row name (harness/bench/precisions.py); job.json's options["precision"] says
    # the same in compare's name (fp32, bf16, fp16, int8), which the backend's build honours
    {"task": "peak", "device": "cpu", "precisions": ["float32"], "threads": 2, "method": {...}}
    {"task": "export", "kind": "torch", "cache_dir": null}     # an ONNX export through the cache

result.json gains ``"bench": {"rows": [...], "failures": [...], ...}``. Rows carry the
statistics of ``bench.summarize`` but no peak share: the harness adds it once the peak job ran.

An int8 job is calibrated at build on a seeded batch this worker writes (options
["calibration_input"], CALIBRATION_INPUTS images); the seconds the backend reports for it
(environment()["precision"]["calibration_s"]) become result.json's timings_s["calibration"]: part
of the build, never of a timed step.

Precisions, compiled variants and thread pools are the backend's business: this module calls
the bench hooks of ``Backend`` (``backends/base.py``) and reads what a backend class declares,
so it imports no framework and names no backend.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Nothing here imports NumPy at module level: ``main`` applies the job's thread variables first,
# because NumPy's BLAS sizes its pool once, when it loads (the peak's NumPy matmul must run with
# the job's thread count, like every other library).
from ...backends.registry import load_backend_class
from ..bench import training
from ..bench.precisions import TF32, declared, row_name

if TYPE_CHECKING:
    from ...backends.base import Backend

BLAS_ENV_BEFORE_NUMPY = False  # set by main: NumPy loaded after the job's thread variables were set
CALIBRATION_INPUTS = 32  # seeded images an int8 model's activation ranges are calibrated on


def backend_class(backend: str) -> type[Backend]:
    """The registered class, or ``Backend`` (its defaults: float32, no compiled variant) for a name
    whose class cannot be loaded here: its worker then reports why."""
    from ...backends.base import Backend

    try:
        return load_backend_class(backend)
    except Exception:
        return Backend


def bench_refusal(backend: str) -> str | None:
    """Why this backend cannot be benchmarked at all (read off its class), or None. A class that
    cannot be loaded here is not refused: its worker reports why."""
    from ...backends.base import Backend

    try:
        cls = load_backend_class(backend)
    except Exception:
        return None
    if not cls.bench_precisions:
        return getattr(cls, "no_bench_reason", None) or "it declares no bench precision"
    if cls.bench_step is Backend.bench_step:
        return "it implements no bench_step"
    return None


def skip_reason(backend: str, device: str, precision: str, compiled: bool, train: bool = False) -> str | None:
    """Why this combination is not run, or None when it is. ``train``: a training step (bench --train)."""
    cls = backend_class(backend)
    if train and not cls.trains:  # first: an inference-only backend's reason is that it does not train
        return training.skip_reason(cls, precision, compiled)
    if not cls.bench_precisions:
        return bench_refusal(backend) or f"{backend} is not benchmarked"
    runs = declared(cls.bench_precisions)  # what the backend declares decides, on any device
    if precision not in runs:
        return f"{backend} has no {precision} mode here (runs {', '.join(runs)})"
    if precision == TF32 and not device.startswith("cuda"):
        return "tf32 rows run on CUDA GPUs only (TF32 is a tensor-core matmul mode)"
    if train:
        return training.skip_reason(cls, precision, compiled)
    if compiled and cls.compiled_variant is None:
        return cls.no_compiled_reason
    return None


def thread_env(threads: int) -> dict[str, str]:
    """Set before any framework is imported: every CPU runtime gets the same intra-op pool size."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1"}


class BenchTasks:
    """The bench tasks; mixed into the parity worker's ``Worker`` by ``main`` (which imports NumPy)."""

    def _do(self, job: dict[str, Any]) -> None:
        settings = json.loads((self.job_dir / "bench.json").read_text())
        os.environ.update({str(k): str(v) for k, v in (job.get("env") or {}).items()})
        if settings["task"] == "peak":
            with self.stage("run"):
                self.result["bench"] = {"peaks": _peaks(settings)}
            return
        if settings["task"] == "export":
            with self.stage("export"):
                self.result["bench"] = _export(job, settings)
            return
        backend, spec = self._build(job, settings)
        with self.stage("run"):
            self.result["bench"] = self._bench(backend, spec, settings)

    def _build(self, job: dict[str, Any], settings: dict[str, Any]):
        """The parity worker's import and build stages, with the backend's pre-build settings between."""
        backend = self.import_backend(job)
        if settings["precision"] == "int8":
            with self.stage("inputs"):
                backend.options["calibration_input"] = str(self._calibration_batch(job, settings.get("seed", 0)))
        backend.before_build(declared_as(backend, settings["precision"]), settings["threads"])
        spec = self.build_backend(job, backend)
        self.result["environment"] = env = self.environment(backend)  # with the interpreter it ran in
        calibration = (env.get("precision") or {}).get("calibration_s")
        if calibration is not None:
            self.result["timings_s"]["calibration"] = calibration
        return backend, spec

    def _calibration_batch(self, job: dict[str, Any], seed: int) -> Path:
        """The seeded N x C x H x W float32 batch an int8 model is calibrated on, as a .npy file."""
        import numpy as np

        from ...spec import load_spec
        from ..inputs import seeded_inputs

        path = self.job_dir / "calibration.npy"
        np.save(path, seeded_inputs(load_spec(Path(job["spec"])), CALIBRATION_INPUTS, seed))
        return path

    def _bench(self, backend: Backend, spec, settings: dict[str, Any]) -> dict[str, Any]:
        from ..bench.method import Method, summarize, time_step
        from ..inputs import seeded_inputs

        method = Method(**settings["method"])
        device, precision, threads = settings["device"], settings["precision"], settings["threads"]
        train, seed = bool(settings.get("train")), settings.get("seed", 0)
        spelled = declared_as(backend, precision)
        execution = backend.prepare_bench(spelled, settings.get("variant") == "compiled", device, threads)
        if train:
            backend.start_training()
            execution = training.EXECUTION
        rows, failures = [], []
        for batch in settings["batch_sizes"]:
            self.emit("bench", batch=batch, phase="warmup")
            try:
                x = seeded_inputs(spec, batch, seed)
                if train:
                    step = _train_step(backend, x, *training.training_batch(spec, batch, seed))
                else:  # float32 keeps the two-argument call a plugin's bench_step may still have
                    step = backend.bench_step(x, device) if precision == "float32" else \
                        backend.bench_step(x, device, spelled)
                for _ in range(method.warmup):  # apart, so that compiler workers do not count as contention
                    step()
                started, before = time.perf_counter(), cpu_seconds()
                samples = time_step(step, replace(method, warmup=0))
                others = other_cores(before, cpu_seconds(), time.perf_counter() - started)
                del step  # release the staged batch before the next, larger one
            except Exception as exc:  # e.g. out of device memory at a large batch: keep the smaller rows
                import traceback

                traceback.print_exc(file=sys.stderr)
                failures.append({"batch": batch, "error": f"{type(exc).__name__}: {exc}"[:500]})
                self.emit("bench", batch=batch, phase="failed", error=failures[-1]["error"])
                continue
            macs = 0 if backend.computes_nothing else training.training_macs(spec) if train else spec.macs
            row = {"batch": batch, "execution": execution, **summarize(samples, batch, macs, None),
                   "wall_s": round(time.perf_counter() - started, 3), "other_cores_busy": others}
            if train:
                row["train"] = True
            rows.append(row)
            self.emit("bench", phase="row", **row)
        return {"rows": rows, "failures": failures, "device": device, "precision": precision,
                "threads_seen": threads_seen(backend), "execution": execution}


def _train_step(backend: Backend, x, labels, masks):
    """One timed training step: the loss is a host float, so the device has finished when it returns."""
    def step():
        return backend.train_step(x, labels, masks, readout=False).loss
    return step


def declared_as(backend: Backend, precision: str) -> str:
    """The row name in the spelling the backend's ``bench_precisions`` uses (``bf16`` or ``bfloat16``):
    its hooks compare against their own names."""
    return next((name for name in type(backend).bench_precisions if row_name(name) == precision), precision)


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds every process has used, incl. time the hypervisor stole; this process' own), or
    None off Linux. Their difference over a row is how much other work competed for the cores."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    own = os.times()
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_cores(before, after, wall_s: float) -> float | None:
    """Cores' worth of CPU time that other processes (or the hypervisor) took while a row was timed."""
    if before is None or after is None or wall_s <= 0:
        return None
    return round(max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall_s, 2)


def _export(job: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Make (or find) the ONNX export through the export cache, in this process."""
    from ...backends.onnx.cache import cached_export
    from ...spec import load_spec, load_weights

    spec = load_spec(Path(job["spec"]))
    weights = load_weights(Path(job["weights"]), spec)
    path, _, hit = cached_export(settings["kind"], spec, weights, settings.get("cache_dir"))
    return {"onnx_path": str(path), "cache_hit": bool(hit)}


def _peaks(settings: dict[str, Any]) -> list[dict[str, Any]]:
    from ..bench.method import Method
    from ..bench.peak import measure_matmul_peak

    method = Method(**settings["method"])
    out = []
    for precision in settings["precisions"]:
        try:
            out.append(measure_matmul_peak(settings["device"], precision, settings["threads"], method,
                                           n=settings.get("n"), blas_env_set=BLAS_ENV_BEFORE_NUMPY))
        except Exception as exc:  # the models' rows still stand without a peak
            out.append({"precision": precision, "gflops": None, "error": f"{type(exc).__name__}: {exc}"})
    return out


def threads_seen(backend: Backend) -> dict[str, Any]:
    """The intra-op pool sizes the backend's framework reports, and the thread variables it was given."""
    seen = dict(backend.threads_seen())
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        if var in os.environ:
            seen[var] = os.environ[var]
    return seen


def apply_job_env(argv: list[str]) -> None:
    """The job's environment (thread variables), before NumPy or any framework loads."""
    global BLAS_ENV_BEFORE_NUMPY
    if len(argv) != 1:
        return
    try:
        job = json.loads((Path(argv[0]) / "job.json").read_text())
    except (OSError, ValueError):
        return  # the worker reports a bad job itself
    env = {str(k): str(v) for k, v in (job.get("env") or {}).items()}
    os.environ.update(env)
    BLAS_ENV_BEFORE_NUMPY = "numpy" not in sys.modules and any(var in env for var in ("OPENBLAS_NUM_THREADS",
                                                                                      "OMP_NUM_THREADS"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    apply_job_env(argv)
    from .entry import Worker
    from .entry import main as worker_main

    class BenchWorker(BenchTasks, Worker):
        """The parity worker (job files, stages, events, result.json) running bench tasks."""

    return worker_main(argv, BenchWorker)


if __name__ == "__main__":
    sys.exit(main())
