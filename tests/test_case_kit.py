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
