"""The timing method and its statistics, on a fake clock: exact numbers, no timing assertions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from alexbench.backends.registry import load_backend_class
from alexbench.harness.bench.method import Method, summarize, time_step
from alexbench.harness.bench.peak import backend_matmuls, cpu_flops_per_cycle, gpu_theoretical, measure_matmul_peak
from alexbench.harness.bench.precisions import declared
from alexbench.harness.bench.run import BenchConfig, BenchError, plan_jobs, resolve_device
from alexbench.harness.workers.bench_entry import skip_reason


class FakeClock:
    """A clock that only moves when the fake step runs: each call of step() costs durations[i]."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def clock(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1


def test_warmup_runs_are_not_timed():
    fake = FakeClock([5.0, 5.0, 0.1])  # two slow first calls (compilation), then steady
    samples = time_step(fake.step, Method(warmup=2, min_time_s=0.0, min_reps=3), clock=fake.clock)
    assert samples == pytest.approx([0.1, 0.1, 0.1])
    assert fake.calls == 5


def test_min_time_keeps_timing_past_min_reps():
    fake = FakeClock([0.1])
    samples = time_step(fake.step, Method(warmup=0, min_time_s=0.45, min_reps=2), clock=fake.clock)
    assert len(samples) == 5  # 0.5 s >= 0.45 s; 4 reps (0.4 s) were not enough
    assert sum(samples) >= 0.45


def test_min_reps_keeps_timing_past_min_time():
    fake = FakeClock([2.0])
    samples = time_step(fake.step, Method(warmup=0, min_time_s=1.0, min_reps=4), clock=fake.clock)
    assert len(samples) == 4


def test_max_reps_bounds_a_free_step():
    fake = FakeClock([0.0])
    samples = time_step(fake.step, Method(warmup=0, min_time_s=1.0, min_reps=1, max_reps=50), clock=fake.clock)
    assert len(samples) == 50


def test_statistics_are_median_p10_p90_and_flops_count_two_per_mac():
    samples = [i / 1000 for i in range(1, 11)]  # 1..10 ms
    row = summarize(samples, batch=4, macs=1_000_000, peak_gflops=2.0)
    assert row["median_ms"] == pytest.approx(5.5)
    assert row["p10_ms"] == pytest.approx(1.9)  # NumPy's linear interpolation
    assert row["p90_ms"] == pytest.approx(9.1)
    assert row["images_per_s"] == pytest.approx(4 / 0.0055)
    assert row["gflops"] == pytest.approx(2 * 1_000_000 * 4 / 0.0055 / 1e9)
    assert row["peak_share"] == pytest.approx(row["gflops"] / 2.0)
    assert row["repetitions"] == 10
    assert row["timed_s"] == pytest.approx(0.055)


def test_statistics_ignore_order_and_outliers_move_only_the_tail():
    rng = np.random.default_rng(1)
    samples = list(rng.permutation([0.010] * 18 + [0.5, 0.9]))
    row = summarize(samples, batch=1, macs=0, peak_gflops=None)
    assert row["median_ms"] == pytest.approx(10.0)
    assert row["p10_ms"] == pytest.approx(10.0)
    assert row["gflops"] is None and row["peak_share"] is None


@pytest.mark.parametrize("bad", [dict(warmup=-1), dict(min_reps=0), dict(min_time_s=-1.0), dict(max_reps=1,
                                                                                                   min_reps=2)])
def test_bad_methods_are_refused(bad):
    with pytest.raises(ValueError, match="bad timing method"):
        Method(**bad)


def test_auto_device_takes_a_gpu_only_when_there_is_one():
    assert resolve_device("auto", []) == "cpu"
    assert resolve_device("auto", ["NVIDIA H200"]) == "cuda"
    assert resolve_device("cuda:1", ["a", "b"]) == "cuda:1"
    with pytest.raises(BenchError, match="no CUDA GPU found"):
        resolve_device("cuda", [])


def test_plan_skips_what_a_backend_or_device_cannot_do_and_says_why():
    cfg = BenchConfig(backends=("torch", "onnx-torch", "keras-jax"), precisions=("float32", "bfloat16"),
                      compiled="also")
    jobs, skipped = plan_jobs(cfg, "cuda")
    labels = [j.label for j in jobs]
    assert labels == ["torch float32", "torch float32 compiled", "torch bfloat16", "torch bfloat16 compiled",
                      "onnx-torch float32", "keras-jax float32", "keras-jax bfloat16"]
    reasons = {(s["backend"], s["precision"], s["variant"]): s["reason"] for s in skipped}
    assert "always optimises" in reasons[("onnx-torch", "float32", "compiled")]
    assert "no bfloat16 mode" in reasons[("onnx-torch", "bfloat16", None)]
    assert "jax.jit" in reasons[("keras-jax", "float32", "compiled")]
    # What a backend declares decides, on the CPU too; tf32 is a CUDA matmul mode.
    assert skip_reason("torch", "cpu", "float16", False) is None
    assert skip_reason("torch", "cpu", "tf32", False) == \
        "tf32 rows run on CUDA GPUs only (TF32 is a tensor-core matmul mode)"
    assert skip_reason("my-plugin", "cpu", "float32", True) == "no compiled variant known for this backend"


def test_cpu_flops_per_cycle_from_the_instruction_set_and_core():
    avx512 = {"avx512f", "avx2", "fma", "avx"}
    assert cpu_flops_per_cycle(avx512, "AuthenticAMD", 26)[0] == 64  # Zen 5: full-width pipes
    assert cpu_flops_per_cycle(avx512, "AuthenticAMD", 25)[0] == 32  # Zen 4: 256-bit pipes
    assert cpu_flops_per_cycle({"avx2", "fma", "avx"}, "GenuineIntel", 6)[0] == 32
    assert cpu_flops_per_cycle({"avx"})[0] == 16
    assert cpu_flops_per_cycle({"sse2"})[0] == 8


def test_gpu_theoretical_peak_matches_the_most_specific_name():
    assert gpu_theoretical("NVIDIA H100 PCIe", "float32")["gflops"] == pytest.approx(51_200)
    assert gpu_theoretical("NVIDIA H100 80GB HBM3", "bfloat16")["gflops"] == pytest.approx(989_400)
    assert gpu_theoretical("NVIDIA H200", "tf32")["gflops"] == pytest.approx(494_700)
    assert gpu_theoretical("Tesla T4", "bfloat16") is None
    assert gpu_theoretical("Some Future GPU", "float32") is None


REPO = Path(__file__).resolve().parents[3]


def test_no_code_maps_executable_memory():
    """A benchmarking tool runs no hand-assembled machine code: the old clock "measurement" wrote a
    dependent-add chain into writable-executable memory and called it (and read 8.5-13 GHz on a
    2.3 GHz part)."""
    offenders = []
    for folder in ("harness", "backends"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for banned in ("PROT_EXEC", "CFUNCTYPE", "mmap.mmap(", "VirtualAlloc"):
                if banned in text:
                    offenders.append(f"{path.relative_to(REPO)}: {banned}")
    assert offenders == []
    from alexbench.harness.bench import peak

    assert not hasattr(peak, "measured_clock_mhz") and not hasattr(peak, "_ADD_CHAIN")


def _fake_cpu(tmp_path, *, flags="fpu sse2 avx avx2 fma", mhz="2445.402", max_khz=None, cores=((0, 0), (0, 1))):
    """A /proc/cpuinfo and a /sys/devices/system/cpu as the kernel writes them, one block per CPU."""
    (tmp_path / "cpu").mkdir(parents=True)
    blocks = []
    for index, (package, core) in enumerate(cores):
        lines = [f"processor\t: {index}", "vendor_id\t: AuthenticAMD", "cpu family\t: 25"]
        lines += [f"cpu MHz\t\t: {mhz}"] if mhz else []
        lines += [f"physical id\t: {package}", f"core id\t\t: {core}", f"flags\t\t: {flags}"]
        blocks.append("\n".join(lines) + "\n")
        if max_khz:
            freq = tmp_path / "cpu" / f"cpu{index}" / "cpufreq"
            freq.mkdir(parents=True)
            (freq / "cpuinfo_max_freq").write_text(f"{max_khz}\n")
    (tmp_path / "cpuinfo").write_text("\n".join(blocks) + "\n")
    return str(tmp_path / "cpu"), str(tmp_path / "cpuinfo")


def test_theoretical_basis_names_its_source_and_its_limits(tmp_path):
    from alexbench.harness.bench.peak import cpu_theoretical

    sysfs, cpuinfo = _fake_cpu(tmp_path / "cpufreq", max_khz=3_500_000)
    t = cpu_theoretical(2, sysfs, cpuinfo)
    assert t["clock_source"] == "cpufreq cpuinfo_max_freq" and t["clock_mhz"] == 3500
    assert t["gflops"] == pytest.approx(2 * 3.5 * 32)
    assert "cpuinfo_max_freq" in t["basis"] and "upper bound" in t["basis"] and "32 FLOP/cycle" in t["basis"]
    assert "assuming AVX2/FMA: 2 FMA pipes" in t["basis"]  # the FLOP/cycle assumption, stated

    sysfs, cpuinfo = _fake_cpu(tmp_path / "vm", flags="fpu sse2 avx avx2 fma hypervisor")  # no cpufreq
    t = cpu_theoretical(2, sysfs, cpuinfo)
    assert t["clock_source"] == "/proc/cpuinfo cpu MHz" and t["clock_mhz"] == 2445
    assert "/proc/cpuinfo cpu MHz" in t["basis"] and "in a VM" in t["basis"] and "not a boost clock" in t["basis"]

    # Two hyper-threads of one core share its FMA units: one core counts, whatever the thread count.
    sysfs, cpuinfo = _fake_cpu(tmp_path / "smt", cores=((0, 0), (0, 0)))
    t = cpu_theoretical(2, sysfs, cpuinfo)
    assert t["cores"] == 1 and t["basis"].startswith("1 core (the run's 2 threads, of 1 core")

    # No clock to state, or no instruction-set flags (not x86): no figure at all.
    assert cpu_theoretical(2, *_fake_cpu(tmp_path / "noclock", mhz=None)) is None
    assert cpu_theoretical(2, *_fake_cpu(tmp_path / "noflags", flags="")) is None


def test_this_machines_theoretical_peak_rests_on_what_the_os_reports():
    from alexbench.harness.bench.peak import cpu_theoretical, theoretical_peak

    t = cpu_theoretical(2)
    if t is None:  # no clock or flags reported here: nothing is claimed
        return
    assert t["clock_source"] in ("cpufreq cpuinfo_max_freq", "/proc/cpuinfo cpu MHz")
    assert t["clock_source"] in t["basis"] and "FLOP/cycle" in t["basis"]
    assert theoretical_peak("cpu", "cpu", "float32", 2) == t
    assert theoretical_peak("cpu", "cpu", "bfloat16", 2) is None


ALL_PRECISIONS = ("float32", "tf32", "float16", "bfloat16")
ORT_REASON = "ONNX Runtime always optimises the graph (level ALL): no separate variant"


@pytest.mark.parametrize("name, precisions, compiled, no_compiled", [
    ("torch", ALL_PRECISIONS, "torch.compile", None),
    ("keras", ALL_PRECISIONS, "XLA (jit_compile=True)", None),
    ("keras-torch", ALL_PRECISIONS, "torch.compile", None),
    ("keras-jax", ALL_PRECISIONS, None,
     "keras-jax always runs jax.jit-compiled: its plain rows are the compiled ones"),
    ("onnx-torch", ("float32",), None, ORT_REASON),
    ("onnx-keras", ("float32",), None, ORT_REASON),
    ("null", ALL_PRECISIONS, None, "nothing to compile"),
])
def test_backends_declare_what_the_bench_runs(name, precisions, compiled, no_compiled):
    """The declarations the harness reads instead of a table of names (at least the precisions and
    the same skip reasons as the results written before the move; backends may add precisions, in
    either spelling); loading a class imports no framework."""
    cls = load_backend_class(name)
    assert set(declared(cls.bench_precisions)) >= set(precisions)
    assert cls.compiled_variant == compiled
    if compiled is None:
        assert cls.no_compiled_reason == no_compiled
        assert skip_reason(name, "cuda", "float32", True) == no_compiled
    assert cls.computes_nothing == (name == "null")


def test_reference_declares_it_is_not_benchmarked():
    from alexbench.harness.workers.bench_entry import bench_refusal

    assert load_backend_class("reference").bench_precisions == ()
    assert bench_refusal("reference") == "it is the float64 parity oracle, not a runtime to time"
    assert skip_reason("reference", "cpu", "float32", False) == bench_refusal("reference")
    assert [name for name in ("torch", "null", "onnx-torch") if bench_refusal(name)] == []


def test_each_matmul_implementation_is_tried_once():
    offered = [name for name, _ in backend_matmuls()]
    # onnx-keras runs the same ONNX Runtime matmul, openvino-keras the same OpenVINO one
    assert offered == ["torch", "onnx-torch", "openvino-torch", "litert"]


def test_cpu_matmul_peak_tries_every_library_and_the_fastest_counts():
    every_core = os.cpu_count() or 1
    peak = measure_matmul_peak("cpu", "float32", every_core, Method(warmup=1, min_time_s=0.0, min_reps=2), n=64)
    assert {library.split()[0] for library in peak["libraries"]} == {"torch", "numpy", "onnxruntime", "openvino",
                                                                     "LiteRT"}
    assert peak["library"] == max(peak["libraries"], key=lambda k: peak["libraries"][k]["gflops"])
    assert peak["n"] == 64 and peak["threads"] == every_core and peak["gflops"] > 0
    assert all(v["threads"] == every_core for v in peak["libraries"].values())
    torch_entry = next(v for k, v in peak["libraries"].items() if k.startswith("torch"))
    assert torch_entry["threads_seen"] == {"torch": every_core}
    with pytest.raises(ValueError, match="on CUDA devices only"):
        measure_matmul_peak("cpu", "bfloat16", 1, Method(), n=64)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every pool already has one thread")
def test_numpy_is_left_out_of_a_fewer_thread_peak_where_its_pool_cannot_be_set():
    """Here NumPy loaded before any thread variable was set: without threadpoolctl its BLAS would
    use every core, so a 1-thread peak must not take its figure (the halved "% of matmul peak")."""
    import importlib.util

    import torch

    threads = torch.get_num_threads()
    try:
        peak = measure_matmul_peak("cpu", "float32", 1, Method(warmup=0, min_time_s=0.0, min_reps=1), n=32)
    finally:  # this process' other tests keep their pool
        torch.set_num_threads(threads)
    torch_entry = next(v for k, v in peak["libraries"].items() if k.startswith("torch"))
    assert torch_entry["threads_seen"] == {"torch": 1}
    if importlib.util.find_spec("threadpoolctl") is None:
        assert "threadpoolctl" in peak["not_measured"]["numpy"]
        assert not any(k.startswith("numpy") for k in peak["libraries"])
    else:
        numpy_entry = next(v for k, v in peak["libraries"].items() if k.startswith("numpy"))
        assert set(numpy_entry["threads_seen"].values()) == {1}


def test_torch_half_precision_step_casts_model_and_input():
    """bfloat16 is the torch backend's business now (bench_step), on the CPU too."""
    import torch

    from alexbench.spec import canonical_weights, load_spec

    spec = load_spec(str(Path(__file__).resolve().parents[2] / "specs" / "ops-conv-groups.yaml"))
    backend = load_backend_class("torch")(options={"device": "cpu"})
    backend.build(spec, canonical_weights(spec, 0))
    threads = torch.get_num_threads()
    try:
        assert backend.prepare_bench("float32", False, "cpu", 1) == "eager"
        assert torch.get_num_threads() == 1 and backend.threads_seen() == {"torch": 1}
    finally:  # this process' other tests keep their pool
        torch.set_num_threads(threads)
    x = np.random.default_rng(0).standard_normal((2, *spec.input_shape), dtype=np.float32)
    # Only staged here: torch's CPU LRN has no bfloat16 kernel (CUDA has).
    backend.bench_step(x, "cpu", "bfloat16")
    assert {p.dtype for p in backend.model.parameters()} == {torch.bfloat16}
    out = backend.bench_step(x, "cpu")()  # float32 again, as built
    assert {p.dtype for p in backend.model.parameters()} == {torch.float32} and out.dtype == torch.float32
    assert np.allclose(out.numpy(), backend.run(x).output, rtol=1e-5, atol=1e-5)
