"""A plugin package of deliberately broken backends, registered through the entry-point group."""

from __future__ import annotations

import pytest

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
