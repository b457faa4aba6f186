"""The backend registry: names, did-you-mean, entry-point plugins, and no framework imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alexbench.backends import registry
from alexbench.backends.registry import UnknownBackend, available_backends, backend_target, load_backend_class


def test_unknown_name_suggests_the_closest_and_lists_all():
    with pytest.raises(UnknownBackend) as info:
        backend_target("torhc")
    message = str(info.value)
    assert message.startswith("unknown backend 'torhc' (did you mean 'torch'?); known backends: ")
    for name in registry.BUILTIN:
        assert name in message


def test_entry_point_plugin_is_found_and_loaded(plugin):
    found = available_backends()
    assert found["planted"] == "alexbench_test_plugin:Planted"
    assert list(found)[: len(registry.BUILTIN)] == list(registry.BUILTIN)  # built-ins first
    cls = load_backend_class("planted")
    assert cls.name == "planted" and cls.__module__ == "alexbench_test_plugin"


def test_install_hint_is_one_line_naming_the_extra():
    hint = registry.install_hint("keras", "tensorflow")
    assert hint == "backend 'keras' needs tensorflow: pip install 'alexbench[keras]'"
    assert registry.install_hint("keras-jax", "jax.numpy") == (
        "backend 'keras-jax' needs jax: pip install 'alexbench[jax]'")


def test_missing_module_tells_an_absent_framework_from_a_broken_one():
    try:
        import alexbench_absent_framework  # noqa: F401
    except ImportError as exc:
        assert registry.missing_module(exc) == "alexbench_absent_framework"
    # An installed package missing a submodule is broken, not absent.
    assert registry.missing_module(ModuleNotFoundError("x", name="numpy.no_such_module")) is None
    assert registry.missing_module(ModuleNotFoundError("x", name="alexbench.backends.nope")) is None


def test_keras_flavours_carry_their_keras_backend():
    # The worker sets a class's env before the framework is imported (Keras reads it once).
    envs = {name: load_backend_class(name).env["KERAS_BACKEND"] for name in ("keras", "keras-torch", "keras-jax")}
    assert envs == {"keras": "tensorflow", "keras-torch": "torch", "keras-jax": "jax"}


def test_importing_alexbench_imports_no_framework():
    code = (
        "import json, sys\n"
        "import alexbench, alexbench.backends.registry, alexbench.harness.workers.runner, alexbench.harness.cli.main\n"
        "alexbench.backends.registry.available_backends()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'tensorflow', 'jax', 'keras', 'onnx', 'onnxruntime', 'tf2onnx'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
