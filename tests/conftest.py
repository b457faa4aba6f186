"""Fixtures shared by every test folder: a plugin installer, small job files for workers, and a
plugin backend with planted misbehaviours."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from alexbench.spec import canonical_weights, load_spec, save_weights

SPECS_DIR = Path(__file__).resolve().parent / "specs"
MODELS_DIR = Path(__file__).resolve().parent / "models"


@pytest.fixture(scope="session")
def test_model():
    """A model of tests/models/ by "file.py:NAME" (a class or factory is called), loaded by path the way a
    user's SOURCE is: `import tests.models` depends on which `tests` namespace Python finds first, and
    tf2onnx installs one of its own."""
    from alexbench.backends.model_source import load_object

    return lambda source: load_object(f"{MODELS_DIR / source}")[0]


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


class Processes:
    """What /proc says about processes (no psutil); a zombie counts as gone: it runs nothing, and
    os.killpg(pgid, 0) would still see it."""

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        return stat.rpartition(")")[2].split()[0] != "Z"

    @staticmethod
    def group_alive(pgid: int) -> list[int]:
        """Live members of a process group."""
        members = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(entry.name))
        return members


@pytest.fixture
def processes() -> Processes:
    return Processes()
