"""The screening log: every run, every patient screened, each verdict and criterion, in SQLite.

Sites keep a screening log (who was screened when, and why each was not enrolled); this is
it, kept by `screener check --log screening.db`. All of the log's SQL is in this module; the
schema is documented in docs/screening-log.md.

Two promises:

- **A run is appended whole or not at all.** While a run screens, its rows go to temporary
  tables of the same connection (SQLite keeps them in a temporary file, so memory stays
  flat); only when the run is complete are they copied into the log, in one transaction.
  A crash or Ctrl-C before that leaves the log exactly as it was; SQLite's journal makes
  the copy itself atomic.
- **Concurrent runs do not corrupt it.** The copy takes SQLite's write lock
  (`BEGIN IMMEDIATE`), and a second run waits for it (up to `BUSY_TIMEOUT` seconds), so
  two runs never interleave and each gets its own run id.

A log is opened only if its schema version is one this screener knows; older logs are
migrated forward (each migration in its own transaction), and a log written by a newer
screener is refused rather than misread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import marshal
import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screener.core._model import FileError, Record, Render, Screening

BUSY_TIMEOUT = 120.0  # seconds a run waits for another run's write to finish

# MIGRATIONS[n] takes a log from schema version n to n + 1. Never edit a released one:
# add a new one, and say what it does in docs/screening-log.md.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the tables.
    """
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    INSERT INTO schema_version VALUES (0);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        tool_version TEXT NOT NULL,
        rules_digest TEXT NOT NULL,
        as_of TEXT,
        max_age TEXT,
        trials TEXT NOT NULL
    );
    CREATE TABLE screenings (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs (id),
        file TEXT NOT NULL,
        file_digest TEXT,
        patient TEXT,
        as_of TEXT,
        as_of_source TEXT,
        error TEXT
    );
    CREATE TABLE verdicts (
        screening_id INTEGER NOT NULL REFERENCES screenings (id),
        trial TEXT NOT NULL,
        product TEXT NOT NULL,
        verdict TEXT NOT NULL,
        PRIMARY KEY (screening_id, trial)
    );
    -- A cohort repeats most outcomes (negative serology, signed consent), so each distinct
    -- one is stored once and a screening points at its own; the criteria view joins them
    -- back into one row per screening and criterion. parent is '' for a criterion (a NULL
    -- would make every criterion's row distinct under UNIQUE).
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        trial TEXT NOT NULL,
        criterion TEXT NOT NULL,
        parent TEXT NOT NULL,
        label TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        missing TEXT NOT NULL,
        UNIQUE (trial, criterion, parent, label, status, reason, missing)
    );
    CREATE TABLE outcomes (
        screening_id INTEGER NOT NULL REFERENCES screenings (id),
        position INTEGER NOT NULL,
        result_id INTEGER NOT NULL REFERENCES results (id),
        PRIMARY KEY (screening_id, position)
    ) WITHOUT ROWID;
    CREATE VIEW criteria AS
        SELECT o.screening_id, o.position, r.trial, r.criterion, NULLIF(r.parent, '') AS parent,
               r.label, r.status, r.reason, r.missing
        FROM outcomes o JOIN results r ON r.id = o.result_id;
    """,
    # 1 -> 2: a patient's history is looked up by id, in run order.
    """
    CREATE INDEX screenings_by_patient ON screenings (patient, run_id);
    """,
    # 2 -> 3: each trial's own rule digest, so `changes` can tell which trial's rules
    # changed (the run's one digest changes whenever the set of trials does). Runs logged
    # before have no rows here.
    """
    CREATE TABLE run_trials (
        run_id INTEGER NOT NULL REFERENCES runs (id),
        trial TEXT NOT NULL,
        rules_digest TEXT NOT NULL,
        PRIMARY KEY (run_id, trial)
    ) WITHOUT ROWID;
    """,
)
VERSION = len(MIGRATIONS)

# The staging tables mirror the log's, without the run id (known only when the run is
# copied in) and with screening ids local to the run.
_STAGE = """
CREATE TEMP TABLE stage_screenings (
    id INTEGER PRIMARY KEY, file TEXT NOT NULL, file_digest TEXT, patient TEXT,
    as_of TEXT, as_of_source TEXT, error TEXT);
CREATE TEMP TABLE stage_verdicts (
    screening_id INTEGER NOT NULL, trial TEXT NOT NULL, product TEXT NOT NULL,
    verdict TEXT NOT NULL);
CREATE TEMP TABLE stage_results (
    id INTEGER PRIMARY KEY, trial TEXT NOT NULL, criterion TEXT NOT NULL,
    parent TEXT NOT NULL, label TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
    missing TEXT NOT NULL);
CREATE TEMP TABLE stage_outcomes (
    screening_id INTEGER NOT NULL, position INTEGER NOT NULL, result INTEGER NOT NULL);
CREATE TEMP TABLE stage_map (local INTEGER PRIMARY KEY, result INTEGER NOT NULL);
"""
# A cohort repeats most criterion outcomes, so the run stages each distinct one once (as
# the log stores it) and a screening's outcomes as numbers. Up to this many are told apart
# in memory (some 20 MB); past it a repeat is staged again, which the log's own UNIQUE
# results absorb when the run is appended: only the saving stops, not the correctness.
DISTINCT_STAGED = 50_000


class LogError(Exception):
    """A screening log that cannot be used: not SQLite, not a log, or from a newer screener."""


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: this module says where each transaction begins and ends.
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    return db


def _version(db: sqlite3.Connection, path: Path) -> int:
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in tables:
        if tables:
            raise LogError(
                f"{path} is an SQLite database but not a screening log "
                f"(it has tables {', '.join(sorted(tables))} and no schema_version)"
            )
        return 0
    rows = db.execute("SELECT version FROM schema_version").fetchall()
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        raise LogError(f"{path}: its schema_version table should hold one version number")
    return rows[0][0]


def open_log(path: Path, create: bool = True) -> sqlite3.Connection:
    """Open (or, with `create`, create) a screening log, migrated to this screener's schema.

    Raises LogError for a file that is not a log, or whose schema is newer than this
    screener knows: a newer screener may record things this one would drop or misread.
    """
    if not create and not path.exists():
        raise LogError(f"no screening log at {path}")
    try:
        db = _connect(path)
        try:
            # Read first, without a write lock: a log an auditor may only read opens too.
            version = _version(db, path)
            if version > VERSION:
                raise LogError(
                    f"{path} was written by a newer screener (log schema version {version}; "
                    f"this screener knows versions up to {VERSION}): upgrade screener to "
                    "read or append to it"
                )
            for step in range(version, VERSION):
                # Each migration is a transaction of its own (executescript would commit
                # halfway), and re-checks the version: another run may have just done it.
                db.execute("BEGIN IMMEDIATE")
                if _version(db, path) == step:
                    for statement in _statements(MIGRATIONS[step]):
                        db.execute(statement)
                    db.execute("UPDATE schema_version SET version = ?", (step + 1,))
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.close()
            raise
    except sqlite3.DatabaseError as exc:
        raise LogError(f"{path} cannot be used as a screening log: {exc}") from None
    return db


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration, one by one (sqlite3 says where each one ends, so a
    semicolon in a comment or a string does not cut one short)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in pending.splitlines()
    ):
        raise ValueError(f"unfinished statement in a migration: {pending.strip()[:60]}")


def file_digest(name: str) -> str | None:
    """The SHA-256 of a file's bytes, to show later exactly which version was screened;
    None for what is not a regular file (a FIFO would block, or give other bytes, on a
    second read) or cannot be read."""
    digest = hashlib.sha256()
    try:
        # O_NONBLOCK: opening a FIFO to read would otherwise wait for a writer.
        handle = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(handle, "rb") as stream:
            if not stat.S_ISREG(os.fstat(handle).st_mode):
                return None
            for block in iter(lambda: stream.read(1 << 16), b""):
                digest.update(block)
    except OSError:
        return None
    return "sha256:" + digest.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunInfo:
    """What a run records about itself."""

    tool_version: str
    rules_digest: str
    as_of: str | None  # the --as-of given; each screening records the date it used
    max_age: str | None
    trials: tuple[str, ...]
    # (trial, its rule file's digest) for the trials screened: what `changes` compares
    versions: tuple[tuple[str, str], ...] = ()


# What the log stages for one record, as plain tuples and strings, so a worker process can
# make it beside the record's rendering and send it instead of the whole record:
#   (file, patient, as_of, as_of_source, error,
#    ((trial, product, verdict), ...),
#    ((trial, criterion, parent, label, status, reason, missing), ...))   in report order,
# parent '' for a criterion, missing ';'-separated; an unreadable file has patient, dates,
# verdicts and criteria empty and its first diagnostic as error.
LogRows = tuple[
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    tuple[tuple[str, str, str], ...],
    tuple[tuple[str, str, str, str, str, str, str], ...],
]


def rows_of(record: Record) -> LogRows:
    """The rows the log stages for a record (see LogRows)."""
    if isinstance(record, FileError):
        return (record.file, None, None, None, record.diagnostics[0].render(), (), ())
    assert isinstance(record, Screening)
    criteria: list[tuple[str, str, str, str, str, str, str]] = []
    for t in record.trials:
        for c in t.criteria:
            criteria.append(
                (t.trial, c.id, "", c.label, c.status.value, c.reason, ";".join(c.missing))
            )
            criteria += [
                (t.trial, p.id, c.id, p.label, p.status.value, p.reason, ";".join(p.missing))
                for p in c.parts
            ]
    return (
        record.file,
        record.patient,
        record.as_of,
        record.as_of_source,
        None,
        tuple((t.trial, t.product, t.verdict.value) for t in record.trials),
        tuple(criteria),
    )


@dataclass(frozen=True)
class LogRender:
    """A worker's renderer for a logged run: the output's own rendering of a record and the
    rows the log stages for it, in one payload (`unpack` reads it), so the main process
    neither receives whole records nor renders them.

    marshal, not pickle: the payload is only tuples, strings and bytes, made by this
    screener's own worker from a record it screened, and marshal reads nothing else.
    """

    render: Render

    def __call__(self, record: Record) -> bytes:
        text = self.render(record)
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        return marshal.dumps((rows_of(record), data))


def unpack(payload: bytes) -> tuple[LogRows, bytes]:
    """What LogRender made of a record: (the log's rows, the output's bytes)."""
    rows, data = marshal.loads(payload)
    return rows, data


class Recorder:
    """Stages one run's screenings and appends them to the log in one transaction."""

    def __init__(self, path: Path, info: RunInfo) -> None:
        self.path = path
        self.info = info
        self.started_at = _now()
        self.db = open_log(path)
        self.db.executescript(_STAGE)  # temporary tables: no lock on the log is taken
        self.count = 0
        self.staged = 0  # distinct criterion outcomes staged (local result ids)
        self._results: dict[tuple[str, ...], int] = {}  # outcome -> its local id
        self.db.execute("BEGIN")  # staging in one transaction is many times faster

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        # Only a run that finished is logged: an error or Ctrl-C leaves the log as it was.
        if kind is None:
            self.commit()
        else:
            self.abandon()

    def add(self, record: Record, digest: str | None = None) -> None:
        """Stage a record with its file's digest (`digest`: the input's, when it is not a
        file of its own, as for a patient of a bulk export)."""
        self.stage(rows_of(record), digest or file_digest(record.file))

    def stage(self, rows: LogRows, digest: str | None) -> None:
        """Stage what rows_of made of a record (here, or in the worker that screened it)."""
        self.count += 1
        sid = self.count
        file, patient, as_of, source, error, verdicts, criteria = rows
        self.db.execute(
            "INSERT INTO stage_screenings VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sid, file, digest, patient, as_of, source, error),
        )
        if verdicts:
            self.db.executemany(
                "INSERT INTO stage_verdicts VALUES (?, ?, ?, ?)", [(sid, *v) for v in verdicts]
            )
        if criteria:
            known, new = self._results, []
            ids = []
            for c in criteria:
                rid = known.get(c)
                if rid is None:
                    self.staged += 1
                    rid = self.staged
                    new.append((rid, *c))
                    if len(known) < DISTINCT_STAGED:
                        known[c] = rid
                ids.append(rid)
            if new:
                self.db.executemany(
                    "INSERT INTO stage_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", new
                )
            self.db.executemany(
                "INSERT INTO stage_outcomes VALUES (?, ?, ?)",
                [(sid, i, rid) for i, rid in enumerate(ids)],
            )

    def commit(self) -> int:
        """Append the staged run to the log; returns its run id."""
        try:
            return self._commit()
        except sqlite3.Error as exc:  # such as a lock held past BUSY_TIMEOUT
            raise LogError(f"{self.path}: this run was not logged: {exc}") from None

    def _commit(self) -> int:
        db = self.db
        db.execute("COMMIT")  # the staging transaction: temporary tables only
        db.execute("BEGIN IMMEDIATE")  # waits while another run appends
        try:
            if _version(db, self.path) != VERSION:  # migrated by a newer screener meanwhile
                raise LogError(f"{self.path} changed schema during the run; nothing was logged")
            i = self.info
            run = db.execute(
                "INSERT INTO runs (started_at, finished_at, tool_version, rules_digest, as_of, "
                "max_age, trials) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    self.started_at,
                    _now(),
                    i.tool_version,
                    i.rules_digest,
                    i.as_of,
                    i.max_age,
                    ",".join(i.trials),
                ),
            ).lastrowid
            assert run is not None  # an INSERT always sets it
            db.executemany(
                "INSERT INTO run_trials VALUES (?, ?, ?)",
                [(run, trial, digest) for trial, digest in i.versions],
            )
            # Local screening ids become log ids by an offset past the log's highest.
            (offset,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM screenings").fetchone()
            db.execute(
                "INSERT INTO screenings (id, run_id, file, file_digest, patient, as_of, "
                "as_of_source, error) SELECT id + ?, ?, file, file_digest, patient, "
                "as_of, as_of_source, error FROM stage_screenings ORDER BY id",
                (offset, run),
            )
            db.execute(
                "INSERT INTO verdicts SELECT screening_id + ?, trial, product, verdict "
                "FROM stage_verdicts",
                (offset,),
            )
            db.execute(
                "INSERT OR IGNORE INTO results (trial, criterion, parent, label, status, "
                "reason, missing) SELECT trial, criterion, parent, label, "
                "status, reason, missing FROM stage_results ORDER BY id"
            )
            # Each staged outcome's id in the log, found once through results' UNIQUE
            # index; the screenings' outcomes then join on numbers alone.
            db.execute(
                "INSERT INTO stage_map SELECT s.id, r.id FROM stage_results s JOIN results r "
                "ON r.trial = s.trial AND r.criterion = s.criterion AND r.parent = s.parent "
                "AND r.label = s.label AND r.status = s.status AND r.reason = s.reason "
                "AND r.missing = s.missing"
            )
            db.execute(
                "INSERT INTO outcomes SELECT o.screening_id + ?, o.position, m.result "
                "FROM stage_outcomes o JOIN stage_map m ON m.local = o.result",
                (offset,),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # not when BEGIN IMMEDIATE itself gave up waiting
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()
        return int(run)

    def abandon(self) -> None:
        """Drop the staged run: the log is left as it was."""
        self.db.close()


# ------------------------------------------------------------------------------ reading


def _run_row(db: sqlite3.Connection, run: int) -> dict[str, Any]:
    row = db.execute(
        "SELECT id, started_at, finished_at, tool_version, rules_digest, as_of, "
        "max_age, trials FROM runs WHERE id = ?",
        (run,),
    ).fetchone()
    keys = (
        "run",
        "started_at",
        "finished_at",
        "tool_version",
        "rules_digest",
        "as_of",
        "max_age",
        "trials",
    )
    data = dict(zip(keys, row))
    data["trials"] = data["trials"].split(",") if data["trials"] else []
    return data


def runs(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every run, oldest first, with how many files it screened and how many failed."""
    out = []
    for (run,) in db.execute("SELECT id FROM runs ORDER BY id").fetchall():
        data = _run_row(db, run)
        data["files"], data["errors"] = db.execute(
            "SELECT COUNT(*), COUNT(error) FROM screenings WHERE run_id = ?", (run,)
        ).fetchone()
        out.append(data)
    return out


def _screening(db: sqlite3.Connection, sid: int) -> dict[str, Any]:
    """A screening's verdicts and criteria: trial -> {product, verdict, criteria}."""
    trials: dict[str, Any] = {}
    for trial, product, verdict in db.execute(
        "SELECT trial, product, verdict FROM verdicts WHERE screening_id = ? ORDER BY trial", (sid,)
    ):
        trials[trial] = {"product": product, "verdict": verdict, "criteria": {}}
    for trial, cid, parent, label, status, reason, missing in db.execute(
        "SELECT trial, criterion, parent, label, status, reason, missing FROM criteria "
        "WHERE screening_id = ? ORDER BY position",
        (sid,),
    ):
        trials[trial]["criteria"][cid] = {
            "parent": parent,
            "label": label,
            "status": status,
            "reason": reason,
            "missing": missing.split(";") if missing else [],
        }
    return trials


def _patients(db: sqlite3.Connection, run: int) -> dict[str, tuple[int, str, str | None]]:
    """patient id -> (screening id, file, file digest) in a run; a duplicated id keeps the
    file screened last (the cohort summary warns about duplicates)."""
    return {
        patient: (sid, file, digest)
        for sid, patient, file, digest in db.execute(
            "SELECT id, patient, file, file_digest FROM screenings "
            "WHERE run_id = ? AND patient IS NOT NULL ORDER BY id",
            (run,),
        )
    }


def _latest_before(
    db: sqlite3.Connection, patient: str, run: int, trials: list[str]
) -> dict[str, tuple[int, int, str, str | None]]:
    """trial -> the patient's latest screening for it in a run before `run`: (run id,
    screening id, file, file digest). Newest first by the screenings_by_patient index,
    reading only as far back as some trial still lacks one."""
    found: dict[str, tuple[int, int, str, str | None]] = {}
    wanted = set(trials)
    for run_id, sid, file, digest, trial in db.execute(
        "SELECT s.run_id, s.id, s.file, s.file_digest, v.trial FROM screenings s "
        "JOIN verdicts v ON v.screening_id = s.id WHERE s.patient = ? AND s.run_id < ? "
        "ORDER BY s.run_id DESC, s.id DESC",
        (patient, run),
    ):
        if trial in wanted and trial not in found:
            found[trial] = (run_id, sid, file, digest)
            if len(found) == len(wanted):
                break
    return found


def _trial_digests(db: sqlite3.Connection, run: dict[str, Any]) -> dict[str, str | None]:
    """trial -> its rule file's digest in a run. A run logged before schema 3 kept one
    digest for all its trials: its trials map to None (not known)."""
    known = dict(
        db.execute("SELECT trial, rules_digest FROM run_trials WHERE run_id = ?", (run["run"],))
    )
    return {t: known.get(t) for t in run["trials"]}


def _rules_changed(
    old: dict[str, Any],
    new: dict[str, Any],
    was: dict[str, str | None],
    now: dict[str, str | None],
    trial: str,
) -> bool:
    """Whether a trial's rule file differs between two runs. Without its own digests (a run
    logged before schema 3), only two runs of the same trials under one digest are known
    to have used the same rules."""
    if was.get(trial) is not None and now.get(trial) is not None:
        return was[trial] != now[trial]
    return not (old["trials"] == new["trials"] and old["rules_digest"] == new["rules_digest"])


def _moved(
    was: dict[str, Any], now: dict[str, Any]
) -> tuple[str | None, str | None, list[dict[str, Any]]] | None:
    """One trial in two screenings: (old verdict, new verdict, the criteria and parts whose
    status or reason moved), or None if nothing did."""
    criteria = []
    for cid in list(now["criteria"]) + [c for c in was["criteria"] if c not in now["criteria"]]:
        x, y = was["criteria"].get(cid, {}), now["criteria"].get(cid, {})
        if (x.get("status"), x.get("reason")) != (y.get("status"), y.get("reason")):
            criteria.append(
                {
                    "criterion": cid,
                    "parent": (y or x).get("parent"),
                    "label": (y or x).get("label"),
                    "old_status": x.get("status"),
                    "old_reason": x.get("reason"),
                    "new_status": y.get("status"),
                    "new_reason": y.get("reason"),
                }
            )
    if not criteria and was["verdict"] == now["verdict"]:
        return None
    return was["verdict"], now["verdict"], criteria


def _run_ids(db: sqlite3.Connection) -> list[int]:
    return [r for (r,) in db.execute("SELECT id FROM runs ORDER BY id")]


def changes(
    db: sqlite3.Connection, run: int | None = None, against: int | None = None
) -> dict[str, Any]:
    """What moved for the patients of a run (default: the latest).

    Each patient and trial is compared with the patient's latest earlier screening for
    that trial, whichever run it was in: a run of one re-screened file, of one trial, or
    of another site's folder does not hide what moved for everyone else since they were
    last screened. With `against`, every patient is compared with their screening in that
    one run instead, for the trials both runs screened.

    Only a trial both screenings screened is compared, so a run of fewer or more trials
    reports no false change: `trials_new` (screened by this run, not before; with
    `against`, not in that run) and `trials_dropped` (screened by the run before, or
    `against`, not by this one) say so once. Per run compared with (`compared_with`): how
    many patients, which trials, and the trials whose rule file changed since.

    Per trial that moved: the old and new verdict and each criterion (or part) whose
    status or reason changed. Patients are matched by id; an id found in several files of
    a run counts as the file screened last (the cohort summary warns about such ids).
    `added`: patients never screened before this run (with `against`: not in that run);
    `removed`: patients of the run before (or `against`) that this run did not screen.
    Files that could not be screened in the run are listed as `errors`.
    """
    ids = _run_ids(db)
    if run is None:
        run = ids[-1] if ids else None
    if run is None or run not in ids:
        raise LogError("the log holds no runs" if not ids else f"the log has no run {run}")
    if against is not None and (against not in ids or against == run):
        raise LogError(
            f"the log has no run {against}" if against not in ids else "a run against itself"
        )
    this = _run_row(db, run)
    new = _patients(db, run)
    errors = [
        {"file": file, "error": error}
        for file, error in db.execute(
            "SELECT file, error FROM screenings WHERE run_id = ? AND error IS NOT NULL ORDER BY id",
            (run,),
        )
    ]
    before = [r for r in ids if r < run]
    reference = against if against is not None else (before[-1] if before else None)
    reference_row = _run_row(db, reference) if reference is not None else None
    # patient -> trial -> (run, screening, file, digest) it is compared with
    baseline: dict[str, dict[str, tuple[int, int, str, str | None]]] = {}
    if against is not None:
        assert reference_row is not None
        old = _patients(db, against)
        shared = [t for t in this["trials"] if t in set(reference_row["trials"])]
        for patient in new:
            if patient in old:
                baseline[patient] = {t: (against, *old[patient]) for t in shared}
        earlier_trials = set(reference_row["trials"])
    else:
        for patient in new:
            found = _latest_before(db, patient, run, this["trials"])
            if found:
                baseline[patient] = found
        earlier_trials = {
            t
            for (text,) in db.execute("SELECT trials FROM runs WHERE id < ?", (run,))
            for t in (text.split(",") if text else [])
        }
    rows = {r: _run_row(db, r) for r in {b[0] for p in baseline.values() for b in p.values()}}
    digests = {r: _trial_digests(db, row) for r, row in rows.items()}
    digests[run] = _trial_digests(db, this)
    used: dict[int, dict[str, set[str]]] = {}  # run -> {"patients", "trials"}
    moved = []
    for patient in sorted(baseline):
        new_sid, file, new_digest = new[patient]
        now = _screening(db, new_sid)
        screenings: dict[int, dict[str, Any]] = {}
        for trial in this["trials"]:
            if trial not in baseline[patient] or trial not in now:
                continue  # a new trial for this patient, or one not reached
            old_run, old_sid, _, old_digest = baseline[patient][trial]
            if old_sid not in screenings:
                screenings[old_sid] = _screening(db, old_sid)
            if trial not in screenings[old_sid]:
                continue
            use = used.setdefault(old_run, {"patients": set(), "trials": set()})
            use["patients"].add(patient)
            use["trials"].add(trial)
            change = _moved(screenings[old_sid][trial], now[trial])
            if change is None:
                continue
            old_verdict, new_verdict, criteria = change
            moved.append(
                {
                    "patient": patient,
                    "file": file,
                    "trial": trial,
                    "previous_run": old_run,
                    "old_verdict": old_verdict,
                    "new_verdict": new_verdict,
                    # None: a digest is unknown (the input was not a regular file)
                    "file_changed": None
                    if old_digest is None or new_digest is None
                    else old_digest != new_digest,
                    "criteria": criteria,
                }
            )
    compared = []
    for r in sorted(used):
        trials = [t for t in this["trials"] if t in used[r]["trials"]]
        compared.append(
            {
                "run": rows[r],
                "patients": len(used[r]["patients"]),
                "trials": trials,
                "rules_changed": [
                    {"trial": t, "old_digest": digests[r][t], "new_digest": digests[run][t]}
                    for t in trials
                    if _rules_changed(rows[r], this, digests[r], digests[run], t)
                ],
                "tool_changed": rows[r]["tool_version"] != this["tool_version"],
            }
        )
    removed = sorted(set(_patients(db, reference)) - set(new)) if reference is not None else []
    return {
        "run": this,
        "against": against,
        "compared_with": compared,
        "trials_new": [
            t for t in this["trials"] if reference is not None and t not in earlier_trials
        ],
        "trials_dropped": [
            t for t in (reference_row["trials"] if reference_row else []) if t not in this["trials"]
        ],
        "changes": moved,
        "added": sorted(set(new) - set(baseline)),
        "removed": removed,
        "errors": errors,
    }


def history(db: sqlite3.Connection, patient: str) -> list[dict[str, Any]]:
    """Every screening of a patient, oldest first, with its run and its results."""
    out = []
    for sid, run, file, digest, as_of, source in db.execute(
        "SELECT id, run_id, file, file_digest, as_of, as_of_source FROM screenings "
        "WHERE patient = ? ORDER BY run_id, id",
        (patient,),
    ).fetchall():
        run_data = _run_row(db, run)
        out.append(
            {
                **run_data,
                "file": file,
                "file_digest": digest,
                "patient_as_of": as_of,
                "as_of_source": source,
                "trials": _screening(db, sid),
            }
        )
    return out


def every_screening(db: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    """Every screening in the log, oldest first (run, then input order): the site's
    screening log as an auditor reads it. Per trial the verdict and the criteria that
    stand in the way, each with its reason: failing (why the patient was not enrolled),
    unknown (what was missing), review (awaiting the investigator). Parts are left out:
    their criterion's reason already gives each failing part's.

    Three ordered scans merged by screening id, so a log of any size is read in one pass
    and never held whole.
    """
    run_rows: dict[int, dict[str, Any]] = {}
    verdicts = db.execute(
        "SELECT screening_id, trial, product, verdict FROM verdicts ORDER BY screening_id, trial"
    )
    blocking = db.execute(
        "SELECT o.screening_id, r.trial, r.criterion, r.label, r.status, r.reason, r.missing "
        "FROM outcomes o JOIN results r ON r.id = o.result_id "
        "WHERE r.parent = '' AND r.status <> 'pass' ORDER BY o.screening_id, o.position"
    )
    next_verdict = next(verdicts, None)
    next_blocking = next(blocking, None)
    for sid, run, file, digest, patient, as_of, source, error in db.execute(
        "SELECT id, run_id, file, file_digest, patient, as_of, as_of_source, error "
        "FROM screenings ORDER BY id"
    ):
        if run not in run_rows:
            run_rows[run] = _run_row(db, run)
        info = run_rows[run]
        trials: dict[str, dict[str, Any]] = {}
        while next_verdict is not None and next_verdict[0] <= sid:
            if next_verdict[0] == sid:
                _, trial, product, verdict = next_verdict
                trials[trial] = {
                    "trial": trial,
                    "product": product,
                    "verdict": verdict,
                    "fail": [],
                    "unknown": [],
                    "review": [],
                }
            next_verdict = next(verdicts, None)
        while next_blocking is not None and next_blocking[0] <= sid:
            if next_blocking[0] == sid:
                _, trial, cid, label, status, reason, missing = next_blocking
                if trial in trials and status in ("fail", "unknown", "review"):
                    trials[trial][status].append(
                        {
                            "criterion": cid,
                            "label": label,
                            "reason": reason,
                            "missing": missing.split(";") if missing else [],
                        }
                    )
            next_blocking = next(blocking, None)
        yield {
            "run": run,
            "started_at": info["started_at"],
            "tool_version": info["tool_version"],
            "rules_digest": info["rules_digest"],
            "patient": patient,
            "file": file,
            "file_digest": digest,
            "as_of": as_of,
            "as_of_source": source,
            "error": error,
            "trials": list(trials.values()),
        }
