"""The ``torch`` backend: the spec lowered to torch modules (``lowering.py``), run eagerly
with forward hooks on each spec layer, exported to ONNX by ``export.py``.

torch is imported inside the methods: the harness loads this class (to read what it declares)
without importing the framework; only a worker builds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...spec import ModelSpec
from ..base import OPSET, Backend, RunOutput, TrainStep, Weights
from ..precision import canonical_precision

# The torch dtype each precision casts model and input to (names of torch attributes: torch is imported lazily).
COMPUTE_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class TorchBackend(Backend):
    name = "torch"
    summary = "PyTorch, eager float32 (or cast to bfloat16/float16); its ONNX export is what onnx-torch runs"
    needs = (("torch", "torch"),)
    onnx_exporter = "torch.onnx.export dynamo v1"
    onnx_export_packages = ("torch", "onnxscript", "onnx")
    # Every spec op has a CPU kernel in bfloat16 and float16 (LRN through lowering.LocalResponseNorm):
    # tests/backends/torch/test_precision.py runs each against the float64 reference.
    precisions = tuple(COMPUTE_DTYPES)
    precision_reasons = {"int8": "torch runs int8 only as a torch.ao-quantized model (observers, calibration, "
                                 "quantized kernels), which alexbench does not build; ONNX Runtime's static QDQ "
                                 "model is the int8 route (backend 'onnx-torch')"}

    @classmethod
    def lowering(cls) -> dict[str, Any]:
        from .lowering import LOWERING

        return LOWERING

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        import torch

        from .lowering import torch_model_from_spec

        if "threads" in self.options:
            torch.set_num_threads(int(self.options["threads"]))
        self.spec = spec
        self.device = torch.device(self.options.get("device", "cpu"))
        self.dtype = getattr(torch, compute_dtype(self))
        # A plain cast, weights and buffers alike (BatchNorm's statistics too); run() casts the input.
        self.model = torch_model_from_spec(spec, weights).to(device=self.device, dtype=self.dtype)

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        wanted = set(layers)
        modules = {name: module for name, module in self.model.named_children() if name in wanted}
        training = self.model.training  # after start_training: infer with the trained weights, then train on
        self.model.eval()
        try:
            return run_with_hooks(self.model, x, self.device, modules, dtype=self.dtype)
        finally:
            self.model.train(training)

    # --- training (backends/torch/training.py; the three hooks below are what a planted-bug test overrides) ---
    trains = True
    trainer: Any = None  # training.Trainer once start_training() has run

    def start_training(self) -> None:
        from .training import start_training

        self.trainer = start_training(self)

    def train_step(self, x: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray],
                   readout: bool = True) -> TrainStep:
        if self.trainer is None:
            raise RuntimeError("torch: train_step before start_training(); call build, start_training, then "
                               "train_step")
        return self.trainer.step(x, labels, masks, readout)

    def train_dropout(self, x: Any, mask: Any, rate: float) -> Any:
        """Inverted dropout with the harness' keep mask."""
        return x * mask / (1.0 - rate)

    def train_loss(self, out: Any, labels: Any) -> Any:
        """The data loss, mean over the batch, from the logits: cross-entropy. A spec that ends in softmax
        gets the softmax's input here (training.py), so -log p[label] is computed as a log-softmax and
        float32 never takes the log of a probability that underflowed to 0; no clipping either way."""
        import torch.nn.functional as F

        return F.cross_entropy(out, labels)

    def make_optimizer(self, params: list[Any]) -> Any:
        """torch's SGD is the spec's rule as it stands: coupled decay inside momentum, PyTorch's buffer."""
        import torch

        t = self.spec.training
        return torch.optim.SGD(params, lr=t.learning_rate, momentum=t.momentum, dampening=0.0,
                               weight_decay=t.weight_decay, nesterov=t.nesterov and t.momentum > 0)

    def param_count(self) -> int:
        # Parameters plus buffers: the buffers are exactly BatchNorm's running statistics.
        return sum(t.numel() for t in self.model.parameters()) + sum(b.numel() for b in self.model.buffers())

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.spec.layers]

    def environment(self) -> dict[str, Any]:
        import torch

        env: dict[str, Any] = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": str(self.device),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,  # kept at the top level for older readers
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "cuda_available": torch.cuda.is_available(),
        }
        if self.device.type == "cuda":
            env["cuda"] = torch.version.cuda
            env["gpu"] = torch.cuda.get_device_name(self.device)
        parameter = next(self.model.parameters(), None)
        env["precision"] = {"requested": self.precision,
                            "parameter_dtype": None if parameter is None else dtype_name(parameter.dtype),
                            **tf32_state()}
        return env

    # --- bench hooks (see Backend) ---
    bench_precisions = ("float32", "tf32", "float16", "bfloat16")
    compiled_variant = "torch.compile"

    def prepare_bench(self, precision: str, compiled: bool, device: str, threads: int) -> str:
        import torch

        set_tf32(precision == "tf32")
        if device == "cpu":
            torch.set_num_threads(threads)
        if compiled:
            self.model = torch.compile(self.model.to(device))
            return "torch.compile"
        return "eager"

    def bench_step(self, x: np.ndarray, device: str, precision: str = "float32") -> Callable[[], Any]:
        """float32 as built; float16/bfloat16 cast model and input (once, before timing), on any device."""
        import torch

        from .lowering import inference_step

        dtype = getattr(torch, "float32" if precision == "tf32" else COMPUTE_DTYPES[canonical_precision(precision)])
        self.device = torch.device(device)
        self.model.to(device=self.device, dtype=dtype)
        staged = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device=self.device, dtype=dtype)
        return inference_step(self.model, staged)

    def threads_seen(self) -> dict[str, Any]:
        return torch_threads_seen()

    @classmethod
    def matmul_peak_step(cls, device: str, precision: str, threads: int, n: int) -> tuple[Callable[[], Any], str]:
        """cuBLAS on CUDA (every precision), torch's CPU GEMM on the CPU."""
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        dtype = torch.float32 if precision == "tf32" else getattr(torch, precision)
        gen = torch.Generator(device=device).manual_seed(0)
        a, b = (torch.randn((n, n), generator=gen, device=device, dtype=dtype) for _ in range(2))
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def step():
            out = a @ b
            sync()
            return out

        return step, f"torch {torch.__version__}"

    def export_onnx(self, path: Path, opset: int = OPSET) -> dict[str, Any]:
        """torch.onnx dynamo export with a dynamic batch, checked (see export.py)."""
        from .export import export_torch_model

        return export_torch_model(self.model, self.spec, path, opset).to_json()


# Shared with keras-torch, whose model runs on the same torch.
def set_tf32(allow: bool) -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def tf32_state() -> dict[str, Any]:
    """The switches that let a CUDA float32 matmul or convolution run in TF32 (no effect on the CPU)."""
    import torch

    return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}


def compute_dtype(backend: Backend) -> str:
    """The torch dtype name ``backend.precision`` computes in; ValueError with the reason for one it cannot run."""
    precision = canonical_precision(backend.precision)
    if precision not in COMPUTE_DTYPES:
        raise ValueError(backend.precision_reason(precision))
    return COMPUTE_DTYPES[precision]


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def torch_threads_seen() -> dict[str, Any]:
    import torch

    return {"torch": torch.get_num_threads()}


def snapshot(output: Any) -> np.ndarray:
    """A copy taken in the hook: a later in-place layer (ReLU(inplace=True)) overwrites the tensor."""
    return output.detach().float().cpu().numpy().copy()


def run_with_hooks(model: Any, x: np.ndarray, device: Any, modules: dict[str, Any],
                   take: Callable[[Any], np.ndarray] = snapshot, dtype: Any = None) -> RunOutput:
    """Run ``model`` on ``x`` (cast to ``dtype``, the model's, when given) without gradients, with a forward
    hook on each of ``modules`` (layer name -> module) whose output ``take`` copies out; returns the output
    and those layers' outputs, with the dtype each had as torch computed it."""
    import torch

    captured: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}

    def capture(name: str):
        def hook(_module, _inputs, output):
            captured[name], dtypes[name] = take(output), dtype_name(output.dtype)
        return hook

    handles = [module.register_forward_hook(capture(name)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    return RunOutput(take(out), captured, {**dtypes, "output": dtype_name(out.dtype)})
