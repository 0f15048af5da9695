"""FHIR Bulk Data exports (`$export`): NDJSON files per resource type, grouped by patient.

An export is a folder of NDJSON files, one resource a line, named by resource type
(`Patient.ndjson`, `Observation.000.ndjson`, `1.Observation.ndjson`, …), optionally with
the export's manifest (a JSON file whose `output` lists each file's `type` and `url`).
A patient's resources are scattered over all of them, so screening needs a group-by over
every line of the export, larger than memory at the largest sites.

How, in two passes:

1. Each file of a type screening reads (Patient and `fhir.CLINICAL`) is streamed line by
   line; files of other types (Encounter, Claim, …) are never opened. A line is parsed
   once, to find its patient (`subject` or `patient`: `Patient/ID`, `urn:uuid:ID`, or a
   full URL ending in `Patient/ID`); only its place (file, byte offset, length, line
   number) and that key are written to a temporary TSV file. A malformed line becomes an
   error naming its file and line; the run goes on. Medication resources (not a
   patient's own) are indexed by id, with the medicationReferences of each patient.
2. DuckDB sorts that index by patient, file and line, spilling to its temporary folder
   past a fixed memory limit, so memory stays bounded whatever the export's size; a join
   adds to each patient the Medications its prescriptions refer to. Each patient's lines
   are then read back by offset and put in a Bundle (its Patient first, then its
   resources in file and line order, then those Medications), which
   `fhir.extract_bundle` reads exactly as it reads a `Patient/$everything` bundle.

Resources that name no patient, or a patient the export does not hold, are never dropped
silently: each such patient key becomes one error record giving the count and the first
file and line. Patients come out sorted by id (code-point order).

DuckDB is an optional dependency (`pip install 'screener[bulk]'`), imported only here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screener.core._errors import Diagnostic, PatientError, Position
from screener.reading import _fhir as fhir
from screener.reading._fhir_bundle import (
    MAX_BYTES,
    DuplicateKey,
    json_constant,
    json_number,
    target_id,
    unique_keys,
)
from screener.reading._files import NotRegular, open_regular, read_regular, shown
from screener.reading._files import kind as file_kind

READ_TYPES = ("Patient",) + fhir.CLINICAL
# Not a patient's own resource, but what a medicationReference names; a bundle holds it.
REFERENCED = ("Medication",)
_MEDICATION_USERS = ("MedicationRequest", "MedicationStatement")
# The role of an index row: the patient's Patient, one of its resources, or a resource one
# of them refers to (added to the group by the join).
_PATIENT, _RESOURCE, _REFERENCED = 0, 1, 2
SUFFIX = ".ndjson"
# What DuckDB may hold in memory for the sort before it spills to disk: small, so a
# 100,000-patient export peaks near a 10,000-patient one; the sort is not the slow part
# (2.7 million index rows sort in about 3 s). DuckDB's own RSS ends some 50-90 MB above it.
MEMORY_LIMIT = "64MB"
# The CSV reader's buffer (DuckDB's default is 32 MB, which alone would not fit the limit).
_CSV_BUFFER = 1 << 20
# Malformed lines reported one by one, per export; past this they are counted in one record
# (a file of garbage must not make millions of records).
MAX_LINE_ERRORS = 1000
# One resource, one line: at most what a whole bundle may be. A longer "line" (a file with
# no line ends, a truncated or sparse file) is that line's error, read in blocks of _BLOCK
# and never held whole.
MAX_LINE_BYTES = MAX_BYTES
_BLOCK = 1 << 20
_FETCH = 8192  # index rows fetched from DuckDB at a time
_NO_PATIENT = ""  # the key of resources that name no patient (a real id is never empty)
_TYPE_TOKEN = re.compile(r"^[A-Z][A-Za-z]+$")
HINT_BULK = "install DuckDB for bulk exports: pip install 'screener[bulk]'"


@dataclass(frozen=True)
class ExportFile:
    """One NDJSON file of an export: its path as shown, its resource type if named, and
    its name in the folder (which need not be UTF-8: `path` says it printably)."""

    path: str
    type: str | None  # from the manifest or the file name; None: read every line
    name: str = ""


@dataclass(frozen=True)
class Line:
    """Where one resource is: file (index into the export's files), bytes and line number."""

    file: int
    offset: int
    length: int
    number: int


@dataclass(frozen=True)
class Group:
    """One patient key and the places of its resources; `patients` are Patient lines,
    `referenced` the Medications its prescriptions name."""

    key: str
    patients: tuple[Line, ...]
    resources: tuple[Line, ...]
    referenced: tuple[Line, ...] = ()


@dataclass(frozen=True)
class Problem:
    """A line or file that could not be read: reported as an error record."""

    file: str
    diagnostic: Diagnostic


# --------------------------------------------------------------------------- finding files


def is_export(folder: Path) -> bool:
    """Whether a folder is a bulk export: it holds NDJSON files (not looked for below it).

    Any entry named *.ndjson but a folder counts: one that is a FIFO or a device is then
    that export's error record (export_files), not a file silently left out."""
    try:
        return any(_ndjson(entry) for entry in os.scandir(folder))
    except OSError:
        return False


def _ndjson(entry: os.DirEntry[str]) -> bool:
    if not entry.name.lower().endswith(SUFFIX):
        return False
    try:
        return not entry.is_dir()
    except OSError:
        return True  # cannot even be looked at: reading it says why


def type_from_name(name: str) -> str | None:
    """`Observation` for Observation.ndjson, Observation.000.ndjson, 1.Observation.ndjson or
    Observation_2.ndjson; None when no part of the name looks like a resource type."""
    stem = name[: -len(SUFFIX)] if name.lower().endswith(SUFFIX) else name
    for token in re.split(r"[._\-]", stem):
        if _TYPE_TOKEN.match(token):
            return token
    return None


def _manifest(folder: Path, display: str) -> tuple[dict[str, str], list[Problem]]:
    """File name -> type from the export's manifest, if the folder holds one.

    The manifest is the JSON the server returned for the export (`transactionTime`,
    `request`, `output: [{type, url}]`); its urls point at the server, so a file is matched
    by the last part of its url.
    """
    types: dict[str, str] = {}
    problems: list[Problem] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.name.lower().endswith(".json") or not entry.is_file():
            continue
        try:
            # as every input is read: a regular file only, and no more than the limit
            data = json.loads(read_regular(entry.path, MAX_BYTES).decode("utf-8-sig"))
        except (OSError, ValueError, RecursionError):
            continue  # not a manifest (it is read as nothing, and NDJSON names still count)
        if not isinstance(data, dict) or not isinstance(data.get("output"), list):
            continue
        for item in data["output"]:
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                continue
            name = item["url"].rstrip("/").rsplit("/", 1)[-1]
            if isinstance(item.get("type"), str):
                types[name] = item["type"]
            if not (folder / name).is_file():
                where = f"{display}/{shown(entry.name)}"
                problems.append(
                    Problem(
                        where,
                        Diagnostic(
                            f"the manifest lists {shown(name)} ({shown(str(item.get('type')))}), "
                            "which is not in the export folder",
                            where,
                            hint="download every file the manifest lists",
                        ),
                    )
                )
    return types, problems


def export_files(folder: Path, display: str) -> tuple[list[ExportFile], list[Problem]]:
    """The export's NDJSON files in name order, with their types, and any problems: the
    manifest's, and every *.ndjson entry that is not a regular file (a FIFO would hang the
    read, a link to /dev/zero never end it)."""
    types, problems = _manifest(folder, display)
    files = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not _ndjson(entry):
            continue
        where = f"{display}/{shown(entry.name)}"
        try:
            mode = os.stat(entry.path).st_mode  # through a link, to what is read
        except OSError as exc:
            problems.append(Problem(where, Diagnostic(f"cannot read file: {exc.strerror}", where)))
            continue
        if not stat.S_ISREG(mode):
            problems.append(
                Problem(
                    where, Diagnostic(f"{file_kind(mode)}, not a regular file; not read", where)
                )
            )
            continue
        types_named = types.get(entry.name) or type_from_name(entry.name)
        files.append(ExportFile(where, types_named, entry.name))
    return files, problems


# ------------------------------------------------------------------------------ parsing


def parse_line(raw: bytes) -> Any:
    """One NDJSON line, with the same rules as a bundle file (no NaN, no infinities, no key
    twice in an object: DuplicateKey)."""
    # without its line end, so an error's column is on the line itself
    return json.loads(
        raw.rstrip(b"\r\n").decode("utf-8-sig"),
        parse_constant=json_constant,
        parse_float=json_number,
        object_pairs_hook=unique_keys,
    )


def patient_key(reference: Any) -> str | None:
    """The patient id a Reference names (`Patient/ID`, `urn:uuid:ID`, `…/Patient/ID`)."""
    return target_id(reference, "Patient")


def _key_of(resource: dict[str, Any]) -> str | None:
    """The group a resource belongs to; None for a Patient without an id (an error)."""
    if resource["resourceType"] == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid.strip() else None
    for name in ("subject", "patient"):
        key = patient_key(resource.get(name))
        if key is not None:
            return key
    return _NO_PATIENT


def _escape(key: str) -> str:
    """A key as one TSV field: a JSON string, so no tab or newline is left raw, and never
    empty (DuckDB would read an empty field as NULL)."""
    return json.dumps(key)


def _unescape(field: str) -> str:
    return json.loads(field)


def _bounded_lines(stream: Any, limit: int) -> Iterator[bytes | int]:
    """Each line of a binary stream with its line end; for a line of more than `limit`
    bytes (its line end aside), only its length, read past in blocks and never held."""
    while True:
        raw = stream.readline(limit + 2)  # the line, its CR LF, and one byte to tell
        if not raw:
            return
        if len(raw) <= limit or raw.endswith(b"\n") and len(raw.rstrip(b"\r\n")) <= limit:
            yield raw
            continue
        length = len(raw)
        while not raw.endswith(b"\n"):
            raw = stream.readline(_BLOCK)
            if not raw:
                break
            length += len(raw)
        yield length


# ------------------------------------------------------------------------------ indexing


class ExportIndex:
    """An export's lines grouped by patient, in a DuckDB database in a temporary folder.

    Use as a context manager: the folder (index, database, spill files) is removed at exit.
    """

    def __init__(
        self,
        folder: Path,
        display: str | None = None,
        memory_limit: str = MEMORY_LIMIT,
        workdir: Path | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.display = display if display is not None else shown(str(folder))
        self.memory_limit = memory_limit
        self.workdir = workdir
        files, self.problems = export_files(self.folder, self.display)
        self.files = tuple(files)
        # absolute paths, so worker processes (or machines) started elsewhere find them
        self.paths = tuple(str((self.folder / f.name).resolve()) for f in files)
        self.bad_lines = 0  # malformed lines past MAX_LINE_ERRORS, counted in one record
        self.resources = 0
        self._tmp: str | None = None
        self._db: Any = None

    def __enter__(self) -> ExportIndex:
        try:
            import duckdb
        except ImportError:
            raise PatientError(
                Diagnostic(
                    "reading a FHIR bulk export needs the DuckDB package, which is not installed",
                    self.display,
                    hint=HINT_BULK,
                )
            ) from None
        self._tmp = tempfile.mkdtemp(prefix="screener-bulk-", dir=self.workdir)
        try:
            self._build(duckdb)
        except BaseException:  # Ctrl-C or a full disk while indexing: leave no temporary folder
            self.__exit__()
            raise
        return self

    def _build(self, duckdb: Any) -> None:
        assert self._tmp is not None
        tsv = {name: Path(self._tmp) / f"{name}.tsv" for name in ("lines", "refs", "targets")}
        with contextlib.ExitStack() as stack:
            out = {
                name: stack.enter_context(open(path, "w", encoding="ascii", newline="\n"))
                for name, path in tsv.items()
            }
            for number, file in enumerate(self.files):
                if file.type is None or file.type in READ_TYPES + REFERENCED:
                    self._index_file(number, out)
        self._db = duckdb.connect(
            str(Path(self._tmp) / "index.duckdb"),
            config={
                "memory_limit": self.memory_limit,
                "threads": 1,
                "temp_directory": str(Path(self._tmp) / "spill"),
                "preserve_insertion_order": False,  # the query's ORDER BY is the only order
            },
        )
        # The index has no header and no quoting: keys are JSON strings, the rest numbers.
        place = "'file': 'INTEGER', 'line': 'BIGINT', 'offset': 'BIGINT', 'length': 'BIGINT'"
        columns = {
            "lines": "'key': 'VARCHAR', 'role': 'TINYINT', " + place,
            "refs": "'key': 'VARCHAR', 'target': 'VARCHAR'",
            "targets": "'target': 'VARCHAR', " + place,
        }
        for name, path in tsv.items():
            self._db.execute(
                f"CREATE TABLE {name} AS SELECT * FROM read_csv(?, delim='\t', header=false, "
                f"quote='', escape='', auto_detect=false, buffer_size={_CSV_BUFFER}, "
                f"columns={{{columns[name]}}})",
                [str(path)],
            )
            path.unlink()  # the table holds it now; the disk need not hold it twice

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _bad(self, file: str, number: int, message: str, column: int = 1) -> None:
        if len(self.problems) >= MAX_LINE_ERRORS:
            self.bad_lines += 1
            return
        self.problems.append(
            Problem(
                file,
                Diagnostic(
                    f"line {number}: {message}",
                    file,
                    Position(number, column),
                    "each line of a bulk export is one FHIR resource as a JSON object",
                ),
            )
        )

    def _index_file(self, number: int, out: Any) -> None:
        file = self.files[number]
        wanted = set(READ_TYPES)  # and REFERENCED, kept apart
        try:
            fd, _ = open_regular(self.paths[number])  # swapped for a FIFO since listed: refused
        except OSError as exc:
            reason = str(exc) if isinstance(exc, NotRegular) else exc.strerror or str(exc)
            self.problems.append(
                Problem(file.path, Diagnostic(f"cannot read file: {reason}", file.path))
            )
            return
        with os.fdopen(fd, "rb", buffering=_BLOCK) as stream:
            offset = 0
            for line, raw in enumerate(_bounded_lines(stream, MAX_LINE_BYTES), 1):
                start, offset = offset, offset + (raw if isinstance(raw, int) else len(raw))
                if isinstance(raw, int):
                    self._bad(
                        file.path,
                        line,
                        f"longer than the limit of {MAX_LINE_BYTES:,} bytes for one resource; "
                        "not read",
                    )
                    continue
                if not raw.strip():
                    continue  # a blank line (often the last) holds no resource
                try:
                    resource = parse_line(raw)
                except UnicodeDecodeError:
                    self._bad(file.path, line, "not UTF-8 text")
                    continue
                except json.JSONDecodeError as exc:
                    self._bad(file.path, line, f"not valid JSON: {exc.msg}", exc.colno)
                    continue
                except DuplicateKey as exc:
                    self._bad(file.path, line, f"not valid FHIR JSON: {exc}")
                    continue
                except (ValueError, RecursionError) as exc:
                    self._bad(file.path, line, f"not valid JSON: {exc}")
                    continue
                if not isinstance(resource, dict) or not isinstance(
                    resource.get("resourceType"), str
                ):
                    self._bad(
                        file.path, line, "not a FHIR resource (a JSON object with a resourceType)"
                    )
                    continue
                kind = resource["resourceType"]
                where = f"{number}\t{line}\t{start}\t{offset - start}\n"
                if kind in REFERENCED:
                    rid = resource.get("id")
                    if isinstance(rid, str) and rid:
                        out["targets"].write(f"{_escape(f'{kind}/{rid}')}\t{where}")
                    continue
                if kind not in wanted:
                    continue  # in a file named for no type: not read by screening
                key = _key_of(resource)
                if key is None:
                    self._bad(file.path, line, "a Patient resource without an id")
                    continue
                role = _PATIENT if kind == "Patient" else _RESOURCE
                out["lines"].write(f"{_escape(key)}\t{role}\t{where}")
                if kind in _MEDICATION_USERS:
                    target = target_id(resource.get("medicationReference"), "Medication")
                    if target is not None:
                        out["refs"].write(f"{_escape(key)}\t{_escape(f'Medication/{target}')}\n")
                self.resources += 1

    def line_errors(self) -> list[Problem]:
        """Unreadable lines and files (and the manifest's missing files), then the count of
        any malformed lines past the first MAX_LINE_ERRORS."""
        found = list(self.problems)
        if self.bad_lines:
            found.append(
                Problem(
                    self.display,
                    Diagnostic(
                        f"… and {self.bad_lines:,} more malformed lines in the export", self.display
                    ),
                )
            )
        return found

    def groups(self) -> Iterator[Group]:
        """Every patient key with its resources, by key, each key's lines by file and line."""
        # A patient's referenced Medications join it once each, however often prescribed.
        cursor = self._db.execute(
            'SELECT key, role, file, line, "offset", length FROM lines UNION ALL '
            f'SELECT r.key, {_REFERENCED}, t.file, t.line, t."offset", t.length '
            "FROM (SELECT DISTINCT key, target FROM refs) r JOIN targets t USING (target) "
            "ORDER BY key, role, file, line"
        )
        key: str | None = None  # no key is None: every field is a JSON string
        rows_of: tuple[list[Line], list[Line], list[Line]] = ([], [], [])
        while True:
            rows = cursor.fetchmany(_FETCH)
            if not rows:
                break
            for row_key, role, file, line, offset, length in rows:
                if row_key != key:
                    if key is not None:
                        yield Group(_unescape(key), *map(tuple, rows_of))
                    key, rows_of = row_key, ([], [], [])
                rows_of[role].append(Line(file, offset, length, line))
        if key is not None:
            yield Group(_unescape(key), *map(tuple, rows_of))


# ----------------------------------------------------------------------------- reading


def _about(resource: dict[str, Any], key: str) -> dict[str, Any]:
    """A resource grouped under patient `key`, with its reference to that patient written
    `urn:uuid:KEY`, as the group's bundle names its Patient.

    An export is one server's, and its resources name their patient as that server writes
    it (`Patient/ID`, or a URL ending so); the grouping has already matched them by that
    id (patient_key), and in the bundle made of a group an absolute URL would match no
    entry (fhir_bundle.Index)."""
    for name in ("subject", "patient"):
        ref = resource.get(name)
        if isinstance(ref, dict) and patient_key(ref) == key:
            return {**resource, name: {**ref, "reference": f"urn:uuid:{key}"}}
    return resource


class Reader:
    """Reads a group's lines back from the export's files (kept open while in use)."""

    def __init__(self, paths: tuple[str, ...], shown: tuple[str, ...]) -> None:
        self.paths = paths
        self.shown = shown
        self._fds: dict[int, int] = {}

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def resource(self, line: Line) -> Any:
        fd = self._fds.get(line.file)
        if fd is None:
            fd, _ = open_regular(self.paths[line.file])  # as when it was indexed
            self._fds[line.file] = fd
        raw = os.pread(fd, line.length, line.offset)
        if len(raw) != line.length:
            raise PatientError(
                Diagnostic(
                    f"line {line.number}: the file changed while it was screened",
                    self.shown[line.file],
                    Position(line.number, 1),
                )
            )
        return parse_line(raw)

    def where(self, line: Line) -> str:
        return f"{self.shown[line.file]}:{line.number}"

    def extract(
        self,
        group: Group,
        as_of: dt.date | None = None,
        today: dt.date | None = None,
        vocabulary: fhir.v.Vocabulary | None = None,
    ) -> tuple[str, fhir.Extract]:
        """The display name and the extract of one patient, as from a bundle of the same
        resources; a PatientError for resources whose patient is not in the export."""
        if not group.patients:
            first = group.resources[0]
            count = len(group.resources)
            whom = (
                "name no patient (no subject or patient reference to a Patient)"
                if group.key == _NO_PATIENT
                else f"refer to Patient/{fhir.clean(group.key)}, which is not in the export"
            )
            raise PatientError(
                Diagnostic(
                    f"{count:,} resource(s) {whom}; not screened (the first is line "
                    f"{first.number} of {Path(self.shown[first.file]).name})",
                    self.shown[first.file],
                    Position(first.number, 1),
                    "export the patients with their resources (Patient must be among the "
                    "exported types)",
                )
            )
        display = self.where(group.patients[0])
        entries = []
        for line in group.patients:
            patient = self.resource(line)
            # What `urn:uuid:ID` references resolve to, as in a bundle's fullUrl.
            entries.append({"fullUrl": f"urn:uuid:{patient['id']}", "resource": patient})
        entries += [
            {"resource": _about(self.resource(line), group.key)} for line in group.resources
        ]
        entries += [{"resource": self.resource(line)} for line in group.referenced]
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        return display, fhir.extract_bundle(bundle, display, as_of, today, vocabulary)


__all__ = [
    "ExportIndex",
    "Group",
    "Line",
    "Problem",
    "Reader",
    "export_files",
    "is_export",
    "patient_key",
    "target_id",
    "type_from_name",
]
