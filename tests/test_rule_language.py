"""The rule language is declared once (screener/criteria/_language.py, on the compiler's
steps): the reference page docs/rule-language.md is written from the declarations, and
every example it shows gives the status it claims on the patient it states."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from screener.criteria._docs import PAGE, rule_language_page
from screener.criteria._language import EXAMPLE_PATIENT, STATUSES, Example
from screener.criteria._rules import LANGUAGE, parse_rule_set
from screener.criteria._schema import rules_schema
from screener.reading._patient import parse_patient
from screener.screening._engine import screen

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = [
    *(("kind", e) for e in LANGUAGE.kinds.values()),
    *(("operator", e) for e in LANGUAGE.operators.values()),
    *(("modifier", e) for e in LANGUAGE.modifiers.values()),
]
EXAMPLES = [
    pytest.param(example, id=f"{role}-{entry.name}-{i}-{example.status}")
    for role, entry in ENTRIES
    for i, example in enumerate(entry.doc.examples)
]


def rule_set_of(example: Example) -> str:
    """The example as the check of inclusion I1, as the reference page says."""
    return (
        "trial: NCT00000000\nproduct: Example\ntitle: Rule language examples\n"
        "sources: [docs/rule-language.md]\ncriteria:\n"
        "  - id: I1\n    kind: inclusion\n    label: Example\n    text: Example\n"
        "    check:\n" + textwrap.indent(example.check, " " * 6) + "\n"
    )


def test_the_reference_page_is_current():
    page = (ROOT / PAGE).read_bytes()
    assert page == rule_language_page().encode("utf-8"), (
        f"{PAGE} is stale: run python tools/rule_docs.py"
    )


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_gives_the_status_it_claims(example: Example):
    patient = parse_patient(EXAMPLE_PATIENT, "example.yaml")
    assert not patient.warnings
    result = screen(patient, parse_rule_set(rule_set_of(example), "<rule-language>"))
    assert result.criteria[0].status.value == example.status, result.criteria[0]


@pytest.mark.parametrize(("role", "entry"), ENTRIES, ids=lambda x: getattr(x, "name", x))
def test_every_declaration_shows_a_passing_and_a_failing_example(role, entry):
    statuses = [x.status for x in entry.doc.examples]
    assert "pass" in statuses and "fail" in statuses, (role, entry.name, statuses)
    assert set(statuses) <= set(STATUSES)


def _as_json(value):
    if isinstance(value, dict):
        return {str(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value.isoformat() if isinstance(value, dt.date) else value


@pytest.fixture(scope="module")
def rules_validator():
    return jsonschema.Draft202012Validator(json.loads(json.dumps(rules_schema())))


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_rules_schema_accepts_every_example(rules_validator, example: Example):
    # The schema is generated from the same declarations; an example the compiler takes
    # but the schema refuses would show an editor a false error.
    data = _as_json(yaml.safe_load(rule_set_of(example)))
    assert not [e.message for e in rules_validator.iter_errors(data)]


def test_the_readme_points_to_the_reference():
    section = (ROOT / "README.md").read_text("utf-8").split("## Rule sets", 1)[1]
    assert "(docs/rule-language.md)" in section.split("\n## ", 1)[0]


def test_the_readme_rule_example_loads():
    # The README shows a check as a rule author writes one; it must be one the loader takes.
    section = (ROOT / "README.md").read_text("utf-8").split("## Rule sets", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    head, _, check = block.partition("\n")
    assert head == "check:"
    text = rule_set_of(Example("pass", textwrap.dedent(check)))
    assert parse_rule_set(text, "NCT00000000.yaml").criteria[0].check is not None
