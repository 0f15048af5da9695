"""Unit tests for screener/core/_units.py: reading, refusing, converting and comparing
quantities."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from screener.core import _units as u
from screener.core._units import (
    BILIRUBIN,
    CONCENTRATION,
    CREATININE,
    DURATION,
    ENZYME,
    FLOW,
    FRACTION,
    MASS,
    SECONDS,
    Analyte,
    Measure,
    UnitError,
)

MICRO_SIGN = "\u00b5"  # µ MICRO SIGN
GREEK_MU = "\u03bc"  # μ GREEK SMALL LETTER MU


def measure(text: str, kind: u.Kind = CONCENTRATION, analyte: Analyte | None = None) -> Measure:
    return u.parse_measure(text, kind, analyte)


def creatinine(text: str) -> Measure:
    return u.parse_measure(text, CONCENTRATION, CREATININE)


def bilirubin(text: str) -> Measure:
    return u.parse_measure(text, CONCENTRATION, BILIRUBIN)


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("text", "kind", "analyte", "magnitude", "unit"),
    [
        ("1.4 mg/dL", CONCENTRATION, CREATININE, 1.4, "mg/dl"),
        ("1.4 mg/dl", CONCENTRATION, CREATININE, 1.4, "mg/dl"),
        ("97 umol/L", CONCENTRATION, CREATININE, 97.0, "umol/l"),
        (f"97 {MICRO_SIGN}mol/L", CONCENTRATION, CREATININE, 97.0, "umol/l"),
        (f"97 {GREEK_MU}mol/L", CONCENTRATION, CREATININE, 97.0, "umol/l"),
        ("52 U/L", ENZYME, None, 52.0, "u/l"),
        ("58 %", FRACTION, None, 58.0, "%"),
        ("62 kg", MASS, None, 62.0, "kg"),
        ("150 lb", MASS, None, 150.0, "lb"),
        ("6 months", DURATION, None, 6.0, "months"),
        ("12 weeks", DURATION, None, 12.0, "weeks"),
        ("34 s", SECONDS, None, 34.0, "s"),
        ("78 mL/min", FLOW, None, 78.0, "ml/min"),
    ],
)
def test_lab_report_spellings_are_read(text, kind, analyte, magnitude, unit):
    m = u.parse_measure(text, kind, analyte)
    assert m.magnitude == magnitude
    assert m.unit == unit
    assert m.written == text  # reports quote the value as the nurse wrote it


def test_both_micro_characters_and_ascii_u_are_one_unit():
    spellings = ["97 umol/L", f"97 {MICRO_SIGN}mol/L", f"97 {GREEK_MU}mol/L"]
    assert {creatinine(s).unit for s in spellings} == {"umol/l"}
    assert creatinine(spellings[0]).display_unit == f"{MICRO_SIGN}mol/L"


def test_lower_case_mg_dl_displays_in_the_usual_case():
    assert creatinine("1.4 mg/dl").display_unit == "mg/dL"


def test_u_per_l_and_iu_per_l_are_the_same_activity():
    u_l = measure("52 U/L", ENZYME)
    iu_l = measure("52 IU/L", ENZYME)
    assert u.compare(u.convert(iu_l, u_l.unit), u_l.magnitude) == 0
    assert u.compare(u.convert(u_l, iu_l.unit), iu_l.magnitude) == 0


def test_pounds_become_kilograms():
    assert u.convert(measure("150 lb", MASS), "kg") == pytest.approx(68.04, abs=0.005)


def test_a_bare_number_has_no_unit():
    assert u.split_quantity("1.1") == (1.1, "")


# -------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("unit", ["degC", "furlong", "10*6/L", "10^12/L"])
def test_unknown_units_are_refused(unit):
    with pytest.raises(UnitError, match="unknown unit"):
        u.split_quantity(f"3.2 {unit}")


@pytest.mark.parametrize(
    "unit", ["10*9/L", "10^9/L", "x10^9/L", "×10⁹/L", "10*3/uL", "x10^3/µL", "K/uL"]
)
def test_arithmetic_looking_units_are_counts_never_pint_arithmetic(unit):
    # pint would read 10*9/L as 90 per litre: each spelling is looked up as a whole, and is
    # a count of 10⁹ per litre (10³ per µL).
    count = measure(f"3.2 {unit}", u.COUNT)
    assert u.convert(count, "/ul") == pytest.approx(3200)
    assert u.convert(count, "10^9/l") == pytest.approx(3.2)
    # ... and a count is refused where a concentration is asked for, not converted.
    with pytest.raises(UnitError, match="a cell count"):
        measure(f"3.2 {unit}", CONCENTRATION, CREATININE)


@pytest.mark.parametrize(
    ("text", "per_ul"),
    [
        ("150000 /µL", 150000),
        ("150 K/µL", 150000),
        ("150000 cells/uL", 150000),
        ("150000 /mm3", 150000),
        ("0.15 ×10⁹/L", 150),
    ],
)
def test_counts_per_microlitre_and_per_litre_agree(text, per_ul):
    assert u.convert(measure(text, u.COUNT), "/ul") == pytest.approx(per_ul)


def test_haemoglobin_converts_through_its_molar_mass():
    assert u.convert(
        measure("12.4 g/dL", CONCENTRATION, u.HAEMOGLOBIN), "mmol/l", u.HAEMOGLOBIN
    ) == pytest.approx(7.695, abs=1e-3)
    assert u.convert(
        measure("124 g/L", CONCENTRATION, u.HAEMOGLOBIN), "g/dl", u.HAEMOGLOBIN
    ) == pytest.approx(12.4)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("1.4 mgdl", "mg/dL"),
        ("1.4 mg/dI", "mg/dL"),
        ("62 kgs", "kg"),
        ("52 UI/L", "U/L"),
        ("6 mnths", "months"),
    ],
)
def test_misspelt_units_get_a_did_you_mean(text, suggestion):
    with pytest.raises(UnitError) as caught:
        u.split_quantity(text)
    assert caught.value.hint is not None
    assert suggestion in caught.value.hint


def test_a_comma_decimal_is_refused_with_a_decimal_point_hint():
    # 1,4 must never be read as 1 (or 14); the message should tell the nurse why.
    with pytest.raises(UnitError) as caught:
        u.parse_measure("1,4 mg/dL", CONCENTRATION, CREATININE)
    said = f"{caught.value} {caught.value.hint or ''}"
    assert "decimal point" in said, said


@pytest.mark.parametrize("text", ["1e400 mg/dL", "abc", "", "mg/dL"])
def test_text_that_is_not_a_finite_number_is_refused(text):
    with pytest.raises(UnitError):
        u.parse_measure(text, CONCENTRATION, CREATININE)


@pytest.mark.parametrize(
    ("text", "kind"), [("55", FRACTION), ("52", ENZYME), ("1.4", CONCENTRATION)]
)
def test_a_unit_is_required_where_the_field_has_one(text, kind):
    with pytest.raises(UnitError, match="no unit") as caught:
        u.parse_measure(text, kind, CREATININE)
    assert kind.name in str(caught.value)


@pytest.mark.parametrize("value", [True, None, [1], {"value": 1}])
def test_non_text_values_are_refused(value):
    with pytest.raises(UnitError):
        u.parse_measure(value, FRACTION)


def test_a_mass_for_a_percentage_field_names_both_kinds():
    with pytest.raises(UnitError) as caught:
        u.parse_measure("55 kg", FRACTION)
    assert "a mass" in str(caught.value)
    assert "a percentage" in str(caught.value)


def test_a_concentration_for_an_enzyme_field_is_refused():
    with pytest.raises(UnitError) as caught:
        u.parse_measure("1.4 mg/dL", ENZYME)
    assert "an enzyme activity" in str(caught.value)


def test_a_molar_unit_is_refused_for_an_enzyme_field():
    with pytest.raises(UnitError):
        u.parse_measure("40 umol/L", ENZYME)


@pytest.mark.parametrize("analyte", [None, Analyte("albumin")])
def test_a_molar_unit_needs_the_analyte_molar_mass(analyte):
    with pytest.raises(UnitError, match="molar") as caught:
        u.parse_measure("97 umol/L", CONCENTRATION, analyte)
    assert "mg/dL" in (caught.value.hint or "")


def test_a_clotting_time_is_in_seconds_only():
    with pytest.raises(UnitError):
        u.parse_measure("2 days", SECONDS)


# ------------------------------------------------------------------------ conversions


def test_creatinine_mass_to_molar():
    assert u.convert(creatinine("1.6 mg/dL"), "umol/l", CREATININE) == pytest.approx(
        141.44, abs=0.01
    )


def test_creatinine_molar_to_mass():
    assert u.convert(creatinine("141.44 umol/L"), "mg/dl", CREATININE) == pytest.approx(
        1.6, abs=1e-4
    )


@pytest.mark.parametrize(("written", "order"), [("140 umol/L", -1), ("145 umol/L", 1)])
def test_creatinine_molar_values_against_a_mass_threshold(written, order):
    assert u.compare(u.convert(creatinine(written), "mg/dl", CREATININE), 1.6) == order


def test_bilirubin_both_ways():
    to_molar = u.convert(bilirubin("1 mg/dL"), "umol/l", BILIRUBIN)
    assert to_molar == pytest.approx(17.10, abs=0.01)
    assert u.convert(bilirubin("17.1 umol/L"), "mg/dl", BILIRUBIN) == pytest.approx(1.0, abs=1e-3)


def test_the_analyte_decides_the_conversion():
    one = bilirubin("1 mg/dL")
    as_bilirubin = u.convert(one, "umol/l", BILIRUBIN)
    as_creatinine = u.convert(one, "umol/l", CREATININE)
    assert as_creatinine == pytest.approx(88.40, abs=0.01)
    assert u.compare(as_bilirubin, as_creatinine) != 0


def test_mass_and_molar_do_not_convert_without_an_analyte():
    with pytest.raises(UnitError):
        u.convert(bilirubin("1 mg/dL"), "umol/l")
    with pytest.raises(UnitError):
        u.convert(bilirubin("1 mg/dL"), "umol/l", Analyte("albumin"))


def test_unrelated_kinds_never_convert():
    with pytest.raises(UnitError):
        u.convert(measure("62 kg", MASS), "months")


def test_three_months_is_longer_than_twelve_weeks():
    # pint's month is 1/12 year (30.44 days), so 3 months is about 13.04 weeks.
    assert u.compare(u.convert(measure("3 months", DURATION), "weeks"), 12) == 1
    assert u.compare(u.convert(measure("12 weeks", DURATION), "months"), 3) == -1
    assert u.convert(measure("3 months", DURATION), "weeks") == pytest.approx(13.04, abs=0.01)


def test_one_year_is_twelve_months():
    assert u.compare(u.convert(measure("1 year", DURATION), "months"), 12) == 0


def test_same_unit_is_returned_unchanged():
    m = creatinine("1.4 mg/dL")
    assert u.convert(m, "mg/dl", CREATININE) == 1.4


# ------------------------------------------------------------------------ boundaries


def test_compare_ignores_float_noise():
    x = 1.6
    assert u.compare(x, x * (1 + 1e-12)) == 0
    assert u.compare(x * (1 - 1e-12), x) == 0


def test_compare_still_sees_real_differences():
    assert u.compare(1.6, 1.601) == -1
    assert u.compare(1.601, 1.6) == 1
    assert u.compare(1.6, 1.6 * (1 + 1e-6)) == -1


def test_a_threshold_value_survives_a_round_trip():
    molar = u.convert(creatinine("1.6 mg/dL"), "umol/l", CREATININE)
    back = u.convert(Measure(molar, "umol/l", f"{molar} umol/L"), "mg/dl", CREATININE)
    assert u.compare(back, 1.6) == 0  # so `le: 1.6 mg/dL` holds for it


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=1e-3, max_value=1e4, allow_nan=False, allow_infinity=False),
    st.sampled_from([CREATININE, BILIRUBIN]),
)
def test_round_trips_compare_equal(x, analyte):
    molar = u.convert(Measure(x, "mg/dl", ""), "umol/l", analyte)
    back = u.convert(Measure(molar, "umol/l", ""), "mg/dl", analyte)
    assert u.compare(back, x) == 0


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (0, "0"),
        (2.0, "2"),
        (141.44271570014143, "141"),
        (0.1 + 0.2, "0.3"),
        (1.59997, "1.6"),
        (17.1, "17.1"),
    ],
)
def test_fmt_drops_float_noise(x, text):
    assert u.fmt(x) == text


def test_fmt_pair_separates_values_that_round_alike():
    a, b = u.fmt_pair(1.59997, 1.6)
    assert a != b
    assert a == "1.59997" and b == "1.6"


def test_fmt_pair_prints_equal_values_alike():
    assert u.fmt_pair(1.6 * (1 + 1e-12), 1.6) == ("1.6", "1.6")


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
)
def test_unequal_values_never_print_equal(x, threshold):
    a, b = u.fmt_pair(x, threshold)
    if u.compare(x, threshold) != 0:
        assert a != b


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-7, max_value=1e-3),
)
def test_nearby_unequal_values_never_print_equal(x, gap):
    a, b = u.fmt_pair(x, x * (1 + gap))
    assert a != b


def test_the_shipped_unit_table_is_what_pint_computes():
    """screener/core/_unit_table.py is generated (tools/unit_table.py); regenerate it when this
    fails after a change of spellings or of pint."""
    from screener.core._unit_table import TABLE
    from screener.core._units import _table_from_pint, table

    assert TABLE == _table_from_pint()
    assert table() == TABLE


def test_a_run_imports_no_pint_and_writes_no_cache(tmp_path):
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    probe = (
        "import sys; from screener.core import _units as units; units.table(); "
        "print('pint' in sys.modules)"
    )
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        )
        assert run.stdout.strip() == "False"
    assert list(home.rglob("*")) == []  # no units table, no pint pickle, nothing


def test_files_in_the_cache_folder_change_no_conversion(tmp_path):
    """An edited (or crafted) cache cannot change a verdict: none is read."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "screener"
    cache.mkdir()
    for name in ("units.json", "units-0000000000000000.json"):
        (cache / name).write_text('{"mg/dl": ["[mass] / [length] ** 3", 1e6]}')
    (tmp_path / "pint").mkdir()
    (tmp_path / "pint" / "registry.pickle").write_bytes(b"\x80\x04not a pickle")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    probe = (
        "from screener.core import _units as units; print(units.factor('mg/dl', 'umol/l', 113.12))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert abs(float(out) - 88.4017) < 1e-3


def test_a_quantity_read_again_reads_the_same_and_a_bad_one_is_refused_again():
    # Quantities are remembered by their text; refusals must not be.
    for _ in range(2):
        assert u.split_quantity(" 1.4 mg/dL") == (1.4, "mg/dl")
        with pytest.raises(u.UnitError, match="cannot read"):
            u.split_quantity("1,4 mg/dL")
        with pytest.raises(u.UnitError, match="unknown unit"):
            u.split_quantity("1.4 mg/dLL")


# ------------------------------------------------------------- micro spellings and hints


@pytest.mark.parametrize("written", ["mcmol/L", "micromol/L", "MCMOL/l", "umol/L"])
def test_pharmacy_spellings_of_micromole_are_micromole(written):
    m = creatinine(f"97 {written}")
    assert m.display_unit == "µmol/L"
    assert u.convert(m, "mg/dl", CREATININE) == pytest.approx(97 / 88.4, rel=1e-3)


@pytest.mark.parametrize(
    "written",
    [
        "mcmol/L",
        "micromol/L",
        "micromoles/L",
        "mcmol/dL",
        "nmol/L",
        "umol/dL",
        "mmol/dL",
        "mol/L",
        "mcg/dL",
        "U/mL",
        "IU/mL",
        "ug/L",
        "mg/100mL",
    ],
)
def test_a_unit_hint_never_changes_the_magnitude(written):
    # The old hint was difflib's nearest display: mcmol/L and micromol/L were "did you mean
    # 'mmol/L'?" (a thousandfold off), nmol/L was µmol/L, U/mL was U/L, mg/100mL was mg/L.
    try:
        magnitude, unit = u.split_quantity(f"97 {written}")
    except UnitError as exc:
        hint = exc.hint or ""
        for wrong in ("mmol/L", "mg/dL", "mg/L", "U/L", "IU/L", "g/L", "g/dL"):
            assert f"'{wrong}'" not in hint, (written, hint)
        if written == "micromoles/L":
            assert hint == "did you mean 'µmol/L'?"
    else:
        assert u.SPELLINGS[unit][1] == "µmol/L"


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        # Micro however spelt, misspelt after it, or plural: µmol/L, never mmol/L.
        ("micromols/L", "µmol/L"),
        ("mikromol/L", "µmol/L"),
        ("mikromol/l", "µmol/L"),
        ("mcmmol/L", "µmol/L"),
        ("umo/L", "µmol/L"),
        ("micrmol/L", "µmol/L"),
        ("umol/litres", "µmol/L"),
        # Molar concentration: µM is µmol/L, mM mmol/L (never metres or centimetres).
        ("µM", "µmol/L"),
        ("uM", "µmol/L"),
        ("mcM", "µmol/L"),
        ("mM", "mmol/L"),
        # No accepted unit of that size and kind: no hint rather than a wrong one.
        ("nM", None),
        ("ugg/L", None),
        ("ug/L", None),
        ("umol/dL", None),
        ("mcmol/dL", None),
    ],
)
def test_a_hint_keeps_the_magnitude_and_the_dimension(written, hint):
    # Before: micromols/L, mikromol/L and mcmmol/L were offered 'mmol/L' (a thousandfold
    # off), µM and uM 'm' (metres) and mcM 'cm', for a bilirubin.
    with pytest.raises(UnitError) as caught:
        u.parse_measure(f"97 {written}", u.CONCENTRATION, BILIRUBIN)
    assert caught.value.hint == (f"did you mean {hint!r}?" if hint else None)


@pytest.mark.parametrize(("written", "kind"), [("µM", "length"), ("mM", "length"), ("uM", "mass")])
def test_a_hint_is_of_the_fields_kind(written, kind):
    with pytest.raises(UnitError) as caught:
        u.parse_measure(f"3 {written}", u.KINDS[kind])
    assert caught.value.hint is None


@pytest.mark.parametrize(
    ("written", "meant"),
    [("mgdl", "mg/dL"), ("mg/dLL", "mg/dL"), ("wekes", "weeks"), ("kgs", "kg"), ("UI/L", "U/L")],
)
def test_a_misspelt_unit_still_gets_a_hint(written, meant):
    with pytest.raises(UnitError) as caught:
        u.split_quantity(f"1.4 {written}")
    assert caught.value.hint == f"did you mean {meant!r}?"


# ------------------------------------------------- printed numbers that visibly hold


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
)
def test_printed_values_stand_in_the_order_of_the_values(x, threshold):
    # fmt rounds monotonically, so this held before too; fmt_pair now checks it directly.
    a, b = u.fmt_pair(x, threshold)
    printed = 0 if a == b else (float(a) > float(b)) - (float(a) < float(b))
    if u.compare(x, threshold) != 0:  # values equal within the tolerance may print apart
        assert printed == u.compare(x, threshold)


def test_a_uln_multiple_is_printed_so_that_it_gives_back_the_value():
    # 3.594 mg/dL with a ULN of 1.2 mg/dL is 2.995 × ULN; "3 × ULN" (3.6 mg/dL) was printed.
    slack = u.resolution(bilirubin("3.594 mg/dL"))
    assert slack == pytest.approx(0.005)
    assert u.fmt_ratio(3.594 / 1.2, 2.0, 3.594, 1.2, slack) == ("2.995", "2")
    # ordinary values keep three digits
    assert u.fmt_ratio(71 / 40, 3.0, 71.0, 40.0, 0.5) == ("1.77", "3")
    assert u.fmt_ratio(1.4 / 1.2, 2.0, 1.4, 1.2, 0.05) == ("1.17", "2")


@pytest.mark.parametrize(
    ("written", "slack"),
    [
        ("71 U/L", 0.5),
        ("1.4 mg/dL", 0.05),
        ("3.2362191736536725 mg/dL", 0.005),
        ("163.40549045276282 IU/L", 0.5),
        ("0.05 mg/dL", 0.005),
        ("1234 U/L", 5),
    ],
)
def test_resolution_is_half_the_last_digit_shown_to_three_digits(written, slack):
    kind, analyte = (ENZYME, None) if "U/L" in written else (CONCENTRATION, BILIRUBIN)
    assert u.resolution(measure(written, kind, analyte)) == pytest.approx(slack)
    assert u.resolution(1.1) == pytest.approx(0.05)


@pytest.mark.parametrize(
    "text, readings",
    [
        # a comma before three digits: a thousands separator or a decimal comma, both named
        ("75,000/µL", ["75000 if the comma separates thousands", "75.000 if it is a decimal"]),
        ("1,234 mg/dL", ["1234 if the comma", "1.234 if it is a decimal comma"]),
        # before one or two digits it can only be a decimal comma
        ("1,4 mg/dL", ["use a decimal point: 1.4, not 1,4"]),
        ("12,50 mg/dL", ["12.50, not 12,50"]),
        # spaces between groups of three
        ("75 000/µL", ["if 75 000 is 75000 with spaces between the thousands"]),
    ],
)
def test_a_separated_number_is_refused_naming_its_readings(text, readings):
    # never read as 75 (or 75.0, or 1): a nurse is told what each reading would be
    with pytest.raises(UnitError) as caught:
        u.split_quantity(text)
    for reading in readings:
        assert reading in (caught.value.hint or ""), caught.value.hint


def test_g_per_l_in_capitals_is_giga_per_litre_where_a_count_is_expected():
    # UCUM and French lab reports: 150 G/L platelets is 150 × 10⁹/L, not 150 grams a litre
    from screener.core import _vocabulary as v

    platelets, haemoglobin = v.resolve("labs.platelets"), v.resolve("labs.haemoglobin")
    count = u.parse_measure("150 G/L", platelets.value.kind, platelets.value.analyte)
    assert (count.magnitude, count.unit, count.written) == (150.0, "10^9/l", "150 G/L")
    # a mass concentration written G/L could be either: refused, saying both
    with pytest.raises(UnitError) as caught:
        u.parse_measure("150 G/L", haemoglobin.value.kind, haemoglobin.value.analyte)
    assert "giga per litre" in str(caught.value) and caught.value.hint == (
        "write g/L for grams per litre"
    )
    grams = u.parse_measure("150 g/L", haemoglobin.value.kind, haemoglobin.value.analyte)
    assert grams.unit == "g/l"
