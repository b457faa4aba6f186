"""One SGD step on a Keras model, on each Keras engine, with the spec's training semantics (docs/training.md).

The step runs on a *training model*, a second functional model built from the inference model's current
weights, that differs where Keras' training form differs from the spec's:

- dropout reads the harness' keep mask as an extra model input (``layers.MaskedDropout``), never Keras'
  dropout RNG;
- batch norm stores the unbiased batch variance in its moving variance, as torch does
  (``layers.TorchStatisticsBatchNormalization``), with Keras' momentum = 1 - the spec's.

Around the gradients, what Keras' defaults would get wrong is done by hand, each through a backend hook
(``backend.py``) so a test can plant the Keras default back: the loss is computed without
categorical_crossentropy's clipping, from the logits (a final softmax's input); the l2 penalties' gradient 2x*w is
added to the data loss' gradient; the coupled weight decay wd*w is added to that before ``optimizer.apply`` (Keras'
``weight_decay`` is the decoupled kind, outside the momentum); the momentum buffer v (v = mu v - lr d) is read back
as torch's b = -v / lr. Only the gradient engine differs per Keras backend (``GRADIENTS``). Importing this module
imports keras: the backend imports it after choosing Keras' backend.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from ...spec import ModelSpec
from ..base import TrainStep, Weights
from . import layouts
from .layers import MaskedDropout, TorchStatisticsBatchNormalization
from .lowering import keras_model_from_spec, nhwc_shape


def training_model(spec: ModelSpec, weights: Weights, bn_momentum: Callable, variance_correction: Callable):
    """The spec as a Keras model for training: inputs [image NHWC, one keep mask per dropout layer, in spec
    order, each in the layout of the activation it multiplies]; output the logits (a final softmax left out)."""
    masks = {layer.name: keras.Input(shape=nhwc_shape(layer.input_shape), dtype="float32", name=f"{layer.name}_mask")
             for layer in spec.layers if layer.op == "dropout"}
    builders = {
        "dropout": lambda layer, x: MaskedDropout(layer.attrs["rate"], name=layer.name)([x, masks[layer.name]]),
        # The loss reads the logits: -log p of a final softmax is computed as a log-softmax (backend.train_loss),
        # which float32 cannot underflow to log 0.
        "softmax": lambda layer, x: x,
        "batchnorm2d": lambda layer, x: TorchStatisticsBatchNormalization(
            variance_correction, axis=-1, epsilon=layer.attrs["eps"], momentum=bn_momentum(layer),
            name=layer.name)(x),
    }
    return keras_model_from_spec(spec, weights, builders, list(masks.values()))


def current_weights(spec: ModelSpec, model) -> Weights:
    """The canonical tensors a Keras model holds now."""
    weights: Weights = {}
    for layer in spec.layers:
        if layer.params:
            weights.update(layouts.canonical_weights_from_keras(
                layer.op, layer.name, list(layer.params), model.get_layer(layer.name).get_weights()))
    return weights


# --- the gradient engines: (model, loss(out, labels)) -> step(inputs, labels) -> (data loss, gradients in
# the order of model.trainable_variables); batch norm's moving statistics updated in the model ---

def _tensorflow_gradients(model, loss_fn):
    import tensorflow as tf

    @tf.function
    def step(inputs, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(model(inputs, training=True), labels)
        return loss, tape.gradient(loss, model.trainable_variables)

    return step


def _jax_gradients(model, loss_fn):
    import jax

    def loss_and_state(trainable, non_trainable, inputs, labels):
        out, state = model.stateless_call(trainable, non_trainable, inputs, training=True)
        return loss_fn(out, labels), state

    value_and_grad = jax.jit(jax.value_and_grad(loss_and_state, has_aux=True))

    def step(inputs, labels):
        (loss, state), grads = value_and_grad([v.value for v in model.trainable_variables],
                                              [v.value for v in model.non_trainable_variables], inputs, labels)
        for variable, value in zip(model.non_trainable_variables, state):  # the new moving statistics
            variable.assign(value)
        return loss, grads

    return step


def _torch_gradients(model, loss_fn):
    import torch

    def step(inputs, labels):
        loss = loss_fn(model(inputs, training=True), labels)
        grads = torch.autograd.grad(loss, [v.value for v in model.trainable_variables])
        return loss.detach(), list(grads)

    return step


GRADIENTS: dict[str, Callable] = {"tensorflow": _tensorflow_gradients, "jax": _jax_gradients,
                                  "torch": _torch_gradients}


class KerasTrainer:
    """The training model, its optimizer and the step, for one backend (its hooks are read from it)."""

    def __init__(self, backend: Any):
        self.backend, self.spec = backend, backend.spec
        self.settings = self.spec.training
        self.model = training_model(self.spec, current_weights(self.spec, backend.model), backend.bn_momentum,
                                    backend.running_var_correction)
        # Each trainable Keras variable's (canonical tensor name, spec layer, canonical param).
        owner = {}
        for layer in (layer for layer in self.spec.layers if layer.params):
            variables = self.model.get_layer(layer.name).weights
            for param, variable in zip(layouts.keras_param_order(layer.op, layer.params), variables):
                owner[id(variable)] = (f"{layer.name}.{param}", layer, param)
        self.variables = list(self.model.trainable_variables)
        self.tensors = [owner[id(v)] for v in self.variables]
        expected = sorted(f"{layer.name}.{p}" for layer in self.spec.layers
                          for p, param in layer.params.items() if param.trainable)
        if sorted(name for name, _, _ in self.tensors) != expected:  # a lowering that lost a trainable tensor
            raise RuntimeError(f"backend '{backend.name}': the Keras training model trains "
                               f"{sorted(n for n, _, _ in self.tensors)}, the spec {expected}")
        self.optimizer = backend.make_optimizer()
        self.optimizer.build(self.variables)
        self.gradients = GRADIENTS[keras.backend.backend()](self.model, backend.train_loss)

    def step(self, x_nhwc: np.ndarray, labels: np.ndarray, masks: list[np.ndarray], readout: bool) -> TrainStep:
        inputs = [x_nhwc, *masks] if masks else x_nhwc  # the structure the model was built with
        data_loss, grads = self.gradients(inputs, ops.convert_to_tensor(labels.astype(np.int32)))
        penalty, full, decayed = 0.0, [], []
        for (name, _, _), variable, g in zip(self.tensors, self.variables, grads):
            w = ops.stop_gradient(variable.value)  # before the update: the penalty and decay of this step
            x = self.settings.l2(name)
            if x:
                penalty = penalty + x * ops.sum(ops.square(w))
                g = g + self.backend.penalty_gradient(name, w)
            full.append(g)
            decayed.append(self.backend.coupled_decay(g, w))
        self.optimizer.apply(decayed, self.variables)
        data = float(ops.convert_to_numpy(data_loss))
        loss = data + float(ops.convert_to_numpy(penalty))
        if not readout:
            return TrainStep(loss, data)
        grad_arrays = {name: self.backend.canonical_gradient(layer, param, ops.convert_to_numpy(g))
                       for (name, layer, param), g in zip(self.tensors, full)}
        return TrainStep(loss, data, grad_arrays, current_weights(self.spec, self.model), self._momentum())

    def _momentum(self) -> dict[str, np.ndarray]:
        """Keras SGD's buffer v (v <- mu v - lr d) as torch's b (b <- mu b + d): b = -v / lr."""
        if not self.settings.momentum:
            return {}
        lr = self.settings.learning_rate
        # optimizer.build made one buffer per variable, in the order given
        return {name: layouts.canonical_from_keras(layer.op, param, -ops.convert_to_numpy(v) / np.float32(lr))
                for (name, layer, param), v in zip(self.tensors, self.optimizer.momentums)}
