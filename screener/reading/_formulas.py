"""The formulas derived values are computed by: a registry of small pure functions.

A derived value is declared in the vocabulary (`derived:` in screener/data/vocabulary.yaml,
or a rules directory's vocabulary file) with the name of a formula registered here and the
field each of the formula's inputs is read from (`inputs: {role: field}`). Nothing is
evaluated from text: a declaration can only pick a formula from this table and wire fields
into its roles, and `check` refuses a declaration whose fields do not fit the roles.

Each formula is given its inputs already converted to the units its equation is written
in (a role's `unit`), so the functions below are the equations and nothing else; the
caller (reading/_facts.py) reads the inputs, dates the result by its oldest dated input and
says what is missing. Each is documented with its equation and its source, which the field
reference (docs/patient-format.md) prints.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.core._errors import RuleSetError
from screener.core._units import Measure
from screener.reading._patient import age_on, completed_years


@dataclass(frozen=True)
class Role:
    """One input of a formula, and what the formula is given for it."""

    unit: str = ""  # a number in this unit (SPELLINGS key): a quantity's, or a lab's value
    words: tuple[str, ...] = ()  # one of these words: a choice field holding them all
    date: bool = False  # a date
    measure: str = ""  # the quantity as written (a Measure) of this unit's kind
    # Roles of one group are alternatives: the formula is given None for a missing one
    # and needs at least one of them (age: a birth date, or else a stated age).
    one_of: str = ""
    # The input's own note (how it was obtained) is added to the result's note.
    explained: bool = False

    def takes(self) -> str:
        """What the role needs, in words, for errors."""
        if self.unit:
            return f"a quantity convertible to {units.SPELLINGS[self.unit][1]}"
        if self.words:
            return f"a choice with the values {', '.join(self.words)}"
        if self.date:
            return "a date"
        return f"a quantity convertible to {units.SPELLINGS[self.measure][1]}"


@dataclass(frozen=True)
class Result:
    value: float | Measure  # a number in the formula's unit, or a Measure as it stands
    note: str  # how it was obtained, shown with the value


@dataclass(frozen=True)
class Unknown:
    """The formula does not apply: `roles` name the inputs that decide it (none: the
    value itself cannot be had, such as an adult equation for a child)."""

    why: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Formula:
    name: str
    unit: str  # SPELLINGS key of the result
    estimate: str  # what it gives, in words: "a Cockcroft–Gault estimate needs …"
    equation: str  # for the field reference
    source: str  # where the equation is published
    roles: dict[str, Role]
    compute: Callable[..., Result | Unknown]
    as_of: bool = False  # given the screening date too (as_of=…)
    # given the labels of the fields its roles read (labels={role: label}), for its note
    labels: bool = False


FORMULAS: dict[str, Formula] = {}


def formula(
    name: str,
    *,
    unit: str,
    estimate: str,
    equation: str,
    source: str,
    roles: dict[str, Role],
    as_of: bool = False,
    labels: bool = False,
) -> Callable[[Callable[..., Result | Unknown]], Callable[..., Result | Unknown]]:
    """Register a function as the formula `name` (the name a vocabulary declaration uses)."""

    def register(fn: Callable[..., Result | Unknown]) -> Callable[..., Result | Unknown]:
        assert name not in FORMULAS, f"formula {name} registered twice"
        assert unit in units.SPELLINGS, unit
        FORMULAS[name] = Formula(name, unit, estimate, equation, source, roles, fn, as_of, labels)
        return fn

    return register


def _adult(age: float) -> bool:
    return age >= 18


# ----------------------------------------------------------------------------- formulas


@formula(
    "age",
    unit="years",
    estimate="an age",
    equation="completed years from the birth date to the screening date; else the stated "
    "age, in completed years",
    source="the contract's patient fields",
    roles={
        "birth_date": Role(date=True, one_of="age"),
        "stated": Role(measure="years", one_of="age"),
    },
    as_of=True,
)
def age(as_of: dt.date, birth_date: dt.date | None, stated: Measure | None) -> Result | Unknown:
    """Age on the screening date in completed years: from the birth date, else the stated age
    (65.5 years is 65 completed years for every criterion, as a birth date gives it)."""
    if birth_date is not None:
        years = age_on(birth_date, as_of)
        return Result(Measure(years, "years", f"{years} years"), f"born {birth_date}, on {as_of}")
    if stated is not None:
        years = completed_years(stated)
        if stated.display_unit == "years" and units.compare(stated.magnitude, years) == 0:
            return Result(stated, "as stated")
        return Result(
            Measure(years, "years", f"{years} years"),
            f"completed years of the stated {stated.written}",
        )
    return Unknown("birth date (or age) not recorded", ("birth_date",))


@formula(
    "cockcroft_gault",
    unit="ml/min",
    estimate="a Cockcroft–Gault estimate",
    equation="(140 − age[years]) × weight[kg] / (72 × creatinine[mg/dL]), × 0.85 for women, "
    "in mL/min",
    source="Cockcroft DW, Gault MH. Nephron 1976;16:31–41",
    roles={
        "age": Role(unit="years"),
        "weight": Role(unit="kg"),
        "sex": Role(words=("female", "male")),
        "creatinine": Role(unit="mg/dl"),
    },
)
def cockcroft_gault(age: float, weight: float, sex: str, creatinine: float) -> Result | Unknown:
    """(140 − age) × weight[kg] / (72 × creatinine[mg/dL]), × 0.85 for women, in mL/min
    (never below 0: a patient over 140 has no clearance, not a negative one)."""
    if creatinine <= 0:
        return Unknown("creatinine of zero cannot give an estimate", ("creatinine",))
    estimate = (140 - age) * weight / (72 * creatinine) * (0.85 if sex == "female" else 1.0)
    return Result(
        max(estimate, 0.0),
        f"Cockcroft–Gault estimate: age {units.fmt(age)}, {units.fmt(weight)} kg, "
        f"{sex}, creatinine {units.fmt(creatinine)} mg/dL",
    )


@formula(
    "ckd_epi_2021",
    unit="ml/min/1.73m2",
    estimate="a CKD-EPI 2021 eGFR",
    equation="142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^−1.200 × 0.9938^age × 1.012 if female; "
    "Scr in mg/dL, κ 0.7 (female) or 0.9 (male), α −0.241 (female) or −0.302 (male); "
    "adults (18 and older) only; in mL/min/1.73 m²",
    source="Inker LA et al. New creatinine- and cystatin C-based equations to estimate GFR "
    "without race. N Engl J Med 2021;385:1737–49",
    roles={
        "age": Role(unit="years"),
        "sex": Role(words=("female", "male")),
        "creatinine": Role(unit="mg/dl"),
    },
)
def ckd_epi_2021(age: float, sex: str, creatinine: float) -> Result | Unknown:
    """The race-free CKD-EPI 2021 creatinine equation (Inker 2021), for adults:

    eGFR = 142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^−1.200 × 0.9938^age × 1.012 [female],
    κ = 0.7 (F) / 0.9 (M), α = −0.241 (F) / −0.302 (M), Scr in mg/dL."""
    if not _adult(age):
        return Unknown(
            f"the CKD-EPI 2021 equation is for adults (18 and older), and the patient is "
            f"{units.fmt(age)} years: a child's eGFR is labs.egfr_schwartz"
        )
    if creatinine <= 0:
        return Unknown("creatinine of zero cannot give an estimate", ("creatinine",))
    female = sex == "female"
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine / kappa
    egfr = (
        142
        * min(ratio, 1.0) ** alpha
        * max(ratio, 1.0) ** -1.200
        * 0.9938**age
        * (1.012 if female else 1.0)
    )
    return Result(
        egfr,
        f"CKD-EPI 2021: age {units.fmt(age)}, {sex}, creatinine {units.fmt(creatinine)} mg/dL",
    )


@formula(
    "schwartz_bedside",
    unit="ml/min/1.73m2",
    estimate="a bedside Schwartz eGFR",
    equation="0.413 × height[cm] / creatinine[mg/dL], for children (under 18) only; "
    "in mL/min/1.73 m²",
    source="Schwartz GJ et al. New equations to estimate GFR in children with CKD. "
    "J Am Soc Nephrol 2009;20:629–37",
    roles={
        "age": Role(unit="years"),
        "height": Role(unit="cm"),
        "creatinine": Role(unit="mg/dl"),
    },
)
def schwartz_bedside(age: float, height: float, creatinine: float) -> Result | Unknown:
    """The bedside Schwartz equation (Schwartz 2009), for children: 0.413 × height[cm] /
    Scr[mg/dL] (enzymatic creatinine)."""
    if _adult(age):
        return Unknown(
            f"the bedside Schwartz equation is for children (under 18), and the patient is "
            f"{units.fmt(age)} years: an adult's eGFR is labs.egfr (CKD-EPI 2021)"
        )
    if creatinine <= 0:
        return Unknown("creatinine of zero cannot give an estimate", ("creatinine",))
    return Result(
        0.413 * height / creatinine,
        f"bedside Schwartz: 0.413 × {units.fmt(height)} cm / {units.fmt(creatinine)} mg/dL",
    )


@formula(
    "bmi",
    unit="kg/m2",
    estimate="a body mass index",
    equation="weight[kg] / height[m]², in kg/m²",
    source="Quetelet's index; WHO Technical Report Series 894 (2000)",
    roles={"weight": Role(unit="kg"), "height": Role(unit="m")},
)
def bmi(weight: float, height: float) -> Result | Unknown:
    """Body mass index: weight[kg] / height[m]²."""
    return Result(weight / height**2, f"{units.fmt(weight)} kg / ({units.fmt(height)} m)²")


@formula(
    "bsa_mosteller",
    unit="m2",
    estimate="a body surface area",
    equation="Mosteller: √(height[cm] × weight[kg] / 3600), in m²",
    source="Mosteller RD. Simplified calculation of body-surface area. N Engl J Med 1987;317:1098",
    roles={"height": Role(unit="cm"), "weight": Role(unit="kg")},
)
def bsa_mosteller(height: float, weight: float) -> Result | Unknown:
    """Body surface area by Mosteller: √(height[cm] × weight[kg] / 3600)."""
    return Result(
        math.sqrt(height * weight / 3600),
        f"Mosteller: √({units.fmt(height)} cm × {units.fmt(weight)} kg / 3600)",
    )


@formula(
    "per_1_73_m2",
    unit="ml/min/1.73m2",
    estimate="a clearance normalised to 1.73 m²",
    equation="clearance[mL/min] × 1.73 / BSA[m²], in mL/min/1.73 m²",
    source="the convention of reporting GFR per 1.73 m² of body surface area (KDIGO 2012)",
    roles={"clearance": Role(unit="ml/min", explained=True), "bsa": Role(unit="m2")},
)
def per_1_73_m2(clearance: float, bsa: float) -> Result | Unknown:
    """A clearance in mL/min as mL/min per 1.73 m² of body surface area: × 1.73 / BSA."""
    return Result(
        clearance * 1.73 / bsa,
        f"{units.fmt(clearance)} mL/min × 1.73 m² / BSA {units.fmt(bsa)} m²",
    )


@formula(
    "count_from_differential",
    unit="10^9/l",
    estimate="a count from the white count and differential",
    equation="white count[×10⁹/L] × differential[%] / 100, in ×10⁹/L",
    source="the definition of an absolute count from a leukocyte differential",
    roles={"wbc": Role(unit="10^9/l"), "percent": Role(unit="%")},
)
def count_from_differential(wbc: float, percent: float) -> Result | Unknown:
    """An absolute count from the white count and its differential: WBC × fraction."""
    return Result(
        wbc * percent / 100,
        f"white count {units.fmt(wbc)} ×10⁹/L × {units.fmt(percent)} % of the differential",
    )


@formula(
    "remaining_at",
    unit="days",
    estimate="what remains of a span at a later date",
    equation="the span estimated at screening less the days from screening to the later "
    "date (a trial event: enrolment, infusion, …); without that date, the span as "
    "estimated at screening, and the note says so",
    source="the criterion's own timing (life expectancy ≥ 8 weeks at the time of enrollment)",
    roles={"span": Role(measure="days"), "at": Role(date=True, one_of="at")},
    as_of=True,
    labels=True,
)
def remaining_at(
    as_of: dt.date, span: Measure, at: dt.date | None, labels: dict[str, str]
) -> Result | Unknown:
    """A span estimated at screening (a life expectancy), as it stands at a later date: the
    estimate less the days between. Where the record has no such date the screening date
    stands in, and the note says so, for a reader to see the reading."""
    event = labels["at"]
    if at is None:
        return Result(
            span, f"as estimated at screening, {as_of}: no {event} recorded, screening stands in"
        )
    if at < as_of:
        return Unknown(f"the {event} {at} is before the screening date {as_of}", ("at",))
    elapsed = (at - as_of).days
    left = units.convert(span, "days") - elapsed
    return Result(
        Measure(left, "days", f"{units.fmt(left)} days"),
        f"{span.written} estimated at screening, {as_of}, less {elapsed} days to the {event}, {at}",
    )


# ------------------------------------------------------------------------------ checking


def _value_spec(spec: v.Spec) -> v.Spec:
    return spec.value if isinstance(spec, v.Lab) else spec


def _fits(role: Role, spec: v.Spec) -> bool:
    inner = _value_spec(spec)
    if role.unit or role.measure:
        if not isinstance(inner, v.Quantity):
            return False
        try:
            units.check_kind(role.unit or role.measure, inner.kind, inner.analyte)
        except units.UnitError:
            return False
        return True
    if role.words:
        return isinstance(spec, v.Choice) and set(role.words) <= set(spec.values)
    return isinstance(spec, v.Date)


def check(vocabulary: v.Vocabulary) -> None:
    """Refuse a derived value whose formula is not registered, whose inputs are not the
    formula's roles, or whose fields do not fit them; a RuleSetError at the declaration."""
    for d in vocabulary.derivations.values():
        _check_one(vocabulary, d)


def _check_one(vocabulary: v.Vocabulary, d: v.Derived) -> None:
    origin = vocabulary.origins[f"derived:{d.path}"]

    def fail(message: str, key: tuple[Any, ...], hint: str | None = None) -> RuleSetError:
        at = origin.at + key
        return RuleSetError(origin.locate(f"{d.path}: {message}", at, key=True, hint=hint))

    found = FORMULAS.get(d.formula)
    if found is None:
        raise fail(
            f"unknown formula {d.formula!r}", ("formula",), f"one of: {', '.join(sorted(FORMULAS))}"
        )
    given = dict(d.inputs)
    for role in found.roles:
        if role not in given:
            raise fail(
                f"formula {d.formula} needs the input {role!r}",
                ("inputs",),
                f"its inputs: {', '.join(found.roles)}",
            )
    for role, path in d.inputs:
        want = found.roles.get(role)
        if want is None:
            raise fail(
                f"formula {d.formula} has no input {role!r}",
                ("inputs", role),
                f"its inputs: {', '.join(found.roles)}",
            )
        spec = vocabulary.resolve(path)
        assert spec is not None  # the vocabulary checked the path
        if not _fits(want, spec):
            raise fail(f"input {role} needs {want.takes()}, and {path} is not", ("inputs", role))
    inner = _value_spec(d.spec)
    try:
        if not isinstance(inner, v.Quantity):
            raise units.UnitError("a derived value is a quantity or a lab with a unit")
        units.check_kind(found.unit, inner.kind, inner.analyte)
    except units.UnitError as exc:
        raise fail(
            f"formula {d.formula} gives {units.SPELLINGS[found.unit][1]}: {exc}", ()
        ) from None


check(v.BUILTIN)  # a bad built-in declaration fails at start-up, not in a screening
