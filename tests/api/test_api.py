"""The public API (docs/api.md): the documented example runs, ``import alexbench`` stays cheap, and
bad arguments are refused with one clear UsageError before anything runs."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import alexbench

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "tests" / "specs" / "ops-conv-groups.yaml")


def _python(code: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.slow
def test_compare_full_alexnet_owt_torch_and_its_onnx_export(tmp_path):
    code = "import alexbench; r = alexbench.compare(spec='alexnet-owt', backends=['torch']); print(r.ok)"
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "True", out.stdout[-3000:]


def test_docs_example_runs(tmp_path):
    text = (ROOT / "docs" / "api.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/api.md has no python example"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "specs").symlink_to(ROOT / "tests" / "specs")  # the example's relative spec path
    out = _python(blocks[0], tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "PASS" in out.stdout and "refused: backends: unknown backend 'tensorflw'" in out.stdout


def test_docs_own_model_example_runs(tmp_path):
    """The second example: a user's in-memory module imported and compared in three lines."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text("utf-8"), re.S)
    out = _python(blocks[1], tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "['conv1', 'relu1', 'pool1', 'flatten', 'fc2', 'softmax'] 5029" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("PASS")


def test_import_is_cheap(tmp_path):
    code = ("import sys, alexbench\n"
            "heavy = {'torch', 'tensorflow', 'jax', 'keras', 'onnx', 'onnxruntime', 'numpy'}\n"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
            "print(callable(alexbench.compare), callable(alexbench.bench), callable(alexbench.report))\n")
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True True True"]


def test_spec_functions_load_on_first_use():
    spec = alexbench.load_spec("alexnet")
    assert spec.param_count == 60_965_224
    weights = alexbench.canonical_weights(spec, 0)
    assert weights["conv1.weight"].shape == (96, 3, 11, 11)
    assert {"load_spec", "canonical_weights", "compare"} <= set(dir(alexbench))
    with pytest.raises(AttributeError):
        alexbench.no_such_function  # noqa: B018


@pytest.mark.parametrize("kwargs, message", [
    ({"backends": ["torch", "tensorflw"]}, "backends: unknown backend 'tensorflw'; known backends: reference, torch"),
    ({"backends": []}, "backends: expected backend names"),
    ({"seed": -1}, "seed: expected an integer >= 0; received -1"),
    ({"seed": 1.5}, "seed: expected an integer >= 0; received 1.5"),
    ({"batch": 0}, "batch: expected an integer >= 1; received 0"),
    ({"profile": "exact"}, "profile: unknown 'exact'; expected one of default, half, loose, strict"),
    ({"rtol": float("nan")}, "rtol: expected a number >= 0; received nan"),
    ({"timeout_s": 0}, "timeout_s: expected a number > 0; received 0"),
    ({"inputs": "cat.png"}, "inputs: expected a list; received 'cat.png'"),
    ({"spec": "no-such-spec"}, "no spec file or shipped spec by that name; received 'no-such-spec'"),
    ({"spec": "alexnet", "inputs": ["/nonexistent/cat.png"]}, "/nonexistent/cat.png"),
    ({"inputs": [str(ROOT / "README.md")]}, "image inputs need a 1- or 3-channel spec"),
    ({"python": ["torch=/x"]}, "python: expected backend name -> interpreter path, e.g. {'torch': "
                               "'/opt/torch-venv/bin/python'}; received ['torch=/x']"),
    ({"python": {"tourch": "/x"}}, "--python tourch=/x: 'tourch' is not a backend of this run; its backends are "
                                   "reference, torch"),
])
def test_compare_refuses_bad_arguments(kwargs, message):
    args = {"spec": TINY, "backends": ["torch"], "onnx": False, **kwargs}
    with pytest.raises(alexbench.UsageError) as info:
        alexbench.compare(**args)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_compare_in_another_interpreter_that_cannot_run_it_fails_that_backend(tmp_path):
    """compare(python=...) is compare --python: an interpreter refused is the backend's entry, exit code 3."""
    result = alexbench.compare(TINY, ["torch"], onnx=False, batch=2, python={"torch": tmp_path / "none"})
    assert result.exit_code == 3
    torch = result.entry("torch")
    assert (torch.status, torch.stage, torch.error) == ("failed", "start", f"--python torch={tmp_path / 'none'}: "
                                                                           "no such file")


@pytest.mark.parametrize("kwargs, message", [
    ({"backends": "nul"}, "backends: unknown backend 'nul'"),
    ({"batch_sizes": [1, 0]}, "batch_sizes: expected an integer >= 1; received 0"),
    ({"precisions": ["float8"]}, "precisions: unknown 'float8'; expected some of float32, tf32, float16, bfloat16"),
    ({"device": "tpu"}, "device: expected auto, cpu, cuda or cuda:N; received 'tpu'"),
    ({"compiled": "yes"}, "compiled: expected None, 'also' or 'only'; received 'yes'"),
    ({"min_reps": 0}, "min_reps: expected an integer >= 1; received 0"),
])
def test_bench_refuses_bad_arguments(kwargs, message):
    with pytest.raises(alexbench.UsageError, match=re.escape(message)):
        alexbench.bench(**{"spec": TINY, "backends": ["null"], **kwargs})


def test_bench_defaults_are_the_commands():
    from alexbench.harness.bench.run import DEFAULT_BACKENDS, DEFAULT_BATCH_SIZES, DEFAULT_SPEC

    params = inspect.signature(alexbench.bench).parameters
    assert params["spec"].default == DEFAULT_SPEC
    assert tuple(params["backends"].default) == DEFAULT_BACKENDS
    assert tuple(params["batch_sizes"].default) == DEFAULT_BATCH_SIZES


def test_report_refuses_a_bad_results_item(tmp_path):
    with pytest.raises(alexbench.UsageError, match="results\\[0\\]: expected a results document"):
        alexbench.report(TINY, tmp_path, results=[42], diagram=False)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "alexbench.results/1"}))
    with pytest.raises(alexbench.UsageError, match="not an alexbench results file"):
        alexbench.report(TINY, tmp_path, results=[bad], diagram=False)


def test_own_model_refusals_raise():
    import numpy as np
    from torch import nn

    with pytest.raises(alexbench.UsageError, match=r"^model: a int is not a model; expected a PyTorch nn.Module"):
        alexbench.import_model(3)
    with pytest.raises(alexbench.UsageError, match=r"^input_shape: expected \[channels, height, width\]"):
        alexbench.import_model(nn.Conv2d(3, 4, 3), input_shape=(3, 4))
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(alexbench.StructureMismatch, match=r"does not have the structure of 'alexnet-owt'"):
        alexbench.compare(model=model, spec="alexnet-owt")
    with pytest.raises(alexbench.UsageError, match=r"^inputs: an array of int32 values; expected float16, float32"):
        alexbench.compare(model=model, inputs=np.zeros((2, 3, 8, 8), np.int32))
