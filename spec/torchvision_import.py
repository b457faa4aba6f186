"""Import a torchvision-style AlexNet ``state_dict`` (``features.0.weight``, ...).

torchvision's AlexNet is the spec ``alexnet-owt``; its positional module names map to the
spec's layer names below. Files are read with ``torch.load(weights_only=True)`` only, so
nothing in them is ever unpickled into arbitrary objects. A state_dict already keyed by
the spec's names (``conv1.weight``) is taken as it is; the ``module.`` prefix that
``nn.DataParallel`` and DDP add to every key is removed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import SpecError, strip_ansi
from .model import ModelSpec

TORCHVISION_ALEXNET_NAMES = {
    "features.0": "conv1",
    "features.3": "conv2",
    "features.6": "conv3",
    "features.8": "conv4",
    "features.10": "conv5",
    "classifier.1": "fc6",
    "classifier.4": "fc7",
    "classifier.6": "fc8",
}


def canonical_name(key: str) -> str:
    module, _, param = key.rpartition(".")
    return f"{TORCHVISION_ALEXNET_NAMES.get(module, module)}.{param}"


def load_torchvision_state_dict(path: Path, spec: ModelSpec | None = None) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise SpecError(None, str(path), "reading a PyTorch state_dict needs torch", "a .pth file",
                        "pip install 'alexbench[torch]', or a .safetensors file") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad or unsafe pickle
        message = strip_ansi(str(exc)).strip()
        first = message.splitlines()[0] if message else type(exc).__name__
        raise SpecError(None, str(path), "not a loadable PyTorch state_dict (weights_only=True refuses "
                        "anything but tensors)", first[:200], "a dict of tensors saved with torch.save") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpecError(None, str(path), "not a state_dict of tensors", type(state).__name__,
                        "a mapping from names such as 'features.0.weight' to tensors")
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    out = {}
    for key, tensor in state.items():
        out[canonical_name(key)] = tensor.detach().cpu().numpy()
    return out
