"""The harness names no framework: it neither imports one nor switches on a backend's name.

Framework code lives in the backends, behind the hooks on ``Backend`` (``backends/base.py``);
the harness calls the hooks and reads what a backend class declares. This test parses every
module under ``harness/`` (imports inside functions count too) and fails on

* an import of a framework module (``import torch``, ``from onnx import helper``, or
  ``importlib.import_module("jax")``);
* a switch on a name: a comparison or membership test (==, !=, in, not in, ``match``/``case``,
  ``str.startswith``/``endswith``) against a string that is a built-in backend's or a framework's
  name, a dict literal keyed by such names, or a membership test against a module/class-level
  tuple/list/set of such names (``name in KERAS_FAMILY``).

A tuple or list of names assigned to a name and never tested against (a CLI default such as
``DEFAULT_BACKENDS = ("torch", "keras", ...)``) is not a switch, so it is allowed: choosing
which backends to run by default names backends without branching on them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from alexbench.backends.registry import BUILTIN

HARNESS = Path(__file__).resolve().parents[2] / "harness"
FRAMEWORKS = frozenset({"torch", "tensorflow", "keras", "jax", "jaxlib", "onnx", "onnxruntime", "tf2onnx",
                        "onnxscript"})
# "reference" and "null" are NumPy / no framework: the harness may name them.
NAMES = frozenset(set(BUILTIN) - {"reference", "null"}) | FRAMEWORKS
COMPARISONS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def _named_strings(node: ast.AST | None) -> list[str]:
    """The backend/framework names a string constant or a literal collection of them holds."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in NAMES else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [name for element in node.elts for name in _named_strings(element)]
    return []


def _reference(node: ast.AST) -> str | None:
    """``TABLE`` or ``self.TABLE`` -> "TABLE"."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _name_tables(tree: ast.AST) -> set[str]:
    """Names bound to a tuple/list/set literal that holds backend or framework names."""
    tables = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _named_strings(node.value):
            tables.update(ref for target in node.targets if (ref := _reference(target)))
        elif isinstance(node, ast.AnnAssign) and node.value is not None and _named_strings(node.value):
            if ref := _reference(node.target):
                tables.add(ref)
    return tables


def framework_violations(source: str, filename: str = "<source>") -> list[str]:
    """Every place ``source`` imports a framework or switches on a backend/framework name,
    as "file:line: what"."""
    tree = ast.parse(source, filename)
    tables = _name_tables(tree)
    found = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] in FRAMEWORKS:
                    flag(node, f"imports {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").partition(".")[0] in FRAMEWORKS:
                flag(node, f"imports from {node.module}")
        elif isinstance(node, ast.Call):
            func = _reference(node.func)
            args = node.args[:1]
            if func in ("import_module", "__import__") and args:
                value = args[0].value if isinstance(args[0], ast.Constant) else None
                if isinstance(value, str) and value.partition(".")[0] in FRAMEWORKS:
                    flag(node, f"imports {value}")
            elif func in ("startswith", "endswith") and args and _named_strings(args[0]):
                flag(node, f"{func}({', '.join(map(repr, _named_strings(args[0])))})")
        elif isinstance(node, ast.Compare) and any(isinstance(op, COMPARISONS) for op in node.ops):
            operands = [node.left, *node.comparators]
            names = [name for operand in operands for name in _named_strings(operand)]
            if names:
                flag(node, f"compares against {', '.join(map(repr, names))}")
            elif any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
                hit = [ref for operand in node.comparators if (ref := _reference(operand)) in tables]
                if hit:
                    flag(node, f"tests membership in {', '.join(hit)}, a table of backend/framework names")
        elif isinstance(node, ast.Dict):
            keys = [name for key in node.keys for name in _named_strings(key)]
            if keys:
                flag(node, f"dict keyed by {', '.join(map(repr, keys))}")
        elif isinstance(node, ast.match_case):
            pattern_values = [n.value for n in ast.walk(node.pattern) if isinstance(n, ast.MatchValue)]
            names = [name for value in pattern_values for name in _named_strings(value)]
            if names:
                flag(node.pattern, f"matches {', '.join(map(repr, names))}")
    return found


def test_the_harness_names_no_framework():
    paths = sorted(HARNESS.rglob("*.py"))
    assert len(paths) > 10, f"no harness modules found under {HARNESS}"
    violations = [v for path in paths for v in framework_violations(path.read_text(encoding="utf-8"),
                                                                    str(path.relative_to(HARNESS.parent)))]
    assert not violations, "framework code belongs in the backends' hooks (backends/base.py):\n" + "\n".join(violations)


@pytest.mark.parametrize("source", [
    "import torch\n",
    "import onnxruntime.capi as capi\n",
    "from onnx import helper\n",
    "def f():\n    import tensorflow as tf\n    return tf\n",
    "def f(name):\n    if name == 'keras':\n        return 1\n",
    "def f(name):\n    return name in ('keras', 'keras-torch')\n",
    "def f(name):\n    return name != 'onnx-torch'\n",
    "import sys\nok = 'jax' in sys.modules\n",
    "SUPPORT = {'torch': 1, 'null': 2}\n",
    "KERAS_FAMILY = ('keras', 'keras-jax')\ndef f(name):\n    return name in KERAS_FAMILY\n",
    "def f(name):\n    return name.startswith('keras')\n",
    "import importlib\nm = importlib.import_module('jax.numpy')\n",
    "def f(name):\n    match name:\n        case 'torch':\n            return 1\n",
])
def test_the_checker_finds_a_planted_violation(source):
    assert framework_violations(source), source


@pytest.mark.parametrize("source", [
    "DEFAULT_BACKENDS = ('torch', 'keras', 'onnx-torch')\n",  # a default to run, not a switch
    "def f(backends: list = ['torch', 'keras']):\n    return backends\n",
    "def f(name):\n    return name == 'null' or name in ('reference',)\n",  # no framework behind these
    "from ..backends.onnx import cache\nimport numpy\n",  # the project's own modules, NumPy
    "def f(cls):\n    return cls.compiled_variant is None\n",
])
def test_the_checker_passes_what_is_no_switch(source):
    assert framework_violations(source) == []
