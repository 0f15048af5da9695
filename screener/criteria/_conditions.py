"""Condition trees: three-valued nodes a criterion is built from.

Every node answers `evaluate(scope) -> Outcome`. Leaves read facts; `All`, `Any`, `Not`
and `AtLeast` combine them by Kleene's rules, so a missing fact makes a leaf unknown and
the unknown travels up only as far as it can still change the answer. Leaves never test a
number for truthiness and never compare values of different kinds: the rule loader has
already checked every field, operator and unit before a patient is seen.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Any

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.core._memo import once
from screener.core._model import (
    Evidence,
    LabValue,
    Outcome,
    at_least,
    gather,
    kleene_and,
    kleene_not,
    kleene_or,
)
from screener.core._units import Measure, shift
from screener.reading._facts import Fact, Missing, Scope, shown_magnitude

OPERATORS = {"lt": "<", "le": "≤", "gt": ">", "ge": "≥", "eq": "=", "ne": "≠"}
NEGATED = {"lt": "ge", "le": "gt", "gt": "le", "ge": "lt", "eq": "ne", "ne": "eq"}


# For each operator, whether it holds when the left side is below, equal to or above the right.
_HOLDS = {
    "lt": (True, False, False),
    "le": (True, True, False),
    "gt": (False, False, True),
    "ge": (False, True, True),
    "eq": (False, True, False),
    "ne": (True, False, True),
}


def holds(op: str, order: int) -> bool:
    return _HOLDS[op][(order > 0) - (order < 0) + 1]


class Node:
    # Whether the node reads dates against the screening or apheresis date.
    dated = False

    def evaluate(self, scope: Scope) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError

    def children(self) -> tuple[Node, ...]:
        return ()

    def reads(self) -> tuple[str, ...]:
        """The fields this node itself looks up in its scope (not its children's)."""
        return ()

    def outer_reads(self) -> tuple[str, ...]:
        """Patient fields a node inside a list item looks up outside its item."""
        return ()

    def describe(self) -> str:
        """The node itself, for a rule author (`screener show`); its children are shown
        under it (`shown_children`)."""
        return type(self).__name__

    def shown_children(self) -> tuple[tuple[str, Node], ...]:
        """The children `screener show` prints under this node, each with its role."""
        return tuple(("", child) for child in self.children())


def outline(node: Node, indent: str = "") -> list[str]:
    """A check as an indented outline: `all of`, then each condition on its own line."""
    lines = [indent + node.describe()]
    for role, child in node.shown_children():
        inner = outline(child, indent + "    ")
        head = inner[0].lstrip()
        inner[0] = f"{indent}  - {role + ': ' if role else ''}{head}"
        lines.extend(inner)
    return lines


class Leaf(Node):
    """A node that reads facts. Equal leaves are shared between rule sets (the loader interns
    them), so one patient's outcome of a leaf is computed once for all trials."""

    def outcome(self, scope: Scope) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, scope: Scope) -> Outcome:
        if scope.prefix:  # inside a list item the answer depends on the item
            return self.outcome(scope)
        found = scope.memo.get(id(self))
        if found is None:
            found = scope.memo[id(self)] = self.outcome(scope)
        return found


def _missing(fact: Missing, label: str) -> Outcome:
    why = fact.why or f"{label} not recorded"
    return Outcome(None, (f"{why} ({', '.join(fact.fields)})",), fact.fields)


# ---------------------------------------------------------------------------- combinators


@dataclass(frozen=True)
class All(Node):
    items: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.items

    def describe(self) -> str:
        return "all of:"

    def evaluate(self, scope: Scope) -> Outcome:
        return combine(_data_first([n.evaluate(scope) for n in self.items]), kleene_and)


@dataclass(frozen=True)
class Any_(Node):
    items: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.items

    def describe(self) -> str:
        return "any of:"

    def evaluate(self, scope: Scope) -> Outcome:
        outcomes = _data_first([n.evaluate(scope) for n in self.items])
        result = combine(outcomes, kleene_or)
        if result.value is True:
            # Show the path to the answer: alternatives that failed before the one that held
            # ("creatinine 1.7 × ULN > 1.5 × ULN; clearance 67 mL/min ≥ 60 mL/min").
            first = next(i for i, o in enumerate(outcomes) if o.value is True)
            tried = tuple(r for o in outcomes[:first] if o.value is False for r in o.reasons)
            return Outcome(
                True,
                tried + result.reasons,
                evidence=gather([o for o in outcomes[:first] if o.value is False] + [result]),
            )
        return result


@dataclass(frozen=True)
class AtLeast(Node):
    count: int
    items: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.items

    def describe(self) -> str:
        return f"at least {self.count} of:"

    def evaluate(self, scope: Scope) -> Outcome:
        outcomes = [n.evaluate(scope) for n in self.items]
        value = at_least(self.count, (o.value for o in outcomes))
        return _explain(value, outcomes)


@dataclass(frozen=True)
class Not(Node):
    item: Node

    def children(self) -> tuple[Node, ...]:
        return (self.item,)

    def describe(self) -> str:
        return "not:"

    def evaluate(self, scope: Scope) -> Outcome:
        inner = self.item.evaluate(scope)
        return Outcome(
            kleene_not(inner.value), inner.reasons, inner.missing, inner.review, inner.evidence
        )


@dataclass(frozen=True)
class If(Node):
    """`if` applies `then` only to patients it concerns; others get `otherwise` (default: holds).

    When it is unknown whether the condition applies, the answer is still certain if both
    branches agree; otherwise it is unknown, and names what would decide it.
    """

    condition: Node
    then: Node
    otherwise: Node | None = None
    inapplicable: bool = True  # the value when `condition` is false and there is no `otherwise`

    def children(self) -> tuple[Node, ...]:
        return (self.condition, self.then) + ((self.otherwise,) if self.otherwise else ())

    def _else(self, scope: Scope, because: Outcome) -> Outcome:
        if self.otherwise is not None:
            return self.otherwise.evaluate(scope)
        # The facts shown are why the criterion does not apply, not what it requires.
        return Outcome(
            self.inapplicable,
            tuple(f"does not apply: {r}" for r in because.reasons),
            evidence=tuple(
                replace(e, threshold=f"applies only if {e.threshold}") for e in because.evidence
            ),
        )

    def describe(self) -> str:
        if self.otherwise is None:
            return f"only if the condition holds (otherwise {_met(self.inapplicable)}):"
        return "depending on the condition:"

    def shown_children(self) -> tuple[tuple[str, Node], ...]:
        shown: tuple[tuple[str, Node], ...] = (("if", self.condition), ("then", self.then))
        return shown + ((("otherwise", self.otherwise),) if self.otherwise else ())

    def evaluate(self, scope: Scope) -> Outcome:
        cond = self.condition.evaluate(scope)
        if cond.value is True:
            return self.then.evaluate(scope)
        if cond.value is False:
            return self._else(scope, cond)
        then, other = self.then.evaluate(scope), self._else(scope, cond)
        if then.value is not None and then.value == other.value:
            return Outcome(then.value, then.reasons + other.reasons, evidence=gather([then, other]))
        parts = _data_first([cond] + [o for o in (then, other) if o.value is None])
        return Outcome(
            None,
            tuple(r for o in parts for r in o.reasons),
            tuple(m for o in parts for m in o.missing),
            tuple(r for o in parts for r in o.review),
            gather(parts),
        )


def _data_first(outcomes: list[Outcome]) -> list[Outcome]:
    """Siblings, without those that wait only for the investigator when another still
    waits for data.

    A judgment written beside other conditions presupposes them (`all: [a 2nd-generation
    TKI failed, review: "the readings disagree for this patient"]`): asked while they are
    unknown, it would claim what the record has not shown, and the investigator would judge
    a question that may never arise. So a combination still missing data asks for the data
    alone; the question comes once the data is in. (A criterion's parts are independent,
    and the engine keeps their questions.) The value is unchanged: the sibling waiting for
    data is kept, and with it the combination's unknown."""
    waits = asks = False  # one pass: this runs for every all/any/if of every patient
    for o in outcomes:
        if o.value is None:
            if o.missing:
                waits = True
            else:
                asks = True
    if not (waits and asks):
        return outcomes  # nothing to leave out
    return [o for o in outcomes if o.value is not None or o.missing]


def combine(outcomes: list[Outcome], rule: Any) -> Outcome:
    return _explain(rule(o.value for o in outcomes), outcomes)


def _explain(value: bool | None, outcomes: list[Outcome]) -> Outcome:
    """Keep the reasons that decided the value: the failing parts of a failed `all`, etc."""
    deciding = [o for o in outcomes if o.value is value] or outcomes
    if value is None:
        return Outcome(
            None,
            tuple(r for o in deciding for r in o.reasons),
            tuple(dict.fromkeys(m for o in deciding for m in o.missing)),
            tuple(dict.fromkeys(r for o in deciding for r in o.review)),
            gather(deciding),
        )
    return Outcome(value, tuple(r for o in deciding for r in o.reasons), evidence=gather(deciding))


# ---------------------------------------------------------------------------------- leaves


@dataclass(frozen=True)
class Threshold:
    """A comparison target: an absolute amount, or a multiple of the lab's ULN.

    `stated`: the same limit in other units, as the source states it (`le: 2.0 mg/dL (34.2
    µmol/L)`). A value is compared with the source's own number in its unit, or failing that
    in its dimension (a molar value with the molar limit), and converted through the
    analyte's molar mass only when the source states no limit in that dimension: a rounded
    equivalent in the text is what the trial applies.
    """

    amount: Measure | float
    uln_multiple: bool = False
    stated: tuple[Measure, ...] = ()

    def __str__(self) -> str:
        if self.uln_multiple:
            return f"{units.fmt(float(self.amount))} × ULN"  # type: ignore[arg-type]
        if isinstance(self.amount, Measure):
            also = "".join(f" ({m.written})" for m in self.stated)
            return self.amount.written + also
        return units.fmt(self.amount)

    def target(self, value: Measure) -> Measure:
        """The stated limit a value is compared with (see the class docstring)."""
        assert isinstance(self.amount, Measure)
        if not self.stated:
            return self.amount
        limits = (self.amount,) + self.stated
        for limit in limits:
            if units.same_unit(limit.unit, value.unit):
                return limit
        dimension = units.dimension_of(value.unit)
        for limit in limits:
            if units.dimension_of(limit.unit) == dimension:
                return limit
        return self.amount


class _FieldLeaf(Leaf):
    """A leaf that tests one field of its scope: it reads that field, and a record that
    does not hold it leaves the leaf unknown, asking for it; `decide` says what a fact that
    is recorded gives. Not a dataclass: each leaf declares `field` and `label` among its own
    fields, where its constructor takes them."""

    field: str
    label: str

    def reads(self) -> tuple[str, ...]:
        return (self.field,)

    def outcome(self, scope: Scope) -> Outcome:
        fact = scope.get(self.field)
        if isinstance(fact, Missing):
            return _missing(fact, self.label)
        return self.decide(fact, scope)

    def decide(self, fact: Fact, scope: Scope) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Compare(_FieldLeaf):
    field: str
    op: str
    threshold: Threshold
    label: str
    analyte: units.Analyte | None = None
    default_uln: Measure | float | None = None
    uln_source: str | None = None

    @once
    def _wanted(self) -> tuple[str, str]:
        """The threshold as shown ("≤ 1.6 mg/dL"), and its unit (" mg/dL"), worked out once."""
        target = self.threshold.amount
        unit = f" {target.display_unit}" if isinstance(target, Measure) else ""
        return f"{OPERATORS[self.op]} {self.threshold}", unit

    def describe(self) -> str:
        return f"{self.field} {OPERATORS[self.op]} {self.threshold}"

    def decide(self, fact: Fact, scope: Scope) -> Outcome:
        # Of the field's kind, which the rule compiler matched to the threshold's: a Measure
        # against a Measure, a number against a number.
        value: Any = fact.value.value if isinstance(fact.value, LabValue) else fact.value
        if self.threshold.uln_multiple:
            return self._uln(fact, value)
        target = self.threshold.amount
        wanted, unit = self._wanted
        if isinstance(target, Measure):
            if self.threshold.stated and isinstance(value, Measure):
                target = self.threshold.target(value)
                unit = f" {target.display_unit}"
            amount = units.convert(value, target.unit, self.analyte)
            converted = value.unit != target.unit
            goal = target.magnitude
        else:
            amount, converted, goal = float(value), False, float(target)
        order = units.compare(amount, goal)
        passed = holds(self.op, order)
        a, b = units.fmt_pair(amount, goal)
        seen = shown_magnitude(value) if not converted and isinstance(value, Measure) else None
        if seen is not None:
            # The value as shown must stand where the value does against the limit: an
            # export's 1.6000004 mg/dL shows as "1.6 mg/dL", a Cockcroft–Gault 59.99 mL/min
            # as "60 mL/min", which must not read "> 1.6 mg/dL" or "< 60 mL/min"; then the
            # digits that decide are shown, whatever the value's origin.
            limit = float(b)
            converted = ((seen > limit) - (seen < limit)) != order
        shown = f"{fact.text} (= {a}{unit})" if converted else fact.text
        relation = self.op if passed else NEGATED[self.op]
        text = f"{self.label} {shown} {OPERATORS[relation]} {b}{unit}"
        proof = Evidence(
            fact.path, self.label, fact.text, f"{a}{unit}" if converted else "", wanted
        )
        return Outcome(passed, (text,), evidence=(proof,))

    def _uln(self, fact: Fact, value: Measure | float) -> Outcome:
        lab: LabValue = fact.value
        uln, assumed = lab.uln, ""
        if uln is None:
            if self.default_uln is None:
                return Outcome(
                    None,
                    (f"{self.label} has no ULN in the record ({fact.path}.uln)",),
                    (f"{fact.path}.uln",),
                )
            uln = self.default_uln
            assumed = " assumed, no ULN in the record"
        # The ratio is printed so that it times the ULN gives back the value as shown.
        slack = units.resolution(value)
        if isinstance(uln, Measure):
            amount = units.convert(value, uln.unit, self.analyte)  # type: ignore[arg-type]
            size = uln.magnitude
            if value.unit != uln.unit:  # type: ignore[union-attr]
                slack *= amount / value.magnitude if value.magnitude else 1.0  # type: ignore[union-attr]
        else:
            amount, size = float(value), float(uln)  # type: ignore[arg-type]
        ratio = amount / size
        goal = float(self.threshold.amount)  # type: ignore[arg-type]
        passed = holds(self.op, units.compare(ratio, goal))
        a, b = units.fmt_ratio(ratio, goal, amount, size, slack)
        relation = self.op if passed else NEGATED[self.op]
        uln_text = uln.written if isinstance(uln, Measure) else units.fmt(uln)
        text = (
            f"{self.label} {fact.text} = {a} × ULN (ULN {uln_text}{assumed}) "
            f"{OPERATORS[relation]} {b} × ULN"
        )
        proof = Evidence(
            fact.path,
            self.label,
            fact.text,
            f"{a} × ULN",
            f"{self._wanted[0]} (ULN {uln_text}{assumed})",
        )
        return Outcome(passed, (text,), evidence=(proof,))


@dataclass(frozen=True)
class OneOf(_FieldLeaf):
    """The field's value is one of `values` (`is:` is the one-value case)."""

    field: str
    values: tuple[Any, ...]
    label: str

    def describe(self) -> str:
        if len(self.values) == 1:
            return f"{self.field} is {_word(self.values[0])}"
        return f"{self.field} is one of {', '.join(_word(x) for x in self.values)}"

    def decide(self, fact: Fact, scope: Scope) -> Outcome:
        found = fact.value in self.values
        shown = fact.text
        if len(self.values) == 1:
            expected = _word(self.values[0])
            # "on supplemental oxygen: yes" says it all; a word gets what it was tested for.
            hint = "" if found or isinstance(self.values[0], bool) else f" (not {expected})"
            text = f"{self.label}: {shown}{hint}"
        else:
            options = ", ".join(_word(x) for x in self.values)
            text = f"{self.label}: {shown} ({'one of' if found else 'not one of'} {options})"
        wanted = (
            _word(self.values[0])
            if len(self.values) == 1
            else "one of " + ", ".join(_word(x) for x in self.values)
        )
        return Outcome(
            found, (text,), evidence=(Evidence(fact.path, self.label, shown, "", wanted),)
        )


def _met(value: bool) -> str:
    return "met" if value else "not met"


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@dataclass(frozen=True)
class Contains(_FieldLeaf):
    """A list field (such as ABL1 mutations) holds a value; [] is a definite no."""

    field: str
    value: str
    label: str

    def describe(self) -> str:
        return f"{self.field} includes {self.value}"

    def decide(self, fact: Fact, scope: Scope) -> Outcome:
        found = self.value in fact.value
        listed = ", ".join(fact.value) or "none"
        return Outcome(
            found, (f"{self.label}: {listed} ({'includes' if found else 'no'} {self.value})",)
        )


_WORD = re.compile(r"[^\W_]+")
# Where a letter follows a digit a new word starts: "CD19CD22" is CD19 and CD22.
_GLUED = re.compile(r"(?<=\d)(?=[^\W\d_])")
_PREFIXED = re.compile(r"([^\W\d_]+)\d+")


def words_of(text: str) -> frozenset[str]:
    """The words of a text, case folded: "CD19/CD22" has the words cd19 and cd22.

    Marker lists are written short, and both shorthands name every marker: "CD19CD22" is
    cd19 and cd22, and in "CD19/22" a bare number after a slash takes the letters of the
    word before it (cd19, cd22), so a bispecific CAR-T's target mentions CD22."""
    found: list[str] = []
    letters = ""  # the letters of the last word written as letters then digits ("cd")
    end = -1
    folded = text.casefold()
    for match in _WORD.finditer(folded):
        word = match.group()
        if word.isdigit() and letters and folded[end : match.start()].strip() == "/":
            found.append(letters + word)
        parts = _GLUED.split(word)
        found.extend(parts)
        last = _PREFIXED.fullmatch(parts[-1])
        letters = last.group(1) if last else ("" if not word.isdigit() else letters)
        end = match.end()
    return frozenset(found)


@dataclass(frozen=True)
class Mentions(_FieldLeaf):
    """A free-text field (a therapy's target or drug) names one of `words` as whole words,
    in any case: a target "CD19/CD22", "CD19/22" or "CD19CD22" mentions CD22, a drug
    "Inotuzumab ozogamicin" mentions inotuzumab, but "CD220" does not mention CD22."""

    field: str
    words: tuple[str, ...]
    label: str

    def describe(self) -> str:
        return f"{self.field} names one of {', '.join(self.words)}"

    def decide(self, fact: Fact, scope: Scope) -> Outcome:
        written = words_of(str(fact.value))
        found = next((w for w in self.words if words_of(w) <= written), None)
        said = f"names {found}" if found is not None else f"names none of {', '.join(self.words)}"
        return Outcome(found is not None, (f"{self.label}: {fact.text} ({said})",))


# How a date relates to another, for reasons ("2026-03-01 is before 2026-05-10").
_DATE_WORDS = {
    "lt": "before",
    "le": "on or before",
    "gt": "after",
    "ge": "on or after",
    "eq": "on",
    "ne": "not on",
}


@dataclass(frozen=True)
class DateOrder(Leaf):
    """A date compared with another date of the patient's: `{field: date, lt:
    diagnosis.markers.CD22.date}` inside a therapy holds when the therapy came first.

    The other date is always a patient field, looked up in the patient's own scope even when
    this leaf reads an item of a list."""

    field: str
    op: str
    other: str
    label: str

    def reads(self) -> tuple[str, ...]:
        return (self.field,)

    def outer_reads(self) -> tuple[str, ...]:
        return (self.other,)

    def describe(self) -> str:
        return f"{self.field} {_DATE_WORDS[self.op]} {self.other}"

    def outcome(self, scope: Scope) -> Outcome:
        mine, other = scope.get(self.field), scope.top.get(self.other)
        gaps = tuple(f for fact in (mine, other) if isinstance(fact, Missing) for f in fact.fields)
        if gaps:
            return Outcome(
                None,
                (
                    f"{self.label}: both dates are needed to order them, "
                    f"{', '.join(gaps)} not recorded",
                ),
                gaps,
            )
        assert isinstance(mine, Fact) and isinstance(other, Fact)
        order = (mine.value > other.value) - (mine.value < other.value)
        passed = holds(self.op, order)
        relation = self.op if passed else NEGATED[self.op]
        return Outcome(
            passed,
            (
                f"{self.label}: {mine.path} {mine.value} is "
                f"{_DATE_WORDS[relation]} {other.path} {other.value}",
            ),
        )


@dataclass(frozen=True)
class Unrecorded(Node):
    """`if_missing`: what a condition means when its fact is not recorded, where the text
    makes an absence an answer: a medication not marked as stopped is still taken; a marker
    with no date cannot be shown to postdate a therapy; an exception only a positive
    statement invokes ("if organ dysfunction links to the disease") does not apply when the
    record does not state it. Everywhere else a missing fact stays unknown; the reason says
    the value was read from an absence, and the criterion's note says why."""

    item: Node
    value: bool

    def children(self) -> tuple[Node, ...]:
        return (self.item,)

    def describe(self) -> str:
        return f"if not recorded, {_met(self.value)}:"

    def evaluate(self, scope: Scope) -> Outcome:
        outcome = self.item.evaluate(scope)
        if outcome.value is None and outcome.missing and not outcome.review:
            read = "met" if self.value else "not met"
            return Outcome(self.value, tuple(f"{r}: taken as {read}" for r in outcome.reasons))
        return outcome


def anchor_date(anchor_field: str | None, scope: Scope) -> dt.date | None:
    """An anchor's date for this patient: the screening date (no field), else the anchor's
    date field, looked up in the patient's own scope; None if the record lacks it."""
    if anchor_field is None:
        return scope.as_of
    found = scope.top.get(anchor_field)
    return None if isinstance(found, Missing) else found.value


@dataclass(frozen=True)
class Window(_FieldLeaf):
    """A date falls within `within` before the anchor date, first and last day included.

    The anchor is screening (the as-of date) or a date field the vocabulary declares an
    anchor (`apheresis` is `apheresis_date`): a trial event, on or after screening."""

    field: str
    within: Measure
    anchor: str  # "screening", or an anchor's name: "apheresis", "lymphodepletion", …
    label: str
    at_least: bool = False  # True: the date is `within` or more before the anchor instead
    anchor_field: str | None = None  # the date field of an anchor other than screening
    dated = True

    def outer_reads(self) -> tuple[str, ...]:
        return (self.anchor_field,) if self.anchor_field else ()

    def anchor_date(self, scope: Scope) -> dt.date | None:
        """The anchor's date for this patient, None if the record lacks it."""
        return anchor_date(self.anchor_field, scope)

    def place(self, scope: Scope, path: str, day: dt.date) -> Outcome:
        """Whether `day` lies in the window, with a reason; unknown without an anchor date."""
        name = self.anchor.replace("_", " ")
        anchor = self.anchor_date(scope)
        if anchor is None:
            assert self.anchor_field is not None
            # The anchor comes on or after screening, so a date the whole span before
            # screening is at least that far before the anchor: outside any window ending
            # there, and old enough for an `at_least`.
            earliest = shift(scope.as_of, self.within, -1)
            if day < earliest or (self.at_least and day == earliest):
                span = "at least" if self.at_least else "more than"
                return Outcome(
                    self.at_least,
                    (
                        f"{path} {day} is {span} {self.within} before screening "
                        f"({scope.as_of}), so before {name} too",
                    ),
                )
            return Outcome(
                None,
                (f"{path} {day}: {name} date not recorded ({self.anchor_field})",),
                (self.anchor_field,),
            )
        start = shift(anchor, self.within, -1)
        if self.at_least:
            old = day <= start
            return Outcome(
                old,
                (
                    f"{path} {day} is {'at least' if old else 'less than'} "
                    f"{self.within} before {name} ({anchor})",
                ),
            )
        inside = start <= day <= anchor
        where = "within" if inside else "not within"
        return Outcome(inside, (f"{path} {day} is {where} {self.within} before {name} ({anchor})",))

    def describe(self) -> str:
        span = "at least" if self.at_least else "within"
        return f"{self.field} {span} {self.within.written} before {self.anchor}"

    def decide(self, fact: Fact, scope: Scope) -> Outcome:
        return self.place(scope, fact.path, fact.value)


@dataclass(frozen=True)
class Fresh(Leaf):
    """A dated fact counts only if dated inside a window; an older one is data to collect.

    A pregnancy test from last month does not make a woman ineligible for a trial that
    wants one from the last three days: it means a new test is needed, so the criterion
    is unknown, never a silent pass or fail on stale data.
    """

    date_field: str
    window: Window
    item: Node
    label: str
    dated = True

    def children(self) -> tuple[Node, ...]:
        return (self.item,)

    def reads(self) -> tuple[str, ...]:
        return (self.date_field,)

    def outer_reads(self) -> tuple[str, ...]:
        return self.window.outer_reads()

    def describe(self) -> str:
        window = self.window.describe().split(" ", 1)[1]
        return f"dated ({self.date_field}) {window}:"

    def shown_children(self) -> tuple[tuple[str, Node], ...]:
        return (("", self.item),)

    def outcome(self, scope: Scope) -> Outcome:
        fact = scope.get(self.date_field)
        if isinstance(fact, Missing):
            # Without a date the result is still needed: a record with no marker at all
            # must ask for the marker result, not only for its date and specimen.
            item = self.item.evaluate(scope)
            gap = item.value is None and bool(item.missing)
            said = fact.why or (
                f"date not recorded, needed to tell it is recent ({self.date_field})"
            )
            return Outcome(
                None,
                (f"{self.label}: {said}",) + (item.reasons if gap else ()),
                tuple(dict.fromkeys(fact.fields + (item.missing if gap else ()))),
            )
        placed = self.window.place(scope, fact.path, fact.value)
        # A result dated after the screening date (taken after the screening visit) is newer
        # than any window before screening asks for. Not so for apheresis: a test after it
        # is not the test before apheresis that the criterion asks for.
        if placed.value is True or self.window.anchor == "screening" and fact.value > scope.as_of:
            return self.item.evaluate(scope)
        if placed.value is None:
            return placed
        anchor = self.window.anchor_date(scope)
        if anchor is not None and fact.value > anchor:
            return Outcome(
                None,
                (
                    f"{self.label} is dated after {self.window.anchor.replace('_', ' ')}: "
                    f"{placed.reason}; one taken in that window is needed",
                ),
                (self.date_field.rsplit(".", 1)[0],),
            )
        return Outcome(
            None,
            (f"{self.label} is out of date: {placed.reason}; a current one is needed",),
            (self.date_field.rsplit(".", 1)[0],),
        )


# ------------------------------------------------------------------------- lab series
#
# A lab written as a list of dated results (reading/_patient.py) is its latest result to
# every condition above; these read the whole series. Each result is tested by the same
# comparison leaf a single value is (a Compare), so units, ULN multiples and the shown
# digits work as they do everywhere.


def _results(fact: Fact, scope: Scope) -> tuple[Fact, ...]:
    """A lab fact's results as facts of their own, oldest first; with --max-age, the earlier
    ones older than that are left out, as the latest would be (Scope.lookup)."""
    lab: LabValue = fact.value
    if not lab.earlier:
        return (fact,)
    oldest = shift(scope.as_of, scope.max_age, -1) if scope.max_age is not None else None
    return tuple(
        Fact(replace(r, earlier=()), fact.spec, fact.path, r.implausible, r.date)
        for r in lab.series
        if r is lab or oldest is None or r.date is None or r.date >= oldest
    )


def _asked(evidence: tuple[Evidence, ...], also: str) -> tuple[Evidence, ...]:
    """Evidence of a result tested in a series, its threshold saying what the series asked
    ("≥ 50 ×10⁹/L, the worst of 3 results within 14 days before screening")."""
    return tuple(replace(e, threshold=f"{e.threshold}, {also}") for e in evidence)


def _measured_gap(node: Any, scope: Scope) -> Outcome | None:
    """Why a series condition cannot read a field a derived value stands in for (a count
    from the differential for the ANC), when the record holds no measured result: the
    estimate is made from the latest inputs only, so it is no series."""
    if not node.measured_only or not isinstance(scope.lookup(node.field), Missing):
        return None
    return Outcome(
        None,
        (
            f"{node.label}: no measured result recorded; a value computed from the latest "
            f"other results is no series to read ({node.field})",
        ),
        (node.field,),
    )


def _of_result(outcome: Outcome, result: Fact, latest: Fact) -> Outcome:
    """An earlier result's outcome, its reasons saying which result they are about."""
    if result is latest or outcome.value is not None:
        return outcome
    return replace(
        outcome, reasons=tuple(f"the result of {result.date}: {r}" for r in outcome.reasons)
    )


@dataclass(frozen=True)
class _Series(Leaf):
    """A condition on the dated results of one lab inside a window (worst, occasions)."""

    field: str
    window: Window  # over the results' dates (field `<lab>.date`)
    test: Compare
    label: str
    # The field is one a derived value stands in for: only measured results are a series.
    measured_only: bool = False
    dated = True

    def reads(self) -> tuple[str, ...]:
        return (self.field,)

    def outer_reads(self) -> tuple[str, ...]:
        return self.window.outer_reads()

    def shown_children(self) -> tuple[tuple[str, Node], ...]:
        return (("", self.test),)

    @staticmethod
    def late(results: list[Fact], scope: Scope) -> bool:
        """Whether a result read is dated after the screening date (counted as current)."""
        return any(r.date > scope.as_of for r in results)  # type: ignore[operator]

    def _span(self, late: bool = False) -> str:
        anchor = self.window.anchor.replace("_", " ")
        # A result after the screening date counts as current (as for `fresh`); say so.
        after = " (or after it)" if late else ""
        return f"within {self.window.within} before {anchor}{after}"

    def in_window(self, scope: Scope) -> tuple[list[Fact], Outcome | None]:
        """The results dated in the window, oldest first; or why there are none to read."""
        fact = scope.get(self.field)
        if isinstance(fact, Missing):
            return [], _missing(fact, self.label)
        gap = _measured_gap(self, scope)
        if gap is not None:
            return [], gap
        results = _results(fact, scope)
        if results[-1].date is None:  # one result, undated (a list of several has dates)
            return [], Outcome(
                None,
                (
                    f"{self.label}: date not recorded, needed to tell it is recent "
                    f"({self.field}.date)",
                ),
                (f"{self.field}.date",),
            )
        inside: list[Fact] = []
        gaps: list[Outcome] = []
        for result in results:
            placed = self.window.place(scope, self.field + ".date", result.date)  # type: ignore[arg-type]
            # As for `fresh`: a result after the screening date is newer than the window.
            late = self.window.anchor == "screening" and result.date > scope.as_of  # type: ignore[operator]
            if placed.value is True or late:
                inside.append(result)
            elif placed.value is None:
                gaps.append(placed)
        if gaps and not inside:
            # Only the anchor's date is missing (Window.place decides the rest without it).
            name = self.window.anchor.replace("_", " ")
            return [], Outcome(
                None,
                (
                    f"{self.label}: {name} date not recorded, needed to tell which results "
                    f"are {self._span()} ({self.window.anchor_field})",
                ),
                gaps[-1].missing,
            )
        if not inside:
            latest = results[-1]
            return [], Outcome(
                None,
                (
                    f"{self.label}: no result {self._span()} ({len(results)} recorded, the "
                    f"latest {latest.text}); a current one is needed",
                ),
                (self.field,),
            )
        return inside, None


def _amount(test: Compare, fact: Fact) -> float | None:
    """Where a result stands against the test's limit, to tell the worst: its value in the
    limit's unit, or its multiple of the ULN; None without a ULN to divide by."""
    lab: LabValue = fact.value
    value = lab.value
    if test.threshold.uln_multiple:
        uln = lab.uln if lab.uln is not None else test.default_uln
        if uln is None:
            return None
        if isinstance(uln, Measure):
            return units.convert(value, uln.unit, test.analyte) / uln.magnitude  # type: ignore[arg-type]
        return float(value) / float(uln)  # type: ignore[arg-type]
    target = test.threshold.amount
    if isinstance(target, Measure):
        return units.convert(value, target.unit, test.analyte)  # type: ignore[arg-type]
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Worst(_Series):
    """`worst`: the worst result dated in the window decides, so every one must meet the
    test: for `le` or `lt` the highest, for `ge` or `gt` the lowest."""

    def describe(self) -> str:
        return f"the worst result of {self.field} {self._span()}:"

    def outcome(self, scope: Scope) -> Outcome:
        inside, why = self.in_window(scope)
        if why is not None:
            return why
        tested = [(r, _of_result(self.test.decide(r, scope), r, inside[-1])) for r in inside]
        unsure = [o for _, o in tested if o.value is None]
        failed = [(r, o) for r, o in tested if o.value is False]
        late = self.late(inside, scope)
        high = self.test.op in ("lt", "le")
        if failed or not unsure:
            pool = failed or tested
            ranked = [
                (a, i) for i, (r, _) in enumerate(pool) if (a := _amount(self.test, r)) is not None
            ]
            pick = (max(ranked) if high else min(ranked))[1] if ranked else -1
            result, outcome = pool[pick]
            head = f"the worst of {len(inside)} result{'s' * (len(inside) > 1)} {self._span(late)}"
            return Outcome(
                outcome.value,
                tuple(f"{r}, {head}" for r in outcome.reasons),
                evidence=_asked(outcome.evidence, head),
            )
        return Outcome(
            None,
            tuple(r for o in unsure for r in o.reasons),
            tuple(dict.fromkeys(m for o in unsure for m in o.missing)),
        )


@dataclass(frozen=True)
class Occasions(_Series):
    """`occasions`: the test holds on at least `times` days of the window with a result (of
    one day's results the last written counts; with `consecutive`, on the latest `times`
    days). Fewer is a fail when the latest result in the window fails the test (the
    patient does not meet it now), and unknown when it holds (one more result may make
    it): a further result is then asked for."""

    times: int = 2
    consecutive: bool = False

    def describe(self) -> str:
        run = " consecutive" if self.consecutive else ""
        return f"on at least {self.times}{run} results of {self.field} {self._span()}:"

    def outcome(self, scope: Scope) -> Outcome:
        inside, why = self.in_window(scope)
        if why is not None:
            return why
        # An occasion is a day: of results of one day, the last written is that day's.
        days = list({r.date: r for r in inside}.values())
        tested = [_of_result(self.test.decide(r, scope), r, days[-1]) for r in days]
        late = self.late(days, scope)
        if self.consecutive:
            met = 0
            for o in reversed(tested):
                if o.value is not True:
                    break
                met += 1
        else:
            met = sum(o.value is True for o in tested)
        run = " consecutive" if self.consecutive else ""
        count = (
            f"{met} of the {self.times}{run} days needed {self._span(late)} "
            f"({len(days)} with a result)"
        )
        wanted = f"on {self.times}{run} days {self._span(late)}"
        if met >= self.times:
            held = [o for o in tested if o.value is True][-self.times :]
            return Outcome(
                True,
                (f"{self.label}: {count}",) + tuple(r for o in held for r in o.reasons),
                evidence=_asked(gather(held), wanted),
            )
        latest = tested[-1]
        if latest.value is False:
            return Outcome(
                False,
                (f"{self.label}: {count}; the latest: {latest.reason}",),
                evidence=_asked(latest.evidence, f"{wanted} ({met} met)"),
            )
        if latest.value is None:
            return Outcome(
                None, (f"{self.label}: {count}",) + latest.reasons, latest.missing, latest.review
            )
        return Outcome(
            None,
            (f"{self.label}: {count}; a further result is needed",),
            (self.field,),
        )


@dataclass(frozen=True)
class Change(Leaf):
    """`change`: the latest result less a baseline one, compared with a limit: in the
    lab's units, or with `relative`, in per cent of the baseline. The baseline is the first
    result (`since: first`), or the last one dated on or before an anchor (`since:
    lymphodepletion`); the latest result must come after it."""

    field: str
    op: str
    amount: Measure | float  # in the lab's units; a plain number of per cent if relative
    relative: bool
    since: str  # "first", or an anchor's name
    label: str
    analyte: units.Analyte | None = None
    anchor_field: str | None = None  # the date field of an anchor other than screening
    measured_only: bool = False  # as for _Series

    @property
    def dated(self) -> bool:  # type: ignore[override]
        return self.since == "screening"

    def reads(self) -> tuple[str, ...]:
        return (self.field,)

    def outer_reads(self) -> tuple[str, ...]:
        return (self.anchor_field,) if self.anchor_field else ()

    def _limit(self) -> str:
        if self.relative:
            return f"{units.fmt(float(self.amount))} %"  # type: ignore[arg-type]
        if isinstance(self.amount, Measure):
            return self.amount.written
        return units.fmt(self.amount)

    def _since(self) -> str:
        if self.since == "first":
            return "the first result"
        return f"the last result on or before {self.since.replace('_', ' ')}"

    def describe(self) -> str:
        how = "relative change" if self.relative else "change"
        return f"{how} of {self.field} since {self._since()} {OPERATORS[self.op]} {self._limit()}"

    def outcome(self, scope: Scope) -> Outcome:
        fact = scope.get(self.field)
        if isinstance(fact, Missing):
            return _missing(fact, self.label)
        gap = _measured_gap(self, scope)
        if gap is not None:
            return gap
        results = _results(fact, scope)
        current = results[-1]
        base: Fact
        if self.since == "first":
            base = results[0]
        else:
            name = self.since.replace("_", " ")
            anchor = anchor_date(self.anchor_field, scope)
            if anchor is None:
                return Outcome(
                    None,
                    (
                        f"{self.label}: the baseline is the last result on or before {name}; "
                        f"{name} date not recorded ({self.anchor_field})",
                    ),
                    (self.anchor_field,),  # type: ignore[arg-type]
                )
            before = [r for r in results if r.date is not None and r.date <= anchor]
            if not before:
                return Outcome(
                    None,
                    (f"{self.label}: no result on or before {name} ({anchor}) to be the baseline",),
                    (self.field,),
                )
            base = before[-1]
        if base is current:
            return Outcome(
                None,
                (
                    f"{self.label}: a change since {self._since()} needs a later result; "
                    f"the only one is {current.text}",
                ),
                (self.field,),
            )
        was, now = base.value.value, current.value.value
        if self.relative:
            unit = ""
            start = was.magnitude if isinstance(was, Measure) else float(was)
            if start == 0:
                return Outcome(
                    None,
                    (f"{self.label}: a relative change from {base.text} is undefined",),
                    (),
                    (f"{self.label}: judge the change from {base.text} to {current.text}",),
                )
            end = (
                units.convert(now, was.unit, self.analyte)
                if isinstance(was, Measure)
                else float(now)
            )
            delta, goal, unit = (end - start) / abs(start) * 100, float(self.amount), " %"  # type: ignore[arg-type]
        elif isinstance(self.amount, Measure):
            target = self.amount.unit
            delta = units.convert(now, target, self.analyte) - units.convert(
                was, target, self.analyte
            )
            goal, unit = self.amount.magnitude, f" {self.amount.display_unit}"
        else:
            delta, goal, unit = float(now) - float(was), float(self.amount), ""
        order = units.compare(delta, goal)
        passed = holds(self.op, order)
        a, b = units.fmt_pair(delta, goal)
        sign = "+" if delta > 0 and not a.startswith("+") else ""
        relation = self.op if passed else NEGATED[self.op]
        text = (
            f"{self.label} changed by {sign}{a}{unit} since {self._since()} "
            f"({base.text} → {current.text}) {OPERATORS[relation]} {b}{unit}"
        )
        proof = Evidence(
            fact.path,
            self.label,
            f"{base.text} → {current.text}",
            f"{sign}{a}{unit}",
            f"change {OPERATORS[self.op]} {self._limit()}",
        )
        return Outcome(passed, (text,), evidence=(proof,))


@dataclass(frozen=True)
class Review(Node):
    """A judgment only the investigator can make; an attestation settles it."""

    text: str

    def describe(self) -> str:
        return f"the investigator judges: {self.text}"

    def evaluate(self, scope: Scope) -> Outcome:
        if scope.attestation is not None:
            return Outcome(scope.attestation, (f"investigator attested: {self.text}",))
        return Outcome(None, (f"investigator to judge: {self.text}",), (), (self.text,))


# ------------------------------------------------------------------------------ list nodes

# Each item's scope and whether `where` selects it. Named out here: inside _OverList, `list`
# is the field naming the list, not the builtin.
_Pairs = list[tuple[Scope, Outcome]]


@dataclass(frozen=True)
class _OverList(Node):
    list: str
    where: Node | None
    spec: v.Record
    label: str

    def children(self) -> tuple[Node, ...]:
        check = getattr(self, "check", None)
        return tuple(n for n in (self.where, check) if n is not None)

    def reads(self) -> tuple[str, ...]:
        return (self.list,)

    @staticmethod
    def none_found(pairs: _Pairs) -> str:
        # An empty list is an answer ("reviewed: none"); say so, not "not recorded".
        return f"none matching ({len(pairs)} recorded)" if pairs else "none ([] in the record)"

    def items(self, scope: Scope) -> tuple[_Pairs, Outcome | None]:
        fact = scope.get(self.list)
        if isinstance(fact, Missing):
            return [], _missing(fact, self.label)
        pairs = []
        for i, item in enumerate(fact.value):
            inner = scope.item(item, self.spec, f"{self.list}[{i}].")
            selected = self.where.evaluate(inner) if self.where else Outcome(True)
            pairs.append((inner, selected))
        return pairs, None


@dataclass(frozen=True)
class Exists(_OverList):
    """Some item of a list matches `where`; [] is a definite no."""

    def describe(self) -> str:
        return f"some item of {self.list}" + (" where:" if self.where else "")

    def evaluate(self, scope: Scope) -> Outcome:
        pairs, missing = self.items(scope)
        if missing:
            return missing
        outcomes = [o for _, o in pairs]
        value = kleene_or(o.value for o in outcomes)
        if value is False:
            return Outcome(False, (f"{self.label}: {self.none_found(pairs)}",))
        return _explain(value, outcomes)


@dataclass(frozen=True)
class Every(_OverList):
    """Every item matching `where` satisfies `check`; holds when none match."""

    check: Node | None = None

    def describe(self) -> str:
        return f"every item of {self.list}:"

    def shown_children(self) -> tuple[tuple[str, Node], ...]:
        shown: tuple[tuple[str, Node], ...] = (
            (("of those where", self.where),) if self.where else ()
        )
        return shown + ((("meets", self.check),) if self.check else ())

    def evaluate(self, scope: Scope) -> Outcome:
        pairs, missing = self.items(scope)
        if missing:
            return missing
        assert self.check is not None
        outcomes = []
        for inner, selected in pairs:
            if selected.value is False:
                continue
            checked = self.check.evaluate(inner)
            # An item that may or may not be selected matters only if it could fail the check.
            if selected.value is None and checked.value is not True:
                checked = Outcome(
                    None,
                    selected.reasons + checked.reasons,
                    selected.missing + checked.missing,
                    selected.review + checked.review,
                    gather([selected, checked]),
                )
            outcomes.append(checked)
        if not outcomes:
            return Outcome(True, (f"{self.label}: {self.none_found(pairs)}",))
        return combine(outcomes, kleene_and)


@dataclass(frozen=True)
class Count(_OverList):
    """How many items match `where` (or how many distinct values of `distinct` they have)."""

    op: str = "ge"
    number: int = 1
    distinct: str | None = None

    def describe(self) -> str:
        distinct = f" with distinct {self.distinct}" if self.distinct else ""
        where = ", counting those where:" if self.where else ""
        return f"number of items of {self.list}{distinct} {OPERATORS[self.op]} {self.number}{where}"

    def evaluate(self, scope: Scope) -> Outcome:
        pairs, missing = self.items(scope)
        if missing:
            return missing
        sure: set[Any] = set()
        maybe = 0
        gaps: list[str] = []
        for index, (inner, selected) in enumerate(pairs):
            if selected.value is False:
                continue
            key: Any = index
            if self.distinct is not None:
                fact = inner.get(self.distinct)
                if isinstance(fact, Missing):
                    maybe += 1
                    gaps.extend(fact.fields)
                    continue
                key = fact.value
            if selected.value is True:
                sure.add(key)
            else:
                maybe += 1
                gaps.extend(selected.missing)
        low, high = len(sure), len(sure) + maybe
        low_holds, high_holds = (
            holds(self.op, low - self.number),
            holds(self.op, high - self.number),
        )
        shown = str(low) if low == high else f"{low} to {high}"
        text = f"{self.label}: {shown} ({OPERATORS[self.op]} {self.number} required)"
        if self.distinct is not None and sure:
            text += f"; {self.distinct}: {', '.join(sorted(map(str, sure)))}"
        if low_holds == high_holds:
            return Outcome(low_holds, (text,))
        return Outcome(None, (text,), tuple(dict.fromkeys(gaps)))
