"""Input batches: seeded random tensors, or --input files: images through the spec's preprocessing,
.npy/.npz arrays as the network's input as they are."""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from ..spec import ModelSpec, fmt_shape


class InputError(ValueError):
    """A bad --input file or batch size; printed as one line, exit code 2."""


DEFAULT_BATCH = 4
ARRAY_SUFFIXES = (".npy", ".npz")
# The array an .npz holding several is read from.
NPZ_BATCH_NAMES = ("input", "x")
FLOAT_DTYPES = ("float16", "float32", "float64")
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
            raise InputError(f"--input {name}: not a readable image ({exc}); expected a PNG or JPEG file, or a "
                             ".npy/.npz array") from None
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


def file_inputs(spec: ModelSpec, paths: list[str], batch: int | None = None) -> np.ndarray:
    """The batch from --input files, in the order given: each image is one input (``image_inputs``);
    each .npy/.npz array is N inputs taken as they are, no preprocessing (a C x H x W array is one).
    A float32 array comes back bit for bit (``compare --save DIR`` writes DIR/input.npy)."""
    if not any(_is_array(name) for name in paths):
        return image_inputs(spec, paths, batch)
    parts = [array_inputs(spec, name) if _is_array(name) else image_inputs(spec, [name]) for name in paths]
    total = sum(len(part) for part in parts)
    if batch is not None and batch != total:
        held = ", ".join(f"{name}: {len(part)}" for name, part in zip(paths, parts))
        raise InputError(f"--batch {batch} with --input files holding {total} input(s) ({held}): the batch is "
                         f"what the files hold; drop --batch, or give files holding {batch} inputs")
    return np.concatenate(parts)


def given_array(spec: ModelSpec, array, batch: int | None = None) -> np.ndarray:
    """The API's ``inputs=array``: checked as an --input array is (dtype, shape, finiteness)."""
    array = np.asarray(array)
    if str(array.dtype.newbyteorder("=")) not in FLOAT_DTYPES:
        raise InputError(f"inputs: an array of {array.dtype} values; expected float16, float32 or float64 (the "
                         "network's input after preprocessing)")
    _check_shape(spec, "inputs", array.shape)
    out = _as_float32("inputs", array)
    if batch is not None and batch != len(out):
        raise InputError(f"batch {batch} with an inputs array of {len(out)}: the batch is the array's; drop batch")
    return out


def _is_array(name: str) -> bool:
    return Path(name).suffix.lower() in ARRAY_SUFFIXES


def array_inputs(spec: ModelSpec, name: str) -> np.ndarray:
    """One .npy file, or the batch array of an .npz, as N x C x H x W float32. Nothing is unpickled:
    the header's dtype and shape are checked before any data is read."""
    npz = Path(name).suffix.lower() == ".npz"
    try:
        if npz:
            with zipfile.ZipFile(name) as archive:
                member = _npz_member(name, archive)
                where = f"--input {name} (array '{member.removesuffix('.npy')}')"
                with archive.open(member) as f:
                    array = _read_npy(spec, where, f, archive.getinfo(member).file_size)
        else:
            where = f"--input {name}"
            with open(name, "rb") as f:
                array = _read_npy(spec, where, f, Path(name).stat().st_size)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"--input {name}: no such file") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        kind, writer = (".npz archive", "numpy.savez") if npz else (".npy file", "numpy.save")
        raise InputError(f"--input {name}: not a readable {kind} ({exc}); expected an array written by "
                         f"{writer}") from None
    return _as_float32(where, array)


def _npz_member(name: str, archive: zipfile.ZipFile) -> str:
    members = archive.namelist()
    if len(members) == 1:
        return members[0]
    named = [f"{n}.npy" for n in NPZ_BATCH_NAMES if f"{n}.npy" in members]
    if len(named) == 1:
        return named[0]
    listing = ", ".join(m.removesuffix(".npy") for m in members) or "none"
    why = "both 'input' and 'x' among them" if named else "none named 'input' or 'x'"
    raise InputError(f"--input {name}: holds {len(members)} arrays ({listing}), {why}; expected one array, or "
                     "the batch named 'input' or 'x' (numpy.savez(FILE, input=batch))")


def _read_npy(spec: ModelSpec, where: str, f: IO[bytes], size: int) -> np.ndarray:
    """Read an .npy stream of ``size`` bytes, refusing a wrong dtype, shape or length from its header."""
    version = npy_format.read_magic(f)
    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    if version not in readers:  # 3.0 is written only for structured arrays, which are refused anyway
        raise ValueError(f"format version {version[0]}.{version[1]}, not 1.0 or 2.0")
    shape, _, dtype = readers[version](f)
    if str(dtype.newbyteorder("=")) not in FLOAT_DTYPES:
        raise InputError(f"{where}: holds {dtype} values; expected float16, float32 or float64 (the "
                         "network's input after preprocessing)")
    _check_shape(spec, where, shape)
    needed, left = int(np.prod(shape)) * dtype.itemsize, size - f.tell()
    if left < needed:
        raise InputError(f"{where}: truncated: its header announces {fmt_shape(shape)} {dtype.name} "
                         f"({needed:,} bytes of data) and {left:,} bytes follow; expected the whole file")
    f.seek(0)
    return npy_format.read_array(f, allow_pickle=False)


def _check_shape(spec: ModelSpec, where: str, shape: tuple[int, ...]) -> None:
    c, h, w = spec.input_shape
    if len(shape) not in (3, 4) or tuple(shape[-3:]) != spec.input_shape:
        hint = ""
        if tuple(shape[-3:]) == (h, w, c) != (c, h, w) and len(shape) in (3, 4):
            order = "2, 0, 1" if len(shape) == 3 else "0, 3, 1, 2"
            hint = f"; a channels-last array becomes channels-first with .transpose({order})"
        raise InputError(f"{where}: an array of shape {fmt_shape(shape) or '() (one number)'}; expected "
                         f"N x {c}x{h}x{w} or {c}x{h}x{w} (the input of '{spec.name}', channels first){hint}")
    if shape[0] == 0:
        raise InputError(f"{where}: an array of shape {fmt_shape(shape)} holds no inputs; expected at "
                         "least one")


def _as_float32(where: str, array: np.ndarray) -> np.ndarray:
    """N x C x H x W float32, refusing NaN and inf, and float64 values float32 cannot hold."""
    count, value, index = _first_true(~np.isfinite(array), array)
    if count:
        raise InputError(f"{where}: {count:,} of {array.size:,} values are not finite (NaN or inf); the "
                         f"first is {value} at index [{index}]; expected finite numbers")
    with np.errstate(over="ignore"):  # refused just below, naming the values that overflowed
        out = array.astype(np.float32)
    count, value, index = _first_true(np.isinf(out), array)
    if count:
        raise InputError(f"{where}: {count:,} of {array.size:,} float64 values are beyond float32's range "
                         f"(+-{np.finfo(np.float32).max:g}); the first is {value} at index [{index}]; expected "
                         "values float32 can hold")
    return out[None] if out.ndim == 3 else out


def _first_true(mask: np.ndarray, array: np.ndarray) -> tuple[int, str, str]:
    """How many cells ``mask`` marks, and the first one's value in ``array`` and index (C order)."""
    count = int(mask.sum())
    if not count:
        return 0, "", ""
    first = np.unravel_index(np.argmax(mask), mask.shape)  # argmax of booleans: the first True
    return count, f"{float(array[first]):g}", ", ".join(str(int(i)) for i in first)


def array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
