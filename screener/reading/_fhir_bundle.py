"""A FHIR bundle's JSON: reading the file, the bundle's shape, references between its
resources, and whether a resource is about the bundle's patient; with the readers of the
FHIR datatypes every concern uses (CodeableConcept, date and dateTime) and `Reading`, what
the readers of one bundle have found so far.

The bulk reader (reading/_bulk.py) parses its NDJSON lines with the same number rules and
reads references with the same `type_id`, so a bundle and a bulk export of the same
patient read alike.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screener.core import _vocabulary as v
from screener.core._errors import Diagnostic, PatientError, Position
from screener.reading._files import TooLarge, read_regular

MAX_BYTES = 64 * 1024 * 1024  # EHR exports are larger than patient files; still bounded
BUNDLE_TYPES = ("transaction", "collection", "searchset", "batch", "document")
_DATETIME = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_BY_PATIENT = ("Immunization", "AllergyIntolerance")
HINT_EXPORT = "export the patient as a FHIR R4 Bundle (JSON), e.g. with Patient/$everything"


# ---------------------------------------------------------------------------- datatypes


def as_list(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (a damaged export) as no items."""
    return value if isinstance(value, list) else []


def codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in as_list(concept.get("coding")) if isinstance(c, dict)]


def clean(text: Any) -> str:
    """Display text without zero-width spaces and other invisible characters."""
    if not isinstance(text, str):
        return ""
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cf", "Cs") or ch in "\ufffe\uffff":
            continue  # U+200B zero-width space, U+FEFF, marks, lone surrogates, …
        kept.append(" " if category in ("Cc", "Zl", "Zp") else ch)
    return " ".join("".join(kept).split())


def concept_name(concept: Any, coding: dict[str, Any] | None = None) -> str:
    """What a CodeableConcept is called: the matched coding's display, else text, else any."""
    if coding is not None and clean(coding.get("display")):
        return clean(coding.get("display"))
    if isinstance(concept, dict) and clean(concept.get("text")):
        return clean(concept.get("text"))
    for c in codings(concept):
        if clean(c.get("display")):
            return clean(c.get("display"))
    for c in codings(concept):
        if c.get("code"):
            return f"{c.get('system', '')} {c['code']}".strip()
    return ""


@dataclass(frozen=True, order=True)
class When:
    """A FHIR date or dateTime: its date as written, and an instant for ordering."""

    date: dt.date
    instant: dt.datetime  # UTC; midnight UTC for a date without a time

    @classmethod
    def parse(cls, text: Any) -> When | None:
        """A full date or dateTime; None for partial dates (2019, 2019-05) or garbage."""
        if not isinstance(text, str):
            return None
        match = _DATETIME.match(text.strip())
        if not match or match.group(3) is None:
            return None
        year, month, day, hour, minute, second, zone = match.groups()
        try:
            date = dt.date(int(year), int(month), int(day))
            moment = dt.datetime(
                date.year,
                date.month,
                date.day,
                int(hour or 0),
                int(minute or 0),
                int(second or 0),
                tzinfo=dt.UTC,
            )
        except ValueError:
            return None
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            try:
                moment -= sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            except OverflowError:
                # 9999-12-31T23:59:59-23:59 is past the end of Python's calendar in UTC:
                # no real record, so it reads as an unusable date, like garbage.
                return None
        return cls(date, moment)


def period_start(text: Any) -> dt.date | None:
    """The first day of a partial FHIR date (2016, 2016-04): a death recorded so happened on
    or after it. None for anything else."""
    match = _DATETIME.match(text.strip()) if isinstance(text, str) else None
    if not match or match.group(3) is not None:
        return None
    try:
        return dt.date(int(match.group(1)), int(match.group(2) or 1), 1)
    except ValueError:
        return None


# ------------------------------------------------------------------------------- JSON


def fail(
    display: str,
    message: str,
    hint: str | None = None,
    position: Position | None = None,
    source_line: str | None = None,
) -> PatientError:
    return PatientError(Diagnostic(message, display, position, hint, source_line))


class DuplicateKey(ValueError):
    """A JSON object holds a key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {clean(key)!r} in an object")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook for FHIR JSON, bundles and bulk lines alike.

    JSON allows a key twice and json.loads keeps the last; in a clinical record the two
    values disagree (a second deceasedBoolean), so, as in YAML, it is an error."""
    made = dict(pairs)
    if len(made) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return made


def json_constant(name: str) -> Any:
    """NaN and Infinity are not JSON: a file that holds them is not read."""
    raise ValueError(f"{name} is not a JSON number")


def json_number(digits: str) -> float:
    """A JSON number as a float; one too large for a float (1e400) is an error, not inf."""
    value = float(digits)
    if not math.isfinite(value):
        raise ValueError(f"{digits} is too large a number")
    return value


def read_json(path: Path, display: str) -> Any:
    """Parse a JSON file; any problem is a PatientError naming the file (and line/column)."""
    try:
        raw = read_regular(path, MAX_BYTES)
    except TooLarge:
        raise fail(
            display,
            f"file is over the limit for a FHIR bundle of {MAX_BYTES:,} bytes",
            "export one patient per file",
        ) from None
    except OSError as exc:
        raise fail(display, f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise fail(
            display, "file is not UTF-8 text", "FHIR JSON is UTF-8", Position(line, column)
        ) from None
    if not text.strip():
        raise fail(display, "file is empty: a FHIR bundle is one JSON object", HINT_EXPORT)

    try:
        return json.loads(
            text,
            parse_constant=json_constant,
            parse_float=json_number,
            object_pairs_hook=unique_keys,
        )
    except DuplicateKey as exc:
        raise fail(
            display, f"not valid FHIR JSON: {exc}", "each key may appear once; check the export"
        ) from None
    except json.JSONDecodeError as exc:
        lines = text.splitlines()
        source = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else None
        if source is not None and len(source) > 200:
            source = None  # a minified bundle is one huge line: the position says enough
        raise fail(
            display,
            f"not valid JSON: {exc.msg}",
            "a FHIR bundle is a JSON file (.json); check the export",
            Position(exc.lineno, exc.colno),
            source,
        ) from None
    except ValueError as exc:
        raise fail(display, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise fail(display, "not a FHIR bundle: JSON nested too deeply") from None


# ------------------------------------------------------------------------- references


def type_id(url: str) -> tuple[str, str] | None:
    """The resource type and id a reference or URL ends in (`Patient/ID`,
    `https://ehr.example/fhir/Patient/ID`); None when it ends in no type (`urn:uuid:ID`)."""
    parts = url.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return parts[-2], parts[-1]
    return None


def target_id(reference: Any, kind: str) -> str | None:
    """The id a Reference names for a resource of `kind` (`Kind/ID`, `urn:uuid:ID`, URL),
    without the bundle at hand (the bulk reader groups lines by it)."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    text = reference["reference"].strip().split("/_history/")[0].rstrip("/")
    if text.startswith("urn:uuid:"):
        return text[len("urn:uuid:") :] or None
    found = type_id(text)
    return found[1] if found is not None and found[0] == kind else None


class Index:
    """Resolves references between the bundle's resources, as FHIR says (Bundle: resolving
    references): an absolute URL only to the entry whose fullUrl it is, a relative one
    (`Type/id`) to the entry of that type and id (whose fullUrl, if any, ends so), a
    `urn:uuid:` to its entry. An absolute URL is never matched by its `Type/id` tail: on
    another server, `Patient/pt-1` is another patient."""

    def __init__(self) -> None:
        self.table: dict[str, dict[str, Any]] = {}

    def add(self, resource: dict[str, Any], full_url: Any) -> None:
        kind, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(full_url, str) and full_url:
            self.table.setdefault(full_url, resource)
            tail = type_id(full_url)
            if tail:
                self.table.setdefault("/".join(tail), resource)
        if isinstance(kind, str) and isinstance(rid, str):
            self.table.setdefault(f"{kind}/{rid}", resource)

    def resolve(self, reference: str) -> dict[str, Any] | None:
        return self.table.get(reference.split("/_history/")[0])


def resource_name(resource: dict[str, Any], index: int) -> str:
    """How messages name a resource: Observation/ID, else its type and bundle entry."""
    kind = clean(resource.get("resourceType")) or "resource"
    rid = clean(resource.get("id"))
    return f"{kind}/{rid}" if rid else f"{kind} (entry {index})"


# ---------------------------------------------------------------------------- reading


@dataclass
class Reading:
    """What the readers of one bundle have found so far: the patient-file record being
    built, where each field came from, and the problems; each concern's reader adds to it."""

    display: str
    on: dt.date  # the as-of date: later results are not used
    vocabulary: v.Vocabulary
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    dates: dict[str, dt.date] = field(default_factory=dict)
    later: int = 0  # mapped results dated after the as-of date

    def error(self, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(message, self.display, hint=hint))

    def warn(self, message: str, hint: str | None = None) -> None:
        self.warnings.append(Diagnostic(message, self.display, hint=hint))


# ------------------------------------------------------------------------------ shape


def entries(bundle: Any, display: str) -> list[tuple[int, dict[str, Any], Any]]:
    """The bundle's resources, each with its entry number and fullUrl; a PatientError for
    anything that is not a Bundle of the types read, or a malformed entry."""
    if not isinstance(bundle, dict):
        raise fail(
            display,
            f"not a FHIR resource: the file holds a JSON {type(bundle).__name__}, not an object",
            HINT_EXPORT,
        )
    kind = bundle.get("resourceType")
    if kind is None:
        raise fail(display, "not a FHIR resource: no resourceType", HINT_EXPORT)
    if kind != "Bundle":
        raise fail(display, f"a FHIR {clean(str(kind))} resource, not a Bundle", HINT_EXPORT)
    btype = bundle.get("type")
    if btype not in BUNDLE_TYPES:
        raise fail(
            display,
            f"Bundle type {btype!r} is not read (only {', '.join(BUNDLE_TYPES)})",
            HINT_EXPORT,
        )
    entry = bundle.get("entry", [])
    if not isinstance(entry, list):
        raise fail(display, "Bundle.entry is not a list", HINT_EXPORT)
    found = []
    problems = []
    for i, item in enumerate(entry):
        if not isinstance(item, dict):
            problems.append(f"entry {i} is not a JSON object")
            continue
        resource = item.get("resource")
        if resource is None:
            request = item.get("request")
            if isinstance(request, dict) and request.get("method") == "DELETE":
                continue  # a transaction's delete carries no resource
            problems.append(f"entry {i} has no resource")
            continue
        if not isinstance(resource, dict):
            problems.append(f"entry {i}: resource is not a JSON object")
            continue
        if not isinstance(resource.get("resourceType"), str):
            problems.append(f"entry {i}: resource has no resourceType")
            continue
        found.append((i, resource, item.get("fullUrl")))
    if problems:
        raise PatientError(
            *(
                Diagnostic(f"malformed Bundle: {p}", display, hint=HINT_EXPORT)
                for p in problems[:20]
            )
        )
    return found


def the_patient(entries: list[tuple[int, dict[str, Any], Any]], display: str) -> dict[str, Any]:
    """The bundle's one Patient; a PatientError for none or several."""
    patients = [r for _, r, _ in entries if r["resourceType"] == "Patient"]
    if not patients:
        raise fail(
            display,
            "the bundle has no Patient resource",
            "export the patient's record (Patient/$everything), not only results",
        )
    if len(patients) > 1:
        ids = ", ".join(clean(str(p.get("id"))) for p in patients[:5])
        raise fail(
            display,
            f"the bundle holds {len(patients)} Patient resources "
            f"({ids}); screening reads one patient per file",
            "export each patient to a file of its own",
        )
    return patients[0]


# ---------------------------------------------------------------------------- subjects


def about_patient(
    reading: Reading, resource: dict[str, Any], index: int, idx: Index, patient: dict[str, Any]
) -> bool:
    """Whether the resource is about the bundle's patient, so its data may be used."""
    # Immunization and AllergyIntolerance name their patient `patient`, the rest `subject`
    key = "patient" if resource["resourceType"] in _BY_PATIENT else "subject"
    ref = resource.get(key)
    # Data is this patient's only when a reference says so: with no subject, or only an
    # identifier or a display name, nothing ties the resource to this Patient (an MRN of
    # another patient would pass unseen), and a bundle may carry other patients' resources.
    if ref is None:
        reading.warn(
            f"{resource_name(resource, index)}: no {key}, so nothing says whose it is; not used",
            "export the bundle with references to its Patient",
        )
        return False
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        reading.warn(
            f"{resource_name(resource, index)}: {key} names no resource of the bundle "
            "(only an identifier or a display); not used",
            "export the bundle with references to its Patient",
        )
        return False
    target = idx.resolve(ref["reference"])
    if target is None and "://" in ref["reference"]:
        # An absolute URL that is no entry's fullUrl: a resource of another server (its
        # Patient/pt-1 is not this bundle's), so not this patient's data.
        reading.warn(
            f"{resource_name(resource, index)}: {key} refers to {clean(ref['reference'])}, "
            "which is no entry of the bundle (another server's resource); not used",
            "export the bundle with references to its Patient",
        )
        return False
    if target is None:
        reading.error(
            f"{resource_name(resource, index)}: {key} refers to "
            f"{clean(ref['reference'])}, which is not in the bundle",
            "a broken reference: export the bundle with its Patient",
        )
    elif target is not patient:
        reading.error(
            f"{resource_name(resource, index)}: {key} refers to "
            f"{clean(ref['reference'])}, not to this bundle's "
            f"Patient/{clean(str(patient.get('id')))}"
        )
    return target is patient
