"""PyTorch models read by torch.fx into the spec language: torchvision's AlexNet is exactly
alexnet-owt, the functional style imports, what the spec cannot say is refused in one line, and
an in-memory model survives the trip through a .pt file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexbench.backends.model_source import load_object
from alexbench.backends.reference.backend import reference_forward
from alexbench.backends.torch import importer
from alexbench.spec import load_spec
from alexbench.spec.errors import SpecError
from alexbench.spec.imported import ImportRefused, build_spec
from alexbench.spec.torchvision_import import canonical_name

MODELS = Path(__file__).resolve().parents[2] / "models" / "torch_models.py"


def model(name: str) -> nn.Module:
    return load_object(f"{MODELS}:{name}")[0]


def imported(obj: nn.Module, input_shape=(3, 32, 28)):
    return build_spec(importer.import_model(obj, "test", input_shape))


class Lambda(nn.Module):
    """forward is fn: fx traces through it, so each test writes only the calls it is about."""

    def __init__(self, fn, *modules: nn.Module):
        super().__init__()
        self.fn, self.body = fn, nn.ModuleList(modules)

    def forward(self, x):
        return self.fn(self, x)


def test_torchvision_alexnet_is_alexnet_owt():
    net = model("TorchvisionAlexNet")
    result = imported(net, None)
    shipped = load_spec("alexnet-owt")
    assert (result.spec.param_count, result.spec.macs) == (61_100_840, 714_188_480)
    assert result.spec.input_shape == (3, 224, 224)
    assert "input 3x224x224 assumed" in result.yaml_text

    def layers(spec):  # the shipped spec leaves in_features to derivation
        return [(layer.name, layer.op, {k: v for k, v in layer.attrs.items() if k != "in_features"})
                for layer in spec.layers]

    assert layers(result.spec) == layers(shipped)
    assert result.spec.layer("fc6").attrs["in_features"] == 9216
    state = {canonical_name(key): tensor.numpy() for key, tensor in net.state_dict().items()}
    assert set(result.weights) == set(state)
    for key, array in result.weights.items():
        assert array.dtype == np.float32 and np.array_equal(array, state[key]), key
    assert [layer.readout for layer in result.model.layers][:3] == ["features.0", "features.1", "features.2"]
    assert result.model.layers[0].origin == "module 'features.0' (Conv2d)"
    assert result.model.versions == {"torch": torch.__version__}


def test_small_functional_net_keeps_its_constants():
    net = model("small_functional_net")
    result = imported(net)
    spec = result.spec
    assert result.names == ["conv1", "relu1", "norm1", "pool1", "conv2", "bn2", "relu2", "avgpool", "flatten",
                            "fc3", "softmax"]
    assert spec.layer("conv1").attrs["padding"] == (1, 1, 2, 2)
    assert spec.layer("conv2").attrs["groups"] == 2
    assert {k: spec.layer("norm1").attrs[k] for k in ("size", "alpha", "beta", "k")} == \
        {"size": 3, "alpha": 2e-4, "beta": 0.75, "k": 1.5}
    assert (spec.layer("bn2").attrs["eps"], spec.layer("bn2").attrs["momentum"]) == (1e-3, 0.05)
    assert spec.layer("avgpool").attrs["output"] == (3, 3)
    assert np.array_equal(result.weights["bn2.running_var"], net.bn2.running_var.numpy())
    # modules are read by their path; the functional calls have no module to hook
    assert {n: layer.readout for n, layer in zip(result.names, result.model.layers) if layer.readout} == \
        {"conv1": "conv1", "norm1": "norm1", "conv2": "conv2", "bn2": "bn2", "fc3": "fc"}


def test_a_forward_that_cannot_run_still_imports_and_validation_names_the_linear():
    with pytest.raises(SpecError) as err:
        build_spec(importer.import_model(model("ArticleAlexNet"), "article", None))
    assert str(err.value) == (
        "layer 'fc6' (linear) from module 'fully_connected.0' (Linear): input features disagree with "
        "in_features; received 1536 features from layer 'flatten' (= 384x2x2 from layer 'pool5', flattened); "
        "expected 9216 (in_features)")


def every_form():
    """The forms the importer reads, in one chain, with shapes where a wrong reading would show."""
    torch.manual_seed(1)

    def forward(self, x):
        conv_same, conv_valid, pool, avg, bn, ident, fc, drop = self.body
        x = ident(conv_same(x)).contiguous().relu_()
        x = F.avg_pool2d(pool(conv_valid(x)), 2, stride=1, padding=1)
        x = torch.relu(bn(avg(x)))
        x = F.max_pool2d(F.dropout(x, 0.3, training=self.training), 2, ceil_mode=True)
        x = x.reshape(-1, 5 * 2 * 2).relu()
        return drop(fc(x)).softmax(-1)

    net = Lambda(forward, nn.Conv2d(3, 4, 4, padding="same"), nn.Conv2d(4, 5, (3, 2), padding="valid", bias=False),
                 nn.MaxPool2d(3, padding=1, ceil_mode=True), nn.AvgPool2d(2, count_include_pad=False),
                 nn.BatchNorm2d(5, affine=False), nn.Identity(), nn.Linear(20, 6), nn.Dropout(0.2))
    with torch.no_grad():
        net.body[4].running_mean.uniform_(-0.5, 0.5)
        net.body[4].running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's own note on a copy
def test_every_form_computes_what_the_model_computes():
    net = every_form()
    result = imported(net, (3, 17, 15))
    assert [(layer.op, layer.readout) for layer in result.model.layers] == [
        ("conv2d", "body.0"), ("relu", None), ("conv2d", "body.1"), ("maxpool2d", "body.2"), ("avgpool2d", None),
        ("avgpool2d", "body.3"), ("batchnorm2d", "body.4"), ("relu", None), ("dropout", None), ("maxpool2d", None),
        ("flatten", None), ("relu", None), ("linear", "body.6"), ("dropout", "body.7"), ("softmax", None)]
    assert result.spec.layers[0].attrs["padding"] == (1, 2, 1, 2)  # 'same' with an even kernel: the extra after
    assert "affine=False: weight 1 and bias 0 written out" in result.yaml_text
    assert "reshape to 20 features per image" in result.yaml_text
    x = np.random.default_rng(0).standard_normal((2, 3, 17, 15)).astype(np.float32)
    expected, _ = reference_forward(result.spec, result.weights, x)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_module_called_twice_has_no_readout():
    relu = nn.ReLU()
    net = Lambda(lambda self, x: self.body[2](self.body[1](self.body[0](x))), nn.Conv2d(3, 4, 3), relu, relu)
    assert [layer.readout for layer in importer.import_model(net, "test", (3, 8, 8)).layers] == ["body.0", None, None]


def two_inputs():
    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x

    return TwoInputs()


def reads_a_parameter():
    conv = nn.Conv2d(3, 4, 3)
    return Lambda(lambda self, x: F.conv2d(x, self.body[0].weight), conv)


REFUSALS = {
    "branch": (lambda: model("Branching"),
               "input 'x': its output feeds 2 nodes: a branch; received conv, add; "
               "expected a chain, each layer feeding only the next"),
    "unknown module": (lambda: model("UnknownLayer"),
                       "module 'body.1' (GELU): a module the spec language has no op for; received nn.GELU; "
                       "expected one of nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.BatchNorm2d, nn.Conv2d, nn.Dropout, "
                       "nn.Flatten, nn.Identity, nn.Linear, nn.LocalResponseNorm, nn.MaxPool2d, nn.ReLU, nn.Softmax"),
    "reflect padding": (lambda: model("ReflectPadding"),
                        "module 'conv' (Conv2d): unsupported padding_mode; received 'reflect'; "
                        "expected 'zeros' (the spec language pads with zeros)"),
    "untraceable": (lambda: Lambda(lambda self, x: x if x.sum() > 0 else -x),
                    "model 'Lambda': torch.fx cannot trace its forward; received symbolically traced variables "
                    "cannot be used as inputs to control flow; expected a forward without control flow on "
                    "tensor values"),
    "two inputs": (two_inputs, "input 'y': forward takes more than one input; received y; expected forward(self, x)"),
    "parameter read": (reads_a_parameter,
                       "node 'body_0_weight' (get_attr): forward reads a parameter or buffer itself; "
                       "received body.0.weight; expected layers as modules (nn.Conv2d, not F.conv2d(x, self.weight))"),
    "not the chain": (lambda: Lambda(lambda self, x: torch.zeros((x.size(0), 5))),
                      "node 'zeros' (function zeros): does not take just the previous layer's output; "
                      "received no input; expected 'x' alone"),
    "two outputs": (lambda: Lambda(lambda self, x: (F.relu(x), 1)),
                    "forward: returns more than the last layer's output; received tuple; expected return relu"),
    "unknown function": (lambda: Lambda(lambda self, x: torch.tanh(x)),
                         "node 'tanh' (function tanh): a function the spec language has no op for; received tanh; "
                         "expected one of F.relu, torch.relu, torch.relu_, torch.flatten(x, 1), F.dropout, "
                         "F.softmax, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d"),
    "unknown method": (lambda: Lambda(lambda self, x: x.sigmoid()),
                       "node 'sigmoid' (method sigmoid): a method the spec language has no op for; received sigmoid; "
                       "expected one of Tensor.relu, Tensor.relu_, Tensor.flatten, Tensor.softmax, "
                       "Tensor.contiguous, Tensor.view, Tensor.reshape"),
    "conv dilation": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, dilation=2)),
                      "module '0' (Conv2d): unsupported dilation; received (2, 2); expected 1"),
    "pool dilation": (lambda: nn.Sequential(nn.MaxPool2d(3, dilation=2)),
                      "module '0' (MaxPool2d): unsupported dilation; received 2; expected 1"),
    "return_indices": (lambda: nn.Sequential(nn.MaxPool2d(2, return_indices=True)),
                       "module '0' (MaxPool2d): unsupported return_indices; received True; expected False"),
    "avg ceil_mode": (lambda: nn.Sequential(nn.AvgPool2d(3, ceil_mode=True)),
                      "module '0' (AvgPool2d): unsupported ceil_mode; received True; "
                      "expected False (the spec's average pool rounds down)"),
    "divisor_override": (lambda: Lambda(lambda self, x: F.avg_pool2d(x, 2, divisor_override=3)),
                         "node 'avg_pool2d' (function avg_pool2d): unsupported divisor_override; received 3; "
                         "expected None"),
    "count_include_pad": (lambda: nn.Sequential(nn.AvgPool2d(3, padding=1, count_include_pad=False)),
                          "module '0' (AvgPool2d): unsupported count_include_pad; received False; "
                          "expected True, or no padding (the spec counts zero padding in the divisor)"),
    "adaptive None": (lambda: nn.Sequential(nn.AdaptiveAvgPool2d((None, 3))),
                      "module '0' (AdaptiveAvgPool2d): unsupported output_size; received (None, 3); "
                      "expected integers (None, keeping the input's size, is not a spec value)"),
    "cumulative momentum": (lambda: nn.Sequential(nn.BatchNorm2d(3, momentum=None)),
                            "module '0' (BatchNorm2d): unsupported momentum; received None; "
                            "expected a number (None, a cumulative average, has no spec value)"),
    "no running stats": (lambda: nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False)),
                         "module '0' (BatchNorm2d): unsupported track_running_stats; received False; "
                         "expected True (the spec normalises with running statistics)"),
    "flatten start_dim": (lambda: Lambda(lambda self, x: torch.flatten(x)),
                          "node 'flatten' (function flatten): unsupported start_dim; received 0; "
                          "expected 1 (keep the batch axis)"),
    "flatten end_dim": (lambda: nn.Sequential(nn.Flatten(1, 2)),
                        "module '0' (Flatten): unsupported end_dim; received 2; "
                        "expected -1 (flatten every feature axis)"),
    "softmax over width": (lambda: nn.Sequential(nn.Softmax(dim=-1)),
                           "module '0' (Softmax): unsupported dim; received -1; "
                           "expected 1 (the channel / feature axis), or -1 after a flatten"),
    "softmax dtype": (lambda: Lambda(lambda self, x: F.softmax(x, 1, dtype=torch.float64)),
                      "node 'softmax' (function softmax): unsupported dtype; received torch.float64; "
                      "expected None (float32)"),
    "view shape": (lambda: Lambda(lambda self, x: x.view(x.size(0), 3, -1)),
                   "node 'view' (method view): unsupported shape; received (x.size(0), 3, -1); "
                   "expected (x.size(0), -1), (x.size(0), features) or (-1, features): a flatten"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_what_the_spec_cannot_say_is_refused_in_one_line(case):
    build, message = REFUSALS[case]
    with pytest.raises(ImportRefused) as err:
        importer.import_model(build(), "test", (3, 8, 8))
    assert str(err.value) == message


def test_accepts_looks_only_at_the_object():
    assert importer.accepts(nn.ReLU()) and not importer.accepts("model.pt")


def roundtrip(net: nn.Module, tmp_path: Path) -> nn.Module:
    path = importer.save_model(net, tmp_path)
    assert path.suffix in importer.FILE_SUFFIXES
    return importer.load_file(path)


def test_a_module_of_importable_classes_is_saved_whole(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    back = roundtrip(net, tmp_path)
    assert type(back) is nn.Sequential
    assert imported(back, (3, 8, 8)).yaml_text == imported(net, (3, 8, 8)).yaml_text


def test_a_class_defined_in_a_function_is_saved_as_its_graph_module(tmp_path):
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.fc = nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            return self.fc(self.features(x).view(x.size(0), -1))

    net = Local().eval()
    back = roundtrip(net, tmp_path)
    assert isinstance(back, torch.fx.GraphModule)
    mine, theirs = imported(net, (3, 8, 8)), imported(back, (3, 8, 8))
    assert [layer.readout for layer in theirs.model.layers] == ["features.0", "features.1", None, "fc"]
    assert [(la.name, la.op, la.attrs) for la in theirs.spec.layers] == \
        [(la.name, la.op, la.attrs) for la in mine.spec.layers]
    assert all(np.array_equal(theirs.weights[k], v) for k, v in mine.weights.items())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))


def test_load_file_refuses_what_is_not_a_whole_module(tmp_path):
    state = tmp_path / "state.pt"
    torch.save(nn.Linear(2, 3).state_dict(), state)
    with pytest.raises(ImportRefused) as err:
        importer.load_file(state)
    assert str(err.value) == (f"model file '{state}': not a whole nn.Module; received OrderedDict; expected a file "
                              "written by torch.save(model, path) (a state_dict has no structure: give it to "
                              "compare --weights)")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a pickle")
    with pytest.raises(ImportRefused) as err:
        importer.load_file(junk)
    assert str(err.value).startswith(f"model file '{junk}': torch.load cannot read it; received ")
    assert str(err.value).endswith("; expected a whole nn.Module saved with torch.save(model, path)")
