"""Bench jobs in a fresh interpreter: ``python -m alexbench.harness.workers.bench_entry JOB_DIR``.

The same job directory, events and result.json as the parity worker (``backends/worker.py``,
whose ``Worker`` this extends), plus JOB_DIR/bench.json::

    {"task": "model", "batch_sizes": [1, 8], "device": "cpu", "precision": "float32",
     "variant": null | "compiled", "threads": 2, "seed": 0, "method": {...}}
    {"task": "peak", "device": "cpu", "precisions": ["float32"], "threads": 2, "method": {...}}
    {"task": "export", "kind": "torch", "cache_dir": null}     # an ONNX export through the cache

result.json gains ``"bench": {"rows": [...], "failures": [...], ...}``. Rows carry the
statistics of ``bench.summarize`` but no peak share: the harness adds it once the peak job ran.

Precision and compiled variants are applied here, around the backend's own ``bench_step``,
for the built-in backends listed in ``SUPPORT``; everything else runs float32 as built.
Frameworks are imported lazily: the harness imports this module for ``SUPPORT`` alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .entry import Worker
from .entry import main as worker_main

# What each built-in backend can run besides float32 as built. "compiled" names what the
# compiled variant is; a missing entry means the variant is not offered (the reason says why).
SUPPORT: dict[str, dict[str, Any]] = {
    "torch": {"precisions": ("float32", "tf32", "float16", "bfloat16"), "compiled": "torch.compile"},
    "keras": {"precisions": ("float32", "tf32", "float16", "bfloat16"), "compiled": "XLA (jit_compile=True)"},
    "keras-torch": {"precisions": ("float32", "tf32", "float16", "bfloat16"), "compiled": "torch.compile"},
    "keras-jax": {"precisions": ("float32", "tf32", "float16", "bfloat16"),
                  "no_compiled": "keras-jax always runs jax.jit-compiled: its plain rows are the compiled ones"},
    "onnx-torch": {"precisions": ("float32",),
                   "no_compiled": "ONNX Runtime always optimises the graph (level ALL): no separate variant"},
    "onnx-keras": {"precisions": ("float32",),
                   "no_compiled": "ONNX Runtime always optimises the graph (level ALL): no separate variant"},
    "null": {"precisions": ("float32", "tf32", "float16", "bfloat16"), "no_compiled": "nothing to compile"},
}
KERAS_FAMILY = ("keras", "keras-torch", "keras-jax")
DEFAULT_SUPPORT = {"precisions": ("float32",), "no_compiled": "no compiled variant known for this backend"}


def support(backend: str) -> dict[str, Any]:
    return SUPPORT.get(backend, DEFAULT_SUPPORT)


def skip_reason(backend: str, device: str, precision: str, compiled: bool) -> str | None:
    """Why this combination is not run, or None when it is."""
    caps = support(backend)
    if precision not in caps["precisions"]:
        return f"{backend} has no {precision} mode here (runs {', '.join(caps['precisions'])})"
    if precision != "float32" and not device.startswith("cuda"):
        return f"{precision} rows run on CUDA GPUs only"
    if compiled and "compiled" not in caps:
        return caps["no_compiled"]
    return None


def thread_env(threads: int) -> dict[str, str]:
    """Set before any framework is imported: every CPU runtime gets the same intra-op pool size."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1"}


class BenchWorker(Worker):
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
            self.result["bench"] = self._bench(backend, spec, job["backend"], settings)

    def _build(self, job: dict[str, Any], settings: dict[str, Any]):
        """The parity worker's import and build stages, with the bench's pre-build settings between."""
        backend = self.import_backend(job)
        _before_build(job["backend"], settings)
        spec = self.build_backend(job, backend)
        self.result["environment"] = backend.environment()
        return backend, spec

    def _bench(self, backend, spec, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        from ..bench.method import Method, summarize, time_step
        from ..inputs import seeded_inputs

        method = Method(**settings["method"])
        device, precision = settings["device"], settings["precision"]
        execution = _after_build(backend, name, settings)
        rows, failures = [], []
        for batch in settings["batch_sizes"]:
            self.emit("bench", batch=batch, phase="warmup")
            try:
                x = seeded_inputs(spec, batch, settings.get("seed", 0))
                step = _make_step(backend, name, x, settings)
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
            macs = 0 if name == "null" else spec.macs
            row = {"batch": batch, "execution": execution, **summarize(samples, batch, macs, None),
                   "wall_s": round(time.perf_counter() - started, 3), "other_cores_busy": others}
            rows.append(row)
            self.emit("bench", phase="row", **row)
        return {"rows": rows, "failures": failures, "device": device, "precision": precision,
                "threads_seen": threads_seen(), "execution": execution}


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


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


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
                                           n=settings.get("n")))
        except Exception as exc:  # the models' rows still stand without a peak
            out.append({"precision": precision, "gflops": None, "error": f"{type(exc).__name__}: {exc}"})
    return out


# --- precision, threads and compiled variants (framework code, imported lazily) -----------

def _before_build(name: str, settings: dict[str, Any]) -> None:
    """What must happen before the model exists: Keras' dtype policy, TensorFlow's thread pools."""
    precision, threads = settings["precision"], settings["threads"]
    if name == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if name in KERAS_FAMILY and precision in ("float16", "bfloat16"):
        import keras

        # Mixed precision: float32 variables, float16/bfloat16 compute, as Keras recommends.
        keras.config.set_dtype_policy(f"mixed_{precision}")


def _after_build(backend, name: str, settings: dict[str, Any]) -> str:
    """Apply the TF32 switch and the compiled variant; return how the model executes."""
    precision, compiled, device = settings["precision"], settings.get("variant") == "compiled", settings["device"]
    tf32 = precision == "tf32"
    if "torch" in sys.modules:  # torch itself, or keras-torch; also pins its CPU pool
        import torch

        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        if device == "cpu":
            torch.set_num_threads(settings["threads"])
    if name == "keras":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(tf32)
    if name == "keras-jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "highest")
    if name == "torch":
        if compiled:
            import torch

            backend.model = torch.compile(backend.model.to(device))
            return "torch.compile"
        return "eager"
    if name in ("keras", "keras-torch"):
        model = backend.model
        if compiled:
            model.compile(jit_compile=True)
            return SUPPORT[name]["compiled"]
        return "tf.function" + (" + XLA" if model.jit_compile else "") if name == "keras" else "eager"
    if name == "keras-jax":
        return "jax.jit"
    return {"onnx-torch": "onnxruntime", "onnx-keras": "onnxruntime", "null": "no-op"}.get(name, "as built")


def _make_step(backend, name: str, x, settings: dict[str, Any]) -> Callable[[], Any]:
    device, precision = settings["device"], settings["precision"]
    if name == "torch" and precision in ("float16", "bfloat16"):
        return _torch_half_step(backend.model, x, device, precision)
    return backend.bench_step(x, device)


def _torch_half_step(model, x, device: str, precision: str) -> Callable[[], Any]:
    """The backend's step is float32; this is the same step with model and input in half
    precision (the input cast happens once, before timing)."""
    import torch

    from ...backends.torch.backend import inference_step

    dtype = getattr(torch, precision)
    return inference_step(model.to(device=device, dtype=dtype), torch.from_numpy(x).to(device=device, dtype=dtype))


def threads_seen() -> dict[str, Any]:
    """The intra-op pool sizes the loaded frameworks report (only those already imported)."""
    seen: dict[str, Any] = {}
    if "torch" in sys.modules:
        seen["torch"] = sys.modules["torch"].get_num_threads()
    if "tensorflow" in sys.modules:
        threading = sys.modules["tensorflow"].config.threading
        seen["tensorflow_intra_op"] = threading.get_intra_op_parallelism_threads()
        seen["tensorflow_inter_op"] = threading.get_inter_op_parallelism_threads()
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        if var in os.environ:
            seen[var] = os.environ[var]
    return seen


def main(argv: list[str] | None = None) -> int:
    return worker_main(argv, BenchWorker)


if __name__ == "__main__":
    sys.exit(main())
