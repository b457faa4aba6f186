"""The device's peak: a large float32 matrix product measured in the same run, and the
theoretical peak where the device is known.

Rows report their achieved GFLOP/s as a share of the MEASURED peak (what a well-tuned
library reaches on this device, today, with the same thread count and precision); the
theoretical peak is stated beside it, with its basis, so a reader can see both gaps.
The matmul itself is the backends' (``Backend.matmul_peak_step``): this module imports no framework.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import platform
import sys
import time
from typing import Any, Callable

from .method import Method, summarize, time_step

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


def _cpuinfo() -> dict[str, Any]:
    """flags, vendor, family and the clock /proc/cpuinfo reports for the first CPU."""
    info: dict[str, Any] = {"flags": set(), "vendor": "", "family": 0, "mhz": None}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "flags":
                    info["flags"] = set(value.split())
                elif key == "vendor_id":
                    info["vendor"] = value
                elif key == "cpu family":
                    info["family"] = int(value)
                elif key == "cpu MHz":
                    info["mhz"] = float(value)
                elif not line.strip() and info["flags"]:
                    break  # the first processor's block is enough
    except (OSError, ValueError):
        pass
    return info


def cpu_flops_per_cycle(flags: set[str], vendor: str = "", family: int = 0) -> tuple[int, str]:
    """float32 FLOPs per cycle per core, from the instruction set and the core, with the assumption."""
    if "avx512f" in flags and vendor == "AuthenticAMD" and family >= 26:
        return 64, "Zen 5 AVX-512: 2 full-width FMA pipes x 16 lanes x 2 FLOPs"
    if "avx512f" in flags and vendor == "GenuineIntel":
        return 64, "AVX-512: 2 FMA units x 16 lanes x 2 FLOPs (Xeon Gold/Platinum; parts with one unit: half)"
    if "fma" in flags and "avx2" in flags:
        # Also Zen 4, whose AVX-512 runs on 256-bit pipes.
        return 32, "AVX2/FMA: 2 FMA pipes x 8 lanes x 2 FLOPs"
    if "avx" in flags:
        return 16, "AVX without FMA: 8 lanes x (1 add + 1 mul)"
    return 8, "SSE: 4 lanes x (1 add + 1 mul)"


# x86-64 System V: ``long f(long n)``, n iterations of four dependent ``add rax, 1`` (one cycle each on
# every x86-64 core), so it returns after 4n cycles: the core's clock, boost included, measured.
#   xor eax,eax; L: add rax,1 (x4); sub rdi,1; jnz L; ret
_ADD_CHAIN = bytes([0x31, 0xC0] + [0x48, 0x83, 0xC0, 0x01] * 4 + [0x48, 0x83, 0xEF, 0x01, 0x75, 0xEA, 0xC3])


@functools.lru_cache(maxsize=1)
def measured_clock_mhz(iterations: int = 50_000_000) -> float | None:
    """The core clock in MHz under load (best of three runs of a dependent-add chain); None where it
    cannot run (not x86-64 Linux, or executable memory refused). VMs report their TSC rate in
    /proc/cpuinfo and boost clocks run above the nominal one, so the reported MHz can be far off."""
    if platform.machine() not in ("x86_64", "AMD64") or not sys.platform.startswith("linux"):
        return None
    try:
        buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError, AttributeError):
        return None
    try:
        buf.write(_ADD_CHAIN)
        anchor = ctypes.c_char.from_buffer(buf)
        chain = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long)(ctypes.addressof(anchor))
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            done = chain(iterations)
            best = max(best, 4 * iterations / (time.perf_counter() - start) / 1e6)
        del chain, anchor  # no exported pointers may remain when the mapping closes
        return best if done == 4 * iterations else None
    finally:
        buf.close()


def cpu_theoretical(threads: int, measure_clock: bool = True) -> dict[str, Any] | None:
    info = _cpuinfo()
    if not info["flags"]:
        return None
    clock = measured_clock_mhz() if measure_clock else None
    mhz, where = (clock, "measured with a dependent-add chain") if clock else (info["mhz"], "as /proc/cpuinfo reports")
    if not mhz:
        return None
    cores = max(1, min(threads, os.cpu_count() or threads))
    per_cycle, why = cpu_flops_per_cycle(info["flags"], info["vendor"], info["family"])
    return {"gflops": cores * mhz * 1e-3 * per_cycle, "clock_mhz": round(mhz), "reported_mhz": info["mhz"],
            "basis": f"{cores} cores x {mhz:.0f} MHz ({where}) x {per_cycle} FLOP/cycle ({why})"}


def theoretical_peak(device: str, device_name: str, precision: str, threads: int) -> dict[str, Any] | None:
    if device.startswith("cuda"):
        return gpu_theoretical(device_name, precision)
    return cpu_theoretical(threads) if precision == "float32" else None


def measure_matmul_peak(device: str, precision: str, threads: int, method: Method,
                        n: int | None = None) -> dict[str, Any]:
    """GFLOP/s of an n x n x n matrix product on ``device``, on random data, timed with the same
    method as the models. Every GEMM library on offer is tried and the fastest counts: each backend
    class's ``matmul_peak_step`` (torch's cuBLAS or CPU GEMM, ONNX Runtime's MLAS on the CPU) and,
    on the CPU, NumPy's BLAS. One library's slow code path for this CPU (e.g. MKL on AMD) must not
    pass for the device's peak."""
    n = n or MATMUL_N["cuda" if device.startswith("cuda") else "cpu"]
    if precision not in DTYPES:
        raise ValueError(f"unknown precision '{precision}'; known: {', '.join(DTYPES)}")
    if not device.startswith("cuda") and precision != "float32":
        raise ValueError(f"a {precision} matmul peak is measured on CUDA devices only")
    candidates = backend_matmuls()
    if not device.startswith("cuda"):
        candidates.append(("numpy", _numpy_matmul))
    libraries: dict[str, Any] = {}
    for offered_by, make in candidates:
        try:
            step, library = make(device, precision, threads, n)
        except (ImportError, NotImplementedError):  # not installed, or none for this device/precision
            continue
        except Exception as exc:  # one library failing must not cost the peak the others measure
            print(f"alexbench: {offered_by} matmul peak not measured: {type(exc).__name__}: {exc}"[:300],
                  file=sys.stderr)
            continue
        stats = summarize(time_step(step, method), batch=1, macs=n ** 3, peak_gflops=None)
        libraries[library] = {"gflops": stats["gflops"], "median_ms": stats["median_ms"],
                              "repetitions": stats["repetitions"]}
        del step
    if not libraries:
        raise RuntimeError(f"no GEMM library to measure the {precision} peak on '{device}' "
                           f"(pip install 'alexbench[torch]')")
    best = max(libraries, key=lambda k: libraries[k]["gflops"])
    return {"gflops": libraries[best]["gflops"], "median_ms": libraries[best]["median_ms"], "n": n,
            "precision": precision, "library": best, "libraries": libraries, "threads": threads}


DTYPES = {"float32": "float32", "tf32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def backend_matmuls() -> list[tuple[str, Callable[[str, str, int, int], tuple[Callable[[], Any], str]]]]:
    """(backend, its ``matmul_peak_step``) for every registered backend class that implements one,
    each implementation once (onnx-torch and onnx-keras share ONNX Runtime's). Loading a class
    imports no framework; a class that cannot be loaded offers nothing."""
    from ...backends.base import Backend
    from ...backends.registry import available_backends, load_backend_class

    found, seen = [], {Backend.matmul_peak_step.__func__}
    for name in available_backends():
        try:
            make = load_backend_class(name).matmul_peak_step
        except Exception:
            continue
        func = getattr(make, "__func__", make)
        if func not in seen:
            seen.add(func)
            found.append((name, make))
    return found


def _random(n: int):
    import numpy as np

    rng = np.random.default_rng(0)  # never zeros: some kernels run faster on them
    return rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)


def _numpy_matmul(device: str, precision: str, threads: int, n: int):
    """NumPy's BLAS; its pool follows the worker's thread variables (OMP/MKL/OPENBLAS_NUM_THREADS)."""
    import numpy as np

    a, b = _random(n)
    return (lambda: a @ b), f"numpy {np.__version__}"
