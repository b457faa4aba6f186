"""The validated, typed form of a spec. Everything here is known without any framework."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import Location
from .ops import Shape
from .training import TrainingSpec


@dataclass(frozen=True)
class InitDist:
    """How one parameter tensor is drawn. ``dist`` is one of ``INIT_DISTS``."""

    dist: str
    args: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.args.items())
        return f"{self.dist}({args})"


@dataclass(frozen=True)
class Param:
    shape: tuple[int, ...]
    trainable: bool
    init: InitDist

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Layer:
    name: str
    op: str
    attrs: dict[str, Any]
    input_shape: Shape
    output_shape: Shape
    params: dict[str, Param]
    macs: int
    fan_in: int
    fan_out: int
    location: Location
    note: str = ""

    @property
    def param_count(self) -> int:
        return sum(p.size for p in self.params.values())

    @property
    def trainable_count(self) -> int:
        return sum(p.size for p in self.params.values() if p.trainable)


@dataclass(frozen=True)
class Preprocessing:
    """Image pipeline: RGB, resize shorter side, center crop, scale to [0, 1], normalise."""

    resize: int | None
    crop: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    provenance: dict[str, str]
    input_shape: tuple[int, int, int]
    preprocessing: Preprocessing | None
    layers: tuple[Layer, ...]
    training: TrainingSpec  # always set: TrainingSpec(declared=False) when the spec has no section
    source: str

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape

    @property
    def param_count(self) -> int:
        return sum(layer.param_count for layer in self.layers)

    @property
    def loss_on(self) -> str:
        """What the training loss reads: "probabilities" when the network ends in softmax, else "logits"."""
        return "probabilities" if self.layers[-1].op == "softmax" else "logits"

    @property
    def trainable_count(self) -> int:
        return sum(layer.trainable_count for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"spec '{self.name}' has no layer '{name}'")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical tensor names (``<layer>.<param>``) and shapes, in spec order."""
        return {f"{layer.name}.{p}": param.shape for layer in self.layers for p, param in layer.params.items()}

    def canonical(self) -> dict[str, Any]:
        """The spec's meaning (what the network computes and how weights are drawn), without
        comments or formatting. Its hash keys caches."""
        return {
            "name": self.name,
            "input": list(self.input_shape),
            "layers": [
                {"name": layer.name, "op": layer.op, "attrs": _jsonable(layer.attrs),
                 "init": {p: [param.init.dist, param.init.args] for p, param in layer.params.items()}}
                for layer in self.layers
            ],
        }

    @property
    def sha256(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value
