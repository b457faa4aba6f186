"""A user's PyTorch ``nn.Module`` as the spec language sees it (``alexbench import``, ``compare --model``).

The structure is read with ``torch.fx.symbolic_trace``, which records the calls forward makes on
a proxy without computing anything: a model whose forward would crash (a ``view`` that does not
fit) still imports, and ``build_spec``'s validation then names the layer that does not fit.
The traced graph must be a chain (each node's output feeds only the next one). Modules are read
from their attributes and keep their module path as the readout (forward hooks reach them); the
functional and method forms (``F.relu``, ``x.view(x.size(0), -1)``) have no module to hook and
no readout. Anything the spec language cannot say is one ``ImportRefused`` line.

A ``.pt`` file is a whole pickled module: loading one runs code from the file, as importing a
Python module does (``torch.load(weights_only=False)``). Only load files you would run.
"""

from __future__ import annotations

import functools
import importlib.machinery
import pickle
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...spec.errors import first_line
from ...spec.imported import ImportedLayer, ImportedModel, ImportRefused

FRAMEWORK = "torch"
FILE_SUFFIXES = (".pt",)
RECORDS_INPUT_SHAPE = False  # an nn.Module takes any size: a spec to compare with supplies it
DEFAULT_INPUT_SHAPE = (3, 224, 224)

Args = dict[str, Any]


def accepts(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch model cannot exist unless its code imported torch
    return torch is not None and isinstance(obj, torch.nn.Module)


def load_file(path: Path) -> Any:
    """A whole module saved with ``torch.save(model, path)``. Unpickling runs the file's code."""
    import torch

    where = f"model file '{path}'"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch.load raises many kinds for a bad file or a missing class
        raise ImportRefused(where, "torch.load cannot read it", first_line(exc),
                            "a whole nn.Module saved with torch.save(model, path)") from None
    if not isinstance(obj, torch.nn.Module):
        raise ImportRefused(where, "not a whole nn.Module", type(obj).__name__,
                            "a file written by torch.save(model, path) (a state_dict has no structure: "
                            "give it to compare --weights)")
    return obj


def save_model(obj: Any, folder: Path) -> Path:
    """Write ``obj`` where ``load_file`` reads it back in another process. A module whose classes
    that process could not import (defined in a function or in ``__main__``) is saved as its fx
    GraphModule instead: the same submodules under the same paths, and forward as generated code."""
    import torch

    path = folder / "model.pt"
    if _importable_elsewhere(obj):
        try:
            torch.save(obj, path)
            return path
        except (pickle.PicklingError, AttributeError, TypeError):  # an attribute that does not pickle
            pass
    torch.save(_trace(obj), path)
    return path


def save_state(obj: Any, folder: Path) -> Path:
    """The module's tensors (parameters and buffers), so that a worker which builds the model again
    from its code (whose init may be random) runs it with the same numbers."""
    import torch

    path = folder / "state.pt"
    torch.save(obj.state_dict(), path)
    return path


def load_state(obj: Any, path: Path) -> None:
    import torch

    obj.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _importable_elsewhere(obj: Any) -> bool:
    for module in obj.modules():
        cls = type(module)
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            return False
        top = cls.__module__.partition(".")[0]
        # A module only registered in sys.modules (a SOURCE file.py loaded by model_source) is not
        # on any path another interpreter searches.
        if top not in sys.builtin_module_names and importlib.machinery.PathFinder.find_spec(top) is None:
            return False
    return True


def import_model(obj: Any, source: str, input_shape: tuple[int, int, int] | None) -> ImportedModel:
    import torch

    notes = []
    if input_shape is None:
        input_shape = DEFAULT_INPUT_SHAPE
        notes.append("input 3x224x224 assumed (a PyTorch model does not record its input size)")
    layers = _Chain(dict(obj.named_modules())).read(_trace(obj).graph)
    _drop_shared_readouts(layers)
    return ImportedModel(name=type(obj).__name__, input_shape=tuple(input_shape), layers=layers,
                         importer="torch.fx", source=source, versions={"torch": torch.__version__}, notes=notes)


def _trace(obj: Any):
    import torch.fx

    try:
        return torch.fx.symbolic_trace(obj)
    except Exception as exc:  # fx raises TraceError, TypeError, ... for code it cannot follow
        raise ImportRefused(f"model '{type(obj).__name__}'", "torch.fx cannot trace its forward", first_line(exc),
                            "a forward without control flow on tensor values") from None


def _drop_shared_readouts(layers: list[ImportedLayer]) -> None:
    """A module called twice fires its hook twice: neither call can be read by its module path."""
    paths = [layer.readout for layer in layers if layer.readout is not None]
    for layer in layers:
        if layer.readout is not None and paths.count(layer.readout) > 1:
            layer.readout = None


class _Chain:
    """Walks the traced graph in order, keeping the node whose output the next layer must take."""

    def __init__(self, modules: dict[str, Any]):
        self.modules = modules
        self.flat = False  # after a flatten: softmax(dim=-1) is then the feature axis

    def read(self, graph) -> list[ImportedLayer]:
        layers: list[ImportedLayer] = []
        current = None
        for node in graph.nodes:
            origin = self.origin(node)
            if node.op == "placeholder":
                if current is not None:
                    raise ImportRefused(origin, "forward takes more than one input", node.target, "forward(self, x)")
                current = node
                continue
            if node.op == "get_attr":
                raise ImportRefused(origin, "forward reads a parameter or buffer itself", node.target,
                                    "layers as modules (nn.Conv2d, not F.conv2d(x, self.weight))")
            if _is_batch_size(node):
                continue  # read with the view it sizes
            self.check_chain(node, current)
            if node.op == "output":
                if node.args[0] is not current:
                    raise ImportRefused("forward", "returns more than the last layer's output",
                                        type(node.args[0]).__name__, f"return {current.name}")
                break
            layer = self.layer(node, origin)
            if layer is not None:
                layers.append(layer)
            current = node
        return layers

    def check_chain(self, node, current) -> None:
        inputs = [n for n in node.all_input_nodes if not _is_batch_size(n)]
        if inputs != [current]:
            raise ImportRefused(self.origin(node), "does not take just the previous layer's output",
                                ", ".join(n.name for n in inputs) or "no input", f"'{current.name}' alone")
        users = [u for u in current.users if not _is_batch_size(u)]
        if len(users) > 1:
            raise ImportRefused(self.origin(current), f"its output feeds {len(users)} nodes: a branch",
                                ", ".join(u.name for u in users), "a chain, each layer feeding only the next")

    def origin(self, node) -> str:
        if node.op == "placeholder":
            return f"input '{node.target}'"
        if node.op == "call_module":
            return f"module '{node.target}' ({type(self.modules[node.target]).__name__})"
        if node.op == "call_function":
            return f"node '{node.name}' (function {getattr(node.target, '__name__', node.target)})"
        if node.op == "call_method":
            return f"node '{node.name}' (method {node.target})"
        return f"node '{node.name}' ({node.op})"

    def layer(self, node, origin: str) -> ImportedLayer | None:
        if node.op == "call_module":
            return self.module_layer(node.target, origin)
        if node.op == "call_method":
            if node.target in ("view", "reshape"):
                return self.view(node, origin)
            convert, known = _METHODS.get(node.target), "Tensor." + ", Tensor.".join([*_METHODS, "view", "reshape"])
        else:
            convert, known = _functions().get(node.target), _FUNCTION_NAMES
        if convert is None:
            kind = "method" if node.op == "call_method" else "function"
            raise ImportRefused(origin, f"a {kind} the spec language has no op for",
                                getattr(node.target, "__name__", node.target), f"one of {known}")
        names, build = convert
        return self.convert(build, _bind(names, node.args[1:], node.kwargs), origin)

    def module_layer(self, path: str, origin: str) -> ImportedLayer | None:
        import torch

        module = self.modules[path]
        kind = type(module).__name__
        if kind not in _MODULES or getattr(torch.nn, kind, None) is not type(module):
            raise ImportRefused(origin, "a module the spec language has no op for", f"nn.{kind}",
                                "one of nn." + ", nn.".join(sorted(_MODULES)))
        names, build = _MODULES[kind]
        layer = self.convert(build, {name: getattr(module, name) for name in names}, origin)
        if layer is not None:
            layer.readout = path
            if kind in _WEIGHTED:
                layer.weights, note = _WEIGHTED[kind](module)
                layer.note = "; ".join(n for n in (layer.note, note) if n)
        return layer

    def convert(self, build: Converter, a: Args, origin: str) -> ImportedLayer | None:
        layer = build({**a, "flat": self.flat}, origin)
        self.flat = self.flat or (layer is not None and layer.op == "flatten")
        return layer

    def view(self, node, origin: str) -> ImportedLayer:
        """``view``/``reshape`` to (batch, features): a flatten. ``view(-1, K)`` folds the batch when K
        is not C*H*W; the spec flattens per image and the next linear's in_features then decides."""
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        per_image = len(shape) == 2 and (
            (_is_batch_size(shape[0]) and (shape[1] == -1 or _is_positive_int(shape[1])))
            or (shape[0] == -1 and _is_positive_int(shape[1])))
        if node.kwargs or not per_image:
            shown = ", ".join("x.size(0)" if _is_batch_size(s) else repr(s) for s in shape)
            raise ImportRefused(origin, "unsupported shape", f"({shown})",
                                "(x.size(0), -1), (x.size(0), features) or (-1, features): a flatten")
        self.flat = True
        note = "" if shape[1] == -1 else f"{node.target} to {shape[1]} features per image"
        return ImportedLayer("flatten", {}, origin, note=note)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_batch_size(node: Any) -> bool:
    """``x.size(0)``, the batch size a ``view`` keeps."""
    return (getattr(node, "op", None) == "call_method" and node.target == "size"
            and tuple(node.args[1:]) + tuple(node.kwargs.values()) == (0,))


def _bind(names: tuple[tuple[str, Any], ...], args: tuple, kwargs: dict) -> Args:
    """A call's arguments by parameter name, defaults filled in (fx keeps them as written; torch has
    already refused a call whose arguments do not fit its signature while tracing)."""
    bound = {name: default for name, default in names}
    bound.update(zip((name for name, _ in names), args))
    bound.update(kwargs)
    return bound


def _require(origin: str, name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ImportRefused(origin, f"unsupported {name}", repr(value), expected)


def _pair(value: Any) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def _padding4(value: Any) -> list[int]:
    h, w = _pair(value)
    return [h, h, w, w]


# --- converters: named arguments (a module's attributes or a call's arguments) -> a spec layer ---

def _relu(a: Args, origin: str) -> ImportedLayer:
    return ImportedLayer("relu", {}, origin)


def _skip(a: Args, origin: str) -> None:
    return None


def _dropout(a: Args, origin: str) -> ImportedLayer:
    # training= is ignored: at inference the spec's dropout is the identity, and a model that
    # drops in eval mode (F.dropout's default training=True) then disagrees where compare looks.
    return ImportedLayer("dropout", {"rate": float(a["p"])}, origin)


def _flatten(a: Args, origin: str) -> ImportedLayer:
    _require(origin, "start_dim", a["start_dim"], a["start_dim"] == 1, "1 (keep the batch axis)")
    _require(origin, "end_dim", a["end_dim"], a["end_dim"] == -1, "-1 (flatten every feature axis)")
    return ImportedLayer("flatten", {}, origin)


def _softmax(a: Args, origin: str) -> ImportedLayer:
    # dim None is torch's implicit choice, 1 for 2-D and 4-D inputs; -1 is the features once flat.
    _require(origin, "dim", a["dim"], a["dim"] in (None, 1) or (a["dim"] == -1 and a["flat"]),
             "1 (the channel / feature axis), or -1 after a flatten")
    _require(origin, "dtype", a.get("dtype"), a.get("dtype") is None, "None (float32)")
    return ImportedLayer("softmax", {}, origin)


def _maxpool(a: Args, origin: str) -> ImportedLayer:
    _require(origin, "dilation", a["dilation"], _pair(a["dilation"]) == [1, 1], "1")
    _require(origin, "return_indices", a["return_indices"], not a["return_indices"], "False")
    kernel = _pair(a["kernel_size"])
    return ImportedLayer("maxpool2d", {"kernel": kernel, "stride": _pair(a["stride"] or kernel),
                                       "padding": _padding4(a["padding"]), "ceil_mode": bool(a["ceil_mode"])}, origin)


def _avgpool(a: Args, origin: str) -> ImportedLayer:
    padding = _padding4(a["padding"])
    _require(origin, "ceil_mode", a["ceil_mode"], not a["ceil_mode"], "False (the spec's average pool rounds down)")
    _require(origin, "divisor_override", a["divisor_override"], a["divisor_override"] is None, "None")
    _require(origin, "count_include_pad", a["count_include_pad"], a["count_include_pad"] or not any(padding),
             "True, or no padding (the spec counts zero padding in the divisor)")
    kernel = _pair(a["kernel_size"])
    return ImportedLayer("avgpool2d", {"kernel": kernel, "stride": _pair(a["stride"] or kernel),
                                       "padding": padding}, origin)


def _adaptive_avgpool(a: Args, origin: str) -> ImportedLayer:
    size = a["output_size"]
    pair = [size, size] if not isinstance(size, (tuple, list)) else list(size)
    _require(origin, "output_size", size, all(isinstance(s, int) for s in pair),
             "integers (None, keeping the input's size, is not a spec value)")
    return ImportedLayer("adaptive_avgpool2d", {"output": pair}, origin)


def _conv(a: Args, origin: str) -> ImportedLayer:
    _require(origin, "padding_mode", a["padding_mode"], a["padding_mode"] == "zeros",
             "'zeros' (the spec language pads with zeros)")
    _require(origin, "dilation", a["dilation"], _pair(a["dilation"]) == [1, 1], "1")
    kh, kw = a["kernel_size"]
    note = ""
    if a["padding"] == "valid":
        padding = [0, 0, 0, 0]
    elif a["padding"] == "same":  # stride 1 (torch's rule); an odd total puts the extra row/column after
        padding = [(kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2]
        note = "padding 'same' written out"
    else:
        padding = _padding4(a["padding"])
    attrs = {"filters": a["out_channels"], "kernel": [kh, kw], "stride": _pair(a["stride"]), "padding": padding,
             "groups": a["groups"], "bias": a["bias"] is not None}
    return ImportedLayer("conv2d", attrs, origin, note=note)


def _lrn(a: Args, origin: str) -> ImportedLayer:
    # torch divides alpha by size, as the spec does: the value carries over unchanged.
    return ImportedLayer("lrn", {"size": a["size"], "alpha": float(a["alpha"]), "beta": float(a["beta"]),
                                 "k": float(a["k"])}, origin)


def _batchnorm(a: Args, origin: str) -> ImportedLayer:
    _require(origin, "momentum", a["momentum"], a["momentum"] is not None,
             "a number (None, a cumulative average, has no spec value)")
    _require(origin, "track_running_stats", a["track_running_stats"], a["track_running_stats"],
             "True (the spec normalises with running statistics)")
    return ImportedLayer("batchnorm2d", {"eps": float(a["eps"]), "momentum": float(a["momentum"])}, origin)


def _linear(a: Args, origin: str) -> ImportedLayer:
    # in_features from the module: validation then refuses a model whose features do not fit.
    return ImportedLayer("linear", {"units": a["out_features"], "in_features": a["in_features"],
                                    "bias": a["bias"] is not None}, origin)


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def _conv_or_linear_weights(module: Any) -> tuple[dict[str, np.ndarray], str]:
    weights = {"weight": _array(module.weight)}
    if module.bias is not None:
        weights["bias"] = _array(module.bias)
    return weights, ""


def _batchnorm_weights(module: Any) -> tuple[dict[str, np.ndarray], str]:
    stats = {"running_mean": _array(module.running_mean), "running_var": _array(module.running_var)}
    if module.affine:
        return {"weight": _array(module.weight), "bias": _array(module.bias), **stats}, ""
    ones = np.ones_like(stats["running_mean"])
    return {"weight": ones, "bias": np.zeros_like(ones), **stats}, "affine=False: weight 1 and bias 0 written out"


Signature = tuple[tuple[str, Any], ...]  # (parameter, default) after the input, in order
Converter = Callable[[Args, str], ImportedLayer | None]

_POOL: Signature = (("kernel_size", None), ("stride", None), ("padding", 0))
_MAXPOOL = _POOL + (("dilation", 1), ("ceil_mode", False), ("return_indices", False))
_AVGPOOL = _POOL + (("ceil_mode", False), ("count_include_pad", True), ("divisor_override", None))
_FLATTEN: Signature = (("start_dim", 0), ("end_dim", -1))
_SOFTMAX: Signature = (("dim", None), ("dtype", None))
_ADAPTIVE: Signature = (("output_size", None),)


def _names(signature: Signature) -> tuple[str, ...]:
    return tuple(name for name, _ in signature)


# nn class name -> (the module attributes read, converter); the class must be torch.nn's own.
# The pooling, flatten and softmax modules keep their arguments under the functions' names.
_MODULES: dict[str, tuple[tuple[str, ...], Converter]] = {
    "Conv2d": (("out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode"),
               _conv),
    "ReLU": ((), _relu),
    "LocalResponseNorm": (("size", "alpha", "beta", "k"), _lrn),
    "MaxPool2d": (_names(_MAXPOOL), _maxpool),
    "AvgPool2d": (_names(_AVGPOOL), _avgpool),
    "AdaptiveAvgPool2d": (_names(_ADAPTIVE), _adaptive_avgpool),
    "BatchNorm2d": (("eps", "momentum", "track_running_stats"), _batchnorm),
    "Dropout": (("p",), _dropout),
    "Flatten": (_names(_FLATTEN), _flatten),
    "Linear": (("in_features", "out_features", "bias"), _linear),
    "Softmax": (("dim",), _softmax),
    "Identity": ((), _skip),
}
_WEIGHTED = {"Conv2d": _conv_or_linear_weights, "Linear": _conv_or_linear_weights, "BatchNorm2d": _batchnorm_weights}

# Tensor method -> (arguments after self, converter); view and reshape are _Chain.view.
_METHODS: dict[str, tuple[Signature, Converter]] = {
    "relu": ((), _relu),
    "relu_": ((), _relu),
    "flatten": (_FLATTEN, _flatten),
    "softmax": (_SOFTMAX, _softmax),
    "contiguous": ((("memory_format", None),), _skip),
}
_FUNCTION_NAMES = ("F.relu, torch.relu, torch.relu_, torch.flatten(x, 1), F.dropout, F.softmax, "
                   "F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d")


@functools.cache
def _functions() -> dict[Any, tuple[Signature, Converter]]:
    import torch
    import torch.nn.functional as F

    return {
        F.relu: ((("inplace", False),), _relu),
        torch.relu: ((), _relu),
        torch.relu_: ((), _relu),
        torch.flatten: (_FLATTEN, _flatten),
        F.dropout: ((("p", 0.5), ("training", True), ("inplace", False)), _dropout),
        F.softmax: ((("dim", None), ("_stacklevel", 3), ("dtype", None)), _softmax),
        torch.softmax: (_SOFTMAX, _softmax),
        F.max_pool2d: (_MAXPOOL, _maxpool),
        F.avg_pool2d: (_AVGPOOL, _avgpool),
        F.adaptive_avg_pool2d: (_ADAPTIVE, _adaptive_avgpool),
    }
