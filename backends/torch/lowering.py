"""The spec lowered to torch: one entry per op in ``LOWERING``, assembled into an ``nn.Sequential``.

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
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...spec import Layer, ModelSpec
from ...spec.ops import floor_mode_padding
from ..base import Weights

# Parity is measured against a float64 reference: TF32 matmuls (~1e-3 relative) would fail it.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

# (pad module or None, the layer's module); ``first``: the layer reads the caller's input.
Lowered = tuple[nn.Module | None, nn.Module]


def _pad(padding: tuple[int, int, int, int], value: float) -> nn.Module:
    top, bottom, left, right = padding
    return nn.ConstantPad2d((left, right, top, bottom), value)  # torch orders pads last axis first


def _symmetric(padding: tuple[int, int, int, int]) -> tuple[int, int] | None:
    top, bottom, left, right = padding
    return (top, left) if top == bottom and left == right else None


def _zero_padded(layer: Layer, make: Callable[[tuple[int, int]], nn.Module]) -> Lowered:
    """The op with its own symmetric padding, or an explicit zero pad before an unpadded op."""
    sym = _symmetric(layer.attrs["padding"])
    return (None, make(sym)) if sym else (_pad(layer.attrs["padding"], 0.0), make((0, 0)))


def conv2d(layer: Layer, first: bool) -> Lowered:
    a = layer.attrs
    return _zero_padded(layer, lambda padding: nn.Conv2d(layer.input_shape[0], a["filters"], a["kernel"],
                                                         stride=a["stride"], padding=padding, groups=a["groups"],
                                                         bias=a["bias"]))


def maxpool2d(layer: Layer, first: bool) -> Lowered:
    a = layer.attrs
    padding, ceil = a["padding"], a.get("ceil_mode", False)
    sym = _symmetric(padding)
    if sym and not (ceil and any(padding)):  # torch pads max pool with -inf itself
        return None, nn.MaxPool2d(a["kernel"], a["stride"], padding=sym, ceil_mode=ceil)
    # Otherwise pad with -inf explicitly (ceil mode's overhang included) and pool in floor mode.
    # Padded ceil mode goes this way too because ONNX shape inference counts its windows
    # differently from torch (one more row when the last window would start in the padding).
    return _pad(floor_mode_padding(a, layer.input_shape), -math.inf), nn.MaxPool2d(a["kernel"], a["stride"])


def avgpool2d(layer: Layer, first: bool) -> Lowered:
    # count_include_pad=True (torch's default): padded zeros count in the divisor, as in the spec
    return _zero_padded(layer, lambda padding: nn.AvgPool2d(layer.attrs["kernel"], layer.attrs["stride"],
                                                            padding=padding))


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` that also runs in bfloat16 and float16 on the CPU.

    torch's own sums the squares over the channel window with avg_pool3d, which has no half-precision
    CPU kernel ("avg_pool3d_out_frame" not implemented for 'BFloat16'). The same window mean is an
    avg_pool2d over the channel axis of an (N, 1, C, H*W) view, which has one, so half precision takes
    that route and computes in the input's dtype; float32 and float64 keep torch's code, whose ONNX
    export is one LRN node. Same class name, so the importer still reads it as a LocalResponseNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float32, torch.float64) or x.dim() != 4:
            return super().forward(x)
        n, c, h, w = x.shape
        # Zero squares beyond the channel edges, counted in the mean's divisor: torch's padding exactly.
        squares = F.pad(x.mul(x).reshape(n, 1, c, h * w), (0, 0, self.size // 2, (self.size - 1) // 2))
        mean = F.avg_pool2d(squares, (self.size, 1), stride=1).reshape(n, c, h, w)
        return x / mean.mul(self.alpha).add(self.k).pow(self.beta)


def _plain(make: Callable[[Layer, bool], nn.Module]) -> Callable[[Layer, bool], Lowered]:
    return lambda layer, first: (None, make(layer, first))


LOWERING: dict[str, Callable[[Layer, bool], Lowered]] = {
    "conv2d": conv2d,
    # In place saves a fresh activation per call (~7% of AlexNet's time on CPU); safe because
    # captured layer outputs are copied as they are produced. Never on the caller's input.
    "relu": _plain(lambda layer, first: nn.ReLU(inplace=not first)),
    # torch divides alpha by size, like the spec: the spec's alpha passes through unchanged
    "lrn": _plain(lambda layer, first: LocalResponseNorm(layer.attrs["size"], layer.attrs["alpha"],
                                                            layer.attrs["beta"], layer.attrs["k"])),
    "maxpool2d": maxpool2d,
    "avgpool2d": avgpool2d,
    "adaptive_avgpool2d": _plain(lambda layer, first: nn.AdaptiveAvgPool2d(layer.attrs["output"])),
    "batchnorm2d": _plain(lambda layer, first: nn.BatchNorm2d(layer.input_shape[0], eps=layer.attrs["eps"],
                                                              momentum=layer.attrs["momentum"])),
    "dropout": _plain(lambda layer, first: nn.Dropout(layer.attrs["rate"])),
    "flatten": _plain(lambda layer, first: nn.Flatten()),  # C, H, W order, as the spec
    "linear": _plain(lambda layer, first: nn.Linear(layer.input_shape[0], layer.attrs["units"],
                                                    bias=layer.attrs["bias"])),
    "softmax": _plain(lambda layer, first: nn.Softmax(dim=1)),
}


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
        lower = LOWERING.get(layer.op)
        if lower is None:
            raise NotImplementedError(f"torch backend: layer '{layer.name}' has op '{layer.op}', which it cannot "
                                      f"build; known ops: {', '.join(LOWERING)}")
        pad, module = lower(layer, index == 0)
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
