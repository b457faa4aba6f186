"""``alexbench backends``: a header, installed framework versions, and what each backend is
(it printed bare rows, no versions, and nothing said what ``null`` is for)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

from alexbench.harness.cli.main import main


def test_table_has_a_header_versions_and_explains_null(capsys):
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["backend", "available", "framework"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert f"torch {version('torch')}" in rows["torch"]
    assert f"keras {version('keras')}" in rows["keras"]
    assert "overhead" in rows["null"] and "not a parity backend" in rows["null"]
    assert "float64" in rows["reference"]


def test_json_keeps_the_old_keys_and_adds_summary_and_versions(capsys):
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list)
    by_name = {row["name"]: row for row in rows}
    for row in rows:
        assert {"name", "target", "available", "detail", "summary", "versions"} <= set(row)
        assert row["summary"], row["name"]
    assert by_name["torch"]["versions"] == {"torch": version("torch")}
    assert by_name["null"]["versions"] == {}


def test_listing_imports_no_framework():
    """Versions come from package metadata: the listing stays fast and light."""
    code = ("import sys; from alexbench.harness.cli.main import main; main(['backends']); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
