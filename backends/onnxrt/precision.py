"""The reduced-precision models ONNX Runtime runs: fp16 by conversion, int8 by static QDQ quantization.

fp16: ``onnxruntime.transformers.float16.convert_float_to_float16`` with ``keep_io_types``: weights
and every tensor between ops become float16, a Cast at the input and at the output keep the graph's
I/O float32. What the CPU then computes is ONNX Runtime's choice, not the file's: its CPU provider has
float16 kernels for few ops (on x86: none for Conv, Gemm, pooling or LRN), and for the others it
inserts casts and computes in float32 (InsertCastTransformer), removing the float32 -> float16 ->
float32 cast pairs between such ops. ``kernel_dtypes`` reads what each kernel really ran in from an
ONNX Runtime profile, so the results say so instead of assuming float16 arithmetic.

int8: ``onnxruntime.quantization.quantize_static`` in QDQ format, weights quantized per output
channel to 7 bits (``reduce_range``), uint8 activations with MinMax ranges calibrated on the given
inputs. Full 8-bit weights are not safe on x86 CPUs without VNNI (this AVX2 machine): their u8 x s8
multiply adds pairs of products into int16 with saturation, and measured on alexnet-owt that
saturation made relu1 7.6e-2 off instead of 1.5e-2. Calibration
(``calibrate``) and quantization (``quantize_int8``) are separate steps so that the ranges in between
can be seen, timed and, in tests, planted (the backend's ``calibration_ranges`` is the seam).

Readouts (``readout_tensors``): a spec layer's tensor in the fp32 file, followed into the converted
graph: through the output Cast the fp16 converter adds (its float16 input is the layer's value), and
through the QuantizeLinear -> DequantizeLinear pair the quantizer adds after each quantized op (the
dequantized float tensor is what the next op consumes, so it is the layer's value as the int8 model
computes it; the tensor before QuantizeLinear is a float value ONNX Runtime never materializes once it
fuses DQ -> op -> Q into an integer kernel).
"""

from __future__ import annotations

import json
import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

FP16_KIND = "fp16 (converted, io float32)"
# Why a float32 file is not run in bfloat16 (measured on onnxruntime 1.31, CPU provider, opset 18).
BF16_REASON = ("ONNX Runtime's CPU provider has no bfloat16 kernels (Gemm, LRN, Relu: 'Could not find an "
               "implementation'; opset-18 Conv and MaxPool do not admit bfloat16) and inserts float32 casts for "
               "float16 only")
CALIBRATION_CHUNK = 8  # inputs per calibration run: bounds the calibrator's memory on AlexNet
CLIPPERS = ("Relu", "Clip")  # activations whose range quantize_static gives to their input
Ranges = dict[str, tuple[float, float]]  # tensor -> (min, max) its int8 quantization covers
Feeds = Iterable[dict[str, np.ndarray]]  # input name -> batch, per calibration run


def int8_kind(n_inputs: int) -> str:
    return f"int8 QDQ static, per-channel weights, MinMax calibration on {n_inputs} inputs"


def to_fp16(proto):
    """A float16 copy of the model whose graph input and output stay float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(proto, keep_io_types=True)


@contextmanager
def _quiet_quantizer():
    """quantize_static logs a root-logger warning to run its pre-processing, which would rewrite the
    graph (fusions, renamed tensors) and lose the spec layer -> tensor map: it is not run."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def calibrate(model_path: Path, feeds: Feeds, workdir: Path) -> Ranges:
    """MinMax ranges (min, max over all inputs) of every float tensor, by running the model on ``feeds``."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    class OneFeed(CalibrationDataReader):
        def __init__(self, feed):
            self.feeds = iter([feed])

        def get_next(self):
            return next(self.feeds, None)

    calibrator = create_calibrator(Path(model_path), None, str(Path(workdir) / "augmented.onnx"),
                                   CalibrationMethod.MinMax)
    # One feed per collect_data: each call merges its minima and maxima into the running ranges and drops
    # the tensors, where one call over all feeds would hold every tensor of every run until the end.
    for feed in feeds:
        calibrator.collect_data(OneFeed(feed))
    return {name: (float(np.min(data.lowest)), float(np.max(data.highest)))  # 1-element arrays
            for name, data in calibrator.compute_data().items()}


def quantize_int8(model_path: Path, ranges: Ranges, out_path: Path, exclude: list[str]) -> None:
    """QDQ int8 model of ``model_path`` with activation ranges ``ranges`` (given to quantize_static as its
    calibration cache, so that it quantizes exactly these ranges); the nodes named in ``exclude`` stay float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    cache = Path(out_path).with_suffix(".ranges.json")
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, {
        name: (np.float32(lo), np.float32(hi)) for name, (lo, hi) in ranges.items()}), cache)
    with _quiet_quantizer():
        quantize_static(str(model_path), str(out_path), None, quant_format=QuantFormat.QDQ, per_channel=True,
                        # uint8 activations with 7-bit weights: x86 CPUs without VNNI (AVX2) multiply u8 x s8
                        # pairs into int16 with saturation, which full-range weights overflow (ORT's advice).
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=cache,
                        nodes_to_exclude=exclude,
                        # ReLUs stay nodes: quantize_static otherwise folds them into the quantization
                        # of the op before, and the spec's relu layers would have no tensor.
                        extra_options={"QDQKeepRemovableActivations": True})


def quantized_model(model_path: Path, feeds: Feeds,
                    ranges_of: Callable[[Path, Feeds, Path], Ranges]) -> tuple[Any, float, float, list[str]]:
    """(int8 ModelProto, calibration seconds, quantization seconds, tensors left float). The files in between live in a
    temporary folder, deleted on return: nothing is cached."""
    import time

    import onnx

    with tempfile.TemporaryDirectory(prefix="alexbench-int8-") as tmp:
        start = time.perf_counter()
        ranges = ranges_of(Path(model_path), feeds, Path(tmp))
        calibrated = time.perf_counter()
        # A tensor that holds -inf (the padding torch's export gives a padded max pool) has no int8 scale
        # (quantize_static would compute a NaN one): without a range, it and the ops on it stay float.
        unquantized = sorted(name for name, bounds in ranges.items() if not np.all(np.isfinite(bounds)))
        finite = {name: bounds for name, bounds in ranges.items() if name not in unquantized}
        graph = onnx.load(str(model_path), load_external_data=False).graph
        touching = [node.name for node in graph.node if set(unquantized) & {*node.input, *node.output}]
        quantize_int8(Path(model_path), finite, Path(tmp) / "int8.onnx", touching)
        model = onnx.load(str(Path(tmp) / "int8.onnx"))
        return model, calibrated - start, time.perf_counter() - calibrated, unquantized


def readout_tensors(converted, tensors: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The fp32 file's layer -> tensor map followed into ``converted`` (see the module docstring);
    and layer -> why its tensor is not in the converted graph."""
    graph = converted.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    found, missing = {}, {}
    for layer, name in tensors.items():
        node = producer.get(name)
        if node is None:
            missing[layer] = f"tensor {name} is not in the converted model"
            continue
        if node.op_type == "Cast" and name in outputs:
            name = node.input[0]  # the fp16 converter's output Cast: its input is the float16 value
        for q in consumers.get(name, []):
            dq = [d for d in consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"] \
                if q.op_type == "QuantizeLinear" else []
            if dq:
                name = dq[0].output[0]
                break
        readers = consumers.get(name, [])
        if producer[name].op_type == "DequantizeLinear" and len(readers) == 1 and readers[0].op_type in CLIPPERS:
            # quantize_static gives a tensor read only by a ReLU (or Clip) that activation's output range
            # (onnxruntime/quantization/base_quantizer.py, adjust_tensor_ranges): its negative values are
            # clipped, so its int8 value is the activation's, not the layer's.
            missing[layer] = (f"int8: quantized with the range of the {readers[0].op_type} after it (negative "
                              f"values clipped): its value is that activation's output")
            continue
        found[layer] = name
    return found, missing


def with_typed_outputs(proto, names: list[str]):
    """A copy of ``proto`` that also outputs ``names``, each declared with its own element type (a
    float16 tensor declared float would fail the session's type check)."""
    from ..onnx.inspect import with_layer_outputs

    model = with_layer_outputs(proto, names)
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    for output in model.graph.output:
        if output.name in names and output.name in types:
            output.type.tensor_type.elem_type = types[output.name]
    return model


def kernel_dtypes(make_session: Callable[[Any], Any], feed: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Op type -> the element types its kernels ran with (inputs other than int64 shapes and axes), from
    one profiled run: what ONNX Runtime really computed in, after its own casts and fusions."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="alexbench-ort-profile-") as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.log_severity_level = 3
        session = make_session(options)
        session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    seen: dict[str, set[str]] = {}
    for event in events:
        args = event.get("args", {})
        if event.get("cat") == "Node" and "op_name" in args:
            types = {t for shape in args.get("input_type_shape", []) for t in shape if t != "int64"}
            seen.setdefault(args["op_name"], set()).update(types)
    return {op: sorted(types) for op, types in sorted(seen.items())}
