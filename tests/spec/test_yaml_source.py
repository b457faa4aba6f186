"""Hostile YAML is refused with a located message, quickly and without blowing up memory."""

from __future__ import annotations

import pytest

from alexbench.spec import SpecError, parse_spec


def error(data) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "x.yaml")
    return str(info.value)


def test_alias_bomb():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    assert "expands to too many values (alias bomb?)" in error("\n".join(lines))


def test_deep_nesting():
    assert "YAML nesting is too deep" in error("a: " + "[" * 100 + "]" * 100)
    assert "YAML nesting is too deep" in error("a: " + "[" * 5000 + "]" * 5000)


def test_not_utf8():
    assert error(b"name: t\ninput: [1, 2, 3]\n\xff\xfe") == (
        "x.yaml:3:1: file: spec is not UTF-8 text; received byte 0xff; expected a UTF-8 encoded YAML document")


def test_binary():
    assert error(b"name: t\n\x00\x01\x02") == (
        "x.yaml:2:1: file: spec is a binary file; received a NUL byte; expected a UTF-8 encoded YAML document")


def test_too_large():
    assert "spec file is too large" in error(b"#" * (2 << 20))


def test_duplicate_keys():
    assert error("name: a\nname: b\n") == "x.yaml:2:1: file: duplicate key 'name'; expected each key once per mapping"


def test_invalid_yaml_is_located():
    assert error("name: [a, b\ninput: 3\n").startswith("x.yaml:")


def test_non_string_key():
    assert "mapping keys must be strings" in error("1: a\n")


def test_control_character_found_by_fuzzing():
    assert error("name: t\ninput: \x08") == (
        "x.yaml:2:8: file: spec contains a character YAML does not allow; received U+0008; "
        "expected printable UTF-8 text")
