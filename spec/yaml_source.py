"""Safe YAML loading that remembers where every value came from.

PyYAML's ``SafeLoader`` composes the document into nodes (no Python object tags are ever
constructed); we turn those nodes into plain values wrapped in ``Node`` objects that keep
their line and column, so that validation errors can name ``FILE:LINE:COL``.

Hostile input is bounded: file size, nesting depth and the number of nodes visited (an
alias "billion laughs" document shares nodes, so counting visits stops it expanding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from .errors import Location, SpecError

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 50_000
_PLAIN_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


@dataclass(frozen=True)
class Node:
    """A YAML value with its location. ``value`` is a scalar, ``dict[str, Node]`` or ``list[Node]``."""

    value: Any
    location: Location

    def plain(self) -> Any:
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _location(file: str, mark: yaml.Mark | None) -> Location:
    if mark is None:
        return Location(file, 1, 1)
    return Location(file, mark.line + 1, mark.column + 1)


def decode_spec_bytes(data: bytes, file: str) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(Location(file, 1, 1), "file", "spec file is too large",
                        f"{len(data):,} bytes", f"at most {MAX_FILE_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(Location(file, line, col), "file", "spec is not UTF-8 text",
                        f"byte 0x{data[exc.start]:02x}", "a UTF-8 encoded YAML document") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise SpecError(Location(file, line, 1), "file", "spec is a binary file",
                        "a NUL byte", "a UTF-8 encoded YAML document")
    return text


def load_yaml(text: str, file: str) -> Node:
    """Parse one YAML document safely into located ``Node`` values."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.reader.ReaderError as exc:
            raise _reader_error(exc, text, file) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            raise SpecError(_location(file, mark), "file", f"not valid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise SpecError(Location(file, 1, 1), "file", f"not valid YAML: {exc}") from None
        except RecursionError:
            raise SpecError(Location(file, 1, 1), "file", "YAML nesting is too deep",
                            None, f"at most {MAX_DEPTH} levels") from None
        if root is None:
            raise SpecError(Location(file, 1, 1), "file", "spec is empty",
                            "an empty document", "a YAML mapping with name, input and layers")
        return _Converter(loader, file).convert(root, 0)
    finally:
        loader.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> SpecError:
    before = text[: exc.position]
    line = before.count("\n") + 1
    col = exc.position - (before.rfind("\n") + 1) + 1
    return SpecError(Location(file, line, col), "file", "spec contains a character YAML does not allow",
                     f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character),
                     "printable UTF-8 text")


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.visited = 0

    def convert(self, node: yaml.Node, depth: int) -> Node:
        loc = _location(self.file, node.start_mark)
        self.visited += 1
        if self.visited > MAX_NODES:
            raise SpecError(loc, "file", "YAML document expands to too many values (alias bomb?)",
                            f"more than {MAX_NODES:,}", "a spec of ordinary size")
        if depth > MAX_DEPTH:
            raise SpecError(loc, "file", "YAML nesting is too deep", None, f"at most {MAX_DEPTH} levels")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_COLLECTION_TAGS:
            raise SpecError(loc, "file", "YAML value cannot be loaded safely: tagged collections are not allowed",
                            f"tag {node.tag}", "plain YAML scalars, lists and mappings")
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Node] = {}
            for key_node, value_node in node.value:
                key = self.convert(key_node, depth + 1)
                if not isinstance(key.value, str):
                    raise SpecError(key.location, "file", "mapping keys must be strings",
                                    repr(key.plain()), "a field name")
                if key.value in out:
                    raise SpecError(key.location, "file", f"duplicate key '{key.value}'",
                                    None, "each key once per mapping")
                out[key.value] = self.convert(value_node, depth + 1)
            return Node(out, loc)
        if isinstance(node, yaml.SequenceNode):
            return Node([self.convert(item, depth + 1) for item in node.value], loc)
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise SpecError(loc, "file", f"YAML value cannot be loaded safely: {problem}",
                            f"tag {node.tag}", "plain YAML scalars, lists and mappings") from None
        except (ValueError, OverflowError) as exc:
            raise SpecError(loc, "file", f"YAML value cannot be read: {exc}", repr(node.value)) from None
        return Node(value, loc)
