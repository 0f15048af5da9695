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
