"""The timing method and its statistics, on a fake clock: exact numbers, no timing assertions."""

from __future__ import annotations

import numpy as np
import pytest

from alexbench.harness.bench.method import Method, summarize, time_step
from alexbench.harness.bench.peak import cpu_flops_per_cycle, gpu_theoretical
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
    assert skip_reason("torch", "cpu", "float16", False) == "float16 rows run on CUDA GPUs only"
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


def test_cpu_theoretical_peak_states_its_clock_and_basis():
    from alexbench.harness.bench.peak import cpu_theoretical, measured_clock_mhz

    reported = cpu_theoretical(2, measure_clock=False)
    if reported is None:  # no /proc/cpuinfo (not Linux): nothing is claimed
        return
    assert "as /proc/cpuinfo reports" in reported["basis"] and reported["clock_mhz"] == round(reported["reported_mhz"])
    clock = measured_clock_mhz()
    assert clock is None or clock > 0  # x86-64 Linux: the add chain ran and counted 4n adds
    measured = cpu_theoretical(2)
    assert ("measured with a dependent-add chain" in measured["basis"]) == (clock is not None)
