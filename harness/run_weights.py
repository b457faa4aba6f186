"""The weights file a run's workers read: the user's weights (validated, written into the run's
folder), or the canonical weights for (spec, seed) from a cache beside the ONNX exports.

Drawing AlexNet's 61M canonical values and writing them costs ~3 s of CPU before any worker can
start; they are a pure function of the spec's meaning and the seed, so a warm run only reads the
cached file's sidecar. The sidecar vouches for the file by size and modification time; anything
else (absent, altered, unreadable) is drawn and written again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends.onnx.cache import cache_dir, enforce_cap, mark_used
from ..spec import ModelSpec, atomic_write, canonical_weights, load_weights, save_weights, weights_sha256

# Part of the cache key: bump it if the canonical generator's output ever changes.
GENERATOR = "pcg64-per-tensor v1"


@dataclass
class RunWeights:
    source: str  # "canonical, seed N" or the file the user gave
    sha256: str  # weights_sha256 of the tensors
    path: Path | None = None  # a file the workers can read as it is
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # when there is no such file yet

    def file_in(self, run_dir: Path, copy: bool = False) -> Path:
        """The weights file for the run's jobs; written into ``run_dir`` when needed, or copied
        there when ``copy`` (a saved run keeps every file it used)."""
        target = run_dir / "weights.safetensors"
        if self.path is None:
            save_weights(self.arrays, target)
            return target
        if copy:
            shutil.copyfile(self.path, target)
            return target
        return self.path


def run_weights(spec: ModelSpec, weights: str | None, seed: int, directory: str | Path | None = None) -> RunWeights:
    if weights:
        arrays = load_weights(weights, spec)
        return RunWeights(str(weights), weights_sha256(arrays), arrays=arrays)
    source = f"canonical, seed {seed}"
    key = hashlib.sha256(json.dumps([spec.sha256, seed, GENERATOR]).encode()).hexdigest()[:16]
    path = cache_dir(directory) / "weights" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', spec.name)}-{key}.safetensors"
    sidecar = path.with_suffix(".json")
    try:
        meta, stat = json.loads(sidecar.read_text()), path.stat()
        if (meta["size"], meta["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            mark_used(path)  # the size cap removes least recently used entries first
            return RunWeights(source, meta["sha256"], path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    arrays = canonical_weights(spec, seed)
    sha = weights_sha256(arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(arrays, path, metadata={"spec": spec.name, "spec_sha256": spec.sha256, "seed": str(seed)})
    stat = path.stat()
    atomic_write(sidecar, json.dumps({"sha256": sha, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}) + "\n")
    enforce_cap(path.parent, keep=(path,))
    return RunWeights(source, sha, path)
