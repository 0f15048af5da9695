"""Errors and warnings that point at a place in a file.

Every message a user sees about an input names the file, the line and the column, quotes
the offending line and puts a caret under the spot (the way compilers and semgrep do), so
a nurse can find a typo without knowing what YAML is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


QUOTE_LIMIT = 160  # characters of an offending line an error quotes, at most
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    return chr(0x2400 + code) if code < 0x20 else "\u2421" if code == 0x7F else "\ufffd"


# What must never reach a terminal raw, from any input: C0 controls but tab and line
# feed (ESC starts CSI and OSC-8 hyperlink sequences), DEL, the C1 controls (0x9B is a
# one-byte CSI) and the bidirectional overrides that make text read other than it is.
# Lone surrogates (a file name's bytes that were not UTF-8) could not even be encoded.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode escaped, said as the byte it was
        return f"\\x{code - 0xDC00:02x}"
    return _picture(match)


def printable(text: str) -> str:
    """Text from an input made harmless on a terminal: each control character shown as a
    visible symbol (its Unicode control picture, or U+FFFD), everything else unchanged."""
    return _UNPRINTABLE.sub(_shown, text) if _UNPRINTABLE.search(text) else text


@dataclass(frozen=True)
class Diagnostic:
    """One finding about an input file: an error or a warning."""

    message: str
    file: str | None = None
    position: Position | None = None
    hint: str | None = None
    source_line: str | None = None

    def location(self) -> str:
        where = self.file or "<input>"
        if self.position is not None:
            where += f":{self.position.line}:{self.position.column}"
        return where

    def render(self, severity: str = "error") -> str:
        """Format as `file:line:col: error: message`, the line, a caret and a hint."""
        lines = [printable(f"{self.location()}: {severity}: {self.message}")]
        if self.position is not None and self.source_line is not None:
            gutter = f"{self.position.line:>5} | "
            # A control character the error is about would print as nothing (or ring the
            # terminal bell): show it as its Unicode control picture, one column wide.
            shown = _CONTROLS.sub(_picture, self.source_line.rstrip("\n"))
            column = max(self.position.column - 1, 0)
            if len(shown) > QUOTE_LIMIT:
                # A minified or pasted line can be a megabyte, and every error record
                # quotes it: only a window around the column is shown, marked with "…".
                start = max(0, min(column - QUOTE_LIMIT // 2, len(shown) - QUOTE_LIMIT))
                end = start + QUOTE_LIMIT
                shown = (
                    ("…" if start else "") + shown[start:end] + ("…" if end < len(shown) else "")
                )
                column = column - start + (1 if start else 0)
            lines.append(gutter + shown)
            # Tabs are kept so the caret lines up under the same characters.
            prefix = "".join(ch if ch == "\t" else " " for ch in shown[:column])
            lines.append(" " * (len(gutter) - 2) + "| " + prefix + "^")
        if self.hint:
            lines.append(printable(f"hint: {self.hint}"))
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "message": self.message,
            "file": self.file,
            "line": self.position.line if self.position else None,
            "column": self.position.column if self.position else None,
            "hint": self.hint,
        }


class ScreenerError(Exception):
    """An input (patient file or rule set) that cannot be used, with its location."""

    def __init__(self, *diagnostics: Diagnostic) -> None:
        super().__init__("\n".join(d.render() for d in diagnostics))
        self.diagnostics = diagnostics
        self.diagnostic = diagnostics[0]


class PatientError(ScreenerError):
    """A patient file that cannot be screened."""


class RuleSetError(ScreenerError):
    """A rule set that cannot be loaded; nothing is screened with a broken rule set."""


def nearest(word: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The known name closest to a misspelt one, for did-you-mean hints."""
    import difflib

    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def clip(text: str, limit: int = 60) -> str:
    """Shorten a quoted value so a 5,000-character line cannot flood an error message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_value(value: object) -> str:
    """A value as an error message quotes it: `'55 kg'`, `true`, `a mapping`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(clip(value)) if isinstance(value, str) else clip(str(value))
