"""Each op is defined once, in spec/ops.py, with everything the other layers read from it."""

from __future__ import annotations

import pytest

from alexbench.harness.report.diagram import FAMILY_COLORS
from alexbench.spec import OPS


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_states_what_it_computes_and_how_to_draw_it(name):
    op = OPS[name]
    assert op.name == name
    assert op.summary and op.formula, f"op '{name}' has no summary or formula"
    assert op.family in FAMILY_COLORS, f"op '{name}': family {op.family!r}; the diagram knows {sorted(FAMILY_COLORS)}"


def test_fixed_init_names_only_the_ops_own_parameters():
    for name, op in OPS.items():
        assert set(op.fixed_init) <= {"weight", "bias", "running_mean", "running_var"}, name
    assert set(OPS["batchnorm2d"].fixed_init) == {"weight", "bias", "running_mean", "running_var"}
