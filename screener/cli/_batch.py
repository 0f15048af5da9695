"""Screening files: expand paths, screen each, and turn a bad file into an error record.

One unreadable or invalid file never stops the others; it becomes a `FileError` in its
place, in the same stable order. Batches can run on several worker processes; results
come back in input order, so the output is the same whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

from screener.cli._output import STOP_SIGNALS, signals_held
from screener.core._errors import Diagnostic, ScreenerError, printable

# The result types live with the model; re-exported here, where callers have found them.
from screener.core._model import FileError, Patient, Record, Render
from screener.core._units import Measure
from screener.core._vocabulary import Vocabulary
from screener.criteria._catalog import vocabulary_of
from screener.criteria._rules import RuleSet
from screener.reading._files import head, is_dir, shown
from screener.reading._patient import load_patient
from screener.screening._engine import screen_patient
from screener.screening._reuse import ResultCache

if TYPE_CHECKING:  # imported when a batch has workers: a single check never needs them
    from concurrent.futures import Future, ProcessPoolExecutor

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Export:
    """A FHIR bulk export (a folder of NDJSON files), screened by engines.run_export."""

    folder: str


# Exports only when asked for, so a caller that asks for none (validate) is given none.
@overload
def expand(paths: Iterable[str], exports: Literal[False] = False) -> list[str | FileError]: ...
@overload
def expand(paths: Iterable[str], exports: bool) -> list[str | FileError | Export]: ...
def expand(
    paths: Iterable[str], exports: bool = False
) -> list[str | FileError] | list[str | FileError | Export]:
    """Files as given; directories as their patient files, recursively, in sorted order.

    A directory that cannot be listed, or a symlink loop, becomes an error in its place
    rather than stopping the run. With `exports`, a directory holding NDJSON files is a
    bulk export, kept whole as an `Export`.
    """
    found: list[str | FileError | Export] = []
    for name in paths:
        if exports and is_dir(name):
            from screener.reading._bulk import is_export

            if is_export(Path(name)):
                found.append(Export(name))
                continue
        if is_dir(name):
            found.extend(_walk(Path(name)))
        else:
            found.append(name)
    return found


def leftover(name: str) -> bool:
    """Editor and OS leftovers beside real files: Emacs lock files (.#name), macOS
    resource forks (._name) and backups (name~). They are not patients, and a lock file
    is often a dangling link that would only be reported as an error."""
    return name.startswith((".#", "._")) or name.endswith("~")


# What screener's own JSON output starts with (keys are sorted: a screening begins with
# "as_of", an error record with "error"). A report written into the screened directory is
# no FHIR bundle; the next run skips it instead of failing on it.
_OUR_JSON = re.compile(rb'\A\s*(\[\s*)?\{\s*"(as_of|error)"\s*:')


def _walk(top: Path) -> list[str | FileError]:
    entries: list[tuple[str, str | FileError]] = []
    seen: set[tuple[int, int]] = set()
    # Depth first with an explicit stack, not recursion: a tree 1,100 levels deep must not
    # exhaust Python's recursion limit. Each folder carries the identities of the folders
    # above it, so only a link back to one of them is a loop; a folder reached a second
    # time another way (a symlinked sibling) is simply not screened twice.
    stack: list[tuple[Path, frozenset[tuple[int, int]]]] = [(top, frozenset())]
    while stack:
        folder, above = stack.pop()
        try:
            stat = folder.stat()
        except OSError as exc:
            entries.append((str(folder), _unreadable(folder, exc)))
            continue
        key = (stat.st_dev, stat.st_ino)
        if key in above:
            entries.append(
                (
                    str(folder),
                    FileError(
                        shown(str(folder)),
                        (
                            Diagnostic(
                                "directory links back to a directory above it (a symlink loop); "
                                "skipped",
                                shown(str(folder)),
                            ),
                        ),
                    ),
                )
            )
            continue
        if key in seen:  # the same folder linked twice: its files are already listed
            continue
        seen.add(key)
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            entries.append((str(folder), _unreadable(folder, exc)))
            continue
        below = above | {key}
        for child in reversed(children):
            if leftover(child.name):
                continue
            path = Path(child.path)
            try:
                folder_like = child.is_dir()
            except OSError as exc:
                entries.append((str(path), _unreadable(path, exc)))
                continue
            if folder_like:
                stack.append((path, below))
            elif path.suffix.lower() in SUFFIXES and not _our_output(path):
                entries.append((str(path), str(path)))
    return [entry for _, entry in sorted(entries, key=lambda pair: pair[0])]


def _our_output(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    try:
        return bool(_OUR_JSON.match(head(path, 64)))
    except OSError:
        return False  # reading it later reports the problem in its place


def _unreadable(path: Path, exc: OSError) -> FileError:
    what = "directory" if is_dir(path) else "file"
    return FileError(
        shown(str(path)),
        (Diagnostic(f"cannot read {what}: {exc.strerror or exc}", shown(str(path))),),
    )


def load_any(
    name: str,
    as_of: dt.date | None = None,
    display: str | None = None,
    vocabulary: Vocabulary | None = None,
) -> Patient:
    """A patient from a YAML patient file or a FHIR R4 Bundle (.json).

    `display` names the file in the patient and its errors; by default the name made
    printable (`shown`), since a name need not be UTF-8 text. `vocabulary`: a rules
    directory's fields (the built-in ones by default).
    """
    display = shown(name) if display is None else display
    if name.lower().endswith(".json"):
        from screener.reading._fhir import load_bundle_patient

        return load_bundle_patient(Path(name), display, as_of, vocabulary=vocabulary)
    return load_patient(name, as_of=as_of, display=display, vocabulary=vocabulary)


def screen_file(
    name: str,
    rule_sets: list[RuleSet],
    as_of: dt.date | None = None,
    max_age: Measure | None = None,
    known_trials: tuple[str, ...] = (),
    cache: ResultCache | None = None,
    display: str | None = None,
) -> Record:
    """One file screened (`cache` as for engine.screen), or its error record; `display`
    as for load_any.

    Whatever reading or screening the file raises is its error record: a reader's
    PatientError as it says, anything else as `unexpected`."""
    display = shown(name) if display is None else display
    try:
        patient = load_any(name, as_of, display, vocabulary=vocabulary_of(rule_sets))
        return screen_patient(patient, rule_sets, max_age, known_trials, cache)
    except ScreenerError as exc:
        return FileError(display, exc.diagnostics)
    except Exception as exc:  # noqa: BLE001 - one input's fault is that input's record
        if os.environ.get("SCREENER_DEBUG"):
            raise
        return unexpected(display, exc)


def unexpected(name: str, exc: BaseException) -> FileError:
    """The error record of an input whose reading, screening or rendering raised what no
    reader foresaw (an odd value met in a path nobody wrote a check for).

    One input must never end the batch: every other file is still screened, and this one
    says what happened, for a report. (MemoryError and RecursionError are Exceptions too:
    a file deep or large enough to exhaust them is that file's problem.)"""
    return FileError(
        name,
        (
            Diagnostic(
                f"could not be screened: unexpected {type(exc).__name__}: "
                f"{printable(str(exc))[:200]}",
                name,
                hint="please report it with the file (SCREENER_DEBUG=1 shows the traceback)",
            ),
        ),
    )


def process_cache() -> ResultCache:
    """This process's result cache, made on first use: one per process (a worker makes its
    own), serving every file the process screens. It is never sent between processes."""
    cache = _worker.get("cache")
    if cache is None:
        cache = _worker["cache"] = ResultCache()
    return cache


def with_cache(render: Render | None, cache: ResultCache) -> Render | None:
    """`render` with the process's result cache, for a renderer that reuses what it
    encoded for an earlier patient (reports.reusing)."""
    if render is None:
        return None
    from screener.reports._log import LogRender
    from screener.reports._report import reusing as bind

    if isinstance(render, LogRender):  # a logged run's: the renderer inside it reuses
        return LogRender(bind(render.render, cache) or render.render)
    return bind(render, cache)


class _WorkerState(TypedDict, total=False):
    rule_sets: list[RuleSet]
    as_of: dt.date | None
    max_age: Measure | None
    render: Render | None
    known_trials: tuple[str, ...]
    cache: ResultCache


# Worker processes receive the rule sets once, at start-up, not with every file.
_worker: _WorkerState = {}


@dataclass(frozen=True)
class Done:
    """One screened entry: the record (kept only when not rendered) and its rendered text,
    as UTF-8: what is written out, and cheaper than text to send between processes."""

    file: str
    failed: bool
    record: Record | None
    data: bytes
    # The input's digest where it is not a file of its own (a patient of a bulk export:
    # its NDJSON lines), for the screening log; None: the log digests the file itself.
    digest: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when its parent dies, however it dies.

    A worker waits on a pipe whose write end it holds itself, so a parent killed with
    SIGKILL (or by the OOM killer) would leave it waiting forever. Linux only; elsewhere
    nothing changes.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError, ImportError):
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def worker_started(parent: int | None) -> None:
    """What every worker process does first, whichever engine started it.

    A forked worker inherits its parent's signal handlers, and the parent's turn SIGTERM
    and SIGHUP into an exception: a worker that kept them would carry a SIGTERM sent to it
    back to the parent as its chunk's failure (stopping the batch), and would survive the
    terminate() the pool sends the survivors of a broken pool, whose shutdown then waits
    for it forever. A worker dies of these signals, as any process does by default (the
    parent then screens its chunk again); Ctrl-C at a terminal reaches the whole process
    group, and only the parent decides what it means, so a worker ignores SIGINT."""
    if parent is not None and sys.platform.startswith("linux"):
        _die_with(parent)
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN if number == signal.SIGINT else signal.SIG_DFL)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # held by the fork
    # A worker makes thousands of short-lived containers per patient, all freed as soon as
    # they go out of use (screening one makes no reference cycles), so collecting every 700
    # allocations only walks live objects for nothing. What was loaded before the first
    # patient (rule sets, tables) lives as long as the worker: kept out of every collection.
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def _init_worker(
    rule_sets: list[RuleSet],
    as_of: dt.date | None,
    max_age: Measure | None,
    render: Render | None,
    known_trials: tuple[str, ...],
    parent: int | None = None,
) -> None:
    worker_started(parent)
    # A worker's own result cache, not a copy of its parent's.
    cache = _worker["cache"] = ResultCache()
    _worker.update(
        {
            "rule_sets": rule_sets,
            "as_of": as_of,
            "max_age": max_age,
            "render": with_cache(render, cache),
            "known_trials": known_trials,
        }
    )


def _finish(record: Record, render: Render | None) -> Done:
    # Rendering where the screening happened spares sending whole records between
    # processes and leaves the parent only writing text.
    if render is None:
        return Done(record.file, isinstance(record, FileError), record, b"")
    try:
        text = render(record)
    except Exception as exc:  # noqa: BLE001 - a record no renderer foresaw: its error, alone
        if os.environ.get("SCREENER_DEBUG"):
            raise
        record = unexpected(record.file, exc)
        text = render(record)  # screener's own words and a shown name: this one renders
    data = text if isinstance(text, bytes) else text.encode("utf-8", "backslashreplace")
    return Done(record.file, isinstance(record, FileError), None, data)


def _screen_chunk(names: list[str]) -> list[Done]:
    rule_sets, as_of, max_age = _worker["rule_sets"], _worker["as_of"], _worker["max_age"]
    render, known, cache = _worker["render"], _worker["known_trials"], _worker["cache"]
    return [
        _finish(screen_file(name, rule_sets, as_of, max_age, known, cache), render)
        for name in names
    ]


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run(
    entries: list[str | FileError],
    rule_sets: list[RuleSet],
    as_of: dt.date | None = None,
    max_age: Measure | None = None,
    jobs: int = 1,
    render: Render | None = None,
    known_trials: tuple[str, ...] = (),
) -> Iterator[Done]:
    """Screen every entry, in input order; errors pass through in place.

    With `render` (a module-level function, so worker processes can receive it), each
    record is rendered as soon as it is screened and only the text is kept. Workers get
    chunks of files, and only a few chunks are in flight at once, so memory stays the same
    whatever the size of the cohort. More workers than usable cores only compete for
    them (and `--jobs 10000` would fork ten thousand processes), so `jobs` is capped.

    Results are reused across the files each process screens (process_cache).
    """
    names = [e for e in entries if isinstance(e, str)]
    jobs = min(jobs, usable_cores(), len(names))
    if jobs <= 1 or len(names) < 2:
        cache = process_cache()
        here = with_cache(render, cache)
        for entry in entries:
            record = (
                entry
                if isinstance(entry, FileError)
                else screen_file(entry, rule_sets, as_of, max_age, known_trials, cache)
            )
            yield _finish(record, here)
        return
    size = max(1, min(64, len(names) // (jobs * 4)))
    chunks = ((names[i : i + size],) for i in range(0, len(names), size))
    pool = Pool(
        jobs, _screen_chunk, _init_worker, (rule_sets, as_of, max_age, render, known_trials)
    )
    results = pooled(pool, chunks, lambda work: [_finish(lost(n), render) for n in work[0]])
    for entry in entries:
        yield _finish(entry, render) if isinstance(entry, FileError) else next(results)


_LOOK = 0.5  # seconds between looks at the workers while a chunk is awaited (Pool.result)


class Pool:
    """Worker processes running `task` on chunks of work, which can be replaced when a
    worker dies, and are stopped however the batch ends, so none is left running without
    its parent. Every worker runs `initializer(*initargs, parent_pid)` first, which starts
    with worker_started."""

    def __init__(
        self,
        jobs: int,
        task: Callable[..., list[Done]],
        initializer: Callable[..., None],
        initargs: tuple[Any, ...],
    ) -> None:
        self.jobs, self.task, self.initializer, self.initargs = jobs, task, initializer, initargs
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            self.jobs, initializer=self.initializer, initargs=(*self.initargs, os.getpid())
        )

    def submit(self, work: tuple[Any, ...]) -> Future[list[Done]]:
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        try:
            with signals_held():  # a submit may fork a worker
                return self.pool.submit(self.task, *work)
        except BrokenProcessPool as exc:
            # The pool broke before this chunk was handed over: the chunk fails like those
            # in flight, when its result is asked for, and is retried with them.
            failed: Future[list[Done]] = Future()
            failed.set_exception(exc)
            return failed

    def _kill(self) -> None:
        # Killed, not asked to stop: after a break the pool terminates the survivors
        # itself, but one stuck in a long file (or in C code) would keep the shutdown
        # waiting for it, and an abandoned batch wants nothing more from any of them.
        processes = getattr(self.pool, "_processes", None) or {}
        for process in list(processes.values()):
            with contextlib.suppress(Exception):  # already gone
                process.kill()
        # A worker killed while sending a result leaves half a message in the pipe, and the
        # pool's reader waits for the rest as long as a write end is open: the workers'
        # are closed by their death, this process's (which it never writes) is closed
        # here, so the reader meets the end of the pipe and the pool sees the break.
        writer = getattr(getattr(self.pool, "_result_queue", None), "_writer", None)
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()

    def result(self, future: Future[list[Done]]) -> list[Done]:
        """The future's result; BrokenProcessPool if a worker died meanwhile.

        The pool notices a dead worker by itself, except when it died while sending a
        result: the pool's reader then waits for the rest of the message, which never
        comes, and every future waits with it (seen under SIGTERM to a worker, about one
        run in twenty). So the wait looks at the workers too, and a death there stops all
        of them and closes the pipe (_kill), which makes the pool see the break."""
        while True:
            try:
                return future.result(timeout=_LOOK)
            except TimeoutError:
                if self._a_worker_died():
                    self._kill()

    def _a_worker_died(self) -> bool:
        processes = getattr(self.pool, "_processes", None) or {}
        try:
            return any(p.exitcode is not None for p in list(processes.values()))
        except RuntimeError:  # the pool changed its table meanwhile: look again next time
            return False

    def restart(self) -> None:
        self.stop()
        self.pool = self._start()

    def stop(self, finished: bool = False) -> None:
        # A finished batch has nothing in flight: the workers exit when told. A broken or
        # interrupted one has no use for what they are doing: they are killed first, then
        # the pool's threads are joined, so no worker is left without its parent and no
        # feeder thread keeps the interpreter from exiting (the pool closes the pipe to
        # dead workers, so nothing is left blocked on it).
        if not finished:
            self._kill()
        self.pool.shutdown(wait=True, cancel_futures=not finished)


LOST = (
    "not screened: the worker process screening this file stopped (killed, or out of "
    "memory) twice; screen the file on its own to see whether it is the cause"
)


def lost(name: str) -> FileError:
    """The error record of an input whose worker died twice: the batch goes on without it."""
    return FileError(name, (Diagnostic(LOST, name),))


def pooled(
    pool: Pool,
    chunks: Iterator[tuple[Any, ...]],
    lost_chunk: Callable[[tuple[Any, ...]], list[Done]],
) -> Iterator[Done]:
    """Each chunk's results in order, a few chunks in flight per worker; the pool is
    stopped when the iterator ends, is closed or is interrupted.

    A worker that dies (killed, out of memory, a crash in C code) takes the pool with it;
    which chunk it held is not known. Every chunk in flight that had not finished is then
    screened again, one at a time on a fresh pool, so a chunk that kills its worker a
    second time is known, and only its entries become `lost_chunk`'s error records."""
    from concurrent.futures.process import BrokenProcessPool

    pending: deque[tuple[tuple[Any, ...], Future[list[Done]]]] = deque()
    finished = False
    try:
        while True:
            while len(pending) < pool.jobs * 3:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                pending.append((chunk, pool.submit(chunk)))
            if not pending:
                break
            chunk, future = pending.popleft()
            try:
                done = pool.result(future)
            except BrokenProcessPool:
                again = [(chunk, future), *pending]
                pending.clear()
                pool.restart()
                for work, before in again:
                    if before.done() and not before.cancelled() and before.exception() is None:
                        yield from before.result()  # it finished before the break
                        continue
                    try:
                        done = pool.result(pool.submit(work))
                    except BrokenProcessPool:
                        pool.restart()
                        done = lost_chunk(work)
                    yield from done
                continue
            yield from done
        finished = True
    finally:
        pool.stop(finished)
