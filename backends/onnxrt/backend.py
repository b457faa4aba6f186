"""ONNX Runtime backends: ``onnx-torch`` runs torch's export, ``onnx-keras`` the Keras export.

Either runs any file its exporter wrote (normally the export cache's file, passed by the
harness; without one it exports through the cache in this process). The Keras export's input
is NHWC: inputs are transposed on the way in and outputs back to NCHW on the way out.

Named layers come from a copy of the model whose graph also outputs the tensors
``onnx.inspect.layer_tensors`` maps; the final output always comes from the file as exported.
Which file, the input's layout and each layer's (NCHW or NHWC in a tf2onnx graph) are decided in
``onnx/runner_io.py``, shared with OpenVINO's runner.

Execution providers: the CPU by default. ``options["device"]`` "cuda[:N]" (or "auto" with a
GPU present) adds CUDA, and TensorRT where its provider and libraries are installed, only when
a CUDA device actually exists: ONNX Runtime falls back to the CPU with nothing but a log line
when CUDA libraries are missing, so ``environment()`` records ``session.get_providers()``.

Precision (``options["precision"]``): fp32 runs the file; fp16 and int8 run a model made from it in
``build`` (or ``prepare_bench``) by ``precision.py``: fp16 converted with float32 I/O, int8 quantized
(static QDQ) with activation ranges calibrated on ``options["calibration_input"]``. Their outputs
come from that model as made; their layers from a copy that also outputs the layers' tensors, and
``environment()["precision"]`` says whether those added outputs changed the output (they can keep
ONNX Runtime from fusing an op with its neighbours), which kernels ran in which dtype, and the
calibration time. Layer arrays and the output are returned float32; ``RunOutput.dtypes`` has the
dtype ONNX Runtime returned them in.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ...spec import ModelSpec
from ..base import OPSET, Backend, RunOutput, Weights
from ..onnx.inspect import layer_tensors, param_breakdown
from ..onnx.runner_io import ExportRunner
from ..precision import canonical_precision
from .precision import (
    BF16_REASON,
    CALIBRATION_CHUNK,
    FP16_KIND,
    Feeds,
    Ranges,
    calibrate,
    int8_kind,
    kernel_dtypes,
    quantized_model,
    readout_tensors,
    to_fp16,
    with_typed_outputs,
)


def cuda_device_present() -> bool:
    """A CUDA GPU is visible to this process (not merely a CUDA build of ONNX Runtime)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return any(line.startswith("GPU ") for line in listing.splitlines())
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())


def choose_providers(options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(provider, provider options) in priority order for ``options["device"]``."""
    import onnxruntime as ort

    device = str(options.get("device", "cpu"))
    kind, _, index = device.partition(":")
    cpu = [("CPUExecutionProvider", {})]
    if kind == "cpu":
        return cpu
    if kind not in ("cuda", "gpu", "auto"):
        raise ValueError(f"onnxruntime backend: device '{device}' is not one of cpu, cuda, cuda:N, auto")
    available = ort.get_available_providers()
    usable = "CUDAExecutionProvider" in available and cuda_device_present()
    if not usable:
        if kind == "auto":
            return cpu
        why = "this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)" \
            if "CUDAExecutionProvider" not in available else "no CUDA GPU is visible (nvidia-smi lists none)"
        raise ValueError(f"onnxruntime backend: device '{device}' requested, but {why}")
    device_id = int(index or 0)
    chosen: list[tuple[str, dict[str, Any]]] = []
    if "TensorrtExecutionProvider" in available and ctypes.util.find_library("nvinfer"):
        chosen.append(("TensorrtExecutionProvider", {"device_id": device_id}))
    # TF32 off unless asked: parity is checked at float32 (TF32 matmuls err by ~1e-3 relative).
    chosen.append(("CUDAExecutionProvider", {"device_id": device_id,
                                             "use_tf32": int(bool(options.get("allow_tf32", False)))}))
    return chosen + cpu


class OnnxRuntimeBackend(ExportRunner, Backend):
    needs: ClassVar[tuple[tuple[str, str], ...]] = (("onnxruntime", "onnx"), ("onnx", "onnx"))
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    precision_reasons: ClassVar[dict[str, str]] = {"bf16": BF16_REASON}
    no_train_reason: ClassVar[str] = ("ONNX Runtime runs inference graphs here; training needs onnxruntime-training "
                                      "artifacts, which alexbench does not build")

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        import onnxruntime as ort

        self.spec = spec
        self.path, self.proto, self.cache_hit = self.runner_file(spec, weights, onnx_path)
        self.nhwc = self.onnx_source == "keras"
        self.tensors, self.missing = layer_tensors(self.proto, spec)
        self.params = param_breakdown(self.proto, spec, weights)
        self.threads = int(self.options.get("threads") or os.cpu_count() or 1)
        self.session_options = ort.SessionOptions()
        self.session_options.intra_op_num_threads = self.threads
        self.session_options.inter_op_num_threads = 1
        self.session_options.log_severity_level = 3
        if not self.options.get("busy_wait", True):  # idle threads yield their core to other workers
            self.session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.requested = choose_providers(self.options)
        initializers = {i.name for i in self.proto.graph.initializer}
        self.input_name = next(i.name for i in self.proto.graph.input if i.name not in initializers)
        self.output_name = self.proto.graph.output[0].name
        self._apply_precision(self.precision)

    def _apply_precision(self, precision: str) -> None:
        """Make the model ``precision`` runs (see the module docstring) and the facts about it."""
        precision = canonical_precision(precision)
        reason = self.precision_reason(precision)
        if reason:
            raise ValueError(reason)
        # Sessions are made on first use: a compare run needs only the one with layer outputs,
        # and each session of the full model costs about a second to create.
        self._plain_session = None
        self._layer_session = None
        self.converted = None  # the fp16 or int8 ModelProto; None: the file runs as exported
        self.readouts = dict(self.tensors)  # layer -> the tensor read out of the model that runs
        self.model: str | bytes = str(self.path)
        self.precision_facts: dict[str, Any] = {"requested": precision, "model": "fp32 (the file as exported)"}
        if precision == "fp32":
            return
        if precision == "fp16":
            self.converted = to_fp16(self.proto)
            self.precision_facts["model"] = FP16_KIND
        else:
            batch = self._calibration_batch()
            feeds = ({self.input_name: self._input(batch[i:i + CALIBRATION_CHUNK])}
                     for i in range(0, len(batch), CALIBRATION_CHUNK))
            self.converted, calibration_s, quantize_s, unquantized = quantized_model(self.path, feeds,
                                                                                     self.calibration_ranges)
            self.precision_facts.update(model=int8_kind(len(batch)), calibration_s=round(calibration_s, 3),
                                        quantize_s=round(quantize_s, 3), left_float_nonfinite_range=unquantized)
        self.readouts, missing = readout_tensors(self.converted, self.tensors)
        self.missing.update(missing)
        self.model = self.converted.SerializeToString()
        kernels = kernel_dtypes(lambda options: self._session(self.model, options),
                                {self.input_name: self._input(np.zeros((1, *self.spec.input_shape), np.float32))})
        self.precision_facts["kernels"] = kernels
        if precision == "fp16":
            in_float32 = [op for op, types in kernels.items() if "float16" not in types and op != "Cast"]
            self.precision_facts["computed_in_float32"] = in_float32
            if in_float32:
                self.precision_facts["note"] = (
                    f"ONNX Runtime has no float16 kernel here for {', '.join(in_float32)}: it cast their float16 "
                    f"inputs to float32 and computed them in float32 (weights rounded to float16)")

    def _calibration_batch(self) -> np.ndarray:
        path = self.options.get("calibration_input")
        if not path:
            raise ValueError(f"backend '{self.name}': precision int8 needs options['calibration_input'], the path "
                             f"of an .npy float32 [N, C, H, W] batch to calibrate the activation ranges on")
        return np.load(path)

    def calibration_ranges(self, model_path: Path, feeds: Feeds, workdir: Path) -> Ranges:
        """Tensor -> (min, max) the int8 model quantizes each activation to; tests override this seam
        to plant a badly calibrated layer."""
        return calibrate(model_path, feeds, workdir)

    @property
    def session(self):
        """The session of the file as exported (bench and output-only runs)."""
        if self._plain_session is None:
            self._plain_session = self._session(self.model)
        return self._plain_session

    def _session(self, model, options=None):
        import onnxruntime as ort

        return ort.InferenceSession(model, options or self.session_options, providers=[p for p, _ in self.requested],
                                    provider_options=[o for _, o in self.requested])

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        feed = {self.input_name: self._input(x)}
        wanted = [n for n in dict.fromkeys(layers) if n in self.readouts]
        if not wanted:
            output = self.session.run([self.output_name], feed)[0]
            return RunOutput(self._canonical_output(output.astype(np.float32)), dtypes={"output": str(output.dtype)})
        if self._layer_session is None:
            model = with_typed_outputs(self.converted or self.proto, list(self.readouts.values()))
            self._layer_session = self._session(model.SerializeToString())
        names = list(dict.fromkeys([self.output_name] + [self.readouts[n] for n in wanted]))
        values = dict(zip(names, self._layer_session.run(names, feed)))
        output = values[self.output_name]
        if self.converted is not None:  # the output of the model as made, not of its copy with more outputs
            output, with_layers = self.session.run([self.output_name], feed)[0], output
            self._note_layer_outputs_effect(output, with_layers)
        found, dtypes = {}, {"output": str(output.dtype)}
        for layer in wanted:
            value = values[self.readouts[layer]]
            array = self._canonical(layer, value.astype(np.float32))
            if array is not None:
                found[layer], dtypes[layer] = array, str(value.dtype)
        return RunOutput(self._canonical_output(output.astype(np.float32)), found, dtypes)

    def _note_layer_outputs_effect(self, output: np.ndarray, with_layers: np.ndarray) -> None:
        """Record (the worst over runs) how much outputting the layers' tensors changed the output."""
        diff = float(np.abs(output.astype(np.float64) - with_layers).max(initial=0.0))
        worst = self.precision_facts.get("layer_outputs_change_output_by", 0.0)
        self.precision_facts["layer_outputs_change_output_by"] = max(worst, diff)

    def layer_names(self) -> list[str]:
        return list(self.readouts)

    def environment(self) -> dict[str, Any]:
        import onnx
        import onnxruntime as ort

        providers = (self._layer_session or self.session).get_providers()
        return {
            "onnxruntime": ort.__version__, "onnx": onnx.__version__, "file": self.path.name,
            "producer": f"{self.proto.producer_name} {self.proto.producer_version}".strip(),
            "opset": max((o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx")), default=0),
            "providers_requested": [p for p, _ in self.requested],
            # what the session really uses (ONNX Runtime falls back to the CPU silently)
            "providers": providers,
            "intra_op_threads": self.threads, "input_layout": "NHWC" if self.nhwc else "NCHW",
            "export_cache_hit": self.cache_hit, "params": self.params,
            "missing_layers": dict(self.missing), "precision": {**self.precision_facts, "providers": providers},
        }

    # --- bench hooks (see Backend) ---
    no_compiled_reason: ClassVar[str] = "ONNX Runtime always optimises the graph (level ALL): no separate variant"
    # float16 and int8 run the converted or quantized model (float32 I/O), on the CPU too.
    bench_precisions: ClassVar[tuple[str, ...]] = ("float32", "float16", "int8")

    def before_build(self, precision: str, threads: int) -> None:
        """The bench precision becomes the one built: int8's calibration is then part of ``build``, and its
        seconds are in the environment the bench worker reads right after it."""
        self.options["precision"] = canonical_precision(precision)

    def prepare_bench(self, precision: str, compiled: bool, device: str, threads: int) -> str:
        """Threads and providers are the session's, set in ``build``. A bench precision other than the
        one built makes its model here, before any timing (int8: calibration included, its seconds in
        ``environment()["precision"]["calibration_s"]``)."""
        if canonical_precision(precision) != self.precision_facts["requested"]:
            self._apply_precision(precision)
        return "onnxruntime"

    @classmethod
    def matmul_peak_step(cls, device: str, precision: str, threads: int, n: int) -> tuple[Callable[[], Any], str]:
        """MLAS, ONNX Runtime's own CPU GEMM (float32 on the CPU only)."""
        if device != "cpu" or precision != "float32":
            raise NotImplementedError("the ONNX Runtime matmul peak is measured on the CPU at float32")
        import onnxruntime as ort
        from onnx import TensorProto, helper

        spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in ("a", "b", "c")]
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", spec[:2], spec[2:])
        # IR version 10: onnx 1.23 writes 14 by default, which onnxruntime-gpu 1.31 refuses.
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)  # never zeros: some kernels run faster on them
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        return (lambda: session.run(None, {"a": a, "b": b})), f"onnxruntime {ort.__version__}"

    def bench_step(self, x: np.ndarray, device: str, precision: str = "float32") -> Callable[[], Any]:
        on_cuda = "CUDAExecutionProvider" in self.session.get_providers()
        if device.startswith("cuda") != on_cuda:
            raise ValueError(f"backend '{self.name}': asked to bench on '{device}', its session runs on "
                             f"{self.session.get_providers()}; build it with options device='{device}'")
        session, staged = self.session, self._input(x)
        if not on_cuda:
            feed = {self.input_name: staged}
            return lambda: session.run([self.output_name], feed)

        import onnxruntime as ort

        device_id = int(device.partition(":")[2] or 0)
        binding = session.io_binding()
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(staged, "cuda", device_id))
        binding.bind_output(self.output_name, "cuda", device_id)

        def step():
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return step


class OnnxFromTorchBackend(OnnxRuntimeBackend):
    name: ClassVar[str] = "onnx-torch"
    summary: ClassVar[str] = "ONNX Runtime running torch's ONNX export (compare adds it after torch)"
    onnx_source: ClassVar[str | None] = "torch"


class OnnxFromKerasBackend(OnnxRuntimeBackend):
    name: ClassVar[str] = "onnx-keras"
    summary: ClassVar[str] = "ONNX Runtime running the Keras ONNX export (compare adds it after keras)"
    onnx_source: ClassVar[str | None] = "keras"
