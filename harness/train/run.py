"""`alexbench compare --train`: N SGD steps on the same batch in every backend that trains, each in its
own worker, side by side, then judged step by step against the float64 reference (judge.py).

The run shares compare's plan (reference first, the requested backends, the ONNX runners, which are
"unsupported": they run inference graphs), its workers, scheduler and progress lines, and its run folder.
The workers read one train.npz (batch, labels, every step's dropout masks: data.py) and write every
step's gradients, parameters and momentum buffers as .npy files, which stay with --save DIR.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from ...backends.registry import DEFAULT_COMPARE
from ...spec import load_spec, load_weights
from ...spec.files import atomic_write
from ...spec.loader import resolve_spec_path
from ..compare.judge import backend_entry, failed_entry
from ..compare.run import (
    PARITY_ENV,
    PARITY_OPTIONS,
    WORKER_BASE_BYTES,
    CompareConfig,
    Progress,
    batch_inputs,
    open_run_dir,
    plan_backends,
    stage_progress,
    unsupported_backends,
    unsupported_entry,
)
from ..errors import UsageError
from ..inputs import array_sha256
from ..results.document import new_results
from ..results.model import CompareEntry, InputsInfo, TrainingInfo, WeightsInfo
from ..run_weights import run_weights
from ..workers.bundle import worker_code
from ..workers.interpreter import check_backends, probe_backends
from ..workers.job import make_job
from ..workers.runner import WorkerResult
from ..workers.scheduler import Task, run_tasks, worker_limit
from .data import DEFAULT_TRAIN_BATCH, train_data, write_train_npz
from .judge import TrainRun, judge_training
from .tolerance import train_limits

# What the run keeps per step, backend and parameter, at most: gradient, parameter and momentum buffer
# in float64 (the reference's; the frameworks' are float32).
KINDS_KEPT = 3
BYTES_KEPT = 8  # float64: the reference's arrays (a framework's are float32, half that)
# A training worker holds weights, gradients, momentum buffers and the initial weights, in float64 for
# the reference (twice once its kink shadow parts from it: backends/reference/spread.py), and the
# framework's own copies.
TRAIN_WEIGHT_COPIES = 12


def check_train_options(cfg: CompareConfig) -> None:
    """Refuse what --train cannot do, and training options without --train (UsageError, exit 2)."""
    if not cfg.train:
        for option, value in (("--labels", cfg.labels), ("--steps", cfg.steps)):
            if value is not None:
                raise UsageError(f"{option} {value}: is an option of training; received it without --train; "
                                 f"add --train to run SGD steps")
        return
    if cfg.precision != "fp32":
        raise UsageError(f"--train: received --precision {cfg.precision}; training is compared in fp32 only "
                         f"(float32 backends against the float64 reference): drop --precision")
    if cfg.models:
        raise UsageError(f"--train: received --model {cfg.models[0]}; a user's own model runs inference only for "
                         f"now: train a spec (--spec) instead")
    if cfg.steps is not None and (isinstance(cfg.steps, bool) or not isinstance(cfg.steps, int) or cfg.steps < 1):
        raise UsageError(f"--steps: received {cfg.steps!r}; expected a whole number of SGD steps >= 1")


def _check_spec(spec) -> None:
    unmodelled = spec.training.unmodelled
    if unmodelled:
        layer, what = next(iter(unmodelled.items()))
        more = f" (and {len(unmodelled) - 1} more)" if len(unmodelled) > 1 else ""
        raise UsageError(f"--train: spec '{spec.name}' ({spec.source}) records training settings alexbench does not "
                         f"model: layer '{layer}': {what}{more}; expected only what docs/training.md lists (sgd, "
                         f"weight decay, l2 penalties): remove them to train without them")


def _check_disk(folder: str | None, spec, steps: int, backends: int) -> None:
    """Refuse a run whose arrays would not fit where they are written: per step and backend, a gradient,
    the parameters and a momentum buffer of every tensor, float64 for the reference, float32 otherwise."""
    where = Path(folder or tempfile.gettempdir()).resolve()
    while not where.exists():
        where = where.parent
    per_step = KINDS_KEPT * spec.param_count * (BYTES_KEPT + (backends - 1) * BYTES_KEPT // 2)
    need = steps * per_step
    free = shutil.disk_usage(where).free
    if need > free:
        raise UsageError(f"--train: {steps} step(s) of {backends} backends keep up to {need / 1e9:.1f} GB of tensors "
                         f"({KINDS_KEPT} kinds x {spec.param_count:,} parameters per backend and step, float64 for the "
                         f"reference, float32 for the others), but {where} has {free / 1e9:.1f} GB free; use fewer "
                         f"--steps or --backends, or --save DIR on a larger disk")


def train_worker_bytes(spec) -> int:
    return WORKER_BASE_BYTES + TRAIN_WEIGHT_COPIES * BYTES_KEPT * spec.param_count


def _step_progress(progress: Progress, name: str, event: dict) -> None:
    if event.get("event") == "train_step":
        progress(f"      {name}: step {event.get('step')}/{event.get('steps')}, loss {event.get('loss'):.6g}")
    else:
        stage_progress(progress, name, event)


def run_train(cfg: CompareConfig, progress: Progress = lambda msg: None) -> dict:
    """Run the training comparison and return the results document (results_schema.json, /3)."""
    check_train_options(cfg)
    steps = cfg.steps or 1
    kwargs = {"budget_bytes": cfg.max_bytes} if cfg.max_bytes else {}
    spec = load_spec(cfg.spec or "alexnet", **kwargs)
    _check_spec(spec)
    spec_bytes = resolve_spec_path(cfg.spec or "alexnet").read_bytes()
    requested = list(DEFAULT_COMPARE) if cfg.backends is None else list(cfg.backends)
    order = plan_backends(requested, cfg.onnx)
    check_backends(cfg.python, order)
    entries: dict[str, CompareEntry] = {}
    unsupported = unsupported_backends(order, spec, train=True)
    # --python: as in compare, each interpreter is checked before any work; one that cannot run its
    # backend's worker fails that backend alone (workers/interpreter.py).
    interpreters, refused = probe_backends(cfg.python, [n for n in order if n not in unsupported])
    planned = [n for n in order if n not in unsupported and n not in refused]
    _check_disk(cfg.save_dir, spec, steps, len(planned))
    weights = run_weights(spec, cfg.weights, cfg.seed, cfg.cache_dir)
    x, input_source = batch_inputs(cfg, spec, DEFAULT_TRAIN_BATCH if cfg.batch is None else cfg.batch)
    data = train_data(spec, x, steps, cfg.seed, cfg.labels)
    batch = int(x.shape[0])
    limits = train_limits(spec, batch, steps)
    for name, reason in unsupported.items():
        entries[name] = unsupported_entry(name, reason)
        progress(f"{name}: unsupported, not run: {reason}")
    for name, refusal in refused.items():
        entries[name] = failed_entry(name, "start", str(refusal), refusal.status)
        progress(f"{name}: {refusal.status}, not run: {refusal}")

    doc = new_results("compare", spec, weights=WeightsInfo(weights.source, weights.sha256),
                      inputs=InputsInfo(input_source, batch, list(x.shape), array_sha256(x), list(cfg.inputs)),
                      precision="fp32")
    runs: dict[str, TrainRun] = {}
    with open_run_dir(cfg.save_dir) as run_dir, worker_code(bool(interpreters)) as code:
        spec_path = run_dir / "spec.yaml"
        spec_path.write_bytes(spec_bytes)
        weights_path = weights.file_in(run_dir, copy=bool(cfg.save_dir))
        input_path = run_dir / "input.npy"
        np.save(input_path, x)
        data_path = write_train_npz(run_dir / "train.npz", data)
        options = dict(PARITY_OPTIONS) | {"train": {"steps": steps, "data": str(data_path.resolve())}}
        counts = {"started": 0, "ended": 0}

        def job_for(name: str) -> Path:
            # Another Python environment (--python) runs alexbench's code from ``code``.
            where = {"python": cfg.python[name], "worker_code": code} if name in interpreters else {}
            return make_job(run_dir / name, name, spec_path, weights_path, input_path, options=options,
                            env=PARITY_ENV, **where)

        def started(name: str, worker) -> None:
            counts["started"] += 1
            progress(f"[{counts['started']}/{len(planned)}] {name}: starting")

        def finished(name: str, result: WorkerResult) -> None:
            counts["ended"] += 1
            progress(f"{name}: {result.status} in {result.elapsed_s:.1f} s ({counts['ended']}/{len(planned)} done)")
            if result.status != "ok":
                entries[name] = backend_entry(name, result, spec)
                return
            train = (result.result or {}).get("train")
            if train is None:  # a worker that ran inference: not this run's
                entries[name] = failed_entry(name, "train", "the worker returned no training steps")
                return
            runs[name] = TrainRun.from_result(result.job_dir, train)
            r = result.result
            entries[name] = CompareEntry(
                name=name, status="ok", param_count=r.get("param_count"),
                param_count_ok=r.get("param_count") == spec.param_count or r.get("param_explained") is True,
                param_note=r.get("param_note"), environment=r.get("environment") or {},
                timings_s={**(r.get("timings_s") or {}), "total": round(result.elapsed_s, 3)})

        tasks = [Task(name, partial(job_for, name), (), cfg.timeout_s, partial(_step_progress, progress, name))
                 for name in planned]
        run_tasks(tasks, worker_limit(train_worker_bytes(spec)), on_start=started, on_done=finished)

        progress("judging the steps against the reference...")
        judgement = judge_training([entries[n] for n in order], spec, runs, limits, load_weights(weights_path, spec))
        doc.backends = judgement.backends
        doc.verdict = judgement.verdict
        doc.training = TrainingInfo(steps, batch, spec.training.settings() | {"loss_on": spec.loss_on},
                                    data.labels_info(), data.masks_info(), judgement.tolerance)
        if cfg.save_dir:
            _write_manifest(run_dir, doc, runs)
    return doc.to_json()


def _write_manifest(run_dir: Path, doc, runs: dict[str, TrainRun]) -> None:
    """Tell a plain NumPy script where every step's arrays are (docs/training.md)."""
    def rel(path: Path) -> str:
        return str(path.relative_to(run_dir))

    training = {name: {"losses": run.losses, "data_losses": run.data_losses,
                       "steps": [{kind: {t: rel(p) for t, p in files.items()} for kind, files in step.items()}
                                 for step in run.files]}
                for name, run in runs.items()}
    manifest = {"spec": "spec.yaml", "weights": "weights.safetensors", "input": "input.npy", "train": "train.npz",
                "tolerance": doc.training.tolerance.to_json(), "backends": {}, "training": training}
    atomic_write(run_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")

