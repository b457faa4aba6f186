"""The device's peak: a large float32 matrix product measured in the same run, and the
theoretical peak where the device is known.

Rows report their achieved GFLOP/s as a share of the MEASURED peak (what a well-tuned
library reaches on this device, today, with the same thread count and precision); the
theoretical peak is stated beside it, with its basis, so a reader can see both gaps.
Frameworks are imported inside the functions: this module runs in a bench worker.
"""

from __future__ import annotations

import os
import re
from typing import Any

from .bench import Method, summarize, time_step

# Dense (no structured sparsity) TFLOP/s by the vendors' datasheets, per precision.
# Matched against the device name in order, so the more specific names come first.
GPU_PEAKS_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200 NVL", {"float32": 60.0, "tf32": 417.5, "float16": 835.5, "bfloat16": 835.5}),
    ("H200", {"float32": 66.9, "tf32": 494.7, "float16": 989.4, "bfloat16": 989.4}),
    ("H100 PCIe", {"float32": 51.2, "tf32": 378.0, "float16": 756.0, "bfloat16": 756.0}),
    ("H100 NVL", {"float32": 60.0, "tf32": 417.5, "float16": 835.5, "bfloat16": 835.5}),
    ("H100", {"float32": 66.9, "tf32": 494.7, "float16": 989.4, "bfloat16": 989.4}),  # SXM
    ("A100", {"float32": 19.5, "tf32": 156.0, "float16": 312.0, "bfloat16": 312.0}),
    ("L40S", {"float32": 91.6, "tf32": 183.0, "float16": 362.0, "bfloat16": 362.0}),
    ("L4", {"float32": 30.3, "tf32": 60.0, "float16": 121.0, "bfloat16": 121.0}),
    ("A10", {"float32": 31.2, "tf32": 62.5, "float16": 125.0, "bfloat16": 125.0}),
    ("T4", {"float32": 8.1, "float16": 65.0}),
    ("V100", {"float32": 15.7, "float16": 125.0}),
]

MATMUL_N = {"cpu": 4096, "cuda": 8192}


def gpu_theoretical(device_name: str, precision: str) -> dict[str, Any] | None:
    for key, table in GPU_PEAKS_TFLOPS:
        if key.lower() in device_name.lower():
            if precision not in table:
                return None
            return {"gflops": table[precision] * 1e3,
                    "basis": f"{key} datasheet, dense {precision} ({table[precision]:g} TFLOP/s)"}
    return None


def _cpuinfo() -> tuple[set[str], float | None]:
    flags: set[str] = set()
    mhz = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags" and not flags:
                    flags = set(value.split())
                elif key.strip() == "cpu MHz" and mhz is None:
                    mhz = float(value)
    except (OSError, ValueError):
        pass
    return flags, mhz


def cpu_flops_per_cycle(flags: set[str]) -> tuple[int, str]:
    """float32 FLOPs per cycle per core, from the instruction set, with the assumption stated."""
    if "fma" in flags and "avx2" in flags:
        # Two 256-bit FMA pipes (Haswell and Zen 2 on), or one full 512-bit pipe: 2 x 8 lanes x 2.
        # Cores with two full-width AVX-512 FMA units reach 64; measured here: a 512-bit FMA loop
        # on this machine's AMD EPYC ran at 32 FLOP/cycle.
        return 32, "AVX2/FMA: 2 FMA pipes x 8 float32 lanes x 2 FLOPs"
    if "avx" in flags:
        return 16, "AVX without FMA: 8 lanes x (1 add + 1 mul)"
    return 8, "SSE: 4 lanes x (1 add + 1 mul)"


def cpu_theoretical(threads: int) -> dict[str, Any] | None:
    flags, mhz = _cpuinfo()
    if not flags or not mhz:
        return None
    cores = max(1, min(threads, os.cpu_count() or threads))
    per_cycle, why = cpu_flops_per_cycle(flags)
    return {"gflops": cores * mhz * 1e-3 * per_cycle,
            "basis": f"{cores} cores x {mhz:.0f} MHz (/proc/cpuinfo) x {per_cycle} FLOP/cycle ({why})"}


def theoretical_peak(device: str, device_name: str, precision: str, threads: int) -> dict[str, Any] | None:
    if device.startswith("cuda"):
        return gpu_theoretical(device_name, precision)
    return cpu_theoretical(threads) if precision == "float32" else None


def measure_matmul_peak(device: str, precision: str, threads: int, method: Method,
                        n: int | None = None) -> dict[str, Any]:
    """GFLOP/s of an n x n x n matrix product on ``device`` (torch when installed, else NumPy on
    the CPU), on random data, timed with the same method as the models."""
    n = n or MATMUL_N["cuda" if device.startswith("cuda") else "cpu"]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None:
        if device != "cpu" or precision != "float32":
            raise RuntimeError(f"measuring the {precision} matmul peak on '{device}' needs torch; "
                               f"pip install 'alexbench[torch]'")
        step, library = _numpy_matmul(n), "numpy " + __import__("numpy").__version__
    else:
        step, library = _torch_matmul(torch, device, precision, threads, n), "torch " + torch.__version__
    stats = summarize(time_step(step, method), batch=1, macs=n ** 3, peak_gflops=None)
    return {"gflops": stats["gflops"], "median_ms": stats["median_ms"], "n": n, "precision": precision,
            "library": library, "repetitions": stats["repetitions"], "threads": threads}


def _numpy_matmul(n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    return lambda: a @ b


DTYPES = {"float32": "float32", "tf32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def _torch_matmul(torch, device: str, precision: str, threads: int, n: int):
    if precision not in DTYPES:
        raise ValueError(f"unknown precision '{precision}'; known: {', '.join(DTYPES)}")
    if device == "cpu":
        torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    dtype = getattr(torch, DTYPES[precision])
    gen = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn((n, n), generator=gen, device=device, dtype=dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():
        out = a @ b
        sync()
        return out

    return step


def device_name(device: str) -> str:
    """A human name for the device: the GPU's name for cuda, the CPU model otherwise."""
    if device.startswith("cuda"):
        try:
            import torch

            return torch.cuda.get_device_name(torch.device(device))
        except Exception:  # no torch, or no CUDA in it: fall back to nvidia-smi
            from .environment import gpu_names

            index = int(re.sub(r"\D", "", device.partition(":")[2]) or 0)
            names = gpu_names()
            return names[index] if index < len(names) else "unknown GPU"
    from .environment import cpu_name

    return cpu_name()
