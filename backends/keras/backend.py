"""The Keras 3 backend: a functional NHWC model compiled from the spec, on TensorFlow (``keras``),
torch (``keras-torch``) or JAX (``keras-jax``).

Keras picks its backend from ``KERAS_BACKEND`` once per process, when it is first imported.
So this module does not import keras at import time: a worker imports it, reads the backend
class's ``env``, sets it in ``os.environ``, and only ``build`` imports keras (``import_keras``
also sets the variable itself when keras is not yet imported, and refuses a process whose
keras already runs on another backend).

Layer names equal the spec's; helper layers get derived names (``conv2_pad``, ``flatten_chw``).
Op by op lowering is in ``lowering.py`` (custom layers in ``layers.py``), weight layouts in
``layouts.py``, the ONNX export in ``export.py``, the training step (compare --train) in ``training.py``
with its compensations for Keras' defaults as hooks here.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ...spec import ModelSpec
from ..base import OPSET, Backend, ExportUnsupported, RunOutput, TrainStep, Weights
from ..layouts import activation_from_canonical, activation_to_canonical, nchw_to_nhwc
from ..precision import canonical_precision
from ..training_inputs import check_training_batch
from . import layouts
from .runtime import import_keras

# The Keras dtype policy each precision builds the model under: mixed policies keep float32 variables and
# compute in 16 bits, as Keras recommends. Every spec op runs under both on TensorFlow, torch and JAX on
# the CPU (tests/backends/keras/test_precision.py runs each against the float64 reference).
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


class KerasBackend(Backend):
    name: ClassVar[str] = "keras"
    summary: ClassVar[str] = "Keras 3 on TensorFlow; its ONNX export (tf2onnx) is what onnx-keras runs"
    needs: ClassVar[tuple[tuple[str, str], ...]] = (("tensorflow", "keras"), ("keras", "keras"))
    # Set in the worker's environment before keras is imported (see the module docstring).
    env: ClassVar[dict[str, str]] = {"KERAS_BACKEND": "tensorflow"}
    onnx_exporter: ClassVar[str | None] = "tf2onnx from_function stateless_call v1"
    onnx_export_packages: ClassVar[tuple[str, ...]] = ("tensorflow", "keras", "tf2onnx", "onnx")
    precisions: ClassVar[tuple[str, ...]] = tuple(POLICIES)
    precision_reasons: ClassVar[dict[str, str]] = {
        "int8": "Keras' int8 (model.quantize('int8')) covers Dense layers only, not convolutions, and scales "
                "activations on the fly per call; a statically calibrated int8 model runs on ONNX Runtime "
                "(backend 'onnx-keras')"}

    @classmethod
    def lowering(cls) -> dict[str, Any]:
        """The same table on every Keras backend (keras ops only); imports keras if not yet."""
        if "keras" not in sys.modules:
            import_keras(cls.env["KERAS_BACKEND"])
        from .lowering import LOWERING

        return LOWERING

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        self.keras = import_keras(self.env["KERAS_BACKEND"])
        if not self.options.get("allow_tf32", False):
            self._full_float32()
        self.spec = spec
        from .lowering import keras_model_from_spec

        precision = canonical_precision(self.precision)
        if precision not in POLICIES:
            raise ValueError(self.precision_reason(precision))
        # Layers take the global policy when they are made; set it for this model only (a process, or a
        # test session, may build models in other precisions after this one).
        before = self.keras.config.dtype_policy()
        self.keras.config.set_dtype_policy(POLICIES[precision])
        try:
            self.model = keras_model_from_spec(spec, weights)
        finally:
            self.keras.config.set_dtype_policy(before)
        self._layer_models: dict[tuple[str, ...], Any] = {}

    def _full_float32(self) -> None:
        """No TF32 on GPUs (parity is checked at float32); a no-op on the CPU."""
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)

    def _input(self, x: np.ndarray) -> np.ndarray:
        c, h, w = self.spec.input_shape
        if np.ndim(x) != 4 or tuple(x.shape[1:]) != (c, h, w) or x.dtype != np.float32:
            raise ValueError(f"backend '{self.name}', spec '{self.spec.name}': input {getattr(x, 'dtype', '?')} "
                             f"{list(np.shape(x))}, expected float32 NCHW [N, {c}, {h}, {w}]")
        return nchw_to_nhwc(x)

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        x_nhwc = self._input(x)
        final = self.spec.layers[-1].name
        names = tuple(dict.fromkeys(n for n in layers if n != final))
        unknown = [n for n in names if n not in self.layer_names()]
        if unknown:
            raise KeyError(f"spec '{self.spec.name}' has no layer {', '.join(map(repr, unknown))}; "
                           f"layers: {', '.join(self.layer_names())}")
        if names not in self._layer_models:
            from .lowering import keras_layer_model

            self._layer_models[names] = keras_layer_model(self.model, (final, *names)) if names else self.model
        outs = self._layer_models[names].predict_on_batch(x_nhwc)
        outs = dict(zip((final, *names), [outs] if not names else list(outs)))
        # NumPy arrays in the dtype the layer computed (bfloat16 through ml_dtypes), recorded before the copy.
        dtypes = {n: str(np.asarray(o).dtype) for n, o in outs.items()}
        arrays = {n: activation_to_canonical(np.asarray(o, dtype=np.float32)) for n, o in outs.items()}
        return RunOutput(arrays[final], {n: arrays[n] for n in layers},
                         {**{n: dtypes[n] for n in layers}, "output": dtypes[final]})

    # --- training (compare --train): the step is in training.py; the hooks below are each one compensation
    # for where Keras' default differs from the spec's semantics (docs/training.md), overridable one at a time
    # (a test plants the Keras default back and sees the comparison catch it) ---
    trains: ClassVar[bool] = True
    _trainer: Any = None  # training.KerasTrainer once start_training() has run

    def start_training(self) -> None:
        if canonical_precision(self.precision) != "fp32":
            raise ValueError(f"backend '{self.name}': training runs in fp32 only, received precision "
                             f"'{self.precision}' (valid: fp32)")
        from .training import KerasTrainer

        self._trainer = KerasTrainer(self)

    def train_step(self, x: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray],
                   readout: bool = True) -> TrainStep:
        if self._trainer is None:
            raise RuntimeError(f"backend '{self.name}': train_step before start_training")
        return self._trainer.step(self._input(x), *self._checked(labels, masks, len(x)), readout)

    def _checked(self, labels: np.ndarray, masks: dict[str, np.ndarray], batch: int) -> tuple[np.ndarray, list]:
        """The checked labels, and the keep masks in the training model's input order (spec order), each in
        its Keras layout."""
        labels, masks = check_training_batch(f"backend '{self.name}'", self.spec, batch, labels, masks)
        return labels, [activation_from_canonical(np.asarray(masks[layer.name], dtype=np.float32))
                        for layer in self.spec.layers if layer.op == "dropout"]

    def make_optimizer(self):
        """Keras' SGD without its weight_decay: that one is decoupled (w -= lr*wd*w beside the momentum), the
        spec's is coupled (wd*w added to the gradient, inside the momentum), so the trainer adds it."""
        t = self.spec.training
        return self.keras.optimizers.SGD(learning_rate=t.learning_rate, momentum=t.momentum, nesterov=t.nesterov,
                                         weight_decay=None)

    def coupled_decay(self, g, w):
        """The gradient the optimizer steps with: g + wd * w (the spec's coupled weight decay)."""
        wd = self.spec.training.weight_decay
        return g + wd * w if wd else g

    def penalty_gradient(self, tensor: str, w):
        """The gradient of the l2 penalty x * sum(w^2) on ``tensor`` (Keras layout): 2x * w."""
        return 2.0 * self.spec.training.l2(tensor) * w

    def train_loss(self, out, labels):
        """Mean cross-entropy of the logits ``out`` (N, classes) at the int ``labels``, written out: a spec that
        ends in softmax gives its input here (training.py), so -log p[label] is a log-softmax, never Keras'
        categorical_crossentropy, which clips p to [1e-7, 1 - 1e-7]."""
        ops = self.keras.ops
        picked = ops.take_along_axis(out, ops.expand_dims(labels, 1), axis=1)[:, 0]
        return ops.mean(ops.logsumexp(out, axis=1) - picked)

    def bn_momentum(self, layer) -> float:
        """Keras' BatchNormalization momentum is the old value's weight: 1 - the spec's (torch's)."""
        return 1.0 - layer.attrs["momentum"]

    def running_var_correction(self, n: int) -> float:
        """Keras stores the biased batch variance; torch (the spec) the unbiased one, over n = N*H*W values
        (n >= 2: check_training_batch refuses a batch with fewer)."""
        return n / (n - 1)

    def canonical_gradient(self, layer, param: str, array: np.ndarray) -> np.ndarray:
        """A gradient in Keras' layout -> canonical (conv HWIO -> OIHW, Dense kernel transposed; fc6 needs no
        row permutation: the model flattens through Permute to C,H,W, see layouts.py)."""
        return layouts.canonical_from_keras(layer.op, param, array)

    def param_count(self) -> int:
        return int(self.model.count_params())

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.spec.layers]

    def environment(self) -> dict[str, Any]:
        framework = self.env["KERAS_BACKEND"]
        layers = [self.model.get_layer(layer.name) for layer in self.spec.layers]
        precision = {"requested": self.precision, "dtype_policy": POLICIES[canonical_precision(self.precision)],
                     "compute_dtypes": sorted({layer.compute_dtype for layer in layers}),
                     "variable_dtypes": sorted({str(v.dtype) for v in self.model.weights}), **self._tf32_state()}
        return {"keras": self.keras.__version__, "keras_backend": self.keras.backend.backend(),
                framework: importlib.import_module(framework).__version__, "device": self.device(),
                "precision": precision}

    def _tf32_state(self) -> dict[str, Any]:
        """Whether float32 matmuls may run in TF32 on a GPU (what _full_float32 switched off)."""
        import tensorflow as tf

        return {"tf32": tf.config.experimental.tensor_float_32_execution_enabled()}

    def device(self) -> str:
        """Where the weights live, as the framework names it (e.g. 'CPU:0', 'cuda:0', 'TFRT_CPU_0')."""
        value = self.model.weights[0].value
        device = getattr(value, "device", None)
        if callable(device):  # older jax: Array.device()
            device = device()
        return str(device).rpartition("device:")[2] or "unknown"

    # --- bench hooks (see Backend); the framework-specific parts are the _bench_* methods ---
    bench_precisions: ClassVar[tuple[str, ...]] = ("float32", "tf32", "float16", "bfloat16")
    compiled_variant: ClassVar[str | None] = "XLA (jit_compile=True)"

    def before_build(self, precision: str, threads: int) -> None:
        self._bench_threads(threads)
        if precision != "tf32":  # TF32 is a switch on a float32 model (prepare_bench)
            self.options["precision"] = canonical_precision(precision)  # build() sets its dtype policy

    def prepare_bench(self, precision: str, compiled: bool, device: str, threads: int) -> str:
        self._bench_tf32(precision == "tf32", device, threads)
        if compiled:
            self.model.compile(jit_compile=True)
            return str(self.compiled_variant)
        return self._bench_execution()

    def _bench_threads(self, threads: int) -> None:
        """TensorFlow's pools are fixed once it runs anything: set before the model is built."""
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    def _bench_tf32(self, allow: bool, device: str, threads: int) -> None:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(allow)

    def _bench_execution(self) -> str:
        return "tf.function" + (" + XLA" if self.model.jit_compile else "")

    def threads_seen(self) -> dict[str, Any]:
        import tensorflow as tf

        threading = tf.config.threading
        return {"tensorflow_intra_op": threading.get_intra_op_parallelism_threads(),
                "tensorflow_inter_op": threading.get_inter_op_parallelism_threads()}

    def bench_step(self, x: np.ndarray, device: str, precision: str = "float32") -> Callable[[], Any]:
        """Half precision is the dtype policy the model was built under (``before_build``), on any device:
        the input stays float32."""
        on_gpu = any(k in self.device().lower() for k in ("gpu", "cuda"))
        if (device.split(":")[0].lower() in ("gpu", "cuda")) != on_gpu:
            raise ValueError(f"backend '{self.name}': asked to bench on '{device}', but its model lives on "
                             f"'{self.device()}' (Keras places the model on a GPU whenever one is visible)")
        return self._step(self.keras.ops.convert_to_tensor(self._input(x)))

    def _step(self, staged) -> Callable[[], Any]:
        # TensorFlow: a tf.function (XLA on a GPU); torch: eager under no_grad. Returns NumPy, so it waits.
        predict = self.model.predict_on_batch
        return lambda: predict(staged)

    def export_onnx(self, path: Path, opset: int = OPSET) -> dict[str, Any]:
        """tf2onnx on the model's stateless forward pass, weights attached after (see export.py)."""
        if self.onnx_exporter is None:
            raise ExportUnsupported(f"backend '{self.name}' has no ONNX export: the Keras ONNX file is exported "
                                    f"on TensorFlow by backend 'keras'")
        from .export import export_keras_model

        return export_keras_model(self.model, self.spec, path, opset).to_json()


class KerasOnTorchBackend(KerasBackend):
    name: ClassVar[str] = "keras-torch"
    summary: ClassVar[str] = "Keras 3 on its PyTorch engine: the same Keras model, another backend underneath"
    needs: ClassVar[tuple[tuple[str, str], ...]] = (("torch", "torch"), ("keras", "keras"))
    env: ClassVar[dict[str, str]] = {"KERAS_BACKEND": "torch"}
    onnx_exporter: ClassVar[str | None] = None  # Keras' own torch/JAX exports fix the batch size

    def _full_float32(self) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def _tf32_state(self) -> dict[str, Any]:
        from ..torch.backend import tf32_state

        return tf32_state()

    # --- bench hooks ---
    compiled_variant: ClassVar[str | None] = "torch.compile"

    def _bench_threads(self, threads: int) -> None:
        """torch's pool is set after the build (``_bench_tf32``), as for the torch backend."""

    def _bench_tf32(self, allow: bool, device: str, threads: int) -> None:
        import torch

        from ..torch.backend import set_tf32

        set_tf32(allow)
        if device == "cpu":
            torch.set_num_threads(threads)

    def _bench_execution(self) -> str:
        return "eager"

    def threads_seen(self) -> dict[str, Any]:
        from ..torch.backend import torch_threads_seen

        return torch_threads_seen()


class KerasOnJaxBackend(KerasBackend):
    name: ClassVar[str] = "keras-jax"
    summary: ClassVar[str] = "Keras 3 on JAX (install jax; on CUDA, jax[cuda12])"
    needs: ClassVar[tuple[tuple[str, str], ...]] = (("jax", "jax"), ("keras", "keras"))
    env: ClassVar[dict[str, str]] = {"KERAS_BACKEND": "jax"}
    onnx_exporter: ClassVar[str | None] = None  # Keras' own torch/JAX exports fix the batch size

    def _full_float32(self) -> None:
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")

    def _tf32_state(self) -> dict[str, Any]:
        import jax

        return {"jax_default_matmul_precision": jax.config.jax_default_matmul_precision}

    # --- bench hooks ---
    compiled_variant: ClassVar[str | None] = None
    no_compiled_reason: ClassVar[str] = "keras-jax always runs jax.jit-compiled: its plain rows are the compiled ones"

    def _bench_threads(self, threads: int) -> None:
        """Nothing to pin here: JAX has no thread-pool setting at run time (the worker's environment)."""

    def _bench_tf32(self, allow: bool, device: str, threads: int) -> None:
        import jax

        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if allow else "highest")

    def _bench_execution(self) -> str:
        return "jax.jit"

    def threads_seen(self) -> dict[str, Any]:
        return {}

    def _step(self, staged) -> Callable[[], Any]:
        """A jitted stateless forward: Keras' jax predict_on_batch passes the weights through its jitted
        function and back (a copy of every weight per call where buffers cannot be donated, as on CPU)."""
        import jax

        model = self.model
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        forward = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
        return lambda: forward(trainable, non_trainable, staged).block_until_ready()
