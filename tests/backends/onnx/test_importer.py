"""ONNX import: files written by torch.onnx.export (dynamo and TorchScript routes) and by tf2onnx
(both routes of backends/keras/export.py's era: the stateless call and convert.from_keras) import
to specs whose float64 reference reproduces the source model; torchvision's AlexNet imports to
alexnet-owt; branches and unknown ops are refused in one line."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from alexbench import load_spec
from alexbench.backends.onnx import importer
from alexbench.backends.reference.backend import ReferenceBackend
from alexbench.spec.imported import ImportRefused, build_spec

TOL = 1e-4


def export_torch(model, shape, path, dynamo: bool = True):
    import torch

    x = torch.zeros((2, *shape))
    kwargs = {"dynamic_shapes": ({0: torch.export.Dim("batch", min=1)},)} if dynamo else \
        {"dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}}}
    torch.onnx.export(model.eval(), (x,), str(path), dynamo=dynamo, opset_version=18, input_names=["input"],
                      output_names=["output"], **kwargs)
    return path


def export_keras(model, path, route: str):
    import tensorflow as tf
    import tf2onnx

    from alexbench.backends.keras.export import _keras_stateless_proto, _name_io

    x_spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input")
    if route == "stateless":
        proto = _keras_stateless_proto(model, x_spec, 18)
        _name_io(proto)
    else:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=[x_spec], opset=18)
    onnx.save_model(proto, str(path))
    return path


def conv_bn():
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 5, 2))
    with __import__("torch").no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory, test_model):
    """name -> (onnx path, source model's function of an NCHW batch, input C, H, W)."""
    import torch


    folder = tmp_path_factory.mktemp("onnx-import")
    out = {}
    net = test_model("torch_models.py:small_functional_net")
    torch_fn = lambda x, m=net: m(torch.from_numpy(x)).detach().numpy()  # noqa: E731
    out["torch-dynamo"] = (export_torch(net, (3, 32, 28), folder / "small_torch.onnx"), torch_fn, (3, 32, 28))
    cb = conv_bn()
    cb_fn = lambda x, m=cb: m(torch.from_numpy(x)).detach().numpy()  # noqa: E731
    for dynamo in (True, False):
        path = export_torch(cb, (3, 8, 7), folder / f"conv_bn_{dynamo}.onnx", dynamo)
        out[f"conv-bn-{'dynamo' if dynamo else 'torchscript'}"] = (path, cb_fn, (3, 8, 7))
    keras_model = test_model("keras_models.py:small_functional_keras")
    keras_fn = lambda x, m=keras_model: np.asarray(m(x.transpose(0, 2, 3, 1), training=False))  # noqa: E731
    for route in ("stateless", "from_keras"):
        out[f"keras-{route}"] = (export_keras(keras_model, folder / f"small_keras_{route}.onnx", route), keras_fn,
                                 (3, 28, 32))
    return out


@pytest.mark.parametrize("name", ["torch-dynamo", "conv-bn-dynamo", "conv-bn-torchscript", "keras-stateless",
                                  "keras-from_keras"])
def test_imported_spec_reproduces_the_source_model(files, name):
    path, source_fn, shape = files[name]
    imported = importer.import_model(importer.load_file(path), str(path), None)
    result = build_spec(imported)
    assert result.spec.input_shape == shape
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    reference = ReferenceBackend()
    reference.build(result.spec, result.weights)
    got = reference.run(x).output
    want = source_fn(x)
    assert np.abs(got - want).max() <= TOL * max(1.0, np.abs(want).max())


def test_torch_export_keeps_lrn_bn_and_adaptive_pool(files):
    imported = importer.import_model(importer.load_file(files["torch-dynamo"][0]), "small.onnx", None)
    ops = [layer.op for layer in imported.layers]
    assert ops == ["conv2d", "relu", "lrn", "maxpool2d", "conv2d", "relu", "adaptive_avgpool2d", "flatten",
                   "linear", "softmax"]
    assert imported.layers[2].attrs == {"size": 3, "alpha": 2e-4, "beta": 0.75, "k": 1.5}
    assert imported.layers[0].attrs["padding"] == [1, 1, 2, 2]  # ONNX [t, l, b, r] = [1, 2, 1, 2]
    assert imported.versions["producer"].startswith("pytorch")


@pytest.mark.parametrize("name", ["conv-bn-dynamo", "conv-bn-torchscript", "keras-from_keras"])
def test_folded_batch_norms_are_noted(files, name):
    imported = importer.import_model(importer.load_file(files[name][0]), "m.onnx", None)
    assert "batchnorm2d" not in [layer.op for layer in imported.layers]
    assert any(note.startswith("batch norms folded into convolutions by the exporter") and "conv" in note
               for note in imported.notes)


def test_keras_exports_read_channels_last_flatten(files):
    imported = importer.import_model(importer.load_file(files["keras-stateless"][0]), "k.onnx", None)
    flatten = next(layer for layer in imported.layers if layer.op == "flatten")
    assert flatten.layout == "nhwc"
    bn = next(layer for layer in imported.layers if layer.op == "batchnorm2d")
    assert bn.attrs["eps"] == 1e-3
    assert importer.input_layout(importer.load_file(files["keras-stateless"][0])) == "nhwc"


@pytest.mark.slow
def test_torchvision_alexnet_imports_to_alexnet_owt(tmp_path, test_model):

    module = test_model("torch_models.py:TorchvisionAlexNet").eval()
    path = export_torch(module, (3, 224, 224), tmp_path / "alexnet.onnx")
    result = build_spec(importer.import_model(importer.load_file(path), str(path), None))
    owt = load_spec("alexnet-owt")
    # An inference export holds no dropout; every other layer matches op for op, field for field.
    want = [(layer.name, layer.op, layer.attrs) for layer in owt.layers if layer.op != "dropout"]
    got = [(layer.name, layer.op, layer.attrs) for layer in result.spec.layers]
    assert [(n, op) for n, op, _ in got] == [(n, op) for n, op, _ in want]
    for (name, _, g), (_, _, w) in zip(got, want):
        assert {k: g[k] for k in w if w[k] is not None} == {k: v for k, v in w.items() if v is not None}, name
    state = module.state_dict()
    modules = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
               "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}
    for layer, prefix in modules.items():
        for param in ("weight", "bias"):
            assert np.array_equal(result.weights[f"{layer}.{param}"], state[f"{prefix}.{param}"].numpy())


def _model(nodes, inits=(), shape=(None, 3, 8, 8), outputs=("y",), extra_inputs=()):
    """A small graph: input x of ``shape`` (None: a symbolic size), the given nodes and initializers."""
    dims = [d if d is not None else s for d, s in zip(shape, "NCHW")]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims) for name in ("x", *extra_inputs)]
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", "c", "h", "w"]) for name in outputs]
    graph = helper.make_graph(list(nodes), "g", inputs, outs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _node(op, inputs, outputs=("y",), name=None, **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=name or op.lower(), **attrs)


def _tensor(name, value, dtype=np.float32):
    return onnx.numpy_helper.from_array(np.asarray(value, dtype), name)


def _weight(name, shape):
    return _tensor(name, np.ones(shape))


def _refusal(nodes, inits=(), input_shape=None, **model) -> str:
    with pytest.raises(ImportRefused) as err:
        importer.import_model(_model(nodes, inits, **model), "m.onnx", input_shape)
    return err.value.message


W = _weight("w", (4, 3, 3, 3))
FC = _weight("w", (2, 192))  # a linear layer on the flattened 3x8x8 input
TO_NHWC = _node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1])
FLATTEN = _node("Flatten", ["x"], ["f"])
BN = [_weight(n, (3,)) for n in ("g", "b", "m", "v")]
BINS = [_node("Transpose", ["x"], ["t"], perm=[2, 3, 0, 1]), _node("GatherND", ["t", "i"], ["gn"], name="gather"),
        _node("Transpose", ["gn"], ["tb"], name="back", perm=[4, 5, 0, 1, 2, 3]),
        _node("ReduceMean", ["tb", "axes"], keepdims=0)]
SUPPORTED = ("AveragePool, BatchNormalization, Conv, Dropout, Flatten, Gemm, GlobalAveragePool, Identity, LRN, "
             "MatMul, MaxPool, Mul, Relu, Reshape, Softmax, Transpose")

REFUSALS = {
    "two inputs": (dict(nodes=[_node("Add", ["x", "x2"])], extra_inputs=["x2"]),
                   "graph: 2 inputs; received ['x', 'x2']; expected one input tensor"),
    "rank-3 input": (dict(nodes=[_node("Relu", ["x"])], shape=(None, 3, 8)),
                     "graph input 'x': a rank-3 input; received [None, 3, 8]; "
                     "expected an image batch [N, C, H, W] or [N, H, W, C]"),
    "input shape disagrees": (dict(nodes=[_node("Relu", ["x"])], input_shape=(3, 9, 8)),
                              "graph input 'x': the input shape given disagrees with the file's; received 3,9,8; "
                              "expected 3,8,8"),
    "dangling tensor": (dict(nodes=[_node("Relu", ["x"], ["r"])]),
                        "tensor 'r': no node reads it and it is no graph output"),
    "unknown op": (dict(nodes=[_node("Conv", ["x", "w"], ["c"]), _node("Elu", ["c"])], inits=[W]),
                   f"node 'elu' (Elu): op Elu is not supported; expected one of {SUPPORTED}"),
    "second output": (dict(nodes=[_node("Dropout", ["x"], ["y", "mask"])], outputs=["y", "mask"]),
                      "node 'dropout' (Dropout): its second output is used; received ['y', 'mask']; "
                      "expected one output"),
    "no inferred shape": (dict(nodes=[FLATTEN, _node("MatMul", ["f", "w"], ["mm"]), _node("Flatten", ["mm"],
                                                                                           name="flatten2")],
                               inits=[_weight("w", (5, 2))]),
                          "tensor 'mm': ONNX shape inference gives no shape for it"),
    "weight from the input": (dict(nodes=[_node("Conv", ["x", "x"])]),
                              "node 'conv' (Conv): its weight is computed from the input, not a constant; "
                              "received x; expected an initializer or a Constant"),
    "layer after a channels-last flatten": (dict(nodes=[TO_NHWC, _node("Flatten", ["t"], ["f"]),
                                                        _node("Relu", ["f"])]),
                                            "node 'relu' (Relu): a relu after a channels-last flatten; "
                                            "expected a linear layer"),
    "conv on channels-last": (dict(nodes=[TO_NHWC, _node("Conv", ["t", "w"])], inits=[W]),
                              "node 'conv' (Conv): Conv on a channels-last tensor; expected an NCHW tensor"),
    "auto_pad": (dict(nodes=[_node("Conv", ["x", "w"], auto_pad="SAME")], inits=[W]),
                 "node 'conv' (Conv): attribute auto_pad is not supported; received SAME; "
                 "expected NOTSET, SAME_UPPER, SAME_LOWER or VALID"),
    "dilations": (dict(nodes=[_node("Conv", ["x", "w"], dilations=[2, 2])], inits=[W]),
                  "node 'conv' (Conv): attribute dilations is not supported; received [2, 2]; "
                  "expected 1 (the spec has no dilation)"),
    "storage_order": (dict(nodes=[_node("MaxPool", ["x"], name="pool", kernel_shape=[2, 2], storage_order=1)]),
                      "node 'pool' (MaxPool): attribute storage_order is not supported; received 1; expected 0"),
    "avgpool ceil_mode": (dict(nodes=[_node("AveragePool", ["x"], name="pool", kernel_shape=[2, 2], ceil_mode=1)]),
                          "node 'pool' (AveragePool): attribute ceil_mode is not supported; received 1; "
                          "expected 0 (the spec's avgpool2d has no ceil mode)"),
    "avgpool padding not counted": (dict(nodes=[_node("AveragePool", ["x"], name="pool", kernel_shape=[3, 3],
                                                      pads=[1, 1, 1, 1])]),
                                    "node 'pool' (AveragePool): attribute count_include_pad is not supported; "
                                    "received 0; expected 1 with padding (the spec's avgpool2d counts padded zeros)"),
    "unknown transpose": (dict(nodes=[_node("Transpose", ["x"], perm=[0, 1, 3, 2])]),
                          "node 'transpose' (Transpose): a Transpose that is neither a layout change nor part of "
                          "an adaptive pool; received [0, 1, 3, 2]; expected perm [0, 3, 1, 2] or [0, 2, 3, 1]"),
    "gather indices not bins": (dict(nodes=BINS, inits=[_tensor("i", np.zeros((2, 4, 2, 4, 2)), np.int64),
                                                        _tensor("axes", [3, 5], np.int64)]),
                                "node 'gather' (GatherND): gather indices that are not an adaptive pool's bins; "
                                "received [2, 4, 2, 4, 2]; expected torch's bins for 8x8 -> 2x2"),
    "batchnorm training_mode": (dict(nodes=[_node("BatchNormalization", ["x", "g", "b", "m", "v"], name="bn",
                                                  training_mode=1)], inits=BN),
                                "node 'bn' (BatchNormalization): attribute training_mode is not supported; "
                                "received 1; expected 0 (inference)"),
    "dropout training_mode": (dict(nodes=[_node("Dropout", ["x", "r", "t"])],
                                   inits=[_tensor("r", 0.5), _tensor("t", True, np.bool_)]),
                              "node 'dropout' (Dropout): attribute training_mode is not supported; received True; "
                              "expected false (inference)"),
    "mul not a batch norm": (dict(nodes=[_node("Mul", ["x", "s"])], inits=[_weight("s", (3, 1, 1))]),
                             "node 'mul' (Mul): a Mul that is not a batch norm's scale; expected tf2onnx's "
                             "channels-last batch norm: x * gamma / sqrt(var + eps) + (beta - mean * scale)"),
    "flatten axis": (dict(nodes=[_node("Flatten", ["x"], axis=2)]),
                     "node 'flatten' (Flatten): attribute axis is not supported; received 2; expected 1"),
    "reshape not a flatten": (dict(nodes=[_node("Reshape", ["x", "s"])], inits=[_tensor("s", [0, 3, 64], np.int64)]),
                              "node 'reshape' (Reshape): a reshape other than a flatten; received [0, 3, 64]; "
                              "expected [N, -1], [-1, K] or [0, -1]"),
    **{f"gemm {name}": (dict(nodes=[FLATTEN, _node("Gemm", ["f", "w"], transB=1, **{name: value})], inits=[FC]),
                        f"node 'gemm' (Gemm): attribute {name} is not supported; received {value}; expected {want}")
       for name, value, want in (("alpha", 2.0, 1.0), ("beta", 0.5, 1.0), ("transA", 1, 0))},
    "softmax axis": (dict(nodes=[_node("Softmax", ["x"], axis=-1)]),
                     "node 'softmax' (Softmax): attribute axis is not supported; received -1; "
                     "expected the channel / feature axis (1, or -1 on (N, F))"),
    "branch": (dict(nodes=[_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), _node("Relu", ["c"], ["r"]),
                           _node("Add", ["c", "r"])], inits=[_weight("w", (3, 3, 3, 3))]),
               "node 'conv' (Conv): its output 'c' is read by 2 nodes (Relu 'relu', Add 'add'): a branch; "
               "expected a chain of layers"),
    "input size open": (dict(nodes=[_node("Relu", ["x"])], shape=(None, 3, None, None)),
                        "graph input 'x': the file leaves the input's size open; received ['?', 3, '?', '?']; "
                        "expected --input-shape C,H,W"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusal_message(case):
    graph, message = REFUSALS[case]
    assert _refusal(**graph) == message


def test_invalid_file_is_refused(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a protobuf")
    with pytest.raises(ImportRefused) as err:
        importer.load_file(path)
    # the received part is the first line of onnx's own error
    assert err.value.message == (f"file '{path}': not a valid ONNX model; received Error parsing message with type "
                                 "'onnx.ModelProto': Wire format was corrupt; expected a file onnx.checker accepts")


def test_refusal_exits_2_through_the_cli(tmp_path, capsys):
    from alexbench.harness.cli.main import main

    path = tmp_path / "dilated.onnx"
    onnx.save_model(_model(**REFUSALS["dilations"][0]), str(path))
    assert main(["import", str(path), "-o", str(tmp_path / "s.yaml")]) == 2
    assert capsys.readouterr().err == f"alexbench import: error: {REFUSALS['dilations'][1]}\n"
    assert not (tmp_path / "s.yaml").exists()


def test_dynamic_input_size_takes_input_shape():
    model = _model([_node("Relu", ["x"])], shape=(None, 3, None, None))
    assert importer.import_model(model, "m.onnx", (3, 5, 6)).input_shape == (3, 5, 6)


def test_same_padding_becomes_explicit():
    model = _model([_node("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2])], [_weight("w", (4, 3, 4, 4))])
    layer = importer.import_model(model, "m.onnx", None).layers[0]
    assert layer.attrs["padding"] == [1, 1, 1, 1]  # total 2 per axis for 8 -> 4 with kernel 4, stride 2


@pytest.mark.parametrize("version, shown", [("1.17.0 None", "tf2onnx 1.17.0"), ("", "tf2onnx"),
                                            ("1.17.0 abc123", "tf2onnx 1.17.0 abc123")])
def test_producer_version_leaves_out_a_missing_one(version, shown):
    model = _model([_node("Relu", ["x"])])
    model.producer_name, model.producer_version = "tf2onnx", version
    assert importer.import_model(model, "m.onnx", None).versions["producer"] == shown


def test_accepts_and_save_round_trip(tmp_path):
    model = _model([_node("Relu", ["x"])])
    assert importer.accepts(model) and not importer.accepts("model.onnx")
    path = importer.save_model(model, tmp_path)
    assert path.name == "model.onnx" and importer.load_file(path) == model
