"""`screener schema`: the JSON Schemas editors use agree with what the loaders accept."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from screener.cli import app

ROOT = Path(__file__).resolve().parent.parent
PATIENTS = sorted(
    [
        *ROOT.glob("examples/patients/*.yaml"),
        *ROOT.glob("tests/acceptance/patients/*.yaml"),
        ROOT / "tests/data/spec_patient.yaml",
    ]
)
runner = CliRunner()


def schema(kind: str) -> dict:
    result = runner.invoke(app, ["schema", kind])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def as_json(value):
    """YAML's dates become the ISO strings an editor's YAML language server sees."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@pytest.fixture(scope="module")
def patient_validator():
    return jsonschema.Draft202012Validator(schema("patient"))


@pytest.mark.parametrize("path", PATIENTS, ids=lambda p: p.name)
def test_every_valid_patient_file_matches_the_schema(patient_validator, path: Path):
    errors = list(patient_validator.iter_errors(as_json(yaml.safe_load(path.read_text("utf-8")))))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize(
    "text, where",
    [
        ("id: X\nlvef: 55 kg\n", "lvef"),
        ("id: X\necog: 7\n", "ecog"),
        ("id: X\nsex: unknown-value\n", "sex"),
        ("id: X\nlabs: {creatinine: 1.4 U/L}\n", "creatinine"),
        ("id: X\nlabs: {ast: 30 umol/L}\n", "ast"),
        ("lvef: 55 %\n", "id"),
    ],
)
def test_schema_rejects_what_the_loader_rejects(patient_validator, text: str, where: str):
    errors = list(patient_validator.iter_errors(as_json(yaml.safe_load(text))))
    assert errors
    assert any(where in (".".join(map(str, e.absolute_path)) + e.message) for e in errors)


def test_schema_offers_units_and_values_for_completion():
    data = schema("patient")
    creatinine = data["properties"]["labs"]["properties"]["creatinine"]["anyOf"][0]
    assert "mg/dL" in creatinine["description"] and "µmol/L" in creatinine["description"]
    assert data["properties"]["sex"]["enum"][:2] == ["female", "male"]


@pytest.mark.parametrize("path", sorted(ROOT.glob("rules/*.yaml")), ids=lambda p: p.name)
def test_rule_files_match_the_rules_schema(path: Path):
    validator = jsonschema.Draft202012Validator(schema("rules"))
    errors = list(validator.iter_errors(as_json(yaml.safe_load(path.read_text("utf-8")))))
    assert not errors, [e.message for e in errors][:3]


def test_rules_schema_rejects_an_unknown_node():
    validator = jsonschema.Draft202012Validator(schema("rules"))
    bad = {
        "trial": "NCT00000001",
        "product": "P",
        "title": "T",
        "sources": ["s"],
        "criteria": [
            {
                "id": "I1",
                "kind": "inclusion",
                "label": "L",
                "text": "t",
                "check": {"field": "ecog", "below": 2},
            }
        ],
    }
    assert list(validator.iter_errors(bad))
