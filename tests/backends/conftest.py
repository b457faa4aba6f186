"""Shared fixtures for backend tests: small job files, an entry-point plugin with planted
misbehaviours, and a parity log printed at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from alexbench.spec import canonical_weights, load_spec, save_weights

SPECS_DIR = Path(__file__).resolve().parents[1] / "specs"


@dataclass
class JobFiles:
    spec_path: Path
    weights_path: Path
    input_path: Path
    spec: object
    weights: dict
    x: np.ndarray


@pytest.fixture
def job_files(tmp_path: Path) -> JobFiles:
    """ops-conv-groups (every conv option) as files a worker reads: spec, weights, batch-2 input."""
    spec_path = SPECS_DIR / "ops-conv-groups.yaml"
    spec = load_spec(spec_path)
    weights = canonical_weights(spec, seed=0)
    x = np.random.default_rng(0).standard_normal((2, *spec.input_shape)).astype(np.float32)
    save_weights(weights, tmp_path / "weights.safetensors")
    np.save(tmp_path / "input.npy", x)
    return JobFiles(spec_path, tmp_path / "weights.safetensors", tmp_path / "input.npy", spec, weights, x)


# A third-party package as pip would install it: a module plus a *.dist-info folder whose
# entry_points.txt registers its backends in the alexbench.backends group.
PLUGIN_MODULE = '''
import os, signal, subprocess, sys, time
import numpy as np
from alexbench.backends.base import Backend, RunOutput


class Planted(Backend):
    """Misbehaves on request through options["behave"]: fail_build, segfault, hang, sleep."""
    name = "planted"

    def build(self, spec, weights, onnx_path=None):
        self.spec = spec
        if self.options.get("behave") == "fail_build":
            raise ValueError("planted failure while building")

    def run(self, x, layers=()):
        behave = self.options.get("behave")
        if behave == "segfault":
            print("planted: about to read address 0", file=sys.stderr, flush=True)
            import ctypes
            ctypes.string_at(0)
        if behave == "hang":  # ignores SIGTERM, and so does a child it starts: only SIGKILL ends them
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                      "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
            with open(self.options["pid_file"], "w") as f:
                f.write(f"{os.getpid()} {child.pid}")
            time.sleep(600)
        if behave == "sleep":
            time.sleep(600)
        return RunOutput(np.zeros((x.shape[0], *self.spec.output_shape), dtype=np.float32))

    def param_count(self):
        return 0

    def layer_names(self):
        return []


class NeedsAbsent(Planted):
    name = "planted-missing"
    needs = (("alexbench_absent_framework", "absent"),)
'''

PLUGIN_IMPORTS_ABSENT = "import alexbench_absent_framework  # noqa: F401  (as a backend importing torch)\n"


@pytest.fixture
def plugin(make_plugin) -> Path:
    """Install the test plugin (see tests/conftest.py); return its folder."""
    return make_plugin(
        {"alexbench_test_plugin": PLUGIN_MODULE, "alexbench_test_plugin_absent": PLUGIN_IMPORTS_ABSENT},
        {"planted": "alexbench_test_plugin:Planted", "planted-missing": "alexbench_test_plugin:NeedsAbsent",
         "planted-import": "alexbench_test_plugin_absent:Backend"})


# Parity figures, printed as one table at the end of the run (the issue wants test output to
# show each backend's relative error per spec) and attached to the JUnit XML as properties.
_PARITY: list[tuple[str, str, int, float, float, str]] = []


@pytest.fixture
def parity_log(record_property):
    def log(backend: str, spec: str, batch: int, rel_l2: float, max_abs_over_ref: float, worst_layer: str = ""):
        _PARITY.append((backend, spec, batch, rel_l2, max_abs_over_ref, worst_layer))
        record_property(f"{backend}:{spec}:batch{batch}", f"rel_l2={rel_l2:.3g} max_abs/max_ref={max_abs_over_ref:.3g}")
    return log


def pytest_terminal_summary(terminalreporter):
    if not _PARITY:
        return
    terminalreporter.section("parity against the float64 reference (worst over output and named layers)")
    header = f"{'backend':<12} {'spec':<20} {'batch':>5} {'rel L2':>10} {'max abs/max|ref|':>17}  layer"
    terminalreporter.write_line(header)
    for backend, spec, batch, rel_l2, rel_max, layer in _PARITY:
        terminalreporter.write_line(f"{backend:<12} {spec:<20} {batch:>5} {rel_l2:>10.2e} {rel_max:>17.2e}  {layer}")
