"""What training costs on this machine, in one run: `alexbench compare --train` against `alexbench compare`
(wall time, same spec, batch and backends), and `alexbench bench --train` against `alexbench bench`
(images/s per backend and batch size).

Compare: each run is a fresh `alexbench` process with the same arguments, with and without --train
(ONNX left out: its runtimes do not train); one untimed run of each first fills the weights cache;
then the two kinds alternate, so that load on a shared machine hits them alike. Medians over --runs,
with the slowest backend's worker (its timings_s.total) beside each: where the time goes.
Bench: each mode once per --bench-runs, alternating, by the bench's own method (warm-up, then
repetitions until 1 s and 5 runs; each row is a median); the ratio is training images/s over
inference images/s of the same backend and batch. No peak is measured (it is not needed for a ratio).

    python benchmarks/train_speed.py --runs 3 --bench-batches 8,32 --write-docs
    python benchmarks/train_speed.py --spec tests/specs/ops-pool-norm.yaml --runs 1 --bench-batches 2   # a dry run
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

SECTION = "## Training (CPU)"


def compare_run(spec: str, batch: int, backends: str, steps: int, train: bool, out: Path) -> dict:
    """One `alexbench compare` process: its wall time, exit code, verdict and each worker's own seconds."""
    cmd = [str(Path(sys.executable).with_name("alexbench")), "compare", "--spec", spec, "--batch", str(batch),
           "--backends", backends, "--no-onnx", "--json", str(out), "--quiet"]
    if train:
        cmd += ["--train", "--steps", str(steps)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: a mismatch, still a complete run to time
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stdout}{done.stderr}"[-3000:])
    doc = json.loads(out.read_text())
    workers = {b["name"]: b["timings_s"]["total"] for b in doc["backends"] if (b.get("timings_s") or {}).get("total")}
    return {"wall": wall, "code": done.returncode, "verdict": doc["verdict"]["summary"], "workers": workers}


def bench_run(spec: str, backends: tuple[str, ...], batches: tuple[int, ...], train: bool) -> dict:
    """(backend, batch) -> (images/s, other cores busy) from one bench run in this process' workers."""
    from alexbench.harness.bench.run import BenchConfig, run_bench

    doc = run_bench(BenchConfig(spec=spec, backends=backends, batch_sizes=batches, device="cpu", overhead=False,
                                peak=False, train=train), progress=lambda m: print(m, flush=True))
    failed = [b for b in doc["backends"] if b["status"] != "ok"] + doc["bench"]["failures"]
    if failed:
        raise SystemExit(f"bench{' --train' if train else ''} failed: {failed}"[:3000])
    return {"rows": {(r["backend"], r["batch"]): (r["images_per_s"], r.get("other_cores_busy"))
                     for r in doc["bench"]["rows"]},
            "settings": doc["bench"]["settings"]}


def _med(values) -> float:
    return statistics.median(values)


def _spread(values: list[float], fmt: str = ".1f", unit: str = " s") -> str:
    return f"{_med(values):{fmt}}{unit} ({min(values):{fmt}}-{max(values):{fmt}})"


def _contended(busy: float) -> str:
    from alexbench.harness.bench.table import CONTENDED

    if busy < CONTENDED:
        return ""
    return (" **Contended**: other work competed for the cores during the timed rows, so the images/s are low "
            "(torch's spinning OpenMP threads most of all) and their ratios uncertain; rerun on an idle machine. "
            "The compare wall times alternate the two commands, so their ratio is the sturdier figure.")


def _versions() -> str:
    import importlib.metadata

    found = []
    for package in ("torch", "tensorflow", "keras"):
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="alexnet")
    parser.add_argument("--batch", type=int, default=8, help="compare's batch (default 8)")
    parser.add_argument("--steps", type=int, default=1, help="compare --train's steps (default 1)")
    parser.add_argument("--backends", default="torch,keras")
    parser.add_argument("--runs", type=int, default=3, help="timed compare runs of each kind (default 3)")
    parser.add_argument("--bench-batches", default="8", help="bench batch sizes, comma-separated (default 8)")
    parser.add_argument("--bench-runs", type=int, default=1, help="bench runs of each mode (default 1)")
    parser.add_argument("--write-docs", action="store_true", help=f"replace the '{SECTION}' section of {DOCS}")
    args = parser.parse_args()
    backends = tuple(args.backends.split(","))
    batches = tuple(int(b) for b in args.bench_batches.split(","))
    kinds = {"compare": False, "compare --train": True}
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    loads = []
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        for train in kinds.values():  # untimed: fills the weights cache, loads the libraries from disk once
            compare_run(args.spec, args.batch, args.backends, args.steps, train, out)
        for i in range(args.runs):
            for kind, train in kinds.items():
                runs[kind].append(compare_run(args.spec, args.batch, args.backends, args.steps, train, out))
                loads.append(os.getloadavg()[0])
            print(f"run {i + 1}: " + ", ".join(f"{kind} {runs[kind][-1]['wall']:.1f} s" for kind in kinds), flush=True)
    benches: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.bench_runs):
        for train in (False, True):
            benches[train].append(bench_run(args.spec, backends, batches, train))
            loads.append(os.getloadavg()[0])

    walls = {kind: [r["wall"] for r in runs[kind]] for kind in kinds}
    ratio = _med(walls["compare --train"]) / _med(walls["compare"])
    names = list(dict.fromkeys(n for kind in kinds for r in runs[kind] for n in r["workers"]))
    compare_rows = [f"| {kind} | {_spread(walls[kind])} | "
                    + " | ".join(_spread([r["workers"][n] for r in runs[kind] if n in r["workers"]]) for n in names)
                    + f" | {runs[kind][-1]['verdict']} |" for kind in kinds]
    bench_rows, busy = [], []
    for b in backends:
        for batch in batches:
            infer = [run["rows"][(b, batch)][0] for run in benches[False]]
            train = [run["rows"][(b, batch)][0] for run in benches[True]]
            busy += [run["rows"][(b, batch)][1] or 0.0 for mode in benches.values() for run in mode]
            bench_rows.append(f"| {b} | {batch} | {_med(infer):,.1f} | {_med(train):,.1f} | "
                              f"{_med(train) / _med(infer):.2f}x |")
    t, m = benches[True][0]["settings"]["train"], benches[True][0]["settings"]["method"]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU")
    compare_table = [f"| command | wall | {' | '.join(f'{n} worker' for n in names)} | verdict |",
                     "|---|---|" + "---|" * len(names) + "---|", *compare_rows]
    bench_table = ["| backend | batch | inference images/s | training images/s | training / inference |",
                   "|---|---:|---:|---:|---:|", *bench_rows]
    text = "\n".join([
        SECTION, "",
        f"`python benchmarks/train_speed.py --runs {args.runs} --bench-batches {args.bench_batches} --write-docs`, "
        f"on `{args.spec}`. Machine: {cpu}, {os.cpu_count()} cores, no GPU, a shared VM (other jobs run on it: "
        f"figures are noisy); Python {platform.python_version()}, {_versions()}. Run at {started}; 1-minute load "
        f"average during the runs {min(loads):.1f}-{max(loads):.1f}; other processes kept up to "
        f"{max(busy, default=0):.1f} cores busy during a timed bench row." + _contended(max(busy, default=0)), "",
        f"**compare --train against compare**: `alexbench compare --spec {args.spec} --batch {args.batch} "
        f"--backends {args.backends} --no-onnx`, with and without `--train --steps {args.steps}`; medians "
        f"(min-max) over {args.runs} runs of each, alternating, after one untimed run of each. A worker's "
        "time is its own wall time, start to exit.", "",
        *compare_table, "",
        f"compare --train / compare: **{ratio:.2f}x** wall time.", "",
        f"**bench --train against bench**: images/s, `alexbench bench --spec {args.spec} --backends "
        f"{','.join(backends)} --batch-sizes {args.bench_batches}`, with and without `--train`; medians over "
        f"{args.bench_runs} run(s) of each row's median ({m['warmup']} warm-up steps, then repetitions until "
        f"{m['min_time_s']:g} s and {m['min_reps']} runs). A training step is the backend's train_step (forward "
        f"in training mode, cross-entropy, backward, SGD update), {t['macs_per_image'] / 1e6:,.1f} M MACs per "
        f"image; GFLOP/s would count {t['flop_count']}.", "",
        *bench_table, ""])
    print(text)
    if args.write_docs:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
