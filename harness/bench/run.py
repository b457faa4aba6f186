"""A bench run: plan the jobs, run each in its own worker (``workers/bench_entry.py``), one at a time,
and assemble the results document (kind "bench"). The timing method itself is ``method.py``.

Order: the device's matmul peak (its own worker), the null backend (the harness' own cost per
repetition), then one job per backend, precision and variant, each timing every batch size.
ONNX Runtime backends run the export cache's file, exported first (on the CPU) when missing.
With ``train`` (bench --train) each job times training steps instead (``training.py``): backends
that do not train, precisions other than float32 and the compiled variant are skipped with the reason.
A precision runs wherever the backend declares it (``bench_precisions``), on the CPU too; tf32 is
a CUDA matmul mode. Each job's options["precision"] says it in compare's name (``precisions.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ...backends.onnx import cache as export_cache
from ...backends.registry import DEFAULT_BENCH, available_backends, backend_target, onnx_source
from ...spec import load_spec
from ...spec.loader import resolve_spec_path
from .. import environment
from ..errors import ExitCode
from ..results.document import new_results
from ..results.model import BenchDocument, BenchEntry, BenchRow, BenchSection, Verdict, WeightsInfo
from ..run_weights import run_weights
from ..train.data import class_count
from ..workers.bench_entry import CALIBRATION_INPUTS, bench_refusal, skip_reason, thread_env
from ..workers.bundle import worker_code
from ..workers.interpreter import check_backends, probe_backends
from ..workers.job import make_job
from ..workers.runner import run_worker
from .method import Method
from .peak import measured_precisions, theoretical_peak
from .precisions import ACCEPTED, TF32, UnknownBenchPrecision, canonical, requested
from .training import INPUTS as TRAIN_INPUTS
from .training import settings as training_settings

DEFAULT_SPEC = "alexnet-owt"
DEFAULT_BACKENDS = DEFAULT_BENCH
DEFAULT_BATCH_SIZES = (1, 8, 64)
PRECISIONS = ACCEPTED  # every spelling --precision takes; rows carry precisions.NAMES
BENCH_WORKER = "alexbench.harness.workers.bench_entry"
# The matmul peak needs fewer, longer repetitions than a model row.
PEAK_METHOD = Method(warmup=1, min_time_s=0.5, min_reps=3)

Progress = Callable[[str], None]


class BenchError(ValueError):
    """A request this machine cannot serve (no GPU for --device cuda, ...): a usage error, exit 2."""


@dataclass
class BenchConfig:
    spec: str = DEFAULT_SPEC
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    device: str = "auto"
    precisions: tuple[str, ...] = ("float32",)  # any spelling of precisions.ACCEPTED
    compiled: str | None = None  # None, "also" (eager and compiled rows) or "only" (compiled rows)
    method: Method = Method()
    threads: int | None = None  # default: every core
    seed: int = 0
    weights: str | None = None
    timeout_s: float = 900.0
    cache_dir: str | None = None
    overhead: bool = True  # time the null backend: the harness' own cost per repetition
    peak: bool = True
    peak_n: int | None = None  # matmul size for the peak (default: peak.MATMUL_N for the device)
    train: bool = False  # time training steps (forward, backward, SGD update) instead of inferences
    # bench --python: backend -> the interpreter of another Python environment its jobs run in. The matmul
    # peak, the null backend's overhead and the ONNX exports stay in this one.
    python: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    backend: str
    precision: str
    variant: str | None  # None, or "compiled"
    train: bool = False

    @property
    def label(self) -> str:
        return " ".join(filter(None, (self.backend, self.precision, self.variant, "train" if self.train else None)))


def resolve_device(requested: str, gpus: list[str]) -> str:
    """'auto' -> 'cuda' when nvidia-smi lists a GPU, else 'cpu'; 'cuda' without a GPU is an error."""
    if requested == "auto":
        return "cuda" if gpus else "cpu"
    if requested.startswith("cuda") and not gpus:
        raise BenchError(f"--device {requested}: no CUDA GPU found (nvidia-smi lists none); "
                         f"use --device cpu, or auto to take a GPU only when there is one")
    return requested


def plan_jobs(cfg: BenchConfig, device: str) -> tuple[list[Job], list[dict[str, Any]]]:
    """Jobs in run order and the combinations left out, each with its reason."""
    jobs, skipped = [], []
    variants = {None: (None,), "also": (None, "compiled"), "only": ("compiled",)}[cfg.compiled]
    for name in cfg.backends:
        for precision in cfg.precisions:
            for variant in variants:
                why = skip_reason(name, device, precision, variant == "compiled", cfg.train)
                if why:
                    skip = {"backend": name, "precision": precision, "variant": variant, "reason": why}
                    skipped.append({**skip, "train": True} if cfg.train else skip)
                else:
                    jobs.append(Job(name, precision, variant, cfg.train))
    return jobs, skipped


def run_bench(cfg: BenchConfig, progress: Progress = lambda msg: None) -> dict[str, Any]:
    """Run the bench and return the results document (kind "bench", see results_schema.json)."""
    if not cfg.batch_sizes or min(cfg.batch_sizes) < 1:
        raise BenchError(f"batch sizes must be integers >= 1; received {list(cfg.batch_sizes)}")
    try:
        cfg = replace(cfg, precisions=requested(cfg.precisions))
    except UnknownBenchPrecision as exc:
        raise BenchError(str(exc)) from None
    for name in cfg.backends:
        backend_target(name)  # an unknown name fails before anything runs (UnknownBackend)
    check_backends(cfg.python, cfg.backends)
    if not cfg.train:  # a training bench lists the backends it cannot time as skipped, with the reason
        refuse_unbenchable(cfg.backends)
    spec = load_spec(cfg.spec)
    if cfg.train:
        class_count(spec)  # a spec whose output the cross-entropy cannot read: refused before anything runs
    device = resolve_device(cfg.device, environment.gpu_names())
    if not device.startswith("cuda") and cfg.precisions == (TF32,):
        raise BenchError(f"--precision tf32 on {device}: TF32 is a CUDA tensor-core matmul mode; "
                         f"use --device cuda, or float32 on the CPU")
    threads = cfg.threads or os.cpu_count() or 1
    jobs, skipped = plan_jobs(cfg, device)
    # --python: as in compare, each interpreter is checked before any work (workers/interpreter.py); one that
    # cannot run its backend's worker fails that backend alone, and the others bench as usual.
    interpreters, refused = probe_backends(cfg.python, dict.fromkeys(job.backend for job in jobs))
    jobs = [job for job in jobs if job.backend not in refused]
    name = _device_name(device)
    weights = run_weights(spec, cfg.weights, cfg.seed, cfg.cache_dir)
    w_sha = weights.sha256
    doc = new_results("bench", spec, weights=WeightsInfo(weights.source, w_sha))
    settings = {"device": device, "device_name": name, "threads": threads, "precisions": list(cfg.precisions),
                "compiled": cfg.compiled, "batch_sizes": list(cfg.batch_sizes), "method": cfg.method.to_json(),
                "inputs": f"seeded normal, seed {cfg.seed}, " + (TRAIN_INPUTS if cfg.train else
                                                                 "staged on the device before timing"),
                "load_average_at_start": _load_average(), "isolation": "one worker process per job, one at a time"}
    if cfg.train:
        settings["train"] = training_settings(spec, cfg.seed)
    if "int8" in cfg.precisions:
        settings["calibration"] = f"{CALIBRATION_INPUTS} seeded images (seed {cfg.seed})"
    if cfg.python:
        settings["python"] = dict(cfg.python)
    for backend, refusal in refused.items():
        doc.backends.append(BenchEntry(name=backend, status=refusal.status, stage="start", error=str(refusal)))
        progress(f"{backend}: {refusal.status}, not run: {refusal}")
    for s in skipped:
        label = " ".join(filter(None, (s["backend"], s["precision"], s["variant"], "train" if s.get("train") else "")))
        progress(f"skipping {label}: {s['reason']}")
    rows, failures, overhead = [], [], []
    with tempfile.TemporaryDirectory(prefix="alexbench-bench-") as tmp, worker_code(bool(interpreters)) as code:
        run_dir = Path(tmp)
        spec_path = run_dir / "spec.yaml"
        shutil.copyfile(resolve_spec_path(cfg.spec), spec_path)
        weights_path = weights.file_in(run_dir)
        where = {backend: {"python": cfg.python[backend], "worker_code": code} for backend in interpreters}
        ctx = _RunContext(cfg, run_dir, spec, spec_path, weights_path, w_sha, device, threads, progress, where)
        peak = ctx.peak() if cfg.peak else {"measured": {}, "theoretical": {}}
        if cfg.overhead:
            overhead = ctx.overhead(doc)
        for index, job in enumerate(jobs, 1):
            progress(f"[{index}/{len(jobs)}] {job.label} on {device} ({name}): starting")
            rows += ctx.bench_job(job, doc, failures)
    for row in rows:
        m = peak["measured"].get(row.precision) or {}
        # A share only of a peak measured with the row's own thread count (CPU rows record theirs).
        same_threads = row.threads is None or m.get("threads") == row.threads
        measured = m.get("gflops") if same_threads else None
        theory = (peak["theoretical"].get(row.precision) or {}).get("gflops")
        row.device_name = name
        row.peak_share = row.gflops / measured if row.gflops and measured else None
        row.theoretical_share = row.gflops / theory if row.gflops and theory else None
    doc.bench = BenchSection(rows=rows, peak=peak, settings=settings, overhead=overhead, skipped=skipped,
                             failures=failures)
    failed = [b.name for b in doc.backends if b.status != "ok"]
    code = ExitCode.BACKEND if failed or failures else ExitCode.OK
    summary = f"{len(rows)} rows from {len(jobs)} jobs on {name}"
    if failed:
        summary += f"; failed: {', '.join(failed)}"
    if failures:
        summary += f"; {len(failures)} batch size(s) failed"
    doc.verdict = Verdict(int(code), summary)
    return doc.to_json()


def refuse_unbenchable(names) -> None:
    """Before any work: a backend that cannot be timed (it declares no bench precision or has no
    ``bench_step``, e.g. the float64 reference) is a usage error, not a failure after the peak."""
    for name in names:
        why = bench_refusal(name)
        if why:
            able = [other for other in available_backends() if not bench_refusal(other)]
            raise BenchError(f"--backends {name}: backend '{name}' cannot be benchmarked ({why}); "
                             f"backends that can: {', '.join(able)}")


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        names = environment.gpu_names()
        return names[index] if index < len(names) else "unknown GPU"
    return environment.cpu_name()


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


class _RunContext:
    """Everything the jobs of one run share: files, device, threads, progress."""

    def __init__(self, cfg: BenchConfig, run_dir, spec, spec_path, weights_path, w_sha: str, device: str,
                 threads: int, progress: Progress, where: dict[str, dict[str, Any]]):
        self.cfg, self.run_dir, self.spec = cfg, run_dir, spec
        self.spec_path, self.weights_path, self.w_sha = spec_path, weights_path, w_sha
        self.device, self.threads, self.progress = device, threads, progress
        self.where = where  # backend -> make_job's python and worker_code, for its jobs (bench --python)
        self.exports: dict[str, Any] = {}

    def _env(self, cpu_only: bool = False) -> dict[str, str]:
        env = thread_env(self.threads)
        if self.device == "cpu" or cpu_only:  # every framework on the CPU, even where a GPU is visible
            env.update({"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"})
        return env

    def _run(self, job_name: str, backend: str, bench: dict[str, Any], options: dict[str, Any] | None = None,
             onnx_path: str | None = None, cpu_only: bool = False, where: dict[str, Any] | None = None):
        """``where``: another interpreter's make_job arguments (a backend's job only); None: this one."""
        job_dir = make_job(self.run_dir / job_name, backend, self.spec_path, self.weights_path,
                           self.run_dir / job_name / "bench.json", options=options, env=self._env(cpu_only),
                           onnx_path=onnx_path, **(where or {}))
        (job_dir / "bench.json").write_text(json.dumps(bench, indent=1))
        return run_worker(job_dir, self.cfg.timeout_s, on_event=self._on_event, entry_module=BENCH_WORKER)

    def _on_event(self, event: dict[str, Any]) -> None:
        who = event.get("backend")
        if event.get("event") == "stage":
            self.progress(f"    {who}: {event.get('stage')}…")
        elif event.get("event") == "bench" and event.get("phase") == "row":
            what = "training images/s" if event.get("train") else "images/s"
            self.progress(f"    {who} batch {event['batch']}: {event['images_per_s']:,.1f} {what} "
                          f"(median {event['median_ms']:.2f} ms, p10 {event['p10_ms']:.2f}, "
                          f"p90 {event['p90_ms']:.2f}, {event['repetitions']} reps)")
        elif event.get("event") == "bench" and event.get("phase") == "warmup":
            self.progress(f"    {who} batch {event['batch']}: warming up, then timing…")
        elif event.get("event") == "bench" and event.get("phase") == "failed":
            self.progress(f"    {who} batch {event['batch']}: FAILED {event.get('error')}")

    def _settings(self, precision: str, variant: str | None, batch_sizes, train: bool = False) -> dict[str, Any]:
        m = self.cfg.method
        return {"task": "model", "batch_sizes": list(batch_sizes), "device": self.device, "precision": precision,
                "variant": variant, "threads": self.threads, "seed": self.cfg.seed, "train": train,
                "method": {"warmup": m.warmup, "min_time_s": m.min_time_s, "min_reps": m.min_reps,
                           "max_reps": m.max_reps}}

    def _options(self, precision: str) -> dict[str, Any]:
        return {"device": self.device, "threads": self.threads, "allow_tf32": precision == TF32,
                "precision": canonical(precision)} | ({"cache_dir": self.cfg.cache_dir} if self.cfg.cache_dir else {})

    def peak(self) -> dict[str, Any]:
        name = _device_name(self.device)
        precisions = measured_precisions(self.device, self.cfg.precisions)
        theoretical = {p: t for p in self.cfg.precisions
                       if (t := theoretical_peak(self.device, name, p, self.threads)) is not None}
        if not precisions:  # e.g. only bfloat16 on a CPU: no worker for a peak nothing is compared with
            return {"device": self.device, "device_name": name, "threads": self.threads, "measured": {},
                    "theoretical": theoretical}
        self.progress(f"measuring the matmul peak on {self.device} ({name}), {self.threads} threads…")
        m = PEAK_METHOD
        bench = {"task": "peak", "device": self.device, "precisions": precisions,
                 "threads": self.threads, "n": self.cfg.peak_n,
                 "method": {"warmup": m.warmup, "min_time_s": m.min_time_s, "min_reps": m.min_reps,
                            "max_reps": m.max_reps}}
        result = self._run("peak", "null", bench)
        measured = {}
        if result.ok:
            for p in ((result.result or {}).get("bench") or {}).get("peaks", []):
                measured[p["precision"]] = p
                if p.get("gflops"):
                    tried = ", ".join(f"{lib} {v['gflops']:,.1f}" for lib, v in p["libraries"].items())
                    self.progress(f"    matmul {p['n']}^3 {p['precision']}, {p['threads']} threads: "
                                  f"{p['gflops']:,.1f} GFLOP/s ({tried})")
                    for lib, why in (p.get("not_measured") or {}).items():
                        self.progress(f"    matmul {lib}: not measured ({why})")
                else:
                    self.progress(f"    matmul peak {p['precision']}: not measured ({p.get('error')})")
        else:
            self.progress(f"    matmul peak: not measured ({result.error})")
        for precision, t in theoretical.items():
            self.progress(f"    theoretical peak {precision}: {t['gflops']:,.1f} GFLOP/s = {t['basis']}")
        return {"device": self.device, "device_name": name, "threads": self.threads, "measured": measured,
                "theoretical": theoretical}

    def overhead(self, doc: BenchDocument) -> list[dict[str, Any]]:
        self.progress("timing the null backend (the harness' own cost per repetition)…")
        result = self._run("null", "null", self._settings("float32", None, self.cfg.batch_sizes[:1]),
                           options=self._options("float32"))
        if not result.ok:
            doc.backends.append(_backend_entry("null", result))
            return []
        return [{"batch": r["batch"], "median_ms": r["median_ms"], "p10_ms": r["p10_ms"], "p90_ms": r["p90_ms"],
                 "repetitions": r["repetitions"]} for r in result.result["bench"]["rows"]]

    def _onnx_file(self, name: str, doc: BenchDocument) -> str | None:
        """The export an ONNX Runtime backend runs: from the cache, or made now (in a worker of its own,
        on the CPU) and cached. Made in this interpreter even when --python names another for its source
        or its runner: the cache's key holds this one's versions, and the row times the runtime, not the
        exporter."""
        if name in self.exports:
            return self.exports[name]
        cached = export_cache.lookup(name, self.spec, self.w_sha, self.cfg.cache_dir)
        if cached is not None:
            self.progress(f"    {name}: ONNX export found in the cache ({cached.path.name})")
            self.exports[name] = str(cached.path)
            return self.exports[name]
        source = onnx_source(name)
        self.progress(f"    {name}: exporting from {source} (cached for the next run)…")
        result = self._run(f"export-{name}", source, {"task": "export", "kind": source,
                                                      "cache_dir": self.cfg.cache_dir}, cpu_only=True)
        path = ((result.result or {}).get("bench") or {}).get("onnx_path")
        if not result.ok or not path:
            entry = _backend_entry(name, result)
            entry.error = f"exporting from '{source}' failed: {entry.error}"
            doc.backends.append(entry)
            return None
        self.exports[name] = path
        return path

    def bench_job(self, job: Job, doc: BenchDocument, failures: list[dict[str, Any]]) -> list[BenchRow]:
        onnx_path = None
        if onnx_source(job.backend):
            onnx_path = self._onnx_file(job.backend, doc)
            if onnx_path is None:
                return []
        label = job.label.replace(" ", "-")
        result = self._run(f"job-{label}", job.backend, self._settings(job.precision, job.variant,
                                                                       self.cfg.batch_sizes, job.train),
                           options=self._options(job.precision), onnx_path=onnx_path,
                           where=self.where.get(job.backend))
        entry = _backend_entry(job.backend, result)
        entry.job, entry.precision, entry.variant = True, job.precision, job.variant
        doc.backends.append(entry)
        self.progress(f"    {job.label}: {result.status} in {result.elapsed_s:.1f} s")
        if not result.ok:
            self.progress(f"    {job.label}: {entry.error}")
            return []
        bench = result.result["bench"]
        for f in bench["failures"]:
            failures.append({"backend": job.backend, "precision": job.precision, "variant": job.variant, **f})
        return [BenchRow(backend=job.backend, variant=job.variant, device=self.device, device_name="",
                         precision=job.precision, tf32=job.precision == "tf32",
                         threads=self.threads if self.device == "cpu" else None, train=job.train,
                         **{k: r[k] for k in ("batch", "median_ms", "p10_ms", "p90_ms", "images_per_s", "gflops",
                                              "repetitions", "execution", "timed_s", "other_cores_busy")})
                for r in bench["rows"]]


def _backend_entry(name: str, result) -> BenchEntry:
    """The results file's backend entry for one bench job (how its worker ended)."""
    from ..compare.judge import error_text

    r = result.result or {}
    ok = result.status == "ok"
    return BenchEntry(name=name, status="ok" if ok else "unavailable" if result.status == "unavailable" else "failed",
                      stage=None if ok else result.stage, error=None if ok else error_text(result),
                      stderr_tail=None if ok else (result.stderr_tail or None),
                      param_count=r.get("param_count"), environment=r.get("environment") or {},
                      threads_seen=((r.get("bench") or {}).get("threads_seen")) or {},
                      timings_s={**(r.get("timings_s") or {}), "total": round(result.elapsed_s, 3)})
