"""Throughput per precision and backend at one batch size on this CPU, with the ratio to float32.

Runs ``alexbench.bench`` (what ``alexbench bench --precision`` does) on alexnet-owt for torch,
keras and onnx-torch at every precision each declares (``bench_precisions``; tf32 is a CUDA mode
and left out); each backend's float32 row is timed in the same run, so a ratio compares two rows
measured minutes apart under the same load. --runs repeats the whole bench; the figures are the
medians over runs of each row's median images/s and of the per-run ratios. int8's calibration
(at build, on seeded images; never in the timed runs) is reported apart.

    python benchmarks/precision.py --runs 3 --write-docs
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

from docs_section import bench_parser, machine_line, publish  # a sibling: the scripts run as files

import alexbench
from alexbench.backends.registry import load_backend_class
from alexbench.harness.bench.method import Method
from alexbench.harness.bench.precisions import NAMES, TF32, declared
from alexbench.harness.bench.table import speedups
from alexbench.harness.workers.bench_entry import CALIBRATION_INPUTS

SECTION = "## alexbench bench --precision (CPU)"
BACKENDS = ("torch", "keras", "onnx-torch")
WANTED = tuple(p for p in NAMES if p != TF32)
FRAMEWORKS = ("torch", "tensorflow", "keras", "onnxruntime")  # float32, float16, bfloat16, int8


def supported(backend: str) -> tuple[str, ...]:
    return tuple(p for p in declared(load_backend_class(backend).bench_precisions) if p in WANTED)


def one_run(spec: str, batch: int, threads: int | None) -> dict:
    precisions = tuple(p for p in WANTED if any(p in supported(b) for b in BACKENDS))
    doc = alexbench.bench(spec=spec, backends=BACKENDS, batch_sizes=(batch,), device="cpu", precisions=precisions,
                          threads=threads, overhead=False, peak=False, progress=print).to_json()
    rows = doc["bench"]["rows"]
    return {"rows": {(r["backend"], r["precision"]): (r["images_per_s"], ratio, r.get("other_cores_busy"))
                     for r, ratio in zip(rows, speedups(rows))},
            "calibration": {b["name"]: b["timings_s"]["calibration"] for b in doc["backends"]
                            if (b.get("timings_s") or {}).get("calibration") is not None},
            "failed": {(f["backend"], f["precision"]): f["error"] for f in doc["bench"]["failures"]}
            | {(b["name"], b.get("precision")): b["error"] for b in doc["backends"] if b["status"] != "ok"},
            "threads": doc["bench"]["settings"]["threads"], "device_name": doc["bench"]["settings"]["device_name"]}


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def render(runs: list[dict], spec: str, batch: int) -> str:
    by_key = defaultdict(list)
    for run in runs:
        for key, value in run["rows"].items():
            by_key[key].append(value)
    busy = max((v[2] or 0 for values in by_key.values() for v in values), default=0)
    m = Method()
    lines = [SECTION, "",
             f"`python benchmarks/precision.py --runs {len(runs)} --write-docs`: `alexbench bench --precision` on "
             f"`{spec}` at batch {batch}, on the CPU, for {', '.join(BACKENDS)} at every precision each declares; "
             f"each backend's float32 row is timed in the same run, and the ratio is images/s over that row's "
             f"(> 1: faster than float32). Medians over {len(runs)} run(s) of each row's median; each row: {m.warmup} "
             f"warm-up runs, then repetitions until {m.min_time_s:g} s and {m.min_reps} runs. int8 (ONNX Runtime "
             f"static QDQ) is calibrated at build on {CALIBRATION_INPUTS} seeded images: that time is a column of "
             f"its own, never in the timed runs.", "",
             f"Machine: {machine_line(runs[0]['device_name'], runs[0]['threads'], FRAMEWORKS)}. "
             f"Run at {time.strftime('%Y-%m-%d %H:%M')}; "
             f"other processes kept up to {busy:.1f} cores busy during a timed row.", "",
             "| backend | precision | images/s | vs float32 | int8 calibration |",
             "|---|---|---:|---:|---:|"]
    calibration = {name: _median(run["calibration"].get(name) for run in runs) for name in BACKENDS}
    for backend in BACKENDS:
        for precision in WANTED:
            values = by_key.get((backend, precision))
            if not values:
                continue
            ratio = _median(v[1] for v in values)
            cal = calibration.get(backend) if precision == "int8" else None
            lines.append(f"| {backend} | {precision} | {_median(v[0] for v in values):,.1f} | "
                         f"{'-' if ratio is None else f'{ratio:.2f}x'} | {'-' if cal is None else f'{cal:.1f} s'} |")
    notes = []
    for backend in BACKENDS:
        missing = [p for p in WANTED if p not in supported(backend)]
        if missing:
            notes.append(f"- {backend}: no {', '.join(missing)} mode declared")
    for (backend, precision), error in sorted({k: v for run in runs for k, v in run["failed"].items()}.items()):
        notes.append(f"- {backend} {precision} failed: {error.splitlines()[0][:200] if error else '?'}")
    if notes:
        lines += ["", "Not in the table:", "", *notes]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = bench_parser(__doc__.split("\n\n")[0], SECTION)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    runs = [one_run(args.spec, args.batch, args.threads) for _ in range(args.runs)]
    publish(SECTION, render(runs, args.spec, args.batch), args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
