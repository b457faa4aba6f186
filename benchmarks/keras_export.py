"""Keras -> ONNX export time, before and after: Keras' own ``model.export(format="onnx")`` and
tf2onnx's ``from_keras`` against the route alexbench uses (tf2onnx ``from_function`` on the
model's ``stateless_call``, weights attached as initializers afterwards; backends/keras/export.py).

    python benchmarks/keras_export.py                 # alexnet, 3 runs per route, prints the table
    python benchmarks/keras_export.py --write-docs    # and rewrites its section of docs/benchmarks.md

Every run is a fresh interpreter (no TF graph or tracing cache carried over) that builds the
Keras model, then times the export (conversion + writing the file) and, separately, the checks
every alexbench export passes (ONNX checker with full_check, strict shape inference, I/O
shapes). The first run of each route also runs the file in ONNX Runtime against the float64
reference, so every route timed is a correct export. Reported: medians, with min and max.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docs_section import DOCS, write_section  # a sibling: the scripts run as files

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Keras → ONNX export time"
BEFORE = "keras_export"  # what the Keras backend's export_onnx did before this route
# route -> (keras_route, extra environment, description)
ROUTES = {
    "keras_export": ("keras_export", {}, "Keras `model.export(format=\"onnx\")` (before)"),
    "from_keras": ("from_keras", {}, "tf2onnx `convert.from_keras`, defaults"),
    "from_keras_no_copy": ("from_keras", {"TF2ONNX_CATCH_ERRORS": "FALSE"},
                           "the same, `TF2ONNX_CATCH_ERRORS=FALSE` (no graph deep copy before each optimizer pass)"),
    "stateless": ("stateless", {}, "tf2onnx `from_function` on `stateless_call`, weights attached after (after)"),
}


def one_run(route: str, spec_name: str, verify: bool) -> dict:
    """In a fresh interpreter: build, export, check (and verify); return the timings."""
    from alexbench.backends.keras.export import export_keras_model
    from alexbench.backends.keras.lowering import keras_model_from_spec
    from alexbench.backends.keras.runtime import import_keras
    from alexbench.backends.onnx.inspect import describe
    from alexbench.spec import canonical_weights, load_spec

    import_keras("tensorflow")
    spec = load_spec(spec_name)
    weights = canonical_weights(spec, seed=0)
    model = keras_model_from_spec(spec, weights)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        start = time.perf_counter()
        if ROUTES[route][0] == "keras_export":
            import tensorflow as tf

            c, h, w = spec.input_shape
            model.export(str(path), format="onnx", verbose=False,
                         input_signature=[tf.TensorSpec((None, h, w, c), tf.float32, name="input")])
            info = describe(path, spec, exporter="keras model.export(format='onnx')",
                            export_s=time.perf_counter() - start)
        else:
            info = export_keras_model(model, spec, path, keras_route=ROUTES[route][0])
        total = time.perf_counter() - start
        result = {"route": route, "export_s": info.export_s, "check_s": info.check_s, "total_s": round(total, 3),
                  "size_mb": round(path.stat().st_size / 1e6, 1), "params": spec.param_count,
                  "exporter": info.exporter, "versions": info.versions}
        if verify:
            result["agreement"] = _agreement(spec, weights, path)
    return result


def _agreement(spec, weights, path: Path) -> dict:
    import numpy as np
    import onnxruntime as ort

    from alexbench.backends.reference.backend import reference_forward
    from alexbench.harness.compare.metrics import PROFILES, REL_L2_LIMIT, agreement
    from alexbench.harness.inputs import seeded_inputs

    x = seeded_inputs(spec, 2, seed=0)
    ref, _ = reference_forward(spec, weights, x, [])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x.transpose(0, 2, 3, 1))})[0]
    a = agreement(ref, out, PROFILES["default"], REL_L2_LIMIT["default"])
    return {"ok": a.ok, "rel_l2": a.rel_l2, "max_abs_over_ref": a.max_abs / a.ref_max}


def _child(route: str, spec: str, verify: bool) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", **ROUTES[route][1]}
    cmd = [sys.executable, __file__, "--one", route, "--spec", spec] + (["--verify"] if verify else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{route} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPU cores visible, Python {platform.python_version()}"


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def render(spec: str, runs: dict[str, list[dict]]) -> str:
    first = next(iter(runs.values()))[0]
    before = statistics.median(r["export_s"] for r in runs[BEFORE])
    after = statistics.median(r["export_s"] for r in runs["stateless"])
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items())
    lines = [
        SECTION, "",
        f"The Keras model of `{spec}` ({first['params']:,} parameters, {first['size_mb']} MB file) exported to ONNX, "
        f"{len(runs[BEFORE])} runs per route, each in a fresh interpreter; medians (min–max). Export = "
        "conversion + writing the file; checks = `onnx.checker.check_model(full_check=True)`, strict shape "
        "inference and the I/O shapes against the spec, which every route passes. The first run of each route "
        "also ran its file in ONNX Runtime against the float64 reference (default tolerances).", "",
        f"Machine: {_machine()}. Versions: {versions}. Written by `python benchmarks/keras_export.py --write-docs`.",
        "", "| route | export | checks | agrees with reference (rel L2) |", "|---|---|---|---|",
    ]
    for route, rows in runs.items():
        agree = rows[0].get("agreement") or {}
        lines.append(f"| {ROUTES[route][2]} | {_stats([r['export_s'] for r in rows])} | "
                     f"{_stats([r['check_s'] for r in rows])} | "
                     f"{'yes' if agree.get('ok') else 'NO'} ({agree.get('rel_l2', float('nan')):.1e}) |")
    lines += [
        "", f"**Export {before / after:.0f}x faster** ({before:.1f} s → {after:.1f} s) than Keras' own export, "
        "which the Keras backend used before.", "",
        "Why: Keras' export and `from_keras` both hand tf2onnx a function that captures the weights. tf2onnx "
        "freezes them into the TensorFlow graph, runs Grappler on it, and its `optimize_graph` deep-copies the "
        "whole ONNX graph, weights included, before each of its ~12 optimizer passes and re-serialises every "
        "constant after each pass: the cost grows with the weight bytes. `TF2ONNX_CATCH_ERRORS=FALSE` removes the "
        "copies but not the rest; `large_model=True` (external tensors) fails under NumPy 2 in tf2onnx 1.17 "
        "(`np.product` is gone) and, shimmed, still freezes and converts the weights. The route alexbench uses traces "
        "`model.stateless_call(variables, x)` as a `tf.function` whose arguments are the input and every variable, "
        "so tf2onnx converts and optimises a graph without weights; the variables' values are then attached as "
        "initializers named by their Keras path. The kernel transposes, group slices and BatchNorm scale/shift "
        "stay as nodes on those initializers, which ONNX Runtime folds when it loads the file; the export is "
        "cached by content hash (`backends/onnx/cache.py`), so a second run does not export at all.", "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="alexnet")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated subset of {', '.join(ROUTES)}")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite '{SECTION}' in {DOCS}")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one, args.spec, args.verify)))
        return 0
    routes = args.routes.split(",")
    runs: dict[str, list[dict]] = {route: [] for route in routes}
    for i in range(args.runs):  # interleaved, so a slow spell of the machine hits every route alike
        for route in routes:
            row = _child(route, args.spec, verify=i == 0)
            runs[route].append(row)
            print(f"run {i + 1}/{args.runs} {route}: export {row['export_s']:.2f} s, checks {row['check_s']:.2f} s",
                  flush=True)
    for route, rows in runs.items():
        export, checks = _stats([r["export_s"] for r in rows]), _stats([r["check_s"] for r in rows])
        print(f"{route:>20}: export {export}, checks {checks}")
    after = statistics.median(r["export_s"] for r in runs["stateless"]) if "stateless" in runs else None
    for route in (r for r in runs if r != "stateless" and after):
        before = statistics.median(r["export_s"] for r in runs[route])
        print(f"ratio {route} / stateless: {before / after:.1f}x ({before:.2f} s -> {after:.2f} s)")
    if args.write_docs:
        if set(runs) != set(ROUTES):
            print("--write-docs needs every route; docs not written", file=sys.stderr)
            return 2
        write_section(SECTION, render(args.spec, runs))
        print(f"wrote '{SECTION}' in {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
