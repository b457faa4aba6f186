"""The structural diff: layers aligned by op sequence (never by name), every differing field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexbench.spec import load_spec, parse_spec
from alexbench.spec.diff import diff_specs

SHIPPED = Path(__file__).parents[2] / "spec" / "models"


def test_alexnet_against_torchvisions_alexnet():
    diff = diff_specs(load_spec("alexnet"), load_spec("alexnet-owt"))
    assert not diff.same and diff.differences == 10
    assert diff.lines() == [
        "A: alexnet (<shipped>/alexnet.yaml)",
        "B: alexnet-owt (<shipped>/alexnet-owt.yaml)",
        "input 3x227x227 -> 3x224x224",
        "conv1  conv2d: filters 96 -> 64; padding [0,0,0,0] -> [2,2,2,2]; output shape 96x55x55 -> 64x55x55",
        "norm1  lrn (size 5, alpha 0.0005, beta 0.75, k 2.0): only in A",
        "conv2  conv2d: filters 256 -> 192; groups 2 -> 1; output shape 256x27x27 -> 192x27x27",
        "norm2  lrn (size 5, alpha 0.0005, beta 0.75, k 2.0): only in A",
        "conv4  conv2d: filters 384 -> 256; groups 2 -> 1; output shape 384x13x13 -> 256x13x13",
        "conv5  conv2d: groups 2 -> 1",
        "avgpool  adaptive_avgpool2d (output [6,6]): only in B",
        # torchvision's dropout comes before fc6 and fc7, the paper's after: aligned, one moves
        "drop6  dropout (rate 0.5): only in B",
        "drop7  dropout (rate 0.5): only in A",
        "params 60,965,224 -> 61,100,840 (+135,616)",
        "MACs 724,406,816 -> 714,188,480 (-10,218,336)",
        "10 differences",
    ]


def test_a_spec_against_itself():
    diff = diff_specs(load_spec("alexnet"), load_spec("alexnet"))
    assert diff.same and diff.differences == 0
    assert diff.lines()[2:] == ["params 60,965,224 (same)", "MACs 724,406,816 (same)", "no structural difference"]
    doc = diff.to_json()
    assert doc["same"] is True and doc["differences"] == 0
    assert {layer["status"] for layer in doc["layers"]} == {"same"} and len(doc["layers"]) == 23


@pytest.mark.parametrize("old, new, line", [
    ("- {name: norm2, op: lrn, size: 5, alpha: 5.0e-4, beta: 0.75, k: 2.0}",
     "- {name: norm2, op: lrn, size: 5, alpha: 5.0e-4, beta: 0.7, k: 2.0}", "norm2  lrn: beta 0.75 -> 0.7"),
    ("- {name: pool5, op: maxpool2d, kernel: 3, stride: 2}",
     "- {name: pool5, op: maxpool2d, kernel: 3, stride: 2, ceil_mode: true}",
     "pool5  maxpool2d: ceil_mode false -> true"),
    ("- {name: fc8, op: linear, units: 1000}", "- {name: fc8, op: linear, units: 1000, bias: false}",
     "fc8  linear: bias true -> false"),
])
def test_a_planted_one_field_change_is_caught(old, new, line):
    text = (SHIPPED / "alexnet.yaml").read_text()
    assert text.count(old) == 1
    diff = diff_specs(load_spec("alexnet"), parse_spec(text.replace(old, new), file="planted.yaml"))
    assert diff.differences == 1 and diff.lines()[-1] == "1 difference"
    assert [entry for entry in diff.lines() if "  " in entry] == [line]


def _spec(name: str, layers: str, input_shape: str = "[3, 16, 16]"):
    return parse_spec(f"name: {name}\ninput: {input_shape}\nlayers:\n{layers}", file=f"{name}.yaml")


PLAIN = """\
  - {name: conv1, op: conv2d, filters: 4, kernel: 3}
  - {name: relu1, op: relu}
  - {name: pool1, op: maxpool2d, kernel: 2}
  - {name: flatten, op: flatten}
  - {name: fc1, op: linear, units: 5}
"""


def test_alignment_by_ops_not_names_when_a_layer_is_inserted():
    """The user's names differ from the imported ones and a batch norm is inserted: only the insertion differs."""
    mine = _spec("mine", """\
  - {name: features_0, op: conv2d, filters: 4, kernel: 3}
  - {name: bn, op: batchnorm2d, eps: 1.0e-3}
  - {name: act, op: relu}
  - {name: down, op: maxpool2d, kernel: 2}
  - {name: flat, op: flatten}
  - {name: head, op: linear, units: 5, in_features: 196}
""")
    diff = diff_specs(_spec("plain", PLAIN), mine)
    assert diff.lines() == [
        "A: plain (plain.yaml)",
        "B: mine (mine.yaml)",
        "bn  batchnorm2d (eps 0.001, momentum 0.1): only in B",
        "params 1,097 -> 1,113 (+16)",
        "MACs 22,148 (same)",
        "1 difference",
    ]
    doc = diff.to_json()
    assert [(layer["status"], (layer["a"] or {}).get("name"), (layer["b"] or {}).get("name"))
            for layer in doc["layers"]] == [
        ("same", "conv1", "features_0"), ("only_b", None, "bn"), ("same", "relu1", "act"),
        ("same", "pool1", "down"), ("same", "flatten", "flat"), ("same", "fc1", "head")]
    assert doc["layers"][5]["a"]["fields"] == {"units": 5, "in_features": 196, "bias": True}  # written or not


def test_renamed_fields_pairs_and_replaced_ops():
    """Different names are shown both; a replaced op shows both layers whole; float32-rounded numbers are equal."""
    other = _spec("other", """\
  - {name: c1, op: conv2d, filters: 4, kernel: 3, stride: [1, 2]}
  - {name: n1, op: lrn, size: 3, alpha: 5.000000237487257e-4}
  - {name: pool1, op: avgpool2d, kernel: 2}
  - {name: flatten, op: flatten}
  - {name: fc1, op: linear, units: 5}
""")
    lrn = "  - {name: n1, op: lrn, size: 3, alpha: 5.0e-4}\n"
    base = _spec("base", PLAIN.replace("  - {name: relu1, op: relu}\n", "  - {name: relu1, op: relu}\n" + lrn))
    diff = diff_specs(base, other)
    assert diff.lines()[2:] == [
        "conv1 / c1  conv2d: stride [1,1] -> [1,2]; output shape 4x14x14 -> 4x14x7",
        "relu1  relu: only in A",
        "pool1  maxpool2d (kernel [2,2], stride [2,2], padding [0,0,0,0], ceil_mode false) -> avgpool2d (kernel [2,2], "
        "stride [2,2], padding [0,0,0,0])",
        "fc1  linear: in_features 196 -> 84",
        "params 1,097 -> 537 (-560)",
        "MACs 22,148 -> 11,004 (-11,144)",
        "4 differences",
    ]
    pair = diff.to_json()["layers"][3]
    assert pair["status"] == "changed" and pair["fields"] == {"op": ["maxpool2d", "avgpool2d"]}


def test_input_shape_alone_is_one_difference():
    diff = diff_specs(_spec("a", PLAIN), _spec("b", PLAIN, "[3, 16, 18]"))
    assert diff.lines()[2:] == ["input 3x16x16 -> 3x16x18", "fc1  linear: in_features 196 -> 224",
                                "params 1,097 -> 1,237 (+140)", "MACs 22,148 -> 25,312 (+3,164)", "2 differences"]
    assert diff.to_json()["input_shape"] == [[3, 16, 16], [3, 16, 18]]
