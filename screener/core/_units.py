"""Clinical quantities: the units a lab report writes, checked and converted safely.

Policy, in one place:

* **Accepted spellings only.** A unit is looked up in `SPELLINGS` before pint ever sees it.
  pint parses unit strings as arithmetic (`10*9/L` is 90 per litre, `10^9` an exponent),
  and knows offset units such as degC that break multiplication; neither can reach it here.
* **One registry**, used at development time: pint computes each accepted unit's
  dimensionality and factor to SI base units, and that small table ships in the package
  (`_unit_table.py`, `table()`), so a run never imports pint, reads no cache, and every
  conversion is one cached multiplication.
* **Mass and molar concentrations** convert only through the molar mass of the analyte a
  field measures (bilirubin 584.66 g/mol, creatinine 113.12 g/mol); a field without a molar
  mass accepts no molar unit, so nothing ever converts across analytes.
* **Boundaries.** Comparisons are made in the threshold's unit. A value whose conversion
  lands within a relative 1e-9 of the threshold counts as equal to it, so `≤ 1.6 mg/dL`
  holds for exactly 1.6 mg/dL however it was written, and a float rounding of a conversion
  factor can never turn an equality into a failure.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from typing import TYPE_CHECKING

from screener.core import _reference as reference
from screener.core._errors import clip, describe_value
from screener.core._memo import keep

if TYPE_CHECKING:  # pragma: no cover
    import pint

REL_TOL = 1e-9
# No clinical quantity needs more digits; below this every conversion between accepted
# units (factors of at most ~1e5) stays finite, so 1e300 months cannot become inf later.
MAX_MAGNITUDE = 1e15

# written spelling (lower case, micro sign folded to "u") -> (pint expression, display form)
SPELLINGS: dict[str, tuple[str, str]] = {
    "mg/dl": ("milligram / deciliter", "mg/dL"),
    "mg/l": ("milligram / liter", "mg/L"),
    "g/dl": ("gram / deciliter", "g/dL"),
    "g/l": ("gram / liter", "g/L"),
    "umol/l": ("micromole / liter", "µmol/L"),
    # Pharmacy style writes micro as mc (mcg, mcmol) or in full; same unit, same magnitude.
    "mcmol/l": ("micromole / liter", "µmol/L"),
    "micromol/l": ("micromole / liter", "µmol/L"),
    "mmol/l": ("millimole / liter", "mmol/L"),
    "u/l": ("enzyme_unit / liter", "U/L"),
    # The international unit of enzyme activity is the same µmol/min as U.
    "iu/l": ("enzyme_unit / liter", "IU/L"),
    "%": ("percent", "%"),
    "percent": ("percent", "%"),
    "s": ("second", "s"),
    "sec": ("second", "s"),
    "seconds": ("second", "s"),
    "kg": ("kilogram", "kg"),
    "g": ("gram", "g"),
    "lb": ("pound", "lb"),
    "lbs": ("pound", "lb"),
    "ml/min": ("milliliter / minute", "mL/min"),
    # A clearance per 1.73 m² of body surface area (eGFR): its own dimension (a flow per
    # area), so a plain mL/min never compares with it; only a formula through the BSA
    # (reading/_formulas.py) turns one into the other.
    "ml/min/1.73m2": ("milliliter / minute / (1.73 * meter ** 2)", "mL/min/1.73 m²"),
    "ml/min/1.73m²": ("milliliter / minute / (1.73 * meter ** 2)", "mL/min/1.73 m²"),
    "ml/min/1.73m^2": ("milliliter / minute / (1.73 * meter ** 2)", "mL/min/1.73 m²"),
    # Body mass index and body surface area.
    "kg/m2": ("kilogram / meter ** 2", "kg/m²"),
    "kg/m²": ("kilogram / meter ** 2", "kg/m²"),
    "m2": ("meter ** 2", "m²"),
    "m²": ("meter ** 2", "m²"),
    # Cells per volume, as blood counts write them: 10⁹/L = 10³/µL = one per nanolitre.
    # (G/L, giga per litre in UCUM, is not accepted: folded to lower case it would read as
    # grams per litre, which a count field refuses as the wrong kind.)
    "10^9/l": ("1 / nanoliter", "×10⁹/L"),
    "10*9/l": ("1 / nanoliter", "×10⁹/L"),
    "x10^9/l": ("1 / nanoliter", "×10⁹/L"),
    "×10^9/l": ("1 / nanoliter", "×10⁹/L"),
    "10⁹/l": ("1 / nanoliter", "×10⁹/L"),
    "x10⁹/l": ("1 / nanoliter", "×10⁹/L"),
    "×10⁹/l": ("1 / nanoliter", "×10⁹/L"),
    "10^3/ul": ("1 / nanoliter", "×10³/µL"),
    "10*3/ul": ("1 / nanoliter", "×10³/µL"),
    "x10^3/ul": ("1 / nanoliter", "×10³/µL"),
    "×10^3/ul": ("1 / nanoliter", "×10³/µL"),
    "10³/ul": ("1 / nanoliter", "×10³/µL"),
    "×10³/ul": ("1 / nanoliter", "×10³/µL"),
    "k/ul": ("1 / nanoliter", "K/µL"),
    "/ul": ("1 / microliter", "/µL"),
    "cells/ul": ("1 / microliter", "cells/µL"),
    "/mm3": ("1 / millimeter ** 3", "/mm³"),
    "/mm³": ("1 / millimeter ** 3", "/mm³"),
    # More ways lab systems write the same counts (UCUM's * for the power with an x).
    "x10*9/l": ("1 / nanoliter", "×10⁹/L"),
    "×10*9/l": ("1 / nanoliter", "×10⁹/L"),
    "x10*3/ul": ("1 / nanoliter", "×10³/µL"),
    "×10*3/ul": ("1 / nanoliter", "×10³/µL"),
    "/mm^3": ("1 / millimeter ** 3", "/mm³"),
    "cells/mm3": ("1 / millimeter ** 3", "cells/mm³"),
    "cells/mm³": ("1 / millimeter ** 3", "cells/mm³"),
    # Blood pressure, height, ECG intervals.
    "mmhg": ("millimeter_Hg", "mmHg"),
    "cm": ("centimeter", "cm"),
    "m": ("meter", "m"),
    "in": ("inch", "in"),
    "ms": ("millisecond", "ms"),
    "msec": ("millisecond", "ms"),
    # HbA1c as the IFCC reports it. A ratio like %, but not a multiple of the NGSP %: it
    # converts only through HbA1c's master equation (Analyte.affine), and no other field
    # accepts it (check_kind).
    "mmol/mol": ("millimole / mole", "mmol/mol"),
    "day": ("day", "days"),
    "days": ("day", "days"),
    "d": ("day", "days"),
    "week": ("week", "weeks"),
    "weeks": ("week", "weeks"),
    "wk": ("week", "weeks"),
    "wks": ("week", "weeks"),
    "month": ("month", "months"),
    "months": ("month", "months"),
    "mo": ("month", "months"),
    "year": ("year", "years"),
    "years": ("year", "years"),
    "yr": ("year", "years"),
    "yrs": ("year", "years"),
    "y": ("year", "years"),
}

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*(.*?)\s*$")
_DECIMAL_COMMA = re.compile(rf"^\s*{_NUMBER},\d")
# 75 000/µL: digits in groups of three after a space, as many labs print thousands
_SPACED_THOUSANDS = re.compile(r"^\s*\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?!\d)")
_SEPARATED = re.compile(r"^\s*([+-]?[\d.,\u00a0\u202f ']*\d)")  # the number part, separators too


def _readings(text: str) -> str:
    """What a number written with a comma could mean, both ways, for the refusal's hint:
    75,000 is 75000 with a thousands separator or 75.000 with a decimal comma."""
    match = _SEPARATED.match(text)
    number = match.group(1).strip() if match else text
    if number.count(",") == 1 and "." not in number:
        whole, part = number.split(",")
        if len(part) == 3:  # the one case a reader cannot tell apart
            return (
                f"{number} is {whole}{part} if the comma separates thousands, or "
                f"{whole}.{part} if it is a decimal comma: write the number as the "
                f"lab meant it, with a decimal point and no separators"
            )
        return f"use a decimal point: {whole}.{part}, not {number}"
    return f"write {number} with a decimal point and no thousands separators"


@dataclass(frozen=True)
class Kind:
    """A kind of quantity a field holds, given by units of that kind (their dimensions)."""

    name: str  # "a concentration", said in errors
    references: tuple[str, ...]  # SPELLINGS keys whose dimensions the kind accepts
    example: str
    # The only units (displayed forms) accepted, where the dimension alone would let in
    # nonsense: a QTc of 450 days is a time, but not an ECG interval.
    only: tuple[str, ...] = ()

    @cached_property  # asked for every quantity a patient file holds
    def dimensions(self) -> frozenset[str]:
        return frozenset(dimension_of(u) for u in self.references)


CONCENTRATION = Kind("a concentration", ("mg/dl", "umol/l"), "1.1 mg/dL")
ENZYME = Kind("an enzyme activity", ("u/l",), "40 U/L")
FRACTION = Kind("a percentage", ("%",), "55 %")
MASS = Kind("a mass", ("kg",), "62 kg")
DURATION = Kind("a duration", ("days",), "6 months")
SECONDS = Kind("a time in seconds", ("s",), "34 s")
FLOW = Kind("a clearance rate", ("ml/min",), "78 mL/min")
COUNT = Kind("a cell count", ("10^9/l",), "150 ×10⁹/L")
PRESSURE = Kind("a blood pressure", ("mmhg",), "120 mmHg")
LENGTH = Kind("a length", ("cm",), "170 cm")
INTERVAL = Kind("an ECG interval", ("ms",), "450 ms", only=("ms", "s"))
NORMALISED_FLOW = Kind("a clearance per 1.73 m²", ("ml/min/1.73m2",), "90 mL/min/1.73 m²")
BMI = Kind("a body mass index", ("kg/m2",), "22 kg/m²")
AREA = Kind("a body surface area", ("m2",), "1.8 m²")
# The unit kinds a vocabulary declaration names (`unit: concentration`).
KINDS = {
    "concentration": CONCENTRATION,
    "enzyme": ENZYME,
    "fraction": FRACTION,
    "mass": MASS,
    "duration": DURATION,
    "seconds": SECONDS,
    "flow": FLOW,
    "count": COUNT,
    "pressure": PRESSURE,
    "length": LENGTH,
    "interval": INTERVAL,
    "normalised_flow": NORMALISED_FLOW,
    "bmi": BMI,
    "area": AREA,
}

_KIND_NAMES = {
    "mg/dl": "a mass concentration",
    "umol/l": "a molar concentration",
    "u/l": "an enzyme activity",
    "%": "a percentage",
    "kg": "a mass",
    "days": "a duration",
    "ml/min": "a flow rate",
    "10^9/l": "a cell count",
    "mmhg": "a pressure",
    "cm": "a length",
    "ml/min/1.73m2": "a clearance per 1.73 m²",
    "kg/m2": "a body mass index",
    "m2": "an area",
}


def kind_name(unit: str) -> str:
    """What a unit measures, in words, for error messages."""
    dimension = dimension_of(unit)
    for example, name in _KIND_NAMES.items():
        if dimension_of(example) == dimension:
            return name
    return dimension


@dataclass(frozen=True)
class Analyte:
    """What a lab measures; only an analyte with a molar mass converts mass <-> molar."""

    name: str
    molar_mass: float | None = None  # g/mol
    # Units of this analyte related by a line, not a factor: (from, to, slope, intercept),
    # to = slope × from + intercept (HbA1c: IFCC mmol/mol and NGSP %).
    affine: tuple[tuple[str, str, float, float], ...] = ()

    def line(self, source: str, target: str) -> tuple[float, float] | None:
        # by the unit, whatever its spelling: `6.0 percent` is HbA1c in %, on the line too
        for a, b, slope, intercept in self.affine:
            if same_unit(a, source) and same_unit(b, target):
                return slope, intercept
        return None


def same_unit(a: str, b: str) -> bool:
    """Two accepted spellings (SPELLINGS keys) of one unit: `%` and `percent`."""
    return a == b or SPELLINGS[a][0] == SPELLINGS[b][0]


_MOLAR_MASS = reference.values("molar_mass")
BILIRUBIN = Analyte("bilirubin", float(_MOLAR_MASS["bilirubin"]))
CREATININE = Analyte("creatinine", float(_MOLAR_MASS["creatinine"]))
HAEMOGLOBIN = Analyte("haemoglobin", float(_MOLAR_MASS["haemoglobin"]))
GLUCOSE = Analyte("glucose", float(_MOLAR_MASS["glucose"]))
POTASSIUM = Analyte("potassium", float(_MOLAR_MASS["potassium"]))
ALBUMIN = Analyte("albumin")  # reported by mass only: no molar unit is accepted
_MASTER = reference.values("hba1c_master_equation")
_SLOPE, _INTERCEPT = float(_MASTER["slope"]), float(_MASTER["intercept"])
HBA1C = Analyte(
    "hba1c",
    affine=(
        ("mmol/mol", "%", _SLOPE, _INTERCEPT),
        ("%", "mmol/mol", 1 / _SLOPE, -_INTERCEPT / _SLOPE),
    ),
)
# Units that belong to one analyte's affine pair and to no other field.
_AFFINE_ONLY = frozenset({"mmol/mol"})
# The analytes a vocabulary declaration names (`analyte: creatinine`), by name.
ANALYTES = {
    a.name: a for a in (BILIRUBIN, CREATININE, HAEMOGLOBIN, GLUCOSE, POTASSIUM, ALBUMIN, HBA1C)
}


@dataclass(frozen=True)
class Measure:
    """A number with an accepted unit, and the text exactly as the file wrote it."""

    magnitude: float
    unit: str  # a key of SPELLINGS
    written: str

    @property
    def display_unit(self) -> str:
        return SPELLINGS[self.unit][1]

    def __str__(self) -> str:
        return self.written


class UnitError(ValueError):
    """A quantity that cannot be read, or is of the wrong kind; the message says why."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def normalise_unit(text: str) -> str:
    return text.replace("\u00b5", "u").replace("\u03bc", "u").replace(" ", "").lower()


@lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry:
    """The program's only pint registry, used only to compute the unit table.

    Built without pint's definition cache: that cache is a pickle in the user's cache
    folder, which anyone who can write there could make run code, and a truncated one
    broke every later run until deleted by hand.
    """
    import pint

    return pint.UnitRegistry()


@lru_cache(maxsize=1)
def table() -> dict[str, tuple[str, float]]:
    """Each accepted unit's dimensionality and factor to SI base units, as pint computes them.

    Importing pint and building its registry is most of a single check's start-up, and the
    answers for a fixed list of spellings never change. So the table is computed when
    screener is developed (`python tools/unit_table.py`) and shipped in the package
    (`_unit_table.py`). The shipped table is the fast twin of `_table_from_pint`, behind
    this one function: tests/test_units.py checks the two are equal. Nothing is cached at
    run time, so no file outside the package can change a verdict. Should the spellings
    ever differ from the shipped table's (an edit without regenerating it), pint computes
    the table in memory for this run.
    """
    from screener.core._unit_table import TABLE

    if set(TABLE) == set(SPELLINGS) | {_MOLAR_MASS_UNIT}:
        return dict(TABLE)
    return _table_from_pint()


_MOLAR_MASS_UNIT = "gram / mole"


def _table_from_pint() -> dict[str, tuple[str, float]]:
    ureg = registry()
    found = {}
    for unit, (expression, _) in SPELLINGS.items():
        # Parsed as an expression, not a unit: mL/min/1.73 m² carries a number. Only these
        # fixed expressions reach pint this way, at development time, never a file's text.
        base = (1.0 * ureg.parse_expression(expression)).to_base_units()
        found[unit] = (str(base.dimensionality), float(base.magnitude))
    mass = ureg.Quantity(1.0, _MOLAR_MASS_UNIT).to_base_units()
    found[_MOLAR_MASS_UNIT] = (str(mass.dimensionality), float(mass.magnitude))
    return found


def dimension_of(unit: str) -> str:
    return table()[unit][0]


def split_quantity(text: str, kind: Kind | None = None) -> tuple[float, str]:
    """Split `1.4 mg/dL` into (1.4, "mg/dl"); the unit is "" for a bare number.

    `kind`, the field's kind when known, narrows the hint for a unit not accepted (an
    error is never kept, so the same text read for two kinds gets each its own hint)."""
    found = _SPLIT.get(text)
    if found is None:
        found = keep(_SPLIT, text, _split(text, kind), 4096)
    return found


# Quantities read before, by their text: a cohort repeats most of its values and units.
_SPLIT: dict[str, tuple[float, str]] = {}


def _split(text: str, kind: Kind | None = None) -> tuple[float, str]:
    if _DECIMAL_COMMA.match(text):
        raise UnitError(f"cannot read {clip(text)!r} as a quantity", _readings(clip(text)))
    if spaced := _SPACED_THOUSANDS.match(text):
        number = spaced.group().strip()
        joined = re.sub(r"\D", "", number)
        raise UnitError(
            f"cannot read {clip(text)!r} as a quantity",
            f"if {number} is {joined} with spaces between the thousands, write {joined}",
        )
    match = _QUANTITY.match(text)
    if not match:
        raise UnitError(
            f"cannot read {clip(text)!r} as a number with a unit",
            "write it as a lab report does, e.g. 1.4 mg/dL",
        )
    number, unit = match.groups()
    magnitude = float(number)
    if not math.isfinite(magnitude):
        raise UnitError(f"{clip(text)!r} is not a finite number")
    if abs(magnitude) > MAX_MAGNITUDE:
        raise UnitError(f"{clip(text)!r} is too large to be a measurement")
    if not unit:
        return magnitude, ""
    key = normalise_unit(unit)
    if key not in SPELLINGS:
        guess = unit_hint(unit, kind)
        hint = f"did you mean {guess!r}?" if guess else None
        raise UnitError(f"unknown unit {clip(unit)!r}", hint)
    return magnitude, key


# SI prefixes as lab reports spell them, by the power of ten they scale by, and base units
# by what they measure.
_PREFIXES = {
    "": 0,
    "k": 3,
    "kilo": 3,
    "d": -1,
    "deci": -1,
    "c": -2,
    "centi": -2,
    "m": -3,
    "milli": -3,
    "u": -6,
    "mc": -6,
    "micro": -6,
    "mikro": -6,
    "n": -9,
    "nano": -9,
    "p": -12,
    "pico": -12,
}
_BASES = {
    "moles": "mol",
    "mole": "mol",
    "mols": "mol",
    "mol": "mol",
    "grams": "g",
    "gram": "g",
    "g": "g",
    "liters": "l",
    "litres": "l",
    "liter": "l",
    "litre": "l",
    "l": "l",
    "iu": "u",
    "u": "u",
}


def _prefixed(unit: str) -> list[tuple[int, str]] | None:
    """A unit as prefixed base units, numerator first: mg/dL is [(-3, "g"), (-1, "l")];
    None for anything else (lb, %, misspellings)."""
    parts = normalise_unit(unit).split("/")
    if len(parts) > 2:
        return None
    found = []
    for part in parts:
        for base in sorted(_BASES, key=len, reverse=True):
            if part.endswith(base) and part[: -len(base)] in _PREFIXES:
                found.append((_PREFIXES[part[: -len(base)]], _BASES[base]))
                break
        else:
            return None
    return found


def _scale(unit: str) -> tuple[int, tuple[str, ...]] | None:
    """The power of ten a unit's prefixes add up to (mg/dL: -3 - -1 = -2) and its base units,
    if it reads as prefixed base units at all; None for anything else (lb, %, misspellings)."""
    parts = _prefixed(unit)
    if parts is None:
        return None
    power = sum(p if i == 0 else -p for i, (p, _) in enumerate(parts))
    return power, tuple(base for _, base in parts)


# A unit written with micro's prefix, however spelt (µ, u, mc, micro, mikro, micr…): a
# misspelling of it still means micro, so a hint offers only a micro unit. (UI/L, French for
# IU/L, is not micro.)
_MICRO = re.compile(r"(u(?=[mgl])|mc|mi[ck]r)")
# Molar concentration, case kept (µM, mM): micromolar is µmol/L, the same magnitude.
_MOLAR = re.compile(r"(\u00b5|\u03bc|u|mc|micro|mikro|m|milli|n|nano|p|pico)?M")


def unit_hint(unit: str, kind: Kind | None = None) -> str | None:
    """The accepted unit a misspelt one most likely means, never one of another magnitude
    or, for a field of a known `kind`, of another kind.

    A did-you-mean that changes a prefix (nmol/L -> µmol/L, mcg/dL -> mg/dL, U/mL -> U/L,
    micromols/L -> mmol/L) would invite a nurse to rewrite the value a thousandfold wrong;
    so a unit that reads as prefixed units is offered only the accepted one with the same
    power of ten and base units (micromoles/L, micromols/L, mikromol/L -> µmol/L; µM, the
    molar concentration, -> µmol/L), if any; one written with micro's prefix but otherwise
    misspelt (mcmmol/L, umo/L) only a micro unit; and none of another dimension (µM is not
    metres).
    """
    import difflib

    # Each accepted unit by its display, compared as spellings are (µ folded, no spaces).
    displays = {normalise_unit(d): d for _, d in SPELLINGS.values()}

    def fits(display: str) -> bool:
        return kind is None or dimension_of(normalise_unit(display)) in kind.dimensions

    molar = _MOLAR.fullmatch(unit.strip())
    written = _scale(f"{molar.group(1) or ''}mol/l") if molar else _scale(unit)
    if written is not None:  # micromoles/L is µmol/L however unlike it looks
        same = [d for d in displays.values() if _scale(d) == written and fits(d)]
        if same:
            return same[0]
        if molar:
            return None
    micro = _MICRO.match(normalise_unit(unit))
    if micro and written is not None:
        return None  # µmol/dL, µg/L: read, but no accepted unit of that size and kind
    # What follows micro's prefix starts its base unit ("umo/L": m, for mol; "ugg/L": g).
    base = normalise_unit(unit)[micro.end() :][:1] if micro else ""
    for match in difflib.get_close_matches(
        normalise_unit(unit), list(displays), n=len(displays), cutoff=0.6
    ):
        if not fits(displays[match]):
            continue
        parts = _prefixed(match)
        if micro:
            if parts is not None and parts[0][0] == -6 and parts[0][1][:1] == base:
                return displays[match]
            continue
        # A misspelling (mgdl) may mean a prefixed unit, unless it writes a factor of its
        # own (mg/100mL is mg/dL, not mg/L).
        if parts is None or (written is None and not any(c.isdigit() for c in unit)):
            return displays[match]
    return None


def parse_measure(
    value: object,
    kind: Kind,
    analyte: Analyte | None = None,
    aliases: Mapping[str, str] | None = None,
) -> Measure:
    """Read a written quantity for a field of `kind`, refusing units of another kind.

    `aliases` are a vocabulary extension's spellings of accepted units (normalised
    spelling -> SPELLINGS key); the text stays as written."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UnitError(
            f"expected {kind.name} such as {kind.example!r}, got {describe_value(value)}"
        )
    text = str(value)
    if aliases:
        match = _QUANTITY.match(text)
        meant = aliases.get(normalise_unit(match.group(2))) if match else None
        if meant is not None:
            assert match is not None
            magnitude, unit = split_quantity(f"{match.group(1)} {meant}")
            check_kind(unit, kind, analyte)
            return Measure(magnitude, unit, text.strip())
    magnitude, unit = split_quantity(text, kind)
    if not unit:
        raise UnitError(
            f"{clip(text)!r} has no unit; expected {kind.name} such as {kind.example!r}"
        )
    if unit == "g/l" and _GIGA.search(text):
        unit = _giga_per_litre(kind)
    check_kind(unit, kind, analyte)
    return Measure(magnitude, unit, text.strip())


# `150 G/L`: on French and Belgian lab reports G is giga, so G/L is 10⁹/L (a count; strict
# UCUM would read gauss per litre); folding case would read it as grams per litre. Written
# so, it is a count where a count is expected, and refused elsewhere, where a capitalised
# g/L is as likely.
_GIGA = re.compile(r"G/[Ll]\s*\Z")


def _giga_per_litre(kind: Kind) -> str:
    if dimension_of("10^9/l") in kind.dimensions:
        return "10^9/l"
    raise UnitError(
        f"G/L is giga per litre (10⁹/L, a cell count), not {kind.name}",
        "write g/L for grams per litre",
    )


def check_kind(unit: str, kind: Kind, analyte: Analyte | None = None) -> None:
    dimension = dimension_of(unit)
    display = SPELLINGS[unit][1]
    if unit in _AFFINE_ONLY and (
        analyte is None or not any(unit in pair[:2] for pair in analyte.affine)
    ):
        raise UnitError(f"{display} is a unit of HbA1c (IFCC), not {kind.name}")
    if dimension not in kind.dimensions:
        raise UnitError(
            f"{display} is {kind_name(unit)}; expected {kind.name} such as {kind.example!r}"
        )
    if dimension == dimension_of("umol/l") and (analyte is None or analyte.molar_mass is None):
        what = analyte.name if analyte else "this field"
        raise UnitError(
            f"{display} is a molar unit, but no molar mass is known for {what}",
            "use a mass unit such as mg/dL",
        )
    if kind is SECONDS and display != "s":
        raise UnitError(f"{display} is not a unit for a clotting time; expected seconds (s)")
    if kind.only and display not in kind.only:
        raise UnitError(
            f"{display} is not a unit for {kind.name}; expected {' or '.join(kind.only)}"
        )


@cache
def factor(source: str, target: str, molar_mass: float | None = None) -> float:
    """Multiply a magnitude in unit `source` by this to express it in `target`.

    Through SI base units; between a molar and a mass concentration only with the molar
    mass of the analyte measured (in g/mol), never otherwise.
    """
    known = table()
    (source_dim, to_base), (target_dim, from_base) = known[source], known[target]
    value = to_base
    if source_dim != target_dim:
        molar, mass = dimension_of("umol/l"), dimension_of("mg/dl")
        if molar_mass is None or {source_dim, target_dim} != {molar, mass}:
            raise UnitError(f"cannot convert {SPELLINGS[source][1]} to {SPELLINGS[target][1]}")
        grams_per_mole = molar_mass * known[_MOLAR_MASS_UNIT][1]
        value = value * grams_per_mole if source_dim == molar else value / grams_per_mole
    return value / from_base


def convert(measure: Measure, target: str, analyte: Analyte | None = None) -> float:
    if measure.unit == target:
        return measure.magnitude
    if analyte is not None and analyte.affine:
        line = analyte.line(measure.unit, target)
        if line is not None:
            return measure.magnitude * line[0] + line[1]
    mass = analyte.molar_mass if analyte else None
    return measure.magnitude * factor(measure.unit, target, mass)


def convert_amount(
    amount: float, source: str, target: str, analyte: Analyte | None = None
) -> float:
    """`convert` for a bare number in unit `source`: a limit shown in the unit a value was
    written in (through an analyte's line where it has one, HbA1c's % and mmol/mol)."""
    return convert(Measure(amount, source, ""), target, analyte)


def compare(a: float, b: float) -> int:
    """-1, 0 or 1 as a is below, at or above b, with the documented boundary tolerance."""
    if math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0):
        return 0
    return -1 if a < b else 1


@lru_cache(maxsize=4096, typed=True)  # thresholds and common values recur across patients
def fmt(x: float, digits: int = 3) -> str:
    """A number as a nurse would read it: a few significant digits, no float noise."""
    if x == 0:
        return "0"
    if float(x).is_integer() and abs(x) < 1e9:
        return str(int(x))
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(digits - 1 - magnitude, 0)
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fmt_pair(x: float, threshold: float, digits: int = 3) -> tuple[str, str]:
    """Format a value and a threshold with enough digits that the printed numbers stand in
    the order the values do: unequal ones never look equal, and a value just below a
    threshold never prints above it."""
    order = compare(x, threshold)
    for more in range(digits, 16):
        a, b = fmt(x, more), fmt(threshold, more)
        printed = 0 if a == b else (float(a) > float(b)) - (float(a) < float(b))
        if printed == order:
            return a, b
    return repr(x), repr(threshold)


def fmt_ratio(
    ratio: float, threshold: float, amount: float, uln: float, slack: float
) -> tuple[str, str]:
    """A multiple of the ULN and its limit, printed so that both relations a reason states
    visibly hold: "3.594 mg/dL = 2.995 × ULN (ULN 1.2 mg/dL) > 2 × ULN", never "= 3 × ULN",
    which reads as 3.6 mg/dL and, beside a 3 × ULN limit, as a value at that limit.

    `amount` is the value in the ULN's unit and `slack` half the last digit the value is
    shown with, in that unit: digits are added until the printed multiple times the ULN
    gives back the value as shown.
    """
    for digits in range(3, 16):
        a, b = fmt_pair(ratio, threshold, digits)
        if abs(float(a) * uln - amount) <= slack * (1 + REL_TOL):
            return a, b
    return fmt_pair(ratio, threshold)


def resolution(value: Measure | float) -> float:
    """Half the last digit a value is shown with, in its own unit (3.59 mg/dL -> 0.005), but
    no finer than its third significant digit (3.594 mg/dL -> 0.005): a multiple of the
    ULN has to give back what a reader sees, not every digit an export wrote."""
    magnitude = value.magnitude if isinstance(value, Measure) else float(value)
    text = (
        value.written.split()[0] if isinstance(value, Measure) and value.written else fmt(magnitude)
    )
    coarse = 0.5 * 10.0 ** (math.floor(math.log10(abs(magnitude))) - 2) if magnitude else 0.0
    try:
        float(text)
    except ValueError:
        return coarse
    if "e" in text.lower():
        return coarse
    decimals = len(text.split(".", 1)[1]) if "." in text else 0
    return max(0.5 * 10.0**-decimals, coarse)


def shift(day: dt.date, amount: Measure, sign: int) -> dt.date:
    """Move a date by a duration: calendar months and years, exact days and weeks.

    A shift past the calendar's ends (year 1 or 9999) stops there: a window reaching before
    year 1 holds every date, and an overflow must not crash a screening.
    """
    try:
        return _shift(day, amount, sign)
    except (OverflowError, ValueError):
        return dt.date.min if sign * amount.magnitude < 0 else dt.date.max


def _shift(day: dt.date, amount: Measure, sign: int) -> dt.date:
    base = SPELLINGS[amount.unit][0]
    if base in ("month", "year"):
        # The rule loader admits whole months and years only, so this is exact.
        months = int(amount.magnitude) * (12 if base == "year" else 1) * sign
        year, month = divmod(day.month - 1 + months, 12)
        year += day.year
        month += 1
        last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
        return dt.date(year, month, min(day.day, last))
    days = convert(amount, "days")
    return day + dt.timedelta(days=sign * days)


def whole_calendar_span(span: Measure) -> None:
    """Refuse 2.5 months: calendar arithmetic moves dates by whole months and years only."""
    if SPELLINGS[span.unit][0] in ("month", "year") and not float(span.magnitude).is_integer():
        raise UnitError(
            f"{span.written} is not a whole number of calendar months or years",
            "write it in weeks or days",
        )
