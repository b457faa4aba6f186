"""The report's training section from a compare --train results document (results/3): the loss chart,
the per-layer gradient table, the first divergence and the settings; a document without training
renders no such section. The document is made by hand from the alexnet compare fixture, so every
figure in it is known."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from alexbench.harness.report.write import write_report_for_results
from alexbench.harness.results.document import read_results

GOLDEN = Path(__file__).parent / "golden"
STEPS = 3
LOSSES = {"reference": [6.9078, 6.9001, 6.8925], "torch": [6.9078, 6.9001, 6.8925], "keras": [6.9078, 6.9003, 6.8990]}
# keras' fc8.weight gradient leaves its limit at step 2: the planted divergence the report must show.
BAD = ("keras", 2, "fc8.weight")
LIMIT = 1e-5


def _tensors(backend: str, step: int) -> list[dict]:
    out = []
    for tensor in ("fc8.weight", "fc8.bias", "conv1.weight", "conv1.bias"):  # backward order
        rel = 5e-4 if (backend, step, tensor) == BAD else 1e-7 * step * (2 if tensor.startswith("conv1") else 1)
        out.append({"tensor": tensor, "kind": "gradient", "rel_l2": rel, "limit": LIMIT, "ok": rel <= LIMIT})
        out.append({"tensor": tensor, "kind": "parameter", "rel_l2": rel / 10, "limit": LIMIT, "ok": True})
    return out


def training_doc() -> dict:
    doc = copy.deepcopy(read_results(GOLDEN / "results-compare-cpu.json"))
    doc["schema"] = "alexbench.results/3"
    doc["training"] = {
        "steps": STEPS, "batch": 4,
        "settings": {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": False,
                     "weight_decay": 0.0005, "loss": "cross_entropy", "batch_size": 128, "penalties": {},
                     "declared": True, "loss_on": "logits"},
        "labels": {"source": "seeded, seed 0", "sha256": "ab" * 32},
        "masks": {"source": "seeded PCG64, seed 0", "layers": ["drop6", "drop7"], "sha256": "cd" * 32},
        "tolerance": {"derivation": "float32 rounding grown through the backward pass", "loss": 1e-6,
                      "gradient": {}, "parameter": {}, "momentum": {}, "statistic": {},
                      "ambiguous": [{"pool5": 21}, {}, {"relu3": 2}]}}
    for b in doc["backends"]:
        name = b["name"]
        if name.startswith("onnx"):
            b.update(status="unsupported", error="ONNX Runtime runs inference only")
            continue
        steps = [] if name == "reference" else [
            {"step": k, "loss_rel_err": 1e-7, "ok": not (name, k) == BAD[:2], "tensors": _tensors(name, k)}
            for k in range(1, STEPS + 1)]
        first = ({"step": 2, "kind": "gradient", "tensor": "fc8.weight", "rel_l2": 5e-4, "limit": LIMIT}
                 if name == BAD[0] else None)
        b["training"] = {"losses": LOSSES[name], "data_losses": LOSSES[name], "steps": steps,
                         "first_divergent": first}
    return doc


def _table(html: str, css: str) -> str:
    return re.search(rf'<table class="{css}">.*?</table>', html, re.S).group(0)


def test_loss_chart_has_one_line_per_backend_with_a_point_per_step(tmp_path):
    write_report_for_results(training_doc(), tmp_path)
    svg = (tmp_path / "chart-loss-1.svg").read_text()
    lines = re.findall(r'<polyline points="([^"]+)"', svg)
    assert len(lines) == 3  # reference, torch, keras
    assert all(len(points.split()) == STEPS for points in lines)
    for name in LOSSES:
        assert f">{name}</text>" in svg  # the legend
    assert "step 2: loss 6.9003" in svg  # keras' second loss as its tooltip
    page = (tmp_path / "report.html").read_text()
    assert 'id="training"' in page and page.count('class="chart chart-loss"') == 2  # <figure> and its <svg>


def test_gradient_table_shows_each_layers_worst_error_against_its_limit(tmp_path):
    write_report_for_results(training_doc(), tmp_path)
    table = _table((tmp_path / "report.html").read_text(), "training-gradients")
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
    assert [re.search(r"<td>(\w+)</td>", r).group(1) for r in rows] == ["conv1", "fc8"]  # spec order
    conv1, fc8 = rows
    # torch: conv1's worst is step 3 (6e-7), within its limit; keras' fc8 carries the planted 5e-4 at step 2
    assert "6.00e-07 / 1.00e-05" in conv1 and "conv1.weight, step 3" in conv1 and 'class="num bad"' not in conv1
    assert fc8.count('class="num ok"') == 1 and fc8.count('class="num bad"') == 1
    assert "5.00e-04 / 1.00e-05" in fc8 and "fc8.weight, step 2" in fc8
    assert "reference" not in _table((tmp_path / "report.html").read_text(), "training-gradients")  # the oracle


def test_first_divergence_and_settings_are_stated(tmp_path):
    write_report_for_results(training_doc(), tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "## Training" in text
    assert ("| keras | 3 | 6.899 | ❌ diverged — *step 2: gradient fc8.weight, rel_l2 5.00e-04 (limit 1.00e-05)* |"
            in text)
    assert "| torch | 3 | 6.8925 | ✅ none — *every step within tolerance* |" in text
    assert "| onnx-torch |  |  | ⚠️ unsupported — *ONNX Runtime runs inference only* |" in text
    assert ("**settings**: sgd, learning rate 0.01, momentum 0.9, weight decay 0.0005 (coupled), batch size 128, "
            "loss cross_entropy on the logits") in text
    assert "**steps**: 3 on one batch of 4" in text and "layers drop6, drop7" in text
    assert "![Loss after each step" in text and "(chart-loss-1.svg)" in text
    assert ("**kinks within float32's error (their spread widens the limits)**: step 1: pool5 21; step 3: relu3 2"
            in text)


def test_a_document_without_training_has_no_training_section(tmp_path):
    doc = read_results(GOLDEN / "results-compare-cpu.json")
    written = write_report_for_results(doc, tmp_path)
    assert not any(p.name.startswith("chart-loss") for p in written)
    assert "## Training" not in (tmp_path / "report.md").read_text()
    assert 'id="training"' not in (tmp_path / "report.html").read_text()
