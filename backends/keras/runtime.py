"""Which Keras backend this process runs: Keras reads ``KERAS_BACKEND`` once, when first imported."""

from __future__ import annotations

import os
import sys


def import_keras(keras_backend: str):
    """keras, running on ``keras_backend`` ('tensorflow', 'torch' or 'jax')."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = keras_backend
    import keras

    if keras.backend.backend() != keras_backend:
        raise RuntimeError(
            f"keras in this process runs on '{keras.backend.backend()}', expected '{keras_backend}': Keras reads "
            f"KERAS_BACKEND once, when first imported; set KERAS_BACKEND={keras_backend} before importing keras "
            f"(each backend runs in its own worker process for this reason)")
    return keras
