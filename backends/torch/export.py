"""torch -> ONNX: ``torch.onnx.export(dynamo=True)`` on ``torch_model_from_spec``, opset 18, the
batch a ``torch.export.Dim`` given by position, then checked and described (``onnx/inspect.py``).

The exporter's optimizer may fold BatchNorm into the Conv in front of it, drop all-zero biases
and share initializers with identical values; ``param_breakdown`` explains each.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ...spec import ModelSpec
from ..base import OPSET, Weights
from ..onnx.inspect import ExportFailed, ExportInfo, describe, export_failed


def onnx_from_torch(spec: ModelSpec, weights: Weights, path: str | Path, opset: int = OPSET) -> ExportInfo:
    from .lowering import torch_model_from_spec

    return export_torch_model(torch_model_from_spec(spec, weights), spec, path, opset)




@contextmanager
def _out_of_place_relus(model):
    """An in-place ReLU merges into the node before it in the exported graph, and that spec
    layer loses its own tensor (no per-layer comparison); export with out-of-place ones."""
    import torch

    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU) and m.inplace]
    for m in relus:
        m.inplace = False
    try:
        yield
    finally:
        for m in relus:
            m.inplace = True




def export_torch_model(model, spec: ModelSpec, path: str | Path, opset: int = OPSET) -> ExportInfo:
    """Export a built torch model (``torch_model_from_spec``) to ``path`` and check the file."""
    import onnxscript
    import torch

    path = Path(path)
    exporter = f"torch.onnx.export(dynamo=True) {torch.__version__}, onnxscript {onnxscript.__version__}"
    start = time.perf_counter()
    try:
        device = next(iter(model.parameters())).device
        # Batch 2 in the example: torch.export specialises sizes 0 and 1, so batch 1 would pin it.
        example = torch.zeros((2, *spec.input_shape), dtype=torch.float32, device=device)
        batch = torch.export.Dim("batch", min=1)
        with _logged("onnxscript", "torch.onnx") as logged, _out_of_place_relus(model):
            program = torch.onnx.export(model, (example,), None, dynamo=True, dynamic_shapes=({0: batch},),
                                        opset_version=opset, input_names=["input"], output_names=["output"],
                                        verbose=False)
        program.save(str(path), external_data=False)
    except Exception as exc:  # the exporter's own message is the useful part
        raise export_failed("torch", exporter, spec, opset, exc) from exc
    export_s = time.perf_counter() - start
    got = program.model.opset_imports.get("", 0)
    if got != opset:  # torch writes opset 18 when it cannot convert down, and only logs why
        why = [m for m in logged if "convert" in m.lower()] or logged[-2:]
        raise ExportFailed(f"torch -> ONNX export of spec '{spec.name}': asked for opset {opset}, {exporter} wrote "
                           f"opset {got}; it logged: {' | '.join(why) or 'nothing'}")
    versions = {"torch": torch.__version__, "onnxscript": onnxscript.__version__}
    # The model's state_dict is the canonical weight set: the breakdown checks shared values on it.
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return describe(path, spec, weights, exporter, versions, opset, export_s)




@contextmanager
def _logged(*loggers: str) -> Iterator[list[str]]:
    """Collect warnings the exporter only logs (e.g. why a version conversion failed)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            messages.append(" ".join(text.split()))

    handler = Collect(logging.WARNING)
    for name in loggers:
        logging.getLogger(name).addHandler(handler)
    try:
        yield messages
    finally:
        for name in loggers:
            logging.getLogger(name).removeHandler(handler)
