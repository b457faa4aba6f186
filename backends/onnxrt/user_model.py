"""`compare --model model.onnx`: ONNX Runtime (CPU) runs the user's own file, with its own weights.

The importer (``backends/onnx/importer.py``) says which tensor holds each layer's output and in
which layout; the session runs a copy of the file that also outputs those tensors, and each is
turned to canonical layout. Spec layers map to the imported layers by position, so a shipped spec
with other names works as long as it has as many layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ...spec import ModelSpec
from ..base import Backend, RunOutput, Weights
from ..layouts import nchw_to_nhwc


def float_initializer_params(proto) -> int:
    """Float initializers of more than one value: what ``onnx.inspect.param_breakdown`` counts as a
    file's weight parameters once no initializer is named after a spec tensor (a user's file)."""
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    sizes = (int(np.prod(t.dims, dtype=np.int64)) for t in proto.graph.initializer if t.data_type in floats)
    return sum(size for size in sizes if size > 1)


class OnnxModelBackend(Backend):
    name: ClassVar[str] = "onnx-model"
    summary: ClassVar[str] = "ONNX Runtime running the user's own ONNX file (compare --model)"
    needs: ClassVar[tuple[tuple[str, str], ...]] = (("onnxruntime", "onnx"), ("onnx", "onnx"))

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        """Load ``options["source"]`` and import it for its readouts; ``weights`` are ignored: the
        model runs with its own."""
        import onnxruntime as ort

        from ..model_source import load_object
        from ..onnx.inspect import with_layer_outputs

        source = self.options["source"]
        proto, importer = load_object(source)
        if importer.FRAMEWORK != "onnx":
            raise ValueError(f"backend '{self.name}' runs ONNX models; '{source}' is a {importer.FRAMEWORK} model")
        imported = importer.import_model(proto, source, tuple(spec.input_shape))
        if len(imported.layers) != len(spec.layers):
            raise ValueError(f"'{source}' has {len(imported.layers)} layers, spec '{spec.name}' has "
                             f"{len(spec.layers)}: they cannot be matched by position")
        self.spec, self.proto = spec, proto
        self.nhwc = importer.input_layout(proto) == "nhwc"
        self.readouts = {layer.name: (got.readout, got.layout) for layer, got in zip(spec.layers, imported.layers)
                         if got.readout}
        self.versions = imported.versions
        model = with_layer_outputs(proto, [tensor for tensor, _ in self.readouts.values()])
        self.session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        self.input_name = importer.graph_inputs(proto)[0].name
        self.output_name = proto.graph.output[0].name
        self._to_canonical = importer.readout_to_canonical

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        wanted = [n for n in dict.fromkeys(layers) if n in self.readouts]
        names = list(dict.fromkeys([self.output_name] + [self.readouts[n][0] for n in wanted]))
        feed = {self.input_name: nchw_to_nhwc(x) if self.nhwc else np.ascontiguousarray(x)}
        values = dict(zip(names, self.session.run(names, feed)))
        found = {n: self._canonical(n, values[self.readouts[n][0]]) for n in wanted}
        last = self.spec.layers[-1].name
        output = self._canonical(last, values[self.output_name]) if last in self.readouts else values[self.output_name]
        return RunOutput(output, found)

    def _canonical(self, layer: str, array: np.ndarray) -> np.ndarray:
        return self._to_canonical(array, self.readouts[layer][1], tuple(self.spec.layer(layer).input_shape))

    def param_count(self) -> int:
        return float_initializer_params(self.proto)

    def layer_names(self) -> list[str]:
        return list(self.readouts)

    def environment(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {**self.versions, "onnxruntime": ort.__version__, "providers": self.session.get_providers(),
                "input_layout": "NHWC" if self.nhwc else "NCHW"}
