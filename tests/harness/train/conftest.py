"""Plugin backends that train: the reference's arithmetic with float32 storage (the errors a float32
framework's stored weights, buffers and results carry), and the same with one planted bug each."""

from __future__ import annotations

from pathlib import Path

import pytest

TRAINING_PLUGIN = '''
from dataclasses import replace

import numpy as np
from alexbench.backends.reference import training
from alexbench.backends.reference.backend import ReferenceBackend


class Float32Storage(ReferenceBackend):
    """Computes each step like the reference, but keeps the weights and momentum buffers in float32 between
    steps and returns float32 tensors: float32 rounding of everything stored."""
    name = "f32-storage"

    def train_step(self, x, labels, masks, readout=True):
        step = super().train_step(x, labels, masks, readout)
        self.weights = {k: np.asarray(v, dtype=np.float32) for k, v in self.weights.items()}
        self.buffers = {k: np.asarray(v, dtype=np.float32).astype(np.float64) for k, v in self.buffers.items()}
        for kind in ("grads", "params", "momentum"):
            setattr(step, kind, {k: np.asarray(v, dtype=np.float32) for k, v in getattr(step, kind).items()})
        return step


class ScaledGradient(Float32Storage):
    """fc1's weight gradient 0.1% too large, as its update uses it."""
    name = "scaled-gradient"

    def start_training(self):
        super().start_training()
        linear = training.BACKWARD["linear"]

        def scaled(dy, layer, p, saved):
            dx, grads = linear(dy, layer, p, saved)
            if layer.name == "fc1":
                grads = dict(grads, weight=grads["weight"] * 1.001)
            return dx, grads

        training.BACKWARD["linear"] = scaled  # this worker's process only


class DecoupledDecay(Float32Storage):
    """Weight decay outside the momentum buffer (w -= lr wd w apart, as Keras' weight_decay= does), not
    coupled into it as the spec says: the same weights after the first step, but not the same buffer."""
    name = "decoupled-decay"

    def start_training(self):
        super().start_training()
        coupled = training.sgd_update

        def decoupled(settings, weights, grads, buffers):
            new_weights, new_buffers = coupled(replace(settings, weight_decay=0.0), weights, grads, buffers)
            decay = settings.learning_rate * settings.weight_decay
            return {k: w - decay * np.asarray(weights[k], dtype=np.float64) if k in grads else w
                    for k, w in new_weights.items()}, new_buffers

        training.sgd_update = decoupled
'''


@pytest.fixture
def training_plugin(make_plugin) -> Path:
    """Backends f32-storage, scaled-gradient and decoupled-decay (see TRAINING_PLUGIN)."""
    return make_plugin({"alexbench_train_plugin": TRAINING_PLUGIN},
                       {"f32-storage": "alexbench_train_plugin:Float32Storage",
                        "scaled-gradient": "alexbench_train_plugin:ScaledGradient",
                        "decoupled-decay": "alexbench_train_plugin:DecoupledDecay"})
