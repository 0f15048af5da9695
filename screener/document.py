"""Read a YAML file into plain Python values, remembering where every value came from.

PyYAML's safe loader already refuses to build Python objects, but it silently keeps the
last of two duplicate keys and forgets positions. We compose the node graph instead and
build the values ourselves: duplicate keys become errors, every key and value keeps its
line and column, and any tag outside YAML's core schema is refused before it can mean
anything. Node and depth budgets bound what an alias bomb or a deeply nested document
can cost.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Diagnostic, Position, ScreenerError

PathKey = tuple[str | int, ...]

MAX_BYTES = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 50

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_C_SAFE_DEPTH = 1000
_constructor = yaml.constructor.SafeConstructor()


@dataclass
class Document:
    """A parsed YAML file: its data, and the position of every key and value by path."""

    file: str
    text: str
    data: Any
    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)
    # The text of scalars YAML resolved to something other than a string, so a field that
    # wants text (an id such as 0012345, which YAML 1.1 reads as octal) gets it as written.
    scalars: dict[PathKey, str] = field(default_factory=dict)

    def line_text(self, line: int) -> str | None:
        lines = self.text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else None

    def position(self, path: PathKey, *, key: bool = False) -> Position | None:
        """Where `path` is written; falls back to the nearest enclosing node."""
        table = self.keys if key else self.values
        while True:
            if path in table:
                return table[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]

    def diagnostic(
        self, message: str, path: PathKey = (), *, key: bool = False, hint: str | None = None
    ) -> Diagnostic:
        pos = self.position(path, key=key)
        return Diagnostic(
            message=message,
            file=self.file,
            position=pos,
            hint=hint,
            source_line=self.line_text(pos.line) if pos else None,
        )


def _error(file: str, text: str, message: str, line: int | None, column: int | None,
           hint: str | None = None, error: type[ScreenerError] = ScreenerError) -> ScreenerError:
    pos = Position(line, column) if line is not None and column is not None else None
    lines = text.splitlines()
    source = lines[line - 1] if pos and 0 < line <= len(lines) else None
    return error(Diagnostic(message, file, pos, hint, source))


def read_text(path: Path, display: str, error: type[ScreenerError]) -> str:
    """Read a file as UTF-8 text, refusing binary, oversized and undecodable input."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise error(Diagnostic(f"file is {size:,} bytes; the limit is {MAX_BYTES:,}", display))
        raw = path.read_bytes()
    except OSError as exc:
        raise error(Diagnostic(f"cannot read file: {exc.strerror or exc}", display)) from None
    if b"\x00" in raw:
        raise error(Diagnostic("file is binary (contains NUL bytes), not YAML text", display))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start: exc.start].decode("utf-8", errors="replace")) + 1
        text = raw.decode("utf-8", errors="replace")
        raise _error(display, text, "file is not UTF-8 text", line, column,
                     "save the file as UTF-8", error) from None


def parse(text: str, file: str, error: type[ScreenerError] = ScreenerError) -> Document:
    """Parse YAML text into a Document; any problem raises `error` with a position."""
    if "\t" in text:
        for number, line in enumerate(text.splitlines(), 1):
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            if "\t" in indent:
                raise _error(file, text, "tab used for indentation", number,
                             indent.index("\t") + 1, "indent with spaces", error)
    # libyaml recurses on the C stack and can crash the whole process on pathological
    # nesting; the pure-Python parser raises RecursionError instead. Take it whenever the
    # text could nest deeply: an upper bound is every bracket plus the longest indent.
    prefix = max((len(line) - len(line.lstrip(" -")) for line in text.splitlines()), default=0)
    deep = text.count("[") + text.count("{") + prefix > _C_SAFE_DEPTH
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader if deep else _Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        if mark is None:
            raise _error(file, text, message, None, None, error=error) from None
        raise _error(file, text, message, mark.line + 1, mark.column + 1, error=error) from None
    except yaml.YAMLError as exc:
        raise _error(file, text, f"invalid YAML: {exc}", None, None, error=error) from None
    except RecursionError:
        raise _error(file, text, "document is nested too deeply", None, None,
                     error=error) from None
    doc = Document(file=file, text=text, data=None)
    if node is None:
        return doc
    builder = _Builder(doc, error)
    doc.data = builder.build(node, (), 0)
    return doc


class _Builder:
    def __init__(self, doc: Document, error: type[ScreenerError]) -> None:
        self.doc = doc
        self.error = error
        self.count = 0

    def fail(self, node: yaml.Node, message: str, hint: str | None = None) -> ScreenerError:
        mark = node.start_mark
        return _error(self.doc.file, self.doc.text, message, mark.line + 1, mark.column + 1,
                      hint, self.error)

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, f"document has more than {MAX_NODES:,} values",
                            "is an alias (*name) repeated many times?")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"document is nested more than {MAX_DEPTH} levels deep")
        mark = node.start_mark
        self.doc.values[path] = Position(mark.line + 1, mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            value = self.scalar(node)
            if not isinstance(value, str):
                self.doc.scalars[path] = node.value
            return value
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _CORE + "seq":
                raise self.fail(node, f"YAML tag {node.tag!r} is not allowed")
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _CORE + "map":
                raise self.fail(node, f"YAML tag {node.tag!r} is not allowed")
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _CORE + "merge":
                    raise self.fail(key_node, "YAML merge keys (<<) are not supported")
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, "a mapping key must be a plain value")
                key = self.scalar(key_node)
                if key is None:
                    raise self.fail(key_node, "empty mapping key")
                key = str(key) if not isinstance(key, str) else key
                if key in result:
                    first = self.doc.keys[path + (key,)]
                    raise self.fail(key_node, f"duplicate key {key!r} (first at line {first.line})")
                km = key_node.start_mark
                self.doc.keys[path + (key,)] = Position(km.line + 1, km.column + 1)
                result[key] = self.build(value_node, path + (key,), depth + 1)
            return result
        raise self.fail(node, "unsupported YAML node")  # pragma: no cover - no other node kinds

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, f"YAML tag {node.tag!r} is not allowed",
                            "patient and rule files hold plain values only")
        try:
            value = _constructor.yaml_constructors[node.tag](_constructor, node)
        except (ValueError, TypeError, OverflowError, yaml.constructor.ConstructorError) as exc:
            kind = node.tag.rsplit(":", 1)[-1]
            raise self.fail(node, f"invalid {kind} {node.value!r}: {exc}") from None
        if isinstance(value, dt.datetime):
            # A time of day adds nothing to a screening and would break date arithmetic.
            value = value.date()
        return value


def load(path: Path, display: str | None = None,
         error: type[ScreenerError] = ScreenerError) -> Document:
    """Read and parse a YAML file."""
    name = display if display is not None else str(path)
    return parse(read_text(path, name, error), name, error)
