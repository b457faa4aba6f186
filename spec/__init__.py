"""The spec language: load and validate YAML specs, infer shapes/params/MACs, canonical weights."""

from .errors import Location, SpecError
from .files import atomic_write
from .loader import load_spec, parse_spec, resolve_spec_path, shipped_spec_names
from .model import InitDist, Layer, ModelSpec, Param, Preprocessing
from .ops import OPS, fmt_shape
from .weights import canonical_weights, check_weights, load_weights, save_weights, weights_sha256

__all__ = [
    "OPS", "InitDist", "Layer", "Location", "ModelSpec", "Param", "Preprocessing", "SpecError",
    "atomic_write", "canonical_weights", "check_weights", "fmt_shape", "load_spec", "load_weights", "parse_spec",
    "resolve_spec_path", "save_weights", "shipped_spec_names", "weights_sha256",
]
