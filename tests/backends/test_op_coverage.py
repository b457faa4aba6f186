"""Every op of spec/ops.py is lowered by every backend, or declared unsupported with a reason."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from alexbench.backends.base import Backend
from alexbench.backends.registry import BUILTIN, load_backend_class
from alexbench.spec import OPS, parse_spec


def coverage_problems(cls: type[Backend]) -> list[str]:
    """What is wrong with a backend's op coverage; empty when every op is accounted for once."""
    lowered, unsupported = set(cls.lowering()), set(cls.unsupported_ops)
    problems = [f"op '{op}' is neither lowered nor declared unsupported"
                for op in sorted(set(OPS) - lowered - unsupported)]
    problems += [f"op '{op}' is both lowered and declared unsupported" for op in sorted(lowered & unsupported)]
    problems += [f"'{op}' is not an op of spec/ops.py" for op in sorted((lowered | unsupported) - set(OPS))]
    problems += [f"op '{op}' is declared unsupported without a reason" for op, why in cls.unsupported_ops.items()
                 if not why.strip()]
    return problems


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_backend_covers_every_op(name):
    assert coverage_problems(load_backend_class(name)) == []


def _planted(table: dict[str, Any], unsupported: dict[str, str]) -> type[Backend]:
    class Planted(Backend):
        name: ClassVar[str] = "planted"
        unsupported_ops: ClassVar[dict[str, str]] = unsupported

        @classmethod
        def lowering(cls) -> dict[str, Any]:
            return table

    return Planted


def test_a_missing_lowering_is_caught():
    table = dict.fromkeys(OPS)
    del table["lrn"]
    assert coverage_problems(_planted(table, {})) == ["op 'lrn' is neither lowered nor declared unsupported"]


def test_an_op_lowered_and_declared_unsupported_is_caught():
    assert coverage_problems(_planted(dict.fromkeys(OPS), {"lrn": "no LRN kernel"})) == [
        "op 'lrn' is both lowered and declared unsupported"]


def test_declared_unsupported_op_passes_and_names_the_layer_with_its_reason():
    table = dict.fromkeys(OPS)
    del table["lrn"]
    cls = _planted(table, {"lrn": "this runtime has no LRN kernel"})
    assert coverage_problems(cls) == []
    spec = parse_spec("name: t\ninput: [3, 8, 8]\nlayers:\n  - {name: c, op: conv2d, filters: 4, kernel: 3}\n"
                      "  - {name: n, op: lrn, size: 3}\n")
    assert cls.unsupported_reason(spec) == "layer 'n': op 'lrn' is not supported: this runtime has no LRN kernel"
