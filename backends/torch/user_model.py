"""``compare --model``: a user's own PyTorch model, run as written, as a backend.

The worker loads the SOURCE (``options["source"]``), imports it to learn which module path holds
each spec layer's output (matched to the spec's layers by position: the spec may be a shipped
one with other names), and runs the model itself: its own weights, eval mode, no gradients,
forward hooks on the readable modules. Functional layers (``F.relu``) have no module to hook and
are not returned. torch is imported inside the methods, as in every backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...spec import ModelSpec
from ..base import Backend, RunOutput, Weights
from .backend import run_with_hooks, snapshot


class TorchModelBackend(Backend):
    name = "torch-model"
    summary = "your own PyTorch model, run as written (its weights, forward hooks on its modules)"
    needs = (("torch", "torch"),)

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        """``weights`` are ignored: the model runs with its own."""
        import torch

        from ..model_source import load_object
        from . import importer

        source = self.options["source"]
        model, _ = load_object(source)  # the harness sends only torch SOURCEs here (MODEL_BACKENDS)
        if self.options.get("state"):  # the tensors of the instance the harness imported
            importer.load_state(model, Path(self.options["state"]))
        imported = importer.import_model(model, source, spec.input_shape)
        if len(imported.layers) != len(spec.layers):
            raise ValueError(f"model {source} has {len(imported.layers)} layers; spec '{spec.name}' has "
                             f"{len(spec.layers)}")
        self.readouts = {layer.name: mine.readout for layer, mine in zip(spec.layers, imported.layers)
                         if mine.readout is not None}
        self.device = torch.device(self.options.get("device", "cpu"))
        self.model = model.to(self.device).eval()

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        modules = dict(self.model.named_modules())
        hooked = {name: modules[self.readouts[name]] for name in layers if name in self.readouts}
        return run_with_hooks(self.model, x, self.device, hooked, self.snapshot)

    snapshot = staticmethod(snapshot)  # a test plants a copy-less one to show why it copies

    def param_count(self) -> int:
        # Parameters plus buffers, as the torch backend counts, less BatchNorm's int64 step counter
        # (num_batches_tracked): not a spec tensor, and the torch backend drops it too.
        buffers = sum(b.numel() for name, b in self.model.named_buffers() if not name.endswith("num_batches_tracked"))
        return sum(p.numel() for p in self.model.parameters()) + buffers

    def layer_names(self) -> list[str]:
        return list(self.readouts)

    def environment(self) -> dict[str, Any]:
        import torch

        return {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(self.device)}
