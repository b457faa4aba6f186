"""The code a worker in another environment runs (workers/bundle.py): alexbench and PyYAML's pure
Python, with no compiled file, importable by an interpreter that has no package at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from alexbench.harness.workers.bundle import write_worker_code
from alexbench.spec import canonical_weights, load_spec, save_weights
from alexbench.spec.weights import _load_with_numpy, load_weights


def test_the_code_holds_sources_and_the_package_data_only(tmp_path):
    code = write_worker_code(tmp_path / "code")
    files = {p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file()}
    assert {"alexbench/__init__.py", "alexbench/harness/workers/entry.py", "alexbench/backends/torch/backend.py",
            "alexbench/spec/models/alexnet.yaml", "alexbench/harness/results/results_schema.json",
            "yaml/__init__.py"} <= files
    assert {Path(f).suffix for f in files} == {".py", ".yaml", ".json"}  # no extension module, no cache


def test_a_bare_interpreter_imports_it(tmp_path):
    code = write_worker_code(tmp_path / "code")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    probe = ("import alexbench, yaml; print(alexbench.__file__); print(yaml.__with_libyaml__); "
             "print(yaml.safe_load('a: [1, 2]'))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], env={"PYTHONPATH": str(code)},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [str(code / "alexbench" / "__init__.py"), "False", "{'a': [1, 2]}"]


def test_weights_read_without_the_safetensors_package(tmp_path):
    """A worker there may lack safetensors: NumPy alone reads the run's weights, to the same arrays."""
    spec = load_spec(Path(__file__).parents[2] / "specs" / "ops-pool-norm.yaml")  # conv, batch norm, linear
    path = tmp_path / "w.safetensors"
    save_weights(canonical_weights(spec, seed=0), path, metadata={"source": "test"})
    with_package, with_numpy = load_weights(path, spec), _load_with_numpy(path.read_bytes())
    assert sorted(with_numpy) == sorted(with_package)
    for name, array in with_package.items():
        assert with_numpy[name].dtype == array.dtype and np.array_equal(with_numpy[name], array)
