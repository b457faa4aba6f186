"""Every class of spec error gives one exact located message and exit code 2."""

from __future__ import annotations

import textwrap

import pytest

from alexbench.harness.cli.main import main
from alexbench.spec import SpecError, parse_spec

BASE = """\
name: tiny
input: [3, 32, 32]
layers:
  - {name: conv1, op: conv2d, filters: 8, kernel: 3, padding: 1}
  - {name: relu1, op: relu}
  - {name: pool1, op: maxpool2d, kernel: 2, stride: 2}
  - {name: flatten, op: flatten}
  - {name: fc1, op: linear, units: 10}
"""


def validate(tmp_path, capsys, text: str) -> tuple[int, str]:
    path = tmp_path / "net.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    code = main(["validate", str(path)])
    err = capsys.readouterr().err.strip()
    return code, err.replace(str(path), "net.yaml")


def test_base_spec_is_valid(tmp_path, capsys):
    path = tmp_path / "net.yaml"
    path.write_text(BASE)
    assert main(["validate", str(path)]) == 0
    assert "ok: 'tiny', 5 layers, 20,714 parameters, output 10" in capsys.readouterr().out


CASES = {
    "unknown op": (
        BASE.replace("op: relu}", "op: relu6}"),
        "net.yaml:5:23: layer 'relu1' (relu6): unknown op (did you mean 'relu'?); received 'relu6'; expected one of: "
        "adaptive_avgpool2d, avgpool2d, batchnorm2d, conv2d, dropout, flatten, linear, lrn, maxpool2d, relu, softmax"),
    "unknown field": (
        BASE.replace("filters: 8", "filter: 8"),
        "net.yaml:4:39: layer 'conv1' (conv2d): unknown field 'filter' (did you mean 'filters'?); received 'filter'; "
        "expected one of: bias, filters, groups, init, kernel, name, note, op, padding, stride"),
    "unknown model field": (
        BASE.replace("input:", "inputs: [3, 32, 32]\ninput:"),
        "net.yaml:2:9: spec: unknown field 'inputs' (did you mean 'input'?); received 'inputs'; expected one of: "
        "description, init, input, layers, name, preprocessing, provenance, training"),
    "missing field": (
        BASE.replace("units: 10", "bias: true"),
        "net.yaml:8:5: layer 'fc1' (linear): missing required field 'units'; received fields: bias; "
        "expected 'units': a positive integer (output features)"),
    "mistyped field": (
        BASE.replace("filters: 8", "filters: '8'"),
        "net.yaml:4:40: layer 'conv1' (conv2d): field 'filters' has the wrong type; received '8' (string); "
        "expected a positive integer"),
    "non-positive size": (
        BASE.replace("filters: 8", "filters: 0"),
        "net.yaml:4:40: layer 'conv1' (conv2d): field 'filters' must be positive; received 0; "
        "expected a positive integer"),
    "groups": (
        BASE.replace("filters: 8, kernel: 3", "filters: 8, groups: 2, kernel: 3"),
        "net.yaml:4:51: layer 'conv1' (conv2d): input channels are not divisible by groups; received 3 input "
        "channels, groups 2; expected groups dividing both input and output channels"),
    "filters vs groups": (
        BASE.replace("filters: 8, kernel: 3", "filters: 8, groups: 3, kernel: 3"),
        "net.yaml:4:5: layer 'conv1' (conv2d): filters must be divisible by groups; received filters 8, groups 3; "
        "expected groups dividing both input and output channels"),
    "even lrn size": (
        BASE.replace("{name: relu1, op: relu}", "{name: norm1, op: lrn, size: 4}"),
        "net.yaml:5:34: layer 'norm1' (lrn): field 'size' must be odd (torch and ONNX place even windows "
        "differently, ONNX Runtime refuses them); received 4; expected an odd positive integer such as 3 or 5"),
    "collapsing spatial size": (
        BASE.replace("kernel: 3, padding: 1", "kernel: 40"),
        "net.yaml:4:51: layer 'conv1' (conv2d): spatial size collapses to 0x0; received input 3x32x32 with kernel "
        "40x40, stride 1x1, padding 0,0,0,0; expected a kernel no larger than the padded input (32x32)"),
    "duplicate name": (
        BASE.replace("name: relu1", "name: conv1"),
        "net.yaml:5:12: layer 'conv1' (relu): duplicate layer name; received 'conv1' again (first at line 4); "
        "expected unique layer names"),
    "linear input features": (
        BASE.replace("units: 10", "units: 10, in_features: 9216"),
        "net.yaml:8:53: layer 'fc1' (linear): input features disagree with in_features; received 2048 features "
        "from layer 'flatten' (= 8x16x16 from layer 'pool1', flattened); expected 9216 (in_features)"),
    "linear without flatten": (
        BASE.replace("  - {name: flatten, op: flatten}\n", ""),
        "net.yaml:7:5: layer 'fc1' (linear): linear needs flattened features; received a 8x16x16 feature map "
        "from layer 'pool1'; expected a 'flatten' layer before it"),
    "same padding": (
        BASE.replace("padding: 1", "padding: same"),
        "net.yaml:4:63: layer 'conv1' (conv2d): field 'padding' must be explicit: 'same' padding means different "
        "pixels in different frameworks; received 'same' (string); expected padding: [1, 1, 1, 1] (what "
        "TensorFlow/Keras 'same' pads, as [top, bottom, left, right], for this layer's 32x32 input, kernel 3x3, "
        "stride 1x1), or an integer >= 0, [vertical, horizontal] or [top, bottom, left, right]"),
    "same padding, stride 2: the odd pixel goes bottom/right": (
        BASE.replace("kernel: 3, padding: 1", "kernel: 3, stride: 2, padding: same"),
        "net.yaml:4:74: layer 'conv1' (conv2d): field 'padding' must be explicit: 'same' padding means different "
        "pixels in different frameworks; received 'same' (string); expected padding: [0, 1, 0, 1] (what "
        "TensorFlow/Keras 'same' pads, as [top, bottom, left, right], for this layer's 32x32 input, kernel 3x3, "
        "stride 2x2), or an integer >= 0, [vertical, horizontal] or [top, bottom, left, right]"),
    "valid padding": (
        BASE.replace("padding: 1", "padding: valid"),
        "net.yaml:4:63: layer 'conv1' (conv2d): field 'padding' must be explicit: 'valid' is written 0; received "
        "'valid' (string); expected padding: 0 (no padding, what 'valid' means)"),
    "out_features means units": (
        BASE.replace("units: 10", "out_features: 10"),
        "net.yaml:8:43: layer 'fc1' (linear): unknown field 'out_features' (did you mean 'units'?); received "
        "'out_features'; expected one of: bias, in_features, init, name, note, op, units"),
    "kernel_size means kernel": (
        BASE.replace("kernel: 2,", "kernel_size: 2,"),
        "net.yaml:6:47: layer 'pool1' (maxpool2d): unknown field 'kernel_size' (did you mean 'kernel'?); received "
        "'kernel_size'; expected one of: ceil_mode, init, kernel, name, note, op, padding, stride"),
    "in_channels is inferred": (
        BASE.replace("filters: 8,", "filters: 8, in_channels: 3,"),
        "net.yaml:4:56: layer 'conv1' (conv2d): unknown field 'in_channels' (input channels come from the previous "
        "layer; remove it); received 'in_channels'; expected one of: bias, filters, groups, init, kernel, name, "
        "note, op, padding, stride"),
    "dense means linear": (
        BASE.replace("op: linear", "op: dense"),
        "net.yaml:8:21: layer 'fc1' (dense): unknown op (did you mean 'linear'?); received 'dense'; expected one "
        "of: adaptive_avgpool2d, avgpool2d, batchnorm2d, conv2d, dropout, flatten, linear, lrn, maxpool2d, relu, "
        "softmax"),
    "Keras MaxPooling2D": (
        BASE.replace("op: maxpool2d", "op: MaxPooling2D"),
        "net.yaml:6:23: layer 'pool1' (MaxPooling2D): unknown op (did you mean 'maxpool2d'?); received "
        "'MaxPooling2D'; expected one of: adaptive_avgpool2d, avgpool2d, batchnorm2d, conv2d, dropout, flatten, "
        "linear, lrn, maxpool2d, relu, softmax"),
    "HWC input": (
        BASE.replace("input: [3, 32, 32]", "input: [32, 32, 1]").replace("kernel: 3, padding: 1", "kernel: 5"),
        "net.yaml:4:51: layer 'conv1' (conv2d): spatial size collapses to 28x0; received input 32x32x1 with kernel "
        "5x5, stride 1x1, padding 0,0,0,0; expected a kernel no larger than the padded input (32x1) (note: 'input' "
        "is [channels, height, width]; [32, 32, 1] looks like [height, width, channels]: did you mean "
        "[1, 32, 32]?)"),
    "every independent problem, like a linter": (
        BASE.replace("filters: 8", "filter: 8").replace("op: relu}", "op: relu6}").replace("units: 10", "units: '10'"),
        "net.yaml:4:39: layer 'conv1' (conv2d): unknown field 'filter' (did you mean 'filters'?); received 'filter'; "
        "expected one of: bias, filters, groups, init, kernel, name, note, op, padding, stride\n"
        "net.yaml:5:23: layer 'relu1' (relu6): unknown op (did you mean 'relu'?); received 'relu6'; expected one of: "
        "adaptive_avgpool2d, avgpool2d, batchnorm2d, conv2d, dropout, flatten, linear, lrn, maxpool2d, relu, "
        "softmax\n"
        "net.yaml:8:36: layer 'fc1' (linear): field 'units' has the wrong type; received '10' (string); expected a "
        "positive integer\n3 problems in net.yaml"),
    "shape inference stops at the first shape error, field checks go on": (
        BASE.replace("kernel: 3, padding: 1", "kernel: 40").replace("units: 10", "units: 0")
        .replace("  - {name: flatten, op: flatten}\n", ""),
        "net.yaml:4:51: layer 'conv1' (conv2d): spatial size collapses to 0x0; received input 3x32x32 with kernel "
        "40x40, stride 1x1, padding 0,0,0,0; expected a kernel no larger than the padded input (32x32)\n"
        "net.yaml:7:36: layer 'fc1' (linear): field 'units' must be positive; received 0; expected a positive "
        "integer\n2 problems in net.yaml"),
    "python tag": (
        BASE.replace("name: tiny", "name: !!python/object/apply:os.system ['echo hi']"),
        "net.yaml:1:7: file: YAML value cannot be loaded safely: tagged collections are not allowed; received tag "
        "tag:yaml.org,2002:python/object/apply:os.system; expected plain YAML scalars, lists and mappings"),
    "python scalar tag": (
        BASE.replace("name: tiny", "name: !!python/name:os.system"),
        "net.yaml:1:7: file: YAML value cannot be loaded safely: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/name:os.system'; received tag tag:yaml.org,2002:python/name:os.system; "
        "expected plain YAML scalars, lists and mappings"),
    "empty file": ("", "net.yaml:1:1: file: spec is empty; received an empty document; expected a YAML mapping "
                       "with name, input and layers"),
    "not a mapping": ("- 1\n- 2\n", "net.yaml:1:1: spec: the spec must be a mapping; received [1, 2] (list); "
                                    "expected a mapping with name, input and layers"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_message_and_exit_code(tmp_path, capsys, case):
    text, expected = CASES[case]
    code, err = validate(tmp_path, capsys, text)
    assert code == 2
    assert err == f"alexbench validate: error: {expected}"
    assert "Traceback" not in err


def test_article_pytorch_model_is_rejected_at_fc6(capsys):
    from alexbench.spec.loader import shipped_specs_dir

    path = shipped_specs_dir() / "invalid" / "alexnet-blog-pytorch.yaml"
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "layer 'fc6' (linear)" in err and "9216" in err and "1536" in err and "384x2x2" in err


def test_spec_error_is_a_value_error_with_location():
    with pytest.raises(SpecError) as info:
        parse_spec(BASE.replace("units: 10", "units: -1"), "x.yaml")
    assert info.value.location.line == 8
    assert info.value.where == "layer 'fc1' (linear)"


def test_unknown_spec_name_suggests_shipped(capsys):
    assert main(["summary", "alexnt"]) == 2
    err = capsys.readouterr().err
    assert "(did you mean 'alexnet'?)" in err and "alexnet-owt" in err


def test_budget_refuses_huge_spec_before_allocating(tmp_path, capsys):
    huge = BASE.replace("units: 10", "units: 2000000000")
    code, err = validate(tmp_path, capsys, huge)
    assert code == 2
    assert err.endswith("net.yaml:1:1: spec: the weights would exceed the memory budget; received 15266.24 GiB of "
                        "float32; expected at most 4.00 GiB (set --max-gib to raise it)")


@pytest.mark.parametrize("padding, explicit", [("[1, 2]", (1, 1, 2, 2)), ("[1, 1]", (1, 1, 1, 1)),
                                               ("[0, 1, 2, 3]", (0, 1, 2, 3))])
def test_padding_vertical_horizontal(padding, explicit):
    """[v, h] is accepted like kernel's and stride's [h, w], and means [v, v, h, h]."""
    spec = parse_spec(BASE.replace("padding: 1", f"padding: {padding}"))
    assert spec.layers[0].attrs["padding"] == explicit
    assert spec.layers[0].output_shape == (8, 30 + explicit[0] + explicit[1], 30 + explicit[2] + explicit[3])


def test_several_problems_are_one_spec_error():
    with pytest.raises(SpecError) as info:
        parse_spec(BASE.replace("filters: 8", "filters: 0").replace("units: 10", "units: -1"), "x.yaml")
    assert [p.location.line for p in info.value.problems] == [4, 8]
    assert info.value.location.line == 4


def test_an_op_with_a_newline_stays_one_line():
    """Found by the fuzz tests: the op was shown raw in the layer's header."""
    with pytest.raises(SpecError) as err:
        parse_spec('name: t\ninput: [3, 8, 8]\nlayers:\n  - {name: c, op: "\\n"}\n', "t.yaml")
    assert "\n" not in err.value.message
    assert err.value.message.startswith("t.yaml:4:") and "layer 'c' ('\\n'): unknown op" in err.value.message
