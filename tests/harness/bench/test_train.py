"""``alexbench bench --train``: training-step rows by inference's timing method, with real workers and
real frameworks on a tiny spec (ops-pool-norm: batch norm, dropout, 0.1 M MACs). No assertion is about
speed: only about what was timed, how it was counted, and what was skipped and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexbench.backends.registry import load_backend_class
from alexbench.harness.bench import training
from alexbench.harness.bench.run import BenchConfig, plan_jobs
from alexbench.harness.cli.main import main
from alexbench.harness.results.document import read_results
from alexbench.spec import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"
TINY = str(SPECS / "ops-pool-norm.yaml")
ONNX_REASON = load_backend_class("onnx-torch").no_train_reason


def test_a_training_step_counts_forward_weight_and_input_gradients():
    tiny = load_spec(TINY)
    conv1, fc1 = tiny.layer("conv1"), tiny.layer("fc1")
    assert conv1.macs + fc1.macs == tiny.macs
    # conv1 reads the input, which needs no gradient: forward + weight gradient; fc1 all three
    assert training.training_macs(tiny) == 2 * conv1.macs + 3 * fc1.macs
    alexnet = load_spec("alexnet")
    assert training.training_macs(alexnet) == 3 * alexnet.macs - alexnet.layer("conv1").macs


def test_plan_times_float32_steps_of_backends_that_train_and_says_why_not_for_the_rest():
    cfg = BenchConfig(backends=("torch", "keras", "reference", "onnx-torch"), precisions=("float32", "bfloat16"),
                      compiled="also", train=True)
    jobs, skipped = plan_jobs(cfg, "cpu")
    assert [j.label for j in jobs] == ["torch float32 train", "keras float32 train"]
    reasons = {(s["backend"], s["precision"], s["variant"]): s["reason"] for s in skipped}
    assert all(s["train"] for s in skipped)
    assert reasons[("torch", "float32", "compiled")] == training.COMPILED_REASON
    assert reasons[("torch", "bfloat16", None)] == training.PRECISION_REASON
    assert reasons[("keras", "bfloat16", "compiled")] == training.PRECISION_REASON
    assert "parity oracle" in reasons[("reference", "float32", None)]  # it trains, but is not timed
    assert reasons[("onnx-torch", "float32", None)] == ONNX_REASON  # its own words, from its class
    # without --train the same request plans inference jobs, as before
    inference, _ = plan_jobs(BenchConfig(backends=("torch",), precisions=("float32",)), "cpu")
    assert [j.label for j in inference] == ["torch float32"]


def test_cli_bench_train_times_torch_and_keras_steps_on_a_tiny_spec(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--train", "--spec", TINY, "--backends", "torch,keras,reference,onnx-torch",
                 "--batch-sizes", "3,2", "--min-time", "0.05", "--min-reps", "3", "--warmup", "1", "--threads", "2",
                 "--peak-size", "256", "--no-overhead", "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    doc = read_results(out)  # validated against the schema
    rows = doc["bench"]["rows"]
    assert sorted((r["backend"], r["batch"]) for r in rows) == [("keras", 2), ("keras", 3), ("torch", 2), ("torch", 3)]
    settings = doc["bench"]["settings"]
    macs = training.training_macs(load_spec(TINY))
    assert settings["train"]["macs_per_image"] == macs and "handed to train_step" in settings["inputs"]
    for r in rows:
        assert r["train"] is True and r["precision"] == "float32" and r["execution"] == training.EXECUTION
        assert r["images_per_s"] > 0 and r["repetitions"] >= 3
        assert r["images_per_s"] == pytest.approx(r["batch"] * 1e3 / r["median_ms"])
        assert r["gflops"] == pytest.approx(2 * macs * r["batch"] * 1e3 / r["median_ms"] / 1e9)
    skipped = {s["backend"]: s["reason"] for s in doc["bench"]["skipped"]}
    assert set(skipped) == {"reference", "onnx-torch"}
    assert "parity oracle" in skipped["reference"] and skipped["onnx-torch"] == ONNX_REASON
    table = printed.out
    assert "training step (forward + backward + SGD update" in table and f"{macs / 1e6:,.1f} M MACs" in table
    assert f"skipped onnx-torch float32 train: {ONNX_REASON}" in table
    assert "torch batch 2:" in printed.err and "training images/s" in printed.err


def test_bench_train_refuses_a_spec_without_class_scores_before_anything_runs(tmp_path, capsys):
    spec = tmp_path / "maps.yaml"
    spec.write_text("name: maps\ninput: [3, 8, 8]\nlayers:\n  - {name: conv1, op: conv2d, filters: 4, kernel: 3}\n")
    code = main(["bench", "--train", "--spec", str(spec), "--backends", "torch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("alexbench bench: error: --train: spec 'maps' ends in an output of shape [4, 6, 6]")


def test_help_teaches_train(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    assert "--train" in text and "alexbench bench --train --backends torch,keras" in text
    assert "about 3x the forward MACs" in " ".join(text.split())
