"""FHIR R4 Bundles (EHR exports) read into the same patient facts a YAML file gives.

A Bundle (transaction, collection, searchset, batch or document) is read with plain `json`;
its one Patient and the Observations, Conditions, MedicationRequests/-Statements,
Procedures and Immunizations that refer to it become a record in the patient-file format,
which `patient.from_mapping` then checks exactly as it checks a YAML file. Which code
means which field is data (screener/data/fhir_mapping.yaml, documented in docs/fhir.md).

Rules, in one place:

* **Latest value wins**, among results dated on or before the as-of date (the `as_of`
  argument, else today); a result dated after it is ignored. Two different results at
  the same moment: the one farther from normal is kept, and a warning names both.
* **Nothing is guessed.** An unknown unit, an Observation with no value, a reference to a
  patient the bundle does not hold, a malformed bundle: a `PatientError` naming the file
  (and the resource). Codes the mapping does not know are left out and counted in a
  warning; a list (conditions, medications, …) is given only when the bundle has
  resources of that kind, so an absent list stays unknown.
* **Values are copied exactly**, never rounded: rounding 49.96 % to 50 % would pass an
  LVEF ≥ 50 % criterion the patient fails.
* **A deceased patient is not screened** (`PatientError`: the patient died on …), unless
  the screening date (`as_of`) is before the death: a retrospective screen, with a warning.
* Only the Patient's id, birth date and sex are copied from the Patient: no name.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import unicodedata
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.core._errors import Diagnostic, PatientError, Position
from screener.core._model import Patient
from screener.reading._files import TooLarge, read_regular
from screener.reading._patient import from_mapping

MAPPING_FILE = Path(__file__).resolve().parent.parent / "data" / "fhir_mapping.yaml"
MAX_BYTES = 64 * 1024 * 1024  # EHR exports are larger than patient files; still bounded
BUNDLE_TYPES = ("transaction", "collection", "searchset", "batch", "document")
CLINICAL = (
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "Procedure",
    "Immunization",
)
STALE_DAYS = 90  # a warning says so when every dated value is older than this

_GOOD_OBSERVATION = ("final", "amended", "corrected")
_ACTIVE = {"active", "recurrence", "relapse"}
_INACTIVE = {"inactive", "remission", "resolved"}
_DATETIME = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
HINT_EXPORT = "export the patient as a FHIR R4 Bundle (JSON), e.g. with Patient/$everything"


# ------------------------------------------------------------------------------ mapping


@dataclass(frozen=True)
class Code:
    """A coded concept the mapping knows: system alias, code and display name."""

    system: str  # alias: LOINC, SNOMED, ICD-10, …
    code: str
    display: str
    data: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        return f"{self.system} {self.code}"


@dataclass(frozen=True)
class ObservationRule:
    field: str
    worse: str  # high, low or positive: which of two simultaneous results is kept
    spec: v.Spec
    code: Code


@dataclass(frozen=True)
class Mapping:
    aliases: dict[str, str]  # system URL -> alias
    observations: dict[tuple[str, str], ObservationRule]  # (alias, code)
    tables: dict[str, dict[tuple[str, str], Code]]  # results, ecog_answers, conditions, …
    icd10_prefixes: tuple[tuple[str, Code], ...]  # longest first, dots removed
    ucum_units: dict[str, str]
    non_ucum_units: dict[str, str]
    event_types: frozenset[str]
    medication_words: tuple[tuple[re.Pattern[str], str], ...]
    route_words: tuple[tuple[re.Pattern[str], str], ...]

    def find(self, table: str, concept: Any) -> tuple[Code, dict[str, Any]] | None:
        """The first coding of a CodeableConcept that `table` knows, and that coding."""
        for coding in codings(concept):
            alias = self.aliases.get(str(coding.get("system", "")).rstrip("/"))
            code = coding.get("code")
            if alias is None or not isinstance(code, str):
                continue
            found = self.tables[table].get((alias, code.strip()))
            if found is None and table == "conditions" and alias == "ICD-10":
                key = code.strip().upper().replace(".", "")
                found = next((c for p, c in self.icd10_prefixes if key.startswith(p)), None)
            if found is not None:
                return found, coding
        return None


def _merged(table: dict[str, list[str]], more: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """The medication words of fhir_mapping.yaml and those a vocabulary file adds (drugs)."""
    merged = {name: list(words) for name, words in table.items()}
    for name, words in more.items():
        merged.setdefault(name, []).extend(words)
    return merged


def _words(table: dict[str, list[str]]) -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple(
        (re.compile(rf"\b{re.escape(word)}", re.IGNORECASE), value)
        for value, words in table.items()
        for word in words
    )


def code_systems() -> frozenset[str]:
    """The code systems the mapping knows, by alias (LOINC, SNOMED, …)."""
    raw = yaml.safe_load(MAPPING_FILE.read_text(encoding="utf-8"))
    return frozenset(raw["systems"])


@lru_cache(maxsize=8)
def mapping(vocabulary: v.Vocabulary | None = None) -> Mapping:
    """The mapping table, read and checked once per vocabulary; a bad table fails loudly at
    first use.

    Which code fills which field is declared with the field (vocabulary.yaml `codes`, and a
    rules directory's vocabulary file); the tables of coded answers, conditions, units, … are
    here in fhir_mapping.yaml."""
    vocabulary = v.chosen(vocabulary)
    raw = yaml.safe_load(MAPPING_FILE.read_text(encoding="utf-8"))
    aliases = {url.rstrip("/"): alias for alias, urls in raw["systems"].items() for url in urls}

    def coded(
        section: dict[str, dict[str, Any]], keys: AbstractSet[str] = frozenset()
    ) -> dict[tuple[str, str], Code]:
        table: dict[tuple[str, str], Code] = {}
        for alias, codes in section.items():
            if alias not in raw["systems"]:
                raise ValueError(f"{MAPPING_FILE.name}: unknown code system {alias!r}")
            for code, value in codes.items():
                if not isinstance(code, str):
                    raise ValueError(f"{MAPPING_FILE.name}: {alias} code {code!r} must be quoted")
                data = dict(value) if isinstance(value, dict) else {"display": value}
                # a display with a comma, unquoted in a flow mapping, makes stray keys
                stray = set(data) - keys - {"display"}
                if stray or not isinstance(data.get("display"), str):
                    raise ValueError(
                        f"{MAPPING_FILE.name}: {alias} {code}: unexpected "
                        f"{sorted(stray) or 'display'} (quote the display)"
                    )
                table[(alias, code)] = Code(alias, code, str(data.pop("display", "")), data)
        return table

    observations: dict[tuple[str, str], ObservationRule] = {}
    for observed in vocabulary.observations:
        spec = vocabulary.resolve(observed.path)
        assert spec is not None  # declared with the field itself
        for alias, code, display in observed.codes:
            if alias not in raw["systems"]:
                raise ValueError(f"{observed.path}: unknown code system {alias!r}")
            if (alias, code) in observations:
                raise ValueError(
                    f"{alias} {code} is mapped to both {observations[(alias, code)].field} "
                    f"and {observed.path}"
                )
            observations[(alias, code)] = ObservationRule(
                observed.path, observed.worse, spec, Code(alias, code, display)
            )
    keys = {
        "results": {"result"},
        "ecog_answers": {"grade"},
        "conditions": {"type", "kind", "category"},
        "severity": {"grade"},
        "procedures": {"type"},
        "surgical_categories": set(),
        "vaccines": {"live"},
        "medication_codes": {"class"},
        "route_codes": {"route"},
    }
    tables = {name: coded(raw[name], allowed) for name, allowed in keys.items()}
    conditions = vocabulary.resolve("conditions")
    assert isinstance(conditions, v.ListOf) and isinstance(conditions.item, v.Record)
    condition_types = conditions.item.fields["type"].values  # type: ignore[attr-defined]
    for mapped in tables["conditions"].values():
        kind = mapped.data.get("type")
        if kind is not None and kind not in condition_types:
            raise ValueError(
                f"{MAPPING_FILE.name}: {mapped.label()}: unknown condition type {kind!r}"
            )
    prefixes = sorted(
        (
            (c.code.upper().replace(".", ""), c)
            for (a, _), c in tables["conditions"].items()
            if a == "ICD-10"
        ),
        key=lambda pair: -len(pair[0]),
    )
    return Mapping(
        aliases,
        observations,
        tables,
        tuple(prefixes),
        {str(k): str(v_) for k, v_ in raw["ucum_units"].items()},
        {str(k): str(v_) for k, v_ in raw["non_ucum_units"].items()},
        frozenset(raw["condition_event_types"]),
        _words(_merged(raw["medication_words"], vocabulary.medication_words)),
        _words(raw["route_words"]),
    )


# ------------------------------------------------------------------------------ helpers


def _list(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (a damaged export) as no items."""
    return value if isinstance(value, list) else []


def codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in _list(concept.get("coding")) if isinstance(c, dict)]


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


def _period_start(text: Any) -> dt.date | None:
    """The first day of a partial FHIR date (2016, 2016-04): a death recorded so happened on
    or after it. None for anything else."""
    match = _DATETIME.match(text.strip()) if isinstance(text, str) else None
    if not match or match.group(3) is not None:
        return None
    try:
        return dt.date(int(match.group(1)), int(match.group(2) or 1), 1)
    except ValueError:
        return None


def _number(value: Any) -> str:
    """A JSON number as text, exactly (Python's shortest round-trip form)."""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------------------ reading


@dataclass
class Extract:
    """What a bundle says about its patient, before the patient-file checks."""

    record: dict[str, Any]
    sources: dict[str, str]
    warnings: list[Diagnostic]
    errors: list[Diagnostic]
    deceased: Diagnostic | None
    as_of: dt.date
    file: str
    # dotted field path -> date of the result it came from (for the importer's notes)
    dates: dict[str, dt.date] = field(default_factory=dict)
    vocabulary: v.Vocabulary | None = None  # read with (None: the built-in one)


def _fail(
    display: str,
    message: str,
    hint: str | None = None,
    position: Position | None = None,
    source_line: str | None = None,
) -> PatientError:
    return PatientError(Diagnostic(message, display, position, hint, source_line))


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def read_json(path: Path, display: str) -> Any:
    """Parse a JSON file; any problem is a PatientError naming the file (and line/column)."""
    try:
        raw = read_regular(path, MAX_BYTES)
    except TooLarge:
        raise _fail(
            display,
            f"file is over the limit for a FHIR bundle of {MAX_BYTES:,} bytes",
            "export one patient per file",
        ) from None
    except OSError as exc:
        raise _fail(display, f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(
            display, "file is not UTF-8 text", "FHIR JSON is UTF-8", Position(line, column)
        ) from None
    if not text.strip():
        raise _fail(display, "file is empty: a FHIR bundle is one JSON object", HINT_EXPORT)

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def number(digits: str) -> float:
        value = float(digits)
        if not math.isfinite(value):
            raise ValueError(f"{digits} is too large a number")
        return value

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # JSON allows a key twice and json.loads keeps the last; in a clinical record the
        # two values disagree (a second deceasedBoolean), so, as in YAML, it is an error.
        made = dict(pairs)
        if len(made) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise _Duplicate(key)
                seen.add(key)
        return made

    try:
        return json.loads(
            text, parse_constant=constant, parse_float=number, object_pairs_hook=unique
        )
    except _Duplicate as exc:
        raise _fail(
            display,
            f"not valid FHIR JSON: duplicate key {clean(exc.key)!r} in an object",
            "each key may appear once; check the export",
        ) from None
    except json.JSONDecodeError as exc:
        lines = text.splitlines()
        source = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else None
        if source is not None and len(source) > 200:
            source = None  # a minified bundle is one huge line: the position says enough
        raise _fail(
            display,
            f"not valid JSON: {exc.msg}",
            "a FHIR bundle is a JSON file (.json); check the export",
            Position(exc.lineno, exc.colno),
            source,
        ) from None
    except ValueError as exc:
        raise _fail(display, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise _fail(display, "not a FHIR bundle: JSON nested too deeply") from None


class _Index:
    """Resolves references between the bundle's resources (fullUrl, Type/id, URLs)."""

    def __init__(self) -> None:
        self.table: dict[str, dict[str, Any]] = {}

    def add(self, resource: dict[str, Any], full_url: Any) -> None:
        kind, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(full_url, str) and full_url:
            self.table.setdefault(full_url, resource)
            tail = _type_id(full_url)
            if tail:
                self.table.setdefault(tail, resource)
        if isinstance(kind, str) and isinstance(rid, str):
            self.table.setdefault(f"{kind}/{rid}", resource)

    def resolve(self, reference: str) -> dict[str, Any] | None:
        reference = reference.split("/_history/")[0]
        found = self.table.get(reference)
        if found is None and "://" in reference:
            tail = _type_id(reference)
            found = self.table.get(tail) if tail else None
        return found


def _type_id(url: str) -> str | None:
    parts = url.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return f"{parts[-2]}/{parts[-1]}"
    return None


def _name(resource: dict[str, Any], index: int) -> str:
    kind = clean(resource.get("resourceType")) or "resource"
    rid = clean(resource.get("id"))
    return f"{kind}/{rid}" if rid else f"{kind} (entry {index})"


@dataclass
class _Candidate:
    """One result for one field."""

    when: When
    order: int  # bundle order, for a stable choice
    rule: ObservationRule
    name: str  # Observation/… (with "component" when it came from one)
    value: Any  # as the record will hold it (text, number, word)
    rank: float  # for `worse`: larger = farther from normal
    uln: Any = None
    problem: str | None = None  # a result that is there but cannot be used (e.g. "<0.2")
    notes: list[tuple[str, str | None]] = field(default_factory=list)  # warned if chosen


class _Reader:
    def __init__(self, display: str, on: dt.date, vocabulary: v.Vocabulary) -> None:
        self.display = display
        self.on = on
        self.vocabulary = vocabulary
        self.map = mapping(None if vocabulary is v.BUILTIN else vocabulary)
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.record: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.dates: dict[str, dt.date] = {}
        self.later = 0  # mapped results dated after the as-of date
        self.notes: list[tuple[str, str | None]] = []  # about the candidate being read

    def error(self, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(message, self.display, hint=hint))

    def warn(self, message: str, hint: str | None = None) -> None:
        self.warnings.append(Diagnostic(message, self.display, hint=hint))

    # -------------------------------------------------------------------- bundle shape

    def entries(self, bundle: Any) -> list[tuple[int, dict[str, Any], Any]]:
        display = self.display
        if not isinstance(bundle, dict):
            raise _fail(
                display,
                "not a FHIR resource: the file holds a JSON "
                f"{type(bundle).__name__}, not an object",
                HINT_EXPORT,
            )
        kind = bundle.get("resourceType")
        if kind is None:
            raise _fail(display, "not a FHIR resource: no resourceType", HINT_EXPORT)
        if kind != "Bundle":
            raise _fail(display, f"a FHIR {clean(str(kind))} resource, not a Bundle", HINT_EXPORT)
        btype = bundle.get("type")
        if btype not in BUNDLE_TYPES:
            raise _fail(
                display,
                f"Bundle type {btype!r} is not read (only {', '.join(BUNDLE_TYPES)})",
                HINT_EXPORT,
            )
        entry = bundle.get("entry", [])
        if not isinstance(entry, list):
            raise _fail(display, "Bundle.entry is not a list", HINT_EXPORT)
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

    def patient(self, entries: list[tuple[int, dict[str, Any], Any]]) -> dict[str, Any]:
        patients = [r for _, r, _ in entries if r["resourceType"] == "Patient"]
        if not patients:
            raise _fail(
                self.display,
                "the bundle has no Patient resource",
                "export the patient's record (Patient/$everything), not only results",
            )
        if len(patients) > 1:
            ids = ", ".join(clean(str(p.get("id"))) for p in patients[:5])
            raise _fail(
                self.display,
                f"the bundle holds {len(patients)} Patient resources "
                f"({ids}); screening reads one patient per file",
                "export each patient to a file of its own",
            )
        return patients[0]

    # ------------------------------------------------------------------------- patient

    def demographics(self, patient: dict[str, Any], full_url: Any) -> Diagnostic | None:
        pid = patient.get("id")
        if not isinstance(pid, str) or not pid.strip():
            tail = str(full_url).rsplit(":", 1)[-1].rsplit("/", 1)[-1] if full_url else ""
            if not tail:
                raise _fail(self.display, "the Patient resource has no id", HINT_EXPORT)
            pid = tail
        pid = clean(pid)
        where = f"Patient/{pid}"
        self.record["id"] = pid
        self.sources["id"] = where
        birth = patient.get("birthDate")
        if birth is not None:
            when = When.parse(birth)
            if when is None or "T" in str(birth):
                self.warn(
                    f"{where}: birth date {birth!r} is not a full date; not used",
                    "add birth_date by hand",
                )
            else:
                self.record["birth_date"] = when.date
                self.sources["birth_date"] = where
        gender = patient.get("gender")
        if gender in ("female", "male"):
            self.record["sex"] = gender
            self.sources["sex"] = where
        elif gender is not None:
            self.warn(
                f"{where}: gender {gender!r} is not female or male; sex not set",
                "add sex by hand where a criterion needs it",
            )
        if patient.get("deceasedBoolean") is True:
            return Diagnostic(
                f"patient {pid} is deceased ({where} deceasedBoolean is true): not screened",
                self.display,
                hint="the EHR export records a death; check the file is the right patient",
            )
        died = patient.get("deceasedDateTime")
        if died is not None:
            when = When.parse(died)
            day = when.date.isoformat() if when else clean(str(died))
            first = when.date if when else _period_start(died)
            if first is not None and self.on < first:
                # A retrospective screen (as of a date when the patient was alive) is
                # legitimate: screen it, and say the patient has since died.
                self.warn(
                    f"patient {pid} died {day} ({where}), after the screening date "
                    f"{self.on}: screened as of {self.on}",
                    "a retrospective screen: only results up to that date are used",
                )
                return None
            return Diagnostic(
                f"patient {pid} is deceased (died {day}, {where}): not screened",
                self.display,
                hint="the EHR export records a death; check the file is the "
                "right patient, or screen as of a date before the death "
                "(--as-of)",
            )
        return None

    def subject_check(
        self, resource: dict[str, Any], index: int, idx: _Index, patient: dict[str, Any]
    ) -> bool:
        """Whether the resource is about the bundle's patient, so its data may be used."""
        key = "patient" if resource["resourceType"] == "Immunization" else "subject"
        ref = resource.get(key)
        if ref is None:
            return True  # no subject at all: in a one-patient bundle it is about that patient
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            # Only an identifier (or a display name): nothing ties it to this Patient, and
            # an MRN of another patient would pass unseen. Not this patient's data.
            self.warn(
                f"{_name(resource, index)}: {key} names no resource of the bundle "
                "(only an identifier or a display); not used",
                "export the bundle with references to its Patient",
            )
            return False
        target = idx.resolve(ref["reference"])
        if target is None:
            self.error(
                f"{_name(resource, index)}: {key} refers to "
                f"{clean(ref['reference'])}, which is not in the bundle",
                "a broken reference: export the bundle with its Patient",
            )
        elif target is not patient:
            self.error(
                f"{_name(resource, index)}: {key} refers to "
                f"{clean(ref['reference'])}, not to this bundle's "
                f"Patient/{clean(str(patient.get('id')))}"
            )
        return target is patient

    # -------------------------------------------------------------------- observations

    def observations(self, found: list[tuple[int, dict[str, Any]]]) -> None:
        by_field: dict[str, list[_Candidate]] = {}
        skipped = 0
        for index, obs in found:
            status = obs.get("status")
            parts: list[tuple[str, dict[str, Any]]] = [("", obs)]
            parts += [(" component", c) for c in _list(obs.get("component")) if isinstance(c, dict)]
            for suffix, part in parts:
                rule = self._rule(part.get("code"))
                if rule is None:
                    continue
                name = _name(obs, index) + suffix
                if status is not None and status not in _GOOD_OBSERVATION:
                    skipped += 1
                    continue
                when = self._when(obs)
                if when is None:
                    self.warn(
                        f"{name} ({rule.code.label()}): no full effective date; not used",
                        "a result is used only when its date is known",
                    )
                    continue
                if when.date > self.on:
                    self.later += 1
                    continue
                self.notes = []
                candidate = self._candidate(part, rule, name, when, index)
                if candidate is not None:
                    candidate.notes = self.notes
                    by_field.setdefault(rule.field, []).append(candidate)
        if skipped:
            self.warn(
                f"{skipped} mapped result(s) not final (status registered, preliminary, "
                "cancelled or entered-in-error) were not used"
            )
        for name, candidates in by_field.items():
            self._choose(name, candidates)

    def _rule(self, concept: Any) -> ObservationRule | None:
        for coding in codings(concept):
            alias = self.map.aliases.get(str(coding.get("system", "")).rstrip("/"))
            code = coding.get("code")
            if alias and isinstance(code, str):
                rule = self.map.observations.get((alias, code.strip()))
                if rule is not None:
                    return rule
        return None

    def _when(self, obs: dict[str, Any]) -> When | None:
        for key in ("effectiveDateTime", "effectiveInstant"):
            if key in obs:
                return When.parse(obs[key])
        period = obs.get("effectivePeriod")
        if isinstance(period, dict):
            return When.parse(period.get("end")) or When.parse(period.get("start"))
        return None

    def _candidate(
        self, part: dict[str, Any], rule: ObservationRule, name: str, when: When, order: int
    ) -> _Candidate | None:
        label = f"{name} ({rule.code.label()})"
        spec = rule.spec
        inner = spec.value if isinstance(spec, v.Lab) else spec
        values = [k for k in part if k.startswith("value")]
        if isinstance(spec, v.Record):  # pregnancy_test: {result, date}
            inner = spec.fields["result"]
        if isinstance(inner, v.Choice):
            word = self._result(part, label)
            if word is None:
                return None
            return _Candidate(when, order, rule, name, word, 1.0 if word == "positive" else 0.0)
        if isinstance(inner, v.Integer):
            grade = (
                self._grade(part, label)
                if rule.field == "ecog"  # ECOG has its own answer list (LL529-9)
                else self._score(part, label, inner)
            )
            if grade is None:
                return None
            return _Candidate(when, order, rule, name, grade, float(grade))
        # a quantity (Quantity) or a unitless number (the INR)
        quantity = part.get("valueQuantity")
        if (
            quantity is None
            and isinstance(part.get("valueInteger"), int)
            and isinstance(inner, v.Number)
        ):
            quantity = {"value": part["valueInteger"]}
        if quantity is None:
            if "dataAbsentReason" in part:
                self.warn(f"{label}: no value ({_absent(part)}); not used")
                return None
            got = f"only {', '.join(values)}" if values else "no value"
            self.error(
                f"{label}: {got}; a number with a unit (valueQuantity) is needed",
                "a result without a value cannot be screened",
            )
            return None
        if not isinstance(quantity, dict) or not _is_number(quantity.get("value")):
            self.error(f"{label}: valueQuantity has no numeric value")
            return None
        text = self._quantity(quantity, inner, label)
        if text is None:
            return None
        rank = self._rank(text, inner, rule.worse)
        candidate = _Candidate(when, order, rule, name, text, rank)
        comparator = quantity.get("comparator")
        if comparator:
            candidate.problem = f"{comparator}{text} is a bound, not a value"
        if isinstance(spec, v.Lab):
            candidate.uln = self._uln(part, quantity, inner, label)
        return candidate

    def _unit(self, quantity: dict[str, Any], label: str) -> str | None:
        """The screener's spelling of a valueQuantity's unit ("" for none); None if unknown."""
        written = [
            w
            for w in (quantity.get("code"), quantity.get("unit"))
            if isinstance(w, str) and w.strip()
        ]
        if not written:
            return ""
        for text in written:  # the UCUM code first, then the human-readable unit
            if text.strip() in self.map.ucum_units:
                return self.map.ucum_units[text.strip()]
        for text in written:
            if text.strip() in self.map.non_ucum_units:
                spelling = self.map.non_ucum_units[text.strip()]
                ucum = " or ".join(k for k, s in self.map.ucum_units.items() if s == spelling)
                self.notes.append(
                    (
                        f"{label}: unit {text!r} is not a UCUM code; read as "
                        f"{spelling or 'no unit'}",
                        f"UCUM writes {ucum}" if ucum else None,
                    )
                )
                return spelling
        accepted = ", ".join(k for k in self.map.ucum_units if k)
        self.error(f"{label}: unknown unit {written[0]!r}", f"accepted UCUM units: {accepted}")
        return None

    def _quantity(self, quantity: dict[str, Any], spec: v.Spec, label: str) -> Any:
        unit = self._unit(quantity, label)
        if unit is None:
            return None
        number = quantity["value"]
        if isinstance(spec, v.Number):
            if unit:
                self.error(f"{label}: unit {unit!r} on a unitless result", "an INR has no unit")
                return None
            return number
        assert isinstance(spec, v.Quantity)
        if not unit:
            self.error(
                f"{label}: the value has no unit",
                f"expected {spec.kind.name} such as {spec.kind.example!r}",
            )
            return None
        text = f"{_number(number)} {unit}"
        try:
            units.parse_measure(text, spec.kind, spec.analyte)
        except units.UnitError as exc:
            self.error(f"{label}: {exc}", exc.hint)
            return None
        return text

    def _rank(self, value: Any, spec: v.Spec, worse: str) -> float:
        if isinstance(value, str):
            assert isinstance(spec, v.Quantity)
            measure = units.parse_measure(value, spec.kind, spec.analyte)
            amount = units.convert(measure, spec.kind.references[0], spec.analyte)
        else:
            amount = float(value)
        return -amount if worse == "low" else amount

    def _uln(self, part: dict[str, Any], quantity: dict[str, Any], spec: v.Spec, label: str) -> Any:
        ranges = part.get("referenceRange")
        if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], dict):
            return None
        high = ranges[0].get("high")
        if not isinstance(high, dict) or not _is_number(high.get("value")):
            return None
        if not any(k in high for k in ("code", "unit")):
            # a limit written without a unit is in the result's unit
            high = {**high, **{k: quantity[k] for k in ("code", "unit", "system") if k in quantity}}
        if high["value"] <= 0:
            self.notes.append(
                (
                    f"{label}: referenceRange high {high['value']} is not above zero; no ULN taken",
                    None,
                )
            )
            return None
        errors = len(self.errors)
        text = self._quantity(high, spec, label + " referenceRange.high")
        if text is None:
            # a bad limit loses the limit, not the result: a default ULN applies, and says so
            bad = self.errors[errors:]
            del self.errors[errors:]
            self.notes.extend((d.message + "; no ULN taken", d.hint) for d in bad)
        return text

    def _result(self, part: dict[str, Any], label: str) -> str | None:
        concept = part.get("valueCodeableConcept")
        lookup = v.result("result").lookup()
        if concept is not None:
            found = self.map.find("results", concept)
            if found:
                return str(found[0].data["result"])
            word = lookup.get(v.fold(concept_name(concept)))
            if word:
                return word
            self.warn(
                f"{label}: result {concept_name(concept)!r} is neither positive nor "
                "negative; not used",
                "enter the result by hand",
            )
            return None
        if isinstance(part.get("valueString"), str):
            word = lookup.get(v.fold(clean(part["valueString"])))
            if word:
                return word
            self.warn(
                f"{label}: result {part['valueString']!r} is neither positive nor "
                "negative; not used",
                "enter the result by hand",
            )
            return None
        for concept in _list(part.get("interpretation")):
            found = self.map.find("results", concept)
            if found:
                return str(found[0].data["result"])
        if "dataAbsentReason" in part:
            self.warn(f"{label}: no result ({_absent(part)}); not used")
            return None
        values = [k for k in part if k.startswith("value")]
        got = f"only {', '.join(values)}" if values else "no value"
        self.error(
            f"{label}: {got}; a positive/negative result (valueCodeableConcept or "
            "valueString) is needed",
            "a result without a value cannot be screened",
        )
        return None

    def _grade(self, part: dict[str, Any], label: str) -> int | None:
        grade: Any = None
        if "valueInteger" in part:
            grade = part["valueInteger"]
        elif isinstance(part.get("valueQuantity"), dict):
            grade = part["valueQuantity"].get("value")
        elif "valueCodeableConcept" in part:
            found = self.map.find("ecog_answers", part["valueCodeableConcept"])
            if found:
                grade = found[0].data["grade"]
            else:
                name = concept_name(part["valueCodeableConcept"])
                grade = int(name) if name.isdigit() else None
                if grade is None:
                    self.warn(f"{label}: answer {name!r} is not an ECOG grade; not used")
                    return None
        else:
            for concept in _list(part.get("interpretation")):
                found = self.map.find("ecog_answers", concept)
                if found:
                    grade = found[0].data["grade"]
                    break
        if grade is None:
            if "dataAbsentReason" in part:
                return None
            self.error(
                f"{label}: no value; an ECOG grade (valueInteger 0–5) is needed",
                "a result without a value cannot be screened",
            )
            return None
        if not _is_number(grade) or float(grade) != int(grade) or not 0 <= grade <= 5:
            self.error(f"{label}: {grade!r} is not an ECOG grade (0–5)")
            return None
        if grade == 5:
            self.warn(
                f"{label}: ECOG 5 (dead) recorded; not used",
                "check the record: a living patient has ECOG 0–4",
            )
            return None
        return int(grade)

    def _score(self, part: dict[str, Any], label: str, spec: v.Integer) -> int | None:
        """A whole-number score other than ECOG (Karnofsky, Lansky): valueInteger, or a
        valueQuantity's number, within the field's scale."""
        score: Any = part.get("valueInteger")
        if score is None and isinstance(part.get("valueQuantity"), dict):
            score = part["valueQuantity"].get("value")
        if score is None:
            if "dataAbsentReason" in part:
                self.warn(f"{label}: no value ({_absent(part)}); not used")
                return None
            self.error(
                f"{label}: no value; a {spec.label} (valueInteger {spec.low}–{spec.high}) "
                "is needed",
                "a result without a value cannot be screened",
            )
            return None
        if (
            not _is_number(score)
            or float(score) != int(score)
            or not spec.low <= score <= spec.high
            or (int(score) - spec.low) % spec.step
        ):
            self.error(f"{label}: {score!r} is not a {spec.label} ({spec.low}–{spec.high})")
            return None
        return int(score)

    def _choose(self, name: str, candidates: list[_Candidate]) -> None:
        latest = max(c.when for c in candidates)
        tied = [c for c in candidates if c.when == latest]
        chosen = max(tied, key=lambda c: (c.rank, c.order))
        if len({str(c.value) for c in tied}) > 1:
            listed = "; ".join(f"{c.value} ({c.name})" for c in tied)
            side = {"high": "higher", "low": "lower", "positive": "positive"}[chosen.rule.worse]
            self.warn(
                f"{name}: {len(tied)} different results at the same time "
                f"({latest.date}): {listed}; the {side} one, {chosen.value}, is used",
                "check which result is right and correct the file if need be",
            )
        for message, hint in chosen.notes:
            self.warn(message, hint)
        where = f"{chosen.name} ({chosen.rule.code.label()}), {chosen.when.date}"
        if chosen.problem:
            self.warn(
                f"{name}: the latest result, {where}, {chosen.problem}; not used",
                "enter the value by hand",
            )
            return
        spec = chosen.rule.spec
        if isinstance(spec, v.Lab):
            value: Any = {"value": chosen.value, "date": chosen.when.date}
            if chosen.uln is not None:
                value["uln"] = chosen.uln
                where += ", ULN from referenceRange"
        elif isinstance(spec, v.Record):
            value = {"result": chosen.value, "date": chosen.when.date}
        else:
            value = chosen.value
        *heads, last = name.split(".")
        into = self.record
        for head in heads:
            into = into.setdefault(head, {})
        into[last] = value
        if heads and not isinstance(spec, (v.Lab, v.Record)):
            # A part of a dated record (a blood pressure's systolic value): the record's
            # date is the result's, as a lab's is.
            holder = self.vocabulary.resolve(".".join(heads))
            if isinstance(holder, v.Record) and isinstance(holder.fields.get("date"), v.Date):
                into["date"] = max(into.get("date", chosen.when.date), chosen.when.date)
        self.sources[name] = where
        self.dates[name] = chosen.when.date

    # ------------------------------------------------------------------ lists of things

    def conditions(self, found: list[tuple[int, dict[str, Any]]]) -> None:
        items: list[dict[str, Any]] = []
        unmapped: list[str] = []
        studied: list[str] = []
        for index, res in found:
            status = _code_of(res.get("verificationStatus"))
            if status in ("refuted", "entered-in-error"):
                continue
            onset = _first_when(res, "onsetDateTime", "onsetPeriod")
            noted = onset or When.parse(res.get("recordedDate"))
            if noted is not None and noted.date > self.on:
                continue
            match = self.map.find("conditions", res.get("code"))
            name = concept_name(res.get("code"), match[1] if match else None)
            if match is None:
                unmapped.append(name or _name(res, index))
                continue
            code, _ = match
            if code.data.get("type") is None:
                studied.append(name)
                continue
            item: dict[str, Any] = {"type": code.data["type"]}
            if name:
                item["name"] = name
            item.update({k: val for k, val in code.data.items() if k != "type"})
            clinical = _code_of(res.get("clinicalStatus"))
            abated = _first_when(res, "abatementDateTime", "abatementPeriod", end=True)
            if abated is not None and abated.date > self.on:
                clinical, abated = "active", None  # still present on the as-of date
            if clinical in _ACTIVE:
                item["active"] = True
            elif clinical in _INACTIVE or (clinical is None and abated is not None):
                item["active"] = False
            if code.data["type"] in self.map.event_types:
                if onset is not None:
                    item["date"] = onset.date
            elif abated is not None and item.get("active") is False:
                item["date"] = abated.date
            if item["type"] == "malignancy" and clinical in _ACTIVE | {"remission"}:
                item.setdefault("status", "active" if clinical in _ACTIVE else "remission")
            severity = self.map.find("severity", res.get("severity"))
            if severity is not None:
                grade = severity[0].data["grade"]
                item["severe"] = grade == "severe"
                if item["type"] == "gvhd":
                    item["grade"] = grade
            day = onset.date.isoformat() if onset else "no onset date"
            self.sources[f"conditions[{len(items)}]"] = (
                f"{_name(res, index)} ({code.label()}), {day}"
            )
            items.append(item)
        self.record["conditions"] = items
        if unmapped:
            shown = "; ".join(sorted(set(unmapped))[:12])
            more = "" if len(set(unmapped)) <= 12 else f"; and {len(set(unmapped)) - 12} more"
            self.warn(
                f"{len(unmapped)} Condition(s) with codes the mapping does not know were "
                f"left out of conditions: {shown}{more}",
                "add any that matter to the trials by hand (docs/fhir.md lists the mapped codes)",
            )
        if studied:
            self.warn(
                f"{'; '.join(sorted(set(studied)))}: the leukaemia under study is not a "
                "condition entry",
                "record it under diagnosis",
            )

    def medications(self, found: list[tuple[int, dict[str, Any]]], idx: _Index) -> None:
        items: list[dict[str, Any]] = []
        for index, res in found:
            status = res.get("status")
            if status in ("entered-in-error", "cancelled", "draft", "not-taken", "intended"):
                continue
            concept = res.get("medicationCodeableConcept")
            where = _name(res, index)
            ref = res.get("medicationReference")
            if concept is None and isinstance(ref, dict):
                target = (
                    idx.resolve(ref["reference"]) if isinstance(ref.get("reference"), str) else None
                )
                if target is not None:
                    concept = target.get("code")
                elif clean(ref.get("display")):
                    concept = {"text": ref["display"]}
                else:
                    self.error(
                        f"{where}: medicationReference {ref.get('reference')!r} is not "
                        "in the bundle (broken reference)",
                        HINT_EXPORT,
                    )
                    continue
            name = concept_name(concept)
            if not name:
                self.warn(f"{where}: medication has no name or code; left out")
                continue
            if res["resourceType"] == "MedicationRequest":
                start = When.parse(res.get("authoredOn"))
                bounds = _bounds(res)
                stop = When.parse(bounds.get("end")) if bounds else None
                start = When.parse(bounds.get("start")) if bounds and bounds.get("start") else start
            else:
                start = _first_when(res, "effectiveDateTime", "effectivePeriod")
                period = res.get("effectivePeriod")
                stop = When.parse(period.get("end")) if isinstance(period, dict) else None
            if start is not None and start.date > self.on:
                continue
            item: dict[str, Any] = {"name": name, "class": self._medication_class(concept, name)}
            route = self._route(res, name)
            if route:
                item["route"] = route
            if start is not None:
                item["start_date"] = start.date
            if stop is not None and stop.date <= self.on:
                item["stop_date"] = stop.date
            if status == "active" and "stop_date" not in item:
                item["ongoing"] = True
            elif status in ("completed", "stopped") or "stop_date" in item:
                item["ongoing"] = False
            code = self._code_note(concept, "RxNorm")
            day = start.date.isoformat() if start else "no date"
            self.sources[f"medications[{len(items)}]"] = f"{where}{code}, {day}"
            items.append(item)
        self.record["medications"] = items

    def _code_note(self, concept: Any, system: str) -> str:
        """ " (RxNorm 5640)" for the first coding of `system` in a concept, else ""."""
        return next(
            (
                f" ({system} {c.get('code')})"
                for c in codings(concept)
                if self.map.aliases.get(str(c.get("system", "")).rstrip("/")) == system
            ),
            "",
        )

    def _medication_class(self, concept: Any, name: str) -> str:
        found = self.map.find("medication_codes", concept)
        if found:
            return str(found[0].data["class"])
        for pattern, value in self.map.medication_words:
            if pattern.search(name):
                return value
        return "other"

    def _route(self, res: dict[str, Any], name: str) -> str | None:
        for dosage in _list(res.get("dosageInstruction")) + _list(res.get("dosage")):
            if isinstance(dosage, dict):
                found = self.map.find("route_codes", dosage.get("route"))
                if found:
                    return str(found[0].data["route"])
        for pattern, value in self.map.route_words:
            if pattern.search(name):
                return value
        return None

    def procedures(self, found: list[tuple[int, dict[str, Any]]]) -> None:
        items: list[dict[str, Any]] = []
        unmapped: list[str] = []
        for index, res in found:
            if res.get("status") in ("not-done", "entered-in-error", "preparation"):
                continue
            when = _first_when(res, "performedDateTime", "performedPeriod")
            if when is not None and when.date > self.on:
                continue
            match = self.map.find("procedures", res.get("code"))
            name = concept_name(res.get("code"), match[1] if match else None)
            surgical = any(
                self.map.find("surgical_categories", c)
                for c in [res.get("category")] + _list(res.get("category"))
                if isinstance(c, dict)
            )
            if match is None and not surgical:
                unmapped.append(name or _name(res, index))
                continue
            kind = str(match[0].data["type"]) if match else "surgery"
            if kind == "other" and surgical:
                kind = "surgery"
            item: dict[str, Any] = {"type": kind}
            if name:
                item["name"] = name
            if when is not None:
                item["date"] = when.date
            label = f" ({match[0].label()})" if match else " (category: surgical procedure)"
            day = when.date.isoformat() if when else "no date"
            self.sources[f"procedures[{len(items)}]"] = f"{_name(res, index)}{label}, {day}"
            items.append(item)
        self.record["procedures"] = items
        if unmapped:
            shown = "; ".join(sorted(set(unmapped))[:12])
            self.warn(
                f"{len(unmapped)} Procedure(s) with codes the mapping does not know were "
                f"left out of procedures: {shown}",
                "add surgery, catheterization, stents or bypass surgery by hand",
            )

    def vaccinations(self, found: list[tuple[int, dict[str, Any]]]) -> None:
        items: list[dict[str, Any]] = []
        for index, res in found:
            if res.get("status") in ("not-done", "entered-in-error"):
                continue
            when = _first_when(res, "occurrenceDateTime")
            if when is not None and when.date > self.on:
                continue
            match = self.map.find("vaccines", res.get("vaccineCode"))
            name = concept_name(res.get("vaccineCode"), match[1] if match else None)
            item: dict[str, Any] = {}
            if name:
                item["name"] = name
            if when is not None:
                item["date"] = when.date
            if match is not None:
                item["live"] = bool(match[0].data["live"])
            code = self._code_note(res.get("vaccineCode"), "CVX")
            day = when.date.isoformat() if when else "no date"
            self.sources[f"vaccinations[{len(items)}]"] = f"{_name(res, index)}{code}, {day}"
            items.append(item)
        self.record["vaccinations"] = items


def _absent(part: dict[str, Any]) -> str:
    return concept_name(part.get("dataAbsentReason")) or "data absent"


def _code_of(concept: Any) -> str | None:
    for coding in codings(concept):
        if isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def _first_when(res: dict[str, Any], *keys: str, end: bool = False) -> When | None:
    for key in keys:
        value = res.get(key)
        if isinstance(value, dict):  # a Period
            ends = (value.get("end"), value.get("start"))
            found = When.parse(ends[not end]) or When.parse(ends[end])
        else:
            found = When.parse(value)
        if found is not None:
            return found
    return None


def _bounds(res: dict[str, Any]) -> dict[str, Any] | None:
    for dosage in _list(res.get("dosageInstruction")):
        timing = dosage.get("timing") if isinstance(dosage, dict) else None
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
        if isinstance(bounds, dict):
            return bounds
    return None


def read_bundle(
    path: Path,
    display: str,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Extract:
    """Read a bundle into a patient-file record; structural problems raise PatientError.

    Problems with single resources (unknown units, values missing, broken references) are
    collected in `errors`, and a recorded death in `deceased`, for the caller to raise.
    `vocabulary` (a rules directory's, else the built-in one) says which codes fill which
    fields.
    """
    return extract_bundle(read_json(path, display), display, as_of, today, vocabulary)


def extract_bundle(
    bundle: Any,
    display: str,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Extract:
    """`read_bundle` for a bundle already parsed (e.g. one patient's lines of a bulk export)."""
    on = as_of or today or dt.date.today()
    vocab = v.chosen(vocabulary)
    reader = _Reader(display, on, vocab)
    entries = reader.entries(bundle)
    patient = reader.patient(entries)
    index = _Index()
    for _, resource, full_url in entries:
        index.add(resource, full_url)
    full_url = next(u for _, r, u in entries if r is patient)
    deceased = reader.demographics(patient, full_url)
    by_type: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, resource, _ in entries:
        if resource["resourceType"] in CLINICAL and reader.subject_check(
            resource, i, index, patient
        ):
            by_type.setdefault(resource["resourceType"], []).append((i, resource))
    reader.observations(by_type.get("Observation", []))
    if "Condition" in by_type:
        reader.conditions(by_type["Condition"])
    medications = by_type.get("MedicationRequest", []) + by_type.get("MedicationStatement", [])
    if medications:
        reader.medications(sorted(medications, key=lambda pair: pair[0]), index)
    if "Procedure" in by_type:
        reader.procedures(by_type["Procedure"])
    if "Immunization" in by_type:
        reader.vaccinations(by_type["Immunization"])
    if reader.later:
        reader.warn(
            f"{reader.later} mapped result(s) dated after {on} were ignored",
            "results count only up to the as-of date (--as-of, else today)",
        )
    if reader.dates:
        newest = max(reader.dates.values())
        if (on - newest).days > STALE_DAYS:
            reader.warn(
                f"every result taken from the bundle is more than {STALE_DAYS} days "
                f"old (the newest is from {newest}, {(on - newest).days} days before "
                f"{on})",
                "screen with --max-age (e.g. 30d) to count old results as "
                "missing, and collect current ones",
            )
    record = {key: reader.record[key] for key in vocab.root.fields if key in reader.record}
    return Extract(
        record,
        reader.sources,
        reader.warnings,
        reader.errors,
        deceased,
        on,
        display,
        reader.dates,
        vocabulary,
    )


def _with_sources(error: PatientError, sources: dict[str, str]) -> PatientError:
    """Name the FHIR resource a field came from in the patient-file check's messages."""
    out = []
    for d in error.diagnostics:
        head = d.message.split(":", 1)[0]
        key = next(
            (
                k
                for k in sorted(sources, key=len, reverse=True)
                if head == k or head.startswith(k + ".") or head.startswith(k + "[")
            ),
            None,
        )
        if key is not None:
            d = Diagnostic(
                f"{d.message} (from {sources[key]})", d.file, d.position, d.hint, d.source_line
            )
        out.append(d)
    return PatientError(*out)


def patient_from_extract(
    extract: Extract, as_of: dt.date | None = None, today: dt.date | None = None
) -> Patient:
    """The checked Patient, or a PatientError (the death first, then every problem)."""
    problems = ([extract.deceased] if extract.deceased else []) + list(extract.errors)
    if problems:
        raise PatientError(*problems)
    try:
        return from_mapping(
            extract.record,
            extract.file,
            as_of,
            today,
            sources=extract.sources,
            warnings=tuple(extract.warnings),
            vocabulary=extract.vocabulary,
        )
    except PatientError as exc:
        raise _with_sources(exc, extract.sources) from None


def load_bundle_patient(
    path: Path,
    display: str,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Patient:
    """A patient from a FHIR R4 Bundle (.json), checked like a YAML patient file.

    Raises PatientError, naming `display`, for an unreadable or malformed file, a bundle
    without exactly one Patient, broken references, unknown units, results without a
    value, and a deceased patient.
    """
    extract = read_bundle(Path(path), display, as_of, today, vocabulary)
    return patient_from_extract(extract, as_of, today)
