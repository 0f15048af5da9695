"""The README's rule author's loop, run step by step on examples/rule-author/: a trial whose
fields exist only in its rules directory's vocabulary file, validated, shown, tested with
coverage, collected by pytest, and screened from a YAML patient and from a FHIR bundle."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from screener.cli import app

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "rule-author"


def _steps() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## The rule author's loop", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    assert lines[0] == "cd examples/rule-author"
    return [shlex.split(line) for line in lines[1:] if line]


STEPS = _steps()


def _run(words: list[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(EXAMPLE)
    if ">" in words:  # a redirect: the output is checked here, not written into examples/
        words = words[: words.index(">")]
    assert words[0] == "screener"
    return CliRunner().invoke(app, words[1:], env={"COLUMNS": "200"})


def test_the_loop_has_the_steps_the_readme_promises():
    commands = [" ".join(w[:2]) for w in STEPS]
    assert commands == [
        "screener validate",
        "screener show",
        "screener schema",
        "screener test",
        "python -m",
        "screener check",
        "screener check",
    ]


def test_validate_show_and_schema_know_the_declared_fields(monkeypatch):
    validated = _run(STEPS[0], monkeypatch)
    assert validated.exit_code == 0, validated.output
    assert "4 valid, 0 with errors" in validated.stdout
    shown = _run(STEPS[1], monkeypatch)
    assert shown.exit_code == 0, shown.output
    assert "check: dated (labs.ldh.date) within 14 days before screening:" in shown.stdout
    assert "- labs.ldh ≤ 2 × ULN" in shown.stdout
    schema = json.loads(_run(STEPS[2], monkeypatch).stdout)
    assert "ldh" in schema["properties"]["labs"]["properties"]


def test_the_cases_pass_with_full_coverage(monkeypatch):
    tested = _run(STEPS[3], monkeypatch)
    assert tested.exit_code == 0, tested.output
    assert "6 passed, 0 failed" in tested.stdout
    assert "lacks" not in tested.stdout


def test_pytest_collects_the_same_cases():
    words = STEPS[4]
    assert words[:3] == ["python", "-m", "pytest"]
    done = subprocess.run(
        [sys.executable, *words[1:], "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout


def test_a_yaml_patient_and_a_fhir_bundle_screen_against_the_declared_fields(monkeypatch):
    from_yaml = _run(STEPS[5] + ["-f", "json"], monkeypatch)
    assert from_yaml.exit_code == 0, from_yaml.output
    (trial,) = json.loads(from_yaml.stdout)["trials"]
    assert trial["verdict"] == "eligible"
    from_fhir = _run(STEPS[6] + ["-f", "json"], monkeypatch)
    assert from_fhir.exit_code == 0, from_fhir.output
    screened = json.loads(from_fhir.stdout)
    statuses = {c["id"]: c["status"] for c in screened["trials"][0]["criteria"]}
    # LDH 310 U/L (ULN 250) from the Observation coded LOINC 2532-0, dated 5 days before
    assert statuses["I2"] == "pass"
    assert "2532-0" in screened["sources"]["labs.ldh"]
    # a bundle that lists no conditions says nothing about sickle cell disease
    assert statuses["E1"] == "unknown"


def test_the_to_do_list_asks_for_a_declared_field_in_its_own_words(monkeypatch, tmp_path):
    # LDH is declared with task chemistry and label LDH: the nurse reads that, not labs.ldh
    patient = tmp_path / "no-ldh.yaml"
    patient.write_text(
        "id: EX-002\nscreening_date: 2026-11-20\nbirth_date: 1980-02-01\nsex: female\n"
        "ecog: 1\nconditions: []\n",
        encoding="utf-8",
    )
    result = _run(["screener", "check", str(patient), "--rules", "rules/"], monkeypatch)
    todo = result.stdout.split("To do", 1)[1]
    assert "blood chemistry" in todo and "LDH" in todo
    assert "labs.ldh" not in todo
