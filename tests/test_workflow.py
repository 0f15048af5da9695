"""The nurse and coordinator workflow: every command, every format, batches, atomic output."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from screener.cli import app
from screener.cli._output import utf8_writer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "patients"
BASELINE = Path(__file__).parent / "acceptance" / "patients" / "baseline.yaml"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """Three good patients and one broken file, in nested folders."""
    folder = tmp_path / "cohort"
    (folder / "ward-b").mkdir(parents=True)
    shutil.copy(EXAMPLES / "age-70-on-screening-day.yaml", folder / "a.yaml")
    shutil.copy(BASELINE, folder / "ward-b" / "c.yml")
    shutil.copy(EXAMPLES / "lab-units-si-and-lb-weight.yaml", folder / "d.yaml")
    (folder / "b-broken.yaml").write_text("id: broken\necog: [\n", encoding="utf-8")
    (folder / "notes.txt").write_text("not a patient", encoding="utf-8")
    return folder


def test_jsonl_reports_every_file_in_sorted_order_and_exit_1(cohort: Path):
    result = run("check", str(cohort), "-f", "jsonl", "--jobs", "1")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["file"]).name for r in records] == ["a.yaml", "b-broken.yaml", "d.yaml", "c.yml"]
    assert records[1]["error"]["line"] == 3
    assert all("trials" in r for i, r in enumerate(records) if i != 1)


def test_jobs_do_not_change_the_output(cohort: Path):
    one = run("check", str(cohort), "-f", "jsonl", "--jobs", "1")
    two = run("check", str(cohort), "-f", "jsonl", "--jobs", "2")
    assert one.stdout == two.stdout and one.exit_code == two.exit_code == 1


def test_csv_has_a_row_per_criterion_and_part_and_an_error_row(cohort: Path):
    result = run("check", str(cohort), "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"file", "patient", "trial", "verdict", "criterion", "status"} <= set(rows[0])
    broken = [r for r in rows if r["error"]]
    assert len(broken) == 1 and broken[0]["line"] == "3"
    criteria = {r["criterion"] for r in rows if r["trial"] == "NCT04684147"}
    assert {"I8", "I8.a", "I8.f", "I10"} <= criteria


def test_csv_tells_parts_from_their_criterion_and_names_product_and_label(cohort: Path):
    rows = list(csv.DictReader(io.StringIO(run("check", str(cohort), "-f", "csv").stdout)))
    one = [r for r in rows if r["patient"] == "PT-0006" and r["trial"] == "NCT04684147"]
    i8 = next(r for r in one if r["criterion"] == "I8")
    i8a = next(r for r in one if r["criterion"] == "I8.a")
    assert (i8["level"], i8["parent"], i8["product"]) == ("criterion", "", "CNCT19")
    assert i8["label"] == "Adequate organ function"
    assert (i8a["level"], i8a["parent"]) == ("part", "I8")
    assert i8a["label"] and i8a["label"] != i8["label"]
    # Filtering on level=criterion counts each failing criterion once.
    failing = [r for r in one if r["status"] == "fail" and r["level"] == "criterion"]
    assert [r["criterion"] for r in failing] == ["I2"]


HOSTILE_IDS = [
    '=HYPERLINK("http://x","y")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\tTAB",
    "\rCR first",
    "line\nbreak",
    "a\rb",
    "plain, with comma",
]


def _as_written(value: str) -> str:
    """A CSV cell as screener writes it: a CR shown as the symbol ␍ (printable, as on a
    terminal: no control character reaches a CSV raw), a formula neutralised."""
    value = value.replace("\r", "\u240d")
    return "'" + value if value[0] in "=+-@\t\r" else value


def test_csv_neutralises_formulas_and_quotes_line_breaks(tmp_path: Path):
    from screener.reports._report import _csv_line

    text = _csv_line(HOSTILE_IDS + [3])
    (row,) = list(csv.reader(io.StringIO(text, newline="")))
    assert row == [_as_written(v) for v in HOSTILE_IDS] + ["3"]
    # Written through the CLI, from patient files, read back as a spreadsheet would.
    folder = tmp_path / "cohort"
    folder.mkdir()
    for i, hostile in enumerate(HOSTILE_IDS):
        _patient(folder, f"p{i}.yaml", json.dumps(hostile))
    target = tmp_path / "out.csv"
    result = run("check", str(folder), "-f", "csv", "--excel", "-o", str(target), "-t", "CNCT19")
    assert result.exit_code == 0, result.output
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    with target.open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert "≤" in "".join(r["reason"] for r in rows)  # the reason text survives whole
    patients = {r["patient"] for r in rows}
    assert patients == {_as_written(v) for v in HOSTILE_IDS}
    assert not any(
        cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for cell in r.values()
    )
    # No line break started a row of its own: each patient has the same rows, all whole.
    assert len(rows) == len(HOSTILE_IDS) * len([r for r in rows if r["patient"] == "'+1+1"])
    assert all(None not in r and r["level"] in ("criterion", "part") for r in rows)


def test_excel_is_only_for_csv(cohort: Path):
    assert run("check", str(cohort), "-f", "jsonl", "--excel").exit_code == 2


@pytest.mark.parametrize(
    "encoding, row",
    [("utf-8", "≤ 1.6 µmol/L"), ("UTF8", "≤ 1.6 µmol/L"), ("latin-1", "1.6 µmol/L")],
)
def test_rendered_bytes_follow_earlier_text_in_the_streams_encoding(encoding: str, row: str):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, newline="")
    stream.write("header µ\n")  # still in the text layer's buffer when the bytes come
    utf8_writer(stream)(f"{row}\n".encode())
    stream.flush()
    assert raw.getvalue() == f"header µ\n{row}\n".encode(encoding)


def test_rendered_bytes_reach_a_stream_without_a_buffer():
    stream = io.StringIO()
    utf8_writer(stream)("≤ 3 × ULN\n".encode())
    assert stream.getvalue() == "≤ 3 × ULN\n"


def test_table_batch_ends_with_cohort_summary(cohort: Path):
    result = run("check", str(cohort), "--each")
    assert result.exit_code == 1
    out = result.stdout
    assert "Cohort summary" in out and "3 patients screened, 1 files with errors" in out
    assert "attrition" in out and "Closest to eligible" in out
    assert "could not screen" in out and "b-broken.yaml" in out


def test_markdown_report_and_summary(cohort: Path):
    result = run("check", str(cohort), "-f", "markdown", "--each")
    assert "## PT-0006" in result.stdout
    assert "## Cohort summary" in result.stdout
    assert "| **ineligible** |" in result.stdout
    assert "### To do" in result.stdout


@pytest.mark.slow
def test_json_array_for_several_files(cohort: Path):
    data = json.loads(run("check", str(cohort), "-f", "json").stdout)
    assert isinstance(data, list) and len(data) == 4


def test_output_file_is_written_whole(cohort: Path, tmp_path: Path):
    target = tmp_path / "out.jsonl"
    result = run("check", str(cohort), "-f", "jsonl", "--output", str(target))
    assert result.exit_code == 1 and result.stdout == ""
    assert len(target.read_text("utf-8").splitlines()) == 4


def test_failed_run_leaves_existing_output_untouched(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n", encoding="utf-8")
    import screener.reports._report as report

    calls = {"n": 0}
    real = report.jsonl_line

    def flaky(record):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if Ctrl-C arrived halfway through the batch
        return real(record)

    monkeypatch.setattr(report, "jsonl_line", flaky)
    result = run("check", str(cohort), "-f", "jsonl", "--jobs", "1", "--output", str(target))
    assert result.exit_code == 130
    assert target.read_text("utf-8") == "previous\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_trial_filter_accepts_product_names_and_is_repeatable():
    data = json.loads(
        run("check", str(BASELINE), "-f", "json", "-t", "CNCT19", "-t", "nct06559644").stdout
    )
    assert [t["trial"] for t in data["trials"]] == ["NCT04684147", "NCT06559644"]


def test_verbose_adds_source_text_and_notes():
    plain = run("check", str(BASELINE), "-t", "NCT06559644", "--all").stdout
    verbose = run("check", str(BASELINE), "-t", "NCT06559644", "--all", "--verbose").stdout
    phrase = "Cooperative"
    assert phrase not in plain and phrase in verbose
    assert "113.12" in verbose  # I9 note: creatinine molar mass


def test_todo_groups_missing_data_and_investigator_items():
    out = run("check", str(BASELINE), "-t", "NCT06559644").stdout
    assert "to ask the patient or find in the chart" in out and "conditions" in out
    assert "for the investigator" in out and "Hema-NeoTIL01 I12 E9 E16" in out


def test_trials_command_lists_products_and_caveats():
    out = run("trials").stdout
    assert "CNCT19" in out and "Hema-NeoTIL01" in out and "Incomplete source" in out


def test_show_prints_source_text_and_notes():
    result = run("show", "CNCT19")
    assert result.exit_code == 0
    assert "Gilbert" in result.stdout and "Cockcroft" in result.stdout
    assert run("show", "NCT99999999").exit_code == 2


def test_validate_reports_errors_with_caret_and_exits_1(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: X\nlvef: 55 kg\n", encoding="utf-8")
    result = run("validate", str(bad), str(BASELINE), str(ROOT / "rules"))
    assert result.exit_code == 1
    assert f"{bad}:2:7: error: lvef" in result.stdout
    assert "      |       ^" in result.stdout
    assert "ok  " in result.stdout and "1 with errors" in result.stdout


@pytest.mark.slow
def test_validate_all_shipped_files_is_clean():
    result = run("validate", str(ROOT / "rules"), str(EXAMPLES), str(ROOT / "tests" / "cases"))
    assert result.exit_code == 0, result.stdout


def test_validate_checks_rule_files_as_rules(tmp_path: Path):
    rules = tmp_path / "NCT06559644.yaml"
    text = (ROOT / "rules" / "NCT06559644.yaml").read_text("utf-8")
    rules.write_text(text.replace("{field: ecog, le: 2}", "{field: ecogg, le: 2}"), "utf-8")
    result = run("validate", str(rules))
    assert result.exit_code == 1 and "unknown field 'ecogg'" in result.stdout
    assert "did you mean 'ecog'?" in result.stdout


@pytest.mark.parametrize(
    "command", ["check", "trials", "show", "validate", "schema", "test", "changes", "log"]
)
def test_every_command_has_help_with_an_example(command: str):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Example:" in result.stdout


def test_piped_output_has_no_colour_codes():
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": ""}
    env.pop("FORCE_COLOR")
    done = subprocess.run(
        [sys.executable, "-m", "screener", "check", str(BASELINE)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0
    assert "\x1b[" not in done.stdout and "ELIGIBLE" in done.stdout.upper()


FHIR = Path(__file__).parent / "data" / "fhir"


def test_check_reads_fhir_bundles_in_a_directory():
    result = run("check", str(FHIR), "-f", "jsonl", "--as-of", "2026-11-20")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 6 and result.exit_code == 1  # two patients are deceased
    deceased = [r for r in records if "error" in r]
    assert len(deceased) == 2 and all("deceased" in r["error"]["message"] for r in deceased)
    angelic = next(r for r in records if "Angelic" in r["file"])
    assert any(
        "Observation/" in where and "38483-4" in where for where in angelic["sources"].values()
    )


def test_import_writes_yaml_that_check_accepts(tmp_path: Path):
    bundle = next(FHIR.glob("Angelic_Mueller_*.json"))
    target = tmp_path / "angelic.yaml"
    result = run("import", str(bundle), "--as-of", "2026-11-20", "--output", str(target))
    assert result.exit_code == 0, result.output
    text = target.read_text("utf-8")
    assert "# source: Observation/" in text and "TODO" in text
    checked = run("check", str(target), "-f", "json", "--as-of", "2026-11-20")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["patient"]


def test_stale_imported_labs_count_as_missing_with_max_age():
    bundle = next(FHIR.glob("Angelic_Mueller_*.json"))
    report = json.loads(
        run(
            "check",
            str(bundle),
            "-f",
            "json",
            "--as-of",
            "2026-11-20",
            "--max-age",
            "30d",
            "-t",
            "NCT06559644",
        ).stdout
    )
    i9c = next(p for c in report["trials"][0]["criteria"] for p in c["parts"] if p["id"] == "I9.c")
    assert i9c["status"] == "unknown" and "older than 30d" in i9c["reason"]


@pytest.mark.parametrize("span", ["-3d", "0 days", "2.5 months", "soon"])
def test_max_age_must_be_a_positive_span(span: str):
    assert run("check", str(BASELINE), "--max-age", span).exit_code == 2


def test_verbose_table_shows_where_imported_facts_came_from():
    bundle = next(FHIR.glob("Angelic_Mueller_*.json"))
    out = runner.invoke(
        app,
        ["check", str(bundle), "--as-of", "2026-11-20", "-t", "NCT06559644", "--verbose"],
        env={"COLUMNS": "200"},
    ).stdout
    assert "Where the facts came from" in out
    assert "labs.creatinine: Observation/" in out and "38483-4" in out


def test_attestations_for_trials_left_out_by_trial_are_not_warned_about(tmp_path: Path):
    patient = tmp_path / "p.yaml"
    patient.write_text(
        BASELINE.read_text("utf-8")
        + "attestations: {NCT06559644/E16: pass, NCT0655964/E9: pass}\n",
        "utf-8",
    )
    report = json.loads(run("check", str(patient), "-f", "json", "-t", "CNCT19").stdout)
    assert report["warnings"] == [
        "attestation NCT0655964/E9: no trial 'NCT0655964' (did you mean NCT06559644?)"
    ]


def test_exclusion_rules_read_excluded_if():
    out = runner.invoke(
        app, ["check", str(BASELINE), "-t", "HY004", "--all"], env={"COLUMNS": "200"}
    ).stdout
    assert "excluded if Burkitt" in out


def test_a_criterion_that_does_not_apply_says_so_in_its_rule():
    data = json.loads(run("check", str(BASELINE), "-f", "json", "-t", "CNCT19").stdout)
    i5 = next(c for c in data["trials"][0]["criteria"] if c["id"] == "I5")
    assert i5["status"] == "pass" and i5["values"][0]["threshold"] == "applies only if yes"


def test_attrition_lists_criteria_in_source_order_on_ties(cohort: Path):
    from screener.reports._summary import Cohort

    tally = Cohort()
    from screener.reports._summary import TrialTally

    tally.trials["T"] = TrialTally("T", "P")
    tally.trials["T"].excluded_by.update({"E2": 1, "I10": 1, "I2": 1, "E10": 1})
    assert tally.order("T") == ["I2", "I10", "E2", "E10"]


def test_an_internal_error_in_any_command_is_a_short_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import screener.cli._commands as cli

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "app", broken)
    monkeypatch.delenv("SCREENER_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 4
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err and "SCREENER_DEBUG=1" in err
    assert "Traceback" not in err
    monkeypatch.setenv("SCREENER_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main()


def test_cohort_matrix_never_truncates_patient_ids_on_a_narrow_terminal():
    out = runner.invoke(app, ["check", str(EXAMPLES)], env={"COLUMNS": "80"}).stdout
    matrix = out.split("Cohort summary", 1)[1]
    for number in range(1, 21):
        assert f"PT-{number:04d}" in matrix


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_a_directory_shows_the_summary_alone_unless_each(cohort: Path, fmt: str):
    alone = run("check", str(cohort), "-f", fmt)
    each = run("check", str(cohort), "-f", fmt, "--each")
    assert alone.exit_code == each.exit_code == 1
    assert "Cohort summary" in alone.stdout and "Cohort summary" in each.stdout
    # A per-patient report has a legend under its verdicts and a to-do list.
    legend = "✔ pass  ✘ fail"
    assert legend not in alone.stdout and "To do" not in alone.stdout
    assert legend in each.stdout and "To do" in each.stdout
    # The bad file is still explained, not just named.
    assert "did not find expected node content" in alone.stdout
    # Files named one by one keep their reports.
    named = run("check", str(cohort / "a.yaml"), str(cohort / "d.yaml"), "-f", fmt)
    assert legend in named.stdout and "Cohort summary" in named.stdout


def _patient(folder: Path, name: str, patient_id: str, source: Path = BASELINE) -> None:
    text = source.read_text("utf-8")
    old = next(line for line in text.splitlines() if line.startswith("id:"))
    (folder / name).write_text(text.replace(old, f"id: {patient_id}", 1), "utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_matrix_is_in_patient_id_order_and_warns_of_a_duplicated_id(tmp_path: Path, fmt: str):
    _patient(tmp_path, "a.yaml", "PT-ZULU")
    _patient(tmp_path, "b.yaml", "PT-ALPHA")
    _patient(tmp_path, "c.yaml", "PT-MIKE")
    _patient(tmp_path, "d.yaml", "PT-ALPHA")
    _patient(tmp_path, "e.yaml", "PT-10")
    _patient(tmp_path, "f.yaml", "PT-2")
    out = runner.invoke(app, ["check", str(tmp_path), "-f", fmt], env={"COLUMNS": "200"}).stdout
    matrix = out.split("Cohort summary", 1)[1].split("patients screened", 1)[1]
    # numbers by their value: PT-2 before PT-10, as a coordinator counts
    positions = [matrix.index(p) for p in ("PT-2 ", "PT-10", "PT-ALPHA", "PT-MIKE", "PT-ZULU")]
    assert positions == sorted(positions)
    assert (
        f"patient id PT-ALPHA appears in 2 files: {tmp_path / 'b.yaml'}, {tmp_path / 'd.yaml'}"
    ) in out
    assert "PT-MIKE appears" not in out
    assert "5 patients screened in 6 files" in out  # ids, not files, are patients
    if fmt == "markdown":
        # The warning is a quote; a blank line ends it, or the next line is read into it.
        quote = next(i for i, line in enumerate(out.splitlines()) if line.startswith("> "))
        assert out.splitlines()[quote + 1] == ""


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_summary_marks_trials_with_caveats_and_names_criteria(fmt: str):
    out = runner.invoke(
        app, ["check", str(EXAMPLES), "-f", fmt, "--each"], env={"COLUMNS": "200"}
    ).stdout
    matrix, rest = out.split("Cohort summary", 1)[1].split("ineligible", 1)
    # Every trial but NCT06559644 carries a caveat: a withdrawn registration (HY004) and
    # unpublished criteria (LstCAR019) are marked ‡, a note on the source †, and the notes
    # under the matrix say why, each with its own mark.
    assert re.search(r"HY004\)? ‡", matrix) and re.search(r"LstCAR019\)? ‡", matrix)
    assert re.search(r"CNCT19\)? †", matrix) and not re.search(r"Hema-NeoTIL01\)? [†‡]", matrix)
    assert "‡ NCT06009107: Registry status is withdrawn" in rest
    assert "‡ NCT05571540: Eligibility criteria are not published" in rest
    assert "† NCT04684147: Incomplete source" in rest
    # Attrition and closest-to-eligible name each criterion by id and label ...
    assert "E10 Prior CAR-T therapy" in rest
    closest = rest.split("losest to eligible", 1)[1]
    # ... and show what blocked: PT-0006 is 70, and NCT04684147 admits up to 65.
    row = next(line for line in closest.splitlines() if "PT-0006" in line and "NCT04684147" in line)
    assert "I2 Age 18 to 65 years" in row and "age 70 years" in row and "> 65 years" in row
    # A criterion of parts is blocked by a part, which is named.
    row = next(line for line in closest.splitlines() if "PT-0007" in line and "NCT06559644" in line)
    assert "I9.c: creatinine 150 umol/L" in row


def test_summary_from_worker_entries_equals_summary_from_records():
    from screener.cli._batch import expand
    from screener.cli._batch import run as run_batch
    from screener.criteria._catalog import load_rule_sets
    from screener.reports._summary import Cohort, entry, markdown

    rule_sets = load_rule_sets()
    entries = expand([str(EXAMPLES)])
    from_records, from_entries = Cohort(), Cohort()
    from_entries.describe(rule_sets)
    for done in run_batch(entries, rule_sets):
        from_records.add(done.record)
        from_entries.add_entry(entry(done.record))
    assert markdown(from_records) == markdown(from_entries)
    from screener.reports._htmlreport import page

    assert page(from_records) == page(from_entries)


def test_a_line_break_in_a_patient_id_does_not_break_the_matrix(tmp_path: Path):
    _patient(tmp_path, "a.yaml", json.dumps("PT-1\nPT-FAKE eligible eligible"))
    _patient(tmp_path, "b.yaml", "PT-2")
    out = runner.invoke(app, ["check", str(tmp_path)], env={"COLUMNS": "200"}).stdout
    rows = [line for line in out.splitlines() if line.startswith("PT-")]
    assert [row.split()[0] for row in rows[:2]] == ["PT-1␊PT-FAKE", "PT-2"]


@pytest.mark.slow
def test_the_cohort_matrix_fits_80_columns_with_seven_trials():
    from rich.cells import cell_len

    out = runner.invoke(app, ["check", str(EXAMPLES)], env={"COLUMNS": "80"}).stdout
    matrix = out.split("Cohort summary", 1)[1].split("attrition", 1)[0]
    assert max(cell_len(line.rstrip()) for line in matrix.splitlines()) <= 80
    # The trials are named in a key under the compact matrix, every one of them.
    for trial in ("NCT04546906", "NCT05679687", "NCT07406178"):
        assert trial in matrix
    wide = runner.invoke(app, ["check", str(EXAMPLES)], env={"COLUMNS": "200"}).stdout
    assert "ineligible" in wide.split("Cohort summary", 1)[1].split("attrition", 1)[0]


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_the_summary_of_the_examples_is_one_screen_at_80_columns(fmt: str):
    """The summary alone, for the 23 examples at 80 columns: the matrix, the caveats that
    make a verdict meaningless in full, per trial the criteria that exclude the most, and a
    few patients closest to eligible; --each (or the HTML page) has all of it."""
    patients = len(list(EXAMPLES.glob("*.yaml")))
    out = runner.invoke(app, ["check", str(EXAMPLES), "-f", fmt], env={"COLUMNS": "80"}).stdout
    full = runner.invoke(
        app, ["check", str(EXAMPLES), "-f", fmt, "--each"], env={"COLUMNS": "80"}
    ).stdout
    summary = full.split("Cohort summary", 1)[1]
    # 71 lines for the table (308 when it listed every closest patient and attrition row)
    assert len(out.splitlines()) <= patients + 50, len(out.splitlines())
    assert "‡ NCT06009107: Registry status is withdrawn" in out
    assert "Incomplete source" not in out and "Incomplete source" in summary
    assert "a note on the source" in out
    # each trial's two criteria that exclude the most, and how many more there are
    assert "I4 Age 3 to 18 years" in out and "I8 CD19-positive leukemia" not in out
    assert re.search(r"\(\d+ more: `?--each`?", out)
    assert "I8 CD19-positive leukemia" in summary
    # five of those closest to eligible, each blocker once; every one of them in full
    total = len(re.findall(r"\n\|? ?PT-\d{4}", summary.split("losest to eligible", 1)[1]))
    assert total > 20 and (f"5 of {total}" in out or f"{total} patient–trial pairs" in out)
    closest = out.split("losest to eligible", 1)[1]
    rows = re.findall(r"^\|? ?(PT-\d{4})", closest, re.MULTILINE)
    assert len(rows) == 5
