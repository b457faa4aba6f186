"""The typed results document writes exactly the JSON that compare and bench write: the compare
documents recorded before the typed classes existed round-trip byte for byte."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from alexbench.harness.results.document import read_document, results_json, validate_results, write_results
from alexbench.harness.results.model import (
    SCHEMA_ID,
    SCHEMA_IDS,
    BenchDocument,
    BenchEntry,
    BenchRow,
    BenchSection,
    CompareDocument,
    CompareEntry,
    ResultsDocument,
    Verdict,
)

GOLDEN = Path(__file__).resolve().parents[1] / "compare" / "golden"
# A compare document as alexbench wrote it before results/2 (the golden of that time), kept as it was.
RESULTS_1 = Path(__file__).resolve().parent / "results-1-compare-alexnet-owt.json"
CASES = sorted(GOLDEN.glob("compare-*.json"))


def test_golden_files_exist():
    assert len(CASES) == 3


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_compare_golden_round_trips_byte_for_byte(path):
    text = path.read_text("utf-8")
    doc = ResultsDocument.from_json(json.loads(text))
    assert isinstance(doc, CompareDocument) and all(isinstance(e, CompareEntry) for e in doc.backends)
    assert results_json(doc) == text
    assert doc.ok and doc.exit_code == 0 and doc.entry("torch").metrics.top1 == 1.0
    assert doc.entry("torch").onnx["file"].endswith(".onnx") and doc.entry("onnx-torch").onnx is None


def _failed_variants(golden: dict) -> dict:
    """The golden document with the entries compare writes for failures: a worker that failed (no
    param_note, no environment, but timings_s) and an ONNX run whose export failed (no timings_s)."""
    doc = copy.deepcopy(golden)
    worker_failed = {"name": "keras", "status": "failed", "stage": "build", "error": "boom", "stderr_tail": "tb",
                     "output_shape": None, "shape_ok": None, "param_count": None, "param_count_ok": None,
                     "metrics": None, "layers": [], "missing_layers": [], "first_divergent_layer": None,
                     "timings_s": {"total": 1.5}}
    export_failed = {"name": "onnx-keras", "status": "failed", "stage": "export", "error": "no export",
                     "stderr_tail": None, "output_shape": None, "shape_ok": None, "param_count": None,
                     "param_count_ok": None, "metrics": None, "layers": [], "missing_layers": [],
                     "first_divergent_layer": None}
    doc["backends"][2:] = [worker_failed, export_failed]
    doc["verdict"] = {"exit_code": 3, "summary": "FAIL"}
    return doc


def test_failed_entries_keep_their_own_keys():
    golden = json.loads(CASES[0].read_text("utf-8"))
    doc = _failed_variants(golden)
    validate_results(doc)
    typed = ResultsDocument.from_json(doc)
    assert json.dumps(typed.to_json()) == json.dumps(doc)  # same keys, same order
    assert typed.exit_code == 3 and not typed.ok
    assert typed.entry("keras").environment is None and typed.entry("onnx-keras").timings_s is None


def test_bench_document_round_trips_and_validates(tmp_path):
    row = BenchRow(backend="torch", variant=None, device="cpu", device_name="", precision="float32", tf32=False,
                   threads=2, batch=1, median_ms=2.0, p10_ms=1.5, p90_ms=2.5, images_per_s=500.0, gflops=1.2,
                   repetitions=9, execution="eager", timed_s=0.3, other_cores_busy=0.1)
    job = BenchEntry(name="torch", status="ok", param_count=10, timings_s={"total": 1.0}, job=True,
                     precision="float32", variant=None)
    null = BenchEntry(name="null", status="failed", stage="run", error="x", timings_s={"total": 0.5})
    doc = BenchDocument(created="2026-01-01T00:00:00Z", alexbench_version="0.1.0",
                        environment={"python": "3", "platform": "p", "cpu": "c", "cpu_count": 1, "gpus": [],
                                     "packages": {}},
                        spec=json.loads(CASES[0].read_text("utf-8"))["spec"], backends=[job, null],
                        verdict=Verdict(3, "1 rows"), bench=BenchSection(rows=[row], settings={"device": "cpu"}))
    d = doc.to_json()
    assert list(d) == ["schema", "kind", "created", "alexbench_version", "environment", "spec", "backends",
                       "verdict", "bench"]
    assert list(d["backends"][0])[-2:] == ["precision", "variant"] and "precision" not in d["backends"][1]
    assert list(d["bench"]["rows"][0])[-2:] == ["peak_share", "theoretical_share"]
    path = write_results(doc, tmp_path / "bench.json")  # validates against the schema first
    back = read_document(path)
    assert isinstance(back, BenchDocument) and back.to_json() == d and back.rows[0].images_per_s == 500.0


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind 'other'"):
        ResultsDocument.from_json({"kind": "other"})


def _precision_document(golden: dict) -> dict:
    """A golden fp32 document as a results/2 bf16 run writes it: the top-level precision, the
    profile's derivation and per-layer limits, and a backend's dtypes, precision check and top-k result."""
    doc = copy.deepcopy(golden)
    doc["schema"] = "alexbench.results/2"
    doc["precision"] = "bf16"
    doc["tolerance"] |= {"profile": "bf16", "derivation": "'bf16' profile: ...", "layers": {"conv1": 8.8e-3}}
    torch = doc["backends"][1]
    torch["dtypes"] = {"conv1": "bfloat16", "output": "float32"}
    torch["precision"] = {"requested": "bf16", "computed": ["fp32", "bf16"], "problem": None, "diagnosis": None}
    torch["topk"] = {"judged": True, "inputs": 64, "top1": 1.0, "top5": 1.0, "decisive_top1": 60, "kept_top1": 60,
                     "decisive_top5": 64, "kept_top5": 64, "lost": [], "note": "", "ok": True}
    return doc


def test_results_2_fields_round_trip_and_validate(tmp_path):
    doc = _precision_document(json.loads(CASES[0].read_text("utf-8")))
    validate_results(doc)
    typed = ResultsDocument.from_json(doc)
    assert typed.to_json() == doc and typed.precision == "bf16"
    torch = typed.entry("torch")
    assert torch.precision.computed == ["fp32", "bf16"] and torch.topk.ok and torch.topk.decisive_top1 == 60
    assert typed.tolerance.layers == {"conv1": 8.8e-3}
    assert read_document(write_results(typed, tmp_path / "r.json")).to_json() == doc


def test_results_1_documents_still_read():
    """A results/1 file stays valid and reads back as it was: no precision key is invented."""
    golden = json.loads(RESULTS_1.read_text("utf-8"))
    assert golden["schema"] == "alexbench.results/1"
    validate_results(golden)
    typed = ResultsDocument.from_json(golden)
    assert typed.precision is None and typed.entry("torch").precision is None and typed.schema == golden["schema"]


def test_results_2_rejects_an_unknown_precision():
    import jsonschema

    doc = _precision_document(json.loads(CASES[0].read_text("utf-8")))
    doc["precision"] = "fp8"
    with pytest.raises(jsonschema.ValidationError):
        validate_results(doc)
    doc["precision"], doc["schema"] = "bf16", "alexbench.results/4"
    with pytest.raises(jsonschema.ValidationError):
        validate_results(doc)


def _training_document(golden: dict) -> dict:
    """A golden document as compare --train writes it (results/3): the top-level training section and a
    backend's training result, with a divergence."""
    doc = copy.deepcopy(golden)
    doc["schema"] = "alexbench.results/3"
    doc["training"] = {
        "steps": 2, "batch": 8, "settings": {"optimizer": "sgd", "learning_rate": 0.01, "loss_on": "logits"},
        "labels": {"source": "seeded, seed 0", "sha256": "a" * 64},
        "masks": {"source": "seeded PCG64, seed 0", "layers": ["drop6", "drop7"], "sha256": "b" * 64},
        "tolerance": {"derivation": "float32 against float64: ...", "loss": 2e-5,
                      "gradient": {"fc8.weight": [3e-5, 3e-5]}, "parameter": {"fc8.weight": [3e-5, 2.9e-5]},
                      "momentum": {"fc8.weight": [3e-5, 3e-5]}, "statistic": {}, "ambiguous": [{}, {"pool5": 21}]}}
    checks = [{"tensor": "fc8.weight", "kind": "gradient", "rel_l2": 1.2e-3, "limit": 3e-5, "ok": False},
              {"tensor": "fc8.weight", "kind": "momentum", "rel_l2": None, "limit": 3e-5, "ok": False,
               "problem": "holds NaN"}]
    doc["backends"][1]["status"] = "mismatch"
    doc["backends"][1]["training"] = {
        "losses": [6.9, 6.8], "data_losses": [6.9, 6.8],
        "steps": [{"step": 1, "loss_rel_err": 1e-7, "loss_limit": 2e-5, "ok": True, "tensors": []},
                  {"step": 2, "loss_rel_err": None, "loss_limit": 4e-5, "ok": False, "tensors": checks}],
        "first_divergent": {"step": 2, "kind": "gradient", "tensor": "fc8.weight", "rel_l2": 1.2e-3, "limit": 3e-5}}
    doc["backends"][0]["training"] = {"losses": [6.9, 6.8], "data_losses": [6.9, 6.8], "steps": [],
                                      "first_divergent": None}
    return doc


def test_results_3_training_fields_round_trip_and_validate(tmp_path):
    doc = _training_document(json.loads(CASES[0].read_text("utf-8")))
    validate_results(doc)
    typed = ResultsDocument.from_json(doc)
    assert typed.to_json() == doc and typed.schema == SCHEMA_ID == "alexbench.results/3"
    torch = typed.entry(doc["backends"][1]["name"]).training
    assert torch.first_divergent.tensor == "fc8.weight" and torch.steps[1].tensors[1].problem == "holds NaN"
    assert typed.training.tolerance.parameter == {"fc8.weight": [3e-5, 2.9e-5]} and typed.training.batch == 8
    assert read_document(write_results(typed, tmp_path / "r.json")).to_json() == doc
    # An inference document has no training keys at all.
    assert "training" not in ResultsDocument.from_json(json.loads(CASES[0].read_text("utf-8"))).to_json()


def test_results_3_rejects_an_unknown_tensor_kind():
    import jsonschema

    doc = _training_document(json.loads(CASES[0].read_text("utf-8")))
    doc["backends"][1]["training"]["steps"][1]["tensors"][0]["kind"] = "weights"
    with pytest.raises(jsonschema.ValidationError):
        validate_results(doc)


@pytest.mark.parametrize("version", SCHEMA_IDS)
def test_every_version_this_code_reads_validates(version):
    doc = json.loads(RESULTS_1.read_text("utf-8")) | {"schema": version}
    validate_results(doc)
    assert ResultsDocument.from_json(doc).schema == version
