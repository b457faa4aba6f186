"""What every backend trains on: the batch's class labels, the dropout masks of every step, and the
train.npz file a training worker reads them from.

train.npz holds ``x`` (N, C, H, W float32), ``labels`` (N,) int64 and ``mask/<step>/<layer>`` (step
1-based): the keep mask (0/1 float32, the layer's canonical (N, *input shape)) of each dropout layer.
The harness draws the masks, never a framework's RNG, so every backend drops the same units; a
layer computes x * mask / (1 - rate).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...backends.training_inputs import first_outside
from ...spec import ModelSpec
from ..errors import UsageError

# AlexNet's backward pass in float64 NumPy at batch 8 takes ~10 s a step on two cores; the spec's own
# batch_size (what it trained with: 128) is --batch's to ask for.
DEFAULT_TRAIN_BATCH = 8
MASK_PREFIX = "mask"


@dataclass(frozen=True)
class TrainData:
    x: np.ndarray  # (N, C, H, W) float32
    labels: np.ndarray  # (N,) int64
    labels_source: str  # "seeded, seed 0" or the file
    masks: dict[int, dict[str, np.ndarray]]  # step -> dropout layer -> keep mask
    masks_source: str

    def labels_info(self) -> dict:
        return {"source": self.labels_source, "sha256": _sha256([self.labels])}

    def masks_info(self) -> dict:
        layers = list(next(iter(self.masks.values()), {}))
        arrays = [self.masks[k][name] for k in sorted(self.masks) for name in layers]
        return {"source": self.masks_source, "layers": layers, "sha256": _sha256(arrays)}


def _sha256(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def class_count(spec: ModelSpec) -> int:
    """The number of classes the cross-entropy reads: the spec's output features. A spec whose output
    is not one vector per input is refused."""
    shape = spec.output_shape
    if len(shape) != 1:
        raise UsageError(f"--train: spec '{spec.name}' ends in an output of shape {list(shape)} per input; the "
                         f"cross-entropy loss needs one vector of class scores per input (end in linear or softmax)")
    return int(shape[0])


def seeded_labels(classes: int, batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=batch, dtype=np.int64)


def file_labels(path: str, batch: int, classes: int) -> np.ndarray:
    """--labels FILE.npy: a 1-D integer array, one label per input, each in [0, classes)."""
    valid = f"a 1-D integer .npy array of {batch} labels (one per input) in [0, {classes})"
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = "no such file" if not Path(path).exists() else f"not a .npy array ({type(exc).__name__}: {exc})"
        raise UsageError(f"--labels {path}: {reason}; expected {valid}") from None
    if not isinstance(array, np.ndarray) or array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        received = (f"an .npz archive of {', '.join(array.files)}" if not isinstance(array, np.ndarray)
                    else f"a {array.dtype} array of shape {list(array.shape)}")
        raise UsageError(f"--labels {path}: received {received}; expected {valid}")
    if array.shape[0] != batch:
        raise UsageError(f"--labels {path}: received {array.shape[0]} labels for {batch} inputs; expected {valid}")
    i = first_outside(array, classes)
    if i is not None:
        raise UsageError(f"--labels {path}: label {int(array[i])} at index {i} is out of range; expected {valid}, "
                         f"the spec's {classes} output features")
    return array.astype(np.int64)


def dropout_masks(spec: ModelSpec, batch: int, steps: int, seed: int) -> dict[int, dict[str, np.ndarray]]:
    """Step k (1-based) -> dropout layer -> its keep mask: one generator per (seed, step, layer index),
    so a mask does not depend on how many steps or which other layers there are."""
    masks: dict[int, dict[str, np.ndarray]] = {}
    for k in range(1, steps + 1):
        masks[k] = {}
        for index, layer in enumerate(spec.layers):
            if layer.op == "dropout":
                draw = np.random.default_rng([seed, k, index]).random((batch, *layer.input_shape))
                masks[k][layer.name] = (draw >= layer.attrs["rate"]).astype(np.float32)
    return masks


def train_data(spec: ModelSpec, x: np.ndarray, steps: int, seed: int, labels_path: str | None) -> TrainData:
    """Labels (seeded or from ``labels_path``) and masks for the batch ``x``."""
    classes = class_count(spec)
    batch = int(x.shape[0])
    if labels_path:
        labels, source = file_labels(labels_path, batch, classes), labels_path
    else:
        labels, source = seeded_labels(classes, batch, seed), f"seeded, seed {seed}"
    return TrainData(x, labels, source, dropout_masks(spec, batch, steps, seed), f"seeded PCG64, seed {seed}")


def write_train_npz(path: Path, data: TrainData) -> Path:
    arrays = {"x": data.x, "labels": data.labels}
    arrays.update({f"{MASK_PREFIX}/{k}/{name}": m for k, layers in data.masks.items() for name, m in layers.items()})
    np.savez(path, **arrays)
    return path


def read_train_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[int, dict[str, np.ndarray]]]:
    """x, labels and step -> layer -> mask, as ``write_train_npz`` wrote them."""
    masks: dict[int, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as archive:
        x, labels = archive["x"], archive["labels"]
        for key in archive.files:
            if key.startswith(MASK_PREFIX + "/"):
                _, step, layer = key.split("/", 2)
                masks.setdefault(int(step), {})[layer] = archive[key]
    return x, labels, masks
