"""Thresholds written as sources write them: `le: 1.5 mg/dL (133 µmol/L)`.

1.5 mg/dL of creatinine is 132.6 µmol/L; a trial that prints "133 µmol/L" applies 133 to a
value in µmol/L, so 133 µmol/L meets it, though it is 1.504 mg/dL.
"""

from __future__ import annotations

import pytest

from screener import RuleSetError, parse_patient, parse_rule_set, screen

RULE = """\
trial: NCT09999999
product: X
title: t
sources: [https://example.org]
criteria:
  - id: I1
    kind: inclusion
    label: Creatinine
    text: Serum creatinine ≤ 1.5 mg/dL (133 µmol/L)
    check: {field: labs.creatinine, le: LIMIT}
"""


def _status(limit: str, value: str) -> tuple[str, str]:
    rule_set = parse_rule_set(RULE.replace("LIMIT", limit), "NCT09999999.yaml")
    patient = parse_patient(
        f"id: p\nscreening_date: 2026-11-20\nlabs: {{creatinine: {value}}}\n", "p.yaml"
    )
    result = screen(patient, rule_set).criteria[0]
    return result.status.value, result.reason


@pytest.mark.parametrize(
    "value, status, reason",
    [
        # in the stated equivalent's unit: the source's own 133
        ("133 umol/L", "pass", "creatinine 133 umol/L ≤ 133 µmol/L"),
        ("134 umol/L", "fail", "creatinine 134 umol/L > 133 µmol/L"),
        # in its dimension (molar): converted to µmol/L, compared with 133
        ("0.133 mmol/L", "pass", "creatinine 0.133 mmol/L (= 133 µmol/L) ≤ 133 µmol/L"),
        # in the limit's unit, or its dimension (mass): the 1.5
        ("1.5 mg/dL", "pass", "creatinine 1.5 mg/dL ≤ 1.5 mg/dL"),
        ("1.51 mg/dL", "fail", "creatinine 1.51 mg/dL > 1.5 mg/dL"),
        ("15 mg/L", "pass", "creatinine 15 mg/L (= 1.5 mg/dL) ≤ 1.5 mg/dL"),
    ],
)
def test_a_value_meets_the_limit_the_source_states_in_its_unit(value, status, reason):
    assert _status("1.5 mg/dL (133 µmol/L)", value) == (status, reason)


def test_without_a_stated_equivalent_the_limit_converts_through_the_molar_mass():
    assert _status("1.5 mg/dL", "133 umol/L") == (
        "fail",
        "creatinine 133 umol/L (= 1.504 mg/dL) > 1.5 mg/dL",
    )


@pytest.mark.parametrize(
    "limit, message",
    [
        # a slipped digit: 13.3 µmol/L is a tenth of the limit
        ("1.5 mg/dL (13.3 µmol/L)", "13.3 µmol/L is 0.15 mg/dL of creatinine, not 1.5 mg/dL"),
        # 4.8 % off: close enough to look right, far enough to change who passes
        ("1.5 mg/dL (139 µmol/L)", "139 µmol/L is 1.57 mg/dL of creatinine, not 1.5 mg/dL"),
        ("1.5 mg/dL (1.5 mg/dL)", "is in the limit's own unit"),
        ("1.5 mg/dL (133 kg)", "kg is a mass; expected a concentration"),
    ],
)
def test_an_equivalent_that_is_not_one_is_an_error_at_the_threshold(limit, message):
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(RULE.replace("LIMIT", limit), "NCT09999999.yaml")
    assert message in str(caught.value)
    assert caught.value.diagnostic.position is not None
    assert caught.value.diagnostic.position.line == 10


def test_an_equivalent_rounded_to_the_nearest_ten_is_accepted():
    # 132.6 µmol/L printed as 130 (2.0 % off), as some protocols round it
    assert _status("1.5 mg/dL (130 µmol/L)", "129 umol/L")[0] == "pass"


def test_hba1c_in_percent_spelt_out_converts_by_the_master_equation():
    # `6.0 percent` is 6.0 %: 42.1 mmol/mol by the IFCC–NGSP line, not a ratio of 0.06
    rule = RULE.replace("labs.creatinine, le: LIMIT", "labs.hba1c, le: 53 mmol/mol")
    rule_set = parse_rule_set(rule, "NCT09999999.yaml")
    patient = parse_patient(
        "id: p\nscreening_date: 2026-11-20\nlabs: {hba1c: 6.0 percent}\n", "p.yaml"
    )
    result = screen(patient, rule_set).criteria[0]
    assert (result.status.value, result.reason) == (
        "pass",
        "HbA1c 6.0 percent (= 42.1 mmol/mol) ≤ 53 mmol/mol",
    )
