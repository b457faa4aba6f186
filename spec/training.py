"""The spec's training section, typed: what one SGD step on the network means (docs/training.md).

    training:
      optimizer: sgd            # the only optimizer
      learning_rate: 0.01       # lr
      momentum: 0.9             # mu (0: no momentum buffer)
      nesterov: false
      weight_decay: 0.0005      # coupled (the paper's and PyTorch's): added to the gradient, inside momentum
      loss: cross_entropy       # on the logits, or on the probabilities when the network ends in softmax
      batch_size: 128           # what the model was trained with (compare --train runs a smaller batch by default)
      layers:                   # per-layer penalties as Keras writes them
        conv1: {kernel_regularizer: {l2: 0.0005}}   # adds 0.0005 * sum(w^2) to the loss: gradient 2 * 0.0005 * w

One SGD step, per trainable tensor w with gradient g of (data loss + penalties), PyTorch's convention
(equal to the paper's v <- mu v - wd lr w - lr g, w <- w + v for a constant lr, with v = -lr b):

    d = g + weight_decay * w;  b = mu * b + d  (b = d on the first step);  w = w - lr * (d + mu * b if nesterov else b)

Nothing here imports a framework or numpy.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from .fields import Field, FieldProblem, boolean, number_in, positive_int, show

OPTIMIZERS = ("sgd",)
LOSSES = ("cross_entropy",)
# Keras' names for a layer's penalties -> the canonical parameter each applies to.
REGULARIZED_PARAMS = {"kernel_regularizer": "weight", "bias_regularizer": "bias"}


@dataclass(frozen=True)
class TrainingSpec:
    """A spec's training settings; ``declared`` is False when the spec has no training section (the
    defaults below then apply, and compare --train says so)."""

    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    loss: str = "cross_entropy"
    batch_size: int | None = None
    # "<layer>.<param>" -> the l2 factor x of a penalty x * sum(w^2) added to the loss (gradient 2x * w).
    penalties: dict[str, float] = field(default_factory=dict)
    # "<layer>": what the spec records for that layer but training does not model (an l1 penalty, a
    # constraint), as written; compare --train refuses a spec that has any.
    unmodelled: dict[str, Any] = field(default_factory=dict)
    declared: bool = True

    def l2(self, tensor: str) -> float:
        return self.penalties.get(tensor, 0.0)

    def effective_decay(self, tensor: str) -> float:
        """The decay a tensor feels per step in units of lr * w: coupled weight decay plus 2x of its l2."""
        return self.weight_decay + 2.0 * self.l2(tensor)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> TrainingSpec:
        """Back from ``settings()`` (a results file's), for ``describe``; keys it does not know are ignored."""
        return cls(**{k: v for k, v in settings.items() if k in cls.__dataclass_fields__})

    def settings(self) -> dict[str, Any]:
        """The values a results file records (JSON)."""
        return {"optimizer": self.optimizer, "learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay, "loss": self.loss,
                "batch_size": self.batch_size, "penalties": dict(self.penalties), "declared": self.declared}


def one_of(choices: tuple[str, ...], what: str) -> Callable[[str, Any], str]:
    expected = " or ".join(repr(c) for c in choices)

    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldProblem(f"field '{name}' has the wrong type", show(value), expected)
        if value not in choices:
            close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise FieldProblem(f"field '{name}' names {what} alexbench does not model{hint}", repr(value), expected)
        return value
    return parse


# The section's scalar fields; a key left out takes the dataclass's default. ``layers`` is parsed by
# the loader (it names layers of the spec).
FIELDS = {
    "optimizer": Field(one_of(OPTIMIZERS, "an optimizer"), "'sgd'", None),
    "learning_rate": Field(number_in(0.0, float("inf"), low_open=True), "a number > 0", None),
    "momentum": Field(number_in(0.0, 1.0, high_open=True), "a number in [0, 1)", None),
    "nesterov": Field(boolean, "true or false", None),
    "weight_decay": Field(number_in(0.0, float("inf")), "a number >= 0", None),
    "loss": Field(one_of(LOSSES, "a loss"), "'cross_entropy'", None),
    "batch_size": Field(positive_int, "a positive integer", None),
}
SECTION_KEYS = (*FIELDS, "layers")
# Other programs' names for a field (PyTorch, Caffe's solver, Keras).
ALIASES = {"lr": "learning_rate", "base_lr": "learning_rate", "wd": "weight_decay", "decay": "weight_decay",
           "batch": "batch_size", "mu": "momentum", "criterion": "loss", "optimiser": "optimizer"}
PENALTY_NOTE = ("per-layer l2 penalties are written under 'layers', e.g. layers: {conv1: {kernel_regularizer: "
                "{l2: 0.0005}}}; a decay of every tensor is 'weight_decay'")
LAYER_KEYS_EXPECTED = ("kernel_regularizer or bias_regularizer: {l2: x} (modelled); another Keras *_regularizer "
                       "or *_constraint (kept, not modelled)")


def unknown_key_hint(key: str) -> str:
    """Why an unknown training key is wrong: its alias, the old free-form penalty, or the nearest key."""
    low = key.lower()
    if low in ALIASES:
        return f" (did you mean '{ALIASES[low]}'?)"
    if "l2" in low or "regulari" in low or "penalt" in low:
        return f" ({PENALTY_NOTE})"
    close = difflib.get_close_matches(key, SECTION_KEYS, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def describe(training: TrainingSpec, *, loss_on: str | None = None, details: bool = True) -> str:
    """The settings on one line, for people: 'sgd, learning rate 0.01, momentum 0.9, ...'; ``loss_on``
    (ModelSpec.loss_on) says what the loss reads; ``details`` False leaves out the l2 factors and what
    is not modelled (for a caller that shows them on lines of their own)."""
    parts = [training.optimizer, f"learning rate {training.learning_rate:g}"]
    parts.append(f"momentum {training.momentum:g}" + (" (nesterov)" if training.nesterov else "")
                 if training.momentum else "no momentum")
    parts.append(f"weight decay {training.weight_decay:g} (coupled)" if training.weight_decay else "no weight decay")
    if training.batch_size is not None:
        parts.append(f"batch size {training.batch_size}")
    parts.append(f"loss {training.loss}" + (f" on the {loss_on}" if loss_on else ""))
    text = ", ".join(parts)
    if not details:
        return text
    by_factor: dict[float, list[str]] = {}
    for tensor, x in training.penalties.items():
        by_factor.setdefault(x, []).append(tensor)
    for x, tensors in by_factor.items():
        text += f"; l2 {x:g} on " + ", ".join(tensors)
    if training.unmodelled:
        text += "; not modelled: " + ", ".join(f"{layer} ({', '.join(what)})" for layer, what in
                                               training.unmodelled.items())
    return text


def decay_groups(training: TrainingSpec, tensors: list[str]) -> list[tuple[list[str], float, float]]:
    """The trainable ``tensors`` grouped by (effective decay, l2), in spec order of each group's first
    tensor: [(tensors, effective decay, l2)]."""
    groups: dict[tuple[float, float], list[str]] = {}
    for tensor in tensors:
        groups.setdefault((training.effective_decay(tensor), training.l2(tensor)), []).append(tensor)
    return [(names, decay, l2) for (decay, l2), names in groups.items()]
