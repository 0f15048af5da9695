"""Fuzzing the loaders: whatever the text, the answer is a PatientError / RuleSetError or a
usable result, never another exception (which the command line would report as a bug).

Valid texts are mutated line by line (deleted, duplicated, swapped, re-indented, truncated),
characters are inserted, and values are replaced by hostile scalars (odd units, special
floats, impossible dates, tags, aliases, brackets). A patient or rule set that loads is
screened too, so a value the loader lets through cannot crash the engine later.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import screener
from screener import PatientError, RuleSetError
from screener.core._units import SPELLINGS
from screener.core._vocabulary import PATIENT, field_names

HERE = Path(__file__).parent
TODAY = dt.date(2026, 11, 20)
PATIENT_TEXT = (HERE / "data" / "spec_patient.yaml").read_text(encoding="utf-8")
RULE_SETS = screener.load_rule_sets()

# Every construct of the rule language, one check per line, so line mutations reach them.
RULE_TEXT = textwrap.dedent("""\
    trial: NCT00000001
    product: Fuzz
    title: Every construct once
    sources: [https://example.org/trial]
    caveats: [none]
    criteria:
      - id: I1
        kind: inclusion
        label: L1
        text: T1
        check:
          all:
            - {field: diagnosis.disease, is: B-ALL}
            - {field: diagnosis.status, in: [relapsed, refractory]}
            - any: [{field: ecog, le: 2}, {field: age, ge: 18 years}]
            - {field: labs.total_bilirubin, le: 3 x ULN}
            - {field: labs.creatinine, le: 1.5 mg/dL, fresh: {within: 4 weeks, before: screening}}
            - {field: diagnosis.markers.CD19.result, is: positive, fresh: {within: 3 months, before: screening}}
            - {field: lvef, ge: 45 %}
            - {field: labs.inr, le: 1.5}
      - id: I2
        kind: inclusion
        label: L2
        text: T2
        combine: any
        parts:
          - id: I2.a
            label: P1
            check: {at_least: 1, of: [{field: spo2, ge: 92 %}, {field: supplemental_oxygen, is: false}]}
          - id: I2.b
            label: P2
            check:
              if: {field: sex, is: female}
              then: {field: pregnant, is: false}
              else: {review: "something only the investigator can judge"}
      - id: E1
        kind: exclusion
        label: L3
        text: T3
        check: {exists: conditions, where: {field: type, in: [gvhd, stroke]}, label: serious conditions}
      - id: E2
        kind: exclusion
        label: L4
        text: T4
        check:
          any:
            - {count: therapies, where: {field: type, is: tki}, ge: 2, distinct: drug}
            - {every: therapies, where: {field: type, is: car-t}, check: {field: response, in: [NR, relapse]}}
            - {field: diagnosis.abl1_mutations, contains: T315I}
            - {not: {field: diagnosis.cns_involvement, is: none}}
            - {field: apheresis_date, within: 2 weeks, before: screening}
            - {field: birth_date, at_least: 18 years, before: apheresis}
""")

DISPLAY_UNITS = sorted({display for _, display in SPELLINGS.values()})
HOSTILE_UNITS = [
    "mg/furlong",
    "10*9/L",
    "10^9/L",
    "degC",
    "kelvin",
    "kg/m2",
    "µmol/L",
    "μmol/L",
    "%%",
    "x ULN",
    "mmHg",
    "1/0",
    "()",
    "meter**1000",
    "",
    " ",
    "e",
]
SPECIAL = [
    ".nan",
    ".NaN",
    ".inf",
    "-.inf",
    "1e999",
    "-1e999",
    "1e308",
    "-0",
    "0",
    "0.0",
    "1,4",
    "0x1F",
    "0o17",
    "0b101",
    "1_000",
    "190:20:30",
    "99999999999999999999999999999999",
    "0x" + "f" * 300,
    "~",
    "null",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "true",
    "False",
    "2026-02-30",
    "2026-13-01",
    "2026-11-20",
    "0001-01-01",
    "9999-12-31",
    "2026-11-20 10:30:00",
    "2026-11-20T25:00:00Z",
    "!!binary aGk=",
    "!!python/name:os.system",
    "!x 1",
    "!!str 5",
    "!!int 5",
    "!!float x",
    "!!bool maybe",
    "!!timestamp 2026-02-30",
    "*a",
    "&a 1",
    "*nope",
    "[]",
    "{}",
    "[1, [2, [3]]]",
    "{value: 1 mg/dL}",
    "{value: 30 U/L, uln: 1.2 mg/dL}",
    "{uln: 3 U/L}",
    "{value: .nan, uln: -1 U/L}",
    "'quoted'",
    '"\\x00"',
    '"\\ud800"',
    '"\\x07"',
    "|",
    ">",
    "? x",
    "- x",
    "<<: *a",
    "p.T315I",
    "p.Thr315Ile",
    "III",
    "V",
    "IV",
    "positive",
    "pass",
    "maybe",
    "'",
    '"',
    "#",
    "@",
    "`",
    "%",
    "&",
    "*",
    "!",
    "{",
    "[",
    "]",
    "}",
    ",",
    ":",
    "- - -",
    "? ? ?",
]
NUMBERS = st.one_of(
    st.integers(-(10**40), 10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e999", "-0", ".5", "5.", "1e-400", "1,4", "1.4.2", "0x10"]),
)
QUANTITIES = st.builds(
    lambda n, sep, u: f"{n}{sep}{u}",
    NUMBERS,
    st.sampled_from(["", " ", "  "]),
    st.sampled_from(DISPLAY_UNITS + HOSTILE_UNITS),
)
YAML_CHARS = st.characters(codec="utf-8") | st.sampled_from(list(":-?[]{},#&*!|>'\"%@`\t\n\r \\"))
SCALARS = st.one_of(
    QUANTITIES,
    st.sampled_from(SPECIAL),
    st.text(YAML_CHARS, max_size=12),
    # Any code point, surrogates and control characters included.
    st.text(st.characters(blacklist_categories=()), max_size=6),
)


@st.composite
def mutated(draw, text: str) -> str:
    """The text with a few line-level edits, inserted characters and replaced values."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 5))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        op = draw(
            st.sampled_from(
                [
                    "delete",
                    "duplicate",
                    "swap",
                    "insert",
                    "value",
                    "value",
                    "value",
                    "indent",
                    "dedent",
                    "truncate",
                    "key",
                ]
            )
        )
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.text(YAML_CHARS, min_size=1, max_size=4)) + line[at:]
        elif op == "value" and ":" in line:
            at = line.index(":") + 1
            lines[i] = line[:at] + " " + draw(SCALARS)
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 4)) + line
        elif op == "dedent":
            lines[i] = line.lstrip(" ")
        elif op == "truncate":
            lines[i] = line[: draw(st.integers(0, len(line)))]
        elif op == "key" and ":" in line:
            indent = line[: len(line) - len(line.lstrip(" -"))]
            key = draw(st.sampled_from(FIELDS) | st.text(YAML_CHARS, max_size=6))
            lines[i] = indent + key + line[line.index(":") :]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))


FIELDS = sorted({name.rsplit(".", 1)[-1] for name in field_names(PATIENT)})

# Plain data shaped like a patient record, dumped by PyYAML: always valid YAML, so all the
# examples reach the vocabulary checks.
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    QUANTITIES,
    st.sampled_from(SPECIAL),
    st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)),
    st.text(max_size=10),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
RECORDS = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8).map(
    lambda fields: {"id": "PT-1", **fields}
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_patient(text: str) -> None:
    try:
        patient = screener.parse_patient(text, "fuzz.yaml", today=TODAY)
    except PatientError as exc:
        for d in exc.diagnostics:  # the command line renders every one of them
            d.render()
            d.to_json()
        return
    for w in patient.warnings:
        w.render()
    for rule_set in RULE_SETS:
        screener.screen(patient, rule_set)


@pytest.mark.slow
@FUZZ
@given(mutated(PATIENT_TEXT))
def test_mutated_patient_text_gives_a_patient_or_a_patient_error(text):
    check_patient(text)


@pytest.mark.slow
@FUZZ
@given(RECORDS)
def test_random_patient_records_give_a_patient_or_a_patient_error(record):
    check_patient(yaml.safe_dump(record, allow_unicode=True, sort_keys=False))


@FUZZ
@given(st.text(YAML_CHARS, max_size=200))
def test_random_text_gives_a_patient_or_a_patient_error(text):
    check_patient(text)


RULE_PATIENT = screener.parse_patient(PATIENT_TEXT, "pt.yaml", today=TODAY)


def check_rules(text: str) -> None:
    try:
        rule_set = screener.parse_rule_set(text, "<fuzz>")
    except RuleSetError as exc:
        for d in exc.diagnostics:
            d.render()
            d.to_json()
        return
    screener.screen(RULE_PATIENT, rule_set)


def test_the_rule_fuzz_base_is_valid():
    rule_set = screener.parse_rule_set(RULE_TEXT, "<fuzz>")
    assert [c.id for c in rule_set.criteria] == ["I1", "I2", "E1", "E2"]


@FUZZ
@given(mutated(RULE_TEXT))
def test_mutated_rule_text_gives_a_rule_set_or_a_rule_set_error(text):
    check_rules(text)


@FUZZ
@given(st.text(YAML_CHARS, max_size=200))
def test_random_text_gives_a_rule_set_or_a_rule_set_error(text):
    check_rules(text)
