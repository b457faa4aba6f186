"""Canonical weights: one framework-neutral float32 tensor set per (spec, seed).

Layouts are the canonical ones (conv OIHW, grouped conv O x I/groups x kH x kW, linear
(out, in), batchnorm weight/bias/running_mean/running_var), names are ``<layer>.<param>``,
and files are safetensors. Every tensor has its own PCG64 stream derived from the seed and
its name, so a (spec, seed) pair gives the same bytes on every machine, and renaming or
adding one layer leaves the others' tensors unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path

import numpy as np

from .errors import SpecError, strip_ansi
from .files import atomic_write
from .model import InitDist, ModelSpec, Param

Weights = dict[str, np.ndarray]


def _rng(seed: int, tensor_name: str) -> np.random.Generator:
    words = np.frombuffer(hashlib.sha256(tensor_name.encode()).digest()[:16], dtype="<u4")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *map(int, words)])))


def _draw(init: InitDist, param: Param, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    a, shape = init.args, param.shape
    if init.dist == "constant":
        values = np.full(shape, a["value"], dtype=np.float64)
    elif init.dist == "normal":
        values = a["mean"] + a["std"] * rng.standard_normal(shape)
    elif init.dist == "uniform":
        values = rng.uniform(a["low"], a["high"], shape)
    elif init.dist == "fan_in_uniform":
        bound = a["gain"] / math.sqrt(fan_in)
        values = rng.uniform(-bound, bound, shape)
    elif init.dist == "glorot_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        values = rng.uniform(-bound, bound, shape)
    else:  # parse_init only admits the names above
        raise AssertionError(init.dist)
    return values.astype(np.float32)


def canonical_weights(spec: ModelSpec, seed: int = 0) -> Weights:
    if not isinstance(seed, int) or seed < 0:
        raise SpecError(None, "weights", "seed must be a non-negative integer", repr(seed), "0, 1, 2, ...")
    out: Weights = {}
    for layer in spec.layers:
        for pname, param in layer.params.items():
            key = f"{layer.name}.{pname}"
            out[key] = _draw(param.init, param, layer.fan_in, layer.fan_out, _rng(seed, key))
    return out


def weights_sha256(weights: Weights) -> str:
    h = hashlib.sha256()
    for key in sorted(weights):
        h.update(key.encode())
        h.update(str(weights[key].shape).encode())
        h.update(np.ascontiguousarray(weights[key], dtype=np.float32).tobytes())
    return h.hexdigest()


def check_weights(spec: ModelSpec, weights: Weights, source: str = "weights") -> None:
    """Names, shapes, dtypes and finiteness against the spec; one error listing every problem."""
    expected = spec.param_shapes()
    problems = []
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    for key, shape in expected.items():
        tensor = weights.get(key)
        if tensor is None:
            continue
        if tuple(tensor.shape) != tuple(shape):
            problems.append(f"{key} has shape {list(tensor.shape)}, expected {list(shape)}")
        elif tensor.dtype != np.float32:
            problems.append(f"{key} has dtype {tensor.dtype}, expected float32")
        elif not np.isfinite(tensor).all():
            bad = int((~np.isfinite(tensor)).sum())
            problems.append(f"{key} has {bad} NaN/Inf values")
    if problems:
        raise SpecError(None, source, f"weights do not fit spec '{spec.name}'", "; ".join(problems),
                        f"{len(expected)} float32 tensors named <layer>.<param> in canonical layouts")


def save_weights(weights: Weights, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write safetensors atomically (temp file in the same folder, then rename)."""
    atomic_write(path, safetensors_bytes(weights, metadata))


def safetensors_bytes(weights: Weights, metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors format, written here so the bytes are reproducible: the reference writer keeps
    ``__metadata__`` in a hash map whose order changes from process to process. Tensors are stored in
    name order, the JSON header is sorted and padded with spaces to a multiple of 8 bytes."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name], dtype=np.float32)
        data = array.astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def load_weights(path: str | Path, spec: ModelSpec | None = None) -> Weights:
    """Read canonical safetensors, or a torchvision-style AlexNet state_dict (``.pt``/``.pth``)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(None, "weights", "no such weights file", str(path), "a .safetensors or .pth file")
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file starts with its header's length (8 bytes) and '{': that, or the extension,
    # wins over the pickle/zip sniff (a header length of 128 + 256k starts with the pickle byte 0x80).
    safetensors = path.suffix == ".safetensors" or head[8:9] == b"{"
    if not safetensors and (path.suffix in (".pt", ".pth") or head[:2] == b"PK" or head[:1] == b"\x80"):
        from .torchvision_import import load_torchvision_state_dict

        weights = load_torchvision_state_dict(path, spec)
    else:
        weights = _read_safetensors(path)
    if spec is not None:
        check_weights(spec, weights, str(path))
    return weights


def _read_safetensors(path: Path) -> Weights:
    try:
        from safetensors import SafetensorError
        from safetensors.numpy import load
    except ModuleNotFoundError:  # a worker in another environment (compare --python) has NumPy only
        SafetensorError, load = ValueError, _load_with_numpy

    data = path.read_bytes()
    expected = "a safetensors file such as 'alexbench weights SPEC -o FILE' writes"
    short = _safetensors_truncation(data)
    if short:
        raise SpecError(None, str(path), "truncated or corrupt safetensors file", short,
                        expected + " (copy or download it again)")
    try:
        return dict(load(data))
    except (SafetensorError, ValueError, TypeError) as exc:
        raise SpecError(None, str(path), "not a readable safetensors file",
                        f"{len(data):,} bytes ({strip_ansi(str(exc))})", expected) from None


# safetensors' dtype names -> NumPy's, little-endian (the format's byte order).
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                       "I8": "i1", "U8": "u1", "BOOL": "?"}


def _load_with_numpy(data: bytes) -> Weights:
    """safetensors' ``numpy.load`` with NumPy alone: an 8-byte header length, a JSON header (name ->
    dtype, shape, byte offsets after the header), the tensors' bytes."""
    size = struct.unpack("<Q", data[:8])[0]
    out = {}
    for name, entry in json.loads(data[8:8 + size]).items():
        if name == "__metadata__":
            continue
        if entry.get("dtype") not in _SAFETENSORS_DTYPES:
            raise ValueError(f"tensor '{name}' is {entry.get('dtype')}, which needs the safetensors package")
        dtype = np.dtype(_SAFETENSORS_DTYPES[entry["dtype"]])
        start, end = entry["data_offsets"]
        out[name] = np.frombuffer(data, dtype, (end - start) // dtype.itemsize, 8 + size + start).reshape(
            entry["shape"]).copy()
    return out


def _safetensors_truncation(data: bytes) -> str | None:
    """Why a file that starts like safetensors is cut short, or None."""
    if len(data) < 8:
        return f"{len(data)} bytes, shorter than the 8-byte header length"
    size = struct.unpack("<Q", data[:8])[0]
    if size > len(data) - 8:
        return f"{len(data):,} bytes, but the header alone says {size:,}"
    try:
        header = json.loads(data[8:8 + size])
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None  # not a size problem: the reader says what is wrong
    if 8 + size + end > len(data):
        return f"{len(data):,} bytes, but its header describes {8 + size + end:,}"
    return None
