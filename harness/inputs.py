"""Input batches: seeded random tensors, or image files through the spec's preprocessing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..spec import ModelSpec


class InputError(ValueError):
    """A bad --input file or batch size; printed as one line, exit code 2."""


def seeded_inputs(spec: ModelSpec, batch: int, seed: int) -> np.ndarray:
    """Standard-normal NCHW float32 (what a normalised image batch looks like), bit-identical per seed."""
    if batch < 1:
        raise InputError(f"--batch must be at least 1; received {batch}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x1A9E7])))
    return rng.standard_normal((batch, *spec.input_shape)).astype(np.float32)


def image_inputs(spec: ModelSpec, paths: list[str]) -> np.ndarray:
    """Load PNG/JPEG files: RGB (or L for 1 channel), resize the shorter side, center-crop, scale to [0, 1],
    normalise with the spec's mean/std. Without preprocessing in the spec, resize straight to H x W."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = spec.input_shape
    if channels not in (1, 3):
        raise InputError(f"image inputs need a 1- or 3-channel spec; '{spec.name}' takes {channels} channels")
    pre = spec.preprocessing
    batch = []
    for name in paths:
        path = Path(name)
        try:
            with Image.open(path) as img:
                img.load()
                img = img.convert("RGB" if channels == 3 else "L")
        except FileNotFoundError:
            raise InputError(f"--input {name}: no such file") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"--input {name}: not a readable image ({exc}); expected a PNG or JPEG file") from None
        if pre is not None and pre.resize:
            scale = pre.resize / min(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.Resampling.BILINEAR)
        if pre is not None and pre.crop:
            crop_h, crop_w = pre.crop
            if img.width < crop_w or img.height < crop_h:
                raise InputError(f"--input {name}: {img.width}x{img.height} after resizing is smaller than the "
                                 f"crop {crop_w}x{crop_h}")
            left, top = (img.width - crop_w) // 2, (img.height - crop_h) // 2
            img = img.crop((left, top, left + crop_w, top + crop_h))
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        array = np.asarray(img, dtype=np.float32) / 255.0
        array = array.reshape(height, width, channels).transpose(2, 0, 1)
        if pre is not None:
            mean = np.asarray(pre.mean, dtype=np.float32).reshape(-1, 1, 1)
            std = np.asarray(pre.std, dtype=np.float32).reshape(-1, 1, 1)
            array = (array - mean) / std
        batch.append(array)
    return np.stack(batch).astype(np.float32)


def array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
