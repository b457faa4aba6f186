"""Every CPU runtime side by side: images/s at batch 1, 8 and 64, and each row's share of the matmul peak.

Runs ``alexbench.bench`` (what ``alexbench bench`` does) on alexnet-owt for every runtime alexbench
drives — torch, Keras on TensorFlow, ONNX Runtime and OpenVINO on both exports, LiteRT on its XNNPACK
path — with the matmul peak measured in the same run (a 4096^3 float32 product in every GEMM library
the backends offer; the fastest counts). --runs repeats the whole bench; the figures are medians over
runs of each row's median and of its peak share, so a share compares a row with a peak measured
minutes apart under the same load.

    python benchmarks/runtimes.py --runs 3 --write-docs
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

from docs_section import bench_parser, machine_line, publish  # a sibling: the scripts run as files

import alexbench
from alexbench.harness.bench.method import Method

SECTION = "## Every runtime side by side (CPU)"
RUNTIMES = ("torch", "keras", "onnx-torch", "onnx-keras", "openvino-torch", "openvino-keras", "litert")
BATCHES = (1, 8, 64)
FRAMEWORKS = ("torch", "tensorflow", "keras", "onnxruntime", "openvino", "ai_edge_litert")
GOAL = 0.85  # the fastest runtime at batch 64 should reach this share of the measured matmul peak


def one_run(spec: str, threads: int | None) -> dict:
    doc = alexbench.bench(spec=spec, backends=RUNTIMES, batch_sizes=BATCHES, device="cpu", threads=threads,
                          overhead=False, peak=True, progress=print).to_json()
    bench = doc["bench"]
    peak = (bench.get("peak") or {}).get("measured", {}).get("float32") or {}
    return {"rows": {(r["backend"], r["batch"]): (r["images_per_s"], r.get("peak_share"), r.get("execution"),
                                                  r.get("other_cores_busy"))
                     for r in bench["rows"] if r["precision"] == "float32" and not r.get("variant")},
            "peak": (peak.get("gflops"), peak.get("library")),
            "failed": {b["name"]: (b.get("error") or b["status"]) for b in doc["backends"] if b["status"] != "ok"},
            "threads": bench["settings"]["threads"], "device_name": bench["settings"]["device_name"]}


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def render(runs: list[dict], spec: str) -> str:
    by_key = defaultdict(list)
    for run in runs:
        for key, value in run["rows"].items():
            by_key[key].append(value)
    busy = max((v[3] or 0 for values in by_key.values() for v in values), default=0)
    peak = _median(run["peak"][0] for run in runs)
    libraries = sorted({run["peak"][1] for run in runs if run["peak"][1]})
    m = Method()
    lines = [SECTION, "",
             f"`python benchmarks/runtimes.py --runs {len(runs)} --write-docs`: `alexbench bench` on `{spec}`, float32 "
             f"on the CPU, every runtime in its own worker, one at a time; each row: {m.warmup} warm-up runs, then "
             f"repetitions until {m.min_time_s:g} s and {m.min_reps} runs. Cells: images/s (share of the matmul peak "
             f"measured in the same run). Medians over {len(runs)} run(s).", "",
             f"Machine: {machine_line(runs[0]['device_name'], runs[0]['threads'], FRAMEWORKS)}. "
             f"Run at {time.strftime('%Y-%m-%d %H:%M')}; other processes kept up to {busy:.1f} cores busy during a "
             f"timed row.", "",
             f"Matmul peak: {'not measured' if peak is None else f'{peak:,.0f} GFLOP/s'} "
             f"({', '.join(libraries) or '-'}, the fastest library of each run).", "",
             "| runtime | execution | " + " | ".join(f"batch {b}" for b in BATCHES) + " |",
             "|---|---|" + "---:|" * len(BATCHES)]
    best: tuple[float, str] | None = None
    for backend in RUNTIMES:
        cells, execution = [], ""
        for batch in BATCHES:
            values = by_key.get((backend, batch))
            if not values:
                cells.append("-")
                continue
            rate, share = _median(v[0] for v in values), _median(v[1] for v in values)
            execution = values[0][2] or ""
            cells.append(f"{rate:,.1f}" + ("" if share is None else f" ({share:.0%})"))
            if batch == BATCHES[-1] and share is not None and (best is None or share > best[0]):
                best = (share, backend)
        if any(c != "-" for c in cells):
            lines.append(f"| {backend} | {execution} | " + " | ".join(cells) + " |")
    if best is not None:
        verdict = "reaches" if best[0] >= GOAL else "falls short of"
        lines += ["", f"Fastest at batch {BATCHES[-1]}: **{best[1]}**, {best[0]:.0%} of the measured matmul peak: "
                      f"it {verdict} the {GOAL:.0%} goal."]
    failed = {name: error for run in runs for name, error in run["failed"].items()}
    if failed:
        lines += ["", "Not in the table:", ""]
        lines += [f"- {name}: {str(error).splitlines()[0][:200]}" for name, error in sorted(failed.items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = bench_parser(__doc__.split("\n\n")[0], SECTION).parse_args()
    runs = [one_run(args.spec, args.threads) for _ in range(args.runs)]
    publish(SECTION, render(runs, args.spec), args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
