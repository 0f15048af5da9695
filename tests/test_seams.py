"""Each fast path sits behind one seam and gives what its plain twin gives.

* reading: `document.parse_with` reads a patient from the fast, position-less document when
  it can; the plain twin is `from_document(parse(...))`, with every position kept;
* writing: `report.jsonl_line` assembles a record's bytes from cached pieces; the plain twin
  is `json.dumps` of `to_json(record)`;
* units: the shipped unit table against pint's (tests/test_units.py,
  test_the_shipped_unit_table_is_what_pint_computes).

Checked for every example and acceptance patient, the files a user and the golden test
(tests/test_golden.py) know.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from screener.cli._batch import FileError, screen_file
from screener.core._errors import PatientError
from screener.criteria._catalog import load_rule_sets
from screener.reading._document import NeedsPositions, parse, parse_fast
from screener.reading._patient import from_document, parse_patient
from screener.reports import _report as report
from screener.screening._reuse import ResultCache

ROOT = Path(__file__).resolve().parent.parent
FILES = [
    p
    for folder in (ROOT / "examples" / "patients", ROOT / "tests" / "acceptance" / "patients")
    for p in sorted(folder.glob("*.yaml"))
]
RULE_SETS = load_rule_sets()


def _plain(record: report.Record) -> bytes:
    # The standard library's own encoder with the documented settings, not the module's.
    text = json.dumps(
        report.to_json(record), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return (text + "\n").encode("utf-8")


def test_the_files_are_the_whole_collection():
    assert len(FILES) > 25


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_patient_reader_gives_the_positioned_parses_patient(path: Path):
    text = path.read_text("utf-8")
    plain = from_document(parse(text, path.name, PatientError))
    read = parse_patient(text, path.name)
    assert read == plain
    assert read.warnings == plain.warnings  # with their positions


def test_most_patient_files_are_read_the_fast_way():
    # Otherwise the test above would only compare the plain twin with itself.
    fast = 0
    for path in FILES:
        text = path.read_text("utf-8")
        doc = parse_fast(text, path.name)
        if doc is None:
            continue
        try:
            patient = from_document(doc)
        except NeedsPositions:
            continue
        assert patient == from_document(parse(text, path.name, PatientError)), path
        fast += 1
    assert fast > len(FILES) / 2


def test_a_fast_document_cannot_give_a_position_it_did_not_keep():
    doc = parse_fast("id: PT-1\nlvf: 55 %\n", "p.yaml")
    assert doc is not None
    with pytest.raises(NeedsPositions):
        doc.diagnostic("unknown key", ("lvf",))
    with pytest.raises(NeedsPositions):
        doc.written(("id",), 5)
    # Through the seam the warning is the positioned parse's, with its line.
    warning = parse_patient("id: PT-1\nlvf: 55 %\n", "p.yaml").warnings[0]
    assert warning.position is not None and warning.position.line == 2


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_jsonl_bytes_are_json_dumps_of_the_plain_record(path: Path):
    cache = ResultCache()
    for _ in range(2):  # the second time, every criterion's bytes are the cached ones
        screened = screen_file(str(path), RULE_SETS, cache=cache)
        assert not isinstance(screened, FileError)
        assert report.jsonl_line(screened, cache) == _plain(screened)
    assert report.jsonl_line(screen_file(str(path), RULE_SETS)) == _plain(screened)


def test_jsonl_bytes_of_an_error_record_are_json_dumps_of_it(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: X\necog: [\n", encoding="utf-8")
    record = screen_file(str(bad), RULE_SETS)
    assert isinstance(record, FileError)
    assert report.jsonl_line(record) == _plain(record)


def test_a_trial_member_added_to_the_record_reaches_the_jsonl_bytes(monkeypatch):
    # The byte path takes its members and their order from _trial_json itself: a member
    # added there (here one sorting first, one last, one in between) is written by both.
    real = report._trial_json

    def more(t):
        return {**real(t), "aardvark": 1, "zebra": [t.trial], "decided": True}

    monkeypatch.setattr(report, "_trial_json", more)
    monkeypatch.setattr(report, "_FRAMES", {})
    screened = screen_file(str(FILES[0]), RULE_SETS)
    line = report.jsonl_line(screened)
    assert line == _plain(screened)
    assert b'"aardvark":1' in line and b'"decided":true' in line


def test_rule_sets_through_the_fast_path_are_the_positioned_ones():
    # load_rule_set reads through document.parse_with; the plain twin keeps every position
    from screener.core._errors import RuleSetError
    from screener.criteria import _rules
    from screener.criteria._catalog import rules_dir
    from screener.reading._document import parse, read_text

    for path in sorted(rules_dir().glob("*.yaml")):
        text = read_text(path, str(path), RuleSetError)
        plain = _rules.from_document(parse(text, str(path), RuleSetError))
        fast = _rules.load_rule_set(path)
        assert repr(fast) == repr(plain) and fast.digest == plain.digest, path.name


def test_a_rule_set_saying_is_no_loads_through_the_fast_path_as_the_word(tmp_path):
    # YAML 1.1 reads `no` as false; the compiler asks for the scalar as written, which only
    # the positioned parse keeps: the fast path must hand over, not compile `false`.
    from screener.criteria import _rules

    path = tmp_path / "NCT09999998.yaml"
    path.write_text(
        "trial: NCT09999998\nproduct: P\ntitle: t\nsources: [https://example.org]\n"
        "criteria:\n  - id: I1\n    kind: inclusion\n    label: No CNS disease\n"
        "    text: No CNS involvement.\n"
        "    check: {field: diagnosis.cns_involvement, is: no}\n",
        encoding="utf-8",
    )
    (criterion,) = _rules.load_rule_set(path).criteria
    assert criterion.check is not None and criterion.check.values == ("none",)
