"""Read a YAML file into plain Python values, remembering where every value came from.

PyYAML's safe loader already refuses to build Python objects, but it silently keeps the
last of two duplicate keys and forgets positions. We compose the node graph instead and
build the values ourselves: duplicate keys become errors, every key and value keeps its
line and column, and any tag outside YAML's core schema is refused before it can mean
anything. Node and depth budgets bound what an alias bomb or a deeply nested document
can cost.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from screener.core._errors import Diagnostic, Position, ScreenerError, clip, describe_value, nearest
from screener.core._memo import keep
from screener.reading._files import TooLarge, read_regular

PathKey = tuple[str | int, ...]
T = TypeVar("T")

MAX_BYTES = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 50

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_C_SAFE_DEPTH = 1000
_constructor = yaml.constructor.SafeConstructor()
# An integer beyond a float's range compares with nothing and cannot even be printed past
# Python's 4,300-digit limit (a hex literal can reach that in a few KB), so it is refused.
_MAX_INT_BITS = 1024
# YAML's line breaks (str.splitlines also splits on \v, \f and \x1c-\x1e, which YAML does
# not), so a quoted line is the line YAML's marks count.
_BREAKS = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
# Characters YAML refuses (PyYAML's own set, surrogates included): found here, so the error
# has a line and column, and so libyaml never sees a lone surrogate (it would raise
# UnicodeEncodeError instead of a YAML error).
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
# Byte order marks of encodings other than UTF-8, longest first (UTF-32-LE starts like
# UTF-16-LE). Such a file is text, just not UTF-8: say so instead of "binary".
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def split_lines(text: str) -> list[str]:
    """The lines of a text as YAML numbers them."""
    lines = _BREAKS.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


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
    # Read by the fast path: no positions and no scalar texts were kept. Asking for either
    # raises NeedsPositions, and parse_with parses the text again with them: a reader never
    # needs to know which kind of document it was given.
    fast: bool = False

    _lines: list[str] | None = field(default=None, repr=False, compare=False)

    def line_text(self, line: int) -> str | None:
        # Split once: a file with 90,000 unknown keys makes 90,000 diagnostics, and
        # splitting a 1 MB text for each took minutes.
        if self._lines is None:
            self._lines = split_lines(self.text)
        lines = self._lines
        return lines[line - 1] if 0 < line <= len(lines) else None

    def written(self, path: PathKey, value: Any) -> Any:
        """The text of a scalar YAML resolved to something other than a string, as written
        (`no` for false, 0012345 for octal 5349); `value` itself if it was not a scalar
        of the file (a mapping from elsewhere)."""
        if self.fast:
            raise NeedsPositions
        return self.scalars.get(path, value)

    def position(self, path: PathKey, *, key: bool = False) -> Position | None:
        """Where `path` is written; falls back to the nearest enclosing node.

        Every diagnostic asks this: on a fast-read document, an error or a warning sends
        the text to the positioned parse, which says where (parse_with)."""
        if self.fast:
            raise NeedsPositions
        table = self.keys if key else self.values
        while True:
            if path in table:
                return table[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]

    def strict(
        self,
        value: Any,
        path: PathKey,
        allowed: Iterable[str],
        what: str,
        error: type[ScreenerError],
        required: Iterable[str] = (),
    ) -> dict[str, Any]:
        """`value` as a mapping with only `allowed` keys and all `required` ones.

        Rule files and case files are written by people and read strictly: a misspelt key
        fails with its line and the nearest allowed name.
        """
        if not isinstance(value, dict):
            raise error(self.diagnostic(f"{what} must be a mapping", path))
        names = list(allowed)
        for key in value:
            if key not in names:
                guess = nearest(str(key), names)
                raise error(
                    self.diagnostic(
                        f"unknown key {describe_value(key)} in {what}",
                        path + (key,),
                        key=True,
                        hint=f"did you mean {guess!r}?"
                        if guess
                        else f"allowed: {', '.join(names)}",
                    )
                )
        for key in required:
            if key not in value:
                raise error(self.diagnostic(f"{what} needs {key!r}", path))
        return value

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


def _error(
    file: str,
    text: str,
    message: str,
    line: int | None,
    column: int | None,
    hint: str | None = None,
    error: type[ScreenerError] = ScreenerError,
) -> ScreenerError:
    pos = Position(line, column) if line is not None and column is not None else None
    lines = split_lines(text)
    source = lines[pos.line - 1] if pos and 0 < pos.line <= len(lines) else None
    return error(Diagnostic(message, file, pos, hint, source))


def read_text(path: str | Path, display: str, error: type[ScreenerError]) -> str:
    """Read a file as UTF-8 text, refusing binary, oversized and undecodable input."""
    try:
        raw = read_regular(path, MAX_BYTES)
    except TooLarge:
        raise error(Diagnostic(f"file is over the limit of {MAX_BYTES:,} bytes", display)) from None
    except OSError as exc:
        raise error(Diagnostic(f"cannot read file: {exc.strerror or exc}", display)) from None
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            raise error(
                Diagnostic(
                    f"file is {encoding} text, not UTF-8", display, hint="save the file as UTF-8"
                )
            )
    if b"\x00" in raw:
        raise error(Diagnostic("file is binary (contains NUL bytes), not YAML text", display))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        text = raw.decode("utf-8", errors="replace")
        raise _error(
            display, text, "file is not UTF-8 text", line, column, "save the file as UTF-8", error
        ) from None


class NeedsPositions(Exception):
    """A fast-read document lacks what the reader asked for; parse_with parses again."""


class _Fallback(Exception):
    pass


class _FastLoader(_Loader):  # type: ignore[misc, valid-type]
    """libyaml's composer, with the scalar constructors the fast read needs."""

    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
        # The tag of a plain scalar depends on its text alone (the safe loader has no path
        # resolvers), and files repeat most of theirs: keys, dates, words, units.
        if kind is not yaml.ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)
        tag = _PLAIN_TAGS.get(value)
        if tag is None:
            tag = keep(_PLAIN_TAGS, value, super().resolve(kind, value, implicit), _KEPT)
        return tag

    def construct_date(self, node: yaml.Node) -> Any:
        value = self.construct_yaml_timestamp(node)
        # A time of day adds nothing to a screening and would break date arithmetic.
        return value.date() if isinstance(value, dt.datetime) else value

    def construct_int(self, node: yaml.Node) -> Any:
        value = self.construct_yaml_int(node)
        if abs(value) > 10**15:
            raise _Fallback  # the positioned parser refuses it with a clear message
        return value


_KEPT = 4096  # scalar texts remembered (their tags, and the values made from them)
_PLAIN_TAGS: dict[str, str] = {}
_FastLoader.add_constructor(_CORE + "timestamp", _FastLoader.construct_date)
_FastLoader.add_constructor(_CORE + "int", _FastLoader.construct_int)

# The scalar constructors only read the node they are given, so one instance serves all.
_SCALAR_MAKER = _FastLoader("")
_STR = _CORE + "str"
_SCALARS: dict[str, Callable[[yaml.ScalarNode], Any]] = {
    _CORE + "null": _SCALAR_MAKER.construct_yaml_null,
    _CORE + "bool": _SCALAR_MAKER.construct_yaml_bool,
    _CORE + "int": _SCALAR_MAKER.construct_int,
    _CORE + "float": _SCALAR_MAKER.construct_yaml_float,
    _CORE + "timestamp": _SCALAR_MAKER.construct_date,
}


_MADE: dict[tuple[str, str], Any] = {}
_MISSING = object()


def _build(node: yaml.Node) -> Any:
    """The data of a composed node tree, as SafeLoader makes it but without its generic
    machinery (a third of the time of a plain file); anything unusual falls back."""
    # `type(node) is` rather than isinstance, for speed; spelled out here so that the type
    # checker narrows `node` for the scalar constructors.
    if type(node) is yaml.ScalarNode:
        tag = node.tag
        if tag == _STR:
            return node.value
        # Values of other types are immutable (numbers, booleans, dates, None), so one made
        # from the same text can be shared; files repeat most of theirs (dates above all).
        key = (tag, node.value)
        value = _MADE.get(key, _MISSING)
        if value is _MISSING:
            make = _SCALARS.get(tag)
            if make is None:
                raise _Fallback
            value = keep(_MADE, key, make(node), _KEPT)
        return value
    kind = type(node)
    if kind is yaml.MappingNode:
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Only plain text keys, each once: anything else is the positioned parser's call.
            if (
                type(key_node) is not yaml.ScalarNode
                or key_node.tag != _STR
                or key_node.value in mapping
            ):
                raise _Fallback
            mapping[key_node.value] = _build(value_node)
        return mapping
    if kind is yaml.SequenceNode:
        return [_build(item) for item in node.value]
    raise _Fallback


# What brings in what only the positioned parser handles: anchors and aliases (bounded
# expansion), tags, merge keys, tabs. Searched with `in`, a scan far cheaper than a regex.
_NOT_FAST = ("&", "*", "!", "\t", "<<")


def parse_with(
    text: str, file: str, read: Callable[[Document], T], error: type[ScreenerError] = ScreenerError
) -> T:
    """`read(document)` for the YAML text: the one way in for a reader that wants speed.

    The fast path and its plain twin behind one seam: the text is read without positions
    when it is plain (parse_fast), and `read` is given that document; if it is not plain,
    or `read` asks the document for what the fast read did not keep (a position for an
    error or a warning, a scalar as written) or raises `error`, the text is parsed again
    with positions (parse) and `read` runs on that. So the result is always the one the
    positioned parse gives (tests/test_seams.py checks that for every patient file), and
    `read` must be pure: it may run twice.
    """
    doc = parse_fast(text, file)
    if doc is not None:
        try:
            return read(doc)
        except (NeedsPositions, error):
            pass  # the positioned parse below says where
    return read(parse(text, file, error))


def parse_fast(text: str, file: str) -> Document | None:
    """The data of a plain YAML file without positions, or None: then use `parse`. Used
    through parse_with, never on its own: its document cannot say where anything is.

    For the common valid file this is several times cheaper than keeping every mark; any
    doubt (odd characters, deep nesting, duplicate or non-text keys, a parse error) hands
    the text to `parse`, which decides and explains with file, line and column.
    """
    if any(mark in text for mark in _NOT_FAST) or _NON_PRINTABLE.search(text):
        return None
    # A cruder bound on the nesting depth than `parse` uses, but one that needs no line
    # splitting: every level needs a bracket, a new line or a block indicator.
    depth = sum(text.count(mark) for mark in ("[", "{", "\n", "- ", "? ", ": "))
    if depth > _C_SAFE_DEPTH:
        return None
    loader = _FastLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else _build(node)
    except (yaml.YAMLError, _Fallback, ValueError, TypeError, OverflowError, RecursionError):
        return None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        return None
    return Document(file=file, text=text, data=data, fast=True)


def parse(text: str, file: str, error: type[ScreenerError] = ScreenerError) -> Document:
    """Parse YAML text into a Document; any problem raises `error` with a position."""
    if "\t" in text:
        for number, line in enumerate(split_lines(text), 1):
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            if "\t" in indent:
                raise _error(
                    file,
                    text,
                    "tab used for indentation",
                    number,
                    indent.index("\t") + 1,
                    "indent with spaces",
                    error,
                )
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        before = split_lines(text[: bad.start()] + "x")
        raise _error(
            file,
            text,
            f"character U+{ord(bad.group()):04X} is not allowed in YAML "
            "text (a control character or an invalid code point)",
            len(before),
            len(before[-1]),
            "delete it; such characters often come with text pasted from elsewhere",
            error,
        )
    # libyaml's composer recurses on the C stack and can crash the whole process on
    # pathological nesting. An upper bound on the depth is every bracket plus the longest
    # run of indentation and block indicators opening a line (`- - -`, and `? ? ?` complex
    # keys, which nest just as deep: 80 KB of `? ` crashed the process with a segfault).
    # Only when that bound is high are the tokens counted, by libyaml's scanner, which
    # does not recurse. (The pure-Python parser, used here before, took 8 s on a 1 MB
    # file of `- [a]` lines.)
    prefix = max((len(line) - len(line.lstrip(" -?:")) for line in split_lines(text)), default=0)
    deep = text.count("[") + text.count("{") + prefix > _C_SAFE_DEPTH
    try:
        found = _prescan(text) if deep else None
        if found is not None:
            mark = found[0].start_mark
            raise _error(file, text, found[1], mark.line + 1, mark.column + 1, error=error)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        hint = None
        if exc.problem == "but found another document":
            # `---` a second time: one file is one document (one patient, one trial).
            message = "the file holds more than one YAML document; the second starts here"
            hint = "put each document in its own file"
        elif (
            exc.context
            and mark is not None
            and exc.context_mark is not None
            and exc.context_mark is not mark
        ):
            context = exc.context_mark
            lines = len(split_lines(text))
            if mark.line >= lines > context.line and exc.context.startswith(
                ("while parsing ", "while scanning ")
            ):
                # The file ended inside it (an unclosed bracket or quote): there is no line
                # to quote at the end, so point at where it was opened.
                what = exc.context.split(" ", 2)[2]
                message = (
                    f"invalid YAML: {what} is not closed before the end of the file ({exc.problem})"
                )
                mark = context
            elif (context.line, context.column) != (mark.line, mark.column):
                # "while parsing a flow mapping": say where the enclosing part was opened.
                hint = (
                    f"{exc.context} that starts at line {context.line + 1}, column "
                    f"{context.column + 1}"
                )
        if mark is None:
            raise _error(file, text, message, None, None, hint, error) from None
        raise _error(file, text, message, mark.line + 1, mark.column + 1, hint, error) from None
    except yaml.YAMLError as exc:
        raise _error(file, text, f"invalid YAML: {exc}", None, None, error=error) from None
    except RecursionError:
        raise _error(file, text, "document is nested too deeply", None, None, error=error) from None
    doc = Document(file=file, text=text, data=None)
    if node is None:
        return doc
    builder = _Builder(doc, error)
    doc.data = builder.build(node, (), 0)
    return doc


_OPEN = (
    yaml.BlockSequenceStartToken,
    yaml.BlockMappingStartToken,
    yaml.FlowSequenceStartToken,
    yaml.FlowMappingStartToken,
)
_CLOSE = (yaml.BlockEndToken, yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)
# Token depth at which a document is refused before composing. An indentless sequence
# (`key:` then `- item` at the same indent) nests without a start token, so the node depth
# can be up to twice this: still far below what libyaml survives (over 20,000 levels),
# and above MAX_DEPTH, so the builder's exact limit applies to everything shallower.
_SCAN_LIMIT = 2 * MAX_DEPTH + 10


def _prescan(text: str) -> tuple[yaml.Token, str] | None:
    """A token past the depth or value budget, with the message, if there is one.

    The value budget is checked here too, so a 1 MB file of brackets stops after scanning
    instead of being composed in full first. Values are counted as the builder counts them
    (keys are not values), so this refuses nothing the builder would accept.
    """
    scanner = _Loader(text)
    depth = values = 0
    after_key = False
    try:
        while scanner.check_token():
            token = scanner.get_token()
            if isinstance(token, _OPEN):
                depth += 1
                if depth > _SCAN_LIMIT:
                    return token, f"document is nested more than {MAX_DEPTH} levels deep"
            elif isinstance(token, _CLOSE):
                depth -= 1
            if (
                isinstance(token, _OPEN + (yaml.AliasToken,))
                or isinstance(token, yaml.ScalarToken)
                and not after_key
            ):
                values += 1
                if values > MAX_NODES:
                    return token, f"document has more than {MAX_NODES:,} values"
            after_key = isinstance(token, yaml.KeyToken)
    finally:
        scanner.dispose()
    return None


class _Builder:
    def __init__(self, doc: Document, error: type[ScreenerError]) -> None:
        self.doc = doc
        self.error = error
        self.count = 0

    def fail(self, node: yaml.Node, message: str, hint: str | None = None) -> ScreenerError:
        mark = node.start_mark
        return _error(
            self.doc.file, self.doc.text, message, mark.line + 1, mark.column + 1, hint, self.error
        )

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(
                node,
                f"document has more than {MAX_NODES:,} values",
                "is an alias (*name) repeated many times?",
            )
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
            raise self.fail(
                node,
                f"YAML tag {node.tag!r} is not allowed",
                "patient and rule files hold plain values only",
            )
        try:
            value = _constructor.yaml_constructors[node.tag](_constructor, node)
        except Exception as exc:  # noqa: BLE001
            # PyYAML's constructors trust the resolver: an explicit tag on the wrong text
            # (`!!bool maybe`, `!!timestamp x`, `!!int`) raises KeyError, AttributeError or
            # IndexError, and an int past Python's 4,300-digit limit a ValueError.
            kind = node.tag.rsplit(":", 1)[-1]
            if isinstance(exc, ValueError) and "digits" in str(exc):
                raise self.fail(node, f"number {clip(node.value)} is too large") from None
            detail = f": {exc}" if isinstance(exc, ValueError) else ""
            raise self.fail(node, f"invalid {kind} {clip(node.value)!r}{detail}") from None
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value.bit_length() > _MAX_INT_BITS
        ):
            raise self.fail(node, f"number {clip(node.value)} is too large")
        if isinstance(value, dt.datetime):
            # A time of day adds nothing to a screening and would break date arithmetic.
            value = value.date()
        return value


def load(
    path: Path, display: str | None = None, error: type[ScreenerError] = ScreenerError
) -> Document:
    """Read and parse a YAML file."""
    name = display if display is not None else str(path)
    return parse(read_text(path, name, error), name, error)
