"""The parity harness: run every backend on the same batch and judge it against the float64
reference, layer by layer, and against each other.

The harness owns files, clocks and tolerances; backends run in their own worker processes,
side by side where the machine allows (``workers/scheduler.py``). ONNX exports come from the
native backends' workers and are kept in the export cache, so a second run reuses them; an ONNX
run starts once its export is there.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ...backends.onnx import cache as export_cache
from ...backends.registry import DEFAULT_COMPARE, backend_target, load_backend_class, onnx_runners, onnx_source
from ...spec import load_spec, weights_sha256
from ...spec.files import atomic_write
from ...spec.loader import resolve_spec_path
from ..errors import UsageError
from ..inputs import array_sha256, file_inputs, given_array, seeded_inputs
from ..results.document import new_results
from ..results.model import CompareDocument, InputsInfo, ToleranceInfo, WeightsInfo
from ..run_weights import RunWeights, run_weights
from ..workers.bundle import worker_code
from ..workers.interpreter import check_backends, export_gap, probe_backends
from ..workers.job import make_job
from ..workers.runner import WorkerResult
from ..workers.scheduler import Task, run_tasks, worker_limit
from .judge import Criteria, backend_entry, error_text, failed_entry, judge
from .metrics import PROFILES, REL_L2_LIMIT, Tolerance
from .models import import_models, models_spec
from .precision import PRECISION_PROFILES, TOPK_MIN_BATCH, layer_limits

# The bench worker's "export" task makes (or finds) an export through the cache and runs nothing else.
EXPORT_WORKER = "alexbench.harness.workers.bench_entry"

Progress = Callable[[str], None]

# Workers run side by side and a parity run is not timed: idle threads sleep instead of
# spinning, so they leave their core to the other workers (~10% less wall time here).
PARITY_OPTIONS = {"busy_wait": False}
PARITY_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}

WORKER_BASE_BYTES = 1 << 30
WEIGHT_COPIES = 6


@dataclass
class CompareConfig:
    spec: str | None = None  # None: alexnet, or with models the first model's own structure
    backends: list[str] | None = None  # None: DEFAULT_COMPARE, or with models none besides them
    models: list[Any] = field(default_factory=list)  # SOURCE strings or in-memory models (compare --model)
    model_input_shape: tuple[int, int, int] | None = None  # for models that do not declare one (PyTorch)
    onnx: bool = True
    weights: str | None = None
    seed: int = 0
    batch: int | None = None  # None: 4 seeded inputs (64 below fp32: see default_batch), or one per --input image
    inputs: list[str] = field(default_factory=list)
    input_array: Any = None  # the API's inputs given as an array (N x C x H x W or C x H x W)
    profile: str = "default"
    atol: float | None = None
    rtol: float | None = None
    rel_l2: float | None = None
    layers: bool = True
    timeout_s: float = 600.0
    save_dir: str | None = None
    cache_dir: str | None = None
    max_bytes: int | None = None
    # What every backend but the float64 reference runs in (backends/precision.py, a canonical name).
    precision: str = "fp32"
    # compare --train (harness/train/run.py): SGD steps (None: 1) on the batch, labels from a .npy file
    # (None: seeded). Steps and labels without train are refused.
    train: bool = False
    steps: int | None = None
    labels: str | None = None
    # compare --python: backend -> the interpreter of another Python environment its worker runs in.
    python: dict[str, str] = field(default_factory=dict)

    def profile_name(self) -> str:
        """The profile judged by: a lower precision's own, unless --profile names another."""
        return self.precision if self.precision != "fp32" and self.profile == "default" else self.profile

    def criteria(self, spec) -> Criteria:
        """The output's tolerance and, for a precision's profile, each layer's (growing with depth), with
        --atol/--rtol/--rel-l2 replacing what they name everywhere."""
        profile = PRECISION_PROFILES.get(self.profile_name())
        if profile is None:
            return Criteria(self.tolerance(), self.rel_l2_limit(), self.precision)
        limits = {name: self._overridden(tol, l2) for name, (tol, l2) in layer_limits(profile, spec).items()}
        return Criteria(*limits[spec.layers[-1].name], self.precision, limits)

    def _overridden(self, tol: Tolerance, rel_l2: float) -> tuple[Tolerance, float]:
        return (Tolerance(atol=tol.atol if self.atol is None else self.atol,
                          rtol=tol.rtol if self.rtol is None else self.rtol),
                rel_l2 if self.rel_l2 is None else self.rel_l2)

    def default_batch(self) -> int | None:
        """Seeded inputs of a lower precision: enough for the top-k criterion; else the usual default."""
        return TOPK_MIN_BATCH if self.batch is None and self.precision != "fp32" else self.batch

    def tolerance(self) -> Tolerance:
        base = PROFILES[self.profile]
        return Tolerance(atol=base.atol if self.atol is None else self.atol,
                         rtol=base.rtol if self.rtol is None else self.rtol)

    def rel_l2_limit(self) -> float:
        return REL_L2_LIMIT.get(self.profile, REL_L2_LIMIT["default"]) if self.rel_l2 is None else self.rel_l2

    def tolerance_label(self) -> str | None:
        """How an overridden profile is printed and recorded ("custom (default with rtol 1e-09)"); None
        when the profile's own values apply."""
        overrides = [f"{what} {value:g}" for what, value in
                     (("atol", self.atol), ("rtol", self.rtol), ("relative L2", self.rel_l2)) if value is not None]
        return f"custom ({self.profile_name()} with {', '.join(overrides)})" if overrides else None


def plan_backends(requested: list[str], onnx: bool, models: list[str] = ()) -> list[str]:
    """Reference first, then the requested backends (each once), the user's models, then the ONNX runs
    of the backends' exports.

    A request that would check nothing against the reference is refused (UsageError) before any
    work: only the reference, or only backends that compute nothing (``null``: bench only)."""
    order = ["reference"]
    runners = onnx_runners()
    for name in requested:
        backend_target(name)  # unknown names fail before anything runs
        if name not in order:
            order.append(name)
    idle = [n for n in order[1:] if _computes_nothing(n)]
    if idle:
        raise UsageError(f"--backends: '{idle[0]}' computes nothing (it is for measuring the harness' overhead "
                         f"in `alexbench bench`), so compare has nothing to check; received "
                         f"{','.join(requested)}; name backends that compute the model, e.g. torch,keras")
    order += [name for name in models if name not in order]
    if len(order) == 1:
        raise UsageError(f"--backends: received {','.join(requested)}: the reference alone checks nothing; name "
                         f"at least one backend to compare with it, e.g. torch,keras (`alexbench backends`)")
    if onnx:
        for name in list(order[1:]):
            if name in runners and runners[name] not in order:
                order.append(runners[name])
    return order


def _computes_nothing(name: str) -> bool:
    try:
        return bool(load_backend_class(name).computes_nothing)
    except Exception:  # a plugin that cannot be imported here: its worker reports why
        return False


@contextmanager
def open_run_dir(save_dir: str | None) -> Iterator[Path]:
    """The run's folder: ``save_dir`` (an earlier run's files removed first), else a temporary one."""
    if save_dir:
        from ..output_paths import check_save_folder, remove_previous_run

        # An earlier run's files go first, so its backend folders cannot outlive it unlisted.
        remove_previous_run(check_save_folder("save_dir", save_dir))
        path = Path(save_dir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="alexbench-") as tmp:
        yield Path(tmp)


def run_compare(cfg: CompareConfig, progress: Progress = lambda msg: None) -> dict:
    """Run the comparison and return the results document (see results_schema.json)."""
    kwargs = {"budget_bytes": cfg.max_bytes} if cfg.max_bytes else {}
    models = []
    given = load_spec(cfg.spec, **kwargs) if cfg.spec and cfg.models else None  # the spec models must match
    if cfg.models:
        # What a model that records no input size (PyTorch) takes: the spec's, else the given array's.
        spec_shape = given.input_shape if given else (
            tuple(np.shape(cfg.input_array)[-3:]) if cfg.input_array is not None else None)
        models = import_models(cfg.models, progress, cfg.model_input_shape, spec_shape)
    requested = list(DEFAULT_COMPARE) if cfg.backends is None and not models else list(cfg.backends or [])
    # A request that checks nothing fails before any work.
    order = plan_backends(requested, cfg.onnx, [m.name for m in models])
    check_backends(cfg.python, order)
    if models:
        spec, spec_bytes, arrays = models_spec(models, given, cfg.spec)
        # --weights: what the model should hold, for the reference and the other backends (the model
        # runs its own: a difference shows where they part); by default the model's own everywhere.
        weights = run_weights(spec, cfg.weights, cfg.seed, cfg.cache_dir) if cfg.weights else RunWeights(
            f"the model's own ({models[0].name})", weights_sha256(arrays), arrays=arrays)
    else:
        spec = load_spec(cfg.spec or "alexnet", **kwargs)
        spec_bytes = resolve_spec_path(cfg.spec or "alexnet").read_bytes()
        weights = run_weights(spec, cfg.weights, cfg.seed, cfg.cache_dir)
    model_runs = {m.name: m for m in models}
    x, input_source = batch_inputs(cfg, spec, cfg.default_batch())
    criteria = cfg.criteria(spec)
    tol = criteria.tol
    profile = PRECISION_PROFILES.get(cfg.profile_name())

    w_sha = weights.sha256
    doc = new_results(
        "compare", spec, weights=WeightsInfo(weights.source, w_sha),
        inputs=InputsInfo(input_source, int(x.shape[0]),
                          list(x.shape), array_sha256(x), list(cfg.inputs)),
        tolerance=ToleranceInfo(cfg.profile_name(), tol.atol, tol.rtol, criteria.rel_l2, label=cfg.tolerance_label(),
                                derivation=None if profile is None else profile.describe(),
                                layers={n: l2 for n, (_, l2) in criteria.limits.items()} or None),
        precision=cfg.precision)

    def source_of(name: str) -> str | None:
        return None if name in model_runs else onnx_source(name)

    entries: dict[str, object] = {}  # backend -> its entry, in the order workers finish
    unsupported = unsupported_backends(order, spec, cfg.precision)
    # compare --python: every interpreter named is checked before any worker starts (workers/interpreter.py).
    # One that cannot run its backend fails that backend (and the ONNX runs of its export) alone.
    interpreters, refused = probe_backends(cfg.python, [n for n in order if n not in unsupported])
    for name in order:
        gap = None if name in unsupported else export_gap(source_of(name), interpreters, cfg.python)
        if gap:
            unsupported[name] = gap
    for name, reason in unsupported.items():
        entries[name] = unsupported_entry(name, reason)
        progress(f"{name}: unsupported, not run: {reason}")
    exports: dict[str, dict] = {}
    for name, refusal in refused.items():
        entries[name] = failed_entry(name, "start", str(refusal), refusal.status)
        exports[name] = {"error": str(refusal)}
        progress(f"{name}: {refusal.status}, not run: {refusal}")
    planned = [n for n in order if n not in unsupported and n not in refused]

    # Native backends whose export a planned runner needs (ONNX Runtime's, OpenVINO's, or both).
    exporting = list(dict.fromkeys(s for n in planned if (s := source_of(n)) and s in planned))

    # ONNX runs requested without their source backend: its export (cached, or made by an export-only
    # worker) but no run of the source itself. A refused source has none (its runners fail with its reason).
    export_only = list(dict.fromkeys(s for n in planned if (s := source_of(n)) and s not in [*planned, *refused]))

    with open_run_dir(cfg.save_dir) as run_dir, ThreadPoolExecutor(1) as pool, \
            worker_code(bool(interpreters)) as code:
        # The cache checks hash each cached file: on another core, while this one writes the weights. An
        # export made in another interpreter is not cached: the cache's key holds this one's versions.
        lookups = {n: pool.submit(export_cache.lookup, n, spec, w_sha, cfg.cache_dir)
                   for n in exporting + export_only if n not in interpreters}
        spec_path = run_dir / "spec.yaml"
        spec_path.write_bytes(spec_bytes)
        weights_path = weights.file_in(run_dir, copy=bool(cfg.save_dir))
        input_path = run_dir / "input.npy"
        np.save(input_path, x)
        layer_names = [layer.name for layer in spec.layers] if cfg.layers else []
        # Every backend but the float64 oracle runs in the precision asked for; int8 calibrates on the
        # run's own batch (its own file, so a later calibration set can differ from the inputs judged).
        precision_options = {} if cfg.precision == "fp32" else {"precision": cfg.precision}
        if cfg.precision == "int8":
            np.save(run_dir / "calibration.npy", x)
            precision_options["calibration_input"] = str((run_dir / "calibration.npy").resolve())

        outputs: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        saved: dict[str, dict] = {}  # backend -> its .npy files, relative to the run dir
        counts = {"started": 0, "ended": 0}

        def job_for(name: str, **job_kwargs) -> Path:
            options = dict(PARITY_OPTIONS) | ({} if name == "reference" else precision_options)
            if cfg.cache_dir:  # a backend that converts its own file (LiteRT's .tflite) caches it there
                options["cache_dir"] = cfg.cache_dir
            if name in model_runs:  # the user's model runs itself, loaded from its SOURCE
                options.update(model_runs[name].worker_options(run_dir / name / "model"))
                job_kwargs["backend_class"] = model_runs[name].target
            if name in interpreters:  # another Python environment, running alexbench's code from ``code``
                job_kwargs.update(python=cfg.python[name], worker_code=code)
            return make_job(run_dir / name, name, spec_path, weights_path, input_path, layer_names,
                            options=options, env=PARITY_ENV, **job_kwargs)

        def onnx_job(name: str, source: str) -> Path | None:
            if "path" not in exports.get(source, {}):
                reason = exports.get(source, {}).get("error") or f"backend '{source}' did not produce an export"
                entries[name] = failed_entry(name, "export", f"ONNX export from '{source}' failed: {reason}")
                counts["ended"] += 1
                progress(f"{name}: failed, no export to run ({counts['ended']}/{len(planned)} done)")
                return None
            return job_for(name, onnx_path=exports[source]["path"])

        tasks: list[Task] = []
        export_targets: dict[str, Path] = {}
        export_tasks: dict[str, str] = {}  # export-only task -> its source backend
        for source in export_only:
            cached = lookups[source].result()
            if cached is not None:
                exports[source] = {"path": str(cached.path), "info": cached.info, "cache_hit": True}
                progress(f"{source}: ONNX export found in the cache ({cached.path.name})")
                continue
            task_name = f"{source} (export only)"
            export_tasks[task_name] = source
            tasks.append(Task(task_name, partial(_export_job, run_dir / f"export-{source}", source, spec_path,
                                                 weights_path, input_path, cfg.cache_dir),
                              (), cfg.timeout_s, partial(stage_progress, progress, task_name), EXPORT_WORKER))
        source_task = {s: t for t, s in export_tasks.items()}
        for name in planned:
            source = source_of(name)
            on_event = partial(stage_progress, progress, name)
            if source is not None:
                # On a cache hit the export is already there; otherwise wait for the worker that makes it.
                after = () if source in exports else (
                    (source,) if source in planned else (source_task[source],))
                tasks.append(Task(name, lambda n=name, s=source: onnx_job(n, s), after, cfg.timeout_s, on_event))
                continue
            job_kwargs = {}
            cached = lookups[name].result() if name in lookups else None
            if cached is not None:
                exports[name] = {"path": str(cached.path), "info": cached.info, "cache_hit": True}
                progress(f"{name}: ONNX export found in the cache ({cached.path.name})")
            elif name in exporting:
                export_targets[name] = run_dir / name / f"{name}.onnx"
                job_kwargs["export_onnx"] = str(export_targets[name])
            tasks.append(Task(name, lambda n=name, kw=job_kwargs: job_for(n, **kw), (), cfg.timeout_s, on_event))

        def started(name: str, worker) -> None:
            if name in export_tasks:
                progress(f"{name}: exporting to ONNX (cached for the next run)")
                return
            counts["started"] += 1
            progress(f"[{counts['started']}/{len(planned)}] {name}: starting")

        def finished(name: str, result: WorkerResult) -> None:
            if name in export_tasks:  # not a compared backend: it only leaves its export
                path = ((result.result or {}).get("bench") or {}).get("onnx_path")
                if result.status == "ok" and path:
                    exports[export_tasks[name]] = {"path": path, "cache_hit": False}
                else:
                    exports[export_tasks[name]] = {"error": error_text(result)}
                progress(f"{name}: {result.status} in {result.elapsed_s:.1f} s")
                return
            counts["ended"] += 1
            progress(f"{name}: {result.status} in {result.elapsed_s:.1f} s ({counts['ended']}/{len(planned)} done)")
            export_target = export_targets.get(name)
            export_error = (result.result or {}).get("export_error")
            if export_error:
                exports[name] = {"error": export_error}
            elif export_target is not None and result.status == "ok" and export_target.is_file():
                info = (result.result or {}).get("export") or {}
                stored = export_target if name in interpreters else export_cache.store(
                    name, spec, w_sha, export_target, info, cfg.cache_dir)
                exports[name] = {"path": str(stored), "info": info, "cache_hit": False}
            entry = backend_entry(name, result, spec)
            if result.status == "ok":
                outputs[name] = _load_outputs(result.job_dir, result)
                saved[name] = _saved_paths(run_dir, result.job_dir, result)
                if "path" in exports.get(name, {}):
                    entry.onnx = {k: v for k, v in exports[name].items() if k != "path"} | {
                        "file": Path(exports[name]["path"]).name}
            entries[name] = entry

        # A worker that others wait for (an export to make) starts first: it is on the longest path.
        waited_for = {d for task in tasks for d in task.after}
        tasks.sort(key=lambda task: task.name not in waited_for)
        run_tasks(tasks, worker_limit(worker_bytes(spec)), on_start=started, on_done=finished)
        # Plan order, whatever order the workers ended in (the pairwise matrix follows ``outputs``).
        doc.backends.extend(entries[name] for name in order)
        outputs = {name: outputs[name] for name in order if name in outputs}
        saved = {name: saved[name] for name in order if name in saved}

        doc.record(judge(doc.backends, spec, outputs, criteria))
        if cfg.save_dir:
            _write_manifest(run_dir, doc, saved)
    return doc.to_json()


def _export_job(job_dir: Path, source: str, spec_path: Path, weights_path: Path, input_path: Path,
                cache_dir: str | None) -> Path:
    """A worker job that only makes ``source``'s ONNX export, through the export cache."""
    import json

    make_job(job_dir, source, spec_path, weights_path, input_path, env=PARITY_ENV)
    atomic_write(job_dir / "bench.json", json.dumps({"task": "export", "kind": source, "cache_dir": cache_dir}))
    return job_dir


def batch_inputs(cfg: CompareConfig, spec, seeded_batch: int | None) -> tuple[np.ndarray, str]:
    """The run's NCHW float32 batch and where it came from: the API's array, --input files, or
    ``seeded_batch`` seeded inputs (None: the default batch)."""
    if cfg.input_array is not None:
        return given_array(spec, cfg.input_array, cfg.batch), "array"
    if cfg.inputs:
        return file_inputs(spec, cfg.inputs, cfg.batch), "files"
    return seeded_inputs(spec, seeded_batch, cfg.seed), f"seeded normal, seed {cfg.seed}"


def unsupported_backends(order: list[str], spec, precision: str = "fp32", train: bool = False) -> dict[str, str]:
    """Backend -> why it cannot run ``spec`` in ``precision`` (with ``train``: why it cannot train it),
    from what its class declares. An ONNX runner whose source backend cannot compute the spec has no
    export to run; one whose source only lacks the precision runs an fp32 export (an export-only worker
    makes it) and is judged on its own class: the runner converts the precision."""
    found: dict[str, str] = {}
    for_ops: set[str] = set()
    for name in order[1:]:  # the reference always runs, in float64
        try:
            cls = load_backend_class(name)
        except Exception:  # a plugin that cannot be imported here: its worker reports why
            continue
        if train and not cls.trains:
            found[name] = cls.no_train_reason
            continue
        reason = cls.unsupported_reason(spec)
        source = cls.onnx_source
        if reason is None and source in for_ops:
            reason = f"runs the ONNX export of '{source}': {found[source]}"
        if reason is not None:
            for_ops.add(name)
        elif precision != "fp32":
            reason = cls.precision_reason(precision)
        if reason is not None:
            found[name] = reason
    return found


def unsupported_entry(name: str, reason: str):
    """A backend that declares it cannot do what was asked: no worker runs, and the run does not fail."""
    entry = failed_entry(name, "build", reason)
    entry.status = "unsupported"
    return entry


def worker_bytes(spec) -> int:
    """A worker's peak memory, estimated: a framework's own footprint plus a few copies of the weights
    (file, framework tensors, export or session)."""
    return WORKER_BASE_BYTES + WEIGHT_COPIES * 4 * spec.param_count


def stage_progress(progress: Progress, name: str, event: dict) -> None:
    """A worker's stage events as progress lines ("      torch: build...")."""
    if event.get("event") == "stage":
        progress(f"      {name}: {event.get('stage')}...")


def _load_outputs(job_dir: Path, result: WorkerResult) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r = result.result or {}
    output = np.load(job_dir / r["output"])
    layers = {name: np.load(job_dir / rel) for name, rel in (r.get("layers") or {}).items()}
    return output, layers


def _saved_paths(run_dir: Path, job_dir: Path, result: WorkerResult) -> dict:
    r = result.result or {}
    rel = job_dir.relative_to(run_dir)
    return {"output": str(rel / r["output"]),
            "layers": {n: str(rel / path) for n, path in (r.get("layers") or {}).items()}}


def _write_manifest(run_dir: Path, doc: CompareDocument, saved: dict) -> None:
    """Tell a plain NumPy script where everything is (see docs/results.md)."""
    import json

    manifest = {"spec": "spec.yaml", "weights": "weights.safetensors", "input": "input.npy",
                "tolerance": doc.tolerance.to_json(), "backends": saved}
    atomic_write(run_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
