"""LiteRT (TensorFlow Lite): the spec's Keras model converted to a float32 .tflite file (``convert.py``,
cached by content like the ONNX exports) and run in the LiteRT interpreter.

The output is the default interpreter's, the path a deployed model takes and the bench times: XNNPACK, the
default delegate, runs every op it supports (LRN is not one: it runs on the built-in kernel). Layer outputs
come from a second interpreter on the same file that preserves every intermediate tensor (``kernels.py``);
which kernels each interpreter really used is read off it and recorded in ``environment()["kernels"]``, with
the difference between the two interpreters' outputs and a one-line ``note`` that says the layers were read
on another kernel path than the output (another delegate, or the same delegate partitioned op by op).
Spec layers map onto tensors by the rule in ``flatbuffer.py``; a layer whose output the converter fused
into a later op is listed missing with that reason. Grouped convolutions reach the file as one CONV_2D per
group (the Keras lowering's split -> conv -> concat), which both the converter and XNNPACK handle.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ...spec import Layer, ModelSpec
from ..base import Backend, RunOutput, Weights
from ..layouts import activation_to_canonical, nchw_to_nhwc

# The readout interpreter: every intermediate tensor kept (LiteRT's defaults otherwise, delegate included).
READOUT_OPTIONS: dict[str, Any] = {"experimental_preserve_all_tensors": True}


class LiteRtBackend(Backend):
    name: ClassVar[str] = "litert"
    summary: ClassVar[str] = ("LiteRT (TensorFlow Lite): the Keras model converted to .tflite, run by the "
                              "interpreter on its default XNNPACK delegate")
    needs: ClassVar[tuple[tuple[str, str], ...]] = (("tensorflow", "keras"), ("keras", "keras"),
                                                    ("ai_edge_litert", "litert"))
    # The converter needs Keras on TensorFlow; the worker sets this before keras is imported.
    env: ClassVar[dict[str, str]] = {"KERAS_BACKEND": "tensorflow"}
    precision_reasons: ClassVar[dict[str, str]] = {
        p: "the .tflite file is converted without optimizations (float32 weights and kernels); the converter's "
           "float16 and int8 post-training quantization are not wired in" for p in ("fp16", "bf16", "int8")}
    no_train_reason: ClassVar[str] = "the LiteRT interpreter runs inference only"

    @classmethod
    def lowering(cls) -> dict[str, Any]:
        """The Keras backend's table, with LRN as TensorFlow's own op (what the converter makes a builtin)."""
        from ..keras.backend import KerasBackend
        from .layers import lrn_builder

        return {**KerasBackend.lowering(), "lrn": lrn_builder(cls.tflite_lrn_alpha)}

    @classmethod
    def tflite_lrn_alpha(cls, layer: Layer) -> float:
        """TensorFlow's LRN alpha for the spec's: TensorFlow does not divide alpha by the window, the spec
        (ONNX / torch) does."""
        return layer.attrs["alpha"] / layer.attrs["size"]

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        from ..keras.runtime import import_keras
        from .convert import cached_tflite
        from .flatbuffer import layer_tensors, read_model
        from .params import param_breakdown

        import_keras(self.env["KERAS_BACKEND"])
        self.spec = spec
        alphas = {layer.name: self.tflite_lrn_alpha(layer) for layer in spec.layers if layer.op == "lrn"}
        self.path, self.conversion, self.cache_hit = cached_tflite(spec, weights, self.lowering(), alphas,
                                                                   self.options.get("cache_dir"))
        self.model = read_model(self.path)
        self.tensors, self.missing = layer_tensors(self.model, spec)
        self.params = param_breakdown(self.model, spec, weights)
        self.threads = int(self.options.get("threads") or os.cpu_count() or 1)
        self._output_runner = self._readout_runner = None  # made on first use
        self.readout_difference: dict[str, float] = {}

    @property
    def output_runner(self):
        """The default interpreter: the output and the bench."""
        if self._output_runner is None:
            from .kernels import Runner

            self._output_runner = Runner(self.path, self.threads)
        return self._output_runner

    @property
    def readout_runner(self):
        if self._readout_runner is None:
            from .kernels import Runner

            self._readout_runner = Runner(self.path, self.threads, **self.readout_options())
        return self._readout_runner

    def readout_options(self) -> dict[str, Any]:
        """The layer readout interpreter's options (a test plants TensorFlow's default here: no delegate)."""
        return dict(READOUT_OPTIONS)

    def _input(self, x: np.ndarray) -> np.ndarray:
        if np.ndim(x) != 4 or tuple(x.shape[1:]) != tuple(self.spec.input_shape) or x.dtype != np.float32:
            raise ValueError(f"backend '{self.name}', spec '{self.spec.name}': input {getattr(x, 'dtype', '?')} "
                             f"{list(np.shape(x))}, expected float32 NCHW "
                             f"[N, {', '.join(map(str, self.spec.input_shape))}]")
        return nchw_to_nhwc(x)

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        x_nhwc = self._input(x)
        output = self.output_runner.run(x_nhwc)
        wanted = [n for n in dict.fromkeys(layers) if n in self.tensors]
        found: dict[str, np.ndarray] = {}
        if wanted:
            readout = self.readout_runner
            self._note_difference(output, readout.run(x_nhwc))
            found = {n: activation_to_canonical(readout.tensor(self.tensors[n])) for n in wanted}
        dtypes = {"output": str(output.dtype), **{n: str(a.dtype) for n, a in found.items()}}
        return RunOutput(activation_to_canonical(output), found, dtypes)

    def _note_difference(self, output: np.ndarray, readout: np.ndarray) -> None:
        """The worst (over runs) difference between the readout interpreter's output and the output's."""
        diff = output.astype(np.float64) - readout
        rel = float(np.linalg.norm(diff) / max(float(np.linalg.norm(output.astype(np.float64))), 1e-30))
        worst = self.readout_difference
        self.readout_difference = {"max_abs": max(worst.get("max_abs", 0.0), float(np.abs(diff).max(initial=0.0))),
                                   "rel_l2": max(worst.get("rel_l2", 0.0), rel)}

    def param_count(self) -> int:
        return int(self.params["weight_params"])

    def param_note(self) -> str:
        p = self.params
        head = (f"{p['weight_params']:,} in {p['weight_tensors']} float32 constants vs the spec's "
                f"{p['spec_params']:,} ({p['difference']:+,}, {'explained' if p['explained'] else 'NOT explained'})")
        return head + (": " + "; ".join(p["notes"]) if p["notes"] else "")

    @property
    def param_explained(self) -> bool:
        return bool(self.params["explained"])

    def layer_names(self) -> list[str]:
        return list(self.tensors)

    def environment(self) -> dict[str, Any]:
        from .kernels import summary

        output = self.output_runner.kernels(self.model)
        kernels = self._kernels(output)
        return {"ai_edge_litert": version("ai-edge-litert"), **self.conversion["versions"],
                "converter": self.conversion["converter"], "file": self.path.name, "tflite_cache_hit": self.cache_hit,
                "ops": self.model.op_codes, "threads": self.threads, "input_layout": "NHWC",
                "params": self.params,
                "layer_tensors": {n: self.model.tensors[i].name for n, i in self.tensors.items()},
                "missing_layers": dict(self.missing), "kernels": kernels,
                # printed under the compare table: which kernels computed what was judged
                "notes": [f"output on {kernels['output']}" + (f"; {kernels['note']}" if "note" in kernels else "")],
                "precision": {"requested": self.precision, "model": "float32 (converted without optimizations)",
                              "settings": f"float32 .tflite, {summary(output)}, {self.threads} threads"}}

    def _kernels(self, output: dict[str, Any]) -> dict[str, Any]:
        """What ran the output and what ran the layers (``kernels.py`` reads it off each interpreter), and a
        ``note`` saying that the layers were read on another kernel path, and how."""
        from .kernels import summary

        if self._readout_runner is None:
            return {"output": summary(output), "layers": "no layer outputs were read in this run",
                    "detail": {"output": output}}
        layers = self._readout_runner.kernels(self.model)
        same = layers["delegate"] == output["delegate"]
        difference = ", ".join(f"{k} {v:.3g}" for k, v in self.readout_difference.items())
        if same:
            how = "op by op" if layers["partitions"] == layers["delegated_ops"] else f"in {layers['partitions']}"
            note = (f"layer outputs come from a second interpreter (preserve_all_tensors) on the same kernels, "
                    f"{layers['delegate'] or 'built-in'}, partitioned {how} (the output's: {output['partitions']} "
                    f"partitions); its output differs from the reported one by {difference}")
        else:
            note = (f"layer outputs were read on a different kernel path than the output: layers on "
                    f"{layers['delegate'] or 'built-in kernels (no delegate)'}, output on "
                    f"{output['delegate'] or 'built-in kernels (no delegate)'}; the readout's output differs from "
                    f"the reported one by {difference}")
        return {"output": summary(output), "layers": summary(layers), "same_delegate": same,
                "readout_output_difference": dict(self.readout_difference), "note": note,
                "detail": {"output": output, "layers": layers}}

    # --- bench hooks (see Backend) ---
    no_compiled_reason: ClassVar[str] = ("a .tflite file is already the compiled form; XNNPACK plans it when the "
                                         "interpreter loads it")

    def before_build(self, precision: str, threads: int) -> None:
        self.options["threads"] = threads

    def prepare_bench(self, precision: str, compiled: bool, device: str, threads: int) -> str:
        if device != "cpu":
            raise ValueError(f"backend '{self.name}': the LiteRT interpreter runs on the CPU; received device "
                             f"'{device}' (valid: cpu)")
        from .kernels import summary

        return f"LiteRT interpreter, {summary(self.output_runner.kernels(self.model))}"

    def bench_step(self, x: np.ndarray, device: str, precision: str = "float32") -> Callable[[], Any]:
        runner = self.output_runner
        runner.load(self._input(x))  # staged once; invoke() runs synchronously
        return runner.interpreter.invoke

    def threads_seen(self) -> dict[str, Any]:
        """The thread count the interpreter was made with (LiteRT reports none back)."""
        threads = getattr(self, "threads", None)
        return {"litert_num_threads": threads} if threads else {}

    @classmethod
    def matmul_peak_step(cls, device: str, precision: str, threads: int, n: int) -> tuple[Callable[[], Any], str]:
        """An n x n x n BATCH_MATMUL through the XNNPACK delegate (float32 on the CPU only)."""
        if device != "cpu" or precision != "float32":
            raise NotImplementedError("the LiteRT matmul peak is measured on the CPU at float32")
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter

        spec = tf.TensorSpec([n, n], tf.float32)
        matmul = tf.function(lambda a, b: tf.matmul(a, b), input_signature=[spec, spec])
        converter = tf.lite.TFLiteConverter.from_concrete_functions([matmul.get_concrete_function()], matmul)
        interpreter = Interpreter(model_content=converter.convert(), num_threads=threads)
        interpreter.allocate_tensors()
        rng = np.random.default_rng(0)  # never zeros: some kernels run faster on them
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], rng.standard_normal((n, n), dtype=np.float32))
        return interpreter.invoke, f"LiteRT {version('ai-edge-litert')} XNNPACK"
