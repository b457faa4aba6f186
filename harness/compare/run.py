"""The parity harness: run every backend on the same batch and judge it against the float64
reference, layer by layer, and against each other.

The harness owns files, clocks and tolerances; backends run in their own worker processes
(``backends/runner.py``). ONNX exports come from the native backends' workers and are kept
in the export cache, so a second run reuses them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ...backends.onnx import cache as export_cache
from ...backends.registry import backend_target, onnx_runners, onnx_source
from ...spec import canonical_weights, load_spec, load_weights, save_weights, weights_sha256
from ...spec.loader import resolve_spec_path
from ..inputs import array_sha256, image_inputs, seeded_inputs
from ..results.document import new_results
from ..workers.job import make_job
from ..workers.runner import WorkerResult, run_worker
from .judge import backend_entry, failed_entry, judge
from .metrics import PROFILES, REL_L2_LIMIT, Tolerance

Progress = Callable[[str], None]


@dataclass
class CompareConfig:
    spec: str = "alexnet"
    backends: list[str] = field(default_factory=lambda: ["torch", "keras"])
    onnx: bool = True
    weights: str | None = None
    seed: int = 0
    batch: int = 4
    inputs: list[str] = field(default_factory=list)
    profile: str = "default"
    atol: float | None = None
    rtol: float | None = None
    layers: bool = True
    timeout_s: float = 600.0
    save_dir: str | None = None
    cache_dir: str | None = None
    max_bytes: int | None = None

    def tolerance(self) -> Tolerance:
        base = PROFILES[self.profile]
        return Tolerance(atol=base.atol if self.atol is None else self.atol,
                         rtol=base.rtol if self.rtol is None else self.rtol)


def plan_backends(requested: list[str], onnx: bool) -> list[str]:
    """Reference first, then the requested backends, then the ONNX runs of their exports."""
    order = ["reference"]
    runners = onnx_runners()
    for name in requested:
        backend_target(name)  # unknown names fail before anything runs
        if name not in order:
            order.append(name)
    if onnx:
        order += [runners[n] for n in requested if n in runners and runners[n] not in order]
    return order


@contextmanager
def _run_dir(save_dir: str | None) -> Iterator[Path]:
    if save_dir:
        path = Path(save_dir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="alexbench-") as tmp:
        yield Path(tmp)


def run_compare(cfg: CompareConfig, progress: Progress = lambda msg: None) -> dict:
    """Run the comparison and return the results document (see results_schema.json)."""
    kwargs = {"budget_bytes": cfg.max_bytes} if cfg.max_bytes else {}
    spec = load_spec(cfg.spec, **kwargs)
    if cfg.weights:
        weights = load_weights(cfg.weights, spec)
        weights_source = str(cfg.weights)
    else:
        weights = canonical_weights(spec, cfg.seed)
        weights_source = f"canonical, seed {cfg.seed}"
    x = image_inputs(spec, cfg.inputs) if cfg.inputs else seeded_inputs(spec, cfg.batch, cfg.seed)
    order = plan_backends(cfg.backends, cfg.onnx)
    runners = onnx_runners()
    tol = cfg.tolerance()
    rel_l2 = REL_L2_LIMIT.get(cfg.profile, REL_L2_LIMIT["default"])

    doc = new_results("compare", spec)
    w_sha = weights_sha256(weights)
    doc["weights"] = {"source": weights_source, "sha256": w_sha}
    doc["inputs"] = {"source": "files" if cfg.inputs else f"seeded normal, seed {cfg.seed}",
                     "batch": int(x.shape[0]), "shape": list(x.shape), "sha256": array_sha256(x),
                     "files": list(cfg.inputs)}
    doc["tolerance"] = {"profile": cfg.profile, "atol": tol.atol, "rtol": tol.rtol, "rel_l2": rel_l2}

    with _run_dir(cfg.save_dir) as run_dir:
        spec_path = run_dir / "spec.yaml"
        shutil.copyfile(resolve_spec_path(cfg.spec), spec_path)
        weights_path = run_dir / "weights.safetensors"
        save_weights(weights, weights_path, metadata={"spec": spec.name})
        input_path = run_dir / "input.npy"
        np.save(input_path, x)
        layer_names = [layer.name for layer in spec.layers] if cfg.layers else []

        outputs: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        saved: dict[str, dict] = {}  # backend -> its .npy files, relative to the run dir
        exports: dict[str, dict] = {}
        for index, name in enumerate(order, 1):
            job_kwargs = {}
            export_target = None
            if runners.get(name) in order:
                cached = export_cache.lookup(name, spec, w_sha, cfg.cache_dir)
                if cached is not None:
                    exports[name] = {"path": str(cached.path), "info": cached.info, "cache_hit": True}
                    progress(f"{name}: ONNX export found in the cache ({cached.path.name})")
                else:
                    export_target = run_dir / name / f"{name}.onnx"
                    job_kwargs["export_onnx"] = str(export_target)
            source = onnx_source(name)
            if source is not None:
                if "path" not in exports.get(source, {}):
                    reason = exports.get(source, {}).get("error") or f"backend '{source}' did not produce an export"
                    error = f"ONNX export from '{source}' failed: {reason}"
                    doc["backends"].append(failed_entry(name, "export", error))
                    continue
                job_kwargs["onnx_path"] = exports[source]["path"]
            job_dir = make_job(run_dir / name, name, spec_path, weights_path, input_path, layer_names, **job_kwargs)
            progress(f"[{index}/{len(order)}] {name}: starting")
            started = time.perf_counter()
            result = run_worker(job_dir, cfg.timeout_s, on_event=lambda event, n=name: _stage_progress(
                progress, n, event))
            progress(f"[{index}/{len(order)}] {name}: {result.status} in {time.perf_counter() - started:.1f} s")
            export_error = (result.result or {}).get("export_error")
            if export_error:
                exports[name] = {"error": export_error}
            elif export_target is not None and result.status == "ok" and export_target.is_file():
                info = (result.result or {}).get("export") or {}
                stored = export_cache.store(name, spec, w_sha, export_target, info, cfg.cache_dir)
                exports[name] = {"path": str(stored), "info": info, "cache_hit": False}
            entry = backend_entry(name, result, spec)
            if result.status == "ok":
                outputs[name] = _load_outputs(job_dir, result)
                saved[name] = _saved_paths(run_dir, job_dir, result)
                if "path" in exports.get(name, {}):
                    entry["onnx"] = {k: v for k, v in exports[name].items() if k != "path"} | {
                        "file": Path(exports[name]["path"]).name}
            doc["backends"].append(entry)

        judge(doc, spec, outputs, tol, rel_l2)
        if cfg.save_dir:
            _write_manifest(run_dir, doc, saved)
    return doc


def _stage_progress(progress: Progress, name: str, event: dict) -> None:
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


def _write_manifest(run_dir: Path, doc: dict, saved: dict) -> None:
    """Tell a plain NumPy script where everything is (see docs/results.md)."""
    import json

    manifest = {"spec": "spec.yaml", "weights": "weights.safetensors", "input": "input.npy",
                "tolerance": doc["tolerance"], "backends": saved}
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
