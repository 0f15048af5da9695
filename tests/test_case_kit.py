"""The rule-author kit: case files under pytest (the plugin) and under `screener test`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from screener.cli import app

BASELINE = (Path(__file__).parent / "acceptance" / "patients" / "baseline.yaml").read_text("utf-8")
runner = CliRunner()

GOOD = """\
trial: NCT06559644
base: baseline.yaml
cases:
  - name: creatinine-145-umol-fails
    patient: {labs: {creatinine: 145 umol/L}}
    expect: {I9.c: fail, I9: fail}
    verdict: ineligible
  - name: no-lvef-is-unknown
    patient: {lvef: null}
    expect: {I7: unknown}
"""

CNCT19 = """\
trial: NCT04684147
base: baseline.yaml
cases:
  - name: ecog-2-fails
    patient: {ecog: 2}
    expect: {I7: fail}
"""


@pytest.fixture
def cases_dir(tmp_path: Path) -> Path:
    (tmp_path / "baseline.yaml").write_text(BASELINE, encoding="utf-8")
    return tmp_path


def test_plugin_collects_and_passes_cases(pytester: pytest.Pytester):
    pytester.makefile(".yaml", baseline=BASELINE)
    pytester.path.joinpath("NCT06559644.cases.yaml").write_text(GOOD, encoding="utf-8")
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*NCT06559644::creatinine-145-umol-fails PASSED*"])


def test_plugin_selects_a_trial_by_product_name(pytester: pytest.Pytester):
    pytester.makefile(".yaml", baseline=BASELINE)
    pytester.path.joinpath("NCT06559644.cases.yaml").write_text(GOOD, encoding="utf-8")
    pytester.path.joinpath("NCT04684147.cases.yaml").write_text(CNCT19, encoding="utf-8")
    result = pytester.runpytest("-k", "CNCT19")
    result.assert_outcomes(passed=1, deselected=2)


def test_plugin_failure_shows_expected_actual_and_yaml_to_paste(pytester: pytest.Pytester):
    pytester.makefile(".yaml", baseline=BASELINE)
    wrong = GOOD.replace("{I9.c: fail, I9: fail}", "{I9.c: pass, I9: fail}")
    pytester.path.joinpath("NCT06559644.cases.yaml").write_text(wrong, encoding="utf-8")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*NCT06559644.cases.yaml:4: case creatinine-145-umol-fails*",
            "*I9.c*pass*fail*",
            "*because: creatinine 145 umol/L (= 1.64 mg/dL) > 1.6 mg/dL*",
            "*actual, ready to paste:*",
            "*I9.c: fail*",
        ]
    )


def test_plugin_typo_fails_collection_with_line(pytester: pytest.Pytester):
    pytester.makefile(".yaml", baseline=BASELINE)
    typo = GOOD.replace("    verdict: ineligible", "    verdit: ineligible")
    pytester.path.joinpath("NCT06559644.cases.yaml").write_text(typo, encoding="utf-8")
    result = pytester.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*NCT06559644.cases.yaml:7:5: error: unknown key 'verdit'*", "*did you mean 'verdict'?*"]
    )


def test_plugin_xfail_needs_a_reason_and_is_strict(pytester: pytest.Pytester):
    pytester.makefile(".yaml", baseline=BASELINE)
    text = GOOD.replace("    expect: {I7: unknown}", "    expect: {I7: pass}\n    xfail: LVEF gap")
    pytester.path.joinpath("NCT06559644.cases.yaml").write_text(text, encoding="utf-8")
    pytester.runpytest().assert_outcomes(passed=1, xfailed=1)
    strict = GOOD.replace(
        "    expect: {I7: unknown}", "    expect: {I7: unknown}\n    xfail: LVEF gap"
    )
    pytester.path.joinpath("NCT06559644.cases.yaml").write_text(strict, encoding="utf-8")
    pytester.runpytest().assert_outcomes(passed=1, failed=1)


def test_screener_test_runs_cases_without_pytest(cases_dir: Path):
    (cases_dir / "NCT06559644.cases.yaml").write_text(GOOD, encoding="utf-8")
    result = runner.invoke(app, ["test", str(cases_dir)])
    assert result.exit_code == 0, result.output
    assert "2 passed, 0 failed" in result.stdout


def test_screener_test_reports_a_mismatch(cases_dir: Path):
    wrong = GOOD.replace("{I7: unknown}", "{I7: pass}")
    (cases_dir / "NCT06559644.cases.yaml").write_text(wrong, encoding="utf-8")
    result = runner.invoke(app, ["test", str(cases_dir)])
    assert result.exit_code == 1
    assert "no-lvef-is-unknown" in result.stdout and "1 failed" in result.stdout


def test_coverage_names_criteria_without_passing_and_failing_cases(cases_dir: Path):
    (cases_dir / "NCT06559644.cases.yaml").write_text(GOOD, encoding="utf-8")
    result = runner.invoke(app, ["test", str(cases_dir), "--coverage"])
    assert result.exit_code == 1
    section = result.stdout.split("NCT06559644 coverage", 1)[1].split(" coverage ", 1)[0]
    lines = {
        line.split()[1]: line
        for line in section.splitlines()
        if line.strip().startswith(("✔", "✘", "·"))
    }
    assert lines["I9"].lstrip().startswith("✔")  # driven to pass and to fail
    assert "lacks a failing case" in lines["I7"]  # only pass and unknown here
    assert "lacks a passing and a failing case" in lines["E1"]
    assert "judgment only" in lines["E16"]


def test_a_misspelt_override_is_a_collection_error_at_its_line(pytester: pytest.Pytester):
    # labs.creatinin would otherwise test a patient with no creatinine at all
    pytester.makefile(".yaml", baseline=BASELINE)
    typo = GOOD.replace("{labs: {creatinine: 145 umol/L}}", "{labs: {creatinin: 145 umol/L}}")
    pytester.path.joinpath("NCT06559644.cases.yaml").write_text(typo, encoding="utf-8")
    result = pytester.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [
            "*NCT06559644.cases.yaml:5:*case creatinine-145-umol-fails: unknown key"
            " labs.creatinin*",
            "*did you mean 'creatinine'?*",
        ]
    )
    # and the same under `screener test`, where it fails the case at the same line
    out = runner.invoke(app, ["test", str(pytester.path)])
    assert out.exit_code == 1
    assert "NCT06559644.cases.yaml:5:" in out.stdout and "labs.creatinin" in out.stdout


def test_no_expectation_to_paste_while_the_patient_has_warnings(cases_dir: Path):
    # an implausible value loads with a warning: its statuses are not yet worth pasting
    odd = GOOD.replace("{lvef: null}", "{lvef: null, labs: {creatinine: 35 mg/dL}}").replace(
        "{I7: unknown}", "{I7: pass}"
    )
    (cases_dir / "NCT06559644.cases.yaml").write_text(odd, encoding="utf-8")
    result = runner.invoke(app, ["test", str(cases_dir)])
    assert result.exit_code == 1
    assert "has warnings" in result.stdout and "implausible" in result.stdout
    assert "ready to paste" not in result.stdout


def test_plugin_runs_cases_against_a_rules_directory(pytester: pytest.Pytester):
    # a rule author's own trial, not bundled: --screener-rules and the ini option
    rules = pytester.mkdir("rules")
    rules.joinpath("NCT09999999.yaml").write_text(OWN_TRIAL, encoding="utf-8")
    pytester.makefile(".yaml", baseline=BASELINE)
    pytester.path.joinpath("NCT09999999.cases.yaml").write_text(OWN_CASES, encoding="utf-8")
    pytester.runpytest("--screener-rules", str(rules)).assert_outcomes(passed=2)
    pytester.path.joinpath("pytest.ini").write_text("[pytest]\nscreener_rules = rules\n")
    pytester.runpytest().assert_outcomes(passed=2)
    # without it, the bundled rule sets have no such trial: said at collection
    pytester.path.joinpath("pytest.ini").unlink()
    result = pytester.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*no rule set for trial NCT09999999 in the bundled rule sets*"])


def test_coverage_reports_only_the_trials_whose_cases_ran(cases_dir: Path):
    (cases_dir / "NCT04684147.cases.yaml").write_text(CNCT19, encoding="utf-8")
    result = runner.invoke(app, ["test", str(cases_dir), "--coverage"])
    assert "NCT04684147 coverage" in result.stdout
    assert "NCT06559644 coverage" not in result.stdout


def test_coverage_knows_a_criterion_the_record_cannot_fail(tmp_path: Path):
    # I2 applies only after an isolated extramedullary relapse, and then the investigator
    # judges it: no recorded fact can fail it, so --coverage asks for no failing case (a
    # case with an attestation may still show one).
    rules = tmp_path / "rules"
    rules.mkdir()
    judged = OWN_TRIAL + (
        "  - id: I2\n"
        "    kind: inclusion\n"
        "    label: Assessable lesion if isolated extramedullary relapse\n"
        "    text: At least one assessable lesion after an isolated extramedullary relapse.\n"
        "    check:\n"
        "      if: {field: diagnosis.isolated_extramedullary, is: true}\n"
        '      then: {review: "at least one assessable extramedullary lesion"}\n'
    )
    rules.joinpath("NCT09999999.yaml").write_text(judged, encoding="utf-8")
    (tmp_path / "baseline.yaml").write_text(BASELINE, encoding="utf-8")
    (tmp_path / "NCT09999999.cases.yaml").write_text(OWN_CASES, encoding="utf-8")
    result = runner.invoke(app, ["test", str(tmp_path), "--coverage", "--rules", str(rules)])
    lines = {
        line.split()[1]: line
        for line in result.stdout.splitlines()
        if line.strip().startswith(("✔", "✘", "·"))
    }
    assert "only an attestation can make it fail" in lines["I2"]
    assert lines["I2"].lstrip().startswith("✔") and "lacks" not in lines["I2"]
    assert "lacks" not in lines["I1"]
    assert result.exit_code == 0, result.stdout


OWN_TRIAL = """\
trial: NCT09999999
product: OWN-1
title: A rule author's own trial
sources: [https://clinicaltrials.gov/study/NCT09999999]
criteria:
  - id: I1
    kind: inclusion
    label: ECOG 0-1
    text: ECOG performance status 0 or 1.
    check: {field: ecog, le: 1}
"""

OWN_CASES = """\
trial: NCT09999999
base: baseline.yaml
cases:
  - name: ecog-1-passes
    patient: {ecog: 1}
    expect: {I1: pass}
  - name: ecog-2-fails
    patient: {ecog: 2}
    expect: {I1: fail}
"""


def test_a_null_override_that_deletes_nothing_is_an_error_at_its_line(cases_dir: Path):
    # `lvf: null` meant to delete lvef: the case would test a patient with an LVEF
    typo = GOOD.replace("{lvef: null}", "{lvf: null}")
    (cases_dir / "NCT06559644.cases.yaml").write_text(typo, encoding="utf-8")
    result = runner.invoke(app, ["test", str(cases_dir)])
    assert result.exit_code == 1
    assert "NCT06559644.cases.yaml:9:15" in result.stdout, result.stdout
    assert "lvf: null deletes nothing, and is no field" in result.stdout
    assert "did you mean 'lvef'?" in result.stdout


WARNS_AND_REJECTED = """\
trial: NCT06559644
base: baseline.yaml
cases:
  - name: implausible-uln-warns
    patient: {labs: {total_bilirubin: {value: 1 mg/dL, uln: 3 mg/dL}}}
    warns: "ULN 3 mg/dL is implausible"
    expect: {I9.a: pass}
  - name: uln-typo-is-rejected
    patient: {labs: {ast: {value: 30 U/L, uln: 4000 U/L}}}
    rejected: "AST ULN 4000 U/L is not a possible result"
"""


def test_a_case_can_expect_a_warning_or_a_rejected_patient(cases_dir: Path):
    (cases_dir / "NCT06559644.cases.yaml").write_text(WARNS_AND_REJECTED, encoding="utf-8")
    result = runner.invoke(app, ["test", str(cases_dir)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        # The warning is not there: a plausible ULN.
        ("uln: 3 mg/dL", "uln: 1.2 mg/dL", "no warning says"),
        # The patient loads: it should not.
        ("uln: 4000 U/L", "uln: 40 U/L", "should be rejected for"),
        # It is rejected, for something else.
        ("uln: 4000 U/L}", "uln: 40 U/L}, creatinine: 99 mg/dL", "but not for"),
    ],
)
def test_a_warning_or_rejection_that_does_not_happen_fails_the_case(
    cases_dir: Path, old: str, new: str, said: str
):
    assert old in WARNS_AND_REJECTED
    text = WARNS_AND_REJECTED.replace(old, new, 1)
    (cases_dir / "NCT06559644.cases.yaml").write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["test", str(cases_dir)])
    assert result.exit_code != 0
    assert said in result.output


def test_a_rejected_case_takes_no_expectations(cases_dir: Path):
    text = WARNS_AND_REJECTED.replace('rejected: "AST', 'expect: {I9: fail}\n    rejected: "AST')
    (cases_dir / "NCT06559644.cases.yaml").write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["test", str(cases_dir)])
    assert result.exit_code != 0
    assert "a rejected patient is never screened" in result.output
