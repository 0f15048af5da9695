"""Engines for large inputs: a FHIR bulk export, here or on a Dask cluster; a cohort on Dask.

Beside `batch.py`, which screens files on this machine's worker processes. Work is cut into
partitions (a few dozen patients each); a worker screens and renders a whole partition, and
results come back in input order, so the output is the same bytes whatever the engine and
the number of workers:

* `local`: this machine's worker processes (`jobs`), as for a folder of files;
* `dask`: the workers of a Dask distributed cluster (`scheduler`: an address such as
  `tcp://10.0.0.5:8786`, or a `distributed.Client`). The settings (rule sets, dates,
  renderer) reach every worker once, as a worker plugin, not with each partition; a worker
  that joins or restarts mid-run is given them by the scheduler; a partition
  whose worker dies is recomputed by Dask elsewhere, and each partition's result is taken
  once, in order, so no patient is lost or repeated. The workers must be able to import
  screener and read the input at the same absolute paths (a shared file system).

Only a few partitions are in flight at once, so memory does not grow with the input.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from screener.cli._batch import (
    Done,
    FileError,
    Pool,
    Record,
    Render,
    _finish,
    lost,
    pooled,
    process_cache,
    screen_file,
    unexpected,
    with_cache,
    worker_started,
)
from screener.core._errors import ScreenerError
from screener.core._units import Measure
from screener.core._vocabulary import Vocabulary
from screener.criteria._catalog import vocabulary_of
from screener.criteria._rules import RuleSet
from screener.reading._files import shown as shown_name
from screener.screening._engine import screen_patient
from screener.screening._reuse import ResultCache

if TYPE_CHECKING:  # imported where used: a cohort of YAML files never loads the FHIR reader
    from screener.reading._bulk import Group, Reader

ENGINES = ("local", "dask")


class EngineError(RuntimeError):
    """An engine cannot start: dask is not installed, or the scheduler cannot be reached."""


PARTITION = 32  # patients per partition: large enough to amortise a task, small for memory
# On Dask, larger: the client and the scheduler keep some bookkeeping per task (about 50 kB
# each, measured: 159 -> 302 MB from 10,000 to 100,000 patients at 32), so fewer tasks keep
# their memory near flat; six partitions in flight are still only a few MB of results.
DASK_PARTITION = 128
# A partition takes well under a second of a worker; one not back after this long (its
# predecessors in order being back) is sent again, up to STALL_RETRIES times.
STALL_SECONDS = 120
STALL_RETRIES = 3


@dataclass(frozen=True)
class Settings:
    """What every worker needs, sent once per worker."""

    rule_sets: tuple[RuleSet, ...]
    as_of: dt.date | None = None
    max_age: Measure | None = None
    render: Render | None = None
    known_trials: tuple[str, ...] = ()

    @property
    def vocabulary(self) -> Vocabulary | None:
        """The fields patients are read with: those the rule sets were checked against."""
        return vocabulary_of(self.rule_sets)


# --------------------------------------------------------------------- work of a worker


def group_name(shown: tuple[str, ...], group: Group) -> str:
    """How an export's patient is named in records: its Patient's file and line (else the
    file of its first resource)."""
    if group.patients:
        return f"{shown[group.patients[0].file]}:{group.patients[0].number}"
    return shown[group.resources[0].file]


def screen_group(
    reader: Reader, group: Group, settings: Settings, cache: ResultCache | None = None
) -> Record:
    """One patient of an export, screened; an error record when it cannot be."""
    from screener.reading._fhir import patient_from_extract

    shown = group_name(reader.shown, group)
    try:
        _, extract = reader.extract(group, settings.as_of, vocabulary=settings.vocabulary)
        patient = patient_from_extract(extract, settings.as_of)
        return screen_patient(
            patient, settings.rule_sets, settings.max_age, settings.known_trials, cache
        )
    except ScreenerError as exc:
        return FileError(shown, exc.diagnostics)
    except (OSError, ValueError) as exc:  # the export changed or vanished under the run
        from screener.core._errors import Diagnostic

        return FileError(shown, (Diagnostic(f"cannot read the export: {exc}", shown),))
    except Exception as exc:  # noqa: BLE001 - one patient's fault is that patient's record
        if os.environ.get("SCREENER_DEBUG"):
            raise
        return unexpected(shown, exc)


_readers: dict[tuple[str, ...], Reader] = {}  # per worker process: files stay open


def screen_groups(
    paths: tuple[str, ...], shown: tuple[str, ...], groups: list[Group], settings: Settings
) -> list[Done]:
    """A partition of an export's patients, screened and rendered."""
    from screener.reading._bulk import Reader

    reader = _readers.get(paths)
    if reader is None:
        for old in _readers.values():
            old.close()
        _readers.clear()
        reader = _readers[paths] = Reader(paths, shown)
    cache = process_cache()  # a local or Dask worker's, or this process's with one job
    render = with_cache(settings.render, cache)
    return [
        replace(
            _finish(screen_group(reader, group, settings, cache), render),
            digest=group_digest(reader, group),
        )
        for group in groups
    ]


def group_digest(reader: Reader, group: Group) -> str | None:
    """What the screening log records as a bulk export patient's input digest: the SHA-256
    of the patient's NDJSON lines as they were read (its Patient lines, its resources, the
    Medications they name, in that order, each line without its line ending and followed
    by a line feed), so the log shows whether the patient's data changed between runs.
    None if a line can no longer be read (the export changed under the run)."""
    import hashlib
    import os

    digest = hashlib.sha256()
    handles: dict[int, int] = {}
    try:
        for line in (*group.patients, *group.resources, *group.referenced):
            fd = handles.get(line.file)
            if fd is None:
                fd = handles[line.file] = os.open(reader.paths[line.file], os.O_RDONLY)
            raw = os.pread(fd, line.length, line.offset)
            if len(raw) != line.length:
                return None
            digest.update(raw.rstrip(b"\r\n") + b"\n")
    except OSError:
        return None
    finally:
        for fd in handles.values():
            os.close(fd)
    return "sha256:" + digest.hexdigest()


def screen_files(files: list[tuple[str, str]], settings: Settings) -> list[Done]:
    """A partition of patient files, as (path to read, name shown), screened and rendered."""
    cache = process_cache()
    render = with_cache(settings.render, cache)
    rule_sets = list(settings.rule_sets)
    return [
        _finish(
            screen_file(
                path,
                rule_sets,
                settings.as_of,
                settings.max_age,
                settings.known_trials,
                cache,
                shown_name(name),
            ),
            render,
        )
        for path, name in files
    ]


# Worker processes receive the settings once: local ones at start-up, Dask ones from a
# worker plugin (keyed by run, so two runs on one cluster keep theirs apart).
_local: dict[str, Settings] = {}


def _init_local(settings: Settings, parent: int | None = None) -> None:
    worker_started(parent)  # as batch's workers: signals, garbage collection, parent's death
    _local["settings"] = settings


def _local_groups(
    paths: tuple[str, ...], shown: tuple[str, ...], groups: list[Group]
) -> list[Done]:
    return screen_groups(paths, shown, groups, _local["settings"])


def _settings_of(run: str) -> Settings:
    try:
        return _local[run]
    except KeyError:  # Dask retries the task elsewhere (retries=2)
        raise RuntimeError(f"this worker has no settings for run {run}") from None


def _dask_groups(
    paths: tuple[str, ...], shown: tuple[str, ...], groups: list[Group], run: str
) -> list[Done]:
    return screen_groups(paths, shown, groups, _settings_of(run))


def _dask_files(files: list[tuple[str, str]], run: str) -> list[Done]:
    return screen_files(files, _settings_of(run))


# ------------------------------------------------------------------------- the engines


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _in_order(
    submit: Callable[[Any], Any],
    result: Callable[[Any], list[Done]],
    partitions: Iterable[Any],
    window: int,
) -> Iterator[Done]:
    """Each partition's results in order, with at most `window` partitions in flight."""
    pending: deque[Any] = deque()
    for partition in partitions:
        pending.append(submit(partition))
        if len(pending) >= window:
            yield from result(pending.popleft())
    while pending:
        yield from result(pending.popleft())


def dask_client(scheduler: Any) -> tuple[Any, bool]:
    """A client for `scheduler` (an address, or a Client already made); and whether it is
    ours to close."""
    try:
        from distributed import Client
    except ImportError:
        raise EngineError(
            "the dask engine needs dask.distributed: pip install 'screener[dask]'"
        ) from None
    if isinstance(scheduler, Client):
        return scheduler, False
    if scheduler is None:
        raise EngineError("the dask engine needs a scheduler address (--scheduler)")
    try:
        # how long to try: Dask's distributed.comm.timeouts.connect (30 s unless configured)
        return Client(scheduler), True
    except (OSError, ValueError, TypeError) as exc:  # unreachable, or not an address
        raise EngineError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None


def _on_dask(
    scheduler: Any,
    task: Callable[..., list[Done]],
    settings: Settings,
    partitions: Iterable[tuple[Any, ...]],
) -> Generator[Done, None, None]:  # a generator: run_files closes it to shut the client
    from screener.cli._dask_plugin import SettingsPlugin

    client, ours = dask_client(scheduler)
    run = f"screener-{uuid.uuid4().hex}"
    try:
        # Not client.scatter: the scheduler's active memory manager drops "extra" replicas
        # of scattered data, so a killed worker could take the only copy with it and every
        # later partition fails ("lost scattered data"). A plugin is kept by the scheduler
        # and set up on each worker as it joins, restarted ones included.
        client.register_plugin(SettingsPlugin(run, settings), name=run)
        workers = max(1, len(client.scheduler_info().get("workers", {})))

        def submit(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
            return args, client.submit(task, *args, run, pure=False, retries=2)

        def result(sent: tuple[tuple[Any, ...], Any]) -> list[Done]:
            # Seen twice in 100,000-patient benchmarks on a loaded machine: a task that
            # neither ran nor failed, with both workers idle. A partition is pure and its
            # result is taken once, so one that stalls is resubmitted, never doubled.
            args, future = sent
            for _ in range(STALL_RETRIES):
                try:
                    return future.result(timeout=STALL_SECONDS)
                except TimeoutError:
                    future.cancel()
                    future = client.submit(task, *args, run, pure=False, retries=2)
            return future.result()

        yield from _in_order(submit, result, partitions, workers * 3)
    finally:
        try:
            client.unregister_worker_plugin(run)
        except Exception:  # noqa: BLE001 - the cluster may be gone; nothing is left to undo
            pass
        if ours:
            client.close()


def run_export(
    folder: str,
    rule_sets: Iterable[RuleSet],
    as_of: dt.date | None = None,
    max_age: Measure | None = None,
    jobs: int = 1,
    render: Render | None = None,
    known_trials: tuple[str, ...] = (),
    engine: str = "local",
    scheduler: Any = None,
    workdir: Path | None = None,
    partition: int | None = None,
) -> Iterator[Done]:
    """Screen every patient of a FHIR bulk export: first the export's unreadable lines and
    files as error records (in file and line order), then each patient by id.

    `render` as for batch.run. `engine` is "local" (`jobs` worker processes) or "dask"
    (the cluster at `scheduler`); the output is the same.
    """
    from screener.reading._bulk import ExportIndex

    settings = Settings(tuple(rule_sets), as_of, max_age, render, tuple(known_trials))
    if partition is None:
        partition = DASK_PARTITION if engine == "dask" else PARTITION
    name = shown_name(folder)  # a folder's name need not be UTF-8 either
    try:
        index = ExportIndex(Path(folder), name, workdir=workdir).__enter__()
    except ScreenerError as exc:
        yield _finish(FileError(name, exc.diagnostics), render)
        return
    except OSError as exc:  # the folder vanished or cannot be listed: its error, not a bug
        from screener.core._errors import Diagnostic

        yield _finish(
            FileError(
                name,
                (Diagnostic(f"cannot read the export folder: {exc.strerror or exc}", name),),
            ),
            render,
        )
        return
    except Exception as exc:  # noqa: BLE001 - one export's fault is that export's record
        if os.environ.get("SCREENER_DEBUG"):
            raise
        yield _finish(unexpected(name, exc), render)
        return
    try:
        for problem in index.line_errors():
            yield _finish(FileError(problem.file, (problem.diagnostic,)), render)
        shown = tuple(f.path for f in index.files)
        partitions = ((index.paths, shown, chunk) for chunk in _chunks(index.groups(), partition))
        if engine == "dask":
            yield from _on_dask(scheduler, _dask_groups, settings, partitions)
        elif jobs <= 1:
            for paths, names, chunk in partitions:
                yield from screen_groups(paths, names, chunk, settings)
            for reader in _readers.values():
                reader.close()
            _readers.clear()
        else:
            # The batch's pool: a partition whose worker dies is screened again on a fresh
            # one, and if that dies too its patients become error records.
            yield from pooled(
                Pool(jobs, _local_groups, _init_local, (settings,)),
                partitions,
                lambda work: [
                    _finish(lost(group_name(work[1], group)), render) for group in work[2]
                ],
            )
    finally:
        index.__exit__(None, None, None)


def run_files(
    entries: list[str | FileError],
    rule_sets: Iterable[RuleSet],
    as_of: dt.date | None = None,
    max_age: Measure | None = None,
    render: Render | None = None,
    known_trials: tuple[str, ...] = (),
    scheduler: Any = None,
    partition: int = DASK_PARTITION,
) -> Iterator[Done]:
    """batch.run on a Dask cluster: patient files in input order, errors in place."""
    settings = Settings(tuple(rule_sets), as_of, max_age, render, tuple(known_trials))
    names = [(str(Path(e).resolve()), e) for e in entries if isinstance(e, str)]
    results = _on_dask(
        scheduler, _dask_files, settings, ((chunk,) for chunk in _chunks(names, partition))
    )
    for entry in entries:
        yield _finish(entry, render) if isinstance(entry, FileError) else next(results)
    results.close()


def run_all(
    entries: list[Any],
    rule_sets: Iterable[RuleSet],
    as_of: dt.date | None = None,
    max_age: Measure | None = None,
    jobs: int = 1,
    render: Render | None = None,
    known_trials: tuple[str, ...] = (),
    engine: str = "local",
    scheduler: Any = None,
) -> Iterator[Done]:
    """What `screener check` screens: files and errors as batch.run does (or on Dask), and
    each bulk export (a batch.Export) in its place, in input order."""
    from screener.cli._batch import Export, run

    rule_sets = tuple(rule_sets)
    run_of: list[Any] = []

    def flush() -> Iterator[Done]:
        if run_of:
            if engine == "dask":
                yield from run_files(
                    list(run_of), rule_sets, as_of, max_age, render, known_trials, scheduler
                )
            else:
                yield from run(
                    list(run_of), list(rule_sets), as_of, max_age, jobs, render, known_trials
                )
            run_of.clear()

    for entry in entries:
        if isinstance(entry, Export):
            yield from flush()
            yield from run_export(
                entry.folder,
                rule_sets,
                as_of,
                max_age,
                jobs,
                render,
                known_trials,
                engine,
                scheduler,
            )
        else:
            run_of.append(entry)
    yield from flush()


__all__ = [
    "ENGINES",
    "EngineError",
    "run_all",
    "Settings",
    "dask_client",
    "run_export",
    "run_files",
    "screen_group",
]
