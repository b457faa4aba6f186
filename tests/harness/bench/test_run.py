"""``alexbench bench`` end to end on the CPU, with real workers and real frameworks, on a tiny
spec (ops-conv-groups: 0.2 M MACs). No assertion is about speed: only about what was measured,
how it was summarised, and what was written."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexbench.harness import environment
from alexbench.harness.bench.method import Method
from alexbench.harness.bench.run import BenchConfig, run_bench
from alexbench.harness.cli.main import main
from alexbench.harness.results.document import read_results, write_results

TINY = str(Path(__file__).resolve().parents[2] / "specs" / "ops-conv-groups.yaml")


def _check_row_arithmetic(row: dict, macs: int) -> None:
    assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
    assert row["images_per_s"] == pytest.approx(row["batch"] * 1e3 / row["median_ms"])
    assert row["gflops"] == pytest.approx(2 * macs * row["batch"] * 1e3 / row["median_ms"] / 1e9)


def test_null_backend_rows_respect_min_reps_and_validate(tmp_path):
    cfg = BenchConfig(spec=TINY, backends=("null",), batch_sizes=(1, 3), overhead=True, peak_n=128,
                      method=Method(warmup=2, min_time_s=0.0, min_reps=7))
    doc = run_bench(cfg)
    rows = doc["bench"]["rows"]
    assert [(r["backend"], r["batch"], r["repetitions"]) for r in rows] == [("null", 1, 7), ("null", 3, 7)]
    assert all(r["gflops"] is None and r["peak_share"] is None for r in rows)  # no work, no FLOPs
    assert all(r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] for r in rows)
    assert [o["repetitions"] for o in doc["bench"]["overhead"]] == [7]
    peak = doc["bench"]["peak"]["measured"]["float32"]
    assert peak["n"] == 128 and peak["gflops"] == max(v["gflops"] for v in peak["libraries"].values())
    # every library the backends offer is tried; the best one counts
    assert {lib.split()[0] for lib in peak["libraries"]} == {"torch", "numpy", "onnxruntime", "openvino", "LiteRT"}
    assert all(v["repetitions"] >= 3 for v in peak["libraries"].values())
    assert doc["verdict"]["exit_code"] == 0
    write_results(doc, tmp_path / "null.json")  # validates against the schema first
    assert read_results(tmp_path / "null.json")["kind"] == "bench"


def test_min_time_keeps_a_real_backend_timing_past_min_reps():
    cfg = BenchConfig(spec=TINY, backends=("torch",), batch_sizes=(1,), overhead=False, peak=False,
                      method=Method(warmup=1, min_time_s=0.3, min_reps=2))
    (row,) = run_bench(cfg)["bench"]["rows"]
    assert row["timed_s"] >= 0.3 and row["repetitions"] > 2


def test_cli_bench_torch_and_onnx_torch_tiny_spec(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--spec", TINY, "--backends", "torch,onnx-torch", "--batch-sizes", "2,1",
                 "--min-time", "0.05", "--min-reps", "3", "--warmup", "1", "--threads", "2", "--peak-size", "256",
                 "--json", str(out), "--cache-dir", str(tmp_path / "cache")])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    doc = read_results(out)
    rows = doc["bench"]["rows"]
    assert sorted((r["backend"], r["batch"]) for r in rows) == [("onnx-torch", 1), ("onnx-torch", 2),
                                                                ("torch", 1), ("torch", 2)]
    macs = doc["spec"]["macs"]
    measured = doc["bench"]["peak"]["measured"]["float32"]["gflops"]
    for r in rows:
        _check_row_arithmetic(r, macs)
        assert r["peak_share"] == pytest.approx(r["gflops"] / measured)
        assert r["device"] == "cpu" and r["device_name"] == environment.cpu_name() and r["precision"] == "float32"
        assert r["threads"] == 2 and r["repetitions"] >= 3
    by_name = {b["name"]: b for b in doc["backends"]}
    assert by_name["torch"]["threads_seen"]["torch"] == 2  # the thread count each runtime really uses
    assert by_name["onnx-torch"]["environment"]["intra_op_threads"] == 2
    assert by_name["onnx-torch"]["environment"]["providers"] == ["CPUExecutionProvider"]
    assert "images/s" in printed.out and "onnx-torch" in printed.out  # the table
    assert "torch batch 2:" in printed.err  # progress on stderr


@pytest.mark.parametrize("args, message", [
    (["--batch-sizes", "0"], "batch size expected a positive integer; received 0"),
    (["--batch-sizes", "1,x"], "batch size expected a positive integer; received 'x'"),
    (["--device", "tpu"], "expected auto, cpu, cuda or cuda:N"),
    (["--compile", "sometimes"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_clear_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "--device cuda: no CUDA GPU found"),
    (["--device", "cpu", "--precision", "tf32"], "--precision tf32 on cpu: TF32 is a CUDA tensor-core "
     "matmul mode; use --device cuda, or float32 on the CPU"),
    (["--precision", "float8,fp16,fp64"], "unknown precision float8, fp64; known: float32, tf32, "
     "float16, bfloat16, int8 (or compare's names fp32, bf16, fp16)"),
    (["--backends", "torhc"], "unknown backend 'torhc' (did you mean 'torch'?)"),
])
def test_requests_this_machine_cannot_serve_exit_2_before_anything_runs(args, message, capsys, monkeypatch):
    monkeypatch.setattr(environment, "gpu_names", lambda: [])  # the same answer on a GPU machine
    assert main(["bench", "--spec", TINY, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "measuring" not in err  # refused before the first worker started


def test_a_one_thread_bench_measures_its_peak_with_one_thread(tmp_path, capsys):
    """--threads 1 once shared the rows against a peak NumPy measured on every core ("% of matmul
    peak" halved): the peak worker now runs every library with the rows' thread count and says so."""
    out = tmp_path / "bench.json"
    code = main(["bench", "--spec", TINY, "--backends", "torch", "--batch-sizes", "1", "--threads", "1",
                 "--min-time", "0", "--min-reps", "2", "--warmup", "1", "--peak-size", "128", "--no-overhead",
                 "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    doc = read_results(out)
    peak = doc["bench"]["peak"]
    measured = peak["measured"]["float32"]
    assert peak["threads"] == 1 and measured["threads"] == 1
    libraries = {name.split()[0]: entry for name, entry in measured["libraries"].items()}
    assert libraries["torch"]["threads_seen"] == {"torch": 1}  # torch.get_num_threads() in the peak worker
    assert all(entry["threads"] == 1 for entry in libraries.values())
    # NumPy's BLAS got the thread variables before it loaded (or threadpoolctl's limit): 1 thread.
    assert "numpy" in libraries and set(map(str, libraries["numpy"]["threads_seen"].values())) == {"1"}
    (row,) = doc["bench"]["rows"]
    assert row["threads"] == 1 and row["peak_share"] == pytest.approx(row["gflops"] / measured["gflops"])
    assert "matmul peak (float32, 128^3, 1 thread," in printed.out


def test_bench_reference_is_refused_before_any_work(capsys):
    """It once measured the peak, then failed with NotImplementedError in the reference worker."""
    import time

    started = time.perf_counter()
    assert main(["bench", "--spec", TINY, "--backends", "torch,reference", "--batch-sizes", "1"]) == 2
    assert time.perf_counter() - started < 5
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "measuring" not in err and "Traceback" not in err
    assert "backend 'reference' cannot be benchmarked (it is the float64 parity oracle" in lines[0]
    assert "backends that can: torch, keras" in lines[0] and "reference," not in lines[0]


def test_precisions_side_by_side_with_float32_and_their_speed_up(tmp_path, capsys):
    """compare's spellings in, the long names out; the bfloat16 rows run on the CPU because Keras
    declares them, and the table puts them next to float32 with the ratio of the two."""
    out = tmp_path / "bench.json"
    code = main(["bench", "--spec", TINY, "--backends", "keras", "--batch-sizes", "2", "--precision", "fp32,bf16",
                 "--device", "cpu", "--min-time", "0", "--min-reps", "3", "--warmup", "1", "--peak-size", "128",
                 "--no-overhead", "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    doc = read_results(out)
    rows = {r["precision"]: r for r in doc["bench"]["rows"]}
    assert sorted(rows) == ["bfloat16", "float32"] and doc["bench"]["settings"]["precisions"] == ["float32", "bfloat16"]
    assert [(b["name"], b["precision"]) for b in doc["backends"]] == [("keras", "float32"), ("keras", "bfloat16")]
    assert list(doc["bench"]["peak"]["measured"]) == ["float32"]  # no bfloat16 matmul peak on a CPU
    assert rows["bfloat16"]["peak_share"] is None and rows["float32"]["peak_share"] is not None
    lines = printed.out.splitlines()
    header = next(line for line in lines if line.startswith("backend"))
    assert header.split()[-2:] == ["vs", "float32"]
    table = [line.split() for line in lines if line.startswith("keras ")]
    ratio = rows["bfloat16"]["images_per_s"] / rows["float32"]["images_per_s"]
    assert [(cells[2], cells[-1]) for cells in table] == [("float32", "1.00x"), ("bfloat16", f"{ratio:.2f}x")]


def test_int8_is_calibrated_at_build_and_its_seconds_are_reported_apart(tmp_path):
    """The worker writes the seeded calibration batch and passes it; the seconds ONNX Runtime reports
    for calibrating become the job's timings_s["calibration"], a line under the table, and part of
    the build stage, never of a timed row."""
    from alexbench.harness.bench.table import render_bench
    from alexbench.harness.workers.bench_entry import CALIBRATION_INPUTS

    cfg = BenchConfig(spec=TINY, backends=("onnx-torch",), batch_sizes=(2,), device="cpu", precisions=("fp32", "int8"),
                      overhead=False, peak=False, cache_dir=str(tmp_path / "cache"),
                      method=Method(warmup=1, min_time_s=0.0, min_reps=3))
    doc = run_bench(cfg)
    assert doc["verdict"]["exit_code"] == 0, doc["verdict"]
    assert [r["precision"] for r in doc["bench"]["rows"]] == ["float32", "int8"]
    jobs = {b.get("precision"): b for b in doc["backends"] if b["name"] == "onnx-torch" and "precision" in b}
    int8 = jobs["int8"]
    facts = int8["environment"]["precision"]
    assert facts["requested"] == "int8" and f"calibration on {CALIBRATION_INPUTS} inputs" in facts["model"]
    assert int8["timings_s"]["calibration"] == facts["calibration_s"] > 0
    assert int8["timings_s"]["build"] >= int8["timings_s"]["calibration"]  # inside the build, before any timing
    assert "calibration" not in jobs["float32"]["timings_s"]
    assert doc["bench"]["settings"]["calibration"] == f"{CALIBRATION_INPUTS} seeded images (seed 0)"
    assert (f"int8 calibration (onnx-torch): {facts['calibration_s']:.2f} s on {CALIBRATION_INPUTS} seeded images "
            f"(seed 0), at build: not in the timed runs") in render_bench(doc).splitlines()
