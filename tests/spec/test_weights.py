"""Canonical weights: deterministic bytes, checked on load, torchvision state_dicts imported safely."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from alexbench.harness.cli.main import main
from alexbench.spec import SpecError, canonical_weights, check_weights, load_spec, load_weights, save_weights

SPEC = "tests/specs/ops-pool-norm.yaml"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_command_writes_identical_bytes_in_two_processes(tmp_path):
    paths = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for path in paths:
        subprocess.run([sys.executable, "-m", "alexbench", "weights", "alexnet", "--seed", "0", "-o", str(path)],
                       check=True, capture_output=True)
    assert _sha(paths[0]) == _sha(paths[1])
    other = tmp_path / "c.safetensors"
    assert main(["weights", "alexnet", "--seed", "1", "-o", str(other)]) == 0
    assert _sha(other) != _sha(paths[0])


def test_canonical_layouts_and_init():
    spec = load_spec("alexnet")
    w = canonical_weights(spec, 0)
    assert list(w) == list(spec.param_shapes())
    assert w["conv2.weight"].shape == (256, 48, 5, 5)  # grouped: O, I/groups, kH, kW
    assert w["fc6.weight"].shape == (4096, 9216)  # linear: out, in
    assert all(a.dtype == np.float32 for a in w.values())
    assert np.all(w["conv2.bias"] == 1.0) and np.all(w["conv1.bias"] == 0.0)
    assert abs(float(w["fc6.weight"].std()) - 0.01) < 1e-4
    bn = canonical_weights(load_spec(SPEC), 0)
    assert bn["bn1.running_var"].min() >= 1e-4 and bn["bn1.running_var"].max() <= 1e-2


def test_tensor_streams_depend_only_on_seed_and_name():
    from alexbench.spec import parse_spec

    base = "name: t\ninput: [2, 8, 8]\nlayers:\n  - {name: c1, op: conv2d, filters: 4, kernel: 3}\n"
    grown = base + "  - {name: c2, op: conv2d, filters: 4, kernel: 3}\n"
    a = canonical_weights(parse_spec(base), 7)
    b = canonical_weights(parse_spec(grown), 7)
    assert np.array_equal(a["c1.weight"], b["c1.weight"]) and np.array_equal(a["c1.bias"], b["c1.bias"])
    assert not np.array_equal(a["c1.weight"], canonical_weights(parse_spec(base), 8)["c1.weight"])


def test_save_load_round_trip(tmp_path):
    spec = load_spec(SPEC)
    w = canonical_weights(spec, 5)
    path = tmp_path / "w.safetensors"
    save_weights(w, path)
    back = load_weights(path, spec)
    assert all(np.array_equal(w[k], back[k]) for k in w)


def test_check_lists_every_problem():
    spec = load_spec(SPEC)
    w = canonical_weights(spec, 0)
    w.pop("conv1.bias")
    w["extra.weight"] = np.zeros(3, np.float32)
    w["fc1.weight"] = w["fc1.weight"].T.copy()
    w["bn1.weight"] = w["bn1.weight"].astype(np.float64)
    w["bn1.bias"] = w["bn1.bias"].copy()
    w["bn1.bias"][0] = np.nan
    with pytest.raises(SpecError) as info:
        check_weights(spec, w)
    assert str(info.value) == (
        "weights: weights do not fit spec 'ops-pool-norm'; received missing conv1.bias; unexpected extra.weight; "
        "bn1.weight has dtype float64, expected float32; bn1.bias has 1 NaN/Inf values; fc1.weight has shape "
        "[36, 7], expected [7, 36]; expected 7 float32 tensors named <layer>.<param> in canonical layouts")


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x09\x00\x00\x00\x00\x00\x00\x00{not json")  # complete, but not JSON
    with pytest.raises(SpecError, match="not a readable safetensors file"):
        load_weights(path)


def test_torchvision_state_dict_import(tmp_path):
    torch = pytest.importorskip("torch")
    spec = load_spec("alexnet-owt")
    w = canonical_weights(spec, 0)
    names = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
             "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}
    state = {}
    for key, value in w.items():
        layer, param = key.split(".")
        state[f"{names[layer]}.{param}"] = torch.from_numpy(value)
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    back = load_weights(path, spec)
    assert all(np.array_equal(w[k], back[k]) for k in w)


def test_pickled_objects_are_refused(tmp_path):
    import pickle

    path = tmp_path / "evil.pth"

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path.write_bytes(pickle.dumps({"features.0.weight": Payload()}))
    with pytest.raises(SpecError, match="weights_only=True refuses"):
        load_weights(path, load_spec("alexnet-owt"))


def test_truncated_safetensors_is_named_as_such(tmp_path):
    """A cut-off download was reported as 'not a loadable PyTorch state_dict' when its header length
    happened to start with the pickle byte 0x80."""
    from alexbench.spec.weights import safetensors_bytes

    spec = load_spec(SPEC)
    w = canonical_weights(spec, 0)
    data = next(d for n in range(512) if (d := safetensors_bytes(w, {"note": "x" * n}))[0] == 0x80)
    assert load_weights_bytes(tmp_path / "ok.safetensors", data, spec)  # whole, it loads
    for name in ("w.safetensors", "w.bin"):  # by extension, and by its header
        with pytest.raises(SpecError) as info:
            load_weights_bytes(tmp_path / name, data[: len(data) // 2], spec)
        text = str(info.value)
        assert "truncated or corrupt safetensors file" in text and "PyTorch" not in text
        assert f"{len(data) // 2:,} bytes, but its header describes {len(data):,}" in text
    with pytest.raises(SpecError, match="truncated or corrupt safetensors file; received 20 bytes, but the "
                                        "header alone says"):
        load_weights_bytes(tmp_path / "w.safetensors", data[:20], spec)


def load_weights_bytes(path, data: bytes, spec):
    path.write_bytes(data)
    return load_weights(path, spec)


def test_pickled_model_error_has_no_terminal_colour_codes(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole model, not a state_dict: torch's message is coloured
    with pytest.raises(SpecError) as info:
        load_weights(path, load_spec("alexnet-owt"))
    text = str(info.value)
    assert "Weights only load failed" in text and "do those steps only if you trust" in text
    assert "\x1b" not in text


def test_dataparallel_module_prefix_is_stripped(tmp_path):
    torch = pytest.importorskip("torch")
    spec = load_spec(SPEC)
    w = canonical_weights(spec, 0)
    path = tmp_path / "dp.pth"
    torch.save({f"module.{k}": torch.from_numpy(v) for k, v in w.items()}, path)
    back = load_weights(path, spec)
    assert sorted(back) == sorted(w) and all(np.array_equal(w[k], back[k]) for k in w)
