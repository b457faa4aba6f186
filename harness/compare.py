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

from ..backends import export_cache
from ..backends.registry import backend_target
from ..backends.runner import WorkerResult, make_job, run_worker
from ..spec import ModelSpec, canonical_weights, load_spec, load_weights, save_weights, weights_sha256
from ..spec.loader import resolve_spec_path
from .inputs import array_sha256, image_inputs, seeded_inputs
from .metrics import PROFILES, REL_L2_LIMIT, Agreement, Tolerance, agreement, topk_agreement
from .results import new_results

EXIT_OK, EXIT_MISMATCH, EXIT_BACKEND = 0, 1, 3

# Native backend -> the ONNX Runtime backend that runs its export.
ONNX_OF = {"torch": "onnx-torch", "keras": "onnx-keras"}

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
    for name in requested:
        backend_target(name)  # unknown names fail before anything runs
        if name not in order:
            order.append(name)
    if onnx:
        order += [ONNX_OF[n] for n in requested if n in ONNX_OF and ONNX_OF[n] not in order]
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
            if name in ONNX_OF and ONNX_OF[name] in order:
                cached = export_cache.lookup(name, spec, w_sha, cfg.cache_dir)
                if cached is not None:
                    exports[name] = {"path": str(cached.path), "info": cached.info, "cache_hit": True}
                    progress(f"{name}: ONNX export found in the cache ({cached.path.name})")
                else:
                    export_target = run_dir / name / f"{name}.onnx"
                    job_kwargs["export_onnx"] = str(export_target)
            source = _onnx_source(name)
            if source is not None:
                if "path" not in exports.get(source, {}):
                    reason = exports.get(source, {}).get("error") or f"backend '{source}' did not produce an export"
                    doc["backends"].append(_failed(name, "export", f"ONNX export from '{source}' failed: {reason}"))
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
            entry = _backend_entry(name, result, spec)
            if result.status == "ok":
                outputs[name] = _load_outputs(job_dir, result)
                saved[name] = _saved_paths(run_dir, job_dir, result)
                if "path" in exports.get(name, {}):
                    entry["onnx"] = {k: v for k, v in exports[name].items() if k != "path"} | {
                        "file": Path(exports[name]["path"]).name}
            doc["backends"].append(entry)

        _judge(doc, spec, outputs, tol, rel_l2)
        if cfg.save_dir:
            _write_manifest(run_dir, doc, saved)
    return doc


def _onnx_source(name: str) -> str | None:
    for native, onnx_name in ONNX_OF.items():
        if onnx_name == name:
            return native
    return None


def _stage_progress(progress: Progress, name: str, event: dict) -> None:
    if event.get("event") == "stage":
        progress(f"      {name}: {event.get('stage')}...")


def _failed(name: str, stage: str, error: str) -> dict:
    return {"name": name, "status": "failed", "stage": stage, "error": error, "stderr_tail": None,
            "output_shape": None, "shape_ok": None, "param_count": None, "param_count_ok": None,
            "metrics": None, "layers": [], "missing_layers": [], "first_divergent_layer": None}


def _backend_entry(name: str, result: WorkerResult, spec: ModelSpec) -> dict:
    if result.status != "ok":
        entry = _failed(name, result.stage or "run", _error_text(result))
        entry["status"] = "unavailable" if result.status == "unavailable" else "failed"
        entry["stderr_tail"] = result.stderr_tail or None
        entry["timings_s"] = {"total": round(result.elapsed_s, 3)}
        return entry
    r = result.result or {}
    shape = list(r.get("output_shape") or [])
    count = r.get("param_count")
    return {
        "name": name, "status": "ok", "stage": None, "error": None, "stderr_tail": None,
        "output_shape": shape, "shape_ok": shape[1:] == list(spec.output_shape),
        "param_count": count, "param_count_ok": count == spec.param_count or r.get("param_explained") is True,
        "param_note": r.get("param_note"),
        "metrics": None, "layers": [], "missing_layers": list(r.get("missing_layers") or []),
        "first_divergent_layer": None, "environment": r.get("environment") or {},
        "timings_s": {**{k: v for k, v in (r.get("timings_s") or {}).items()}, "total": round(result.elapsed_s, 3)},
    }


def _error_text(result: WorkerResult) -> str:
    if result.status == "timeout":
        return f"timed out after {result.elapsed_s:.0f} s" + (f" during {result.stage}" if result.stage else "")
    if result.status == "crashed":
        return f"worker crashed ({result.signal or f'exit code {result.returncode}'})" + (
            f" during {result.stage}" if result.stage else "")
    return result.error or f"worker failed (exit code {result.returncode})"


def _load_outputs(job_dir: Path, result: WorkerResult) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r = result.result or {}
    output = np.load(job_dir / r["output"])
    layers = {name: np.load(job_dir / rel) for name, rel in (r.get("layers") or {}).items()}
    return output, layers


def _layer_row(name: str, a: Agreement) -> dict:
    j = a.to_json()
    return {"name": name, "max_abs": j["max_abs"], "rel_l2": j["rel_l2"], "ok": a.ok, "min_atol": j["min_atol"]}


def _judge(doc: dict, spec: ModelSpec, outputs: dict, tol: Tolerance, rel_l2: float) -> None:
    ref = outputs.get("reference")
    order = [layer.name for layer in spec.layers]
    mismatch = failed = False
    for entry in doc["backends"]:
        name = entry["name"]
        if entry["status"] != "ok":
            failed = True
            continue
        if ref is None or name == "reference":
            continue
        out, layers = outputs[name]
        a = agreement(ref[0], out, tol, rel_l2, names=("reference", name))
        metrics = a.to_json()
        metrics["top1"] = topk_agreement(ref[0], out, 1) if a.shape_ok else None
        metrics["top5"] = topk_agreement(ref[0], out, 5) if a.shape_ok else None
        entry["metrics"] = metrics
        rows = [_layer_row(n, agreement(ref[1][n], layers[n], tol, rel_l2)) for n in order
                if n in layers and n in ref[1]]
        entry["layers"] = rows
        entry["first_divergent_layer"] = next((row for row in rows if not row["ok"]), None)
        bad = (not a.ok or not entry["shape_ok"] or not entry["param_count_ok"]
               or entry["first_divergent_layer"] is not None)
        if bad:
            entry["status"] = "mismatch"
            mismatch = True
    doc["pairwise"] = _pairwise({n: o[0] for n, o in outputs.items()})
    code = EXIT_MISMATCH if mismatch else EXIT_BACKEND if failed else EXIT_OK
    doc["verdict"] = {"exit_code": code, "summary": _verdict_text(doc, code)}


def _pairwise(outputs: dict[str, np.ndarray]) -> dict:
    names = list(outputs)
    max_abs, rel = [], []
    for a in names:
        row_abs, row_rel = [], []
        for b in names:
            x, y = outputs[a].astype(np.float64), outputs[b].astype(np.float64)
            if x.shape != y.shape:
                row_abs.append(None)
                row_rel.append(None)
                continue
            scale = max(np.linalg.norm(x), np.linalg.norm(y))
            row_abs.append(float(np.abs(x - y).max(initial=0.0)))
            row_rel.append(float(np.linalg.norm(x - y) / scale) if scale > 0 else 0.0)
        max_abs.append(row_abs)
        rel.append(row_rel)
    return {"names": names, "max_abs": max_abs, "rel_l2": rel}


def _verdict_text(doc: dict, code: int) -> str:
    entries = doc["backends"]
    compared = [e for e in entries if e["name"] != "reference"]
    ok = [e["name"] for e in compared if e["status"] == "ok"]
    bad = [e["name"] for e in compared if e["status"] == "mismatch"]
    failed = [e["name"] for e in entries if e["status"] in ("failed", "unavailable")]
    spec = doc["spec"]["name"]
    if code == EXIT_OK:
        return f"PASS: {len(ok)} backends agree with the float64 reference on '{spec}' ({', '.join(ok)})"
    parts = []
    if bad:
        parts.append("mismatch: " + ", ".join(bad))
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if ok:
        parts.append("agree: " + ", ".join(ok))
    return f"FAIL on '{spec}': " + "; ".join(parts)


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
