"""Hostile and broken input: every bad patient or rule file gives a clear error, quickly.

The corpus is tests/bad_inputs/: one small file per case under patients/ and rules/, and
expected.yaml saying what each must produce (message substring, line, column, hint); its
bundles/ (FHIR JSON) are read by tests/test_reliability.py. Files
too large to commit are generated here. Bounded handling of input (alias bombs, deep
nesting, huge numbers) is what is tested: where the work can be counted, the tests count it;
elsewhere a case must finish within a budget far above its cost, a guard against a hang or a
quadratic blow-up, not a speed target (speed is measured by benchmarks/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

import screener
from screener import PatientError, RuleSetError, ScreenerError
from screener.core._errors import QUOTE_LIMIT
from screener.reading import _document as document

HERE = Path(__file__).parent
CORPUS = HERE / "bad_inputs"
EXPECTED: dict[str, dict[str, dict[str, Any]]] = yaml.safe_load(
    (CORPUS / "expected.yaml").read_text(encoding="utf-8")
)
EXAMPLES = HERE.parent / "examples" / "patients"
BUDGET = 30.0  # seconds; every case takes well under one, on a loaded machine too


@contextmanager
def budget(seconds: float = BUDGET):
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.1f} s (budget {seconds} s)"


def corpus_files(kind: str) -> set[str]:
    folder = CORPUS / kind
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*.yaml")}


def check_diagnostic(exc: ScreenerError, expected: dict[str, Any], display: str) -> None:
    """The first diagnostic says what expected.yaml says, and renders with file, line, caret."""
    d = exc.diagnostic
    assert expected["message"] in d.message, d.render()
    if "hint" in expected:
        assert d.hint is not None and expected["hint"] in d.hint, d.render()
    assert d.file == display
    rendered = d.render()
    lines = rendered.splitlines()
    if expected["line"] is None:
        assert d.position is None, rendered
        assert lines[0] == f"{display}: error: {d.message}"
        return
    assert d.position is not None, rendered
    assert d.position.line == expected["line"], rendered
    if "column" in expected:
        assert d.position.column == expected["column"], rendered
    # file:line:col, then the line quoted with its number, then a caret under the column.
    assert lines[0].startswith(f"{display}:{d.position.line}:{d.position.column}: error: ")
    assert d.source_line is not None, rendered
    gutter = f"{d.position.line:>5} | "
    assert lines[1].startswith(gutter)
    shown = lines[1][len(gutter) :]
    assert all(ch.isprintable() or ch == "\t" for ch in rendered.replace("\n", ""))
    caret = lines[2]
    assert caret.startswith(" " * (len(gutter) - 2) + "| ")
    assert caret.rstrip().endswith("^")
    if len(d.source_line) > QUOTE_LIMIT:
        # A long line is quoted as a window around the column, the caret under its spot.
        assert len(shown) <= QUOTE_LIMIT + 2
        under = shown[caret.index("^") - len(gutter)]
        assert under == d.source_line[d.position.column - 1] or not under.isprintable()
        return
    # The line as written, but a control character shows as a visible one-column symbol.
    assert len(shown) == len(d.source_line)
    assert all(a == b or not b.isprintable() for a, b in zip(shown, d.source_line))
    assert caret.index("^") - len(gutter) == d.position.column - 1


def lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[int(part)] if isinstance(data, (list, tuple)) else data[part]
    return data


# ---------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("kind", ["patients", "rules"])
def test_every_corpus_file_has_an_expectation_and_back(kind):
    assert corpus_files(kind) == set(EXPECTED[kind])


PATIENT_CASES = sorted(EXPECTED["patients"].items())
RULE_CASES = sorted(EXPECTED["rules"].items())


@pytest.mark.parametrize(("name", "expected"), PATIENT_CASES, ids=[n for n, _ in PATIENT_CASES])
def test_bad_patient_file(name, expected):
    path = CORPUS / "patients" / name
    if expected.get("accepted"):
        with budget():
            patient = screener.load_patient(path)
        warnings = list(patient.warnings)
        assert len(warnings) == len(expected.get("warnings", [])), [w.render() for w in warnings]
        for want in expected.get("warnings", []):
            found = [w for w in warnings if want["message"] in w.message]
            assert found, f"no warning {want['message']!r} in {[w.message for w in warnings]}"
            assert found[0].position is not None and found[0].position.line == want["line"]
            assert found[0].hint == want.get("hint")
            assert found[0].file == str(path)
        for dotted, value in expected.get("values", {}).items():
            assert lookup(patient.data, dotted) == value, dotted
        return
    with budget():
        with pytest.raises(PatientError) as caught:
            screener.load_patient(path)
    check_diagnostic(caught.value, expected, str(path))


@pytest.mark.parametrize(("name", "expected"), RULE_CASES, ids=[n for n, _ in RULE_CASES])
def test_bad_rule_file(name, expected):
    path = CORPUS / "rules" / name
    with budget():
        with pytest.raises(RuleSetError) as caught:
            screener.load_rule_set(path)
    check_diagnostic(caught.value, expected, str(path))


def test_parse_patient_gives_the_same_error_as_load_patient():
    """The text API and the file API agree (the fuzz tests drive the text API)."""
    path = CORPUS / "patients" / "uln-wrong-kind.yaml"
    with pytest.raises(PatientError) as caught:
        screener.parse_patient(path.read_text(encoding="utf-8"), str(path))
    check_diagnostic(caught.value, EXPECTED["patients"]["uln-wrong-kind.yaml"], str(path))


def test_an_object_tag_is_never_executed(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "pt.yaml"
    path.write_text(f'id: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(PatientError):
        screener.load_patient(path)
    assert not marker.exists()


def test_an_error_in_the_middle_does_not_hide_the_others():
    """Every value error of a file is reported at once, each with its own line."""
    text = "id: PT-1\necog: 7\nlvef: 55 kg\nlabs:\n  creatinine: 1.4 mg/furlong\n"
    with pytest.raises(PatientError) as caught:
        screener.parse_patient(text, "pt.yaml")
    assert [d.position.line for d in caught.value.diagnostics] == [2, 3, 5]


RULE_HEAD = textwrap.dedent("""\
    trial: NCT00000001
    product: P
    title: T
    sources: [https://example.org]
    criteria:
      - id: I1
        kind: inclusion
        label: L
        text: T
""")


@pytest.mark.parametrize("check", ["is: no", "in: [active, no]"])
def test_a_yaml_boolean_in_a_rule_means_the_word_written_for_a_choice(check):
    rules = screener.parse_rule_set(
        RULE_HEAD + f"    check: {{field: diagnosis.cns_involvement, {check}}}\n", "<rules>"
    )
    patient = screener.parse_patient("id: PT-1\ndiagnosis: {cns_involvement: none}\n")
    assert screener.screen(patient, rules).criteria[0].status is screener.Status.PASS


@pytest.mark.parametrize("span", ["99999999 years", "1e14 days", "9999 months"])
def test_a_window_past_the_calendar_screens_without_crashing(span):
    """Shifting a date past year 1 stops there: every recorded date is inside the window."""
    rules = screener.parse_rule_set(
        RULE_HEAD + f"    check: {{field: birth_date, within: {span}, before: screening}}\n",
        "<rules>",
    )
    patient = screener.parse_patient(
        "id: PT-1\nscreening_date: 2026-11-20\nbirth_date: 1980-01-01\n"
    )
    assert screener.screen(patient, rules).criteria[0].status is screener.Status.PASS


# ------------------------------------------------------------------ generated, large inputs


@pytest.mark.parametrize(
    "load", [screener.load_patient, screener.load_rule_set], ids=["patient", "rules"]
)
def test_a_file_over_the_size_limit_is_refused_unread(tmp_path, load):
    path = tmp_path / "NCT00000001.yaml"
    path.write_bytes(b"id: PT-1\n" + b"# padding\n" * (document.MAX_BYTES // 10 + 1))
    with budget():
        with pytest.raises(ScreenerError) as caught:
            load(path)
    d = caught.value.diagnostic
    assert "limit" in d.message and f"{document.MAX_BYTES:,}" in d.message
    assert d.file == str(path)
    assert d.render().startswith(f"{path}: error: file is ")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_an_endless_device_is_not_read_at_all():
    """Only regular files are opened (tests/test_reliability.py has FIFOs and links)."""
    with budget():
        with pytest.raises(PatientError) as caught:
            screener.load_patient("/dev/zero")
    assert "not a regular file" in caught.value.diagnostic.message


@pytest.mark.slow
def test_thousands_of_unknown_keys_are_summarised_quickly(monkeypatch):
    """80,000 misspelt keys: a bounded list of warnings with did-you-means, then a count."""
    from screener.reading import _patient

    guesses = []  # a did-you-mean is the costly part: one per warning shown, not per key

    def counted(word, candidates):
        guesses.append(word)
        return _nearest(word, candidates)

    _nearest = _patient.nearest
    monkeypatch.setattr(_patient, "nearest", counted)
    text = "id: PT-1\n" + "".join(f"ecg{i}: 1\n" for i in range(80_000))
    assert len(text.encode()) < document.MAX_BYTES
    with budget():
        patient = screener.parse_patient(text, "pt.yaml")
    assert len(guesses) <= _patient.MAX_DIAGNOSTICS
    assert len(patient.warnings) <= 101
    assert patient.warnings[0].message == "unknown key ecg0 (ignored)"
    assert patient.warnings[0].hint == "did you mean 'ecog'?"
    assert "more warnings" in patient.warnings[-1].message


def test_thousands_of_bad_values_are_summarised_quickly():
    text = "id: PT-1\nmedications:\n" + "- {name: x, ongoing: maybe}\n" * 5_000
    with budget():
        with pytest.raises(PatientError) as caught:
            screener.parse_patient(text, "pt.yaml")
    assert len(caught.value.diagnostics) <= 101
    assert "more errors" in caught.value.diagnostics[-1].message


# name -> (expression building the text, "refused" or "accepted")
NEAR_LIMIT = {
    "many-flow-sequences": ("'x:\\n' + '- [a]\\n' * 160000", "refused"),
    "one-long-flow-sequence": ("'x: [' + 'a, ' * 300000 + ']'", "refused"),
    "many-aliases": (
        "'a: &a [1, 2]\\n' + ''.join(f'k{i}: *a\\n' for i in range(80000))",
        "refused",
    ),
    "deep-flow": ("'[' * 60000 + ']' * 60000", "refused"),
    "deep-block": ("'- ' * 40000 + 'x'", "refused"),
    "deep-complex-keys": ("'? ' * 40000 + 'x'", "refused"),  # once a segfault
    "deep-mixed": ("'- ? ' * 30000 + 'x'", "refused"),
    "deep-indentation": ("''.join('  ' * i + 'a:\\n' for i in range(900))", "refused"),
    # A long id is odd but harmless: the point is that it is read in bounded time.
    "long-scalar": ("'id: ' + 'a' * 990000", "accepted"),
}


@pytest.mark.slow
@pytest.mark.parametrize(("build", "outcome"), NEAR_LIMIT.values(), ids=NEAR_LIMIT.keys())
def test_large_hostile_documents_under_the_size_limit_end_quickly(build, outcome):
    """Run in a child interpreter: a C-stack overflow in libyaml would kill the process
    (and a batch run with it) instead of failing one test."""
    code = textwrap.dedent(f"""\
        import time
        from screener import PatientError, parse_patient
        from screener.reading._document import MAX_BYTES
        text = {build}
        assert len(text.encode()) <= MAX_BYTES, len(text.encode())
        start = time.perf_counter()
        try:
            parse_patient(text, "pt.yaml")
        except PatientError as exc:
            outcome = "refused: " + exc.diagnostic.message
        else:
            outcome = "accepted"
        print(round(time.perf_counter() - start, 3), outcome)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"interpreter died with {run.returncode}: {run.stderr[-500:]}"
    elapsed, result = run.stdout.split(" ", 1)
    assert float(elapsed) < BUDGET, result
    assert result.startswith(outcome), result


# ----------------------------------------------------------------------- the command line


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "screener", "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def no_traceback(run: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in run.stdout and "Traceback" not in run.stderr, run.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "yaml-unclosed-bracket.yaml",
        "duplicate-key.yaml",
        "latin1.yaml",
        "unit-wrong-kind.yaml",
        "alias-bomb.yaml",
        "utf16-bom.yaml",
    ],
)
def test_cli_reports_a_bad_file_as_a_json_error_record(name):
    path = CORPUS / "patients" / name
    expected = EXPECTED["patients"][name]
    with budget(60):  # an interpreter start and the rule sets, besides the file
        run = cli(str(path), "--format", "json")
    no_traceback(run)
    assert run.returncode == 1, (run.stdout, run.stderr)
    record = json.loads(run.stdout)
    assert record["file"] == str(path)
    assert expected["message"] in record["error"]["message"]
    assert record["error"]["line"] == expected["line"]


def screened(run: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """jsonl output by file name; every line is one JSON object."""
    records = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    return {Path(r["file"]).name: r for r in records}


def test_cli_directory_with_one_broken_file_reports_all_and_exits_1(tmp_path):
    shutil.copy(EXAMPLES / "first-visit-minimal-record.yaml", tmp_path / "a-good.yaml")
    shutil.copy(CORPUS / "patients" / "duplicate-key.yaml", tmp_path / "b-broken.yaml")
    shutil.copy(EXAMPLES / "relapsed-t-all.yaml", tmp_path / "c-good.yaml")
    run = cli(str(tmp_path), "--format", "jsonl", "--as-of", "2026-11-20")
    no_traceback(run)
    assert run.returncode == 1, (run.stdout, run.stderr)
    records = screened(run)
    assert sorted(records) == ["a-good.yaml", "b-broken.yaml", "c-good.yaml"]
    assert "trials" in records["a-good.yaml"] and "trials" in records["c-good.yaml"]
    assert records["b-broken.yaml"]["error"]["line"] == 5
    assert "duplicate key" in records["b-broken.yaml"]["error"]["message"]


def test_cli_symlink_loops_in_a_directory_are_reported_not_fatal(tmp_path):
    shutil.copy(EXAMPLES / "first-visit-minimal-record.yaml", tmp_path / "good.yaml")
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")  # a file link to itself
    (tmp_path / "ping.yaml").symlink_to("pong.yaml")  # two links to each other
    (tmp_path / "pong.yaml").symlink_to("ping.yaml")
    (tmp_path / "gone.yaml").symlink_to("nowhere.yaml")  # dangling
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to("..")  # a directory loop
    with budget(60):
        run = cli(str(tmp_path), "--format", "jsonl", "--as-of", "2026-11-20")
    no_traceback(run)
    assert run.returncode == 1, (run.stdout, run.stderr)
    records = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    good = [r for r in records if Path(r["file"]).name == "good.yaml"]
    assert len(good) == 1 and "trials" in good[0]  # screened once, not once per loop turn
    by_name = {Path(r["file"]).name: r for r in records}
    for name in ("loop.yaml", "ping.yaml", "pong.yaml", "gone.yaml"):
        assert "error" in by_name[name], by_name.get(name)
        assert by_name[name]["error"]["message"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a file whatever its mode"
)
def test_cli_unreadable_file_in_a_directory_is_reported_not_fatal(tmp_path):
    shutil.copy(EXAMPLES / "first-visit-minimal-record.yaml", tmp_path / "good.yaml")
    locked = tmp_path / "locked.yaml"
    shutil.copy(EXAMPLES / "relapsed-t-all.yaml", locked)
    locked.chmod(0)
    try:
        run = cli(str(tmp_path), "--format", "jsonl", "--as-of", "2026-11-20")
    finally:
        locked.chmod(0o600)
    no_traceback(run)
    assert run.returncode == 1, (run.stdout, run.stderr)
    records = screened(run)
    assert "trials" in records["good.yaml"]
    assert "ermission" in records["locked.yaml"]["error"]["message"]
