"""Input batches: seeded random tensors, or image files through the spec's preprocessing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..spec import ModelSpec


class InputError(ValueError):
    """A bad --input file or batch size; printed as one line, exit code 2."""


DEFAULT_BATCH = 4
# PIL modes of 16-bit (and wider integer) grey images: full scale is 65535, not 255.
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def seeded_inputs(spec: ModelSpec, batch: int | None, seed: int) -> np.ndarray:
    """Standard-normal NCHW float32 (what a normalised image batch looks like), bit-identical per seed."""
    batch = DEFAULT_BATCH if batch is None else batch
    if batch < 1:
        raise InputError(f"--batch must be at least 1; received {batch}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x1A9E7])))
    return rng.standard_normal((batch, *spec.input_shape)).astype(np.float32)


def image_inputs(spec: ModelSpec, paths: list[str], batch: int | None = None) -> np.ndarray:
    """Load PNG/JPEG files: RGB (or L for 1 channel), resize the shorter side, center-crop, scale to [0, 1],
    normalise with the spec's mean/std. Nothing is changed without a word; refused with one line:
    a --batch other than the number of images, transparent pixels (no background is guessed), and
    an aspect ratio that only squashing would fit to the input (the spec needs preprocessing resize/crop).
    16-bit grey PNGs are scaled by 65535 and resized in floating point, never clipped to 8 bits."""
    from PIL import Image, UnidentifiedImageError

    if batch is not None and batch != len(paths):
        raise InputError(f"--batch {batch} with {len(paths)} --input image(s): the batch is the images given; "
                         f"drop --batch, or give {batch} images")
    channels, height, width = spec.input_shape
    if channels not in (1, 3):
        raise InputError(f"image inputs need a 1- or 3-channel spec; '{spec.name}' takes {channels} channels")
    pre = spec.preprocessing
    out = []
    for name in paths:
        path = Path(name)
        try:
            with Image.open(path) as img:
                img.load()
                _refuse_transparency(name, img)
                wide = img.mode in WIDE_MODES
                full_scale = 65535.0 if wide else 255.0
                img = img.convert("F" if wide else "RGB" if channels == 3 else "L")
        except FileNotFoundError:
            raise InputError(f"--input {name}: no such file") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"--input {name}: not a readable image ({exc}); expected a PNG or JPEG file") from None
        original = img.size
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
            if abs(img.height * width / img.width - height) > 0.5 or abs(img.width * height / img.height - width) > 0.5:
                raise InputError(
                    f"--input {name}: a {original[0]}x{original[1]} image would be squashed to the spec's "
                    f"{width}x{height} input; '{spec.name}' has no preprocessing resize/crop that keeps the aspect "
                    f"ratio: add a 'preprocessing:' block with resize and crop (spec/README.md), or give a "
                    f"{width}x{height} image")
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        array = np.asarray(img, dtype=np.float32) / np.float32(full_scale)
        if wide and channels == 3:  # grey: the same value in R, G and B, as convert("RGB") does
            array = np.repeat(array[:, :, None], 3, axis=2)
        array = array.reshape(height, width, channels).transpose(2, 0, 1)
        if pre is not None:
            mean = np.asarray(pre.mean, dtype=np.float32).reshape(-1, 1, 1)
            std = np.asarray(pre.std, dtype=np.float32).reshape(-1, 1, 1)
            array = (array - mean) / std
        out.append(array)
    return np.stack(out).astype(np.float32)


def _refuse_transparency(name: str, img) -> None:
    """Dropping alpha would show the colours under transparent pixels, which the image does not
    show; compositing would need a background we would have to guess. A fully opaque alpha passes."""
    if "A" not in img.getbands() and not (img.mode == "P" and "transparency" in img.info) \
            and "transparency" not in img.info:
        return
    alpha = img.convert("RGBA").getchannel("A")
    low = alpha.getextrema()[0]
    if low < 255:
        raise InputError(f"--input {name}: has transparent pixels (alpha down to {low}/255); expected an opaque "
                         "image: flatten it onto the background you mean first (e.g. PIL's "
                         "Image.alpha_composite, or ImageMagick's -background white -flatten)")


def array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
