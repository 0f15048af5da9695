"""Looking facts up in a patient record, including the ones computed from others.

A fact is either found (with its value, its field's spec and how to describe it) or
missing, and then names what the nurse should collect. Derived facts (age on the
screening date, Cockcroft–Gault creatinine clearance, eGFR, …) are the vocabulary's
`derived` declarations, computed by their registered formula (reading/_formulas.py) when a
rule first reads them, and say how they were computed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.core._memo import once
from screener.core._model import LabValue, Patient
from screener.core._units import Measure, shift
from screener.reading._formulas import FORMULAS, Unknown


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
            how = None if self.prefix else (self.patient.vocabulary or v.BUILTIN).computed.get(path)
            if how is None:  # a field as the record holds it: nearly every lookup
                found = self.lookup(path)
            elif how == "date":
                found = self._date_of(path[:-5])
            elif isinstance(how, tuple):
                # A measured value wins; else the derived value stands in for it.
                found = self.lookup(path)
                if isinstance(found, Missing):
                    found = self._derive(how[0], path, _plan(self.spec, path)[0], True)
            else:
                found = self._derive(how, path, how.spec)
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

    def _derive(
        self, d: v.Derived, path: str, spec: v.Spec, standing_in: bool = False
    ) -> Fact | Missing:
        """A derived value by its formula, from its inputs as this scope reads them.

        Dated by its oldest dated input; an input lab without a date leaves its date
        unknown (`undated`). Standing in for a measured field the record lacks, it takes
        that field's spec and path, and a gap says the measured value is missing too."""
        formula = FORMULAS[d.formula]
        given: dict[str, Any] = {}
        gaps: list[str] = []
        dates: list[dt.date] = []
        undated: list[str] = []
        flags: list[str] = []  # implausible inputs, said with the value
        explained: list[str] = []
        for role, source in d.inputs:
            # Its own path is the field a file writes (age's stated age); others are facts,
            # derived ones included.
            fact = self.lookup(source) if source == d.path else self.fact(source)
            want = formula.roles[role]
            if isinstance(fact, Missing):
                if want.one_of:
                    given[role] = None
                else:
                    gaps.extend(fact.fields)
                continue
            value = fact.value
            if isinstance(value, LabValue):
                if value.implausible:
                    flags.append(value.implausible)
                value = value.value
            if want.unit:
                inner = fact.spec.value if isinstance(fact.spec, v.Lab) else fact.spec
                analyte = inner.analyte if isinstance(inner, v.Quantity) else None
                given[role] = units.convert(value, want.unit, analyte)
            else:
                given[role] = value
            if fact.date is not None:
                dates.append(fact.date)
            elif fact.undated:
                undated.extend(fact.undated)
            elif isinstance(fact.value, LabValue):
                undated.append(source + ".date")
            if want.explained:
                explained.append(f"{fact.spec.label}: {fact.note or 'as recorded'}")
        if gaps:
            if standing_in:
                return Missing(
                    (path, *gaps),
                    f"no measured {spec.label}, and {formula.estimate} needs " + ", ".join(gaps),
                )
            return Missing(tuple(gaps), f"{formula.estimate} needs " + ", ".join(gaps))
        if formula.as_of:
            given["as_of"] = self.patient.as_of
        if formula.labels:
            given["labels"] = {role: _plan(self.spec, source)[0].label for role, source in d.inputs}
        result = formula.compute(**given)
        if isinstance(result, Unknown):
            roles = dict(d.inputs)
            return Missing(tuple(roles[r] for r in result.roles) or (path,), result.why)
        if isinstance(result.value, Measure):
            measure = result.value
        else:
            text = f"{units.fmt(result.value)} {units.SPELLINGS[formula.unit][1]}"
            measure = Measure(result.value, formula.unit, text)
        own = ""  # the estimate's own implausibility, said first
        if isinstance(spec, v.Lab) and spec.ranges() != ((None, None), (None, None)):
            # An estimate is held to the ranges of what it estimates, and says so wherever
            # it is shown: one no measured value could reach (3098 mL/min) means an input is
            # wrong. It still decides as computed, so that a better input never makes a
            # worse status (an unknown for a higher clearance would).
            amount = spec.in_range_unit(measure)
            hard, soft = (v.outside(amount, b) for b in spec.ranges())
            if hard is not None:
                inputs = ", ".join(dict.fromkeys(source for _, source in d.inputs))
                own = (
                    f"impossible: {hard[0]} {units.fmt(hard[1])} {spec.range_unit}, check {inputs}"
                )
            elif soft is not None:
                own = f"implausible: {soft[0]} {units.fmt(soft[1])} {spec.range_unit}"
        note = "; ".join(n for n in (own, result.note, *explained) if n) + "".join(
            f" ({f})" for f in flags
        )
        if not isinstance(spec, v.Lab):
            return Fact(measure, spec, path, note)
        taken = None if undated or not dates else min(dates)
        estimated = LabValue(measure, None, taken, measure.written)
        return Fact(estimated, spec, path, note, taken, tuple(dict.fromkeys(undated)))


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


def _short(measure: Measure) -> str:
    """As written, unless it is an export's long float (3.2362191736536725 mg/dL)."""
    if not abbreviated(measure):
        return measure.written
    return f"{units.fmt(measure.magnitude, 6)} {measure.display_unit}"


def abbreviated(measure: Measure) -> bool:
    """Whether a value is shown to six digits rather than as written (an export's float)."""
    return bool(measure.written) and sum(map(str.isdigit, measure.written.split()[0])) > 6


_SHOWN_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def shown_magnitude(measure: Measure) -> float | None:
    """The number a reader sees for a value: as written, an export's float to six digits,
    a derived value to the digits it was formatted with (a Cockcroft–Gault 59.99 mL/min
    shows as 60); None if the text starts with no number."""
    match = _SHOWN_NUMBER.match(_short(measure))
    return float(match.group(1)) if match else None


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
    if isinstance(value, LabValue) and value.earlier:
        text += f", the latest of {len(value.earlier) + 1} results"
    return f"{text} ({fact.note})" if fact.note else text
