"""Spec errors that point at the line a user has to fix.

Every problem found in a spec becomes one ``SpecError`` whose text reads
``FILE:LINE:COL: WHERE: what is wrong; received ...; expected ...`` where WHERE is
``layer 'NAME' (op)`` for a layer, or ``field 'PATH'`` for a model-level field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class SpecError(ValueError):
    """A spec (or a weights file checked against one) is not valid. CLI exit code 2."""

    def __init__(self, location: Location | None, where: str, what: str,
                 received: object = None, expected: object = None):
        self.location = location
        self.where = where
        self.what = what
        self.received = received
        self.expected = expected
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what]
        if self.received is not None:
            parts.append(f"received {self.received}")
        if self.expected is not None:
            parts.append(f"expected {self.expected}")
        prefix = f"{self.location}: " if self.location else ""
        return f"{prefix}{self.where}: " + "; ".join(parts)


class SpecErrors(SpecError):
    """Several independent problems in one spec, reported together like a linter: one located line
    per problem, then a count. Its location/where/what are the first problem's."""

    def __init__(self, problems: list[SpecError]):
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(first.location, first.where, first.what, first.received, first.expected)

    @property
    def message(self) -> str:
        file = self.problems[0].location.file if self.problems[0].location else "the spec"
        return "\n".join([p.message for p in self.problems] + [f"{len(self.problems)} problems in {file}"])


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """A third-party message without terminal colour codes (torch's pickle errors carry them)."""
    return _ANSI.sub("", text)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """A third-party exception as one line of a message: its first line, without colour codes, cut
    to ``limit`` characters (its type when it says nothing)."""
    text = strip_ansi(str(exc)).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def layer_where(name: str, op: str) -> str:
    """``layer 'NAME' (op)``; a name or op with a newline or control character is shown escaped,
    so that every problem stays one line."""
    shown_name = name if str(name).isprintable() else repr(name)[1:-1]
    shown_op = op if str(op).isprintable() else repr(op)
    return f"layer '{shown_name}' ({shown_op})"


def field_where(path: str) -> str:
    return f"field '{path}'"
