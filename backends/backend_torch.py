"""The ``torch`` backend: the spec compiled into an ``nn.Sequential`` of torch's own layers.

Each spec layer is a child module under the spec's name, so ``state_dict`` keys are the
canonical weight names (``conv1.weight``, ``bn1.running_mean``) and canonical layouts are
torch's layouts: weights load unchanged with ``strict=True``. The one structural addition
is padding torch cannot express on the op itself: asymmetric padding becomes an explicit
pad child (``<layer>_pad``, zeros for conv/avg pool, -inf for max pool) just before the
layer, which keeps its name and its weights.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..spec import Layer, ModelSpec
from ..spec.ops import window_output
from .base import Backend, RunOutput, Weights

# Parity is measured against a float64 reference: TF32 matmuls (~1e-3 relative) would fail it.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def _pad_module(layer: Layer, value: float) -> nn.Module:
    top, bottom, left, right = layer.attrs["padding"]
    return nn.ConstantPad2d((left, right, top, bottom), value)  # torch orders pads last axis first


def _symmetric(padding: tuple[int, int, int, int]) -> tuple[int, int] | None:
    top, bottom, left, right = padding
    return (top, left) if top == bottom and left == right else None


def _conv(layer: Layer) -> nn.Module:
    a = layer.attrs
    return nn.Conv2d(layer.input_shape[0], a["filters"], a["kernel"], stride=a["stride"],
                     padding=_symmetric(a["padding"]) or 0, groups=a["groups"], bias=a["bias"])


def _maxpool_with_pad(layer: Layer) -> tuple[nn.Module | None, nn.Module]:
    a = layer.attrs
    padding, ceil = a["padding"], a.get("ceil_mode", False)
    sym = _symmetric(padding)
    if sym and not (ceil and any(padding)):  # torch pads max pool with -inf itself
        return None, nn.MaxPool2d(a["kernel"], a["stride"], padding=sym, ceil_mode=ceil)
    # Otherwise pad with -inf explicitly, then pool in floor mode. Ceil mode's last window may
    # hang over the bottom/right edge: extend that side's -inf padding so that floor mode
    # yields the spec's window count (the spec's rule). Padded ceil mode goes this way too
    # because ONNX shape inference counts its windows differently from torch (one more row
    # when the last window would start in the padding), though ORT computes torch's shape.
    (kh, kw), (sh, sw), (top, bottom, left, right) = a["kernel"], a["stride"], padding
    _, h, w = layer.input_shape
    oh = window_output(h, top, bottom, kh, sh, ceil)
    ow = window_output(w, left, right, kw, sw, ceil)
    bottom = max(bottom, (oh - 1) * sh + kh - h - top)
    right = max(right, (ow - 1) * sw + kw - w - left)
    pad = nn.ConstantPad2d((left, right, top, bottom), -math.inf)
    return pad, nn.MaxPool2d(a["kernel"], a["stride"])


def _module_and_pad(layer: Layer, first: bool) -> tuple[nn.Module | None, nn.Module]:
    """The torch module for one spec layer and the explicit pad module before it, if any."""
    a, op = layer.attrs, layer.op
    if op == "conv2d":
        return (None if _symmetric(a["padding"]) else _pad_module(layer, 0.0)), _conv(layer)
    if op == "maxpool2d":
        return _maxpool_with_pad(layer)
    if op == "avgpool2d":  # count_include_pad=True: padded zeros count in the divisor, as in the spec
        sym = _symmetric(a["padding"])
        return (None if sym else _pad_module(layer, 0.0)), nn.AvgPool2d(a["kernel"], a["stride"], padding=sym or 0)
    simple: dict[str, Callable[[], nn.Module]] = {
        # In place saves a fresh activation per call (~7% of AlexNet's time on CPU); safe because
        # captured layer outputs are copied as they are produced. Never on the caller's input.
        "relu": lambda: nn.ReLU(inplace=not first),
        # torch divides alpha by size, like the spec: the spec's alpha passes through unchanged
        "lrn": lambda: nn.LocalResponseNorm(a["size"], a["alpha"], a["beta"], a["k"]),
        "adaptive_avgpool2d": lambda: nn.AdaptiveAvgPool2d(a["output"]),
        "batchnorm2d": lambda: nn.BatchNorm2d(layer.input_shape[0], eps=a["eps"], momentum=a["momentum"]),
        "dropout": lambda: nn.Dropout(a["rate"]),
        "flatten": nn.Flatten,  # C, H, W order, as the spec
        "linear": lambda: nn.Linear(layer.input_shape[0], a["units"], bias=a["bias"]),
        "softmax": lambda: nn.Softmax(dim=1),
    }
    if op not in simple:
        raise NotImplementedError(f"torch backend: layer '{layer.name}' has op '{op}', which it cannot build; "
                                  f"known ops: conv2d, maxpool2d, avgpool2d, {', '.join(simple)}")
    return None, simple[op]()


def _pad_name(layer_name: str, taken: set[str]) -> str:
    name = f"{layer_name}_pad"
    while name in taken:
        name += "_"
    return name


def torch_model_from_spec(spec: ModelSpec, weights: Weights) -> nn.Sequential:
    """An eval-mode float32 ``nn.Sequential`` whose children carry the spec's layer names,
    holding the canonical weights (loaded with ``strict=True``)."""
    taken = {layer.name for layer in spec.layers}
    children: OrderedDict[str, nn.Module] = OrderedDict()
    for index, layer in enumerate(spec.layers):
        pad, module = _module_and_pad(layer, first=index == 0)
        if pad is not None:
            pad_name = _pad_name(layer.name, taken)
            taken.add(pad_name)
            children[pad_name] = pad
        children[layer.name] = module
    model = nn.Sequential(children)
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)  # BatchNorm fills in its missing step counter itself
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            # The int64 step counter is used only in training with momentum=None and is not a
            # spec tensor; dropping it makes state_dict exactly the canonical weight set.
            module.num_batches_tracked = None
    return model.float().eval()


def inference_step(model: nn.Module, staged: torch.Tensor):
    """One no-grad forward of an input already on the device, waiting for the device to finish."""
    sync = torch.cuda.synchronize if staged.device.type == "cuda" else (lambda: None)

    def step():
        with torch.no_grad():
            out = model(staged)
        sync()
        return out

    return step


class TorchBackend(Backend):
    name = "torch"
    needs = (("torch", "torch"),)

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        if "threads" in self.options:
            torch.set_num_threads(int(self.options["threads"]))
        self.spec = spec
        self.device = torch.device(self.options.get("device", "cpu"))
        self.model = torch_model_from_spec(spec, weights).to(self.device)

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
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
        self.device = torch.device(device)
        self.model.to(self.device)
        staged = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        return inference_step(self.model, staged)

    def export_onnx(self, path: Path) -> dict[str, Any]:
        """torch.onnx dynamo export with a dynamic batch, checked (see onnx_export.py)."""
        from .onnx_export import export_torch_model

        return export_torch_model(self.model, self.spec, path).to_json()
