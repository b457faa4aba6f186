"""`alexbench diff A B`: exit 0 when the structures agree, 1 when they differ, 2 when an argument is bad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alexbench.harness.cli.main import main

SHIPPED = Path(__file__).parents[3] / "spec" / "models"


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["diff", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_alexnet_against_alexnet_owt_differs(capsys):
    code, out, err = _run(capsys, "alexnet", "alexnet-owt")
    lines = out.splitlines()
    assert code == 1 and err == ""
    assert lines[:3] == ["A: alexnet (<shipped>/alexnet.yaml)", "B: alexnet-owt (<shipped>/alexnet-owt.yaml)",
                         "input 3x227x227 -> 3x224x224"]
    for line in ["norm1  lrn (size 5, alpha 0.0005, beta 0.75, k 2.0): only in A",
                 "conv2  conv2d: filters 256 -> 192; groups 2 -> 1; output shape 256x27x27 -> 192x27x27",
                 "conv5  conv2d: groups 2 -> 1",
                 "avgpool  adaptive_avgpool2d (output [6,6]): only in B"]:
        assert line in lines
    assert lines[-1] == "10 differences"
    code, out, _ = _run(capsys, "alexnet", "alexnet-owt", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["same"] is False and doc["differences"] == 10
    assert doc["layers"][0]["fields"] == {"filters": [96, 64], "padding": [[0, 0, 0, 0], [2, 2, 2, 2]]}


def test_a_spec_against_itself_is_exit_0(capsys):
    code, out, _ = _run(capsys, "alexnet", str(SHIPPED / "alexnet.yaml"))
    assert code == 0 and out.splitlines()[-1] == "no structural difference"
    code, out, _ = _run(capsys, "alexnet", "alexnet", "--json")
    assert code == 0 and json.loads(out)["same"] is True


def test_a_planted_one_field_change_in_a_copy_is_caught(capsys, tmp_path):
    text = (SHIPPED / "alexnet.yaml").read_text()
    old = "{name: drop7, op: dropout, rate: 0.5}"
    assert text.count(old) == 1
    (tmp_path / "planted.yaml").write_text(text.replace(old, "{name: drop7, op: dropout, rate: 0.4}"))
    code, out, _ = _run(capsys, "alexnet", str(tmp_path / "planted.yaml"))
    assert code == 1
    assert out.splitlines()[1:] == [f"B: alexnet ({tmp_path / 'planted.yaml'})", "drop7  dropout: rate 0.5 -> 0.4",
                                    "params 60,965,224 (same)", "MACs 724,406,816 (same)", "1 difference"]


def test_a_bad_argument_is_one_line_exit_2(capsys, tmp_path):
    code, out, err = _run(capsys, "alexnet", str(tmp_path / "missing.yaml"))
    assert code == 2 and out == ""
    assert err == (f"alexbench diff: error: spec: no spec file or shipped spec by that name; received "
                   f"'{tmp_path / 'missing.yaml'}'; expected a path to a .yaml file or one of: alexnet, "
                   "alexnet-blog-keras, alexnet-owt\n")


def test_help_warns_that_importing_runs_code(capsys):
    with pytest.raises(SystemExit) as info:
        main(["diff", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0
    assert "Importing a model source RUNS the user's code" in out
    assert "file.py:NAME" in out and ".keras" in out and ".onnx" in out
    assert "alexbench diff alexnet alexnet-owt" in out
