"""Looking facts up in a patient record, including the ones computed from others.

A fact is either found (with its value, its field's spec and how to describe it) or
missing, and then names what the nurse should collect. Derived facts (age on the
screening date, Cockcroft–Gault creatinine clearance) say how they were computed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.core._memo import once
from screener.core._model import LabValue, Patient
from screener.core._units import Measure, shift
from screener.reading._patient import age_on, completed_years


@dataclass(frozen=True)
class Fact:
    value: Any  # normalised value: Measure, LabValue, bool, str, int, date, tuple, dict
    spec: v.Spec
    path: str
    note: str = ""  # how a derived value was obtained
    date: dt.date | None = None  # when a lab, marker or test was taken, if the file says
    # A derived value's dates that the record lacks ("labs.creatinine.date"): its date, that
    # of its oldest input, is then unknown.
    undated: tuple[str, ...] = ()

    @once
    def text(self) -> str:
        """The value as written in the file, with how a derived one was obtained.

        Worked out once: a fact is shown by every leaf that reads it."""
        return _describe(self)


@dataclass(frozen=True)
class Missing:
    fields: tuple[str, ...]
    why: str = ""


class Scope:
    """Where names are looked up: the patient, or one item of one of its lists.

    Facts of the patient itself are looked up once per screening and shared by every
    criterion of every trial through `known` (a patient is screened against five trials
    whose criteria read the same few dozen facts).
    """

    __slots__ = (
        "patient",
        "data",
        "spec",
        "prefix",
        "attestation",
        "max_age",
        "known",
        "memo",
        "trace",
        "root",
        "__weakref__",  # the result cache knows the patient it keeps fingerprints for
    )

    def __init__(
        self,
        patient: Patient,
        data: dict[str, Any],
        spec: v.Record,
        prefix: str = "",
        attestation: bool | None = None,
        max_age: Measure | None = None,
        known: dict[str, Fact | Missing] | None = None,
        memo: dict[int, Any] | None = None,
    ) -> None:
        self.patient = patient
        self.data = data
        self.spec = spec
        self.prefix = prefix  # "therapies[2]." inside a list item
        self.attestation = attestation  # the value review leaves take in this criterion
        self.max_age = max_age  # dated results older than this count as missing
        self.known = {} if known is None else known
        self.memo = {} if memo is None else memo  # leaf outcomes, by leaf, for this patient
        # Tests set this to a set to see what a tree really reads (screening._reuse.inputs).
        self.trace: set[str] | None = None
        # The patient's own scope, where a node inside a list item finds the patient fields
        # it compares the item with (a therapy's date against a marker's date); None for the
        # patient's scope itself (a reference to itself would be a cycle for the collector).
        self.root: Scope | None = None

    @property
    def as_of(self) -> dt.date:
        if self.trace is not None:
            self.trace.add("(as of)")
        return self.patient.as_of

    @property
    def apheresis_date(self) -> dt.date | None:
        if self.trace is not None:
            self.trace.add("(apheresis date)")
        return self.patient.data.get("apheresis_date")

    def item(self, data: dict[str, Any], spec: v.Record, prefix: str) -> Scope:
        inner = Scope(self.patient, data, spec, prefix, self.attestation, self.max_age, {})
        inner.trace, inner.root = self.trace, self.top
        return inner

    def judged(self, attestation: bool | None) -> Scope:
        """The same patient and facts, with a criterion's attestation for its review items."""
        scope = Scope(
            self.patient,
            self.data,
            self.spec,
            self.prefix,
            attestation,
            self.max_age,
            self.known,
            self.memo,
        )
        scope.trace, scope.root = self.trace, self.root
        return scope

    @property
    def top(self) -> Scope:
        """The patient's own scope."""
        return self if self.root is None else self.root

    def get(self, path: str) -> Fact | Missing:
        """The fact at `path`, as a condition asks for it."""
        if self.trace is not None and not self.prefix:
            self.trace.add(path)
        return self.fact(path)

    def fact(self, path: str) -> Fact | Missing:
        """The fact at `path`, out of the trace: what a fact computed from others reads
        shows in its own value and note (so in its fingerprint), and the result cache reads
        the facts a tree names, which is not the tree reading them."""
        found = self.known.get(path)
        if found is None:
            if path.endswith(".date") and path[:-5] in _DERIVED and not self.prefix:
                found = self._date_of(path[:-5])
            elif path in _DERIVED and not self.prefix:
                found = (
                    self._age()
                    if path == "age"
                    else self._clearance()
                    if path == "labs.creatinine_clearance"
                    else cockcroft_gault(self, v.DERIVED[path], path)
                )
            else:
                found = self.lookup(path)
            self.known[path] = found
        return found

    def lookup(self, path: str) -> Fact | Missing:
        spec, parts = _plan(self.spec, path)
        data = self.data
        node: object = data  # walks down from the mapping to any value
        taken: dt.date | None = None  # the date of the result this value belongs to
        for part in parts:
            if isinstance(node, dict):
                if node is not data:
                    date = node.get("date")
                    if isinstance(date, dt.date):
                        taken = date
                node = node.get(part)
            elif isinstance(node, LabValue):
                taken = node.date
                node = (
                    node.value
                    if part == "value"
                    else node.uln
                    if part == "uln"
                    else node.date
                    if part == "date"
                    else None
                )
            else:
                node = None
            if node is None:
                return Missing((self.prefix + path,))
        if isinstance(node, LabValue):
            taken = node.date
        if self.prefix:
            # Dates inside list items are event dates (a transplant), not result dates.
            return Fact(node, spec, self.prefix + path)
        if (
            taken is not None
            and self.max_age is not None
            and parts[-1] != "date"
            and taken < shift(self.patient.as_of, self.max_age, -1)
        ):
            return Missing(
                (path,),
                f"{path} dated {taken} is older than "
                f"{self.max_age.written} before {self.patient.as_of} "
                "(--max-age): a current result is needed",
            )
        # An implausible lab value says so wherever it is shown (reason and evidence).
        note = node.implausible if isinstance(node, LabValue) else ""
        return Fact(node, spec, path, note, taken)

    def _date_of(self, path: str) -> Fact | Missing:
        """The date of a derived value: that of its oldest dated input (a Cockcroft–Gault
        estimate from a 3-day-old creatinine is 3 days old), so freshness windows apply."""
        fact = self.fact(path)
        if isinstance(fact, Missing):
            return fact
        if fact.date is None:
            if fact.undated:
                return Missing(
                    fact.undated,
                    f"{', '.join(fact.undated)} not recorded, so the date of {path} is unknown",
                )
            return Missing((path + ".date",))
        return Fact(fact.date, _DATE, path + ".date")

    def _age(self) -> Fact | Missing:
        spec = v.DERIVED["age"]
        birth = self.data.get("birth_date")
        if birth is not None:
            years = age_on(birth, self.patient.as_of)
            return Fact(
                Measure(years, "years", f"{years} years"),
                spec,
                "age",
                f"born {birth}, on {self.patient.as_of}",
            )
        stated = self.data.get("age")
        if stated is not None:
            years = completed_years(stated)
            if stated.display_unit == "years" and units.compare(stated.magnitude, years) == 0:
                return Fact(stated, spec, "age", "as stated")
            # 65.5 years is 65 completed years for every criterion, as a birth date gives it.
            return Fact(
                Measure(years, "years", f"{years} years"),
                spec,
                "age",
                f"completed years of the stated {stated.written}",
            )
        return Missing(("birth_date",), "birth date (or age) not recorded")

    def _clearance(self) -> Fact | Missing:
        spec = v.resolve("labs.creatinine_clearance")
        assert spec is not None
        measured = self.lookup("labs.creatinine_clearance")
        if isinstance(measured, Fact):
            return measured
        return cockcroft_gault(self, spec)


# Facts computed from others: age; creatinine clearance as measured, else estimated; and
# the Cockcroft–Gault estimate alone, for criteria that ask for it by name.
_DERIVED = frozenset(("age", "labs.creatinine_clearance", "labs.cockcroft_gault"))
_DATE = v.Date("date")
_PLANS: dict[tuple[int, str], tuple[v.Record, v.Spec, tuple[str, ...]]] = {}


def _plan(root: v.Record, path: str) -> tuple[v.Spec, tuple[str, ...]]:
    """A field's spec and path steps, worked out once per field rather than per patient."""
    found = _PLANS.get((id(root), path))
    if found is None or found[0] is not root:
        spec = v.resolve(path, root)
        assert spec is not None, f"rule loader let through unknown field {path}"
        found = _PLANS[(id(root), path)] = (root, spec, tuple(path.split(".")))
    return found[1], found[2]


def cockcroft_gault(
    scope: Scope, spec: v.Spec, path: str = "labs.creatinine_clearance"
) -> Fact | Missing:
    """(140 − age) × weight[kg] / (72 × creatinine[mg/dL]), × 0.85 for women, in mL/min.

    As `labs.creatinine_clearance` it stands in for a measured clearance the record lacks;
    as `labs.cockcroft_gault` it is the estimate whatever was measured."""
    age = scope.fact("age")
    weight = scope.lookup("weight")
    sex = scope.lookup("sex")
    creatinine = scope.lookup("labs.creatinine")
    gaps = [
        f
        for fact in (age, weight, sex, creatinine)
        if isinstance(fact, Missing)
        for f in fact.fields
    ]
    if gaps:
        if path != "labs.creatinine_clearance":
            return Missing(tuple(gaps), "a Cockcroft–Gault estimate needs " + ", ".join(gaps))
        return Missing(
            ("labs.creatinine_clearance", *gaps),
            "no measured creatinine clearance, and a Cockcroft–Gault estimate needs "
            + ", ".join(gaps),
        )
    assert (
        isinstance(age, Fact)
        and isinstance(weight, Fact)
        and isinstance(sex, Fact)
        and isinstance(creatinine, Fact)
    )
    years = units.convert(age.value, "years")
    kg = units.convert(weight.value, "kg")
    scr = units.convert(creatinine.value.value, "mg/dl", units.CREATININE)
    if scr <= 0:
        return Missing(("labs.creatinine",), "creatinine of zero cannot give an estimate")
    estimate = (140 - years) * kg / (72 * scr) * (0.85 if sex.value == "female" else 1.0)
    estimate = max(estimate, 0.0)
    note = (
        f"Cockcroft–Gault estimate: age {units.fmt(years)}, {units.fmt(kg)} kg, "
        f"{sex.value}, creatinine {units.fmt(scr)} mg/dL"
    )
    if creatinine.value.implausible:  # an estimate from an implausible creatinine is too
        note += f" ({creatinine.value.implausible})"
    text = f"{units.fmt(estimate)} mL/min"
    # Dated as its creatinine (weight, sex and age carry no result date).
    taken = creatinine.value.date
    estimated = LabValue(Measure(estimate, "ml/min", text), None, taken, text)
    undated = () if taken is not None else ("labs.creatinine.date",)
    return Fact(estimated, spec, path, note, taken, undated)


def _short(measure: Measure) -> str:
    """As written, unless it is an export's long float (3.2362191736536725 mg/dL)."""
    if not abbreviated(measure):
        return measure.written
    return f"{units.fmt(measure.magnitude, 6)} {measure.display_unit}"


def abbreviated(measure: Measure) -> bool:
    """Whether a value is shown to six digits rather than as written (an export's float)."""
    return bool(measure.written) and sum(map(str.isdigit, measure.written.split()[0])) > 6


def _describe(fact: Fact) -> str:
    value = fact.value
    if isinstance(value, LabValue):
        text = _short(value.value) if isinstance(value.value, Measure) else value.written
    elif isinstance(value, Measure):
        text = _short(value)
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = units.fmt(value)
    else:
        text = str(value)
    if fact.date is not None:
        text += f" on {fact.date}"
    return f"{text} ({fact.note})" if fact.note else text
