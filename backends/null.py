"""The ``null`` backend: no framework, no work. Running it through the harness measures the
harness' own overhead (worker start, file transfer, clocks) to subtract from real backends.

It is not a parity backend: its output is zeros and it counts no parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..spec import ModelSpec
from .base import Backend, RunOutput, Weights


class NullBackend(Backend):
    name = "null"
    summary = ("no framework, no work: bench runs it to measure the harness's own overhead; "
               "not a parity backend (its output is zeros)")
    needs = ()


    @classmethod
    def lowering(cls) -> dict[str, Any]:
        """Every op "lowers" to nothing: the null backend computes no op, it only returns zeros."""
        from ..spec.ops import OPS

        return dict.fromkeys(OPS)

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        self.spec = spec

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        return RunOutput(np.zeros((x.shape[0], *self.spec.output_shape), dtype=np.float32))

    def param_count(self) -> int:
        return 0

    def layer_names(self) -> list[str]:
        return []

    def environment(self) -> dict[str, Any]:
        return {"framework": None}

    # --- bench hooks (see Backend): every precision, as nothing is computed ---
    bench_precisions = ("float32", "tf32", "float16", "bfloat16")
    no_compiled_reason = "nothing to compile"
    computes_nothing = True

    def prepare_bench(self, precision: str, compiled: bool, device: str, threads: int) -> str:
        return "no-op"

    def bench_step(self, x: np.ndarray, device: str, precision: str = "float32") -> Callable[[], Any]:
        return lambda: None
