"""The runtime extras (``alexbench[openvino]``, ``alexbench[litert]``) are optional: where one is not
installed, its backends exit 3 with the install hint while the others report, and `alexbench backends`
lists them as unavailable with the same hint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SPEC = str(Path(__file__).parents[2] / "specs" / "ops-conv-groups.yaml")

# Loaded at interpreter start-up (PYTHONPATH): module lookups of the hidden frameworks find nothing, as on
# a machine where they were never installed.
HIDE = """import sys
from importlib.machinery import PathFinder

HIDDEN = {"openvino", "ai_edge_litert"}


class Hidden(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.partition(".")[0] in HIDDEN else super().find_spec(name, path, target)


sys.meta_path = [Hidden if finder is PathFinder else finder for finder in sys.meta_path]
"""


def run_alexbench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    site = tmp_path / "hide"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-m", "alexbench", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_missing_runtimes_exit_3_with_their_install_hints_while_torch_reports(tmp_path):
    out = tmp_path / "results.json"
    done = run_alexbench(tmp_path, "compare", "--spec", SPEC, "--backends", "torch,openvino-torch,litert",
                         "--no-onnx", "--batch", "2", "--json", str(out), "--quiet")
    assert done.returncode == 3, done.stderr
    entries = {e["name"]: e for e in json.loads(out.read_text())["backends"]}
    assert entries["torch"]["status"] == "ok"
    assert entries["openvino-torch"]["status"] == "unavailable"
    assert entries["openvino-torch"]["error"] == ("backend 'openvino-torch' needs openvino: "
                                                  "pip install 'alexbench[openvino]'")
    assert entries["litert"]["status"] == "unavailable"
    assert entries["litert"]["error"] == "backend 'litert' needs ai_edge_litert: pip install 'alexbench[litert]'"


def test_backends_lists_them_unavailable_with_the_hint(tmp_path):
    done = run_alexbench(tmp_path, "backends", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    for name, module, extra in (("openvino-torch", "openvino", "openvino"), ("openvino-keras", "openvino", "openvino"),
                                ("litert", "ai_edge_litert", "litert")):
        assert rows[name]["available"] is False
        assert rows[name]["detail"] == f"backend '{name}' needs {module}: pip install 'alexbench[{extra}]'"
    assert rows["torch"]["available"] is True


def test_backends_lists_the_installed_runtime_versions():
    """Where the extras are installed (the test install has them), their versions are listed."""
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "alexbench", "backends", "--json"], capture_output=True, text=True,
                          check=True)
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["openvino-torch"]["available"] is True
    assert rows["openvino-torch"]["versions"]["openvino"] == version("openvino")
    assert rows["litert"]["versions"]["ai-edge-litert"] == version("ai-edge-litert")
