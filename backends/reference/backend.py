"""The ``reference`` backend: float64 NumPy, the parity oracle every other backend is judged against.

The forward pass (one handler per op, ``LOWERING``) is in ``forward.py``, the training step (one
backward per op, ``BACKWARD``, the loss and SGD) in ``training.py``, the spread float32's choices at
kinks can cause (a shadow trajectory) in ``spread.py``; this module is the ``Backend``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...spec import ModelSpec
from ..base import Backend, RunOutput, TrainStep, Weights
from .forward import LOWERING, check_weights, reference_forward, run_layer
from .spread import State, spread_train_step
from .training import reference_train_step, zero_buffers

# What other modules import from here, besides the backend (the forward pass lived here first).
__all__ = ["LOWERING", "ReferenceBackend", "reference_forward", "run_layer"]


class ReferenceBackend(Backend):
    name = "reference"
    summary = "float64 NumPy, every op written out: the oracle every other backend is judged against"
    needs = ()
    trains = True
    # SGD momentum buffers between steps; None until start_training().
    buffers: dict[str, np.ndarray] | None = None
    # The shadow trajectory (spread.py); None while it equals the main one.
    shadow: State | None = None

    @classmethod
    def lowering(cls) -> dict[str, Any]:
        return LOWERING

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        check_weights(spec, weights)
        self.spec, self.weights = spec, weights
        self.buffers = None

    def start_training(self) -> None:
        self.buffers, self.shadow = zero_buffers(self.spec), None

    def train_step(self, x: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray],
                   readout: bool = True) -> TrainStep:
        if self.buffers is None:
            raise RuntimeError("reference: train_step before start_training(); call build, start_training, "
                               "then train_step")
        # The step's weights replace the built ones: the next step, and run(), see them.
        if not readout:  # timed by the bench: no shadow, which from here on restarts equal to the main state
            step, self.weights, self.buffers = reference_train_step(self.spec, self.weights, self.buffers, x, labels,
                                                                    masks, readout=False)
            self.shadow = None
            return step
        step, main, self.shadow = spread_train_step(self.spec, State(self.weights, self.buffers), self.shadow, x,
                                                    labels, masks)
        self.weights, self.buffers = main.weights, main.buffers
        return step

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        out, captured = reference_forward(self.spec, self.weights, x, list(layers))
        return RunOutput(out, captured)

    def param_count(self) -> int:
        return sum(math.prod(np.shape(w)) for w in self.weights.values())

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.spec.layers]

    def environment(self) -> dict[str, Any]:
        env: dict[str, Any] = {"framework": "numpy", "numpy": np.__version__, "dtype": "float64"}
        try:  # NumPy >= 1.26 reports its BLAS as a dict
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            env["blas"] = f"{blas.get('name')} {blas.get('version')}"
        except Exception:  # older NumPy, or a build without that entry: the version is enough
            pass
        return env

    # The oracle is not timed: no bench precision, so `alexbench bench` refuses it before any work.
    bench_precisions = ()
    no_bench_reason = "it is the float64 parity oracle, not a runtime to time"

    def bench_step(self, x: np.ndarray, device: str, precision: str = "float32") -> Callable[[], Any]:
        raise NotImplementedError("backend 'reference' is the float64 parity oracle and is not benchmarked; "
                                  "bench a framework backend (torch, keras, onnx-torch, ...) instead")
