"""The user's own PyTorch model as a backend: its readable layers agree with the float64 reference
run on its imported spec and weights, and the planted bugs (a wrong stride, a hook that keeps a
tensor an in-place ReLU then overwrites) are caught at the layer where they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from alexbench.backends.model_source import load_object
from alexbench.backends.reference.backend import ReferenceBackend
from alexbench.backends.torch import importer
from alexbench.backends.torch.user_model import TorchModelBackend
from alexbench.spec import load_spec
from alexbench.spec.imported import build_spec

MODELS = Path(__file__).resolve().parents[2] / "models" / "torch_models.py"
SMALL = f"{MODELS}:small_functional_net"
REL = 1e-4


def imported(source: str, input_shape=(3, 32, 28)):
    obj, found = load_object(source)
    return build_spec(found.import_model(obj, source, input_shape))


def saved(net: nn.Module, folder: Path) -> str:
    """A changed model as a SOURCE the backend loads, the way compare hands it an in-memory model."""
    return str(importer.save_model(net, folder))


def runs(spec, weights, source: str, batch: int = 2, backend_class=TorchModelBackend):
    """(reference outputs, the model's outputs), each as {layer or 'output': array}."""
    x = np.random.default_rng(batch).standard_normal((batch, *spec.input_shape)).astype(np.float32)
    mine = backend_class(options={"source": source})
    mine.build(spec, {})
    got = mine.run(x, mine.layer_names())
    ref = ReferenceBackend()
    ref.build(spec, weights)
    expected = ref.run(x, [layer.name for layer in spec.layers])
    return {**expected.layers, "output": expected.output}, {**got.layers, "output": got.output}


def first_mismatch(expected: dict, got: dict) -> str | None:
    for name, array in got.items():
        ref = expected[name]
        if array.shape != ref.shape or np.max(np.abs(array - ref)) > REL * np.max(np.abs(ref)):
            return name
    return None


def test_small_functional_net_agrees_with_the_reference_on_every_readable_layer():
    result = imported(SMALL)
    backend = TorchModelBackend(options={"source": SMALL})
    backend.build(result.spec, {})
    assert backend.layer_names() == ["conv1", "norm1", "conv2", "bn2", "fc3"]
    assert backend.param_count() == result.spec.param_count
    expected, got = runs(result.spec, result.weights, SMALL)
    assert set(got) == {"conv1", "norm1", "conv2", "bn2", "fc3", "output"}
    assert first_mismatch(expected, got) is None


def test_a_wrong_stride_is_caught_at_conv1(tmp_path):
    result = imported(SMALL)
    net, _ = load_object(SMALL)
    net.conv1.stride = (1, 1)  # after the import: the model no longer computes its spec
    expected, got = runs(result.spec, result.weights, saved(net, tmp_path))
    assert first_mismatch(expected, got) == "conv1"


def inplace_net(folder: Path) -> str:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 5 * 4, 3))
    return saved(net.eval(), folder)


class KeepsTheTensor(TorchModelBackend):
    """The planted bug: the hook keeps a view of the conv's output, which the in-place ReLU rewrites."""

    @staticmethod
    def snapshot(output):
        return output.detach().numpy()


def test_hooks_copy_what_an_inplace_relu_overwrites(tmp_path):
    source = inplace_net(tmp_path)
    result = imported(source, (3, 7, 6))
    expected, got = runs(result.spec, result.weights, source)
    assert first_mismatch(expected, got) is None
    assert (got["conv1"] < 0).any()
    expected, got = runs(result.spec, result.weights, source, backend_class=KeepsTheTensor)
    assert np.array_equal(got["conv1"], got["relu1"])
    assert first_mismatch(expected, got) == "conv1"


def test_a_shipped_spec_maps_by_position():
    backend = TorchModelBackend(options={"source": f"{MODELS}:TorchvisionAlexNet"})
    spec = load_spec("alexnet-owt")
    backend.build(spec, {})
    assert backend.layer_names() == [layer.name for layer in spec.layers if layer.name != "flatten"]
    assert backend.readouts["fc6"] == "classifier.1"
    assert backend.param_count() == spec.param_count == 61_100_840


def test_a_spec_of_another_length_is_refused():
    with pytest.raises(ValueError) as err:
        TorchModelBackend(options={"source": SMALL}).build(load_spec("alexnet-owt"), {})
    assert str(err.value) == f"model {SMALL} has 11 layers; spec 'alexnet-owt' has 22"
