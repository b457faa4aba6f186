"""How long `alexbench compare --backends torch,keras` takes on this machine, cold and warm.

Cold: an empty ONNX export cache (both exports run). Warm: the exports are cached. Each run is
a fresh `alexbench` process; medians of --runs runs, cold and warm interleaved so that load on
a shared machine hits both alike. Peak memory is the largest resident set of any one process
(the CLI or a worker), from the kernel's accounting of waited-for children.

    python benchmarks/compare_speed.py --runs 3 --write-docs
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "## alexbench compare: cold and warm"


def one_run(cache: Path, spec: str) -> tuple[float, float]:
    cmd = [str(Path(sys.executable).with_name("alexbench")), "compare", "--backends", "torch,keras",
           "--spec", spec, "--cache-dir", str(cache), "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"compare failed ({done.returncode}): {done.stdout}{done.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, max over every child so far
    return elapsed, max(peak, before) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spec", default="alexnet")
    parser.add_argument("--write-docs", action="store_true", help=f"replace the '{SECTION}' section of {DOCS}")
    args = parser.parse_args()
    cold, warm, peak = [], [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for i in range(args.runs):
            shutil.rmtree(cache, ignore_errors=True)
            seconds, gib = one_run(cache, args.spec)
            cold.append(seconds)
            peak = max(peak, gib)
            seconds, gib = one_run(cache, args.spec)
            warm.append(seconds)
            peak = max(peak, gib)
            print(f"run {i + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU")
    table = (f"{SECTION}\n\n`alexbench compare --backends torch,keras` on `{args.spec}` (reference, torch, keras, "
             f"onnx-torch, onnx-keras; batch 4, every layer compared), {args.runs} runs each, interleaved, on "
             f"{cpu} with {os.cpu_count()} cores. Written by `python benchmarks/compare_speed.py --write-docs`.\n\n"
             f"| run | median | min-max | target |\n|---|---|---|---|\n"
             f"| cold (empty export cache) | {statistics.median(cold):.1f} s | {min(cold):.1f}-{max(cold):.1f} s "
             f"| <= 45 s |\n"
             f"| warm (exports cached) | {statistics.median(warm):.1f} s | {min(warm):.1f}-{max(warm):.1f} s "
             f"| <= 15 s |\n\nPeak resident memory of the largest process: {peak:.2f} GiB. "
             f"Warm / cold: {statistics.median(warm) / statistics.median(cold):.2f}.\n")
    print(table)
    if args.write_docs:
        text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
        pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
        text = pattern.sub(table.rstrip("\n"), text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + table
        DOCS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
