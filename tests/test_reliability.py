"""No input, file system or signal loses a batch or a file.

Each test here is about one class of failure a user met (the README's promise that one bad
file never stops a batch, and that --output never leaves a half file or destroys one).
Hostile files small enough to commit are in tests/bad_inputs/; the rest (odd names, FIFOs,
devices, deep trees) cannot live in git and are made here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import screener
from screener.cli import _batch as batch
from screener.core._errors import PatientError, RuleSetError
from screener.criteria import _catalog as catalog
from screener.reading import _document as document
from screener.reading import _fhir as fhir
from screener.reports import _report as report

HERE = Path(__file__).parent
CORPUS = HERE / "bad_inputs"
EXAMPLES = HERE.parent / "examples" / "patients"
GOOD = EXAMPLES / "first-visit-minimal-record.yaml"
FORMATS = ["table", "json", "jsonl", "csv", "markdown"]


def screener_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "screener", *args],
        capture_output=True,
        timeout=300,
        cwd=cwd,
        env=env,
        **kwargs,
    )


def not_a_bug(run: subprocess.CompletedProcess[bytes]) -> None:
    err = run.stderr.decode("utf-8", "replace")
    assert run.returncode != 4, err
    assert "Traceback" not in err and "bug in screener" not in err, err


def records(out: bytes) -> dict[str, dict[str, Any]]:
    found = [json.loads(line) for line in out.decode("utf-8").splitlines() if line.strip()]
    return {Path(r["file"]).name: r for r in found}


# ------------------------------------------------------ 1. one odd name or value kills a batch


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_name_that_is_not_utf8_is_screened_and_written_escaped(tmp_path, fmt):
    folder = tmp_path / "cohort"
    folder.mkdir()
    shutil.copy(GOOD, folder / "a.yaml")
    odd = os.fsencode(folder) + b"/b\xff\x1b.yaml"
    shutil.copy(GOOD, odd)
    run = screener_cli("check", "cohort", "-f", fmt, "--as-of", "2026-11-20", cwd=tmp_path)
    not_a_bug(run)
    assert run.returncode == 0, run.stderr
    text = run.stdout.decode("utf-8")  # valid UTF-8 in every format
    assert "b\\xff\\x1b.yaml" in text.replace("\\\\", "\\")  # the bytes, said losslessly
    assert "\x1b" not in text


def test_validate_names_a_file_name_that_is_not_utf8_escaped(tmp_path):
    (tmp_path / "cohort").mkdir()
    shutil.copy(GOOD, os.fsencode(tmp_path / "cohort") + b"/good\xfe.yaml")
    (Path(os.fsdecode(os.fsencode(tmp_path / "cohort") + b"/bad\xfe.yaml")).write_text("id: [\n"))
    run = screener_cli("validate", "cohort", cwd=tmp_path)
    not_a_bug(run)
    assert run.returncode == 1
    text = run.stdout.decode("utf-8")
    assert "cohort/bad\\xfe.yaml:2:1: error:" in text and "ok  cohort/good\\xfe.yaml" in text


def test_a_name_with_a_backslash_stays_distinct_from_an_escaped_one():
    from screener.reading._files import shown

    assert shown("plain.yaml") == "plain.yaml"
    assert shown(os.fsdecode(b"b\xff.yaml")) != shown("b\\xff.yaml")


EDGE = "9999-12-31T23:59:59-23:59"


def edge_bundle(tmp_path: Path) -> Path:
    data = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:pt-1",
                "resource": {"resourceType": "Patient", "id": "pt-1", "birthDate": "1980-05-17"},
            },
            {
                "fullUrl": "urn:uuid:o1",
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
                    "subject": {"reference": "urn:uuid:pt-1"},
                    "effectiveDateTime": EDGE,
                    "valueQuantity": {"value": 20, "unit": "U/L"},
                },
            },
        ],
    }
    path = tmp_path / "edge.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command", ["check", "validate", "import"])
def test_a_datetime_at_the_end_of_the_calendar_with_an_offset_is_no_crash(tmp_path, command):
    path = edge_bundle(tmp_path)
    args = [command, str(path)] + (["--as-of", "2026-11-20"] if command != "validate" else [])
    run = screener_cli(*args)
    not_a_bug(run)
    assert run.returncode in (0, 1)
    assert fhir.When.parse(EDGE) is None  # an unusable date, like any other garbage


@pytest.mark.slow
def test_a_tree_1100_levels_deep_is_screened(tmp_path):
    top = tmp_path / "deep"
    # Made relative to each level, since the whole path is longer than some calls accept.
    os.makedirs(top)
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(1100):
            os.mkdir("d", dir_fd=fd)
            new = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        with open(os.open("p.yaml", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(GOOD.read_bytes())
    finally:
        os.close(fd)
    try:
        entries = batch.expand([str(top)])
        assert len(entries) == 1  # found (or, past the system's path limit, an error record)
        run = screener_cli("check", "deep", "-f", "jsonl", "--as-of", "2026-11-20", cwd=tmp_path)
        not_a_bug(run)
        assert run.returncode in (0, 1)
        assert len(run.stdout.splitlines()) == 1
    finally:
        remove_deep(top)


def remove_deep(top: Path) -> None:
    """Remove the tree a level at a time: shutil.rmtree (and pytest's clean-up of old
    temporary folders) recurses, and fails on it."""
    while (top / "d").exists():
        if (top / "d" / "d").exists():
            os.rename(top / "d" / "d", top / "next")
            shutil.rmtree(top / "d")
            os.rename(top / "next", top / "d")
        else:
            shutil.rmtree(top / "d")


def test_a_300_character_name_is_that_input_s_error_record(tmp_path):
    long = tmp_path / ("p" * 300 + ".yaml")
    shutil.copy(GOOD, tmp_path / "good.yaml")
    run = screener_cli(
        "check", str(tmp_path / "good.yaml"), str(long), "-f", "jsonl", "--as-of", "2026-11-20"
    )
    not_a_bug(run)
    assert run.returncode == 1
    found = [json.loads(line) for line in run.stdout.splitlines()]
    assert "trials" in found[0]
    assert "too long" in found[1]["error"]["message"]


def test_any_exception_from_one_input_is_that_input_s_error_record(tmp_path, monkeypatch):
    """The class, not an example: whatever a reader raises that nobody foresaw (here made
    to raise for one file) is that file's error record; the files around it are screened."""
    names = []
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        shutil.copy(GOOD, tmp_path / name)
        names.append(str(tmp_path / name))
    real = batch.load_any

    def blind_spot(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.endswith("b.yaml"):
            raise RuntimeError("a reader's blind spot")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(batch, "load_any", blind_spot)
    monkeypatch.delenv("SCREENER_DEBUG", raising=False)
    done = list(batch.run(names, catalog.load_rule_sets(), render=report.jsonl_line))
    assert [d.failed for d in done] == [False, True, False]
    error = json.loads(done[1].data)["error"]
    assert "unexpected RuntimeError: a reader's blind spot" in error["message"]
    assert "bug in screener" not in error["message"]


def test_a_record_no_renderer_can_write_is_that_input_s_error_record(tmp_path, monkeypatch):
    shutil.copy(GOOD, tmp_path / "a.yaml")
    shutil.copy(GOOD, tmp_path / "b.yaml")

    def fragile(record: Any) -> bytes:
        if isinstance(record, screener.Screening) and record.file.endswith("a.yaml"):
            raise ValueError("a value the renderer did not foresee")
        return report.jsonl_line(record)

    monkeypatch.delenv("SCREENER_DEBUG", raising=False)
    names = [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    done = list(batch.run(names, catalog.load_rule_sets(), render=fragile))
    assert [d.failed for d in done] == [True, False]
    assert "unexpected ValueError" in json.loads(done[0].data)["error"]["message"]


def test_every_bundle_of_the_corpus_renders_in_every_format_as_utf8():
    """One encoder policy: a lone surrogate (JSON's "\\ud800" escape) or a C1 control from
    a bundle reaches JSON as a \\u escape (lossless), and the other formats as a visible
    symbol; nothing from an input makes an encoder raise."""
    rule_sets = catalog.load_rule_sets()
    asks = report.asks_of(rule_sets)
    for path in sorted((CORPUS / "bundles").glob("*.json")):
        record = batch.screen_file(str(path), rule_sets, dt.date(2026, 11, 20))
        line = report.jsonl_line(record)
        line.decode("utf-8")  # strict: every byte is UTF-8
        document = report.json_document(record)
        document.encode("utf-8")
        assert json.loads(line) == json.loads(document)
        report.csv_rows(record).encode("utf-8")
        report.markdown(record, True, True, asks, None).encode("utf-8")
        if path.name == "lone-surrogate-in-a-code.json":
            assert b"\\ud800x" in line  # written as the escape it was read from
            assert "\ud800x" in json.dumps(json.loads(line), ensure_ascii=False)


def surrogate_cohort(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(GOOD, folder / "a.yaml")
    shutil.copy(CORPUS / "bundles" / "lone-surrogate-in-a-code.json", folder / "m.json")
    shutil.copy(GOOD, folder / "z.yaml")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("fmt", [*FORMATS, "html"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_lone_surrogate_in_fhir_text_is_screened_in_a_batch_in_every_format(tmp_path, fmt, jobs):
    folder = surrogate_cohort(tmp_path / "cohort")
    each = ["--each"] if fmt != "html" else []  # (for HTML, --each writes files beside -o)
    run = screener_cli("check", str(folder), "-f", fmt, "-j", jobs, *each, "--as-of", "2026-11-20")
    not_a_bug(run)
    assert run.returncode == 0, run.stderr
    text = run.stdout.decode("utf-8")  # strict
    if fmt == "jsonl":
        found = records(run.stdout)
        assert set(found) == {"a.yaml", "m.json", "z.yaml"}
        assert all("trials" in r for r in found.values())
    if fmt != "html":  # the cohort page names patients, not files
        assert "m.json" in text


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bulk_export_holding_a_name_that_is_not_utf8_is_screened(tmp_path, fmt):
    pytest.importorskip("duckdb")
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(
        json.dumps({"resourceType": "Patient", "id": "pt-1", "birthDate": "1980-05-17"}) + "\n"
    )
    odd = os.fsencode(export) + b"/Procedure\xff.ndjson"
    with open(odd, "wb") as handle:
        handle.write(b"x\n")  # a bad line, so the name reaches the output
    run = screener_cli("check", str(export), "-f", fmt, "--as-of", "2026-11-20")
    not_a_bug(run)
    assert run.returncode == 1, run.stderr  # the bad line
    text = run.stdout.decode("utf-8")
    assert "Procedure\\xff.ndjson" in text.replace("\\\\", "\\")


# ------------------------------------------------------------ 2. nothing but regular files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_in_a_cohort_is_an_error_record_not_a_hang(tmp_path):
    shutil.copy(GOOD, tmp_path / "a.yaml")
    os.mkfifo(tmp_path / "b.yaml")
    os.mkfifo(tmp_path / "c.json")
    run = screener_cli("check", str(tmp_path), "-f", "jsonl", "--as-of", "2026-11-20")
    not_a_bug(run)
    assert run.returncode == 1
    found = records(run.stdout)
    assert "trials" in found["a.yaml"]
    for name in ("b.yaml", "c.json"):
        assert "not a regular file" in found[name]["error"]["message"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_among_the_rule_files_is_a_rule_error_not_a_hang(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(catalog.rules_dir(), rules)
    os.mkfifo(rules / "NCT00000001.yaml")
    run = screener_cli("check", str(GOOD), "--rules", str(rules))
    not_a_bug(run)
    assert run.returncode == 3
    assert b"not a regular file" in run.stderr


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_json_link_to_an_endless_device_is_refused_unread(tmp_path):
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    with pytest.raises(PatientError) as caught:
        batch.load_any(str(tmp_path / "zero.json"))
    assert "a device, not a regular file" in caught.value.diagnostic.message


def test_the_size_limit_applies_to_what_is_read(tmp_path, monkeypatch):
    """A file that grows after stat (here: stat is made to lie) is still cut at the limit."""
    path = tmp_path / "big.yaml"
    path.write_bytes(b"id: PT-1\n" + b"#\n" * document.MAX_BYTES)
    real_fstat = os.fstat

    def small(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        fields = list(info)
        fields[stat.ST_SIZE] = 10
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", small)
    with pytest.raises(PatientError) as caught:
        screener.load_patient(path)
    assert "limit" in caught.value.diagnostic.message


def export_records(folder: Path) -> list[dict[str, Any]]:
    pytest.importorskip("duckdb")
    from screener.cli._engines import run_export

    done = run_export(
        str(folder), catalog.load_rule_sets(), dt.date(2026, 11, 20), render=report.jsonl_line
    )
    return [json.loads(d.data) for d in done]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_or_device_in_a_bulk_export_is_an_error_record_not_a_hang(tmp_path):
    pytest.importorskip("duckdb")
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(
        json.dumps({"resourceType": "Patient", "id": "pt-1", "birthDate": "1980-05-17"}) + "\n"
    )
    os.mkfifo(export / "Observation.ndjson")
    (export / "Condition.ndjson").symlink_to("/dev/zero")
    # In a child with a deadline: the old reader opened the FIFO and waited for a writer.
    run = screener_cli("check", str(export), "-f", "jsonl", "--as-of", "2026-11-20")
    not_a_bug(run)
    assert run.returncode == 1, run.stderr
    found = records(run.stdout)
    assert (
        "a named pipe (FIFO), not a regular file" in found["Observation.ndjson"]["error"]["message"]
    )
    assert "a device, not a regular file" in found["Condition.ndjson"]["error"]["message"]
    assert sum("trials" in r for r in found.values()) == 1  # pt-1 is still screened


def test_a_line_past_the_size_limit_is_an_error_record_and_is_never_held(tmp_path, monkeypatch):
    """A file of one endless line (here: a sparse 200 MB of NULs, as `truncate -s` makes)
    is read past in blocks: the old reader held it whole (3 GB: a MemoryError, exit 4)."""
    import tracemalloc

    from screener.reading import _bulk as bulk

    monkeypatch.setattr(bulk, "MAX_LINE_BYTES", 1 << 20, raising=False)
    export = tmp_path / "export"
    export.mkdir()
    patient = json.dumps({"resourceType": "Patient", "id": "pt-1", "birthDate": "1980-05-17"})
    (export / "Patient.ndjson").write_text(patient + "\n")
    with open(export / "Observation.ndjson", "wb") as handle:
        handle.truncate(200 * 1024 * 1024)
    long = json.dumps({"resourceType": "Condition", "id": "c", "note": "x" * (2 << 20)})
    (export / "Condition.ndjson").write_text(long + "\n" + long[:100] + "\n")
    tracemalloc.start()
    try:
        found = export_records(export)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024, f"peak {peak:,} bytes"
    errors = [(Path(r["file"]).name, r["error"]) for r in found if "error" in r]
    assert [(name, e["line"]) for name, e in errors] == [
        ("Condition.ndjson", 1),
        ("Condition.ndjson", 2),  # the short one: a line cut off, so not JSON
        ("Observation.ndjson", 1),
    ]
    assert "longer than the limit of 1,048,576 bytes" in errors[0][1]["message"]
    assert "longer than the limit" in errors[2][1]["message"]
    assert sum("trials" in r for r in found) == 1


EXPORTS = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))["exports"]


def test_every_export_of_the_corpus_has_an_expectation_and_back():
    assert {p.name for p in (CORPUS / "exports").iterdir()} == set(EXPORTS)


@pytest.mark.parametrize(("name", "expected"), sorted(EXPORTS.items()), ids=sorted(EXPORTS))
def test_bad_export(name, expected):
    found = export_records(CORPUS / "exports" / name)
    errors = [r["error"] for r in found if "error" in r]
    assert len(errors) == len(expected["errors"]), errors
    for error, want in zip(errors, expected["errors"], strict=True):
        assert want["message"] in error["message"], error
        assert error.get("line") == want["line"], error
    assert sorted(r["patient"] for r in found if "trials" in r) == expected["screened"]


# ----------------------------------------------------------- 3. --output destroys nothing


def test_an_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path):
    path = tmp_path / "p.yaml"
    shutil.copy(GOOD, path)
    before = path.read_bytes()
    run = screener_cli("check", str(path), "-o", str(path))
    not_a_bug(run)
    assert run.returncode == 2
    assert b"is one of the inputs" in run.stderr
    assert path.read_bytes() == before


def test_an_output_that_is_an_input_through_a_directory_or_link_is_refused(tmp_path):
    shutil.copy(GOOD, tmp_path / "p.yaml")
    (tmp_path / "out.yaml").symlink_to("p.yaml")
    before = (tmp_path / "p.yaml").read_bytes()
    run = screener_cli("check", str(tmp_path), "-o", str(tmp_path / "out.yaml"))
    assert run.returncode == 2, run.stderr
    assert (tmp_path / "p.yaml").read_bytes() == before


def test_import_onto_its_own_bundle_is_refused(tmp_path):
    path = edge_bundle(tmp_path)
    before = path.read_bytes()
    run = screener_cli("import", str(path), "-o", str(path))
    not_a_bug(run)
    assert run.returncode == 2
    assert path.read_bytes() == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_an_output_onto_a_fifo_writes_through_it(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as handle:
            received.append(handle.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    run = screener_cli("check", str(GOOD), "-f", "jsonl", "-o", str(fifo))
    not_a_bug(run)
    assert run.returncode == 0, run.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a regular file"
    thread.join(60)
    assert received and json.loads(received[0])["file"] == str(GOOD)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null")
def test_an_output_onto_dev_stdout_reaches_standard_output(tmp_path):
    run = screener_cli("check", str(GOOD), "-f", "jsonl", "-o", "/dev/stdout")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["file"] == str(GOOD)


def test_an_output_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "report.jsonl"
    target.write_text("old\n")
    link = tmp_path / "report.jsonl"
    link.symlink_to(target)
    run = screener_cli("check", str(GOOD), "-f", "jsonl", "-o", str(link))
    assert run.returncode == 0, run.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["file"] == str(GOOD)
    assert not [p for p in elsewhere.iterdir() if p.name.endswith(".partial")]


def test_an_output_in_a_missing_directory_fails_before_screening(tmp_path):
    run = screener_cli("check", str(GOOD), "-o", str(tmp_path / "no" / "such" / "out.txt"))
    not_a_bug(run)
    assert run.returncode == 5
    assert len(run.stderr.decode().strip().splitlines()) == 1
    assert run.stdout == b""


def test_an_output_keeps_the_old_mode_or_follows_the_umask(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text("x\n")
    old.chmod(0o640)
    assert screener_cli("check", str(GOOD), "-f", "jsonl", "-o", str(old)).returncode == 0
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    new = tmp_path / "new.jsonl"
    run = subprocess.run(
        [
            "sh",
            "-c",
            f'umask 027; exec "{sys.executable}" -m screener check "{GOOD}" -f jsonl -o "{new}"',
        ],
        capture_output=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE(new.stat().st_mode) == 0o640


def test_an_output_of_dash_is_standard_output(tmp_path):
    run = screener_cli("check", str(GOOD), "-f", "jsonl", "-o", "-", cwd=tmp_path)
    assert run.returncode == 0
    assert json.loads(run.stdout)["file"] == str(GOOD)
    assert not (tmp_path / "-").exists()


# ----------------------------------------------------------------- 10-13. deceiving input

BUNDLES = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))["bundles"]


def test_every_bundle_of_the_corpus_has_an_expectation_and_back():
    assert {p.name for p in (CORPUS / "bundles").glob("*.json")} == set(BUNDLES)


@pytest.mark.parametrize(("name", "expected"), sorted(BUNDLES.items()), ids=sorted(BUNDLES))
def test_bad_bundle(name, expected):
    path = str(CORPUS / "bundles" / name)
    if not expected.get("accepted"):
        with pytest.raises(PatientError) as caught:
            batch.load_any(path, dt.date(2026, 11, 20))
        assert expected["message"] in caught.value.diagnostic.message
        return
    patient = batch.load_any(path, dt.date(2026, 11, 20))
    for want in expected["warnings"]:
        assert any(want in w.message for w in patient.warnings), patient.warnings
    for field in expected.get("absent", []):
        assert field not in patient.data


def test_a_duplicate_key_in_fhir_json_is_an_error(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text(
        '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource":'
        ' {"resourceType": "Patient", "id": "p", "deceasedBoolean": true,'
        ' "deceasedBoolean": false}}]}'
    )
    with pytest.raises(PatientError) as caught:
        batch.load_any(str(path))
    assert "duplicate key 'deceasedBoolean'" in caught.value.diagnostic.message


def test_an_observation_whose_subject_is_only_an_identifier_is_not_used(tmp_path):
    path = edge_bundle(tmp_path)
    data = json.loads(path.read_text())
    observation = data["entry"][1]["resource"]
    observation["effectiveDateTime"] = "2026-11-10"
    observation["subject"] = {"identifier": {"system": "urn:mrn", "value": "123"}}
    path.write_text(json.dumps(data))
    extract = fhir.read_bundle(path, "b.json", today=dt.date(2026, 11, 20))
    assert extract.record.get("labs", {}) == {}
    assert any("only an identifier" in w.message for w in extract.warnings)


def observation_bundle(tmp_path: Path, patient_url: str, subject: str) -> Path:
    path = edge_bundle(tmp_path)
    data = json.loads(path.read_text())
    data["entry"][0]["fullUrl"] = patient_url
    observation = data["entry"][1]["resource"]
    observation["effectiveDateTime"] = "2026-11-10"
    observation["subject"] = {"reference": subject}
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("patient_url", "subject", "used"),
    [
        ("urn:uuid:pt-1", "https://other.example/fhir/Patient/pt-1", False),
        ("https://ehr.example/fhir/Patient/pt-1", "https://other.example/fhir/Patient/pt-1", False),
        ("https://ehr.example/fhir/Patient/pt-1", "https://ehr.example/fhir/Patient/pt-1", True),
        ("https://ehr.example/fhir/Patient/pt-1", "Patient/pt-1", True),
        ("urn:uuid:pt-1", "urn:uuid:pt-1", True),
    ],
)
def test_an_absolute_reference_is_this_patient_only_when_it_is_the_patients_full_url(
    tmp_path, patient_url, subject, used
):
    path = observation_bundle(tmp_path, patient_url, subject)
    extract = fhir.read_bundle(path, "b.json", today=dt.date(2026, 11, 20))
    assert ("alt" in extract.record.get("labs", {})) is used
    assert any("another server" in w.message for w in extract.warnings) is not used
    assert extract.errors == []


def test_an_observation_with_no_subject_is_not_used(tmp_path):
    path = observation_bundle(tmp_path, "urn:uuid:pt-1", "urn:uuid:pt-1")
    data = json.loads(path.read_text())
    del data["entry"][1]["resource"]["subject"]
    path.write_text(json.dumps(data))
    extract = fhir.read_bundle(path, "b.json", today=dt.date(2026, 11, 20))
    assert extract.record.get("labs", {}) == {}
    assert any("no subject" in w.message for w in extract.warnings)


RULE = textwrap.dedent("""\
    trial: NCT00000001
    product: P
    title: T
    sources: [https://example.org]
    criteria:
      - id: I1
        kind: inclusion
        label: L
        text: T
        check: {check}
""")


@pytest.mark.parametrize("other", ["NCT00000001.yml", "NCT00000001.YAML"])
def test_a_trial_in_two_rule_files_is_an_error_naming_both(tmp_path, other):
    """NCT….yaml beside NCT….yml: the trial ran twice, ELIGIBLE and INELIGIBLE in one report."""
    (tmp_path / "NCT00000001.yaml").write_text(RULE.format(check="{field: age, ge: 18 years}"))
    (tmp_path / other).write_text(RULE.format(check="{field: age, lt: 18 years}"))
    if len(list(tmp_path.iterdir())) < 2:
        pytest.skip("a file system that folds case")
    with pytest.raises(RuleSetError) as caught:
        catalog.load_rule_sets(tmp_path)
    message = caught.value.diagnostic.message
    assert "NCT00000001 is loaded twice" in message
    assert "NCT00000001.yaml" in message and other in message
    run = screener_cli("check", str(GOOD), "--rules", str(tmp_path))
    not_a_bug(run)
    assert run.returncode == 3 and b"loaded twice" in run.stderr


def test_a_rule_file_named_yml_is_loaded_not_skipped(tmp_path):
    (tmp_path / "NCT00000001.yml").write_text(RULE.format(check="{field: age, ge: 18 years}"))
    assert [r.trial for r in catalog.load_rule_sets(tmp_path)] == ["NCT00000001"]


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("{field: age, ge: -18 years}", "cannot be negative"),
        ("{field: labs.total_bilirubin, le: 0 x ULN}", "above zero"),
        # against the field's declared range, whatever the field (one rule, no list)
        ("{field: ecog, le: -1}", "threshold for ECOG cannot be negative"),
        ("{field: lvef, ge: 500 %}", "threshold for LVEF cannot be 500 %: LVEF is 0–100 %"),
        ("{field: age, ge: 500 years}", "cannot be 500 years: age is 0–130 years"),
        ("{field: age, lt: 0 years}", "lt 0 years holds for no age"),
        # (creatinine's hard range starts at 0.05 mg/dL: 0 is below it, in any unit)
        ("{field: labs.creatinine, le: 0 mg/dL}", "cannot be 0 mg/dL: creatinine is 0.05–40"),
        ("{field: labs.creatinine, le: 0 umol/L}", "cannot be 0 umol/L: creatinine is 0.05–40"),
        ("{field: labs.creatinine, ge: 50 mg/dL}", "creatinine is 0.05–40 mg/dL"),
        ("{field: lvef, le: 0 %}", "le 0 % holds only for exactly 0 %"),
        ("{field: dyspnea_grade, gt: 5}", "gt 5 holds for no"),
    ],
)
def test_a_threshold_that_cannot_be_meant_is_an_error(check, message):
    with pytest.raises(RuleSetError) as caught:
        screener.parse_rule_set(RULE.format(check=check), "<rules>")
    assert message in caught.value.diagnostic.message


@pytest.mark.parametrize(
    "check",
    [
        "{field: ecog, le: 0}",  # a scale of whole steps: its edge is a value (ECOG 0)
        "{field: ecog, ge: 4}",
        "{field: age, ge: 0 years}",
        "{field: lvef, lt: 100 %}",
        "{field: labs.creatinine, gt: 0.1 mg/dL}",
        "{field: lvef, gt: 0 %}",
        "{field: age, lt: 130 years}",
    ],
)
def test_a_threshold_within_what_the_field_can_be_is_accepted(check):
    screener.parse_rule_set(RULE.format(check=check), "<rules>")


@pytest.mark.parametrize(
    "text", [RULE.replace("NCT00000001", "NCT0000000\u0661"), RULE.replace("id: I1", "id: I\u0661")]
)
def test_ids_with_digits_that_are_not_ascii_are_refused(text):
    with pytest.raises(RuleSetError):
        screener.parse_rule_set(text.format(check="{field: age, ge: 18 years}"), "<rules>")


def test_editor_and_os_leftovers_are_not_screened(tmp_path):
    shutil.copy(GOOD, tmp_path / "a.yaml")
    shutil.copy(GOOD, tmp_path / "a.yaml~")
    shutil.copy(GOOD, tmp_path / "._a.yaml")
    (tmp_path / ".#a.yaml").symlink_to("user@host.1234:1700000000")  # an Emacs lock
    assert batch.expand([str(tmp_path)]) == [str(tmp_path / "a.yaml")]


def test_a_json_report_written_into_the_cohort_is_not_screened_next_time(tmp_path):
    shutil.copy(GOOD, tmp_path / "a.yaml")
    shutil.copy(GOOD, tmp_path / "b.yaml")
    first = screener_cli("check", str(tmp_path), "-f", "json", "-o", str(tmp_path / "r.json"))
    assert first.returncode == 0, first.stderr
    single = screener_cli("check", str(GOOD), "-f", "json", "-o", str(tmp_path / "s.json"))
    assert single.returncode == 0, single.stderr
    assert batch.expand([str(tmp_path)]) == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]


def test_a_symlinked_sibling_directory_is_screened_once_and_not_called_a_loop(tmp_path):
    (tmp_path / "real").mkdir()
    shutil.copy(GOOD, tmp_path / "real" / "p.yaml")
    (tmp_path / "zlink").symlink_to("real")
    entries = batch.expand([str(tmp_path)])
    assert entries == [str(tmp_path / "real" / "p.yaml")]


def test_a_real_loop_is_still_reported(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to("..")
    entries = batch.expand([str(tmp_path)])
    assert len(entries) == 1 and isinstance(entries[0], batch.FileError)
    assert "loop" in entries[0].diagnostics[0].message


# -------------------------------------------------------------- 4. signals and workers


def cohort(folder: Path, size: int) -> Path:
    folder.mkdir()
    for i in range(size):
        shutil.copy(GOOD, folder / f"p{i:05}.yaml")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_termination_signal_leaves_the_old_output_and_no_worker(tmp_path, signum, status):
    folder = cohort(tmp_path / "cohort", 1500)
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "screener",
            "check",
            str(folder),
            "-f",
            "jsonl",
            "-o",
            str(out),
            "-j",
            "2",
        ],
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    # The temporary file exists from before the first patient until the rename; the signal
    # is sent while it does (no sleeping for a guessed time).
    while child.poll() is None and not list(tmp_path.glob(".out.jsonl.*.partial")):
        pass
    assert child.poll() is None, "finished before it could be interrupted: make the cohort larger"
    os.kill(child.pid, signum)
    _, err = child.communicate(timeout=300)
    assert child.returncode == status, err
    said = b"hung up" if signum == signal.SIGHUP else b"terminated"
    assert said in err and b"bug" not in err
    assert out.read_text() == "old\n"
    assert not list(tmp_path.glob(".out.jsonl.*"))
    # Nothing of its session is left running: the workers are stopped. On a loaded machine
    # a worker may take a moment to finish exiting after its parent, so allow for that.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)


def dying_render(record: Any) -> bytes:
    """Rendering in a worker; a file named poison* kills the worker (once, or always)."""
    from screener.reports._report import jsonl_line

    # Only a screened record: the parent renders the error records of a lost chunk itself.
    if isinstance(record, screener.Screening) and Path(record.file).name.startswith("poison"):
        marker = Path(os.environ["SCREENER_TEST_MARKER"])
        if os.environ.get("SCREENER_TEST_ALWAYS") or not marker.exists():
            marker.touch()
            os._exit(9)
    return jsonl_line(record)


@pytest.mark.slow
@pytest.mark.parametrize("always", [False, True], ids=["dies-once", "dies-every-time"])
def test_a_worker_killed_mid_batch_loses_no_file(tmp_path, monkeypatch, always):
    folder = cohort(tmp_path / "cohort", 60)
    shutil.copy(GOOD, folder / "poison.yaml")
    monkeypatch.setenv("SCREENER_TEST_MARKER", str(tmp_path / "died"))
    if always:
        monkeypatch.setenv("SCREENER_TEST_ALWAYS", "1")
    monkeypatch.setattr(batch, "usable_cores", lambda: 2)
    entries = batch.expand([str(folder)])
    done = list(batch.run(entries, catalog.load_rule_sets(), jobs=2, render=dying_render))
    assert [d.file for d in done] == [shown_name(e) for e in entries]  # all, in order
    assert (tmp_path / "died").exists()
    failed = [json.loads(d.data) for d in done if d.failed]
    if not always:
        assert failed == []  # the chunk was screened again
    else:
        assert failed and len(failed) <= 64  # one chunk's files, as error records
        assert any(r["file"].endswith("poison.yaml") for r in failed)
        assert all("worker process" in r["error"]["message"] for r in failed)
        assert "bug" not in failed[0]["error"]["message"]


def shown_name(entry: Any) -> str:
    return entry if isinstance(entry, str) else entry.file


def test_jobs_are_capped_at_the_usable_cores(monkeypatch):
    started: list[int] = []
    real = batch.Pool.__init__

    def spy(self: Any, jobs: int, *args: Any) -> None:
        started.append(jobs)
        real(self, jobs, *args)

    monkeypatch.setattr(batch.Pool, "__init__", spy)
    monkeypatch.setattr(batch, "usable_cores", lambda: 2)
    names = [str(GOOD)] * 5
    assert len(list(batch.run(names, catalog.load_rule_sets(), jobs=10_000))) == 5
    assert started == [2]


# ------------------------------------------------------------ 5. I/O errors are not bugs


def full_device(tmp_path: Path) -> Path:
    """A /dev/full of the test's own: the code under test once replaced the device it was
    given by a regular file, which must not happen to the system's."""
    node = tmp_path / "full"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        with open(node, "wb") as handle:
            handle.write(b"x")
    except OSError as exc:
        if exc.errno != 28:  # ENOSPC: it is /dev/full
            pytest.skip(f"cannot make a full device here: {exc}")
    else:
        pytest.skip("not a full device")
    return node


def test_a_full_disk_is_a_one_line_message_and_exit_5(tmp_path):
    run = screener_cli("check", str(GOOD), "-f", "jsonl", "-o", str(full_device(tmp_path)))
    not_a_bug(run)
    assert run.returncode == 5
    assert b"No space left on device" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["table", "jsonl", "markdown"])
def test_a_broken_pipe_is_a_one_line_message_and_exit_5(tmp_path, fmt):
    folder = cohort(tmp_path / "cohort", 40)  # far more output than a pipe holds
    each = ["--each"] if fmt != "jsonl" else []  # a directory alone shows only its summary
    child = subprocess.Popen(
        [sys.executable, "-m", "screener", "check", str(folder), "-f", fmt, *each],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    child.stdout.readline()
    child.stdout.close()  # as `| head -1` does
    _, err = child.communicate(timeout=300)
    assert child.returncode == 5, err
    assert err.strip().splitlines() == [b"output closed before it was complete (broken pipe)"]


def test_a_closed_standard_output_is_a_message_and_exit_5():
    run = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" -m screener check "{GOOD}" -f jsonl >&-'],
        capture_output=True,
        timeout=300,
    )
    not_a_bug(run)
    assert run.returncode == 5
    assert b"standard output is closed" in run.stderr


# ---------------------------------------------- 7, 9. outputs turned against their readers

HOSTILE_ID = r'"PT-\e]8;;https://evil.example\e\\click\e]8;;\e\\ \e[2J\x9b31m"'


def hostile_patient(folder: Path) -> Path:
    path = folder / "hostile.yaml"
    path.write_text(
        GOOD.read_text().replace("id: PT-0011", f"id: {HOSTILE_ID}", 1) + '"\\e[5munknown": 1\n',
        encoding="utf-8",
    )
    assert "\x1b" not in path.read_text()  # the file itself is plain text
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ("check",),
        ("check", "--verbose"),
        ("validate",),
        ("check", "-f", "json"),
        ("check", "-f", "jsonl"),
        ("check", "-f", "markdown"),
        ("check", "-f", "csv"),
        ("check", "-f", "html"),  # two files: the cohort page
        ("check", "-f", "html", "--trial", "NCT06559644"),
    ],
)
def test_no_escape_sequence_from_an_input_reaches_the_terminal_or_a_text_file(tmp_path, command):
    path = hostile_patient(tmp_path)
    run = screener_cli(*command, str(path), str(GOOD))
    not_a_bug(run)
    for stream in (run.stdout, run.stderr):
        assert b"\x1b" not in stream and "\x9b".encode() not in stream, stream[:2000]
    if command[0] == "check":
        out = tmp_path / "report.txt"
        assert screener_cli(*command, str(path), "-o", str(out)).returncode in (0, 1)
        assert b"\x1b" not in out.read_bytes()


C0_C1 = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


@pytest.mark.parametrize("fmt", ["csv", "html"])
def test_no_control_character_from_a_patient_or_rule_file_reaches_csv_or_html(tmp_path, fmt):
    """The checklist (one file) and CSV carried raw ESC from ids, and from a rule file's
    product and labels; `cat report.csv` then ran them."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "NCT00000001.yaml").write_text(
        RULE.format(check="{field: age, ge: 18 years}")
        .replace("product: P", 'product: "P\\e]8;;https://evil\\e\\\\x\\e[2J\\x9b"')
        .replace("label: L", 'label: "L\\e[5m\\r"')
    )
    path = hostile_patient(tmp_path)
    out = tmp_path / f"out.{fmt}"
    run = screener_cli("check", str(path), "--rules", str(rules), "-f", fmt, "-o", str(out))
    not_a_bug(run)
    assert run.returncode in (0, 1), run.stderr
    data = out.read_bytes()
    assert b"evil" in data  # the text is there, made visible
    assert not C0_C1.search(data.replace(b"\r\n", b"\n")), C0_C1.findall(data)[:5]


def test_markup_and_escapes_in_a_rule_file_print_as_written(tmp_path):
    text = RULE.format(check="{field: age, ge: 18 years}").replace(
        "sources: [https://example.org]",
        'sources: [https://example.org]\ncaveats: ["see [/bold] and [link=x]here\\e[2J"]',
    )
    (tmp_path / "NCT00000001.yaml").write_text(text.replace("product: P", 'product: "[red]P"'))
    for command in (["trials"], ["show", "NCT00000001"]):
        run = screener_cli(*command, "--rules", str(tmp_path))
        not_a_bug(run)
        assert run.returncode == 0, run.stderr
        assert b"[/bold]" in run.stdout and b"[red]P" in run.stdout
        assert b"\x1b" not in run.stdout


def test_markdown_quotes_html_links_and_line_breaks_from_inputs_as_text(tmp_path):
    path = tmp_path / "md.yaml"
    payload = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) <javascript:x>\n# h"
    path.write_text(GOOD.read_text().replace("id: PT-0011", f"id: {json.dumps(payload)}", 1))
    weird = tmp_path / "a`b<script>.yaml"
    weird.write_text("id: [unclosed\n")
    run = screener_cli("check", str(path), str(weird), "-f", "markdown", "--as-of", "2026-11-20")
    not_a_bug(run)
    text = run.stdout.decode()

    # Every `<` before a letter is escaped (no HTML, no autolink), every bracket too (no
    # link); the odd file name sits in a code span its backtick cannot close.
    outside_code = re.sub(r"^(`{3,})\n.*?^\1$", "", text, flags=re.M | re.S)  # fences
    outside_code = re.sub(r"(`+)[^`].*?\1", "", outside_code)  # code spans
    assert not re.search(r"(?<!\\)<[A-Za-z]", outside_code), outside_code[:500]
    assert not re.search(r"(?<!\\)\]\(javascript:", outside_code)
    assert "a`b<script>.yaml``" in text and "- ``/" in text
    headers = [line for line in text.splitlines() if "onerror" in line]
    assert headers and all(line.startswith(("## ", "| ")) for line in headers)
    assert not any(line.startswith("# h") for line in text.splitlines())


# ---------------------------------------------------------------- 15. bounded quotations


@pytest.mark.slow
@pytest.mark.parametrize("where", ["end", "middle", "start"])
def test_an_error_quotes_a_bounded_slice_of_a_long_line(where):
    QUOTE_LIMIT = 200  # what "bounded" means here; screener quotes 160 characters

    before = {"start": 0, "middle": 20_000, "end": 40_000}[where]
    after = 40_000 - before
    text = "id: PT-1\nx: [" + "1, " * before + "!!python/object 1" + ", 2" * after + "]\n"
    with pytest.raises(PatientError) as caught:
        screener.parse_patient(text, "pt.yaml")
    d = caught.value.diagnostic
    assert d.position is not None and d.position.line == 2
    rendered = d.render().splitlines()
    assert all(len(line) <= QUOTE_LIMIT + 20 for line in rendered), [len(x) for x in rendered]
    quoted, caret = rendered[1], rendered[2]
    assert quoted[caret.index("^")] == "!"  # the caret still points at the tag
    record = json.loads(report.jsonl_line(batch.FileError("pt.yaml", (d,))))
    assert len(record["error"]["text"]) < 3 * QUOTE_LIMIT


# ----------------------------------------------------- 14. --format json is streamed


@pytest.mark.slow
def test_json_output_for_many_patients_is_streamed_not_held(tmp_path):
    """Memory for 40 patients is that for 5, give or take one report (the old code held
    every report, some 370 KB each, until the end); the bytes are those of one array."""
    import tracemalloc

    from typer.testing import CliRunner

    from screener.cli import app

    def peak(size: int) -> tuple[int, Path]:
        folder = cohort(tmp_path / f"c{size}", size)
        out = tmp_path / f"out{size}.json"
        tracemalloc.start()
        try:
            result = CliRunner().invoke(
                app,
                [
                    "check",
                    str(folder),
                    "-f",
                    "json",
                    "-o",
                    str(out),
                    "-j",
                    "1",
                    "--as-of",
                    "2026-11-20",
                ],
            )
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.exit_code == 0, result.output
        return top, out

    peak(2)  # warm: rule sets, tables and imports are loaded once
    small, _ = peak(5)
    large, out = peak(40)
    documents = json.loads(out.read_text())
    one = len(json.dumps(documents[0], indent=2))
    assert large - small < 3 * one, (small, large, one)
    assert out.read_text() == report.json_array([report.dumps(d) for d in documents]) + "\n"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_do_not_outlive_a_parent_killed_outright(tmp_path):
    folder = cohort(tmp_path / "cohort", 1500)
    out = tmp_path / "out.jsonl"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "screener",
            "check",
            str(folder),
            "-f",
            "jsonl",
            "-o",
            str(out),
            "-j",
            "2",
        ],
        stderr=subprocess.PIPE,
    )
    workers: list[int] = []
    while child.poll() is None and len(workers) < 2:  # until both workers are started
        try:
            workers = [
                int(p)
                for p in Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()
            ]
        except OSError:
            pass
    assert child.poll() is None, "finished before it could be killed: make the cohort larger"
    child.kill()  # SIGKILL: no handler, no clean-up in the parent
    child.wait(timeout=300)

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    # The kernel kills them at once; the bound only keeps an orphan from hanging the test.
    import time

    end = time.monotonic() + 60
    while any(alive(pid) for pid in workers) and time.monotonic() < end:
        time.sleep(0.05)
    orphans = [pid for pid in workers if alive(pid)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert orphans == [], "workers outlived their parent"
    assert not out.exists()  # and the old (missing) output was not touched


def test_an_output_onto_a_rule_file_is_refused(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(catalog.rules_dir(), rules)
    target = sorted(rules.glob("NCT*.yaml"))[0]
    before = target.read_bytes()
    run = screener_cli("check", str(GOOD), "--rules", str(rules), "-o", str(target))
    assert run.returncode == 2, run.stderr
    assert target.read_bytes() == before


RULE_AUTHOR = HERE.parent / "examples" / "rule-author" / "rules"


@pytest.mark.parametrize("target", ["vocabulary.yaml", "NCT09999999.yaml"])
@pytest.mark.parametrize("command", ["check", "import"])
def test_an_output_onto_a_file_of_the_rules_directory_is_refused(tmp_path, target, command):
    """Every file loading --rules reads is an input: its vocabulary files as well as its
    rule sets (the vocabulary was replaced by the report, and the next run failed)."""
    rules = tmp_path / "rules"
    shutil.copytree(RULE_AUTHOR, rules)
    path = rules / target
    assert path.exists(), sorted(p.name for p in rules.iterdir())
    before = path.read_bytes()
    source = GOOD if command == "check" else CORPUS / "bundles" / "subject-absent.json"
    run = screener_cli(command, str(source), "--rules", str(rules), "-o", str(path))
    not_a_bug(run)
    assert run.returncode == 2, run.stderr
    assert b"is one of the inputs" in run.stderr
    assert path.read_bytes() == before


def test_an_output_onto_a_file_of_a_bulk_export_is_refused(tmp_path):
    pytest.importorskip("duckdb")
    export = tmp_path / "export"
    shutil.copytree(CORPUS / "exports" / "lone-surrogate-in-a-code", export)
    for target in sorted(export.iterdir()):
        before = target.read_bytes()
        run = screener_cli("check", str(export), "-f", "jsonl", "-o", str(target))
        not_a_bug(run)
        assert run.returncode == 2, run.stderr
        assert target.read_bytes() == before


@pytest.mark.skipif(not Path("/dev/fd").exists(), reason="no /dev/fd")
@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_an_output_onto_dev_stdout_appends_to_what_the_shell_opened(tmp_path, name):
    """`-o /dev/stdout >> app.log`: the name resolves to app.log, a regular file, which the
    old code renamed a new file over; reopening the name would truncate it instead."""
    log = tmp_path / "app.log"
    log.write_text("an earlier line\n")
    command = f'exec "{sys.executable}" -m screener check "{GOOD}" -f jsonl -o {name} >> "{log}"'
    run = subprocess.run(["sh", "-c", command], capture_output=True, timeout=300)
    not_a_bug(run)
    assert run.returncode == 0, run.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "an earlier line"
    assert json.loads(lines[1])["file"] == str(GOOD) and len(lines) == 2
    assert not list(tmp_path.glob(".app.log.*"))


def test_an_output_onto_another_descriptor_writes_to_it_as_opened(tmp_path):
    log = tmp_path / "three.log"
    log.write_text("kept\n")
    command = (
        f'exec "{sys.executable}" -m screener check "{GOOD}" -f jsonl -o /dev/fd/3 3>> "{log}"'
    )
    run = subprocess.run(["sh", "-c", command], capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert log.read_text().splitlines()[0] == "kept"
    assert len(log.read_text().splitlines()) == 2
    closed = screener_cli("check", str(GOOD), "-f", "jsonl", "-o", "/dev/fd/9")
    not_a_bug(closed)
    assert closed.returncode == 5 and b"Bad file descriptor" in closed.stderr


def test_schema_to_a_closed_standard_output_is_exit_5_not_a_bug():
    run = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" -m screener schema patient >&-'],
        capture_output=True,
        timeout=300,
    )
    not_a_bug(run)
    assert run.returncode == 5
