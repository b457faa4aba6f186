"""One SGD step of the torch model, the spec's training semantics (spec/training.py) in torch's own terms.

torch's conventions are the canonical ones, so nothing is compensated: ``nn.BatchNorm2d`` in training mode
normalises with the biased batch variance and stores the unbiased one with the spec's (torch-convention)
momentum, and ``torch.optim.SGD`` adds the coupled weight decay to the gradient inside momentum with
PyTorch's buffer. What the spec adds is done here: dropout applies the harness' mask (never torch's RNG),
the loss reads the logits (for a spec ending in softmax, the softmax's input: -log p as a log-softmax, which
float32 cannot underflow), and the l2 penalties join the loss.

The backend's overridable hooks (``train_dropout``, ``train_loss``, ``make_optimizer``) do the arithmetic;
this module wires them into the model and reads the step out in canonical names (``state_dict`` keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ...spec import ModelSpec
from ..base import TrainStep
from ..training_inputs import check_training_batch


class MaskedDropout(nn.Module):
    """A spec dropout layer in training: ``apply(x, mask, rate)`` with the mask the step sets on it."""

    def __init__(self, name: str, rate: float, apply: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]):
        super().__init__()
        self.name, self.rate, self.apply_mask = name, rate, apply
        self.mask: torch.Tensor | None = None  # a plain attribute, not a buffer: state_dict stays canonical

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # run() after training: inference, as nn.Dropout in eval mode
            return x
        if self.mask is None:
            raise ValueError(f"torch training: dropout layer '{self.name}' ran without a mask")
        return self.apply_mask(x, self.mask, self.rate)

    def extra_repr(self) -> str:
        return f"rate={self.rate}, mask from the harness"


@dataclass
class Trainer:
    """The model switched to training, its optimizer, and what one step needs to know."""

    model: nn.Module
    logits: nn.Module  # the model up to the logits: without its final softmax when the loss reads probabilities
    spec: ModelSpec
    device: torch.device
    optimizer: torch.optim.Optimizer
    params: dict[str, nn.Parameter]  # trainable tensors by canonical name
    dropouts: dict[str, MaskedDropout]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def step(self, x: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray], readout: bool) -> TrainStep:
        labels = self._set_masks(masks, labels, x.shape[0])
        self.optimizer.zero_grad(set_to_none=True)
        out = self.logits(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        data_loss = self.loss(out, torch.from_numpy(labels).to(self.device))
        loss = data_loss
        for tensor, factor in self.spec.training.penalties.items():
            loss = loss + factor * self.params[tensor].square().sum()
        loss.backward()
        # Read before the step: the gradient as backward left it (the optimizer adds the decay itself).
        grads = {name: _numpy(p.grad) for name, p in self.params.items()} if readout else {}
        self.optimizer.step()
        step = TrainStep(loss=float(loss.item()), data_loss=float(data_loss.item()), grads=grads)
        if readout:
            step.params = {name: _numpy(t) for name, t in self.model.state_dict().items()}
            if self.spec.training.momentum:
                step.momentum = {name: _numpy(self.optimizer.state[p]["momentum_buffer"])
                                 for name, p in self.params.items()}
        return step

    def _set_masks(self, masks: dict[str, np.ndarray], labels: np.ndarray, batch: int) -> np.ndarray:
        """The checked labels; each dropout module gets its step's mask."""
        labels, masks = check_training_batch("backend 'torch'", self.spec, batch, labels, masks)
        for name, module in self.dropouts.items():
            module.mask = torch.from_numpy(np.ascontiguousarray(masks[name], dtype=np.float32)).to(self.device)
        return labels


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float32).numpy().copy()


def start_training(backend: Any) -> Trainer:
    """Switch ``backend.model`` (built from ``backend.spec``) to training: spec dropout layers take the harness'
    masks through ``backend.train_dropout``, only the spec's trainable tensors take gradients, and a fresh
    optimizer comes from ``backend.make_optimizer``."""
    model, spec = backend.model, backend.spec
    if backend.dtype != torch.float32:
        raise ValueError(f"torch backend: training runs in fp32 only; received precision '{backend.precision}'")
    trainable = {f"{layer.name}.{p}": param.trainable for layer in spec.layers for p, param in layer.params.items()}
    dropouts = {}
    for layer in spec.layers:
        if layer.op == "dropout":
            dropouts[layer.name] = MaskedDropout(layer.name, float(layer.attrs["rate"]), backend.train_dropout)
            setattr(model, layer.name, dropouts[layer.name])
    params = {}
    for name, p in model.named_parameters():
        p.requires_grad_(trainable[name])
        if trainable[name]:
            params[name] = p
    for tensor in spec.training.penalties:
        if tensor not in params:
            raise ValueError(f"torch training: penalty on '{tensor}', which is not a trainable tensor of spec "
                             f"'{spec.name}'; trainable: {', '.join(params)}")
    model.train()
    logits = model[:-1] if spec.loss_on == "probabilities" else model
    return Trainer(model, logits, spec, backend.device, backend.make_optimizer(list(params.values())), params, dropouts,
                   backend.train_loss)
