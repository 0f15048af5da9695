"""The public acceptance cases, checked through the CLI's JSON output as a script would read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from screener.cli import app

HERE = Path(__file__).parent / "acceptance"
EXPECTED: dict = yaml.safe_load((HERE / "expected.yaml").read_text(encoding="utf-8"))
runner = CliRunner()


def statuses(trial: dict) -> dict[str, str]:
    """Criterion and part ids to statuses, as one flat mapping."""
    found = {}
    for criterion in trial["criteria"]:
        found[criterion["id"]] = criterion["status"]
        for part in criterion["parts"]:
            found[part["id"]] = part["status"]
    return found


def cases():
    for patient, trials in sorted(EXPECTED.items()):
        for trial, expected in sorted(trials.items()):
            yield pytest.param(patient, trial, expected, id=f"{patient}::{trial}")


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    """Every acceptance patient screened once, through `screener check --format json`."""
    files = sorted((HERE / "patients").glob("*.yaml"))
    result = runner.invoke(app, ["check", *map(str, files), "--format", "json"])
    assert result.exit_code == 0, result.output
    return {report["patient"]: report for report in json.loads(result.stdout)}


@pytest.mark.parametrize("patient, trial, expected", list(cases()))
def test_acceptance_case(reports: dict[str, dict], patient: str, trial: str, expected: dict):
    report = reports[patient]
    by_trial = {t["trial"]: t for t in report["trials"]}
    assert trial in by_trial, f"{trial} not reported"
    actual = statuses(by_trial[trial])
    mismatches = {}
    for key, want in expected.items():
        got = by_trial[trial]["verdict"] if key == "verdict" else actual.get(key, "<absent>")
        ok = got != "pass" if want == "!pass" else got == want
        if not ok:
            mismatches[key] = (want, got)
    assert not mismatches, f"{patient} {trial}: expected vs actual {mismatches}"


def test_every_acceptance_patient_has_expectations():
    ids = {
        yaml.safe_load(p.read_text(encoding="utf-8"))["id"]
        for p in (HERE / "patients").glob("*.yaml")
    }
    assert ids == set(EXPECTED)
