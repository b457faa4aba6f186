"""What every runner of an exported ONNX file shares (ONNX Runtime, OpenVINO), as ``ExportRunner``, a
mixin of their backend classes: the source's lowering table, which file it runs and whether its
exporter is the one the runner pairs with, the batch it feeds (the Keras export's input is NHWC), its
outputs back in canonical NCHW, and its parameters (the file's, ``inspect.param_breakdown``).

A tf2onnx graph may hold an intermediate tensor NCHW or NHWC (its transpose optimizer moves layout
changes around); the tensor's shape against the spec's tells which, and a layer whose C == H == W
cannot be told apart is listed as missing rather than guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...spec import ModelSpec
from ..base import OPSET, Weights
from ..layouts import activation_to_canonical, nchw_to_nhwc, nhwc_to_nchw
from .inspect import exporter_kind


class ExportRunner:
    """Mixed into a ``Backend`` that runs its ``onnx_source``'s export. ``build`` sets ``spec``, ``nhwc``
    (the Keras export), ``tensors`` and ``missing`` (``inspect.layer_tensors``) and ``params``."""

    spec: ModelSpec
    nhwc: bool
    tensors: dict[str, str]
    missing: dict[str, str]
    params: dict[str, Any]

    @classmethod
    def lowering(cls) -> dict[str, Any]:
        """A runner computes whatever its source backend lowered and exported: the source's table."""
        from ..registry import load_backend_class

        return load_backend_class(cls.onnx_source).lowering()

    def runner_file(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None):
        """(path, ModelProto, export cache hit or None) of the file to run: ``onnx_path`` (the export cache's
        file the harness passes), else the source's export through the cache in this process. A file from
        another exporter is refused, naming the runner that pairs with it."""
        import onnx

        hit = None
        if onnx_path is None:
            from .cache import cached_export

            onnx_path, _, hit = cached_export(self.onnx_source, spec, weights, self.options.get("cache_dir"),
                                              int(self.options.get("opset", OPSET)))
        path = Path(onnx_path)
        proto = onnx.load(str(path))
        kind = exporter_kind(proto)
        if kind != self.onnx_source:
            pair = self.name.removesuffix(f"-{self.onnx_source}")
            raise ValueError(f"backend '{self.name}' runs {self.onnx_source} exports; {path} was written by "
                             f"'{proto.producer_name}' (a {kind} export: use {pair}-{kind})")
        return path, proto, hit

    def _input(self, x: np.ndarray) -> np.ndarray:
        """The NCHW float32 batch ``x`` checked against the spec, in the file's input layout."""
        spec = self.spec
        if np.ndim(x) != 4 or tuple(x.shape[1:]) != tuple(spec.input_shape) or x.dtype != np.float32:
            raise ValueError(f"backend '{self.name}', spec '{spec.name}': input {getattr(x, 'dtype', '?')} "
                             f"{list(np.shape(x))}, expected float32 NCHW "
                             f"[N, {', '.join(map(str, spec.input_shape))}]")
        return nchw_to_nhwc(x) if self.nhwc else np.ascontiguousarray(x)

    def _canonical_output(self, output: np.ndarray) -> np.ndarray:
        # The Keras model's output is NHWC whenever it is a feature map.
        return activation_to_canonical(output) if self.nhwc else output

    def _canonical(self, layer: str, array: np.ndarray) -> np.ndarray | None:
        """The layer's tensor in NCHW; None (and the reason in ``missing``) when its layout is unclear."""
        shape = tuple(self.spec.layer(layer).output_shape)
        if len(shape) != 3 or not self.nhwc:
            return array
        c, h, w = shape
        got = tuple(array.shape[1:])
        if (c, h, w) == (h, w, c):
            self.missing[layer] = f"tensor {self.tensors[layer]}: C == H == W ({c}), NCHW and NHWC look the same"
        elif got == (c, h, w):
            return array
        elif got == (h, w, c):
            return nhwc_to_nchw(array)
        else:
            self.missing[layer] = f"tensor {self.tensors[layer]} has shape {list(got)}, the spec's is {list(shape)}"
        return None

    def param_count(self) -> int:
        return int(self.params["weight_params"])

    def param_note(self) -> str:
        """The file's parameter count next to the spec's, in one line."""
        p = self.params
        if p["weight_params"] == p["spec_params"] and p["explained"]:
            return (f"{p['weight_params']:,} in initializers = the spec's; plus {p['constant_params']:,} in "
                    f"exporter constants")
        head = (f"{p['weight_params']:,} in initializers vs the spec's {p['spec_params']:,} "
                f"({p['difference']:+,}, {'explained' if p['explained'] else 'NOT fully explained'})")
        return head + ": " + "; ".join(p["notes"])

    @property
    def param_explained(self) -> bool:
        """Every difference between the file's and the spec's parameters has a known cause."""
        return bool(self.params["explained"])
