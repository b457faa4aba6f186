"""A user's own Keras 3 model as a backend, for ``compare --model SOURCE``: the model computes with
its own weights (the run's ``weights`` are ignored) and its layers are read where the importer
says each spec layer's output lives (``ImportedLayer.readout``): one keras.Model over the same
layers, with those layers' outputs added as outputs.

Spec layers are matched to the imported layers by position, so a shipped spec with other layer
names works as long as the structure is the same. Keras runs on whatever backend it was imported
with (TensorFlow when KERAS_BACKEND is unset); keras is imported inside the methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ...spec import ModelSpec
from ..base import Backend, RunOutput, Weights
from ..layouts import nchw_to_nhwc, nhwc_to_nchw
from . import importer as keras_importer


class KerasModelBackend(Backend):
    name: ClassVar[str] = "keras-model"
    summary: ClassVar[str] = "a user's own Keras 3 model, run by Keras itself with its own weights"
    needs: ClassVar[tuple[tuple[str, str], ...]] = (("tensorflow", "keras"), ("keras", "keras"))
    unsupported_ops: ClassVar[dict[str, str]] = {}

    def build(self, spec: ModelSpec, weights: Weights, onnx_path: Path | None = None) -> None:
        """``weights`` are ignored: the model runs with its own."""
        import keras

        from ..model_source import load_object

        source = self.options["source"]
        model, _ = load_object(source)  # the harness sends only Keras SOURCEs here (MODEL_BACKENDS)
        if self.options.get("state"):  # the weights of the instance the harness imported
            keras_importer.load_state(model, Path(self.options["state"]))
        if keras.backend.backend() == "tensorflow":  # parity is checked at float32: no TF32 on GPUs
            import tensorflow as tf

            tf.config.experimental.enable_tensor_float_32_execution(False)
        imported = keras_importer.import_model(model, source, spec.input_shape)
        if len(imported.layers) != len(spec.layers):
            raise ValueError(f"model '{source}' imports to {len(imported.layers)} layers, spec '{spec.name}' "
                             f"has {len(spec.layers)}")
        self.spec, self.model = spec, model
        self.channels_last = keras_importer.data_format(model) == keras_importer.CHANNELS_LAST
        tensors = {layer.name: tensor for layer, tensor in keras_importer.layer_chain(model)}
        # spec layer -> (Keras layer name, layout, the (C, H, W) map last flattened: for H,W,C features)
        self.readouts: dict[str, tuple[str, str, tuple[int, ...]]] = {}
        last_map: tuple[int, ...] = tuple(spec.input_shape)
        for layer, mine in zip(spec.layers, imported.layers):
            if len(layer.input_shape) == 3:
                last_map = tuple(layer.input_shape)
            if mine.readout is not None:
                self.readouts[layer.name] = (mine.readout, mine.layout, last_map)
        self.output_names = list(dict.fromkeys(keras_name for keras_name, _, _ in self.readouts.values()))
        self.runner = keras.Model(model.inputs, [tensors[n] for n in self.output_names])

    def _input(self, x: np.ndarray) -> np.ndarray:
        c, h, w = self.spec.input_shape
        if np.ndim(x) != 4 or tuple(x.shape[1:]) != (c, h, w) or x.dtype != np.float32:
            raise ValueError(f"backend '{self.name}': input {getattr(x, 'dtype', '?')} {list(np.shape(x))}, "
                             f"expected float32 NCHW [N, {c}, {h}, {w}]")
        return nchw_to_nhwc(x) if self.channels_last else x

    def run(self, x: np.ndarray, layers: Sequence[str] = ()) -> RunOutput:
        unknown = [n for n in layers if n not in (layer.name for layer in self.spec.layers)]
        if unknown:
            raise KeyError(f"spec '{self.spec.name}' has no layer {', '.join(map(repr, unknown))}")
        outs = self.runner.predict_on_batch(self._input(x))
        by_keras = dict(zip(self.output_names, outs if isinstance(outs, (list, tuple)) else [outs]))
        final = self.spec.layers[-1].name
        wanted = [n for n in dict.fromkeys((*layers, final)) if n in self.readouts]
        arrays = {n: canonical_readout(np.asarray(by_keras[self.readouts[n][0]]), *self.readouts[n][1:])
                  for n in wanted}
        return RunOutput(arrays[final], {n: arrays[n] for n in layers if n in arrays})

    def param_count(self) -> int:
        return int(self.model.count_params())  # as backends/keras/backend.py counts: moving statistics included

    def layer_names(self) -> list[str]:
        return list(self.readouts)

    def environment(self) -> dict[str, Any]:
        import keras

        return {**keras_importer.versions(), "keras_backend": keras.backend.backend()}


def canonical_readout(x: np.ndarray, layout: str, flattened_map: tuple[int, ...]) -> np.ndarray:
    """A Keras output in canonical layout: an NHWC map to NCHW; features flattened H,W,C-first from
    the (C, H, W) map ``flattened_map`` to C,H,W order."""
    if layout == "nchw":
        return x
    if x.ndim == 4:
        return nhwc_to_nchw(x)
    c, h, w = flattened_map
    return nhwc_to_nchw(x.reshape(len(x), h, w, c)).reshape(len(x), -1)
