"""The repository's folders install as alexbench.spec / .backends / .harness, never as bare modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path


def test_installed_package_maps_the_folders(tmp_path):
    code = (
        "import importlib.util, alexbench, alexbench.spec, alexbench.backends, alexbench.harness\n"
        "assert all(importlib.util.find_spec(n) is None for n in ('spec', 'backends', 'harness', 'api'))\n"
        "from alexbench.spec import load_spec\n"
        "print(load_spec('alexnet').param_count)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "60965224"


def test_wheel_contents(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), "."], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("alexbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"alexbench", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    # Every module of every folder is in the wheel: a subpackage missing from pyproject's
    # package list would install without its files.
    root = Path(__file__).resolve().parents[2]
    for folder, package in (("api", "alexbench"), ("spec", "alexbench/spec"), ("backends", "alexbench/backends"),
                            ("harness", "alexbench/harness")):
        for source in (root / folder).rglob("*.py"):
            assert f"{package}/{source.relative_to(root / folder).as_posix()}" in names
    for required in ("alexbench/spec/models/alexnet.yaml", "alexbench/spec/models/invalid/alexnet-blog-pytorch.yaml",
                     "alexbench/harness/results/results_schema.json"):
        assert required in names


def test_console_script_help():
    script = Path(sys.executable).with_name("alexbench")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "exit codes:" in out.stdout and "compare" in out.stdout
