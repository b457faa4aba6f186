"""The OpenVINO trap, planted and caught through `alexbench compare`: OpenVINO in its default bf16 mode
is a mismatch whose message names the precision hint.

On a CPU with native bf16 (AVX512_BF16, AMX) OpenVINO's CPU plugin, left at its defaults
(EXECUTION_MODE_HINT PERFORMANCE), computes convolutions and matrix products in bf16 even for an f32
model: measured rel-L2 2.65e-3 against fp32 on alexnet-owt. A CPU without it (this machine's AVX2 EPYC)
ignores INFERENCE_PRECISION_HINT bf16 and computes f32, so there the plant reproduces what the bf16
mode computes: a Convert f32 -> bf16 -> f32 pair before the data and weight inputs of every
convolution and matrix product (measured: rel-L2 2.6e-3 on a 512 x 512 matmul, as native bf16). The
rounding lives here, in the plant, never in the backend, whose only part is to report the truth: the
hints as requested and as compiled, and what the execution graph ran in.

The same compare runs the unmodified openvino-torch, which passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from alexbench.harness.cli.main import main
from alexbench.harness.errors import ExitCode
from alexbench.harness.results.document import read_results

SPEC = Path(__file__).resolve().parents[2] / "specs" / "ops-conv-groups.yaml"
PLANT = "openvino-bf16-defaults"

PLANTS = '''
from alexbench.backends.openvino.backend import OpenVinoFromTorchBackend

ROUNDED_OPS = ("Convolution", "GroupConvolution", "MatMul")


def rounded_to_bf16(model):
    """A copy of ``model`` whose convolutions and matrix products read data and weights rounded to bf16."""
    import openvino as ov
    from openvino import opset13 as ops

    model = model.clone()
    for op in model.get_ordered_ops():
        if op.get_type_name() in ROUNDED_OPS:
            for port in op.inputs()[:2]:
                rounded = ops.convert(ops.convert(port.get_source_output(), ov.Type.bf16), ov.Type.f32)
                port.replace_source_output(rounded.output(0))
    return model


class OpenVinoBf16Defaults(OpenVinoFromTorchBackend):
    """OpenVINO's CPU defaults with a bf16 precision hint, computing what that mode computes."""
    name = "openvino-bf16-defaults"

    def compile_properties(self):
        return {"INFERENCE_PRECISION_HINT": "bf16", "EXECUTION_MODE_HINT": "PERFORMANCE"}

    def compiled(self, model):
        if "BF16" not in self.capabilities():  # no native bf16: the hint alone would change nothing
            model = rounded_to_bf16(model)
        return super().compiled(model)
'''


@dataclass
class Run:
    code: int
    doc: dict
    out: str

    def entry(self, backend: str) -> dict:
        return next(e for e in self.doc["backends"] if e["name"] == backend)


@pytest.fixture(scope="module")
def runs() -> dict:
    return {}


@pytest.fixture
def compare(make_plugin, runs, tmp_path_factory, capsys) -> Run:
    """The one `alexbench compare` of torch, openvino-torch and the plant on ops-conv-groups (batch 2)."""
    make_plugin({"alexbench_openvino_trap": PLANTS}, {PLANT: "alexbench_openvino_trap:OpenVinoBf16Defaults"})
    if not runs:
        folder = tmp_path_factory.mktemp("openvino-trap")
        capsys.readouterr()
        code = main(["compare", "--spec", str(SPEC), "--backends", f"torch,openvino-torch,{PLANT}", "--no-onnx",
                     "--batch", "2", "--json", str(folder / "r.json")])
        runs["run"] = Run(code, read_results(folder / "r.json"), capsys.readouterr().out)
    return runs["run"]


def test_default_bf16_mode_is_a_mismatch_naming_the_hint(compare):
    assert compare.code == ExitCode.MISMATCH
    entry = compare.entry(PLANT)
    assert entry["status"] == "mismatch", entry.get("error")
    first = entry["first_divergent_layer"]
    assert first["name"] == "conv1"  # the first convolution already reads bf16-rounded data and weights
    assert first["rel_l2"] > 100 * 1e-5, first  # bf16's ~2e-3, far above float32's limit
    settings = entry["environment"]["precision"]["settings"]
    assert settings.startswith("INFERENCE_PRECISION_HINT bf16") and "EXECUTION_MODE_HINT PERFORMANCE" in settings
    assert entry["precision"]["settings"] == settings
    assert f"{PLANT}: " in compare.out and "INFERENCE_PRECISION_HINT bf16" in compare.out
    # The errors' size is diagnosed as bf16's.
    assert "bf16" in (entry["precision"]["diagnosis"] or ""), entry["precision"]


def test_the_plant_reports_what_openvino_compiled(compare):
    precision = compare.entry(PLANT)["environment"]["precision"]
    if "BF16" in compare.entry(PLANT)["environment"]["optimization_capabilities"]:
        assert precision["hints_compiled"]["INFERENCE_PRECISION_HINT"] == "bf16"
        return
    assert precision["settings"] == ("INFERENCE_PRECISION_HINT bf16 requested (compiled: f32; this CPU has no native "
                                     "bf16), EXECUTION_MODE_HINT PERFORMANCE")
    assert precision["hints_compiled"] == {"INFERENCE_PRECISION_HINT": "f32", "EXECUTION_MODE_HINT": "PERFORMANCE"}


def test_openvino_with_the_parity_hints_passes_in_the_same_run(compare):
    entry = compare.entry("openvino-torch")
    assert entry["status"] == "ok" and entry["first_divergent_layer"] is None
    assert entry["environment"]["precision"]["settings"] == ("INFERENCE_PRECISION_HINT f32, "
                                                             "EXECUTION_MODE_HINT ACCURACY")
    assert [(e["name"], e["status"]) for e in compare.doc["backends"]] == [
        ("reference", "ok"), ("torch", "ok"), ("openvino-torch", "ok"), (PLANT, "mismatch")]
