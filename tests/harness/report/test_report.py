"""`alexbench report`: contents from the spec, variant diffs, merged results, escaping, files and
errors. The browser checks are in report/test_browser.py, the golden report.md in test_report_golden.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alexbench.harness.cli.main import main
from alexbench.harness.report.charts import Point, Series, line_chart
from alexbench.harness.report.markup import Html, el, esc, md, safe_url
from alexbench.harness.report.model import align_layers, key_attrs
from alexbench.harness.report.write import write_report_for_results
from alexbench.harness.results.document import read_results
from alexbench.spec import load_spec, shipped_spec_names

GOLDEN = Path(__file__).parent / "golden"
RESULTS = sorted(str(p) for p in GOLDEN.glob("results-*.json"))
TEST_SPECS = sorted(str(p) for p in (Path(__file__).parents[2] / "specs").glob("*.yaml"))
OPS_CONV_GROUPS = str(Path(__file__).parents[2] / "specs" / "ops-conv-groups.yaml")  # uneven kernel/padding, no bias


def report(tmp_path: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / "out"
    return main(["report", *args, "-o", str(out), "--quiet"]), out


@pytest.mark.parametrize("name", shipped_spec_names() + TEST_SPECS)
def test_every_spec_renders(tmp_path, name):
    spec = load_spec(name)
    code, out = report(tmp_path, name)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["diagram.svg", "report.html", "report.md"]
    text, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "| **total** |" in text and f"**{spec.param_count:,}**" in text
    assert "![" in text and "](diagram.svg)" in text
    for layer in spec.layers:
        assert f"| {layer.name} | {layer.op} |" in text
    # self-contained: no scripts, no external loads, the diagram inlined without its XML prolog
    assert "<script" not in page and "src=" not in page and "<link" not in page and "@import" not in page
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert page.count('class="diagram"') == 2  # <figure> and its inline <svg>
    assert (out / "diagram.svg").read_text().startswith("<?xml")


def test_alexnet_totals_in_both_formats(tmp_path):
    code, out = report(tmp_path, "alexnet")
    assert code == 0
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert "60,965,224" in text and "724,406,816" in text  # parameters and MACs
        assert "filters 96 · kernel 11×11 · stride 4" in text and "96x55x55" in text


def test_key_attrs():
    spec = load_spec("alexnet")
    assert key_attrs(spec.layer("conv2")) == "filters 256 · kernel 5×5 · padding 2 · groups 2"
    assert key_attrs(spec.layer("pool1")) == "kernel 3×3 · stride 2"  # a pool's stride always shows
    assert key_attrs(spec.layer("norm1")) == "size 5 · alpha 0.0005 · beta 0.75 · k 2"
    assert key_attrs(spec.layer("relu1")) == ""
    ops = load_spec(OPS_CONV_GROUPS)
    assert key_attrs(ops.layer("conv3")) == "filters 8 · kernel 2×3 · stride 2 · padding 0,1,1,1 · groups 4 · bias no"
    assert key_attrs(load_spec("alexnet-owt").layer("avgpool")) == "output 6"


def test_variant_alignment():
    base, owt, keras = (load_spec(n) for n in ("alexnet", "alexnet-owt", "alexnet-blog-keras"))
    rows = {(row.name, i): row for i, row in enumerate(align_layers([base, owt, keras]))}
    by_name: dict[str, list] = {}
    for (name, _), row in rows.items():
        by_name.setdefault(name, []).append(row)
    assert by_name["conv1"][0].changes[0].startswith("changed: filters 96 → 64; padding 0 → 2")
    assert by_name["conv1"][0].changes[1] == ""  # the blog's conv1 is the paper's
    assert by_name["relu1"][0].changes[0].startswith("reshaped: output 96x55x55 → 64x55x55")
    assert by_name["norm1"][0].changes == ("removed", "removed")
    assert by_name["avgpool"][0].changes[0] == "added" and by_name["avgpool"][0].layers[0] is None
    assert [r.changes[0] for r in by_name["drop6"]] == ["moved", "moved"]  # before fc6 in torchvision
    assert by_name["bn1"][0].changes[1] == "added"
    assert "groups 2 → 1" in by_name["conv2"][0].changes[1]


def test_variants_section(tmp_path):
    code, out = report(tmp_path, "alexnet", "--compare-with", "alexnet-owt", "--compare-with", "alexnet-blog-keras")
    assert code == 0
    text = (out / "report.md").read_text()
    assert "| alexnet-owt | 3x224x224 | 1000 | 22 | 61,100,840 | +135,616 — *+0.2%* |" in text
    assert "| norm1 | lrn · size 5" in text and "➖ *removed* | ➖ *removed* |" in text
    assert 'class="variant-diff"' in (out / "report.html").read_text()


def test_fixtures_follow_schema_and_spec():
    spec = load_spec("alexnet")
    for path in RESULTS:
        doc = read_results(path)  # validates against results_schema.json
        assert doc["spec"]["sha256"] == spec.sha256, (
            f"{path} is for an older alexnet.yaml; refresh: ALEXBENCH_REGEN_GOLDEN=1 pytest "
            "tests/harness/report/test_golden.py")


def test_results_merge_one_column_per_machine(tmp_path):
    args = [a for path in RESULTS for a in ("--results", path)]
    code, out = report(tmp_path, "alexnet", *args)
    assert code == 0
    text = (out / "report.md").read_text()
    assert "| backend | AMD EPYC 7B13 (16 CPUs) | NVIDIA H200 |" in text  # parity: one column per machine
    assert "first divergent layer: norm1" in text and "export: tf2onnx" in text
    assert "| backend | batch | AMD EPYC 7B13 | Intel(R) Xeon(R) Platinum 8480+ | NVIDIA H200 |" in text
    assert "|  | AMD EPYC 7B13 (16 CPUs) | NVIDIA H200 |" in text  # environment
    charts = sorted(p.name for p in out.glob("chart-*.svg"))
    assert charts == ["chart-errors-1.svg", "chart-errors-2.svg", "chart-throughput-1.svg",
                      "chart-throughput-2.svg", "chart-throughput-3.svg"]
    for name in charts:
        assert f"]({name})" in text
    page = (out / "report.html").read_text()
    assert page.count('class="chart chart-errors"') == 2 * 2 and page.count('class="chart chart-throughput"') == 3 * 2


def test_report_for_one_compare_run(tmp_path):
    doc = read_results(GOLDEN / "results-compare-gpu.json")
    written = write_report_for_results(doc, tmp_path / "r")  # what `compare --report DIR` calls
    assert [p.name for p in written[:2]] == ["report.md", "report.html"]
    assert "MISMATCH: keras first diverges at norm1" in written[0].read_text()


def test_results_for_another_spec(tmp_path, capsys):
    code, _ = report(tmp_path, "alexnet-owt", "--results", RESULTS[0])
    assert code == 2
    err = capsys.readouterr().err
    assert "these results are for spec 'alexnet'" in err and "the report is for 'alexnet-owt'" in err


def test_bad_results_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "alexbench.results/1", "kind": "compare"}))
    code, _ = report(tmp_path, "alexnet", "--results", str(bad))
    assert code == 2 and "not an alexbench results file" in capsys.readouterr().err
    bad.write_text("{not json")
    code, _ = report(tmp_path, "alexnet", "--results", str(bad))
    assert code == 2 and "not a readable results file" in capsys.readouterr().err


def test_output_must_be_a_folder(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep me")
    assert main(["report", "alexnet", "-o", str(target), "-q"]) == 2
    assert "is not a folder" in capsys.readouterr().err and target.read_text() == "keep me"


def test_rewrites_only_its_own_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "chart-errors-7.svg").write_text("stale")  # from an earlier report
    code, _ = report(tmp_path, "alexnet", "--no-diagram")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.html", "report.md"]
    assert "--no-diagram" in (out / "report.md").read_text()
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_missing_graphviz_says_how_to_install(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no `dot` anywhere on PATH
    run = subprocess.run([sys.executable, "-m", "alexbench", "report", "alexnet", "-o", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2
    assert "apt-get install graphviz" in run.stderr and "--no-diagram" in run.stderr
    assert not (tmp_path / "o").exists()  # checked before anything is written
    ok = subprocess.run([sys.executable, "-m", "alexbench", "report", "alexnet", "-q", "--no-diagram", "-o",
                         str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--compare-with alexnet-owt" in text and "--results" in text
    assert "apt-get install graphviz" in text


# ---- escaping and charts --------------------------------------------------------------------------

def test_html_escaping():
    assert el("td", "<script>alert(1)</script>") == "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"
    assert el("a", "x", href='"><img src=x onerror=alert(1)>') == (
        '<a href="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;">x</a>')
    assert isinstance(esc("<b>") + "<i>", Html) and esc("<b>") + "<i>" == "&lt;b&gt;&lt;i&gt;"
    assert el("p", Html("<b>made here</b>")) == "<p><b>made here</b></p>"


def test_markdown_escaping():
    assert md("a | b <script> `x` [l](javascript:1) *e*") == (
        r"a \| b &lt;script&gt; \`x\` \[l\](javascript:1) \*e\*")
    assert md("two\nlines") == "two lines"  # a newline would end a table row
    assert safe_url("https://arxiv.org/abs/1404.5997") and not safe_url("javascript:alert(1)")
    assert not safe_url('https://x.org/"onmouseover=1')


def test_log_chart_handles_zero_and_gaps():
    svg = line_chart("t <b>", ["a", "b", "c", "d"], [Series("x<y", [
        Point(0, 1e-6), Point(1, 0.0), Point(2, None), Point(3, 1e-2, bad=True)])],
        y_label="err", x_label="layer", log_y=True, css_class="chart")
    assert "t &lt;b&gt;" in svg and "x&lt;y" in svg and "<b>" not in svg
    assert svg.count("<polyline") == 1  # the gap at c breaks the line; d stands alone
    assert 'fill="white" stroke=' in svg  # the exact zero is a hollow point
    assert "1e-6" in svg and "1e-2" in svg
    assert svg.count('stroke="#d62728"') == 1  # one red ring


def test_report_from_a_real_compare_run(tmp_path):
    """compare writes results, report reads them: the schema is the only contract between them."""
    results = tmp_path / "cmp.json"
    code = main(["compare", "--spec", OPS_CONV_GROUPS, "--backends", "torch", "--no-onnx", "--batch", "2",
                 "--json", str(results), "--quiet"])
    assert code == 0
    code, out = report(tmp_path, OPS_CONV_GROUPS, "--results", str(results))
    assert code == 0
    text = (out / "report.md").read_text()
    assert "✅ ok · max_abs" in text and "all 9 layers within tolerance" in text
    assert "](chart-errors-1.svg)" in text and (out / "chart-errors-1.svg").is_file()


def test_precision_run_charts_relative_error_beside_the_profile(tmp_path):
    """A bf16 run (results/2) charts each layer's relative L2 error and the profile's growing limit; the
    results/1 files above keep their max abs chart."""
    doc = read_results(GOLDEN / "results-compare-cpu.json")
    names = [row["name"] for row in doc["backends"][1]["layers"]]
    doc |= {"schema": "alexbench.results/2", "precision": "bf16"}
    doc["tolerance"] |= {"profile": "bf16", "layers": {n: 8.8e-3 * (1 + i) ** 0.5 for i, n in enumerate(names)}}
    written = write_report_for_results(doc, tmp_path / "r")
    text = written[0].read_text()
    assert "Per-layer relative L2 error in bf16 (grey: the profile's limit) against the float64 reference" in text
    assert "precision bf16; bf16: atol" in text
    chart = (tmp_path / "r" / "chart-errors-1.svg").read_text()
    assert "bf16 profile limit" in chart and "‖x − reference‖ / ‖reference‖" in chart
    assert f"{names[0]}: limit 8.80e-03" in chart


def test_two_runs_side_by_side(tmp_path, capsys):
    """One real compare run, and a copy of it whose torch interpreter is edited to another environment's
    (what `compare --python torch=...` records): per backend, where each run ran and its errors per layer."""
    local = tmp_path / "local.json"
    assert main(["compare", "--spec", OPS_CONV_GROUPS, "--backends", "torch", "--no-onnx", "--batch", "2",
                 "--json", str(local), "--quiet"]) == 0
    doc = json.loads(local.read_text())
    torch = doc["backends"][1]
    torch["environment"]["interpreter"] = {"executable": "/tmp/v2/bin/python", "version": "3.12.1",
                                           "prefix": "/tmp/v2", "packages": {"torch": "2.4.0", "numpy": "1.26.4"}}
    torch["layers"][2] |= {"rel_l2": 0.5, "ok": False}
    torch |= {"status": "mismatch", "first_divergent_layer": torch["layers"][2]}
    doc["created"] = "2026-01-02T03:04:05Z"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    code, out = report(tmp_path, OPS_CONV_GROUPS, "--results", str(local), "--results", str(edited))
    assert code == 0
    text = (out / "report.md").read_text()
    section = text[text.index("## Runs side by side"):text.index("## Environment")]
    here = json.loads(local.read_text())["backends"][1]["environment"]["interpreter"]
    packages = ", ".join(f"{k} {v}" for k, v in here["packages"].items())
    assert (f"| ran in | {here['executable']} (Python {here['version']}, prefix {here['prefix']}): {packages} | "
            "/tmp/v2/bin/python (Python 3.12.1, prefix /tmp/v2): torch 2.4.0, numpy 1.26.4 |") in section
    assert "| verdict | ✅ ok — *all 9 layers within tolerance* | ❌ mismatch — *first divergent layer: " \
           f"{torch['layers'][2]['name']}* |" in section
    rows = [line for line in section.splitlines() if line.startswith(f"| {torch['layers'][2]['name']} |")]
    assert len(rows) == 1 and rows[0].endswith("| ❌ 5.00e-01 |")
    assert "| reference |" not in section  # the reference is what the others are measured against
    page = (out / "report.html").read_text()
    assert page.count('class="side-by-side"') == 1
