"""NCT06559644 (Hema-NeoTIL01), criterion by criterion, on both sides of every threshold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from screener import load_rule_set, parse_patient, screen

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rule_set(ROOT / "rules" / "NCT06559644.yaml")
BASE = yaml.safe_load(
    (Path(__file__).parent / "acceptance" / "patients" / "baseline.yaml").read_text("utf-8")
)


def status(overrides: dict, criterion: str, drop: tuple[str, ...] = ()) -> str:
    data = {**BASE, **overrides}
    for key in drop:
        data.pop(key, None)
    result = screen(parse_patient(yaml.safe_dump(data, allow_unicode=True)), RULES)
    found = {c.id: c.status.value for c in result.criteria}
    found.update({p.id: p.status.value for c in result.criteria for p in c.parts})
    return found[criterion]


def labs(**changes: object) -> dict:
    return {"labs": {**BASE["labs"], **changes}}


def test_every_source_item_is_encoded_in_order():
    ids = [c.id for c in RULES.criteria]
    assert ids == [f"I{i}" for i in range(1, 13)] + [f"E{i}" for i in range(1, 17)]


@pytest.mark.parametrize(
    "birth, expected",
    [
        (dt.date(1956, 11, 21), "pass"),  # 69 years and 364 days on 2026-11-20
        (dt.date(1956, 11, 20), "fail"),  # 70th birthday on the screening date
        (dt.date(2008, 11, 20), "pass"),  # 18th birthday on the screening date
        (dt.date(2008, 11, 21), "fail"),  # one day short of 18
    ],
)
def test_i1_age_on_birthdays(birth: dt.date, expected: str):
    assert status({"birth_date": birth}, "I1") == expected


def test_i1_age_stated_without_birth_date():
    assert status({"age": "45 years"}, "I1", drop=("birth_date",)) == "pass"
    assert status({}, "I1", drop=("birth_date",)) == "unknown"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("140 umol/L", "pass"),
        ("145 umol/L", "fail"),
        ("141.4 µmol/L", "pass"),
        ("1.6 mg/dL", "pass"),
        ("1.61 mg/dL", "fail"),
        ("0.141 mmol/L", "pass"),
    ],
)
def test_i9c_creatinine_in_either_unit(value: str, expected: str):
    assert status(labs(creatinine=value), "I9.c") == expected


@pytest.mark.parametrize(
    "value, uln, expected",
    [
        ("61.5 umol/L", "1.2 mg/dL", "pass"),  # 3.0 x ULN after conversion
        ("65 umol/L", "1.2 mg/dL", "fail"),  # 3.17 x ULN
        ("3.6 mg/dL", "20.5 umol/L", "fail"),  # 3.6 mg/dL = 61.6 umol/L > 3 x 20.5
        ("3.5 mg/dL", "20.5 umol/L", "pass"),
        ("3.6 mg/dL", "1.2 mg/dL", "pass"),  # exactly 3 x ULN
    ],
)
def test_i9a_bilirubin_uln_in_the_other_unit(value: str, uln: str, expected: str):
    assert status(labs(total_bilirubin={"value": value, "uln": uln}), "I9.a") == expected


def test_i9a_without_uln_uses_a_stated_default():
    data = {**BASE, **labs(total_bilirubin="1.0 mg/dL")}
    result = screen(parse_patient(yaml.safe_dump(data)), RULES)
    part = next(p for c in result.criteria for p in c.parts if p.id == "I9.a")
    assert part.status.value == "pass" and "assumed" in part.reason


@pytest.mark.parametrize(
    "ast, expected", [("200 U/L", "pass"), ("201 U/L", "fail"), ("200 IU/L", "pass")]
)
def test_i9b_ast_five_times_uln(ast: str, expected: str):
    assert status(labs(ast={"value": ast, "uln": "40 U/L"}), "I9.b") == expected


@pytest.mark.parametrize(
    "survival, expected",
    [
        ("13 weeks", "pass"),
        ("12 weeks", "fail"),
        ("3 months", "pass"),
        ("2 months", "fail"),
        ("90 days", "pass"),
        ("84 days", "fail"),
    ],
)
def test_i5_survival_in_weeks_months_days(survival: str, expected: str):
    assert status({"life_expectancy": survival}, "I5") == expected


@pytest.mark.parametrize(
    "field, value, criterion, expected",
    [
        ("ecog", 2, "I6", "pass"),
        ("ecog", 3, "I6", "fail"),
        ("lvef", "50 %", "I7", "pass"),
        ("lvef", "49 %", "I7", "fail"),
        ("dyspnea_grade", 1, "I8.a", "pass"),
        ("dyspnea_grade", 2, "I8.a", "fail"),
        ("spo2", "95 %", "I8.b", "pass"),
        ("spo2", "94 %", "I8.b", "review"),
        ("spo2", "89 %", "I8.b", "fail"),
        ("supplemental_oxygen", True, "I8.b", "fail"),
        ("nyha_class", 2, "E2", "pass"),
        ("nyha_class", "III", "E2", "fail"),
        ("nyha_class", 4, "E2", "fail"),
        ("informed_consent", False, "I11", "fail"),
        ("immunotherapy_ae_grade", 1, "E12", "pass"),
        ("immunotherapy_ae_grade", 2, "E12", "fail"),
    ],
)
def test_simple_thresholds(field: str, value: object, criterion: str, expected: str):
    assert status({field: value}, criterion) == expected


@pytest.mark.parametrize(
    "therapies, expected",
    [
        ([], "pass"),
        ([{"type": "car-t", "target": "CD19", "response": "NR"}], "pass"),
        ([{"type": "car-t", "target": "CD19", "response": "relapse"}], "pass"),
        ([{"type": "car-t", "target": "CD19", "response": "CR"}], "fail"),
        ([{"type": "car-t", "target": "CD19", "response": "pending"}], "fail"),
        ([{"type": "car-t", "target": "CD19"}], "unknown"),
    ],
)
def test_i4_prior_car_t(therapies: list, expected: str):
    assert status({"therapies": therapies}, "I4") == expected


def test_i4_unknown_without_therapy_history():
    assert status({}, "I4", drop=("therapies",)) == "unknown"


def test_i10_pregnancy_test_for_women_of_childbearing_potential_only():
    positive = {"pregnancy_test": {"result": "positive", "date": dt.date(2026, 11, 18)}}
    assert status(positive, "I10") == "fail"
    assert status({**positive, "childbearing_potential": False}, "I10") == "pass"
    male = {"sex": "male", "contraception_agreed": False}
    assert status({**male, "partner_reproductive_potential": True}, "I10") == "fail"
    assert status({**male, "partner_reproductive_potential": False}, "I10") == "pass"
    assert status(male, "I10") == "unknown"  # "fertile male patients with fertile partners"
    assert status({"childbearing_potential": False, "contraception_agreed": False}, "I10") == "pass"


@pytest.mark.parametrize(
    "serology, expected",
    [
        ({"hbv_dna": "positive"}, "fail"),
        ({"hcv_rna": "positive"}, "fail"),
        ({"hiv": "positive"}, "fail"),
        ({"syphilis": "positive"}, "fail"),
        ({"hbsag": "positive"}, "pass"),  # E10 names HBV DNA, not HBsAg
    ],
)
def test_e10_serology(serology: dict, expected: str):
    assert status({"serology": {**BASE["serology"], **serology}}, "E10") == expected


@pytest.mark.parametrize(
    "event_date, expected",
    [
        (dt.date(2026, 5, 20), "fail"),  # first day of the 6-month window
        (dt.date(2026, 5, 19), "pass"),  # the day before it
        (dt.date(2026, 11, 20), "fail"),  # screening day itself
    ],
)
def test_e3_look_back_window_edges(event_date: dt.date, expected: str):
    conditions = [{"type": "myocardial_infarction", "date": event_date}]
    assert status({"conditions": conditions, "procedures": []}, "E3") == expected


@pytest.mark.parametrize(
    "stop, expected", [(dt.date(2026, 11, 6), "fail"), (dt.date(2026, 11, 5), "pass")]
)
def test_e13_immunosuppressant_stopped_within_two_weeks(stop: dt.date, expected: str):
    meds = [{"name": "tacrolimus", "class": "immunosuppressant", "stop_date": stop}]
    assert status({"medications": meds}, "E13") == expected


@pytest.mark.parametrize(
    "conditions, expected",
    [
        (
            [
                {
                    "type": "malignancy",
                    "category": "skin_bcc",
                    "status": "cured",
                    "invasive": False,
                    "date": dt.date(2023, 1, 1),
                }
            ],
            "pass",
        ),
        (
            [
                {
                    "type": "malignancy",
                    "category": "skin_bcc",
                    "status": "cured",
                    "invasive": False,
                    "date": dt.date(2025, 6, 1),
                }
            ],
            "fail",
        ),  # recurrence-free for less than 2 years
        (
            [
                {
                    "type": "malignancy",
                    "category": "other",
                    "status": "cured",
                    "date": dt.date(2010, 1, 1),
                }
            ],
            "fail",
        ),
        ([], "pass"),
    ],
)
def test_e8_other_malignancies(conditions: list, expected: str):
    assert status({"conditions": conditions}, "E8") == expected


def test_attestation_settles_review_items():
    assert status({}, "E16") == "review"
    assert status({"attestations": {"NCT06559644/E16": "pass"}}, "E16") == "pass"
    assert status({"attestations": {"NCT06559644/E16": "fail"}}, "E16") == "fail"
    assert status({"attestations": {"NCT06559644/I12": "pass"}}, "I12") == "pass"


def test_complete_record_with_attestations_is_eligible():
    data = {
        **BASE,
        "conditions": [],
        "medications": [],
        "procedures": [],
        "vaccinations": [],
        "allergies": [],
        "immunotherapy_ae_grade": 0,
        "attestations": {f"NCT06559644/{c}": "pass" for c in ("I12", "E9", "E16")},
    }
    result = screen(parse_patient(yaml.safe_dump(data)), RULES)
    assert {c.id: c.status.value for c in result.criteria if c.status.value != "pass"} == {}
    assert result.verdict.value == "eligible"
