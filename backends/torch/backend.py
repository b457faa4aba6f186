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
from ..base import OPSET, Backend, RunOutput, Weights


class TorchBackend(Backend):
    name = "torch"
    needs = (("torch", "torch"),)
    onnx_exporter = "torch.onnx.export dynamo v1"
    onnx_export_packages = ("torch", "onnxscript", "onnx")


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
        self.model = torch_model_from_spec(spec, weights).to(self.device)

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        import torch

        captured: dict[str, np.ndarray] = {}
        wanted = set(layers)

        def capture(name: str):
            def hook(_module, _inputs, output):
                captured[name] = output.detach().float().cpu().numpy().copy()
            return hook

        handles = [module.register_forward_hook(capture(name))
                   for name, module in self.model.named_children() if name in wanted]
        try:
            with torch.no_grad():
                out = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        finally:
            for handle in handles:
                handle.remove()
        return RunOutput(out.float().cpu().numpy(), {name: captured[name] for name in layers if name in captured})

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
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "cuda_available": torch.cuda.is_available(),
        }
        if self.device.type == "cuda":
            env["cuda"] = torch.version.cuda
            env["gpu"] = torch.cuda.get_device_name(self.device)
        return env

    def bench_step(self, x: np.ndarray, device: str) -> Callable[[], Any]:
        import torch

        from .lowering import inference_step

        self.device = torch.device(device)
        self.model.to(self.device)
        staged = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        return inference_step(self.model, staged)

    def export_onnx(self, path: Path, opset: int = OPSET) -> dict[str, Any]:
        """torch.onnx dynamo export with a dynamic batch, checked (see export.py)."""
        from .export import export_torch_model

        return export_torch_model(self.model, self.spec, path, opset).to_json()
