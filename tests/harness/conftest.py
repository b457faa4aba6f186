"""A plugin package of deliberately broken backends, registered through the entry-point group; virtual
environments of this Python for `--python BACKEND=PYTHON` (compare, compare --train, bench)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAULTY_MODULE = '''
import ctypes, os, sys, time
import numpy as np
from alexbench.backends.torch.backend import TorchBackend
from alexbench.backends.base import Backend, RunOutput
from alexbench.backends.reference.backend import ReferenceBackend


class _Faulty(Backend):
    def build(self, spec, weights, onnx_path=None):
        self.spec = spec

    def param_count(self):
        return self.spec.param_count

    def layer_names(self):
        return []

    def run(self, x, layers=()):
        pid_file = os.environ.get("ALEXBENCH_TEST_PID_FILE")
        if pid_file:
            with open(pid_file, "w") as f:
                f.write(str(os.getpid()))
        self.misbehave()
        return RunOutput(np.zeros((x.shape[0], *self.spec.output_shape), np.float32))


class Segfault(_Faulty):
    def misbehave(self):
        ctypes.string_at(0)


class Abort(_Faulty):
    def misbehave(self):
        os.abort()


class Hang(_Faulty):
    def misbehave(self):
        time.sleep(600)


class OutOfMemory(_Faulty):
    def misbehave(self):
        np.ones(1 << 40)  # 8 TiB: the allocation fails at once


class WrongShape(_Faulty):
    def misbehave(self):
        return None  # the output shape is the fault

    def run(self, x, layers=()):
        return RunOutput(np.zeros((x.shape[0], 7), np.float32))


class Garbage(ReferenceBackend):
    """Right numbers, but prints junk on the worker's stdout (the harness's event channel)."""

    def run(self, x, layers=()):
        os.write(1, b"\\x00\\xff{not json\\n")
        print("plain text on stdout", flush=True)
        sys.stdout.write("{\\"event\\": \\"stage\\", \\"stage\\": \\"bogus\\"\\n")
        return super().run(x, layers)


class PermutedFc(TorchBackend):
    """The article's classic bug: the first linear layer's inputs read in H, W, C order."""

    def build(self, spec, weights, onnx_path=None):
        weights = dict(weights)
        flatten = next(layer for layer in spec.layers if layer.op == "flatten")
        linear = next(layer for layer in spec.layers if layer.op == "linear")
        c, h, w = flatten.input_shape
        order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
        weights[linear.name + ".weight"] = np.ascontiguousarray(weights[linear.name + ".weight"][:, order])
        super().build(spec, weights, onnx_path)


class NeedsAbsent(_Faulty):
    needs = (("alexbench_absent_framework", "absent"),)
'''

FAULTS = {"segfault": "Segfault", "abort": "Abort", "hang": "Hang", "oom": "OutOfMemory",
          "wrong-shape": "WrongShape", "garbage": "Garbage", "permuted-fc": "PermutedFc",
          "needs-absent": "NeedsAbsent"}


@pytest.fixture
def faulty_backends(make_plugin):
    """Backends named faulty-<kind>, e.g. faulty-segfault (see FAULTS)."""
    make_plugin({"alexbench_faulty": FAULTY_MODULE},
                {f"faulty-{kind}": f"alexbench_faulty:{cls}" for kind, cls in FAULTS.items()})
    return sorted(f"faulty-{kind}" for kind in FAULTS)


def _venv(path: Path, *packages: str, source: tuple[str, ...] = ()) -> Path:
    """A virtual environment of this Python (no system site-packages: it cannot see alexbench) with
    ``packages`` installed from the configured package sources (plus ``source``'s pip options), pinned by
    constraints.txt."""
    subprocess.run([sys.executable, "-m", "venv", *([] if packages else ["--without-pip"]), str(path)], check=True)
    python = path / "bin" / "python"
    if packages:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages, "-c", str(ROOT / "constraints.txt"),
                        *source], check=True, capture_output=True)
    return python


def torch_source() -> tuple[str, ...]:
    """Where the README's install takes torch from (scripts/setup.sh: PyTorch's CPU index when it answers,
    else the configured sources), so that the second venv gets the same CPU build, not PyPI's CUDA one."""
    plan = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--print-torch-plan"], capture_output=True,
                          text=True, check=True).stdout
    return tuple(plan.partition("pip install torch")[2].split())


@pytest.fixture(scope="session")
def torch_venv(tmp_path_factory) -> Path:
    """numpy and torch, nothing else (about 50 s here: torch's CPU wheel comes from the local sources)."""
    start = time.perf_counter()
    python = _venv(tmp_path_factory.mktemp("torch-venv") / "venv", "numpy", "torch", source=torch_source())
    print(f"torch venv built in {time.perf_counter() - start:.0f} s")
    return python


@pytest.fixture(scope="session")
def bare_venv(tmp_path_factory) -> Path:
    """No package at all."""
    return _venv(tmp_path_factory.mktemp("bare-venv") / "venv")
