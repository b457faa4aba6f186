"""Keras 3 models as spec layers, for `alexbench import` and `compare --model` (the importer contract:
``FRAMEWORK``, ``FILE_SUFFIXES``, ``accepts``, ``load_file``, ``save_model``, ``import_model``).

What is read: a Sequential or a functional model that is one chain of built-in layers, walked from
its output back to its input through the graph Keras records (``KerasTensor._keras_history``), so
that a layer with two inputs is seen wherever it sits. Each layer becomes spec layers:

- an ``activation=`` inside Conv2D / Dense is its own spec layer after it; the Conv2D's own output
  is then hidden (readout None) and the activation's readout is the Conv2D's name;
- ``padding='same'`` becomes the explicit padding TensorFlow applies for the layer's input size
  (the odd pixel at the bottom/right), ZeroPadding2D is folded into the next window layer;
- a Flatten of a channels-last map flattens H, W, C: its layout is "nhwc", and the first Dense
  after it gets its kernel rows permuted so that its canonical weight reads C, H, W features;
- regularizers and constraints are kept as the layer's training settings, never dropped.

Anything else (a Lambda, a custom or unknown layer, a branch, a dilated convolution) is an
``ImportRefused`` naming the Keras layer and its class. Keras is imported inside functions only.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...spec.errors import first_line
from ...spec.fields import same_padding
from ...spec.imported import ImportedLayer, ImportedModel, ImportRefused
from .layouts import conv_weight_from_keras, linear_weight_from_keras

FRAMEWORK = "keras"
FILE_SUFFIXES = (".keras",)
CHANNELS_LAST, CHANNELS_FIRST = "channels_last", "channels_first"
FUSED_ACTIVATIONS = ("relu", "softmax", "linear")
SUPPORTED = ("InputLayer, Conv2D, Dense, Activation, ReLU, Softmax, MaxPooling2D, AveragePooling2D, "
             "GlobalAveragePooling2D, ZeroPadding2D, BatchNormalization, Dropout, Flatten")
LINEAR_CHAIN = "a linear chain of layers, one input each (a Sequential, or a functional model without branches)"


def accepts(obj: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def load_file(path: Path):
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # a damaged file, or one that needs unsafe deserialization (a Lambda)
        raise ImportRefused(f"file '{path}'", "Keras cannot load the model", first_line(exc),
                            "a .keras file saved by Keras 3 that loads with safe_mode=True (no Lambda layers)"
                            ) from None


def save_model(obj: Any, folder: Path) -> Path:
    path = Path(folder) / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', obj.name) or 'model'}.keras"
    obj.save(path)
    return path


def save_state(obj: Any, folder: Path) -> Path:
    """The model's weights, so that a worker which builds the model again from its code (whose init
    is random) runs it with the same numbers."""
    path = Path(folder) / "state.weights.h5"
    obj.save_weights(path)
    return path


def load_state(obj: Any, path: Path) -> None:
    obj.load_weights(path)


def layer_origin(layer: Any) -> str:
    return f"Keras layer '{layer.name}' ({type(layer).__name__})"


def data_format(model: Any) -> str:
    """The model's one image data format (from its spatial layers; channels-last when none says)."""
    formats = {}
    for layer in model.layers:
        fmt = getattr(layer, "data_format", None) if type(layer).__name__ != "Flatten" else None
        if fmt in (CHANNELS_LAST, CHANNELS_FIRST):
            formats.setdefault(fmt, layer)
    if len(formats) > 1:
        first, second = formats.values()
        raise ImportRefused(layer_origin(second), "a data_format other than the model's",
                            f"{second.data_format} after {first.data_format} in {layer_origin(first)}",
                            "one data_format for every layer")
    return next(iter(formats), CHANNELS_LAST)


def layer_chain(model: Any) -> list[tuple[Any, Any]]:
    """(layer, its output KerasTensor) from the input to the output, InputLayer excluded."""
    import keras

    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise ImportRefused(f"Keras model '{model.name}'", "no recorded graph to read",
                            f"a {type(model).__name__} without inputs and outputs",
                            "a Sequential starting with keras.Input, or a functional keras.Model "
                            "(a subclassed model's call() is Python code)")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ImportRefused(f"Keras model '{model.name}'", "a model with several inputs or outputs",
                            f"{len(inputs)} inputs, {len(outputs)} outputs", LINEAR_CHAIN)
    chain = []
    tensor = outputs[0]
    while True:
        layer, node_index, _ = tensor._keras_history
        if isinstance(layer, keras.layers.InputLayer):
            break
        node = layer._inbound_nodes[node_index]
        if len(node.input_tensors) != 1:
            sources = ", ".join(f"'{t._keras_history[0].name}'" for t in node.input_tensors)
            raise ImportRefused(layer_origin(layer), f"a branch: the layer takes {len(node.input_tensors)} inputs",
                                f"inputs from {sources}", LINEAR_CHAIN)
        chain.append((layer, tensor))
        tensor = node.input_tensors[0]
    chain.reverse()
    seen = set()
    for layer, _ in chain:
        if id(layer) in seen:
            raise ImportRefused(layer_origin(layer), "a layer applied more than once (shared weights)",
                                f"{sum(1 for other, _ in chain if other is layer)} applications", LINEAR_CHAIN)
        seen.add(id(layer))
    return chain


def import_model(obj: Any, source: str, input_shape: tuple[int, int, int] | None) -> ImportedModel:
    import keras

    model = obj
    fmt = data_format(model)
    # A Sequential without keras.Input has no graph until built: build it (in place) at the asked size.
    if not getattr(model, "inputs", None) and isinstance(model, keras.Sequential) and input_shape is not None:
        c, h, w = input_shape
        model.build((None, h, w, c) if fmt == CHANNELS_LAST else (None, c, h, w))
    chain = layer_chain(model)
    walk = _Walk(fmt == CHANNELS_LAST, _input_shape(model, fmt, input_shape))
    chw = walk.chw(walk.shape)
    handlers = _handlers(keras)
    for layer, _ in chain:
        handler = handlers.get(type(layer))
        origin = layer_origin(layer)
        if handler is None:
            raise _unknown_layer(layer, origin)
        if walk.pad is not None and handler not in (_conv, _maxpool, _avgpool, _zero_padding):
            walk.refuse_pad(f"before {origin}")
        first_new = len(walk.layers)
        handler(walk, layer, layer.get_config(), origin)
        training = _training_settings(layer.get_config())
        if training and len(walk.layers) > first_new:
            walk.layers[first_new].training = training
        elif training:
            raise ImportRefused(origin, "training settings on a layer that becomes no spec layer", training,
                                "regularizers and constraints on Conv2D, Dense or BatchNormalization")
        walk.shape = tuple(layer.compute_output_shape(walk.shape))
    if walk.pad is not None:
        walk.refuse_pad("at the end of the model")
    return ImportedModel(name=model.name, input_shape=chw, layers=walk.layers, importer=FRAMEWORK, source=source,
                         versions=versions(), notes=walk.notes)


def versions() -> dict[str, str]:
    import keras

    engine = keras.backend.backend()
    return {"keras": keras.__version__, engine: importlib.import_module(engine).__version__}


def _input_shape(model: Any, fmt: str, asked: tuple[int, int, int] | None) -> tuple:
    """The Keras input shape (batch axis None) the walk starts from: the model's, or ``asked`` where
    the model leaves a size open."""
    shape = tuple(model.inputs[0].shape)
    where = f"Keras model '{model.name}'"
    if len(shape) != 4:
        raise ImportRefused(where, "an input that is not a batch of images", f"input shape {list(shape[1:])}",
                            "(height, width, channels), or (channels, height, width) for channels_first")
    own = (shape[3], shape[1], shape[2]) if fmt == CHANNELS_LAST else shape[1:]
    if asked is None:
        if None in own:
            raise ImportRefused(where, "an input whose size is open", f"input shape {list(shape[1:])}",
                                "an input shape given for the import (C,H,W)")
        return shape
    if any(mine is not None and mine != want for mine, want in zip(own, asked)):
        raise ImportRefused(where, "the input shape asked for disagrees with the model's input",
                            f"{list(asked)} (C,H,W)", f"{list(own)} (the model's input {list(shape[1:])}, {fmt})")
    c, h, w = asked
    return (None, h, w, c) if fmt == CHANNELS_LAST else (None, c, h, w)


@dataclass
class _Walk:
    """What the walk carries from one Keras layer to the next."""

    channels_last: bool
    shape: tuple  # the Keras shape (batch axis None) reaching the next layer
    layers: list[ImportedLayer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pad: list[int] | None = None  # ZeroPadding2D waiting for the next window layer
    pad_origin: str = ""
    flatten_hwc: tuple[int, int, int] | None = None  # the (H, W, C) map a Flatten read H,W,C-first, until a Dense

    def chw(self, shape: tuple) -> tuple[int, int, int]:
        return (shape[3], shape[1], shape[2]) if self.channels_last else tuple(shape[1:4])

    def layout(self, shape: tuple) -> str:
        """Of an output of this Keras shape: a map is NHWC in a channels-last model; features are in
        H,W,C order from a channels-last Flatten until the Dense that reads them."""
        if len(shape) == 4:
            return "nhwc" if self.channels_last else "nchw"
        return "nhwc" if self.flatten_hwc is not None else "nchw"

    def add(self, op: str, attrs: dict, layer: Any, origin: str, weights: dict | None = None,
            note: str = "", shape: tuple | None = None) -> ImportedLayer:
        out_shape = tuple(layer.compute_output_shape(self.shape)) if shape is None else shape
        imported = ImportedLayer(op, attrs, origin, weights or {}, layer.name, self.layout(out_shape), note)
        self.layers.append(imported)
        return imported

    def take_pad(self) -> tuple[list[int], str]:
        pad, origin = self.pad or [0, 0, 0, 0], self.pad_origin
        self.pad, self.pad_origin = None, ""
        return pad, (f"ZeroPadding2D {origin} folded in" if origin else "")

    def refuse_pad(self, where: str) -> None:
        raise ImportRefused(self.pad_origin, "zero padding that no Conv2D or pooling layer takes", where,
                            "ZeroPadding2D right before a Conv2D, AveragePooling2D or MaxPooling2D")

    def window_padding(self, mode: str, kernel: list[int], stride: list[int]) -> tuple[list[int], list[str]]:
        """Explicit [top, bottom, left, right]: a ZeroPadding2D before it plus what ``mode`` pads."""
        pad, pad_note = self.take_pad()
        notes = [pad_note] if pad_note else []
        if mode == "valid":  # else 'same': the only other mode a Keras 2-D window layer builds with
            return pad, notes
        _, h, w = self.chw(self.shape)
        size = (h + pad[0] + pad[1], w + pad[2] + pad[3])
        same = same_padding(size, tuple(kernel), tuple(stride))
        notes.append(f"padding 'same' at {size[0]}x{size[1]} is {list(same)}")
        return [a + b for a, b in zip(pad, same)], notes

    def fused_activation(self, main: ImportedLayer, config: dict, layer: Any, origin: str) -> None:
        """``activation=`` inside the layer: its own spec layer, which takes over the readout."""
        activation = config.get("activation", "linear")
        if activation == "linear":
            return
        if activation not in FUSED_ACTIVATIONS:
            raise ImportRefused(origin, "an activation the spec has no op for", f"activation={activation!r}",
                                "activation 'relu', 'softmax' or 'linear'")
        out_shape = tuple(layer.compute_output_shape(self.shape))
        if activation == "softmax" and len(out_shape) == 4 and not self.channels_last:
            raise ImportRefused(origin, "a softmax over the width axis (Keras' activation softmax acts on the "
                                "last axis, the width of a channels_first map)", "activation='softmax'",
                                "a softmax over channels: Softmax(axis=1)")
        self.layers.append(ImportedLayer(activation, {}, f"activation='{activation}' of {origin}", {}, main.readout,
                                         main.layout))
        main.readout = None


def _unknown_layer(layer: Any, origin: str) -> ImportRefused:
    if isinstance(layer, sys.modules["keras"].layers.Lambda):
        function = getattr(layer.function, "__qualname__", type(layer.function).__name__)
        return ImportRefused(origin, "a Lambda layer: its Python function cannot be read as spec ops",
                             f"function {function}", f"built-in layers: {SUPPORTED}")
    return ImportRefused(origin, "a layer the spec language has no op for",
                         f"class {type(layer).__module__}.{type(layer).__qualname__}", f"built-in layers: {SUPPORTED}")


def _array(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy(), dtype=np.float32)


def _pair(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value), int(value)]


def _conv(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    if _pair(config["dilation_rate"]) != [1, 1]:
        raise ImportRefused(origin, "a dilated convolution", f"dilation_rate {_pair(config['dilation_rate'])}",
                            "dilation_rate 1")
    kernel, stride = _pair(config["kernel_size"]), _pair(config["strides"])
    padding, notes = walk.window_padding(config["padding"], kernel, stride)
    weights = {"weight": conv_weight_from_keras(_array(layer.kernel))}
    if config["use_bias"]:
        weights["bias"] = _array(layer.bias)
    attrs = {"filters": int(config["filters"]), "kernel": kernel, "stride": stride, "padding": padding,
             "groups": int(config["groups"]), "bias": bool(config["use_bias"])}
    main = walk.add("conv2d", attrs, layer, origin, weights, "; ".join(notes))
    walk.fused_activation(main, config, layer, origin)


def _pool_geometry(walk: _Walk, config: dict) -> tuple[dict, list[str]]:
    kernel = _pair(config["pool_size"])
    stride = _pair(config["strides"]) if config.get("strides") is not None else kernel
    padding, notes = walk.window_padding(config["padding"], kernel, stride)
    return {"kernel": kernel, "stride": stride, "padding": padding}, notes


def _maxpool(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    # Zero padding is not the -inf that max pooling pads with, unless nothing it pools is negative.
    if walk.pad is not None and not (walk.layers and walk.layers[-1].op in ("relu", "softmax")):
        walk.refuse_pad(f"before {origin}, whose input may be negative (zeros would win the max; "
                        "the spec's max pooling pads with -inf)")
    attrs, notes = _pool_geometry(walk, config)
    walk.add("maxpool2d", {**attrs, "ceil_mode": False}, layer, origin, note="; ".join(notes))


def _avgpool(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    zero_padded = list(walk.pad or [0, 0, 0, 0])
    attrs, notes = _pool_geometry(walk, config)
    if attrs["padding"] != zero_padded:
        # Keras averages only the real cells under a 'same' window; the spec's avgpool2d counts pad cells.
        raise ImportRefused(origin, "'same' average pooling that pads (Keras leaves the padded cells out of the "
                            "average; the spec's avgpool2d counts them)", f"padding 'same' -> {attrs['padding']}",
                            "padding 'valid', or a ZeroPadding2D before it (its zeros count, as in the spec)")
    walk.add("avgpool2d", attrs, layer, origin, note="; ".join(notes))


def _zero_padding(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    (top, bottom), (left, right) = config["padding"]
    walk.pad = [a + b for a, b in zip(walk.pad or [0, 0, 0, 0], (top, bottom, left, right))]
    walk.pad_origin = f"{walk.pad_origin} + {origin}" if walk.pad_origin else origin


def _global_avgpool(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    if config.get("keepdims"):
        walk.add("adaptive_avgpool2d", {"output": [1, 1]}, layer, origin)
        return
    # Keras gives (N, C) at once: the spec's pooled C x 1 x 1 map is not exposed, its flatten is.
    walk.add("adaptive_avgpool2d", {"output": [1, 1]}, layer, origin).readout = None
    walk.add("flatten", {}, layer, f"{origin} (its flatten)")


def _batchnorm(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    rank = len(walk.shape)
    axis = config["axis"]
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    channel_axis = 3 if walk.channels_last else 1
    if rank != 4 or not isinstance(axis, int) or axis % rank != channel_axis:
        raise ImportRefused(origin, "a batch normalization not over the channels of a feature map",
                            f"axis {axis} of a rank-{rank} input", f"axis {channel_axis} (or -1 for channels_last) "
                            "of a feature map")
    channels = walk.chw(walk.shape)[0]
    notes = []
    weights = {}
    for param, on, variable, fill in (("weight", "scale", "gamma", 1.0), ("bias", "center", "beta", 0.0)):
        if config[on]:
            weights[param] = _array(getattr(layer, variable))
        else:
            weights[param] = np.full((channels,), fill, np.float32)
            notes.append(f"{on}=False: {param} fixed at {fill:g}")
    weights["running_mean"] = _array(layer.moving_mean)
    weights["running_var"] = _array(layer.moving_variance)
    # Keras' momentum m keeps m of the old statistic, torch's the new one; 1 - 0.99 in binary is
    # 0.010000000000000009: the decimal the user wrote is meant.
    attrs = {"eps": float(config["epsilon"]), "momentum": float(f"{1.0 - float(config['momentum']):.12g}")}
    walk.add("batchnorm2d", attrs, layer, origin, weights, "; ".join(notes))


def _dropout(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    walk.add("dropout", {"rate": float(config["rate"])}, layer, origin)


def _flatten(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    if len(walk.shape) != 4:
        raise ImportRefused(origin, "a Flatten of what is not a feature map", f"input shape {list(walk.shape[1:])}",
                            "a Flatten of a 4-D feature map")
    # Keras' Flatten(data_format='channels_first') moves channels last before flattening.
    hwc_order = config.get("data_format", CHANNELS_LAST) == CHANNELS_FIRST
    if walk.channels_last:
        if hwc_order:
            raise ImportRefused(origin, "a channels_first Flatten in a channels_last model", "data_format "
                                "'channels_first'", "data_format 'channels_last', the model's")
        hwc_order = True
    if hwc_order:
        c, h, w = walk.chw(walk.shape)
        walk.flatten_hwc = (h, w, c)
    walk.add("flatten", {}, layer, origin)


def _dense(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    if len(walk.shape) != 2:
        raise ImportRefused(origin, "a Dense layer on a feature map (it acts on the last axis only)",
                            f"input shape {list(walk.shape[1:])}", "a Flatten (or GlobalAveragePooling2D) before it")
    weight = linear_weight_from_keras(_array(layer.kernel))
    note = ""
    if walk.flatten_hwc is not None:
        h, w, c = walk.flatten_hwc
        weight = np.ascontiguousarray(weight.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(weight), -1))
        note = "kernel rows permuted from the Flatten's H,W,C order to C,H,W"
        walk.flatten_hwc = None
    weights = {"weight": weight}
    if config["use_bias"]:
        weights["bias"] = _array(layer.bias)
    attrs = {"units": int(config["units"]), "in_features": int(walk.shape[1]), "bias": bool(config["use_bias"])}
    main = walk.add("linear", attrs, layer, origin, weights, note)
    walk.fused_activation(main, config, layer, origin)


def _activation(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    activation = config["activation"]
    if activation == "linear":
        walk.notes.append(f"{origin}: activation 'linear' is the identity, no spec layer")
        return
    if activation == "softmax":
        _softmax(walk, layer, {"axis": -1}, origin)
        return
    if activation != "relu":
        raise ImportRefused(origin, "an activation the spec has no op for", f"activation={activation!r}",
                            "'relu', 'softmax' or 'linear'")
    walk.add("relu", {}, layer, origin)


def _relu(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    changed = {k: config[k] for k, plain in (("max_value", None), ("negative_slope", 0.0), ("threshold", 0.0))
               if config.get(k) not in (plain, 0)}
    if changed:
        raise ImportRefused(origin, "a ReLU with arguments the spec's relu does not have",
                            ", ".join(f"{k}={v!r}" for k, v in changed.items()),
                            "ReLU() with default arguments (max_value None, negative_slope 0, threshold 0)")
    walk.add("relu", {}, layer, origin)


def _softmax(walk: _Walk, layer: Any, config: dict, origin: str) -> None:
    rank = len(walk.shape)
    channel_axis = 1 if rank == 2 else (3 if walk.channels_last else 1)
    axis = config["axis"]
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if not isinstance(axis, int) or axis % rank != channel_axis:
        raise ImportRefused(origin, "a softmax over another axis than the channels or features",
                            f"axis {axis} of a rank-{rank} input", f"axis {channel_axis}")
    walk.add("softmax", {}, layer, origin)


def _handlers(keras: Any) -> dict[type, Callable[[_Walk, Any, dict, str], None]]:
    """Exact classes: a subclass of a built-in layer may compute anything (it is refused as custom)."""
    layers = keras.layers
    return {layers.Conv2D: _conv, layers.MaxPooling2D: _maxpool, layers.AveragePooling2D: _avgpool,
            layers.ZeroPadding2D: _zero_padding, layers.GlobalAveragePooling2D: _global_avgpool,
            layers.BatchNormalization: _batchnorm, layers.Dropout: _dropout, layers.Flatten: _flatten,
            layers.Dense: _dense, layers.Activation: _activation, layers.ReLU: _relu, layers.Softmax: _softmax}


def _training_settings(config: dict) -> dict[str, Any]:
    """Regularizers and constraints as plain values: {"kernel_regularizer": {"l2": 0.0005}}."""
    return {key: _setting(value) for key, value in config.items()
            if key.endswith(("_regularizer", "_constraint")) and value is not None}


def _setting(value: Any) -> Any:
    if isinstance(value, dict) and "class_name" in value:
        inner = _plain(value.get("config") or {})
        if value["class_name"] not in ("L1", "L2", "L1L2"):
            return {value["class_name"]: inner}  # kept by name: the spec records it, training does not model it
        # {"l2": 0.0005}, the form the spec's training.layers validates. A zero factor is no penalty
        # (L1L2(l2=0.0005) also records l1 0.0, which would read as an unmodelled l1).
        return {k: v for k, v in inner.items() if v} or {"l2": 0.0}
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and float(np.float32(value)) == value:
        # Keras keeps some factors as float32 (l1(0.01) reads back 0.009999999776482582): the
        # shortest decimal that is the same float32 is what the user wrote.
        return float(str(np.float32(value)))
    return value if isinstance(value, (bool, int, float, str)) else str(value)
