"""``bench --train``: what a timed training step is, what it costs in FLOPs, and which jobs run.

A training step is ``Backend.train_step(x, labels, masks, readout=False)`` after ``build`` and
``start_training``: the forward in training mode, the loss, the backward and the SGD update, with
nothing copied out but the loss (a host value, so the step has waited for the device when it
returns). The batch, its labels and the dropout masks are drawn once per batch size (seeded) and
reused by every repetition; the weights keep training from one repetition to the next, as in a
real loop. The timing method is inference's (``method.py``).

FLOPs: 2 per multiply-accumulate, as for inference, counting per conv/linear layer the forward,
the weight gradient (when the layer has a trainable tensor) and the input gradient (when a layer
before it has one, since the gradient must reach it): about 3x the forward MACs, less the first
layer's input gradient, which no framework computes. Element-wise work, batch norm, pooling and the
update itself are not counted, as inference counts only the spec's MACs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the bench worker imports this before NumPy may load (bench_entry.apply_job_env)
    import numpy as np

    from ...spec import ModelSpec

PRECISION = "float32"  # training parity is defined in float32 (docs/training.md)
EXECUTION = "train_step"  # a training row's "execution": the backend's own step, eager or traced as it chose
FLOP_COUNT = ("2 FLOPs per MAC of forward + weight gradient + input gradient per conv/linear layer "
              "(~3x the forward MACs; no input gradient below the first trainable layer)")
# train_step takes NumPy: its copy to the framework (and the device) is part of every timed step
INPUTS = "handed to train_step as NumPy each step (the copy into the framework is timed)"
PRECISION_REASON = "training steps are timed in float32 only (the precision training parity is defined in)"
COMPILED_REASON = "training steps run as the backend's train_step builds them; the compiled variant times inference"


def training_macs(spec: ModelSpec) -> int:
    """Multiply-accumulates of one training step per image (see the module docstring)."""
    total, grad_flows = 0, False
    for layer in spec.layers:
        trainable = any(p.trainable for p in layer.params.values())
        if layer.macs:
            total += layer.macs * (1 + int(trainable) + int(grad_flows))
        grad_flows = grad_flows or trainable
    return total


def skip_reason(cls: type, precision: str, compiled: bool) -> str | None:
    """Why a backend class's training step is not timed in this combination, or None (the inference
    reasons, device and declared precisions, are checked before this)."""
    if not cls.trains:
        return cls.no_train_reason
    if precision != PRECISION:
        return PRECISION_REASON
    if compiled:
        return COMPILED_REASON
    return None


def training_batch(spec: ModelSpec, batch: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The labels and step-1 dropout masks compare --train would draw for this batch size and seed."""
    from ..train.data import class_count, dropout_masks, seeded_labels

    return seeded_labels(class_count(spec), batch, seed), dropout_masks(spec, batch, 1, seed)[1]


def settings(spec: ModelSpec, seed: int) -> dict[str, Any]:
    """What a bench results document's settings["train"] records."""
    return {"step": "train_step(x, labels, masks, readout=False): forward, loss, backward, SGD update",
            "macs_per_image": training_macs(spec), "flop_count": FLOP_COUNT,
            "optimizer": spec.training.settings(),
            "labels_and_masks": f"as compare --train draws them (seed {seed}), once per batch size",
            "precision": PRECISION}
