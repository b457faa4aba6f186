"""The spec layer -> tensor rule (backends/litert/flatbuffer.py) on a file described by hand, the way TF 2.21's
converter names a grouped convolution whose bias add is fused into the ReLU after it."""

from __future__ import annotations

from alexbench.backends.litert.flatbuffer import Op, Tensor, TfliteModel, layer_scopes, layer_tensors
from alexbench.spec import parse_spec

SPEC = parse_spec("""
name: net
input: [4, 6, 5]
layers:
  - {name: conv2, op: conv2d, filters: 4, kernel: 3, padding: 1, groups: 2}
  - {name: relu2, op: relu}
  - {name: flatten, op: flatten}
  - {name: drop, op: dropout, rate: 0.5}
  - {name: fc, op: linear, units: 3}
""", "net.yaml")

NAMES = ["serving_default_input:0",
         "net_1/conv2_1/convolution1", "net_1/conv2_1/convolution_11",
         "net_1/conv2_1/concat",  # the groups' outputs, before the bias add
         "net_1/relu2_1/Relu;net_1/conv2_1/add",  # the bias add fused into the ReLU
         "net_1/relu2_1/Relu1",  # Permute's transpose, named after the layer before: NCHW
         "net_1/flatten_1/Reshape",
         "StatefulPartitionedCall_1:0"]
SHAPES = [(1, 6, 5, 4), (1, 6, 5, 2), (1, 6, 5, 2), (1, 6, 5, 4), (1, 6, 5, 4), (1, 4, 6, 5), (1, 120), (1, 3)]
OPS = [("CONV_2D", 0, 1), ("CONV_2D", 0, 2), ("CONCATENATION", 1, 3), ("ADD", 3, 4), ("TRANSPOSE", 4, 5),
       ("RESHAPE", 5, 6), ("FULLY_CONNECTED", 6, 7)]
MODEL = TfliteModel([Tensor(i, n, s, "FLOAT32", False) for i, (n, s) in enumerate(zip(NAMES, SHAPES))],
                    [Op(i, code, (a,), (b,)) for i, (code, a, b) in enumerate(OPS)], (0,), (7,))


def test_scopes_are_read_off_every_fused_name():
    assert layer_scopes("net_1/relu2_1/Relu;net_1/conv2_1/add", {"conv2", "relu2"}) == ["relu2", "conv2"]
    assert layer_scopes("net_1/conv2_pad_1/Pad", {"conv2"}) == []  # a helper layer is not the spec's


def test_fused_layers_are_missing_dropout_shares_and_transposes_are_never_a_layers_tensor():
    found, missing = layer_tensors(MODEL, SPEC)
    assert found == {"relu2": 4, "flatten": 6, "drop": 6, "fc": 7}
    # conv2's concat has its shape but not its bias: its output exists only inside relu2's op
    assert missing["conv2"].startswith("fused or folded by the converter into a later layer's op "
                                       "(tensor 'net_1/relu2_1/Relu;net_1/conv2_1/add')")


def test_a_tensor_of_the_wrong_shape_is_not_taken():
    tensors = list(MODEL.tensors)
    tensors[6] = Tensor(6, "net_1/flatten_1/Reshape", (1, 119), "FLOAT32", False)
    found, missing = layer_tensors(TfliteModel(tensors, MODEL.ops, MODEL.inputs, MODEL.outputs), SPEC)
    assert "flatten" not in found and "drop" not in found
    assert missing["flatten"] == ("tensor 'net_1/flatten_1/Reshape' has shape [119] (batch excluded), the spec's "
                                  "is [120] (NHWC)")
