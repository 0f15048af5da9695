"""Screening files: expand paths, screen each, and turn a bad file into an error record.

One unreadable or invalid file never stops the others; it becomes a `FileError` in its
place, in the same stable order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .engine import screen_patient
from .errors import Diagnostic, ScreenerError
from .model import Screening
from .patient import load_patient
from .rules import RuleSet
from .units import Measure

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class FileError:
    file: str
    diagnostics: tuple[Diagnostic, ...]


def expand(paths: Iterable[str]) -> list[str]:
    """Files as given, and directories as their *.yaml/*.yml files, recursively and sorted."""
    found: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(str(p) for p in sorted(path.rglob("*"))
                         if p.suffix.lower() in SUFFIXES and p.is_file())
        else:
            found.append(name)
    return found


def screen_file(name: str, rule_sets: list[RuleSet], as_of: dt.date | None = None,
                max_age: Measure | None = None) -> Screening | FileError:
    try:
        patient = load_patient(name, as_of=as_of, display=name)
    except ScreenerError as exc:
        return FileError(name, exc.diagnostics)
    return screen_patient(patient, rule_sets, max_age)


def screen_paths(paths: Iterable[str], rule_sets: list[RuleSet], as_of: dt.date | None = None,
                 max_age: Measure | None = None) -> Iterator[Screening | FileError]:
    for name in expand(paths):
        yield screen_file(name, rule_sets, as_of, max_age)
