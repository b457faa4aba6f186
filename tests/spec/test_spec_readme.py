"""spec/README.md documents every op's formula and every field; this keeps it in step with the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexbench.spec import OPS
from alexbench.spec.init import INIT_DISTS
from alexbench.spec.training import SECTION_KEYS, TrainingSpec

README = (Path(__file__).parents[2] / "spec" / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_documented(name):
    op = OPS[name]
    section = README.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
    assert op.formula in section
    for field_name, field in op.fields.items():
        assert f"| `{field_name}` |" in section
        assert field.expected.split(" (default")[0] in section


def test_init_dists_documented():
    for name in INIT_DISTS:
        assert f"| `{name}` |" in README


def test_training_keys_documented_with_their_defaults():
    section = README.split("## Training", 1)[1].split("\n## ", 1)[0]
    for key in SECTION_KEYS:
        default = getattr(TrainingSpec(), key, None)
        if isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        elif isinstance(default, (int, float)):
            shown = f"`{default:g}`"
        else:
            shown = f"`{default}`" if default is not None else "none"
        assert f"| `{key}` | {shown} |" in section, key
    assert "weight_decay + 2 x" in section
