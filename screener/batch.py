"""Screening files: expand paths, screen each, and turn a bad file into an error record.

One unreadable or invalid file never stops the others; it becomes a `FileError` in its
place, in the same stable order. Batches can run on several worker processes; results
come back in input order, so the output is the same whatever the number of workers.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .engine import screen_patient
from .errors import Diagnostic, ScreenerError
from .model import Screening
from .patient import Patient, load_patient
from .rules import RuleSet
from .units import Measure

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class FileError:
    file: str
    diagnostics: tuple[Diagnostic, ...]


Record = Screening | FileError


@dataclass(frozen=True)
class Export:
    """A FHIR bulk export (a folder of NDJSON files), screened by engines.run_export."""

    folder: str


def expand(paths: Iterable[str], exports: bool = False) -> list[str | FileError | Export]:
    """Files as given; directories as their patient files, recursively, in sorted order.

    A directory that cannot be listed, or a symlink loop, becomes an error in its place
    rather than stopping the run. With `exports`, a directory holding NDJSON files is a
    bulk export, kept whole as an `Export`.
    """
    found: list[str | FileError | Export] = []
    for name in paths:
        if exports and Path(name).is_dir():
            from .bulk import is_export

            if is_export(Path(name)):
                found.append(Export(name))
                continue
        if Path(name).is_dir():
            found.extend(_walk(Path(name)))
        else:
            found.append(name)
    return found


def _walk(top: Path) -> list[str | FileError]:
    entries: list[tuple[str, str | FileError]] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path) -> None:
        try:
            stat = folder.stat()
        except OSError as exc:
            entries.append((str(folder), _unreadable(folder, exc)))
            return
        key = (stat.st_dev, stat.st_ino)
        if key in seen:  # a symlink loop, or the same folder linked twice
            entries.append((str(folder), FileError(str(folder), (Diagnostic(
                "directory already visited through a symbolic link (a loop?); skipped",
                str(folder)),))))
            return
        seen.add(key)
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            entries.append((str(folder), _unreadable(folder, exc)))
            return
        for child in children:
            path = Path(child.path)
            try:
                is_dir = child.is_dir()
            except OSError as exc:
                entries.append((str(path), _unreadable(path, exc)))
                continue
            if is_dir:
                visit(path)
            elif path.suffix.lower() in SUFFIXES:
                entries.append((str(path), str(path)))

    visit(top)
    return [entry for _, entry in sorted(entries, key=lambda pair: pair[0])]


def _unreadable(path: Path, exc: OSError) -> FileError:
    what = "directory" if path.is_dir() else "file"
    return FileError(str(path), (Diagnostic(f"cannot read {what}: {exc.strerror or exc}",
                                            str(path)),))


def load_any(name: str, as_of: dt.date | None = None) -> Patient:
    """A patient from a YAML patient file or a FHIR R4 Bundle (.json)."""
    if name.lower().endswith(".json"):
        from .fhir import load_bundle_patient

        return load_bundle_patient(Path(name), name, as_of)
    return load_patient(name, as_of=as_of, display=name)


def screen_file(name: str, rule_sets: list[RuleSet], as_of: dt.date | None = None,
                max_age: Measure | None = None, known_trials: tuple[str, ...] = ()) -> Record:
    try:
        patient = load_any(name, as_of)
    except ScreenerError as exc:
        return FileError(name, exc.diagnostics)
    return screen_patient(patient, rule_sets, max_age, known_trials)


# Worker processes receive the rule sets once, at start-up, not with every file.
_worker: dict[str, object] = {}

Render = Callable[[Record], str | bytes]  # text, or text already encoded as UTF-8


@dataclass(frozen=True)
class Done:
    """One screened entry: the record (kept only when not rendered) and its rendered text,
    as UTF-8: what is written out, and cheaper than text to send between processes."""

    file: str
    failed: bool
    record: Record | None
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def _init_worker(rule_sets: list[RuleSet], as_of: dt.date | None, max_age: Measure | None,
                 render: Render | None, known_trials: tuple[str, ...]) -> None:
    # A worker makes thousands of short-lived containers per patient, all freed as soon as
    # they go out of use (screening one makes no reference cycles), so collecting every 700
    # allocations only walks live objects for nothing. What was loaded before the first
    # patient (rule sets, tables) lives as long as the worker: kept out of every collection.
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    _worker.update(rule_sets=rule_sets, as_of=as_of, max_age=max_age, render=render,
                   known_trials=known_trials)


def _finish(record: Record, render: Render | None) -> Done:
    # Rendering where the screening happened spares sending whole records between
    # processes and leaves the parent only writing text.
    failed = isinstance(record, FileError)
    if render is None:
        return Done(record.file, failed, record, b"")
    text = render(record)
    return Done(record.file, failed, None, text if isinstance(text, bytes) else text.encode())


def _screen_chunk(names: list[str]) -> list[Done]:
    rule_sets, as_of, max_age = _worker["rule_sets"], _worker["as_of"], _worker["max_age"]
    render, known = _worker["render"], _worker["known_trials"]
    return [_finish(screen_file(name, rule_sets, as_of, max_age, known), render)  # type: ignore[arg-type]
            for name in names]


def run(entries: list[str | FileError], rule_sets: list[RuleSet], as_of: dt.date | None = None,
        max_age: Measure | None = None, jobs: int = 1, render: Render | None = None,
        known_trials: tuple[str, ...] = ()) -> Iterator[Done]:
    """Screen every entry, in input order; errors pass through in place.

    With `render` (a module-level function, so worker processes can receive it), each
    record is rendered as soon as it is screened and only the text is kept. Workers get
    chunks of files, and only a few chunks are in flight at once, so memory stays the same
    whatever the size of the cohort.
    """
    names = [e for e in entries if isinstance(e, str)]
    if jobs <= 1 or len(names) < 2:
        for entry in entries:
            record = entry if isinstance(entry, FileError) else \
                screen_file(entry, rule_sets, as_of, max_age, known_trials)
            yield _finish(record, render)
        return
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor

    size = max(1, min(64, len(names) // (jobs * 4)))
    chunks = (names[i:i + size] for i in range(0, len(names), size))
    with ProcessPoolExecutor(jobs, initializer=_init_worker,
                             initargs=(rule_sets, as_of, max_age, render, known_trials)) as pool:
        pending: deque[Future[list[Done]]] = deque()

        def screened() -> Iterator[Done]:
            for chunk in chunks:
                pending.append(pool.submit(_screen_chunk, chunk))
                if len(pending) >= jobs * 3:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()

        results = screened()
        for entry in entries:
            yield _finish(entry, render) if isinstance(entry, FileError) else next(results)
