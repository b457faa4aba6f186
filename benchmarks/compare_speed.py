"""How long `alexbench compare --backends torch,keras` takes on this machine, cold and warm, and
how close the concurrent workers bring it to its slowest worker.

Cold: an empty ONNX export cache (both exports run). Warm: the exports are cached. With
--sequential, a warm run with one worker at a time (ALEXBENCH_WORKERS=1, the harness before it ran
workers side by side) too, as a baseline under the same load. Each run is a fresh `alexbench`
process; the kinds are interleaved (cold, warm, [sequential], cold, ...) so that load on a shared
machine hits them alike; medians over --runs. "Slowest worker": the largest per-backend
timings_s.total of a run's results (a worker's own wall time, start to exit, as the harness
measured it); the ratio wall / slowest says how much of a run is not its slowest worker (the
others, the harness' own work before and after). Peak memory is the largest resident set of any
one process (the CLI or a worker), from the kernel's accounting of waited-for children.

    python benchmarks/compare_speed.py --runs 3 --sequential --write-docs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from docs_section import DOCS, write_section  # a sibling: the scripts run as files

SECTION = "## alexbench compare: cold and warm"
KEEP = "**Before**"  # --write-docs replaces the section up to this paragraph, which is kept
TARGETS = {"cold": 30.0, "warm": 10.0, "ratio": 1.5}


@dataclass
class Run:
    wall: float
    slowest: float  # the slowest worker's timings_s.total
    slowest_name: str
    peak_gib: float

    @property
    def ratio(self) -> float:
        return self.wall / self.slowest


def one_run(cache: Path, spec: str, out: Path, env: dict[str, str] | None = None) -> Run:
    cmd = [str(Path(sys.executable).with_name("alexbench")), "compare", "--backends", "torch,keras",
           "--spec", spec, "--cache-dir", str(cache), "--json", str(out), "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"compare failed ({done.returncode}): {done.stdout}{done.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, max over every child so far
    totals = {e["name"]: e["timings_s"]["total"] for e in json.loads(out.read_text())["backends"]}
    name = max(totals, key=totals.get)
    return Run(elapsed, totals[name], name, max(peak, before) / 2**20)


def _spread(values: list[float], unit: str = " s", fmt: str = ".1f") -> str:
    return f"{statistics.median(values):{fmt}}{unit} | {min(values):{fmt}}-{max(values):{fmt}}{unit}"


def _row(label: str, runs: list[Run], target: str) -> str:
    walls, slowest, ratios = [r.wall for r in runs], [r.slowest for r in runs], [r.ratio for r in runs]
    return (f"| {label} | {_spread(walls)} | {_spread(slowest)} | {_spread(ratios, '', '.2f')} | {target} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spec", default="alexnet")
    parser.add_argument("--sequential", action="store_true",
                        help="also time warm runs with one worker at a time (ALEXBENCH_WORKERS=1)")
    parser.add_argument("--write-docs", action="store_true", help=f"replace the '{SECTION}' section of {DOCS}")
    args = parser.parse_args()
    kinds = ["cold", "warm"] + (["sequential"] if args.sequential else [])
    runs: dict[str, list[Run]] = {kind: [] for kind in kinds}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "results.json"
        for i in range(args.runs):
            for kind in kinds:
                if kind == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                env = {"ALEXBENCH_WORKERS": "1"} if kind == "sequential" else None
                runs[kind].append(one_run(cache, args.spec, out, env))
                loads.append(os.getloadavg()[0])
            print(f"run {i + 1}: " + ", ".join(
                f"{kind} {runs[kind][-1].wall:.1f} s (slowest worker {runs[kind][-1].slowest_name} "
                f"{runs[kind][-1].slowest:.1f} s)" for kind in kinds), flush=True)
    from alexbench.harness.workers.scheduler import worker_limit

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU")
    med = {kind: statistics.median(r.wall for r in runs[kind]) for kind in kinds}
    ratio = statistics.median(r.ratio for r in runs["warm"])
    met = {"cold": med["cold"] <= TARGETS["cold"], "warm": med["warm"] <= TARGETS["warm"],
           "ratio": ratio <= TARGETS["ratio"]}
    rows = [_row("cold (empty export cache)", runs["cold"], f"<= {TARGETS['cold']:g} s"),
            _row("warm (exports cached)", runs["warm"], f"<= {TARGETS['warm']:g} s, ratio <= {TARGETS['ratio']:g}")]
    if args.sequential:
        rows.append(_row("warm, one worker at a time (`ALEXBENCH_WORKERS=1`)", runs["sequential"], "-"))
    peak = max(r.peak_gib for rs in runs.values() for r in rs)
    table = (f"{SECTION}\n\n`alexbench compare --backends torch,keras` on `{args.spec}` (reference, torch, keras, "
             f"onnx-torch, onnx-keras; batch 4, every layer compared), {args.runs} runs of each kind, interleaved, "
             f"on {cpu} with {os.cpu_count()} cores, up to {worker_limit()} workers at once. 1-minute load average "
             f"during the runs: {min(loads):.1f}-{max(loads):.1f}. Written by "
             f"`python benchmarks/compare_speed.py --write-docs`.\n\n"
             f"| run | median | min-max | slowest worker, median | min-max | wall / slowest, median | min-max "
             f"| target |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
             "Targets met: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in met.items()) + ". "
             f"Peak resident memory of the largest process: {peak:.2f} GiB. "
             f"Warm / cold: {med['warm'] / med['cold']:.2f}."
             + (f" Sequential / warm: {med['sequential'] / med['warm']:.2f}." if args.sequential else "") + "\n")
    print(table)
    if args.write_docs:
        write_section(SECTION, table, keep=KEEP)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
