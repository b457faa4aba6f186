"""Field parsers: turn a located YAML value into a normalised Python value, or say why not.

Each parser raises ``FieldProblem(what, received, expected)``; the loader adds the file,
line, column and layer. ``expected`` doubles as the field's documentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


class FieldProblem(ValueError):
    def __init__(self, what: str, received: object, expected: str):
        super().__init__(what)
        self.what = what
        self.received = received
        self.expected = expected


REQUIRED = object()


@dataclass(frozen=True)
class Field:
    parse: Callable[[str, Any], Any]
    expected: str
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def show(value: Any) -> str:
    """A received value as the user wrote it, with its YAML type when that is the problem."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({_type_name(value)})"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "mapping"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_at_least(minimum: int) -> Callable[[str, Any], int]:
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(name: str, value: Any) -> int:
        if not _is_int(value):
            raise FieldProblem(f"field '{name}' has the wrong type", show(value), expected)
        if value < minimum:
            raise FieldProblem(f"field '{name}' must be {'positive' if minimum == 1 else f'>= {minimum}'}",
                               value, expected)
        return value
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def odd_positive_int(name: str, value: Any) -> int:
    value = positive_int(name, value)
    if value % 2 == 0:
        raise FieldProblem(f"field '{name}' must be odd (torch and ONNX place even windows differently, "
                           "ONNX Runtime refuses them)", value, "an odd positive integer such as 3 or 5")
    return value


def positive_pair(name: str, value: Any) -> tuple[int, int]:
    """``k`` or ``[kh, kw]``."""
    expected = "a positive integer or [height, width]"
    if _is_int(value):
        return (positive_int(name, value),) * 2
    if isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value):
        for v in value:
            if v < 1:
                raise FieldProblem(f"field '{name}' must be positive", value, expected)
        return (value[0], value[1])
    raise FieldProblem(f"field '{name}' has the wrong type", show(value), expected)


PADDING_EXPECTED = "an integer >= 0, [vertical, horizontal] or [top, bottom, left, right]"


def padding4(name: str, value: Any) -> tuple[int, int, int, int]:
    """``p``, ``[v, h]`` (like kernel and stride) or ``[top, bottom, left, right]``; never 'same'
    (frameworks disagree on the odd pixel: the loader says which explicit padding 'same' means there)."""
    expected = PADDING_EXPECTED
    if _is_int(value):
        return (nonnegative_int(name, value),) * 4
    if isinstance(value, list) and len(value) in (2, 4) and all(_is_int(v) for v in value):
        if any(v < 0 for v in value):
            raise FieldProblem(f"field '{name}' must not be negative", value, expected)
        if len(value) == 2:
            return (value[0], value[0], value[1], value[1])
        return tuple(value)  # type: ignore[return-value]
    if isinstance(value, str) and value.strip().lower() == "valid":
        raise FieldProblem(f"field '{name}' must be explicit: 'valid' is written 0", show(value), expected)
    if isinstance(value, str):
        raise FieldProblem(f"field '{name}' must be explicit: '{value}' padding means different pixels in "
                           "different frameworks", show(value), expected)
    raise FieldProblem(f"field '{name}' has the wrong type", show(value), expected)


def same_padding(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]
                 ) -> tuple[int, int, int, int]:
    """What TensorFlow/Keras 'same' pads: total = max((ceil(in/s) - 1)*s + k - in, 0), the odd
    pixel at the bottom/right."""
    out = []
    for n, k, s in zip(size, kernel, stride):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        out += [total // 2, total - total // 2]
    return tuple(out)  # type: ignore[return-value]


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldProblem(f"field '{name}' has the wrong type", show(value), "true or false")
    return value


def number_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False
              ) -> Callable[[str, Any], float]:
    left, right = ("(" if low_open else "["), (")" if high_open else "]")
    expected = f"a number in {left}{low:g}, {high:g}{right}"
    if math.isinf(high):
        expected = f"a number {'>' if low_open else '>='} {low:g}"

    def parse(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldProblem(f"field '{name}' has the wrong type", show(value), expected)
        value = float(value)
        if not math.isfinite(value):
            raise FieldProblem(f"field '{name}' must be finite", value, expected)
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            raise FieldProblem(f"field '{name}' is out of range", value, expected)
        return value
    return parse


any_number = number_in(-math.inf, math.inf)
positive_number = number_in(0.0, math.inf, low_open=True)


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FieldProblem(f"field '{name}' has the wrong type", show(value), "a string")
    return value


def number_list(length: int | None, item: Callable[[str, Any], float]) -> Callable[[str, Any], tuple]:
    expected = f"a list of {length} numbers" if length else "a list of numbers"

    def parse(name: str, value: Any) -> tuple:
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise FieldProblem(f"field '{name}' has the wrong shape", show(value), expected)
        return tuple(item(name, v) for v in value)
    return parse
