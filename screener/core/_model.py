"""The model: patient records (`Patient`, `LabValue`), and result values: statuses,
verdicts, three-valued outcomes, screening results and file errors.

Truth inside a criterion is Kleene's three-valued logic: True, False, or None for
"cannot tell from this record". `Outcome` carries that value with the reasons a nurse
reads and, for an unknown, the fields to collect and the judgments left open.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from screener.core._errors import Diagnostic
from screener.core._units import Measure

if TYPE_CHECKING:  # a record keeps the document it was read from, for positions
    from screener.reading._document import Document


@dataclass(frozen=True)
class LabValue:
    """A lab result; `uln` is the file's own upper limit of normal, if it gave one.

    A lab written as a list of dated results is its latest result, which decides every
    condition that does not ask for the series (reading/_patient.py), with the results
    before it in `earlier`, oldest first: `worst`, `occasions` and `change` read them all.
    """

    value: Measure | float
    uln: Measure | float | None = None
    date: dt.date | None = None
    written: str = ""
    implausible: str = ""  # e.g. "implausible: above 30 mg/dL", shown with every result
    earlier: tuple[LabValue, ...] = ()

    @property
    def series(self) -> tuple[LabValue, ...]:
        """Every result, oldest first, this (the latest) last."""
        return (*self.earlier, self) if self.earlier else (self,)


@dataclass(frozen=True)
class Patient:
    """A normalised patient record and the date everything is computed on."""

    id: str
    file: str
    data: dict[str, Any]
    as_of: dt.date
    as_of_source: str  # "screening_date", "--as-of" or "today"
    warnings: tuple[Diagnostic, ...] = ()
    document: Document | None = field(default=None, compare=False, repr=False)
    # Where each fact came from when it was not typed into a YAML file (an EHR export):
    # dotted field path -> e.g. "Observation/3f2a… (LOINC 2160-0), 2019-05-03".
    sources: dict[str, str] = field(default_factory=dict)
    # The vocabulary the file was read with, when a rules directory extends the built-in
    # one (None: the built-in one), so its facts are looked up in the same fields.
    vocabulary: Any = field(default=None, compare=False, repr=False)


Truth = bool | None


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"
    REVIEW = "review"


class Verdict(str, Enum):
    INELIGIBLE = "ineligible"
    INCOMPLETE = "incomplete"
    NEEDS_REVIEW = "needs_review"
    ELIGIBLE = "eligible"


class Kind(str, Enum):
    INCLUSION = "inclusion"
    EXCLUSION = "exclusion"


def kleene_and(values: Iterable[Truth]) -> Truth:
    """False if any is False, else None if any is None, else True (True when empty)."""
    result: Truth = True
    for value in values:
        if value is False:
            return False
        if value is None:
            result = None
    return result


def kleene_or(values: Iterable[Truth]) -> Truth:
    """True if any is True, else None if any is None, else False (False when empty)."""
    result: Truth = False
    for value in values:
        if value is True:
            return True
        if value is None:
            result = None
    return result


def kleene_not(value: Truth) -> Truth:
    return None if value is None else not value


def at_least(n: int, values: Iterable[Truth]) -> Truth:
    """True once n are True; False once too few can still be True; else None."""
    values = list(values)
    sure = sum(v is True for v in values)
    possible = sum(v is not False for v in values)
    if sure >= n:
        return True
    if possible < n:
        return False
    return None


@dataclass(frozen=True)
class Evidence:
    """A fact a leaf compared, as the file wrote it and as converted, against what."""

    field: str
    label: str  # "creatinine", "SpO2"
    value: str  # as written in the file (with its date, if any)
    converted: str = ""  # in the threshold's unit, when that differs ("1.64 mg/dL")
    threshold: str = ""  # "≤ 1.6 mg/dL", "≤ 3 × ULN (ULN 1.2 mg/dL)", "one of B-ALL, AML"


@dataclass(frozen=True)
class Outcome:
    """The three-valued result of one node, with what explains it."""

    value: Truth
    reasons: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # fields whose absence leaves the value unknown
    review: tuple[str, ...] = ()  # judgments only the investigator can make
    evidence: tuple[Evidence, ...] = ()

    @property
    def reason(self) -> str:
        return "; ".join(dict.fromkeys(self.reasons))


def gather(outcomes: Iterable[Outcome]) -> tuple[Evidence, ...]:
    """The evidence of several outcomes, each fact once, in order."""
    return tuple(dict.fromkeys(e for o in outcomes for e in o.evidence))


def status_of(value: Truth, kind: Kind, missing: tuple[str, ...]) -> Status:
    """Map a criterion's truth to a status: an exclusion that holds blocks enrolment."""
    if value is None:
        return Status.UNKNOWN if missing else Status.REVIEW
    holds = value if kind is Kind.INCLUSION else not value
    return Status.PASS if holds else Status.FAIL


def verdict_of(statuses: Iterable[Status]) -> Verdict:
    """Worst first: any fail, else any unknown, else any review, else eligible."""
    seen = set(statuses)
    if Status.FAIL in seen:
        return Verdict.INELIGIBLE
    if Status.UNKNOWN in seen:
        return Verdict.INCOMPLETE
    if Status.REVIEW in seen:
        return Verdict.NEEDS_REVIEW
    return Verdict.ELIGIBLE


@dataclass(frozen=True)
class PartResult:
    id: str
    status: Status
    reason: str
    missing: tuple[str, ...] = ()
    review: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    label: str = ""  # the part's short label, for reports and the CSV (not in the JSON)


@dataclass(frozen=True)
class CriterionResult:
    id: str
    kind: Kind
    label: str
    status: Status
    reason: str
    missing: tuple[str, ...] = ()
    review: tuple[str, ...] = ()
    parts: tuple[PartResult, ...] = ()
    combine: str = "all"  # how the parts make the whole: all or any
    attested: bool = False
    evidence: tuple[Evidence, ...] = ()
    text: str = ""  # the source's words, for --verbose
    note: str = ""  # the rule set's reading of them


@dataclass(frozen=True)
class TrialResult:
    trial: str
    product: str
    title: str
    verdict: Verdict
    criteria: tuple[CriterionResult, ...]
    caveats: tuple[str, ...] = ()
    digest: str = ""  # of the rule set that decided it (rules.RuleSet.digest)


@dataclass(frozen=True)
class Screening:
    """One patient screened against every trial asked for."""

    patient: str
    file: str
    as_of: str
    as_of_source: str
    trials: tuple[TrialResult, ...]
    warnings: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()  # (field, where it came from), for imports
    rules_digest: str = ""  # of all the rule sets screened (rules.rules_digest)
    # Investigator decisions the file records: (trial/criterion, result, by, date), for the
    # chart checklist. Not in the JSON record (results are shared by patients with the same
    # facts; who signed is the patient's own).
    attestations: tuple[tuple[str, str, str, str], ...] = ()


@dataclass(frozen=True)
class FileError:
    """An input that could not be read or screened, in its place among the results."""

    file: str
    diagnostics: tuple[Diagnostic, ...]


# What screening one input gives: a screening, or the file's error. Here, with the other
# result types, so that reports and the log need not import the batch runner.
Record = Screening | FileError
Render = Callable[[Record], str | bytes]  # text, or text already encoded as UTF-8
