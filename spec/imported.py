"""A model read from another framework, as the spec language sees it, and its turning into a spec.

Every importer (``backends/<framework>/importer.py``) produces an ``ImportedModel``: the layers
in order, each as a spec op with explicit fields, its weights already in canonical layout, where
it came from (``origin``, for messages) and how the source model exposes its output
(``readout``, for ``compare --model``). Everything after that is framework-free and lives here:
naming the layers the way the shipped specs do, writing the YAML, validating it (a model that
cannot run ends in the usual located message, naming the source module too), and checking
every imported tensor against the shape the spec derives for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SpecError, SpecErrors, layer_where
from .files import atomic_write
from .loader import parse_spec
from .model import ModelSpec
from .weights import save_weights

# A layer's output as the source model holds it: canonical NCHW / (N, C*H*W) in C, H, W order,
# or channels-last (NHWC, and a flatten of an NHWC map, in H, W, C order).
LAYOUTS = ("nchw", "nhwc")


class ImportRefused(SpecError):
    """The source holds something the spec language cannot express (a branch, an unknown layer,
    a custom Lambda): one located line naming the module, layer or node. Exit code 2."""

    def __init__(self, origin: str, what: str, received: object = None, expected: object = None):
        super().__init__(None, origin, what, received, expected)


@dataclass
class ImportedLayer:
    op: str  # a spec op (spec/ops.py)
    attrs: dict[str, Any]  # that op's fields, explicit (padding as [top, bottom, left, right])
    origin: str  # for messages: "module 'features.0' (Conv2d)", "Keras layer 'conv2d_1'", "node 'Conv_0'"
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # param -> canonical float32 array
    # How the source exposes this layer's output: a torch module path or fx node name, a Keras
    # layer name, an ONNX tensor name; None when it does not (a Keras activation fused into Conv2D
    # hides the convolution's own output).
    readout: str | None = None
    layout: str = "nchw"  # of the readout (LAYOUTS)
    note: str = ""
    # Training-only settings of this layer (Keras' kernel_regularizer: {"kernel_regularizer": {"l2": 0.0005}}):
    # kept in the spec's training metadata under the layer's name.
    training: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportedModel:
    name: str
    input_shape: tuple[int, int, int]  # C, H, W
    layers: list[ImportedLayer]
    importer: str  # "torch.fx", "keras", "onnx"
    source: str  # the SOURCE as the user gave it
    versions: dict[str, str] = field(default_factory=dict)  # framework -> version that read it
    training: dict[str, Any] = field(default_factory=dict)  # training-only settings found (regularizers)
    notes: list[str] = field(default_factory=list)  # model-level (e.g. batch norms folded by an exporter)


@dataclass
class ImportResult:
    """What ``alexbench import`` writes: ``spec`` (validated), its ``yaml_text`` and canonical ``weights``."""

    model: ImportedModel
    names: list[str]  # the spec layer name of each imported layer
    spec: ModelSpec
    yaml_text: str
    weights: dict[str, np.ndarray]  # "<layer>.<param>" -> canonical float32

    def save(self, spec_path: str | Path, weights_path: str | Path) -> None:
        """The spec (its provenance inside) and the weights, whose metadata name the spec they belong to."""
        atomic_write(spec_path, self.yaml_text.encode("utf-8"))
        save_weights(self.weights, weights_path, metadata={
            "spec": self.spec.name, "spec_sha256": self.spec.sha256, "source": self.model.source,
            "importer": self.model.importer})


# Shipped specs' naming: weight layers count together (conv1..conv5, fc6..fc8); the others take
# the number of the weight layer before them (relu1, pool1), a dropout the one after it (drop6
# feeds fc6, as in alexnet-owt).
_PREFIX = {"conv2d": "conv", "linear": "fc", "relu": "relu", "lrn": "norm", "maxpool2d": "pool",
           "avgpool2d": "avgpool", "batchnorm2d": "bn", "dropout": "drop"}
_UNNUMBERED = {"flatten": "flatten", "softmax": "softmax", "adaptive_avgpool2d": "avgpool"}


def layer_names(layers: list[ImportedLayer]) -> list[str]:
    """The spec layer name of each layer, deterministic in the op sequence alone, so that the same
    network imported from any framework gets the same names."""
    weight_positions = [i for i, layer in enumerate(layers) if layer.op in ("conv2d", "linear")]
    names: list[str] = []
    for i, layer in enumerate(layers):
        before = sum(1 for p in weight_positions if p <= i)
        if layer.op in _UNNUMBERED:
            base = _UNNUMBERED[layer.op]
        else:
            number = before + 1 if layer.op == "dropout" and before < len(weight_positions) else before
            base = f"{_PREFIX.get(layer.op, layer.op)}{number or ''}"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def build_spec(model: ImportedModel, *, name: str | None = None) -> ImportResult:
    """Name, write and validate the spec; check every imported tensor against it. Raises a SpecError
    (exit code 2) whose lines name the spec layer and the source's module, layer or node."""
    names = layer_names(model.layers)
    text = spec_yaml(model, names, name=name)
    origins = {n: layer.origin for n, layer in zip(names, model.layers)}
    try:
        spec = parse_spec(text, f"<import of {model.source}>")
    except SpecError as err:
        raise _with_origins(err, origins) from None
    weights = {}
    problems = []
    for layer_name, layer in zip(names, model.layers):
        expected = spec.layer(layer_name).params
        for param, array in layer.weights.items():
            if param not in expected:
                problems.append(SpecError(None, _where(layer_name, layer), f"a '{param}' tensor the spec layer "
                                          "does not have", list(array.shape), ", ".join(expected) or "none"))
                continue
            if tuple(array.shape) != expected[param].shape:
                problems.append(SpecError(None, _where(layer_name, layer),
                                          f"'{param}' does not fit what reaches the layer",
                                          list(array.shape), f"{list(expected[param].shape)} for input "
                                          f"{list(spec.layer(layer_name).input_shape)}"))
                continue
            weights[f"{layer_name}.{param}"] = np.ascontiguousarray(array, dtype=np.float32)
        missing = [p for p in expected if p not in layer.weights]
        if missing:
            problems.append(SpecError(None, _where(layer_name, layer), "the source has no tensor for "
                                      + ", ".join(missing), None, "every parameter of the layer"))
    if problems:
        raise problems[0] if len(problems) == 1 else SpecErrors(problems)
    return ImportResult(model, names, spec, text, weights)


def _where(layer_name: str, layer: ImportedLayer) -> str:
    return f"{layer_where(layer_name, layer.op)} from {layer.origin}"


def _with_origins(err: SpecError, origins: dict[str, str]) -> SpecError:
    """The validation message, with each layer's source named after it and without the line number
    of a file the user never saw."""
    problems = err.problems if isinstance(err, SpecErrors) else [err]
    out = []
    for p in problems:
        where = p.where
        for layer_name, origin in origins.items():
            if where.startswith(f"layer '{layer_name}' ("):
                where = f"{where} from {origin}"
                break
        out.append(SpecError(None, where, p.what, p.received, p.expected))
    return out[0] if len(out) == 1 else SpecErrors(out)


def spec_yaml(model: ImportedModel, names: list[str], *, name: str | None = None) -> str:
    """The spec as YAML: provenance first, one flow-style line per layer, each noting its origin."""
    lines = [f"# Imported by `alexbench import` ({model.importer}) from {model.source}.",
             f"name: {_scalar(name or model.name)}",
             f"description: {_scalar(f'{model.name}, imported from {model.source}')}",
             "provenance:",
             f"  source: {_scalar(model.source)}",
             f"  notes: {_scalar(_provenance_notes(model))}",
             f"input: [{', '.join(map(str, model.input_shape))}]"]
    lines += _training_yaml(model, names)
    lines.append("layers:")
    for layer_name, layer in zip(names, model.layers):
        fields = {"name": layer_name, "op": layer.op, **layer.attrs}
        note = f"from {layer.origin}" + (f"; {layer.note}" if layer.note else "")
        fields["note"] = note
        lines.append(f"  - {_flow(fields)}")
    return "\n".join(lines) + "\n"


def _training_yaml(model: ImportedModel, names: list[str]) -> list[str]:
    """The training section (spec/README.md, Training): the model's own settings, then each layer's
    regularizers and constraints as the source records them; the loader models l2 factors and keeps
    the rest as not modelled."""
    per_layer = {n: layer.training for n, layer in zip(names, model.layers) if layer.training}
    if not model.training and not per_layer:
        return []
    lines = ["# What the source records for training; fields it does not give keep the spec's defaults.",
             "# An l2 factor x adds x * sum(w^2) to the loss (an effective decay of 2x per step).",
             "training:"]
    lines += [f"  {key}: {_flow(value)}" for key, value in model.training.items()]
    if per_layer:
        lines.append("  layers:")
        lines += [f"    {name}: {_flow(settings)}" for name, settings in per_layer.items()]
    return lines


def _provenance_notes(model: ImportedModel) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in model.versions.items())
    parts = [f"importer {model.importer}" + (f" ({versions})" if versions else "")] + list(model.notes)
    return "; ".join(parts)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr round-trips exactly; YAML 1.1 reads '1e-05' as a string, '1.0e-05' as a number
        text = repr(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar
