"""Activation layouts between the canonical NCHW and the channels-last NHWC that Keras and its
exports use. Pure NumPy: any backend whose framework runs channels-last converts here.
"""

from __future__ import annotations

import numpy as np


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(need_rank(x, 4, "activation"), (0, 2, 3, 1)))


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(need_rank(x, 4, "activation"), (0, 3, 1, 2)))


def activation_to_canonical(x: np.ndarray) -> np.ndarray:
    """A Keras activation in canonical layout: feature maps NHWC -> NCHW; (N, F) unchanged."""
    return nhwc_to_nchw(x) if np.ndim(x) == 4 else np.asarray(x)


def activation_from_canonical(x: np.ndarray) -> np.ndarray:
    """The inverse: feature maps NCHW -> NHWC (e.g. a dropout mask for the Keras activation it multiplies)."""
    return nchw_to_nhwc(x) if np.ndim(x) == 4 else np.ascontiguousarray(x)


def need_rank(x: np.ndarray, rank: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != rank:
        raise ValueError(f"{what}: expected a rank-{rank} array, received shape {list(x.shape)}")
    return x
