"""The `screener check` command as nurses and scripts use it: formats, exit statuses, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from screener.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "patients" / "complete-record-b-all.yaml"
ACCEPTANCE = Path(__file__).parent / "acceptance" / "patients"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [*args])


def test_json_has_every_source_criterion_in_order():
    result = run("check", str(EXAMPLE), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for trial in report["trials"]:
        rules = yaml.safe_load((ROOT / "rules" / f"{trial['trial']}.yaml").read_text("utf-8"))
        assert [c["id"] for c in trial["criteria"]] == [c["id"] for c in rules["criteria"]]
    assert {t["trial"] for t in report["trials"]} == {
        "NCT04546906",
        "NCT04684147",
        "NCT05571540",
        "NCT05679687",
        "NCT06009107",
        "NCT06559644",
        "NCT07406178",
    }


def test_json_is_sorted_and_byte_stable():
    first = run("check", str(EXAMPLE), "--format", "json").stdout
    second = run("check", str(EXAMPLE), "--format", "json").stdout
    assert first == second
    data = json.loads(first)
    assert first == json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2) + "\n"


def test_json_contract_keys():
    report = json.loads(run("check", str(ACCEPTANCE / "baseline.yaml"), "-f", "json").stdout)
    assert report["patient"] == "baseline"
    assert report["as_of"] == "2026-11-20"
    assert report["as_of_source"] == "screening_date"
    hema = next(t for t in report["trials"] if t["trial"] == "NCT06559644")
    i9 = next(c for c in hema["criteria"] if c["id"] == "I9")
    assert i9["kind"] == "inclusion"
    assert [p["id"] for p in i9["parts"]] == ["I9.a", "I9.b", "I9.c"]
    assert "≤ 3 × ULN" in i9["parts"][0]["reason"]


def test_unknown_names_missing_fields():
    report = json.loads(run("check", str(ACCEPTANCE / "missing-lvef.yaml"), "-f", "json").stdout)
    hema = next(t for t in report["trials"] if t["trial"] == "NCT06559644")
    i7 = next(c for c in hema["criteria"] if c["id"] == "I7")
    assert i7["status"] == "unknown"
    assert i7["missing"] == ["lvef"]
    assert hema["verdict"] == "incomplete"


def test_caveat_reported_for_incomplete_sources():
    report = json.loads(run("check", str(EXAMPLE), "-f", "json").stdout)
    caveats = {t["trial"]: t["caveats"] for t in report["trials"]}
    assert caveats["NCT04684147"] and caveats["NCT05571540"]
    assert not caveats["NCT06559644"]


def test_bad_file_becomes_error_record_and_batch_goes_on(tmp_path: Path):
    bad = tmp_path / "a-bad.yaml"
    bad.write_text("id: X\nlvef: 55 kg\n", encoding="utf-8")
    good = tmp_path / "b-good.yaml"
    good.write_text((ACCEPTANCE / "baseline.yaml").read_text("utf-8"), encoding="utf-8")
    result = run("check", str(tmp_path), "--format", "jsonl")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(bad), str(good)]
    assert lines[0]["error"]["line"] == 2
    assert "lvef" in lines[0]["error"]["message"] and "percentage" in lines[0]["error"]["message"]
    assert lines[1]["patient"] == "baseline"


def test_missing_file_is_an_input_error():
    result = run("check", "does-not-exist.yaml", "--format", "json")
    assert result.exit_code == 1
    assert "cannot read file" in json.loads(result.stdout)["error"]["message"]


def test_table_shows_verdicts_and_todo():
    result = run("check", str(ACCEPTANCE / "missing-lvef.yaml"))
    assert result.exit_code == 0
    assert "INCOMPLETE" in result.stdout and "NCT06559644" in result.stdout
    assert "To do" in result.stdout and "tests to order" in result.stdout
    assert "echocardiogram: LVEF" in result.stdout
    assert "for the investigator" in result.stdout


def test_table_shows_error_with_caret(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: X\necog: seven\n", encoding="utf-8")
    result = run("check", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:2:7" in result.stdout
    assert "^" in result.stdout


def test_as_of_used_without_screening_date(tmp_path: Path):
    patient = tmp_path / "p.yaml"
    patient.write_text("id: P\nbirth_date: 1956-11-21\n", encoding="utf-8")
    report = json.loads(run("check", str(patient), "-f", "json", "--as-of", "2026-11-20").stdout)
    assert report["as_of"] == "2026-11-20" and report["as_of_source"] == "--as-of"
    hema = next(t for t in report["trials"] if t["trial"] == "NCT06559644")
    i1 = next(c for c in hema["criteria"] if c["id"] == "I1")
    assert i1["status"] == "pass"  # 69 years and 364 days


def test_trial_filter_by_product_name():
    report = json.loads(run("check", str(EXAMPLE), "-f", "json", "--trial", "cnct19").stdout)
    assert [t["trial"] for t in report["trials"]] == ["NCT04684147"]


@pytest.mark.parametrize(
    "args", [["--as-of", "20-11-2026"], ["--trial", "NCT00000000"], ["--format", "xml"]]
)
def test_usage_errors_exit_2(args: list[str]):
    assert run("check", str(EXAMPLE), *args).exit_code == 2


def test_broken_rule_set_stops_before_screening(tmp_path: Path):
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (ROOT / "rules" / "NCT06559644.yaml").read_text("utf-8")
    broken = text.replace("{field: lvef, ge: 50 %}", "{field: lvef, ge: 50 kg}")
    assert broken != text
    (rules / "NCT06559644.yaml").write_text(broken, encoding="utf-8")
    result = runner.invoke(app, ["check", str(EXAMPLE), "--rules", str(rules)])
    assert result.exit_code == 3
    line = broken.splitlines().index(next(x for x in broken.splitlines() if "50 kg" in x)) + 1
    assert f"NCT06559644.yaml:{line}:" in result.output
    assert "patient" not in result.stdout


def test_trials_command_lists_all_five():
    result = run("trials")
    assert result.exit_code == 0
    for trial in ("NCT04546906", "NCT04684147", "NCT05571540", "NCT06009107", "NCT06559644"):
        assert trial in result.stdout


def test_a_json_check_starts_without_the_table_library():
    # A single check should feel instant: rich's console is for tables only.
    probe = (
        "import sys\nfrom screener.cli import app\n"
        f"sys.argv = ['screener', 'check', {str(EXAMPLE)!r}, '-f', 'json']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["patient"] == "PT-0002"
    assert done.stderr.strip() == "[]"


def test_python_dash_m_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "screener", "check", str(EXAMPLE), "-f", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["patient"] == "PT-0002"


# ------------------------------------------------------------------ version and digests


def test_version_is_printed_and_is_the_installed_version():
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"screener {version('screener')}"


def test_every_command_is_one_line_in_the_help():
    # A docstring's first paragraph is the command list's entry, line breaks and all: a
    # summary that runs over a line broke the list mid-sentence.
    out = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    rows = [row for row in out.split("Commands", 1)[1].splitlines() if row.startswith("│")]
    assert len(rows) >= 10
    # A row that goes on from the one above has no command name in the first column.
    assert all(row[2] != " " for row in rows), rows


def test_json_says_which_tool_and_rule_sets_decided_it(tmp_path):
    import shutil

    report = json.loads(run("check", str(EXAMPLE), "--format", "json").stdout)
    from importlib.metadata import version

    assert report["screener_version"] == version("screener")
    digests = {t["trial"]: t["rules_digest"] for t in report["trials"]}
    assert all(len(d) == 16 for d in digests.values()) and len(set(digests.values())) == 7
    # Editing one rule file changes its trial's digest and the overall one, nothing else.
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    edited = rules / "NCT06559644.yaml"
    edited.write_text(edited.read_text("utf-8") + "\n# a reviewer's comment\n", "utf-8")
    again = json.loads(run("check", str(EXAMPLE), "--format", "json", "--rules", str(rules)).stdout)
    changed = {t["trial"] for t in again["trials"] if t["rules_digest"] != digests[t["trial"]]}
    assert changed == {"NCT06559644"}
    assert again["rules_digest"] != report["rules_digest"]
    # The time of the run is not in it: the same input gives the same bytes.
    assert (
        run("check", str(EXAMPLE), "--format", "json").stdout
        == run("check", str(EXAMPLE), "--format", "json").stdout
    )


def test_a_rules_directorys_vocabulary_is_part_of_its_digest(tmp_path):
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "examples" / "rule-author" / "rules", rules)
    patient = str(ROOT / "examples" / "rule-author" / "patient.yaml")

    def digests() -> tuple[str, list[str]]:
        report = json.loads(run("check", patient, "-f", "json", "--rules", str(rules)).stdout)
        return report["rules_digest"], [t["rules_digest"] for t in report["trials"]]

    before = digests()
    # The LDH soft limit decides what is implausible: the same rule file now reads the
    # patient differently, so the rule set's version must say it changed.
    vocabulary = rules / "vocabulary.yaml"
    text = vocabulary.read_text("utf-8")
    assert "soft: [null, 5000]" in text
    vocabulary.write_text(text.replace("soft: [null, 5000]", "soft: [null, 100]"), "utf-8")
    after = digests()
    assert after[0] != before[0]
    assert all(a != b for a, b in zip(after[1], before[1], strict=True))
    assert digests() == after  # and it is still the same bytes for the same files


def _todo_fields(path: Path) -> dict[str, list[str]]:
    """The fields to collect, each with the unknown criteria waiting for it."""
    from screener.core._model import Status
    from screener.criteria import _catalog as catalog
    from screener.reading._patient import load_patient
    from screener.screening import _engine as engine

    screening = engine.screen_patient(load_patient(path), catalog.load_rule_sets())
    fields: dict[str, list[str]] = {}
    for t in screening.trials:
        for c in t.criteria:
            if c.status is Status.UNKNOWN:
                for name in c.missing:
                    fields.setdefault(name, []).append(f"{t.trial} {c.id}")
    return fields


def test_the_todo_list_asks_for_the_marker_result_when_there_are_no_markers(tmp_path: Path):
    # A record with no markers used to be asked only for CD19's date and specimen: the
    # freshness check stopped at the missing date and never said the result was missing.
    bare = tmp_path / "bare.yaml"
    bare.write_text(
        "id: X\nscreening_date: 2026-11-20\nsex: female\ndiagnosis: {disease: B-ALL}\n",
        encoding="utf-8",
    )
    fields = _todo_fields(bare)
    assert fields["diagnosis.markers.CD19.result"] == [
        "NCT04684147 I4",
        "NCT05679687 I8",
        "NCT06009107 I4",
        "NCT07406178 I2",
    ]
    assert "NCT06009107 I4" in fields["diagnosis.markers.CD22.result"]
    assert "diagnosis.markers.CD19.date" in fields
    assert "pregnancy_test.result" in fields
    shown = run("check", str(bare)).stdout
    assert "CD19 and CD22 by flow cytometry (bone marrow or blood): result" in " ".join(
        shown.split()
    )


def test_a_recorded_undated_marker_is_asked_only_for_its_date(tmp_path: Path):
    undated = tmp_path / "undated.yaml"
    undated.write_text(
        "id: X\nscreening_date: 2026-11-20\ndiagnosis:\n  markers:\n"
        "    CD19: {result: positive, specimen: BM}\n",
        encoding="utf-8",
    )
    fields = _todo_fields(undated)
    assert "diagnosis.markers.CD19.date" in fields
    assert "diagnosis.markers.CD19.result" not in fields


def test_validate_warns_about_attestations_naming_no_trial_or_criterion(tmp_path: Path):
    # validate used to say "ok" here; check warned. It now loads the rule sets to check them.
    patient = tmp_path / "p.yaml"
    patient.write_text(
        "id: X\nattestations:\n  CNCT19/I3: pass\n  NCT06559644/E99: fail\n"
        "  NCT06559644/E16: pass\n",
        encoding="utf-8",
    )
    result = run("validate", str(patient))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert (
        f"{patient}:3:3: warning: attestation CNCT19/I3: 'CNCT19' is a product, not a "
        "trial id (did you mean NCT04684147/I3?)"
    ) in out
    assert (
        f"{patient}:4:3: warning: attestation NCT06559644/E99: NCT06559644 has no "
        "criterion 'E99'" in out
    )
    assert "E16" not in out.replace("NCT06559644/E99", "")  # a real judged criterion is quiet
    checked = json.loads(run("check", str(patient), "-f", "json").stdout)
    assert len(checked["warnings"]) == 2 and all(w in out for w in checked["warnings"])


def test_validate_of_a_file_with_good_attestations_is_quiet():
    attested = ROOT / "examples" / "patients" / "attested-eligible-for-the-adult-trials.yaml"
    result = run("validate", str(attested))
    assert result.exit_code == 0 and "warning" not in result.stdout


def test_show_prints_each_check_as_an_outline():
    # a rule author reads what the screener will check, not only the trial's text
    result = CliRunner().invoke(app, ["show", "NCT06559644"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "check: labs.creatinine ≤ 1.6 mg/dL" in out
    assert "check: labs.total_bilirubin ≤ 3 × ULN" in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("I10.a"))
    end = next(i for i, line in enumerate(lines) if line.strip().startswith("I10.b"))
    block = "\n".join(lines[start:end])
    assert "only if the condition holds (otherwise met):" in block
    assert "- then: dated (pregnancy_test.date) within 7 days before screening:" in block
    assert "- pregnancy_test.result is negative" in block
    assert "every item of therapies:" in out and "- of those where: type is car-t" in out
