"""The spec's Keras model converted to a float32 .tflite file by TensorFlow's converter, through the export
cache (backends/onnx/cache.py, the same entries, locks, checks and size cap as the ONNX exports).

The model is the Keras backend's lowering with LRN as TensorFlow's own op (``layers.py``), on Keras'
TensorFlow engine; ``tf.lite.TFLiteConverter.from_keras_model`` converts it with no optimizations (float32
weights and kernels). The cache key covers spec, weights, this route's name, the versions of tensorflow,
keras and ai-edge-litert, alexbench's version, and the LRN alphas the file holds (a backend that lowers LRN
differently gets its own file). What the converter prints goes to stderr.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from ...spec import ModelSpec, weights_sha256
from ..base import Weights
from ..onnx.cache import cached_file, content_key, file_path

ROUTE = "tf.lite.TFLiteConverter.from_keras_model float32, LRN as tf.nn.local_response_normalization v1"
PACKAGES = ("tensorflow", "keras", "ai-edge-litert")
KIND = "keras"  # the cache's entries are named after the framework a file comes from: "tflite-keras"


def tflite_path(spec: ModelSpec, weights_sha: str, lrn_alphas: Mapping[str, float],
                directory: str | Path | None = None) -> Path:
    key = content_key(spec, weights_sha, ROUTE, PACKAGES, lrn_alpha=dict(lrn_alphas))
    return file_path(KIND, spec, key, directory, suffix=".tflite")


def cached_tflite(spec: ModelSpec, weights: Weights, lowering: Mapping[str, Any], lrn_alphas: Mapping[str, float],
                  directory: str | Path | None = None) -> tuple[Path, dict[str, Any], bool]:
    """(path, the converter's facts, cache hit): the cached file, or one converted now with the Keras
    ``lowering`` table (the caller's, holding ``lrn_alphas``)."""
    w_sha = weights_sha256(weights)
    return cached_file(tflite_path(spec, w_sha, lrn_alphas, directory), KIND, spec, w_sha,
                       lambda tmp: convert(spec, weights, lowering, tmp))


def convert(spec: ModelSpec, weights: Weights, lowering: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Write the float32 .tflite of the spec's Keras model to ``path``; return the conversion's facts."""
    import keras
    import tensorflow as tf

    from ..keras.lowering import keras_model_from_spec

    model = keras_model_from_spec(spec, weights, builders=lowering)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # "Saved artifact at ...", the signature listing
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    Path(path).write_bytes(flatbuffer)
    return {"converter": ROUTE, "convert_s": round(time.perf_counter() - started, 3),
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}
