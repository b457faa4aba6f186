"""OpenVINO backends: ``openvino-torch`` runs torch's ONNX export, ``openvino-keras`` the Keras export.

Either reads the file its exporter wrote (the export cache's, passed by the harness; without one
it exports through the cache in this process) with ``Core().read_model`` and compiles it on the
CPU plugin (``options["device"]`` may name another OpenVINO device). The file, the Keras export's
NHWC input and each layer's layout are handled as for ONNX Runtime (``onnx/runner_io.py``).
Compare runs these backends only when they are named (``paired_by_default``).

Parity: the CPU plugin's defaults may compute in less than f32 (on a CPU with native bf16, its
PERFORMANCE mode runs convolutions and matrix products in bf16: rel-L2 2.65e-3 on alexnet-owt), so
the model is compiled with ``compile_properties()``, INFERENCE_PRECISION_HINT f32 and
EXECUTION_MODE_HINT ACCURACY, and ``environment()["precision"]`` reports the hints as requested and
as compiled, and the precision every execution node ran in (``facts.py``). ``RunOutput.dtypes`` has
the precision of the node that produced the output and each layer.

Named layers come from a second compiled model to which the layers' tensors were added as outputs
(more outputs can change OpenVINO's fusions); the output always comes from the model as read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ...spec import ModelSpec
from ..base import Backend, RunOutput, Weights
from ..onnx.inspect import layer_tensors, param_breakdown
from ..onnx.runner_io import ExportRunner
from .facts import constant_values, hints_line, property_text, runtime_precision_counts, tensor_dtypes

# The hints float32 parity needs: without them a CPU with native bf16 computes in bf16.
PARITY_HINTS = {"INFERENCE_PRECISION_HINT": "f32", "EXECUTION_MODE_HINT": "ACCURACY"}
NATIVE_ONLY = ("alexbench runs OpenVINO in fp32 only: its CPU plugin computes {p} only on CPUs with native {p} ({isa}) "
               "and elsewhere ignores INFERENCE_PRECISION_HINT {p} without an error (the compiled model reports f32)")


class OpenVinoBackend(ExportRunner, Backend):
    needs: ClassVar[tuple[tuple[str, str], ...]] = (("openvino", "openvino"), ("onnx", "onnx"))
    paired_by_default: ClassVar[bool] = False
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    precision_reasons: ClassVar[dict[str, str]] = {
        "bf16": NATIVE_ONLY.format(p="bf16", isa="AVX512_BF16, AMX"),
        "fp16": NATIVE_ONLY.format(p="f16", isa="AVX512_FP16, AMX-FP16, ARM"),
        "int8": "OpenVINO runs int8 from a model quantized by NNCF, which alexbench does not make",
    }
    no_train_reason: ClassVar[str] = "OpenVINO Runtime runs inference only"

    def compile_properties(self) -> dict[str, str]:
        """The precision hints the model is compiled with (tests plant OpenVINO's defaults here)."""
        return dict(PARITY_HINTS)

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        import openvino as ov

        if self.precision != "fp32":
            raise ValueError(self.precision_reason(self.precision))
        self.spec = spec
        self.path, proto, self.cache_hit = self.runner_file(spec, weights, onnx_path)
        self.producer = f"{proto.producer_name} {proto.producer_version}".strip()
        self.nhwc = self.onnx_source == "keras"
        self.tensors, self.missing = layer_tensors(proto, spec)
        self.params = param_breakdown(proto, spec, weights)
        self.output_name = proto.graph.output[0].name
        self.core = ov.Core()
        self.device = self._device()
        self.threads = int(self.options.get("threads") or os.cpu_count() or 1)
        self.model = self.core.read_model(str(self.path))
        self.constants = constant_values(self.model, self.params["weight_params"], self.params["constant_params"])
        self.plain = self.compiled(self.model)
        self.dtypes, unmapped = tensor_dtypes(self.model, self.plain, {"output": self.output_name})
        self.layered = None  # compiled with the layers as outputs on the first run that wants them
        self.output_index: dict[str, int] = {}
        self.unmapped = unmapped  # tensors whose producing node is in no execution node
        self.layer_outputs_change_output_by: float | None = None

    def _device(self) -> str:
        asked = str(self.options.get("device", "cpu"))
        device = asked.upper()
        if device not in self.core.available_devices:
            raise ValueError(f"backend '{self.name}': device '{asked}' is not an OpenVINO device here; available: "
                             f"{', '.join(d.lower() for d in self.core.available_devices)}")
        return device

    def compiled(self, model):
        """``model`` compiled on the device with ``compile_properties()`` and the thread count."""
        threads = {"INFERENCE_NUM_THREADS": self.threads} if self.device == "CPU" else {}
        return self.core.compile_model(model, self.device,
                                       {**self.compile_properties(), "PERFORMANCE_HINT": "LATENCY", **threads})

    def _layered(self):
        """The model as read plus the layers' tensors as outputs, compiled; a tensor OpenVINO cannot
        output is listed in ``missing``."""
        if self.layered is None:
            model = self.model.clone()
            for layer, tensor in self.tensors.items():
                try:
                    model.add_outputs([tensor])
                except RuntimeError as exc:
                    self.missing[layer] = f"tensor {tensor}: OpenVINO cannot output it: {str(exc).splitlines()[0]}"
            self.layered = self.compiled(model)
            self.output_index = {name: i for i, port in enumerate(self.layered.outputs) for name in port.get_names()}
            for layer, tensor in self.tensors.items():
                if tensor not in self.output_index:
                    self.missing.setdefault(layer, f"tensor {tensor} is not an output of the compiled model")
            readable = {layer: tensor for layer, tensor in self.tensors.items() if layer not in self.missing}
            dtypes, unmapped = tensor_dtypes(model, self.layered, readable)
            self.dtypes.update(dtypes)
            self.unmapped += unmapped
        return self.layered

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        staged = self._input(x)
        output = self.plain(staged)[0]
        found: dict[str, np.ndarray] = {}
        if any(n in self.tensors and n not in self.missing for n in layers):
            values = self._layered()(staged)
            with_layers = values[self.output_index[self.output_name]]
            diff = float(np.abs(output.astype(np.float64) - with_layers).max(initial=0.0))
            self.layer_outputs_change_output_by = max(self.layer_outputs_change_output_by or 0.0, diff)
            for layer in dict.fromkeys(layers):
                if layer in self.tensors and layer not in self.missing:
                    array = self._canonical(layer, values[self.output_index[self.tensors[layer]]].astype(np.float32))
                    if array is not None:
                        found[layer] = array
        dtypes = {name: self.dtypes[name] for name in ["output", *found] if name in self.dtypes}
        return RunOutput(self._canonical_output(output.astype(np.float32)), found, dtypes)

    def layer_names(self) -> list[str]:
        return [name for name in self.tensors if name not in self.missing]

    def compiled_hints(self) -> dict[str, str]:
        """Each hint ``compile_properties()`` sets, as the compiled model reports it."""
        return {name: property_text(self.plain.get_property(name)) for name in self.compile_properties()}

    def precision_facts(self) -> dict[str, Any]:
        requested, compiled = self.compile_properties(), self.compiled_hints()
        settings, notes = hints_line(requested, compiled, self.capabilities())
        facts: dict[str, Any] = {"requested": self.precision, "hints_requested": requested, "hints_compiled": compiled,
                                 "runtime_precisions": runtime_precision_counts(self.plain), "settings": settings}
        if notes:
            facts["note"] = "; ".join(notes)
        if self.unmapped:
            facts["dtype_unknown"] = sorted(set(self.unmapped))
        if self.layer_outputs_change_output_by is not None:
            facts["layer_outputs_change_output_by"] = self.layer_outputs_change_output_by
        return facts

    def capabilities(self) -> list[str]:
        return list(self.core.get_property(self.device, "OPTIMIZATION_CAPABILITIES"))

    def environment(self) -> dict[str, Any]:
        import onnx
        import openvino as ov

        return {
            "openvino": ov.get_version(), "onnx": onnx.__version__, "file": self.path.name, "producer": self.producer,
            "device": self.device, "device_name": self.core.get_property(self.device, "FULL_DEVICE_NAME"),
            "optimization_capabilities": self.capabilities(), "threads": self.threads_seen().get("openvino"),
            "performance_hint": property_text(self.plain.get_property("PERFORMANCE_HINT")),
            "input_layout": "NHWC" if self.nhwc else "NCHW", "export_cache_hit": self.cache_hit,
            "params": self.params, "params_in_openvino_constants": self.constants,
            "missing_layers": dict(self.missing), "precision": self.precision_facts(),
        }

    # --- bench hooks (see Backend) ---
    no_compiled_reason: ClassVar[str] = "OpenVINO always compiles the model for its device: no separate variant"
    bench_precisions: ClassVar[tuple[str, ...]] = ("float32",)

    def before_build(self, precision: str, threads: int) -> None:
        self.options["threads"] = threads

    def prepare_bench(self, precision: str, compiled: bool, device: str, threads: int) -> str:
        """The model timed is the one compared, compiled in ``build``: "openvino CPU, LATENCY, f32 ACCURACY" (the
        performance hint, then the precision hints as compiled; ``environment()`` has them in full)."""
        hints = " ".join(self.compiled_hints().values())
        performance = property_text(self.plain.get_property("PERFORMANCE_HINT"))
        return f"openvino {self.device}, {performance}, {hints}"

    def bench_step(self, x: np.ndarray, device: str, precision: str = "float32") -> Callable[[], Any]:
        import openvino as ov

        if device != self.device.lower():
            raise ValueError(f"backend '{self.name}': asked to bench on '{device}', its model is compiled for "
                             f"OpenVINO's {self.device} plugin; build it with options device='{device}'")
        request = self.plain.create_infer_request()
        request.set_input_tensor(ov.Tensor(self._input(x)))
        return request.infer  # runs the request on the tensor set here and waits for it

    def threads_seen(self) -> dict[str, Any]:
        return {"openvino": int(self.plain.get_property("INFERENCE_NUM_THREADS"))} if self.device == "CPU" else {}

    @classmethod
    def matmul_peak_step(cls, device: str, precision: str, threads: int, n: int) -> tuple[Callable[[], Any], str]:
        """OpenVINO's CPU plugin on one MatMul (float32, the parity hints)."""
        if device != "cpu" or precision != "float32":
            raise NotImplementedError("the OpenVINO matmul peak is measured on the CPU at float32")
        import openvino as ov
        from openvino import opset13 as ops

        a, b = (ops.parameter([n, n], np.float32, name=name) for name in ("a", "b"))
        model = ov.Model([ops.matmul(a, b, False, False)], [a, b], "matmul")
        compiled = ov.Core().compile_model(model, "CPU", {**PARITY_HINTS, "INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()
        rng = np.random.default_rng(0)  # never zeros: some kernels run faster on them
        for index in range(2):
            request.set_input_tensor(index, ov.Tensor(rng.standard_normal((n, n), dtype=np.float32)))
        return request.infer, f"openvino {ov.get_version().split('-')[0]}"


class OpenVinoFromTorchBackend(OpenVinoBackend):
    name: ClassVar[str] = "openvino-torch"
    summary: ClassVar[str] = "OpenVINO (CPU plugin, f32 hints) running torch's ONNX export (run only when named)"
    onnx_source: ClassVar[str | None] = "torch"


class OpenVinoFromKerasBackend(OpenVinoBackend):
    name: ClassVar[str] = "openvino-keras"
    summary: ClassVar[str] = "OpenVINO (CPU plugin, f32 hints) running the Keras ONNX export (run only when named)"
    onnx_source: ClassVar[str | None] = "keras"
