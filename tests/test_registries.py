"""Rule sets named by any public registry's id, not only ClinicalTrials.gov's."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from screener import RuleSetError, load_rule_set, parse_patient, screen
from screener.cli import app

RULE = """\
trial: {trial}
product: P-1
title: t
sources: [https://example.org]
criteria:
  - id: I1
    kind: inclusion
    label: ECOG 0-1
    text: ECOG 0 or 1; the investigator confirms fitness.
    check:
      all:
        - {{field: ecog, le: 1}}
        - {{review: fit for the trial}}
"""


@pytest.mark.parametrize(
    "trial, file",
    [
        ("ChiCTR2000029308", "ChiCTR2000029308.yaml"),
        ("ChiCTR-IOR-17013040", "ChiCTR-IOR-17013040.yaml"),
        ("CTRI/2020/03/023958", "CTRI-2020-03-023958.yaml"),  # "/" is "-" in a file name
        ("2022-500123-45-00", "2022-500123-45-00.yaml"),  # EU CT
        ("2015-001234-56", "2015-001234-56.yaml"),  # EudraCT
        ("ISRCTN12345678", "ISRCTN12345678.yaml"),
        ("ACTRN12620000123456", "ACTRN12620000123456.yaml"),
    ],
)
def test_a_trial_of_any_registry_loads_and_screens(tmp_path: Path, trial: str, file: str):
    path = tmp_path / file
    path.write_text(RULE.format(trial=trial), encoding="utf-8")
    rule_set = load_rule_set(path)
    assert rule_set.trial == trial
    # an attestation is keyed by the trial id and the criterion, slashes and all
    patient = parse_patient(
        f"id: p\nscreening_date: 2026-11-20\necog: 1\nattestations: {{{trial}/I1: pass}}\n",
        "p.yaml",
    )
    assert screen(patient, rule_set).criteria[0].status.value == "pass"


def test_an_id_of_no_registry_is_refused_naming_the_registries(tmp_path: Path):
    path = tmp_path / "NCT1234.yaml"
    path.write_text(RULE.format(trial="NCT1234"), encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(path)
    said = str(caught.value)
    assert "trial id 'NCT1234' is not a registry id" in said
    assert "NCT06559644 (ClinicalTrials.gov)" in said and "ChiCTR2000029308 (ChiCTR)" in said


def test_a_ctri_file_named_with_slashes_replaced_is_asked_for(tmp_path: Path):
    path = tmp_path / "CTRI.yaml"
    path.write_text(RULE.format(trial="CTRI/2020/03/023958"), encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(path)
    assert caught.value.diagnostic.hint == "name the file CTRI-2020-03-023958.yaml"


def test_the_rules_schema_accepts_every_registry(tmp_path: Path):
    import json

    import jsonschema
    import yaml

    schema = json.loads(CliRunner().invoke(app, ["schema", "rules"]).stdout)
    for trial in ("ChiCTR2000029308", "CTRI/2020/03/023958", "ISRCTN12345678"):
        jsonschema.validate(yaml.safe_load(RULE.format(trial=trial)), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(RULE.format(trial="NCT1234")), schema)
