"""screener/reading/_document.py: YAML read safely, with the position of every key and value."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time

import pytest

from screener.core._errors import PatientError, Position, ScreenerError
from screener.reading import _document as document
from screener.reading._document import load, parse

NESTED = textwrap.dedent("""\
    id: PT-1
    labs:
      creatinine: {value: 97 umol/L, uln: 106 umol/L}
    therapies:
      - type: tki
        drug: imatinib
""")

BILLION_LAUGHS = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
""")


def refused(text: str, error: type[ScreenerError] = ScreenerError) -> ScreenerError:
    with pytest.raises(error) as caught:
        parse(text, "pt.yaml", error)
    return caught.value


def caret_column(rendered: str) -> int:
    """The 1-based column the caret of a rendered diagnostic points at, in the quoted line."""
    lines = rendered.splitlines()
    quoted = next(
        i
        for i, line in enumerate(lines)
        if line.strip().startswith(tuple("0123456789")) and " | " in line
    )
    caret_line = lines[quoted + 1]
    gutter = lines[quoted].index(" | ") + 3
    assert caret_line[gutter - 2 : gutter] == "| "
    return caret_line.index("^") - gutter + 1


# ------------------------------------------------------------------------------ values


def test_plain_values_are_built():
    doc = parse(NESTED, "pt.yaml")
    assert doc.data == {
        "id": "PT-1",
        "labs": {"creatinine": {"value": "97 umol/L", "uln": "106 umol/L"}},
        "therapies": [{"type": "tki", "drug": "imatinib"}],
    }
    assert doc.file == "pt.yaml"


def test_positions_of_keys_and_values_by_path():
    doc = parse(NESTED, "pt.yaml")
    assert doc.keys[("labs",)] == Position(2, 1)
    assert doc.keys[("labs", "creatinine")] == Position(3, 3)
    assert doc.values[("labs", "creatinine", "uln")] == Position(3, 39)
    assert doc.keys[("therapies", 0, "drug")] == Position(6, 5)
    assert doc.values[("therapies", 0, "drug")] == Position(6, 11)
    assert doc.values[("therapies", 0)] == Position(5, 5)


def test_position_falls_back_to_the_enclosing_node():
    doc = parse(NESTED, "pt.yaml")
    assert doc.position(("labs", "creatinine", "date")) == Position(3, 15)
    assert doc.position(("labs", "creatinine"), key=True) == Position(3, 3)


def test_diagnostic_quotes_the_line_of_the_path():
    doc = parse(NESTED, "pt.yaml")
    d = doc.diagnostic("bad drug", ("therapies", 0, "drug"))
    assert d.location() == "pt.yaml:6:11"
    assert d.source_line == "    drug: imatinib"
    assert caret_column(d.render()) == 11


def test_dates_become_dates_and_times_of_day_are_dropped():
    doc = parse("a: 2026-11-20\nb: 2026-11-20 10:30:00\n", "pt.yaml")
    assert doc.data == {"a": dt.date(2026, 11, 20), "b": dt.date(2026, 11, 20)}


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_an_empty_document_has_no_data(text):
    assert parse(text, "pt.yaml").data is None


def test_positions_count_characters_not_bytes():
    doc = parse("n: µµµ\nm: [µ, x]\n", "pt.yaml")
    assert doc.values[("m", 1)] == Position(2, 8)


def test_windows_line_endings_keep_lines():
    doc = parse("a: 1\r\nb: 2\r\n", "pt.yaml")
    assert doc.values[("b",)] == Position(2, 4)
    assert doc.data == {"a": 1, "b": 2}


# ------------------------------------------------------------------------ duplicate keys


def test_duplicate_keys_are_refused_with_both_lines():
    err = refused("id: PT-1\nlvef: 55 %\necog: 1\nlvef: 60 %\n")
    d = err.diagnostic
    assert d.position is not None and d.position.line == 4
    assert "duplicate key 'lvef'" in d.message
    assert "line 2" in d.message


def test_nested_duplicate_keys_are_refused():
    err = refused("labs:\n  ast: 40 U/L\n  alt: 30 U/L\n  ast: 41 U/L\n")
    assert err.diagnostic.position == Position(4, 3)
    assert "line 2" in err.diagnostic.message


def test_quoting_does_not_hide_a_duplicate():
    err = refused('lvef: 55 %\n"lvef": 60 %\n')
    assert err.diagnostic.position.line == 2


def test_the_same_key_in_different_list_items_is_fine():
    doc = parse("t:\n  - {type: tki}\n  - {type: chemo}\n", "pt.yaml")
    assert doc.data == {"t": [{"type": "tki"}, {"type": "chemo"}]}


def test_error_class_is_the_callers():
    err = refused("a: 1\na: 2\n", PatientError)
    assert isinstance(err, PatientError)


# ---------------------------------------------------------------------------- tags


def test_python_tags_are_refused_and_never_executed(tmp_path):
    marker = tmp_path / "ran"
    text = f'id: !!python/object/apply:os.system ["touch {marker}"]\n'
    err = refused(text)
    assert not marker.exists()
    assert "tag" in err.diagnostic.message
    assert err.diagnostic.position == Position(1, 5)


@pytest.mark.parametrize(
    "text",
    [
        'a: !!python/object/apply:os.system ["echo hi"]\n',
        "a: !!python/name:os.system\n",
        "a: !custom 3\n",
        "a: !!binary aGVsbG8=\n",
        "a: !!set {x, y}\n",
        "a: !!omap [{x: 1}]\n",
    ],
)
def test_tags_outside_the_core_schema_are_refused(text):
    err = refused(text)
    assert err.diagnostic.position.line == 1


def test_merge_keys_are_refused():
    refused("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")


# ----------------------------------------------------------------------------- tabs


def test_tab_indentation_is_refused_with_line_and_column():
    err = refused("id: PT-1\nlabs:\n  ast: 40 U/L\n  \talt: 30 U/L\n")
    assert err.diagnostic.position == Position(4, 3)
    assert "tab" in err.diagnostic.message
    assert err.diagnostic.hint and "spaces" in err.diagnostic.hint


# -------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("id: PT-1\nlvef: 55 %: 3\n", 2, 11),  # a second colon on one line
        ("id: PT-1\nsex: female\nlabs: {ast: 40 U/L\necog: 1\n", 4, 5),  # unclosed flow mapping
    ],
)
def test_malformed_yaml_gives_file_line_and_column(text, line, column):
    err = refused(text)
    d = err.diagnostic
    assert d.position == Position(line, column)
    assert d.location() == f"pt.yaml:{line}:{column}"
    assert d.message.startswith("invalid YAML")


def test_rendered_error_quotes_the_line_with_a_caret():
    err = refused("id: PT-1\nlvef: 55 %: 3\n")
    rendered = err.diagnostic.render()
    lines = rendered.splitlines()
    assert lines[0].startswith("pt.yaml:2:11: error: invalid YAML")
    assert lines[1].endswith("| lvef: 55 %: 3")
    assert lines[1].lstrip().startswith("2 |")
    assert caret_column(rendered) == 11
    assert str(err).startswith("pt.yaml:2:11: error:")


def test_caret_lines_up_after_a_tab_inside_a_line():
    err = refused("key:\tvalue: other\n")
    rendered = err.diagnostic.render()
    quoted, caret = rendered.splitlines()[1:3]
    # The tab is kept so a terminal shows the caret under the same character.
    assert caret.index("\t") == quoted.index("\t")
    assert caret.index("^") == quoted.index(": other")


def test_rendered_hint_is_shown():
    err = refused("a:\n\tb: 1\n")
    assert err.diagnostic.render().splitlines()[-1] == "hint: indent with spaces"


# ---------------------------------------------------------------------------- dates


@pytest.mark.parametrize("value", ["2026-02-30", "2026-13-01", "2025-02-29"])
def test_impossible_dates_are_refused(value):
    err = refused(f"id: PT-1\nscreening_date: {value}\n")
    assert err.diagnostic.position == Position(2, 17)
    assert value in err.diagnostic.message


def test_a_leap_day_is_a_date():
    assert parse("d: 2024-02-29\n", "pt.yaml").data == {"d": dt.date(2024, 2, 29)}


# ---------------------------------------------------------------------------- budgets


@pytest.mark.slow
def test_an_alias_bomb_is_refused_quickly():
    # unrefused, a billion expansions would not finish: the budget guards a hang, not speed
    start = time.perf_counter()
    err = refused(BILLION_LAUGHS)
    assert time.perf_counter() - start < 30
    assert "values" in err.diagnostic.message


def test_a_few_aliases_are_fine():
    doc = parse("a: &x {b: 1}\nc: *x\n", "pt.yaml")
    assert doc.data == {"a": {"b": 1}, "c": {"b": 1}}


def test_deep_nesting_is_refused():
    depth = document.MAX_DEPTH + 10
    err = refused("[" * depth + "]" * depth)
    assert "nested" in err.diagnostic.message


def test_nesting_within_the_budget_is_fine():
    depth = document.MAX_DEPTH - 1
    parse("[" * depth + "]" * depth, "pt.yaml")


DEEP = {
    "flow": "'[' * 60000 + ']' * 60000",  # 120 KB of brackets
    "block": "'- ' * 40000 + 'x'",  # 80 KB of nested block sequences
}


@pytest.mark.parametrize("build", DEEP.values(), ids=DEEP.keys())
def test_very_deep_nesting_under_the_size_limit_is_refused_not_a_crash(build):
    """A ~100 KB file of nested brackets must be an error, not kill the process (a batch
    run would lose every other patient's report). Run in a child interpreter so that a
    crash fails this test instead of the whole session."""
    code = textwrap.dedent(f"""\
        from screener.reading._document import MAX_BYTES, parse
        from screener.core._errors import ScreenerError
        text = {build}
        assert len(text.encode()) < MAX_BYTES
        try:
            parse(text, "pt.yaml")
        except ScreenerError as exc:
            print("refused:", exc.diagnostic.message)
        else:
            print("accepted")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"interpreter died with {run.returncode}: {run.stderr[-500:]}"
    assert run.stdout.startswith("refused:")


# ----------------------------------------------------------------------------- files


def test_load_reads_a_utf8_file(tmp_path):
    path = tmp_path / "pt.yaml"
    path.write_text("id: PT-1\nname: Zoë\n", encoding="utf-8")
    doc = load(path, "pt.yaml")
    assert doc.data == {"id": "PT-1", "name": "Zoë"}
    assert doc.file == "pt.yaml"


def test_load_accepts_a_byte_order_mark(tmp_path):
    path = tmp_path / "pt.yaml"
    path.write_bytes(b"\xef\xbb\xbfid: PT-1\n")
    assert load(path).data == {"id": "PT-1"}


def test_non_utf8_is_refused_with_its_position(tmp_path):
    path = tmp_path / "pt.yaml"
    path.write_bytes(b"id: PT-1\nname: Zo\xeb\n")  # Latin-1 ë
    with pytest.raises(PatientError) as caught:
        load(path, "pt.yaml", PatientError)
    d = caught.value.diagnostic
    assert "UTF-8" in d.message
    assert d.position == Position(2, 9)
    assert d.file == "pt.yaml"


def test_non_utf8_caret_counts_characters_before_the_bad_byte(tmp_path):
    path = tmp_path / "pt.yaml"
    # "µ" is two bytes in UTF-8 but one character: the bad byte is the 9th character.
    path.write_bytes("a: µ caf".encode() + b"\xe9\n")
    with pytest.raises(ScreenerError) as caught:
        load(path, "pt.yaml")
    d = caught.value.diagnostic
    assert d.position == Position(1, 9)
    assert d.source_line[d.position.column - 1] == "\ufffd"


def test_nul_bytes_are_refused(tmp_path):
    path = tmp_path / "pt.yaml"
    path.write_bytes(b"id: PT-1\x00\n")
    with pytest.raises(PatientError) as caught:
        load(path, "pt.yaml", PatientError)
    assert "NUL" in caught.value.diagnostic.message


def test_files_over_the_size_limit_are_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * document.MAX_BYTES + b"\nid: PT-1\n")
    with pytest.raises(ScreenerError) as caught:
        load(path, "big.yaml")
    assert "limit" in caught.value.diagnostic.message
    assert caught.value.diagnostic.file == "big.yaml"


def test_a_file_at_the_size_limit_is_read(tmp_path):
    path = tmp_path / "ok.yaml"
    body = b"id: PT-1\n"
    path.write_bytes(body + b"#" * (document.MAX_BYTES - len(body) - 1) + b"\n")
    assert load(path).data == {"id": "PT-1"}


def test_a_missing_file_is_an_error_not_a_traceback(tmp_path):
    with pytest.raises(ScreenerError) as caught:
        load(tmp_path / "nope.yaml", "nope.yaml")
    assert caught.value.diagnostic.file == "nope.yaml"
