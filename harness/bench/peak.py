"""The device's peak: a large float32 matrix product measured in the same run, and the
theoretical peak where the device is known.

Rows report their achieved GFLOP/s as a share of the MEASURED peak (what a well-tuned
library reaches on this device, today, with the same thread count and precision); the
theoretical peak is stated beside it, with its basis, so a reader can see both gaps. That
basis is only what the vendor's datasheet (GPUs) or the OS and the CPU report (cores, the
cpufreq or /proc/cpuinfo clock, FLOP/cycle from the instruction-set flags): nothing is timed.
The matmul itself is the backends' (``Backend.matmul_peak_step``): this module imports no framework.
"""

from __future__ import annotations

import functools
import glob
import os
import sys
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


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, Any]:
    """flags, vendor, family and the clock /proc/cpuinfo reports for the first CPU."""
    info: dict[str, Any] = {"flags": set(), "vendor": "", "family": 0, "mhz": None}
    try:
        with open(path, encoding="utf-8") as f:
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


def _physical_cores(cpuinfo_path: str) -> int | None:
    """Distinct (physical id, core id) pairs: hyper-threads of one core share its FMA units."""
    cores, package, core = set(), "0", None
    try:
        with open(cpuinfo_path, encoding="utf-8") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "physical id":
                    package = value
                elif key == "core id":
                    core = value
                elif not line.strip() and core is not None:
                    cores.add((package, core))
                    package, core = "0", None
    except OSError:
        return None
    if core is not None:
        cores.add((package, core))
    return len(cores) or None


def cpu_clock(sysfs_cpu: str = "/sys/devices/system/cpu", cpuinfo_path: str = "/proc/cpuinfo"
              ) -> tuple[float, str, str] | None:
    """(MHz, source, what that figure is and its limits) as the OS reports it, or None. Never timed:
    a timed instruction chain measures the core's scheduler, not its clock."""
    maxima = []
    for path in glob.glob(os.path.join(sysfs_cpu, "cpu[0-9]*", "cpufreq", "cpuinfo_max_freq")):
        try:
            with open(path, encoding="ascii") as f:
                maxima.append(int(f.read().strip()) / 1e3)  # kHz
        except (OSError, ValueError):
            continue
    if maxima and max(maxima) > 0:
        return (max(maxima), "cpufreq cpuinfo_max_freq",
                "the highest clock the cpufreq driver allows, boost included where the driver reports it: "
                "an upper bound, all-core clocks under vector load run lower")
    info = _cpuinfo(cpuinfo_path)
    if not info["mhz"]:
        return None
    if "hypervisor" in info["flags"]:
        return (info["mhz"], "/proc/cpuinfo cpu MHz",
                "in a VM this is the host's nominal or TSC rate, not a boost clock: the cores may run faster, "
                "so shares above 100% are possible")
    return (info["mhz"], "/proc/cpuinfo cpu MHz",
            "the first CPU's clock when read (no cpufreq driver): it moves with load and boost")


def cpu_theoretical(threads: int, sysfs_cpu: str = "/sys/devices/system/cpu",
                    cpuinfo_path: str = "/proc/cpuinfo") -> dict[str, Any] | None:
    """cores x clock x float32 FLOP/cycle, each from what the OS and the CPU report, with the basis
    and its limits in words; None where there is no basis to state (no x86 flags, no clock)."""
    info = _cpuinfo(cpuinfo_path)
    clock = cpu_clock(sysfs_cpu, cpuinfo_path)
    if not info["flags"] or clock is None:
        return None
    mhz, source, limits = clock
    physical = _physical_cores(cpuinfo_path)
    cores = max(1, min(threads, physical or os.cpu_count() or threads))
    per_cycle, why = cpu_flops_per_cycle(info["flags"], info["vendor"], info["family"])
    def plural(k: int, word: str) -> str:
        return f"{k} {word}" + ("" if k == 1 else "s")

    counted = f"{plural(cores, 'core')} (the run's {plural(threads, 'thread')}" + (
        f", of {plural(physical, 'core')} /proc/cpuinfo lists)" if physical else ")")
    return {"gflops": cores * mhz * 1e-3 * per_cycle, "cores": cores, "clock_mhz": round(mhz),
            "clock_source": source, "flops_per_cycle": per_cycle,
            "basis": f"{counted} x {mhz:.0f} MHz ({source}; {limits}) x {per_cycle} FLOP/cycle "
                     f"(from the CPU's flags, assuming {why})"}


def theoretical_peak(device: str, device_name: str, precision: str, threads: int) -> dict[str, Any] | None:
    if device.startswith("cuda"):
        return gpu_theoretical(device_name, precision)
    return cpu_theoretical(threads) if precision == "float32" else None


def measured_precisions(device: str, precisions) -> list[str]:
    """Those of ``precisions`` a matmul peak is measured in on ``device`` (see measure_matmul_peak):
    the float ones on CUDA, float32 on a CPU; int8 rows get no share of a peak."""
    return [p for p in precisions if p in DTYPES and (device.startswith("cuda") or p == "float32")]


def measure_matmul_peak(device: str, precision: str, threads: int, method: Method,
                        n: int | None = None, blas_env_set: bool = False) -> dict[str, Any]:
    """GFLOP/s of an n x n x n matrix product on ``device``, on random data, timed with the same
    method as the models. Every GEMM library on offer is tried and the fastest counts: each backend
    class's ``matmul_peak_step`` (torch's cuBLAS or CPU GEMM, ONNX Runtime's MLAS on the CPU) and,
    on the CPU, NumPy's BLAS. One library's slow code path for this CPU (e.g. MKL on AMD) must not
    pass for the device's peak. Every library runs with ``threads`` threads, as the model rows do,
    and records the pool size it reports; ``blas_env_set``: the caller set the BLAS thread variables
    (``thread_env``) before NumPy loaded, so NumPy's pool has that size without threadpoolctl."""
    n = n or MATMUL_N["cuda" if device.startswith("cuda") else "cpu"]
    if precision not in DTYPES:
        raise ValueError(f"unknown precision '{precision}'; known: {', '.join(DTYPES)}")
    if not device.startswith("cuda") and precision != "float32":
        raise ValueError(f"a {precision} matmul peak is measured on CUDA devices only")
    candidates = [(name, make, functools.partial(_backend_threads_seen, name)) for name, make in backend_matmuls()]
    if not device.startswith("cuda"):
        candidates.append(("numpy", functools.partial(_numpy_matmul, blas_env_set=blas_env_set),
                           functools.partial(_numpy_threads_seen, blas_env_set)))
    libraries: dict[str, Any] = {}
    not_measured: dict[str, str] = {}
    try:
        for offered_by, make, seen in candidates:
            try:
                step, library = make(device, precision, threads, n)
            except (ImportError, NotImplementedError) as exc:  # not installed, none here, or its pool unsettable
                not_measured[offered_by] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            except Exception as exc:  # one library failing must not cost the peak the others measure
                not_measured[offered_by] = f"{type(exc).__name__}: {exc}"[:300]
                print(f"alexbench: {offered_by} matmul peak not measured: {not_measured[offered_by]}",
                      file=sys.stderr)
                continue
            stats = summarize(time_step(step, method), batch=1, macs=n ** 3, peak_gflops=None)
            libraries[library] = {"gflops": stats["gflops"], "median_ms": stats["median_ms"],
                                  "repetitions": stats["repetitions"], "threads": threads,
                                  "threads_seen": seen()}
            del step
    finally:
        _restore_blas()
    if not libraries:
        raise RuntimeError(f"no GEMM library to measure the {precision} peak on '{device}' "
                           f"(pip install 'alexbench[torch]')")
    best = max(libraries, key=lambda k: libraries[k]["gflops"])
    return {"gflops": libraries[best]["gflops"], "median_ms": libraries[best]["median_ms"], "n": n,
            "precision": precision, "library": best, "libraries": libraries, "threads": threads,
            "not_measured": not_measured}


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


def _backend_threads_seen(name: str) -> dict[str, Any]:
    """The pool sizes a backend's framework reports now, in this process (after its matmul step set them)."""
    from ...backends.registry import load_backend_class

    try:
        return dict(load_backend_class(name)().threads_seen())
    except Exception:  # a report, not a measurement: never cost the peak
        return {}


BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_blas_limit: list[Any] = []  # threadpoolctl's limit while NumPy's matmul is measured


def _restore_blas() -> None:
    while _blas_limit:
        _blas_limit.pop().restore_original_limits()


def _numpy_threads_seen(blas_env_set: bool) -> dict[str, Any]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {var: os.environ[var] for var in BLAS_THREAD_VARS if var in os.environ} if blas_env_set else {}
    return {f"blas {pool.get('internal_api')}": pool.get("num_threads") for pool in threadpool_info()
            if pool.get("user_api") == "blas"}


def _numpy_matmul(device: str, precision: str, threads: int, n: int, blas_env_set: bool = False):
    """NumPy's BLAS with ``threads`` threads: limited by threadpoolctl where installed; else its pool
    is what the thread variables said when NumPy loaded, which only the caller knows (``blas_env_set``)."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if not blas_env_set and threads < (os.cpu_count() or threads):
            # NumPy's BLAS would use every core: not the thread count the rows run with.
            raise NotImplementedError(f"NumPy's BLAS pool cannot be limited to {threads} threads in this "
                                      f"process (pip install threadpoolctl)") from None
    else:
        _blas_limit.append(threadpool_limits(limits=threads, user_api="blas"))
    a, b = _random(n)
    return (lambda: a @ b), f"numpy {np.__version__}"
