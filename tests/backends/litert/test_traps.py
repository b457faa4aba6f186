"""The LiteRT traps, planted in the real backend as plugins (``make_plugin``) and run through `alexbench
compare`: a .tflite written with LRN's alpha undivided (TensorFlow's convention taken for the spec's) is caught
at the LRN layer, norm1; a run whose layers were read on other kernels than its output (TensorFlow's
interpreter turns the default delegate off for preserve_all_tensors) passes, and its results say so. One
compare runs both plants beside torch on ops-pool-norm; each test reads its own backend's entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexbench.harness.cli.main import main
from alexbench.harness.errors import ExitCode
from alexbench.harness.results.document import read_results

SPEC = Path(__file__).resolve().parents[2] / "specs" / "ops-pool-norm.yaml"

PLANTS = '''
from ai_edge_litert.interpreter import OpResolverType

from alexbench.backends.litert.backend import LiteRtBackend


class LrnAlphaUndivided(LiteRtBackend):
    """TensorFlow's LRN given the spec's alpha as is: TensorFlow does not divide it by the window."""

    @classmethod
    def tflite_lrn_alpha(cls, layer):
        return layer.attrs["alpha"]


class BuiltinReadout(LiteRtBackend):
    """Layers read as tf.lite.Interpreter would: preserve_all_tensors with the default delegate off."""

    def readout_options(self):
        return {"experimental_preserve_all_tensors": True,
                "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
'''


@pytest.fixture(scope="module")
def results() -> dict:
    return {}


@pytest.fixture
def run(make_plugin, results, tmp_path_factory, monkeypatch, capsys):
    """The compare run (once for the module): exit code, results document, printed table."""
    if not results:
        make_plugin({"alexbench_litert_plants": PLANTS},
                    {"litert-lrn-undivided": "alexbench_litert_plants:LrnAlphaUndivided",
                     "litert-builtin-readout": "alexbench_litert_plants:BuiltinReadout"})
        folder = tmp_path_factory.mktemp("litert-traps")
        monkeypatch.setenv("ALEXBENCH_CACHE_DIR", str(folder / "cache"))  # the workers' conversion cache
        code = main(["compare", "--backends", "torch,litert-lrn-undivided,litert-builtin-readout", "--spec",
                     str(SPEC), "--no-onnx", "--json", str(folder / "r.json")])
        results.update(code=code, doc=read_results(folder / "r.json"), out=capsys.readouterr().out)
    return results


def entry(run: dict, name: str) -> dict:
    return next(e for e in run["doc"]["backends"] if e["name"] == name)


def test_undivided_lrn_alpha_is_caught_at_norm1(run):
    assert run["code"] == ExitCode.MISMATCH
    planted = entry(run, "litert-lrn-undivided")
    assert planted["status"] == "mismatch"
    assert planted["first_divergent_layer"]["name"] == "norm1"
    assert entry(run, "torch")["status"] == "ok"


def test_readout_on_other_kernels_passes_and_says_so(run):
    planted = entry(run, "litert-builtin-readout")
    assert planted["status"] == "ok" and planted["first_divergent_layer"] is None
    kernels = planted["environment"]["kernels"]
    assert kernels["output"].startswith("XNNPACK delegate (default)")  # the output: the deployed path
    assert kernels["layers"].startswith("built-in kernels for all") and kernels["same_delegate"] is False
    assert kernels["note"].startswith("layer outputs were read on a different kernel path than the output: layers "
                                      "on built-in kernels (no delegate), output on XNNPACK")
    assert planted["layers"] and set(planted["missing_layers"]) == {"conv1", "pool2"}
