"""The timing method, framework-free: it runs inside a bench worker, around a backend's step.

A step is what ``Backend.bench_step(x, device)`` returns: a callable that runs one inference
on inputs already staged on the device and returns only once the device has finished (CUDA
synchronize, ``block_until_ready``, IO binding's synchronize, or a host copy). So the device
is idle at every clock read: before a repetition because the previous one synchronised,
after it because the step itself did.

Method (the same for every backend, device and precision):
  1. ``warmup`` untimed steps (first-call costs: allocation, autotuning, graph compilation);
  2. timed steps until BOTH ``min_time_s`` of timed work AND ``min_reps`` repetitions are
     reached (at most ``max_reps``, which only a near-zero step such as the null backend meets);
  3. median, p10 and p90 of the per-repetition latencies (NumPy's linear percentiles).
Throughput is batch / median latency; achieved GFLOP/s counts 2 FLOPs per spec MAC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

MAX_REPS = 100_000  # bounds memory and time for a step that costs nothing (the null backend)


@dataclass(frozen=True)
class Method:
    warmup: int = 3
    min_time_s: float = 1.0
    min_reps: int = 5
    max_reps: int = MAX_REPS

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_reps < 1 or self.min_time_s < 0 or self.max_reps < self.min_reps:
            raise ValueError(f"bad timing method {self}: need warmup >= 0, min_reps >= 1, min_time_s >= 0, "
                             f"max_reps >= min_reps")

    def to_json(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "min_time_s": self.min_time_s, "min_reps": self.min_reps,
                "max_reps": self.max_reps, "statistic": "median", "spread": "p10-p90",
                "clock": "time.perf_counter, device synchronised by the step before it returns"}


def time_step(step: Callable[[], Any], method: Method,
              clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Per-repetition latencies in seconds, after ``method.warmup`` untimed calls."""
    for _ in range(method.warmup):
        step()
    samples: list[float] = []
    total = 0.0
    while len(samples) < method.max_reps and (len(samples) < method.min_reps or total < method.min_time_s):
        start = clock()
        step()
        elapsed = clock() - start
        samples.append(elapsed)
        total += elapsed
    return samples


def summarize(samples_s: list[float], batch: int, macs: int, peak_gflops: float | None) -> dict[str, Any]:
    """The row's statistics: latency percentiles (ms), images/s, achieved GFLOP/s and share of peak."""
    if not samples_s:
        raise ValueError("no timed repetitions to summarize")
    p10, median, p90 = np.percentile(np.asarray(samples_s, dtype=np.float64), [10, 50, 90])
    per_s = 1.0 / median if median > 0 else None
    gflops = 2.0 * macs * batch * per_s / 1e9 if per_s is not None and macs else None
    return {
        "median_ms": float(median * 1e3),
        "p10_ms": float(p10 * 1e3),
        "p90_ms": float(p90 * 1e3),
        "images_per_s": float(batch * per_s) if per_s is not None else 0.0,
        "gflops": gflops,
        "peak_share": gflops / peak_gflops if gflops is not None and peak_gflops else None,
        "repetitions": len(samples_s),
        "timed_s": float(sum(samples_s)),
    }

