"""Patient files: read, check against the vocabulary and normalise into facts.

A key that is absent stays absent (the fact is unknown); an empty list is kept as an
answer ("reviewed: none"). Every value is checked against its field's kind, so an error
names the field, the kind it expects, and the file, line and column it came from.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from screener.core import _reference as reference
from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.core._errors import Diagnostic, PatientError, clip, nearest
from screener.core._errors import describe_value as _kind
from screener.core._model import LabValue, Patient
from screener.core._units import Measure, UnitError
from screener.reading._document import Document, PathKey, parse_with, read_text

_R = TypeVar("_R", bound=Callable[..., Any])
_AA: dict[str, str] = reference.values("amino_acids")
_THREE = re.compile(r"^(?:p\.)?\(?([A-Z][a-z]{2})(\d+)([A-Z][a-z]{2})\)?$")
_ONE = re.compile(r"^(?:[pP]\.)?\(?([A-Za-z])(\d+)([A-Za-z])\)?$")
_ONE_LETTER = set(_AA.values())
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4}
# Errors and warnings kept per file: a file of 90,000 misspelt keys must neither spend
# minutes finding did-you-means nor print 90,000 messages. The rest are counted.
MAX_DIAGNOSTICS = 100


_CD = re.compile(r"^CD[\s\-_]+(\d+[A-Z]?)\Z")


def normalise_mutation(text: str) -> str | None:
    """T315I, p.T315I and p.Thr315Ile all become T315I; None if not a protein change."""
    text = text.strip()
    match = _THREE.match(text)
    if match and match.group(1) in _AA and match.group(3) in _AA:
        return f"{_AA[match.group(1)]}{match.group(2)}{_AA[match.group(3)]}"
    match = _ONE.match(text)
    if match:
        before, position, after = match.group(1).upper(), match.group(2), match.group(3).upper()
        if before in _ONE_LETTER and after in _ONE_LETTER:
            return f"{before}{position}{after}"
    return None


# How a value of each kind of field (the Spec classes of core/_vocabulary.py) is read: one
# method of _Reader per kind, registered by the kind's class with @_reads, so a new kind is
# its Spec class and one method here (tests/test_patient.py checks every kind has one).
_Read = Callable[["_Reader", Any, Any, PathKey], Any]
_READERS: dict[type[v.Spec], _Read] = {}


def _reads(kind: type[v.Spec]) -> Callable[[_R], _R]:
    def register(method: _R) -> _R:
        if kind in _READERS:
            raise TypeError(f"two readers for {kind.__name__}")
        _READERS[kind] = method
        return method

    return register


def _one_slip(a: str, b: str) -> bool:
    """Whether two different names are one typing slip apart: a letter left out or added,
    or two neighbours swapped. (A letter typed wrong is not counted: CD20 and CD10 are
    markers of their own, not slips for CD22 and CD19.)"""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and (a[diff[1]] == b[diff[0]])
        )
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


class _Reader:
    """Walks a document against the vocabulary, collecting every error and warning."""

    def __init__(self, doc: Document, vocabulary: v.Vocabulary) -> None:
        self.doc = doc
        self.vocabulary = vocabulary
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.more_errors = 0
        self.more_warnings = 0

    def error(self, path: PathKey, message: str, hint: str | None = None) -> None:
        if len(self.errors) >= MAX_DIAGNOSTICS:
            self.more_errors += 1
            return
        self.errors.append(self.doc.diagnostic(f"{_dotted(path)}: {message}", path, hint=hint))

    def warn(self, path: PathKey, message: str, hint: str | None = None, key: bool = False) -> None:
        if len(self.warnings) >= MAX_DIAGNOSTICS:
            self.more_warnings += 1
            return
        self.warnings.append(self.doc.diagnostic(message, path, key=key, hint=hint))

    def unknown_key(self, path: PathKey, key: Any, known: list[str]) -> None:
        if len(self.warnings) >= MAX_DIAGNOSTICS:  # the did-you-mean is the costly part
            self.more_warnings += 1
            return
        guess = nearest(clip(str(key)), known)
        self.warn(
            path + (key,),
            f"unknown key {_dotted(path + (key,))} (ignored)",
            f"did you mean {guess!r}?" if guess else None,
            key=True,
        )

    def unread_name(self, path: PathKey, name: str, names: tuple[str, ...]) -> None:
        """A name (a marker) no rule reads, one slip from one that is read: `CD2` for
        `CD22`. Kept as written (CD2 is a marker too), but said, since the criteria that
        read CD22 would otherwise go unknown in silence."""
        guess = next((n for n in names if _one_slip(name, n)), None)
        if guess is not None:
            self.warn(
                path,
                f"{_dotted(path)}: no rule reads a marker {clip(name)} (kept as written)",
                f"did you mean {guess!r}? the rules read {', '.join(names)}",
                key=True,
            )

    def finish(self) -> None:
        """Count what the budget left out, so a reader knows the list is not complete."""
        if self.more_errors:
            self.errors.append(Diagnostic(f"… and {self.more_errors:,} more errors", self.doc.file))
        if self.more_warnings:
            self.warnings.append(
                Diagnostic(f"… and {self.more_warnings:,} more warnings", self.doc.file)
            )

    def read(self, spec: v.Spec, value: Any, path: PathKey) -> Any:
        return _READERS[type(spec)](self, spec, value, path)

    @_reads(v.Record)
    def _record(self, spec: v.Record, value: Any, path: PathKey) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping of {spec.label} fields, got {_kind(value)}")
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = spec.fields.get(key)
            if sub is None:
                self.unknown_key(path, key, list(spec.fields))
                continue
            if item is None:
                # `key:` with nothing after it says nothing: the fact stays unknown.
                continue
            normalised = self.read(sub, item, path + (key,))
            if normalised is not None:
                out[key] = normalised
        for key in spec.required:
            if key not in value or value[key] is None:
                self.error(path, f"missing required key {key!r}")
        return out

    @_reads(v.Attestation)
    def _attestation(self, spec: v.Attestation, value: Any, path: PathKey) -> dict[str, Any] | None:
        # `pass` is short for {result: pass}: who and when are optional.
        if isinstance(value, dict):
            return self._record(spec, value, path)
        result = self.read(spec.fields["result"], value, path)
        return None if result is None else {"result": result}

    @_reads(v.OpenMap)
    def _openmap(self, spec: v.OpenMap, value: Any, path: PathKey) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_kind(value)}")
            return None
        out = {}
        upper = spec.upper_keys
        seen: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if upper:
                # `CD 19`, `cd-19` and `CD_19` are CD19: a cluster of differentiation is
                # one name, however a record spaces it (HLA-DR keeps its hyphen).
                name = _CD.sub(r"CD\1", name.strip().upper())
                if name in seen:
                    self.error(
                        path + (key,),
                        f"{name} is given twice (as {seen[name]!r} and {key!r})",
                        "keep one entry per marker",
                    )
                    continue
                seen[name] = key
            if spec.names and name not in spec.names:
                self.unread_name(path + (key,), name, spec.names)
            normalised = self.read(spec.value, item, path + (key,))
            if normalised is not None:
                out[name] = normalised
        return out

    @_reads(v.ListOf)
    def _listof(self, spec: v.ListOf, value: Any, path: PathKey) -> tuple[Any, ...] | None:
        if not isinstance(value, list):
            self.error(path, f"expected a list ([] for none), got {_kind(value)}")
            return None
        items = (self.read(spec.item, item, path + (i,)) for i, item in enumerate(value))
        return tuple(item for item in items if item is not None)

    def _written(self, value: Any, path: PathKey) -> Any:
        """A YAML 1.1 boolean (yes, no, on, off) where a word is expected, as written.

        `cns_involvement: no` is the documented synonym of none, and `name: No` is a name,
        but YAML reads both as false; the text in the file is what was meant.
        """
        if isinstance(value, bool):
            return self.doc.written(path, value)
        return value

    @_reads(v.Text)
    def _text(self, spec: v.Text, value: Any, path: PathKey) -> str | None:
        value = self._written(value, path)
        if isinstance(value, (dict, list, bool)) or value is None:
            self.error(path, f"expected text, got {_kind(value)}")
            return None
        # 0012345 must stay as written, not octal 5349.
        return value if isinstance(value, str) else str(self.doc.written(path, value))

    @_reads(v.Date)
    def _date(self, spec: v.Date, value: Any, path: PathKey) -> dt.date | None:
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.error(path, f"expected an ISO date such as 2026-11-20, got {_kind(value)}")
        return None

    @_reads(v.Bool)
    def _bool(self, spec: v.Bool, value: Any, path: PathKey) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(path, f"expected true or false, got {_kind(value)}")
        return None

    @_reads(v.Choice)
    def _choice(self, spec: v.Choice, value: Any, path: PathKey) -> str | None:
        value = self._written(value, path)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            found = spec.lookup().get(v.fold(str(value)))
            if found is not None:
                return found
        guess = nearest(str(value), list(spec.values)) if isinstance(value, str) else None
        self.error(
            path,
            f"expected one of {', '.join(spec.values)}; got {_kind(value)}",
            f"did you mean {guess!r}?" if guess else None,
        )
        return None

    @_reads(v.Integer)
    def _integer(self, spec: v.Integer, value: Any, path: PathKey) -> int | None:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif spec.roman and isinstance(value, str) and value.strip().lower() in _ROMAN:
            number = _ROMAN[value.strip().lower()]
        if number is None:
            self.error(
                path, f"expected a whole number from {spec.low} to {spec.high}, got {_kind(value)}"
            )
            return None
        if not spec.low <= number <= spec.high:
            self.error(path, f"{spec.label} {number} is out of range ({spec.low}–{spec.high})")
            return None
        if (number - spec.low) % spec.step:
            self.error(
                path,
                f"{spec.label} {number} is not a step of the scale "
                f"({spec.low}, {spec.low + spec.step}, … {spec.high})",
            )
            return None
        return number

    @_reads(v.Number)
    def _number(self, spec: v.Number, value: Any, path: PathKey) -> float | None:
        if isinstance(value, float) and not math.isfinite(value):
            self.error(path, f"expected a number (no unit), got {_kind(value)}")
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if spec.low <= value <= spec.high:
                return float(value)
            self.error(
                path,
                f"{spec.label} {value} is out of range "
                f"({units.fmt(spec.low)}–{units.fmt(spec.high)})",
            )
            return None
        self.error(path, f"expected a number (no unit), got {_kind(value)}")
        return None

    @_reads(v.Quantity)
    def _quantity(self, spec: v.Quantity, value: Any, path: PathKey) -> Measure | None:
        if spec.bare_number and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = f"{value} {spec.bare_number}"  # `age: 47` is in years, as the contract allows
        try:
            measure = units.parse_measure(
                value, spec.kind, spec.analyte, self.vocabulary.unit_aliases
            )
        except UnitError as exc:
            self.error(path, str(exc), exc.hint)
            return None
        if spec.range_unit:
            amount = units.convert(measure, units.normalise_unit(spec.range_unit), spec.analyte)
            low, high = spec.low, spec.high
            if (low is not None and amount < low) or (high is not None and amount > high):
                bounds = (
                    f"{units.fmt(low or 0)}–{units.fmt(high)}"
                    if high is not None
                    else f"at least {units.fmt(low or 0)}"
                )
                self.error(
                    path,
                    f"{spec.label} {measure.written} is out of range ({bounds} {spec.range_unit})",
                )
                return None
        elif spec.low is not None and measure.magnitude < spec.low:
            self.error(path, f"{spec.label} {measure.written} cannot be negative")
            return None
        if spec.above_zero and measure.magnitude <= 0:
            self.error(path, f"{spec.label} {measure.written} must be above zero")
            return None
        return measure

    @_reads(v.Lab)
    def _lab(self, spec: v.Lab, value: Any, path: PathKey) -> LabValue | None:
        if isinstance(value, list):
            return self._series(spec, value, path)
        return self._result(spec, value, path)

    def _series(self, spec: v.Lab, value: list[Any], path: PathKey) -> LabValue | None:
        """A lab written as a list of results: the latest, with the earlier ones.

        Which result is the latest must be certain, so a list of more than one result needs
        every result's date; results of the same day keep the order the file gives them (the
        last written is the latest). `[]` records no result: the lab is missing."""
        results = [self._result(spec, item, path + (i,)) for i, item in enumerate(value)]
        if not results or any(r is None for r in results):
            return None
        read = [r for r in results if r is not None]
        if len(read) > 1:
            undated = [i for i, r in enumerate(read) if r.date is None]
            for i in undated:
                self.error(
                    path + (i,),
                    "a result in a list of results needs its date, to tell which is the latest",
                    "e.g. {value: 1.4 mg/dL, date: 2026-02-20}",
                )
            if undated:
                return None
        ordered = sorted(read, key=lambda r: r.date or dt.date.min)  # stable: same-day order
        return replace(ordered[-1], earlier=tuple(ordered[:-1]))

    def _result(self, spec: v.Lab, value: Any, path: PathKey) -> LabValue | None:
        if isinstance(value, list):
            self.error(path, "a result in a list of results is a value or {value, uln, date}")
            return None
        if isinstance(value, dict):
            unknown = set(value) - {"value", "uln", "date"}
            for key in sorted(unknown):
                self.unknown_key(path, key, ["value", "uln", "date"])
            if value.get("value") is None:
                self.error(
                    path, "a lab mapping needs a value", "e.g. {value: 1.4 mg/dL, uln: 1.2 mg/dL}"
                )
                return None
            result = self.read(spec.value, value["value"], path + ("value",))
            uln = None
            if value.get("uln") is not None:
                uln = self.read(spec.value, value["uln"], path + ("uln",))
                if uln is None:
                    return None
                if (uln.magnitude if isinstance(uln, Measure) else uln) <= 0:
                    self.error(path + ("uln",), "an upper limit of normal must be above zero")
                    return None
            date = None
            if value.get("date") is not None:
                date = self._date(v.Date("date"), value["date"], path + ("date",))
            if result is None:
                return None
            uln_note = ""
            if uln is not None:
                checked = self._plausible(spec, uln, path + ("uln",), uln=True)
                if checked is None:
                    return None
                uln_note = f"ULN {checked}" if checked else ""
            note = self._plausible(spec, result, path + ("value",))
            if note is None:
                return None
            written = result.written if isinstance(result, Measure) else units.fmt(result)
            return LabValue(result, uln, date, written, "; ".join(n for n in (note, uln_note) if n))
        result = self.read(spec.value, value, path)
        if result is None:
            return None
        note = self._plausible(spec, result, path)
        if note is None:
            return None
        written = result.written if isinstance(result, Measure) else units.fmt(result)
        return LabValue(result, None, None, written, note)

    def _plausible(
        self, spec: v.Lab, value: Measure | float, path: PathKey, uln: bool = False
    ) -> str | None:
        """Check a lab value (or ULN) against the lab's plausible ranges.

        None if it is impossible (an error is recorded, naming the likely unit slip); else
        "" or, for an implausible value, the note its results show (a warning is recorded).
        """
        bounds = spec.ranges(uln)
        if bounds == ((None, None), (None, None)):
            return ""
        amount = spec.in_range_unit(value)
        label = f"{spec.label} ULN" if uln else spec.label
        hard = v.outside(amount, bounds[0])
        soft = None if hard else v.outside(amount, bounds[1])
        if not (hard or soft):
            return ""  # the usual case, decided without looking for a unit slip
        shown = value.written if isinstance(value, Measure) else units.fmt(value)
        slip = _unit_slip(spec, value, bounds) if isinstance(value, Measure) else None
        hint = f"did you mean {slip}?" if slip else "check the value and its unit"
        if hard:
            self.error(
                path,
                f"{label} {shown} is not a possible result "
                f"({_bound(spec, value, *hard)}): a typo or a unit slip",
                hint,
            )
            return None
        assert soft is not None
        bound = _bound(spec, value, *soft)
        self.warn(
            path,
            f"{_dotted(path)}: {label} {shown} is implausible ({bound}); "
            "its results are shown as such",
            hint,
        )
        return f"implausible: {bound}"

    @_reads(v.Mutations)
    def _mutations(self, spec: v.Mutations, value: Any, path: PathKey) -> tuple[str, ...] | None:
        if not isinstance(value, list):
            self.error(
                path,
                f"expected a list of mutations such as [T315I] ([] for none found), "
                f"got {_kind(value)}",
            )
            return None
        found = []
        for i, item in enumerate(value):
            name = normalise_mutation(str(item)) if isinstance(item, str) else None
            if name is None:
                self.error(
                    path + (i,),
                    f"cannot read {item!r} as a protein change",
                    "write it as T315I, p.T315I or p.Thr315Ile",
                )
            else:
                found.append(name)
        return tuple(found)


def _bound(spec: v.Lab, value: Measure | float, side: str, limit: float) -> str:
    """ "above 15 mg/dL", and the limit in the unit written when that is another one:
    "above 15 mg/dL = 1326 µmol/L"."""
    text = f"{side} {units.fmt(limit)}" + (f" {spec.range_unit}" if spec.range_unit else "")
    if isinstance(value, Measure) and value.display_unit != spec.range_unit:
        analyte = spec.value.analyte if isinstance(spec.value, v.Quantity) else None
        source = units.normalise_unit(spec.range_unit)
        # (not IU/L for U/L: the same magnitude says nothing more)
        if units.compare(units.convert_amount(1.0, source, value.unit, analyte), 1.0) != 0:
            shown = units.convert_amount(limit, source, value.unit, analyte)
            text += f" = {units.fmt(shown)} {value.display_unit}"
    return text


def _unit_slip(spec: v.Lab, value: Measure, bounds: tuple[v.Bounds, v.Bounds]) -> str | None:
    """The accepted unit in which the number written would be plausible (within `bounds`,
    the hard and soft ranges of a result or of a ULN), for an impossible or implausible
    one: 30 mmol/L total bilirubin is 30 µmol/L, a bilirubin ULN of 20 mg/dL is 20 µmol/L.

    Only units of another magnitude than the one written are tried (IU/L for U/L would
    change nothing); of those that make the number plausible, the one that puts it nearest
    the lab's usual ULN is offered."""
    quantity = spec.value
    if not isinstance(quantity, v.Quantity):
        return None
    target = units.normalise_unit(spec.range_unit)
    usual = _usual(spec, target)
    best: tuple[float, str] | None = None
    tried = {value.display_unit}
    for key, (_, display) in units.SPELLINGS.items():
        if display in tried:
            continue
        try:
            units.check_kind(key, quantity.kind, quantity.analyte)
        except UnitError:
            continue
        tried.add(display)
        if units.compare(units.convert_amount(1.0, value.unit, key, quantity.analyte), 1.0) == 0:
            continue  # the same magnitude as written
        amount = units.convert_amount(value.magnitude, key, target, quantity.analyte)
        if amount <= 0 or v.outside(amount, bounds[1]) or v.outside(amount, bounds[0]):
            continue
        distance = abs(math.log(amount / usual))
        if best is None or distance < best[0]:
            best = (distance, display)
    return best[1] if best else None


def _usual(spec: v.Lab, target: str) -> float:
    """A typical result in `target`: the default ULN, else half the soft upper limit."""
    quantity = spec.value
    if spec.default_uln and isinstance(quantity, v.Quantity):
        default = units.parse_measure(spec.default_uln, quantity.kind, quantity.analyte)
        return units.convert(default, target, quantity.analyte)
    return (spec.soft[1] or spec.hard[1] or 1.0) / 2


def _dotted(path: PathKey) -> str:
    text = ""
    for part in path:
        part = part if isinstance(part, int) else clip(part, 40)  # keys can be any length
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "patient"


def from_document(
    doc: Document,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Patient:
    """Check and normalise a parsed patient document; raises PatientError with every problem.

    `vocabulary` is the one the rule sets were checked against (a rules directory's
    extension); the built-in one by default."""
    vocabulary = v.chosen(vocabulary)
    if doc.data is None:
        raise PatientError(
            Diagnostic("file is empty: a patient file is one YAML mapping", doc.file)
        )
    if not isinstance(doc.data, dict):
        raise PatientError(
            doc.diagnostic(f"a patient file is one YAML mapping, not {_kind(doc.data)}", ())
        )
    reader = _Reader(doc, vocabulary)
    data = reader._record(vocabulary.root, doc.data, ()) or {}
    therapies = data.get("therapies")
    if therapies is not None:
        data["therapies"] = tuple(
            _with_generation(t, ("therapies", i), reader) for i, t in enumerate(therapies)
        )
    if data.get("screening_date") is not None:
        on, source = data["screening_date"], "screening_date"
    elif as_of is not None:
        on, source = as_of, "--as-of"
    else:
        on, source = today or dt.date.today(), "today"
    medications = data.get("medications")
    if medications is not None:
        data["medications"] = tuple(
            _stopped(m, on, ("medications", i), reader) for i, m in enumerate(medications)
        )
    _fertility_agrees(data, reader)
    birth = data.get("birth_date")
    if birth is not None and birth > on:
        reader.error(("birth_date",), f"birth date {birth} is after the screening date {on}")
    apheresis = data.get("apheresis_date")
    if apheresis is not None and birth is not None and apheresis < birth:
        reader.error(
            ("apheresis_date",), f"apheresis date {apheresis} is before the birth date {birth}"
        )
    if birth is not None and "age" in data:
        years = age_on(birth, on)
        stated = data["age"]
        if completed_years(stated) != years:
            reader.warn(
                ("age",),
                f"age {stated.written} disagrees with birth date {birth} (age {years} "
                f"on {on}); the birth date is used",
            )
    reader.finish()
    if reader.errors:
        raise PatientError(*reader.errors)
    return Patient(
        id=str(data["id"]),
        file=doc.file,
        data=data,
        as_of=on,
        as_of_source=source,
        warnings=tuple(reader.warnings),
        document=doc,
        vocabulary=None if vocabulary is v.BUILTIN else vocabulary,
    )


def _with_generation(therapy: dict[str, Any], path: PathKey, reader: _Reader) -> dict[str, Any]:
    """Add a TKI's generation from the reference tables when the file does not state it.

    A drug name the tables do not know leaves the generation unknown, with a warning naming
    the nearest known drug: `dasatinb` must not silently drop out of a count of generations.
    """
    drug = therapy.get("drug")
    if therapy.get("type") != "tki" or not drug:
        return therapy
    # Brand names and development codes of TKIs -> generic name, and generic name ->
    # generation (reference data with its source, and a rules directory's vocabulary).
    names, generations = reader.vocabulary.tki_names, reader.vocabulary.tki_generations
    folded = v.fold(drug)
    # One name per drug, so "Gleevec" and "imatinib" count as one TKI, not two different.
    therapy = {**therapy, "generic": names.get(folded, drug.strip().casefold())}
    generation = generations.get(v.fold(names.get(folded, folded)))
    if "generation" in therapy:
        stated = therapy["generation"]
        if generation is not None and stated != generation:
            # The record's word stands (a site may know better), but never silently.
            reader.warn(
                path + ("generation",),
                f"{_dotted(path + ('generation',))}: {clip(drug)} is a generation-"
                f"{generation} TKI in the reference data, and the record says {stated}",
                "correct the record, or keep it if the site's classification differs",
            )
        return therapy
    if generation is not None:
        return {**therapy, "generation": generation}
    guess = nearest(clip(drug), list(reader.vocabulary.tki_known))
    if guess is not None and v.fold(guess) in names:
        guess = f"{guess} ({names[v.fold(guess)]})"
    reader.warn(
        path + ("drug",),
        f"{_dotted(path + ('drug',))}: unknown TKI {clip(drug)!r}; its generation is unknown",
        f"did you mean {guess}?" if guess else "give its generation: 1, 2 or 3",
    )
    return therapy


def _fertility_agrees(data: dict[str, Any], reader: _Reader) -> None:
    """Warn when reproductive_potential and childbearing_potential disagree.

    For a woman they say the same thing; for a man only childbearing_potential true can
    contradict reproductive_potential false ("childbearing" false says nothing of a man's
    fertility). Rules that read both ask the investigator which is true."""
    potential, childbearing = data.get("reproductive_potential"), data.get("childbearing_potential")
    if potential is None or childbearing is None or potential == childbearing:
        return
    if data.get("sex") != "female" and not childbearing:
        return
    reader.warn(
        ("reproductive_potential",),
        f"reproductive_potential {'true' if potential else 'false'} disagrees with "
        f"childbearing_potential {'true' if childbearing else 'false'}",
        "correct one of them; until then the criteria that read them ask",
    )


def _stopped(
    medication: dict[str, Any], on: dt.date, path: PathKey, reader: _Reader
) -> dict[str, Any]:
    """A stop date on or before the screening date says the drug is no longer taken.

    A record that says both (ongoing true, a stop date before screening; or ongoing false, a
    stop date after it) is kept as written, with a warning: which fact is true decides
    whether a drug still taken or one discontinued counts, and rules that read both make
    the contradiction a question for the investigator, never a silent answer."""
    stop = medication.get("stop_date")
    ongoing = medication.get("ongoing")
    if ongoing is None and stop is not None and stop <= on:
        return {**medication, "ongoing": False}
    if stop is not None and ((ongoing is True and stop < on) or (ongoing is False and stop > on)):
        said = "ongoing" if ongoing else "not ongoing"
        when = "before" if ongoing else "after"
        reader.warn(
            path + ("ongoing",),
            f"{_dotted(path)}: {clip(str(medication.get('name', 'medication')))} is marked "
            f"{said}, but its stop date {stop} is {when} the screening date {on}",
            "correct ongoing or stop_date; until then the criteria that read them ask",
        )
    return medication


def age_on(birth: dt.date, on: dt.date) -> int:
    """Completed years on a date; someone born on 29 February turns a year older on 1 March."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def completed_years(age: Measure) -> int:
    """A stated age in completed years, as a birth date gives it: 65.5 years is 65, so an
    age limit (≤ 65 years, > 65 years) reads a stated age as it reads a birth date.

    An amount within the comparison tolerance of a whole year is that year: 780 months is
    65 years, whatever the float rounding of twelfths."""
    years = units.convert(age, "years")
    whole = math.floor(years)
    return whole + 1 if units.compare(years, whole + 1) == 0 else whole


def load_patient(
    path: str | Path,
    as_of: dt.date | None = None,
    display: str | None = None,
    today: dt.date | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Patient:
    """Read a patient file; raises PatientError (with file, line and column) if it is unusable."""
    name = display if display is not None else str(path)
    return parse_patient(read_text(path, name, PatientError), name, as_of, today, vocabulary)


def from_mapping(
    record: dict[str, Any],
    file: str,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    sources: dict[str, str] | None = None,
    warnings: tuple[Diagnostic, ...] = (),
    vocabulary: v.Vocabulary | None = None,
) -> Patient:
    """A patient from an already-parsed mapping in the patient-file format (e.g. from FHIR).

    The mapping is checked exactly as a YAML file is; errors name the file and field but no
    line. `sources` records where each fact came from, for the report.
    """
    patient = from_document(Document(file=file, text="", data=record), as_of, today, vocabulary)
    return replace(
        patient, sources=dict(sources or {}), warnings=tuple(warnings) + patient.warnings
    )


def parse_patient(
    text: str,
    file: str = "<patient>",
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Patient:
    """Read a patient from YAML text, as `load_patient` does a file."""
    return parse_with(
        text, file, lambda doc: from_document(doc, as_of, today, vocabulary), PatientError
    )
