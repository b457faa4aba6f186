"""What every training backend checks before a step: the labels and the dropout masks against the spec,
one line per problem naming the backend (``Backend.train_step``'s contract, backends/base.py).

Pure NumPy: the reference, torch and Keras share it.
"""

from __future__ import annotations

import numpy as np

from ..spec import ModelSpec, fmt_shape


def check_training_batch(who: str, spec: ModelSpec, batch: int, labels: np.ndarray,
                         masks: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the labels as int64, each dropout layer's mask as given) after checking them against ``spec`` for a
    batch of ``batch`` inputs; ValueError naming ``who`` (e.g. "backend 'keras'") otherwise."""
    if len(spec.output_shape) != 1:
        raise ValueError(f"{who}: spec '{spec.name}' ends in a {fmt_shape(spec.output_shape)} feature map; "
                         "cross-entropy needs class scores (N, classes)")
    classes = spec.output_shape[0]
    labels = np.asarray(labels)
    if labels.shape != (batch,):
        raise ValueError(f"{who}: labels have shape {list(labels.shape)}; expected [{batch}] "
                         "(one class index per sample)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{who}: labels have dtype {labels.dtype}; expected integers (class indices)")
    i = first_outside(labels, classes)
    if i is not None:
        raise ValueError(f"{who}: label {labels[i]} (sample {i}) is outside [0, {classes}): "
                         f"spec '{spec.name}' has {classes} classes")
    dropouts = {layer.name: layer for layer in spec.layers if layer.op == "dropout"}
    unknown = [name for name in masks if name not in dropouts]
    if unknown:
        raise ValueError(f"{who}: mask given for '{unknown[0]}', which is not a dropout layer of spec "
                         f"'{spec.name}' (dropout layers: {', '.join(dropouts) or 'none'})")
    checked = {}
    for name, layer in dropouts.items():
        expected = [batch, *layer.input_shape]
        if name not in masks:
            raise ValueError(f"{who}: no mask for dropout layer '{name}'; expected a 0/1 keep mask of shape "
                             f"{expected}")
        mask = np.asarray(masks[name])
        if list(mask.shape) != expected:
            raise ValueError(f"{who}: mask for dropout layer '{name}' has shape {list(mask.shape)}; "
                             f"expected {expected} (N, then the layer's input shape)")
        if not np.isin(mask, (0.0, 1.0)).all():
            raise ValueError(f"{who}: mask for dropout layer '{name}' holds values other than 0 and 1; "
                             "expected a 0/1 keep mask")
        checked[name] = mask
    for layer in spec.layers:
        if layer.op == "batchnorm2d" and batch * layer.input_shape[1] * layer.input_shape[2] < 2:
            raise ValueError(f"{who}: layer '{layer.name}' (batchnorm2d) sees 1 value per channel in a batch "
                             "of 1; training needs at least 2 (the running variance divides by n - 1)")
    return labels.astype(np.int64), checked


def first_outside(labels: np.ndarray, classes: int) -> int | None:
    """The index of the first label that is no class index in [0, classes), or None."""
    outside = np.flatnonzero((labels < 0) | (labels >= classes))
    return int(outside[0]) if outside.size else None
