"""Derived values (reading/_facts.py): computed from other facts, dated by their oldest
dated input, so a freshness window applies to them as to a measured value."""

from __future__ import annotations

import pytest

from screener import parse_patient, parse_rule_set, screen

RULE = """\
trial: NCT09999999
product: X
title: t
sources: [https://example.org]
criteria:
  - id: I1
    kind: inclusion
    label: Renal function
    text: Creatinine clearance ≥ 60 mL/min within 7 days before screening
    check: {field: FIELD, ge: 60 mL/min, fresh: {within: 7 days, before: screening}}
"""
PATIENT = (
    "id: p\nscreening_date: 2026-11-20\nsex: male\nbirth_date: 1980-01-01\nweight: 80 kg\n"
    "labs: {creatinine: CREATININE}\n"
)


def _result(field: str, creatinine: str):
    rule_set = parse_rule_set(RULE.replace("FIELD", field), "NCT09999999.yaml")
    patient = parse_patient(PATIENT.replace("CREATININE", creatinine), "p.yaml")
    return screen(patient, rule_set).criteria[0]


@pytest.mark.parametrize("field", ["labs.cockcroft_gault", "labs.creatinine_clearance"])
def test_an_estimate_is_as_old_as_its_creatinine(field):
    # 104 mL/min from a creatinine taken 2 days before screening: current
    recent = _result(field, "{value: 1.0 mg/dL, date: 2026-11-18}")
    assert recent.status.value == "pass", recent.reason
    assert "104 mL/min on 2026-11-18 (Cockcroft–Gault estimate" in recent.reason
    # the same estimate from a creatinine of October is out of date, not a pass
    old = _result(field, "{value: 1.0 mg/dL, date: 2026-10-01}")
    assert old.status.value == "unknown"
    assert "out of date" in old.reason and "2026-10-01" in old.reason


def test_an_estimate_from_an_undated_creatinine_asks_for_the_creatinine_date():
    result = _result("labs.cockcroft_gault", "1.0 mg/dL")
    assert result.status.value == "unknown"
    assert result.missing == ("labs.creatinine.date",)
    assert "labs.creatinine.date not recorded, so the date of labs.cockcroft_gault" in (
        result.reason
    )


def test_an_estimate_no_patient_could_have_says_so_with_its_value():
    # (140 − 46) × 80 / (72 × 0.2) = 522 mL/min: beyond the 500 mL/min no clearance reaches,
    # so an input is wrong (a creatinine in the wrong unit, a weight in pounds as kg). It is
    # still compared as computed: an unknown here would make a higher clearance worse than a
    # lower one.
    result = _result("labs.cockcroft_gault", "{value: 0.2 mg/dL, date: 2026-11-18}")
    assert result.status.value == "pass", result.reason
    assert (
        "522 mL/min on 2026-11-18 (impossible: above 500 mL/min, "
        "check age, weight, sex, labs.creatinine; Cockcroft–Gault estimate"
    ) in result.reason


def test_an_implausible_estimate_says_so_with_its_value():
    # (140 − 46) × 80 / (72 × 0.4) = 261 mL/min: above the 250 mL/min rarely seen.
    result = _result("labs.cockcroft_gault", "{value: 0.4 mg/dL, date: 2026-11-18}")
    assert result.status.value == "pass"
    assert "261 mL/min on 2026-11-18 (implausible: above 250 mL/min; Cockcroft–Gault" in (
        result.reason
    )
    usual = _result("labs.cockcroft_gault", "{value: 1.0 mg/dL, date: 2026-11-18}")
    assert "implausible" not in usual.reason


# ------------------------------------------------------------------ the derived values table
#
# Each value below is worked out by hand (the arithmetic is in the comments) and screened on
# both sides of a threshold, so a wrong constant in a formula fails a test.

import datetime as dt  # noqa: E402

from screener.core import _vocabulary as v  # noqa: E402
from screener.core._errors import RuleSetError  # noqa: E402
from screener.reading._formulas import FORMULAS  # noqa: E402
from screener.screening._engine import facts_of  # noqa: E402

BASE = {
    "id": "p",
    "screening_date": "2026-11-20",
    "sex": "male",
    "birth_date": "1976-06-01",  # 50 completed years on 2026-11-20
    "weight": "80 kg",
    "height": "180 cm",
}


def _check(check: str, vocabulary: v.Vocabulary | None = None):
    text = RULE.split("    check:")[0] + f"    check: {check}\n"
    return parse_rule_set(text, "NCT09999999.yaml", vocabulary=vocabulary)


def _patient(labs: dict[str, str] | None = None, **fields: str):
    record = {**BASE, **fields}
    lines = [f"{k}: {x}" for k, x in record.items()]
    if labs:
        lines.append("labs:")
        lines += [f"  {k}: {x}" for k, x in labs.items()]
    return parse_patient("\n".join(lines) + "\n", "p.yaml")


def _screen(check: str, labs: dict[str, str] | None = None, **fields: str):
    return screen(_patient(labs, **fields), _check(check)).criteria[0]


def test_bmi_is_weight_over_height_squared():
    # 81 kg / (1.80 m)² = 81 / 3.24 = 25.0 exactly: at the threshold, so ≤ 25 holds ...
    at = _screen("{field: bmi, le: 25 kg/m2}", weight="81 kg")
    assert at.status.value == "pass", at.reason
    assert at.reason.startswith("body mass index 25 kg/m² (81 kg / (1.8 m)²) ≤ 25 kg/m²")
    # ... and < 25 does not
    assert _screen("{field: bmi, lt: 25 kg/m²}", weight="81 kg").status.value == "fail"
    # 82 kg / 3.24 = 25.31 > 25
    assert _screen("{field: bmi, le: 25 kg/m2}", weight="82 kg").status.value == "fail"
    # no height: the BMI needs it, and says so
    gone = _screen("{field: bmi, le: 25 kg/m2}", height="null")
    assert gone.status.value == "unknown" and gone.missing == ("height",)
    assert "a body mass index needs height" in gone.reason


@pytest.mark.parametrize(
    ("check", "fields", "labs", "shown"),
    [
        # (140 − 50) × 80 / (72 × 1.6668) = 59.995 mL/min, shown to 3 digits as "60 mL/min".
        (
            "{field: labs.cockcroft_gault, ge: 60 mL/min}",
            {},
            {"creatinine": "1.6668 mg/dL"},
            "(= 59.995 mL/min) < 60 mL/min",
        ),
        # CKD-EPI 2021, man of 50, creatinine 1.424 mg/dL: 59.995 mL/min/1.73 m².
        (
            "{field: labs.egfr, ge: 60 mL/min/1.73m2}",
            {},
            {"creatinine": "1.424 mg/dL"},
            "(= 59.995 mL/min/1.73 m²) < 60 mL/min/1.73 m²",
        ),
        # 97.19 kg / (1.8 m)² = 29.997 kg/m², shown as "30 kg/m²".
        ("{field: bmi, ge: 30 kg/m2}", {"weight": "97.19 kg"}, None, "(= 29.997 kg/m²) < 30 kg/m²"),
    ],
)
def test_a_derived_value_at_a_threshold_shows_the_digits_that_decide(check, fields, labs, shown):
    # Before: "creatinine clearance 60 mL/min (...) < 60 mL/min", a comparison that visibly
    # does not hold.
    result = _screen(check, labs, **fields)
    assert result.status.value == "fail", result.reason
    assert shown in result.reason
    # Away from the threshold the value is shown as computed, without the digits.
    if labs:
        far = _screen(check, {"creatinine": "0.9 mg/dL"}, **fields)
    else:
        far = _screen(check, labs, weight="110 kg")
    assert far.status.value == "pass" and "(= " not in far.reason


def test_bsa_is_mosteller():
    # √(180 cm × 80 kg / 3600) = √(14400 / 3600) = √4 = 2.00 m²
    two = _screen("{field: bsa, ge: 2 m2}")
    assert two.status.value == "pass", two.reason
    assert "2 m² (Mosteller: √(180 cm × 80 kg / 3600))" in two.reason
    # √(180 × 79 / 3600) = √3.95 = 1.987 m² < 2 m²
    assert _screen("{field: bsa, ge: 2 m2}", weight="79 kg").status.value == "fail"


CREATININE = "{value: CR mg/dL, date: 2026-11-18}"


def _egfr(creatinine: str, field: str = "labs.egfr", op: str = "ge: 60", **fields: str):
    check = f"{{field: {field}, {op} mL/min/1.73 m²}}"
    return _screen(check, {"creatinine": CREATININE.replace("CR", creatinine)}, **fields)


def test_egfr_is_ckd_epi_2021_on_both_sides_of_a_threshold():
    # male, 50, Scr 0.9 mg/dL: Scr/κ = 0.9/0.9 = 1, so min(...)^α = max(...)^-1.2 = 1;
    # 142 × 0.9938^50 = 142 × 0.73274 = 104.05 ≥ 60
    ok = _egfr("0.9")
    assert ok.status.value == "pass", ok.reason
    assert "104 mL/min/1.73 m² on 2026-11-18 (CKD-EPI 2021: age 50, male, creatinine 0.9" in (
        ok.reason
    )
    # 104.05 < 105: the value is 104.05, not the 105.3 of a woman
    assert _egfr("0.9", op="ge: 105").status.value == "fail"
    # female, 50, Scr 0.7: Scr/κ = 0.7/0.7 = 1; 142 × 0.9938^50 × 1.012 = 105.30 ≥ 105
    assert _egfr("0.7", op="ge: 105", sex="female").status.value == "pass"
    assert _egfr("0.7", op="ge: 105.4", sex="female").status.value == "fail"
    # male, 50, Scr 1.8: Scr/κ = 2; 142 × 2^-1.200 × 0.9938^50 = 142 × 0.43528 × 0.73274
    # = 45.29 < 60 (a value a plain mL/min clearance threshold would not be compared with)
    low = _egfr("1.8")
    assert low.status.value == "fail", low.reason
    assert "45.3 mL/min/1.73 m²" in low.reason
    # female, 30 (born 1996-06-01), Scr 0.5: Scr/κ = 0.5/0.7 = 0.71429; its α power
    # 0.71429^-0.241 = 1.08447; 142 × 1.08447 × 0.9938^30 (0.82995) × 1.012 = 129.3
    young = _egfr("0.5", op="ge: 129.3", sex="female", birth_date="1996-06-01")
    assert young.status.value == "pass" and "129" in young.reason
    assert _egfr("0.5", op="ge: 129.4", sex="female", birth_date="1996-06-01").status.value == (
        "fail"
    )


def test_egfr_is_for_adults_and_schwartz_for_children():
    # 18 on the screening date (born 2008-11-20): an adult. Scr 1.0, male: Scr/κ = 1.1111;
    # 142 × 1.1111^-1.200 × 0.9938^18 = 142 × 0.88119 × 0.89409 = 111.88
    adult = _egfr("1.0", op="ge: 111.8", birth_date="2008-11-20")
    assert adult.status.value == "pass", adult.reason
    # 17 (born 2008-11-21): a child; CKD-EPI does not apply, and nothing is to collect
    child = _egfr("1.0", birth_date="2008-11-21")
    assert child.status.value == "unknown"
    assert "for adults (18 and older), and the patient is 17 years" in child.reason
    assert "labs.egfr_schwartz" in child.reason
    # bedside Schwartz for the child: 0.413 × 150 cm / 0.6 mg/dL = 61.95 / 0.6 = 103.25 ≥ 90
    kid = {"birth_date": "2008-11-21", "height": "150 cm"}
    ok = _egfr("0.6", field="labs.egfr_schwartz", op="ge: 90", **kid)
    assert ok.status.value == "pass", ok.reason
    assert "103 mL/min/1.73 m² on 2026-11-18 (bedside Schwartz: 0.413 × 150 cm / 0.6" in ok.reason
    # 0.413 × 150 / 0.7 = 88.5 < 90
    assert _egfr("0.7", field="labs.egfr_schwartz", op="ge: 90", **kid).status.value == "fail"
    # and not for the adult
    grown = _egfr("0.6", field="labs.egfr_schwartz", birth_date="2008-11-20", height="150 cm")
    assert grown.status.value == "unknown"
    assert "for children (under 18), and the patient is 18 years" in grown.reason


def test_a_clearance_is_normalised_to_1_73_m2_through_the_bsa():
    # measured 100 mL/min, BSA √(180 × 80 / 3600) = 2 m²: 100 × 1.73 / 2 = 86.5 < 90
    field = "{field: labs.creatinine_clearance_normalised, ge: 90 mL/min/1.73m2}"
    measured = _screen(field, {"creatinine_clearance": "{value: 100 mL/min, date: 2026-11-19}"})
    assert measured.status.value == "fail", measured.reason
    assert "86.5 mL/min/1.73 m² on 2026-11-19 (100 mL/min × 1.73 m² / BSA 2 m²" in (measured.reason)
    assert "creatinine clearance: as recorded" in measured.reason
    # no measured clearance: Cockcroft–Gault, male 50, 80 kg, Scr 0.8:
    # (140 − 50) × 80 / (72 × 0.8) = 7200 / 57.6 = 125 mL/min; 125 × 1.73 / 2 = 108.1 ≥ 90
    estimated = _screen(field, {"creatinine": CREATININE.replace("CR", "0.8")})
    assert estimated.status.value == "pass", estimated.reason
    assert "108 mL/min/1.73 m²" in estimated.reason
    assert "creatinine clearance: Cockcroft–Gault estimate: age 50, 80 kg, male" in (
        estimated.reason
    )


def test_a_plain_clearance_never_compares_with_one_per_1_73_m2():
    with pytest.raises(RuleSetError, match="flow rate"):
        _check("{field: labs.egfr, ge: 60 mL/min}")
    with pytest.raises(RuleSetError, match="clearance per 1.73 m²"):
        _check("{field: labs.creatinine_clearance, ge: 60 mL/min/1.73 m²}")
    with pytest.raises(RuleSetError, match="clearance per 1.73 m²"):
        _check("{field: labs.cockcroft_gault, ge: 60 ml/min/1.73m^2}")


@pytest.mark.parametrize("written", ["mL/min/1.73m2", "mL/min/1.73 m²", "ml/min/1.73m^2"])
def test_the_spellings_of_a_clearance_per_1_73_m2(written):
    assert _check(f"{{field: labs.egfr, ge: 60 {written}}}").criteria


def test_absolute_counts_from_the_white_count_and_differential():
    field = "{field: labs.anc, ge: 1.0 x10^9/L}"
    labs = {
        "wbc": "{value: 3.0 x10^9/L, date: 2026-11-17}",
        "neutrophils_percent": "{value: 40 %, date: 2026-11-19}",
    }
    # 3.0 ×10⁹/L × 40 % = 1.2 ×10⁹/L ≥ 1.0; dated by the older input, the white count
    ok = _screen(field, labs)
    assert ok.status.value == "pass", ok.reason
    assert "1.2 ×10⁹/L on 2026-11-17 (white count 3 ×10⁹/L × 40 % of the differential)" in ok.reason
    # 3.0 × 30 % = 0.9 < 1.0
    low = _screen(field, {**labs, "neutrophils_percent": "30 %"})
    assert low.status.value == "fail", low.reason
    # a measured count wins over the differential
    measured = _screen(field, {**labs, "anc": "0.5 x10^9/L"})
    assert measured.status.value == "fail" and "differential" not in measured.reason
    # ... and the value from the differential is there by name whatever was measured
    named = _screen(
        "{field: labs.anc_from_differential, ge: 1.0 x10^9/L}", {**labs, "anc": "0.5 x10^9/L"}
    )
    assert named.status.value == "pass"
    # neither: the measured count is missing, and so is what would stand in for it
    none = _screen(field, {"wbc": "3.0 x10^9/L"})
    assert none.status.value == "unknown"
    assert none.missing == ("labs.anc", "labs.neutrophils_percent")
    assert (
        "no measured absolute neutrophil count, and a count from the white count and "
        "differential needs labs.neutrophils_percent" in none.reason
    )
    # lymphocytes the same way: 4.0 × 25 % = 1.0 ≥ 1.0 (at the threshold)
    alc = _screen(
        "{field: labs.alc, ge: 1.0 x10^9/L}", {"wbc": "4.0 x10^9/L", "lymphocytes_percent": "25 %"}
    )
    assert alc.status.value == "pass", alc.reason


def test_a_derived_value_is_computed_only_when_a_rule_reads_it():
    patient = _patient({"creatinine": "1.0 mg/dL", "wbc": "3 x10^9/L"})
    facts = facts_of(patient)
    screen(patient, _check("{field: bmi, le: 30 kg/m2}"), facts=facts)
    assert "bmi" in facts.known
    assert not {"labs.egfr", "bsa", "labs.anc", "labs.creatinine_clearance"} & set(facts.known)


def test_every_derived_value_names_a_registered_formula_with_its_equation_and_source():
    from screener.reports._fields import reference

    page = reference()
    for path, d in v.BUILTIN.derivations.items():
        formula = FORMULAS[d.formula]
        assert formula.equation and formula.source and formula.compute.__doc__, path
        assert f"| `{path}` (" in page and formula.equation in page


VOCAB = """\
fields:
  labs.creatinine_enzymatic:
    kind: lab
    label: enzymatic creatinine
    unit: concentration
    analyte: creatinine
    range_unit: mg/dL
derived:
  labs.egfr_enzymatic:
    like: labs.egfr
    label: eGFR from the enzymatic creatinine
    formula: ckd_epi_2021
    inputs: {age: age, sex: sex, creatinine: INPUT}
"""


def _extended(tmp_path, text: str) -> v.Vocabulary:
    from screener.criteria._catalog import load_vocabulary

    (tmp_path / "vocabulary.yaml").write_text(text, encoding="utf-8")
    return load_vocabulary(tmp_path)


def test_a_vocabulary_file_declares_a_derived_value_with_a_registered_formula(tmp_path):
    vocabulary = _extended(tmp_path, VOCAB.replace("INPUT", "labs.creatinine_enzymatic"))
    rule_set = _check("{field: labs.egfr_enzymatic, ge: 60 mL/min/1.73 m2}", vocabulary)
    text = "\n".join(f"{k}: {x}" for k, x in BASE.items())
    text += "\nlabs: {creatinine_enzymatic: 0.9 mg/dL}\n"
    patient = parse_patient(text, "p.yaml", vocabulary=vocabulary)
    result = screen(patient, rule_set).criteria[0]
    # the same arithmetic as CKD-EPI above: 104.05 ≥ 60, from the field the file declares
    assert result.status.value == "pass", result.reason
    assert "104 mL/min/1.73 m² (CKD-EPI 2021: age 50, male, creatinine 0.9 mg/dL)" in (
        result.reason
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (("INPUT", "weight"), "input creatinine needs a quantity convertible to mg/dL"),
        (("INPUT", "labs.nope"), "unknown field 'labs.nope'"),
        (("ckd_epi_2021", "ckd_epi_2009"), "unknown formula 'ckd_epi_2009'"),
        (("age: age, ", ""), "formula ckd_epi_2021 needs the input 'age'"),
        (("creatinine: INPUT", "scr: labs.creatinine"), "needs the input 'creatinine'"),
        (("like: labs.egfr", "like: labs.egfr\n    stands_in_for: labs.creatinine"), "kind"),
    ],
)
def test_a_derived_declaration_that_does_not_fit_its_formula_is_refused(tmp_path, change, message):
    text = VOCAB.replace(*change).replace("INPUT", "labs.creatinine_enzymatic")
    with pytest.raises(RuleSetError, match=message) as caught:
        _extended(tmp_path, text)
    assert caught.value.diagnostics[0].file.endswith("vocabulary.yaml")
    assert caught.value.diagnostics[0].position is not None


def test_the_import_checklist_asks_for_what_a_derived_value_is_computed_from():
    from screener.screening._importer import missing_fields

    needed = {"labs.egfr": ["NCT0 I1"], "age": ["NCT0 I2"], "labs.anc": ["NCT0 I3"]}
    record = {"birth_date": dt.date(1980, 1, 1), "labs": {"wbc": "3 x10^9/L"}}
    # eGFR: age is given (its birth date), sex and creatinine are not; a missing ANC is
    # asked for as itself (it is measured), not through its differential
    assert missing_fields(record, needed) == {
        "sex": ["NCT0 I1"],
        "labs.creatinine": ["NCT0 I1"],
        "labs.anc": ["NCT0 I3"],
    }
    assert missing_fields({}, {"age": ["NCT0 I2"]}) == {"birth_date": ["NCT0 I2"]}
    # a derived value is never asked for by its own name: no file can hold it
    assert list(missing_fields({"sex": "male"}, {"labs.cockcroft_gault": ["NCT0 I4"]})) == [
        "birth_date",
        "weight",
        "labs.creatinine",
    ]
    full = {**record, "sex": "male", "labs": {"creatinine": "1 mg/dL", "anc": "1 x10^9/L"}}
    assert missing_fields(full, needed) == {}


def test_the_worklist_asks_for_inputs_never_for_a_value_no_file_can_hold():
    from screener.core._model import Screening
    from screener.reports import _worklist as worklist

    rule_set = _check("{field: labs.egfr, ge: 60 mL/min/1.73 m²}")

    def bullets(patient) -> list[str]:
        trial = screen(patient, rule_set)
        record = Screening(patient.id, patient.file, str(patient.as_of), "", (trial,))
        return [b.text for group in worklist.build(record).collect.values() for b in group]

    # an adult without a creatinine: the creatinine is to be ordered
    assert any("creatinine" in b for b in bullets(_patient())), bullets(_patient())
    # a child: CKD-EPI does not apply, and there is nothing a nurse could collect for it
    child = _patient({"creatinine": "0.6 mg/dL"}, birth_date="2014-01-01")
    assert screen(child, rule_set).criteria[0].status.value == "unknown"
    assert bullets(child) == []
