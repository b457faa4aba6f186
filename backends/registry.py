"""Backends by name. Built-ins are listed here; third-party packages add theirs through the
``alexbench.backends`` entry-point group (``name = "package.module:BackendClass"``).

Nothing here imports a framework: backend modules import theirs inside their methods, so the
harness can load a class to read what it declares (its ONNX pairing, its unsupported ops), and
only a worker builds one.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "alexbench.backends"

BUILTIN: dict[str, str] = {
    "reference": "alexbench.backends.reference.backend:ReferenceBackend",
    "torch": "alexbench.backends.torch.backend:TorchBackend",
    "keras": "alexbench.backends.keras.backend:KerasBackend",
    "keras-torch": "alexbench.backends.keras.backend:KerasOnTorchBackend",
    "keras-jax": "alexbench.backends.keras.backend:KerasOnJaxBackend",
    "onnx-torch": "alexbench.backends.onnxrt.backend:OnnxFromTorchBackend",
    "onnx-keras": "alexbench.backends.onnxrt.backend:OnnxFromKerasBackend",
    "openvino-torch": "alexbench.backends.openvino.backend:OpenVinoFromTorchBackend",
    "openvino-keras": "alexbench.backends.openvino.backend:OpenVinoFromKerasBackend",
    "litert": "alexbench.backends.litert.backend:LiteRtBackend",
    "null": "alexbench.backends.null:NullBackend",
}


# What runs when a user names no backend: the two frameworks alexbench compiles into (compare
# adds the ONNX runs of their exports itself); bench times those runs explicitly.
DEFAULT_COMPARE = ("torch", "keras")
DEFAULT_BENCH = ("torch", "keras", "onnx-torch", "onnx-keras", "openvino-torch", "litert")


class UnknownBackend(ValueError):
    pass


def available_backends() -> dict[str, str]:
    """Every backend name with its ``module:Class`` target, built-ins first."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def backend_target(name: str) -> str:
    known = available_backends()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownBackend(f"unknown backend '{name}'{hint}; known backends: {', '.join(known)}")
    return known[name]


def load_backend_class(name: str):
    """Import and return the backend class (inside a worker: this imports its framework)."""
    return load_target(backend_target(name))


def load_target(target: str):
    """The class a ``module:Class`` target names."""
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def onnx_runners() -> dict[str, str]:
    """Native backend -> the backend compare adds to run its ONNX export, from the runners'
    ``onnx_source`` (runners that are only run when named, ``paired_by_default = False``, pair nothing).
    A plugin whose module cannot be imported here pairs nothing (its worker reports why)."""
    pairs = {}
    for name in available_backends():
        try:
            cls = load_backend_class(name)
        except Exception:
            continue
        if cls.onnx_source and cls.paired_by_default:
            pairs.setdefault(cls.onnx_source, name)
    return pairs


def onnx_source(name: str) -> str | None:
    """The native backend whose export ``name`` runs, or None when ``name`` runs no export."""
    return load_backend_class(name).onnx_source


# Top-level framework module -> the pip extra that installs it (pyproject's optional dependencies).
FRAMEWORK_EXTRAS: dict[str, str] = {
    "torch": "torch", "tensorflow": "keras", "keras": "keras",
    "onnx": "onnx", "onnxscript": "onnx", "tf2onnx": "onnx", "onnxruntime": "onnx", "jax": "jax",
    "openvino": "openvino", "ai_edge_litert": "litert",
}


def install_hint(backend: str, module: str) -> str:
    """The one line a missing framework gets (same form as ``Backend.check_available``)."""
    top = module.partition(".")[0]
    extra = FRAMEWORK_EXTRAS.get(top)
    how = f"pip install 'alexbench[{extra}]'" if extra else f"pip install {top}"
    return f"backend '{backend}' needs {top}: {how}"


def missing_module(exc: ImportError) -> str | None:
    """The top-level module an import error says is not installed; None when it is installed
    (a broken install is an error, not an absent framework) or is alexbench itself."""
    name = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not name:
        return None
    top = name.partition(".")[0]
    if top == "alexbench" or importlib.util.find_spec(top) is not None:
        return None
    return top
