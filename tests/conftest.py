"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def make_plugin(tmp_path_factory, monkeypatch):
    """Install a third-party backend package the way pip would: modules plus a *.dist-info folder
    whose entry_points.txt registers backends in the ``alexbench.backends`` group. The folder goes
    on sys.path here and on PYTHONPATH for worker processes. Returns the folder."""

    def make(modules: dict[str, str], backends: dict[str, str]) -> Path:
        root = tmp_path_factory.mktemp("plugin")
        for name, source in modules.items():
            (root / f"{name}.py").write_text(source)
        info = root / "alexbench_test_plugin-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alexbench-test-plugin\nVersion: 1.0\n")
        lines = ["[alexbench.backends]"] + [f"{name} = {target}" for name, target in backends.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
        return root

    return make
