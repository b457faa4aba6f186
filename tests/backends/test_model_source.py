"""backends/model_source.py: what a SOURCE names, and one line for every way it can be wrong."""

import sys
from pathlib import Path

import pytest

from alexbench.backends.model_source import load_object, source_label
from alexbench.spec.imported import ImportRefused

MODELS = Path(__file__).resolve().parents[1] / "models"
TORCH_MODELS = MODELS / "torch_models.py"


@pytest.mark.parametrize("name", ["SmallFunctionalNet", "small_functional_net", "small_net"])
def test_a_class_a_factory_and_an_instance_load(name):
    import torch

    obj, importer = load_object(f"{TORCH_MODELS}:{name}")
    assert isinstance(obj, torch.nn.Module) and importer.FRAMEWORK == "torch"


def test_a_module_on_sys_path_loads(tmp_path, monkeypatch):
    (tmp_path / "user_nets_pkg.py").write_text("from torch import nn\nnet = nn.Sequential(nn.Conv2d(3, 4, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    obj, importer = load_object("user_nets_pkg:net")
    assert importer.FRAMEWORK == "torch" and obj[0].out_channels == 4
    sys.modules.pop("user_nets_pkg", None)


def _refusal(source: str) -> str:
    with pytest.raises(ImportRefused) as caught:
        load_object(source)
    return str(caught.value)


def test_refusals_are_one_line_each(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    (tmp_path / "plain.py").write_text("x = 3\n\ndef helper():\n    return 'text'\n\nclass Needs:\n"
                                       "    def __init__(self, classes):\n        pass\n")
    cases = {
        "nonsense": "source 'nonsense': not a model source; received 'nonsense'; expected file.py:NAME, "
                    "package.module:NAME, or a .keras, .onnx or .pt file",
        f"{tmp_path}/absent.py:Net": f"source '{tmp_path}/absent.py:Net': no such Python file; received "
                                     f"{tmp_path}/absent.py; expected file.py:NAME, package.module:NAME, or a "
                                     ".keras, .onnx or .pt file",
        f"{tmp_path}/absent.onnx": f"source '{tmp_path}/absent.onnx': no such model file; received "
                                   f"{tmp_path}/absent.onnx; expected file.py:NAME, package.module:NAME, or a "
                                   ".keras, .onnx or .pt file",
        f"{tmp_path}/broken.py:Net": f"source '{tmp_path}/broken.py:Net': running {tmp_path}/broken.py raised "
                                     "RuntimeError; received no GPU here; expected code that defines the model "
                                     "without error",
        f"{tmp_path}/plain.py:Net": f"source '{tmp_path}/plain.py:Net': no 'Net' in {tmp_path}/plain.py; received "
                                    "'Net'; expected one of: helper, Needs",
        f"{tmp_path}/plain.py:Needs": f"source '{tmp_path}/plain.py:Needs': 'Needs' needs arguments to build the "
                                      "model; received classes; expected an instance, a class or a factory "
                                      "callable without arguments (e.g. `model = AlexNet(1000)` in the file, then "
                                      "file.py:model)",
        f"{tmp_path}/plain.py:helper": f"source '{tmp_path}/plain.py:helper': 'helper' is not a model; received "
                                       "str; expected a PyTorch nn.Module, a Keras model or an ONNX ModelProto, a "
                                       "class that builds one without arguments, or a factory",
        "no_such_module_xyz:Net": "source 'no_such_module_xyz:Net': cannot import the module; received No module "
                                  "named 'no_such_module_xyz'; expected a module on sys.path, or a path ending in .py",
    }
    for source, message in cases.items():
        assert _refusal(source) == message


def test_labels_are_safe_names():
    assert source_label("nets/alexnet.py:AlexNet") == "AlexNet"
    assert source_label("pkg.zoo:models.alexnet") == "alexnet"
    assert source_label("exports/my model.onnx") == "my_model"
