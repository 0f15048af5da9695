"""The unit table grounded in UCUM: every spelling screener accepts either names a UCUM unit,
whose conversions an independent UCUM implementation (ucumvert) must agree with, or is a
lay spelling listed here with why it is accepted.

ucumvert is used only here, not at run time: it builds its own pint registry (~1 s), and
UCUM itself would mislead a lab reader in two places kept apart in screener — `G/L` is gauss
per litre in strict UCUM (labs mean 10⁹/L; see core/_units._GIGA), and an annotation such as
`mL/min/{1.73_m2}` is dimensionless to UCUM, which would make a normalised clearance equal
to a plain one.
"""

from __future__ import annotations

import pytest

from screener.core import _units as u

ucumvert = pytest.importorskip("ucumvert")

# screener's spelling (normalised, as SPELLINGS keys it) -> its UCUM code
UCUM = {
    "mg/dl": "mg/dL",
    "mg/l": "mg/L",
    "g/dl": "g/dL",
    "g/l": "g/L",
    "umol/l": "umol/L",
    "mmol/l": "mmol/L",
    "u/l": "U/L",
    "%": "%",
    "s": "s",
    "kg": "kg",
    "g": "g",
    "lb": "[lb_av]",
    "ml/min": "mL/min",
    "10^9/l": "10*9/L",
    "10*9/l": "10*9/L",
    "10^3/ul": "10*3/uL",
    "10*3/ul": "10*3/uL",
    "/ul": "/uL",
    "/mm3": "/mm3",
    "mmhg": "mm[Hg]",
    "cm": "cm",
    "m": "m",
    "in": "[in_i]",
    "ms": "ms",
    "mmol/mol": "mmol/mol",
    "d": "d",
    "wk": "wk",
    "mo": "mo",
    "y": "a",
    "kg/m2": "kg/m2",
    "m2": "m2",
}
# Spellings that are not UCUM codes but name one of the units above, as lab reports and
# nurses write them: the unit they mean.
LAY = {
    "mcmol/l": "umol/l",
    "micromol/l": "umol/l",
    "iu/l": "u/l",  # international units of enzyme activity, read as U/L
    "percent": "%",
    "sec": "s",
    "seconds": "s",
    "lbs": "lb",
    "x10^9/l": "10^9/l",
    "×10^9/l": "10^9/l",
    "10⁹/l": "10^9/l",
    "x10⁹/l": "10^9/l",
    "×10⁹/l": "10^9/l",
    "x10*9/l": "10^9/l",
    "×10*9/l": "10^9/l",
    "x10^3/ul": "10^3/ul",
    "×10^3/ul": "10^3/ul",
    "10³/ul": "10^3/ul",
    "×10³/ul": "10^3/ul",
    "x10*3/ul": "10^3/ul",
    "×10*3/ul": "10^3/ul",
    "k/ul": "10^3/ul",
    "cells/ul": "/ul",
    "/mm³": "/mm3",
    "/mm^3": "/mm3",
    "cells/mm3": "/mm3",
    "cells/mm³": "/mm3",
    "msec": "ms",
    "day": "d",
    "days": "d",
    "week": "wk",
    "weeks": "wk",
    "wks": "wk",
    "month": "mo",
    "months": "mo",
    "year": "y",
    "years": "y",
    "yr": "y",
    "yrs": "y",
    "kg/m²": "kg/m2",
    "m²": "m2",
}
# A clearance normalised to a body-surface area of 1.73 m² is its own kind of unit here;
# UCUM writes it mL/min/{1.73_m2}, whose annotation is dimensionless, and admits no
# decimal factor, so it is checked against mL/min over 1.73 m² by UCUM's arithmetic.
NORMALISED = ("ml/min/1.73m2", "ml/min/1.73m²", "ml/min/1.73m^2")


@pytest.fixture(scope="module")
def ureg():
    return ucumvert.PintUcumRegistry()


def test_every_accepted_spelling_is_ucum_or_a_listed_lay_spelling():
    # a new spelling must say which UCUM unit it is
    assert set(u.SPELLINGS) == set(UCUM) | set(LAY) | set(NORMALISED)
    assert set(LAY.values()) <= set(UCUM)


def test_lay_spellings_convert_exactly_as_the_unit_they_name():
    for spelling, unit in LAY.items():
        assert u.factor(spelling, unit) == pytest.approx(1.0, rel=1e-12), spelling


def test_conversions_agree_with_ucum(ureg):
    # every pair of spellings of one dimension: screener's factor is UCUM's
    codes = list(UCUM.items())
    compared = 0
    for a, code_a in codes:
        for b, code_b in codes:
            if u.dimension_of(a) != u.dimension_of(b):
                continue
            ours = u.factor(a, b)
            theirs = ureg.from_ucum(code_a).to(ureg.from_ucum(code_b)).magnitude
            assert ours == pytest.approx(theirs, rel=1e-9), (a, b)
            compared += 1
    assert compared > 60


def test_molar_and_mass_convert_through_the_molar_mass_as_ucum_does(ureg):
    # 1 mg/dL of creatinine (113.12 g/mol) in µmol/L, by UCUM's own arithmetic
    theirs = (ureg.from_ucum("mg/dL") / ureg.from_ucum("g/mol") / 113.12).to(
        ureg.from_ucum("umol/L")
    )
    assert u.factor("mg/dl", "umol/l", 113.12) == pytest.approx(theirs.magnitude, rel=1e-9)


def test_a_normalised_clearance_is_ml_per_min_over_1_73_square_metres(ureg):
    per_area = ureg.from_ucum("mL/min") / (1.73 * ureg.from_ucum("m2"))
    base = per_area.to_base_units().magnitude
    for spelling in NORMALISED:
        # to SI base units (m/s), as the unit table holds every unit
        assert u.table()[spelling][1] == pytest.approx(base, rel=1e-9), spelling
        # and never the same kind as a plain mL/min
        assert u.dimension_of(spelling) != u.dimension_of("ml/min")
