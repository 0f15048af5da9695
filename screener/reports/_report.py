"""Turn screening results into JSON, CSV and Markdown for scripts and rich tables for people.

JSON keys are sorted and the text is deterministic, so the same input gives the same
bytes. The per-patient report shows, per trial, a verdict banner and every criterion with
the patient's value (as written and as converted) and what is required; then one to-do
list: data to collect, grouped as a nurse gathers it, and items for the investigator.
"""

from __future__ import annotations

import html
import json
import re
import textwrap
from dataclasses import dataclass, fields, replace
from functools import cache, partial
from operator import attrgetter
from typing import Any

from screener._version import __version__
from screener.core import _vocabulary as v
from screener.core._errors import printable
from screener.core._memo import keep
from screener.core._model import (
    CriterionResult,
    Evidence,
    FileError,
    Kind,
    PartResult,
    Record,
    Render,
    Screening,
    Status,
    TrialResult,
    Verdict,
)
from screener.reports import _worklist as worklist
from screener.screening._reuse import ResultCache


def _evidence_json(evidence: tuple[Evidence, ...]) -> list[dict[str, str]]:
    return [
        {
            "converted": e.converted,
            "field": e.field,
            "label": e.label,
            "threshold": e.threshold,
            "value": e.value,
        }
        for e in evidence
    ]


def _part_json(part: PartResult) -> dict[str, Any]:
    return {
        "id": part.id,
        "missing": list(part.missing),
        "reason": part.reason,
        "review": list(part.review),
        "status": part.status.value,
        "values": _evidence_json(part.evidence),
    }


def _criterion_json(c: CriterionResult) -> dict[str, Any]:
    return {
        "attested": c.attested,
        "id": c.id,
        "kind": c.kind.value,
        "label": c.label,
        "missing": list(c.missing),
        "parts": [_part_json(p) for p in c.parts],
        "reason": c.reason,
        "review": list(c.review),
        "status": c.status.value,
        "values": _evidence_json(c.evidence),
    }


_STATUSES = tuple((s, s.value) for s in Status)  # Enum's .value is a Python-level property


def _counts(t: TrialResult) -> dict[str, int]:
    statuses = [c.status for c in t.criteria]
    return {value: statuses.count(status) for status, value in _STATUSES}


def _trial_json(t: TrialResult) -> dict[str, Any]:
    """A trial's record: the one definition, for dumps and for what jsonl_line assembles."""
    return {
        "trial": t.trial,
        "product": t.product,
        "title": t.title,
        "verdict": t.verdict.value,
        "caveats": list(t.caveats),
        "counts": _counts(t),
        "rules_digest": t.digest,
        "criteria": [_criterion_json(c) for c in t.criteria],
    }


def _error_json(record: FileError) -> dict[str, Any]:
    first = record.diagnostics[0]
    return {
        "file": record.file,
        "error": {
            "message": first.message,
            "line": first.position.line if first.position else None,
            "column": first.position.column if first.position else None,
            "hint": first.hint,
            "text": first.render(),
        },
        "errors": [d.to_json() for d in record.diagnostics],
    }


def _screening_fields(record: Screening) -> dict[str, Any]:
    # The tool's version and the rule sets' digest say what decided the record; the time
    # of the run does not belong here, so the same input still gives the same bytes.
    data: dict[str, Any] = {
        "patient": record.patient,
        "file": record.file,
        "as_of": record.as_of,
        "as_of_source": record.as_of_source,
        "warnings": list(record.warnings),
        "screener_version": __version__,
        "rules_digest": record.rules_digest,
    }
    if record.sources:
        data["sources"] = dict(record.sources)
    return data


def to_json(record: Record) -> dict[str, Any]:
    if isinstance(record, FileError):
        return _error_json(record)
    return {**_screening_fields(record), "trials": [_trial_json(t) for t in record.trials]}


def dumps(data: Any, compact: bool = False) -> str:
    """JSON text, keys sorted; what could drive a terminal or cannot be encoded is a \\u
    escape (json_safe)."""
    if compact:
        return json_safe(_compact(data))
    return json_safe(json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2))


# What is encoded here is built afresh from frozen results and holds no cycles, so the
# encoders skip the bookkeeping that detects them (a dict entry per container).
_compact = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), check_circular=False
).encode


def _utf8(text: str) -> bytes:
    # A lone surrogate passes as its three bytes, which _terminal_safe then escapes.
    return text.encode("utf-8", "surrogatepass")


# jsonl_line writes the bytes dumps(to_json(record), compact=True) would, assembled from
# pieces that a cohort repeats, each encoded by the same encoder from the same definition
# (_trial_json, _criterion_json), so key order and text cannot drift from the plain record
# (tests/test_memo.py compares the two for every patient the project has).


def _criterion_bytes(c: CriterionResult) -> bytes:
    # Kept as UTF-8 since the text has characters such as ≤ and ×, which make Python store
    # a whole record two bytes a character: joining and encoding that cost more than the
    # rest of the record.
    return _utf8(_compact(_criterion_json(c)))


@cache
def _key(name: str) -> bytes:
    return _utf8(_compact(name) + ":")


# The members of a trial's record that differ from patient to patient (made from its
# criteria and verdict), in sorted order, with the markers that stand for them in its frame.
# The criteria's marker stands inside their list, so a patient's criteria are joined
# straight into the record rather than copied into a list first.
_PER_PATIENT: dict[str, Any] = {"counts": "\0", "criteria": ["\0"], "verdict": "\0"}
_MARKER = _compact("\0").encode()
# What a trial's record is made of besides its criteria and verdict: the frame's key.
_FRAME_KEY = attrgetter(
    *(f.name for f in fields(TrialResult) if f.name not in ("criteria", "verdict"))
)
_FRAMES: dict[Any, tuple[bytes, ...]] = {}


def _trial_frame(t: TrialResult) -> tuple[bytes, ...]:
    """A trial's record as the encoded bytes around its per-patient members, in order:
    b'{"caveats":[],"counts":', b',"criteria":[', b'],"product":…,"verdict":', b'}'.

    Made from the record itself with markers for those members, so the members and their
    order are the ones dumps writes; once per distinct trial."""
    key = _FRAME_KEY(t)
    found = _FRAMES.get(key)
    if found is None:
        record = {**_trial_json(replace(t, criteria=())), **_PER_PATIENT}
        found = tuple(_utf8(_compact(record)).split(_MARKER))
        assert len(found) == len(_PER_PATIENT) + 1, found
        keep(_FRAMES, key, found, 64)
    return found


_VERDICTS = {v: _utf8(_compact(v.value)) for v in Verdict}


def _counts_bytes(t: TrialResult) -> bytes:
    # Numbers under plain keys: what _compact makes of the dict, at a third less cost.
    return ("{" + ",".join(f'"{k}":{n}' for k, n in sorted(_counts(t).items())) + "}").encode()


def _trials_pieces(record: Screening, cache: ResultCache | None) -> list[bytes]:
    pieces = [b"["]
    for i, t in enumerate(record.trials):
        if i:
            pieces.append(b",")
        # The frame's holes come in the order dumps sorts the members in.
        to_counts, to_criteria, to_verdict, end = _trial_frame(t)
        pieces += (
            to_counts,
            _counts_bytes(t),
            to_criteria,
            b",".join(
                map(_criterion_bytes, t.criteria)
                if cache is None
                else cache.encoded(t.criteria, _criterion_bytes)
            ),
            to_verdict,
            _VERDICTS[t.verdict],
            end,
        )
    pieces.append(b"]")
    return pieces


def jsonl_line(record: Record, cache: ResultCache | None = None) -> bytes:
    """One JSON Lines record as UTF-8: dumps(to_json(record), compact=True) and a newline.

    With the `cache` the record was screened with, each criterion result is encoded once
    for all the patients that share it (screening._reuse); a worker binds its cache with
    `reusing`. The pieces are joined once, at the end: a record is some 32 kB."""
    if isinstance(record, FileError):
        return _terminal_safe(_utf8(_compact(_error_json(record)) + "\n"))
    members: dict[str, Any] = {k: _utf8(_compact(v)) for k, v in _screening_fields(record).items()}
    members["trials"] = None  # its place in the sorted order
    pieces: list[bytes] = []
    for name, value in sorted(members.items()):
        pieces += (b"," if pieces else b"{", _key(name))
        if value is None:
            pieces += _trials_pieces(record, cache)
        else:
            pieces.append(value)
    pieces.append(b"}\n")
    return _terminal_safe(b"".join(pieces))


_JSONL_LINE = jsonl_line  # as defined here, whatever a test puts in its place


def reusing(render: Render | None, cache: ResultCache) -> Render | None:
    """`render` with a worker's result cache, if it is one that reuses encoded results
    (jsonl_line: a cohort's shared criterion results are encoded once); else as given."""
    return partial(_JSONL_LINE, cache=cache) if render is _JSONL_LINE else render


def json_document(record: Record) -> str:
    return dumps(to_json(record))


# The one policy for what JSON output holds as a \u escape rather than as the character.
# JSON escapes C0 controls (ESC is written \u001b) but, with ensure_ascii=False, writes the
# C1 controls (U+009B is a one-byte CSI) and bidirectional overrides as they are, so a JSON
# file shown with `cat` could still drive a terminal; and a lone surrogate (JSON's own
# "\ud800" escape, read from a FHIR file) is no character, so no UTF-8 encoder accepts it
# and it would end the run. All are written as \u escapes: the same strings for every JSON
# reader (lossless), and bytes unchanged for text without them. Text (_JSON_TEXT) and the
# UTF-8 bytes of the fast path (_JSON_UTF8, with surrogates encoded as by "surrogatepass")
# are matched alike.
_JSON_TEXT = re.compile("[\x80-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_JSON_UTF8 = re.compile(
    b"\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]|\xed[\xa0-\xbf][\x80-\xbf]"
)


def json_safe(text: str) -> str:
    """JSON text with the characters of the policy above as \\u escapes."""
    if _JSON_TEXT.search(text) is None:
        return text
    return _JSON_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _terminal_safe(data: bytes) -> bytes:
    if _JSON_UTF8.search(data) is None:  # the usual case: one scan, no copy
        return data
    return _JSON_UTF8.sub(
        lambda m: f"\\u{ord(m.group().decode('utf-8', 'surrogatepass')):04x}".encode(), data
    )


def indent_document(document: str) -> str:
    """One indented document as it stands inside json_array's list."""
    return "\n".join("  " + line for line in document.split("\n"))


def json_array(documents: list[str]) -> str:
    """Indented documents joined into the bytes json.dumps(list, indent=2) would give."""
    if not documents:
        return "[]"
    inner = ",\n".join(indent_document(d) for d in documents)
    return "[\n" + inner + "\n]"


# ------------------------------------------------------------------------------------ CSV

# `level` tells a criterion's row from its parts' rows (`parent` names the criterion), so a
# filter on status=fail counts a failing criterion once.
CSV_COLUMNS = [
    "file",
    "patient",
    "as_of",
    "trial",
    "product",
    "verdict",
    "level",
    "criterion",
    "parent",
    "label",
    "kind",
    "status",
    "reason",
    "missing",
    "error",
    "line",
]


def csv_header() -> str:
    return _csv_line(CSV_COLUMNS)


def csv_rows(record: Record) -> str:
    """One row per criterion and per part (id I8.a), or one error row for a bad file."""
    if isinstance(record, FileError):
        first = record.diagnostics[0]
        line = first.position.line if first.position else ""
        return _csv_line(
            [record.file, "", "", "", "", "", "", "", "", "", "", "", "", "", first.message, line]
        )
    out = []
    head = [record.file, record.patient, record.as_of]
    for t in record.trials:
        trial = [*head, t.trial, t.product, t.verdict.value]
        for c in t.criteria:
            kind = c.kind.value
            out.append(
                _csv_line(
                    [
                        *trial,
                        "criterion",
                        c.id,
                        "",
                        c.label,
                        kind,
                        c.status.value,
                        c.reason,
                        ";".join(c.missing),
                        "",
                        "",
                    ]
                )
            )
            out += [
                _csv_line(
                    [
                        *trial,
                        "part",
                        p.id,
                        c.id,
                        p.label,
                        kind,
                        p.status.value,
                        p.reason,
                        ";".join(p.missing),
                        "",
                        "",
                    ]
                )
                for p in c.parts
            ]
    return "".join(out)


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...),
# +cmd|...): a patient id or file name can be anything, so such text is shown as text.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = (",", '"', "\r", "\n")


def _csv_cell(value: Any) -> str:
    if not isinstance(value, str):
        return str(value)  # numbers (a line number) are data, not text to neutralise
    # `cat report.csv` must not run an escape sequence from a patient id or a rule file:
    # control characters become visible symbols, as on a terminal (printable).
    value = printable(value)
    if value.startswith(_FORMULA):
        value = "'" + value
    # Quoted whenever it holds a CR or LF, not only LF: the csv module leaves a lone CR
    # unquoted when lines end in LF, and a spreadsheet then starts a new row there.
    if any(mark in value for mark in _QUOTE):
        return '"' + value.replace('"', '""') + '"'
    return value


def _csv_line(values: list[Any]) -> str:
    """The one place CSV text is made: every cell of every row passes through _csv_cell."""
    return ",".join(map(_csv_cell, values)) + "\n"


csv_line = _csv_line  # for the other tables written as CSV (the screening log's)


def html_text(value: Any) -> str:
    """Input text for HTML: control characters made visible (printable, as on a terminal,
    so the page's source and a copy of its text carry no escape sequence), then escaped,
    quotes too, so nothing is markup."""
    return html.escape(printable(str(value)), quote=True)


# ------------------------------------------------------------------------------ rich table


def safe(text: str) -> str:
    """Input text (ids, values, labels, rule texts, names) for a rich console: control
    characters made visible, so no escape sequence reaches a terminal or a text file, and
    markup brackets escaped, so `[/bold]` in a rule file prints as written."""
    from rich.markup import escape

    return escape(printable(text))


GLYPHS = {
    Status.PASS: ("✔", "green"),
    Status.FAIL: ("✘", "red"),
    Status.UNKNOWN: ("?", "yellow"),
    Status.REVIEW: ("⚑", "magenta"),
}
LEGEND = "✔ pass  ✘ fail: blocks enrolment  ? unknown: collect data  ⚑ review"
VERDICT_STYLE = {
    Verdict.ELIGIBLE: "bold green",
    Verdict.INELIGIBLE: "bold red",
    Verdict.INCOMPLETE: "bold yellow",
    Verdict.NEEDS_REVIEW: "bold magenta",
}
AS_OF_SOURCE = {
    "screening_date": "the file's screening_date",
    "--as-of": "--as-of",
    "today": "today's date (no screening_date in the file)",
}


def verdict_word(verdict: Verdict) -> str:
    return verdict.value.upper().replace("_", " ")


def counts_text(t: TrialResult) -> str:
    """ "25 ✔  1 ✘  2 ?  3 ⚑": the criteria of a trial by status, in a fixed order."""
    n = _counts(t)
    return "  ".join(f"{n[s.value]:>2} {GLYPHS[s][0]}" for s in Status)


@dataclass(frozen=True)
class Blocker:
    """What keeps a patient out of a trial: a failing criterion, or a failing part."""

    id: str
    label: str
    # Why, in the engine's words: the patient's value against the rule ("age 70 years
    # > 65 years", "CD19 result: negative on 2026-11-10 (not positive)"), or what the
    # investigator attested, or what a criterion without values found.
    why: str

    @property
    def text(self) -> str:
        return f"{self.label}: {self.why}" if self.why else self.label


# An age says where it was computed from ("age 58 years (born 1968-06-30, on 2026-11-20)");
# the summary gives the age alone, the criterion's own line keeps the rest.
_BORN = re.compile(r" \(born \d{4}-\d{2}-\d{2}, on \d{4}-\d{2}-\d{2}\)")


def blockers(t: TrialResult) -> list[Blocker]:
    """The failing criteria (or failing parts) of a trial, each with its reason: the value
    and the rule it broke, so the summary says why without the criterion's own section."""
    out = []
    for c in t.criteria:
        if c.status is not Status.FAIL:
            continue
        failing: list[PartResult | CriterionResult] = [
            p for p in c.parts if p.status is Status.FAIL
        ]
        for item in failing or [c]:
            why = item.reason or "; ".join(dict.fromkeys(map(shown_value, item.evidence)))
            if not why and c.attested:
                why = "attested not met by the investigator"
            out.append(Blocker(item.id, item.label or c.label, _BORN.sub("", why)))
    return out


def ineligible_anyway(record: Screening, everything: bool) -> list[TrialResult]:
    """The trials a compact report tells only by their blockers in the summary: the patient
    is ineligible for them, and their own sections (what else they lack) would only
    lengthen the report; `--all` shows them."""
    return [] if everything else [t for t in record.trials if t.verdict is Verdict.INELIGIBLE]


def shown(
    t: TrialResult, everything: bool
) -> tuple[list[CriterionResult], list[CriterionResult], int]:
    """What a compact report lists of a trial: the criteria that fail or await review, one
    by one; those that need data, by id only (the worklist says what to collect for them);
    and how many more are not listed (they pass, or the trial is already ineligible and
    only its failures matter). `everything` lists every criterion one by one."""
    if everything:
        return list(t.criteria), [], 0
    ineligible = t.verdict is Verdict.INELIGIBLE
    wanted = (Status.FAIL,) if ineligible else (Status.FAIL, Status.REVIEW)
    listed = [c for c in t.criteria if c.status in wanted]
    unknown = [] if ineligible else [c for c in t.criteria if c.status is Status.UNKNOWN]
    return listed, unknown, len(t.criteria) - len(listed) - len(unknown)


def asks_of(rule_sets: Any) -> dict[tuple[str, str], dict[str, tuple[str, ...]]]:
    """What each criterion's list conditions ask about, for the worklist."""
    return {(r.trial, c.id): dict(c.asks) for r in rule_sets for c in r.criteria if c.asks}


# The table report is laid out for a terminal of 80 columns and 24 rows: every verdict and
# blocker on the first screen, no text in a column narrower than the screen's width less
# a short indent (long text moves below its row), and, for the examples, at most 80 lines.
SCREEN_ROWS = 24
_MIN_LABEL = 16  # a blocker's label is shortened to no less than this to keep its reason


def _grid() -> Any:
    """Rows of short first columns (a glyph, an id) and text that wraps under itself."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    return grid


def _hanging() -> Any:
    """A lead (a bullet, a glyph and id) and text that wraps under its own first word."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    return grid


def _width(markup: str) -> int:
    from rich.text import Text

    return Text.from_markup(markup).cell_len


def _rows(console: Any, markup: str) -> int:
    """How many screen rows a line of text takes on the console."""
    from rich.text import Text

    return len(Text.from_markup(markup).wrap(console, console.width))


def _cut(text: str, room: int) -> str:
    """Text shortened to `room` characters, ending in "…", at a word when one ends near."""
    if len(text) <= room:
        return text
    head = text[: max(room - 1, 1)]
    word = head.rsplit(" ", 1)[0]
    if len(word) >= room * 2 // 3:
        head = word
    return head.rstrip(";,:( ") + "…"


def _fit(b: Blocker, room: int) -> str:
    """A blocker in one line of `room` characters: the label is shortened first, so the
    value and the rule stay whole where they can."""
    if len(b.text) <= room:
        return b.text
    if b.why and len(b.why) + 2 + _MIN_LABEL <= room:
        return f"{_cut(b.label, room - len(b.why) - 2)}: {b.why}"
    label = _cut(b.label, _MIN_LABEL)
    return _cut(f"{label}: {b.why}" if b.why else label, room)


@dataclass(frozen=True)
class _Summary:
    lines: tuple[str, ...]  # rich markup, one screen row each
    cut: tuple[tuple[TrialResult, Blocker], ...]  # blockers shown shortened: whole below


def _summary(record: Screening, width: int, spare: int) -> _Summary:
    """The summary that opens and closes a report: a line per trial with its verdict and
    counts, and under it each blocker with its value and rule. A blocker takes one row, or
    two while the first screen has `spare` rows; longer, it is shortened to one row, and
    the report gives it whole below."""
    lines: list[str] = []
    cut: list[tuple[TrialResult, Blocker]] = []
    pad = max((len(t.product) for t in record.trials), default=0)
    for t in record.trials:
        # A caveat (unpublished criteria, a withdrawn registration) qualifies the verdict.
        mark = "[yellow]*[/]" if t.caveats else " "
        lines.append(
            f"[{VERDICT_STYLE[t.verdict]}]{verdict_word(t.verdict).ljust(12)}[/] "
            f"[bold]{t.trial}[/]{mark} {safe(t.product.ljust(pad))}  [dim]{counts_text(t)}[/]"
        )
        for b in blockers(t):
            lead = f"  ✘ {b.id} "
            room = max(width - len(lead), 24)
            whole = _wrap(b.text, room)
            if len(whole) == 2 and spare > 0 and all(len(w) <= room for w in whole):
                spare -= 1
                shown_lines = whole
            else:
                shown_lines = [_fit(b, room)]
                if shown_lines[0] != b.text:
                    cut.append((t, b))
            lines.append(f"  [red]✘ {b.id}[/] {safe(shown_lines[0])}")
            lines += [" " * len(lead) + safe(rest) for rest in shown_lines[1:]]
    return _Summary(tuple(lines), tuple(cut))


# A comparison and its amount stay on one line: "≤ 3 months", not "≤" and "3 months".
_TIED = re.compile(r"(?<=[<>≤≥=×]) | (?=×)")


def _wrap(text: str, width: int) -> list[str]:
    lines = textwrap.wrap(
        _TIED.sub("\xa0", text), width, break_long_words=False, break_on_hyphens=False
    )
    return [line.replace("\xa0", " ") for line in lines]


def _print_lines(console: Any, lines: tuple[str, ...]) -> None:
    for line in lines:
        # Laid out to fit already: never wrapped again.
        console.print(line, highlight=False, soft_wrap=True)


def _legend(record: Screening, width: int, everything: bool, layout: _Layout) -> list[str]:
    """The legend, once; with the caveat mark's note beside it when both fit a line."""
    if not any(t.caveats for t in record.trials):
        return [LEGEND]
    note = "* caveat: below" if _told(record, everything, layout) else "* caveat: --all"
    if len(LEGEND) + 2 + len(note) <= width:
        return [f"{LEGEND}  {note}"]
    short = LEGEND.replace(": blocks enrolment", ": blocks").replace(": collect data", "")
    if len(short) + 2 + len(note) <= width:
        return [f"{short}  {note}"]
    return [LEGEND, note]


@dataclass(frozen=True)
class _Layout:
    """How much a compact report quotes. Each step down names what the one before quoted,
    and `--all` (or `--verbose`, or the chart checklist) gives it whole."""

    questions: bool = True  # a review criterion's question under its label
    caveats: bool = True  # the caveats that qualify a verdict, whole
    ids: bool = False  # judgments by id only, in every trial still open


# The compact report fits REPORT_LINES when it can: it quotes less, step by step, until it
# does (or until nothing more can go). For the examples the first layout fits but for one.
REPORT_LINES = 80
_LAYOUTS = (_Layout(), _Layout(questions=False), _Layout(False, False), _Layout(False, False, True))


def render(
    console: Any,
    record: Record,
    verbose: bool = False,
    everything: bool = False,
    asks: dict[tuple[str, str], dict[str, tuple[str, ...]]] | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> None:
    """Print one patient's screening (or its error) on a rich console: the verdicts and
    blockers first, then per trial the criteria that are not met, the caveats once, the
    worklist, the warnings, and the verdicts again. `everything` lists passing criteria
    and the needs of trials already ineligible too."""
    if isinstance(record, FileError):
        for d in record.diagnostics:
            # Never wrap: the caret must stay under the column it points at.
            console.print(safe(d.render()), style="red", highlight=False, soft_wrap=True)
        return
    work = worklist.build(record, everything, asks, vocabulary)
    layout = _LAYOUTS[0]
    if not everything and not verbose:
        from io import StringIO

        from rich.console import Console

        for layout in _LAYOUTS:
            # Laid out on a plain console of the same width, to count its lines.
            text = StringIO()
            draft = Console(file=text, width=console.width, no_color=True, highlight=False)
            _report(draft, record, work, verbose, everything, layout)
            if text.getvalue().count("\n") <= REPORT_LINES:
                break
    _report(console, record, work, verbose, everything, layout)


def _report(
    console: Any,
    record: Screening,
    work: worklist.Worklist,
    verbose: bool,
    everything: bool,
    layout: _Layout,
) -> None:
    n = len(work.warnings)
    # The date screened on, and where it came from unless it is the file's own.
    source = (
        "" if record.as_of_source == "screening_date" else f" ({AS_OF_SOURCE[record.as_of_source]})"
    )
    header = (
        f"[bold]{safe(record.patient)}[/] · {safe(record.file)} [dim]· as of "
        f"{record.as_of}{source}[/]"
        + (f" · [yellow]{n} warning{'s' if n > 1 else ''} (at the end)[/]" if n else "")
    )
    console.print(header, highlight=False)
    # The rows left on the first screen once the header, the trials and a row per blocker
    # are counted (and one for the pager's prompt): two-row blockers may use them.
    spare = (
        SCREEN_ROWS
        - 1
        - _rows(console, header)
        - len(record.trials)
        - sum(len(blockers(t)) for t in record.trials)
    )
    summary = _summary(record, console.width, spare)
    _print_lines(console, summary.lines)
    for line in _legend(record, console.width, everything, layout):
        console.print(line, style="dim", highlight=False)
    decided = ineligible_anyway(record, everything)
    first = True
    for t in record.trials:
        if t not in decided:
            first = not _section(console, t, everything, verbose, first, layout) and first
    if summary.cut:
        _in_full(console, summary.cut)
    _caveats(console, record, everything, layout)
    if verbose and record.sources:
        console.print()
        console.print("[bold]Where the facts came from[/]")
        for field, source in record.sources:
            console.print(f"  {safe(field)}: [dim]{safe(source)}[/]", highlight=False)
    asked = frozenset(
        t.trial
        for t in record.trials
        if layout.questions and not _quiet(t, everything, verbose, layout)
    )
    _render_worklist(console, work, asked)
    console.print()
    console.print("[bold]Verdicts[/]")
    _print_lines(console, summary.lines)


def _section(
    console: Any,
    t: TrialResult,
    everything: bool,
    verbose: bool,
    first: bool,
    layout: _Layout = _LAYOUTS[0],
) -> bool:
    """A trial's criteria that are not met (all with `everything`): each on its row, what
    it found or asks below it at the width of the screen; whether anything was printed.
    Compact sections follow each other without a blank line: the banner sets each apart."""
    banner = (
        f"[{VERDICT_STYLE[t.verdict]}] {verdict_word(t.verdict)} [/] "
        f"[bold]{t.trial}[/] · {safe(t.product)}"
    )
    listed, unknown, passed = shown(t, everything)
    if not listed and not unknown and not everything:
        return False  # eligible: the summary's line says all there is (its passes: --all)
    if first or everything or verbose:
        console.print()
    # What is not listed one by one: the criteria that need data, by id (the To do says
    # what to collect for each), or, when none do, how many pass. (The summary above has
    # every count.)
    quiet = _quiet(t, everything, verbose, layout)
    tally = ""
    if unknown:
        tally = f"[yellow]?[/] need data: {worklist.ranges([c.id for c in unknown])}"
        if quiet and listed:
            # A trial still waiting for data lists its judgments by id too: the To do asks
            # the investigator, and --all (or the chart checklist) gives the questions.
            tally += f" · [magenta]⚑[/] {worklist.ranges([c.id for c in listed])}"
    elif passed:
        tally = f"[green]✔[/] {passed} {_unlisted(t)} [dim](--all)[/]"
    if tally and _width(banner) + 2 + _width(tally) <= console.width:
        console.print(f"{banner}  {tally}", highlight=False)
    else:
        console.print(banner, highlight=False)
        if tally:
            grid = _hanging()
            grid.add_row(" ", tally)
            console.print(grid)
    if quiet:
        return True
    grid = _grid()
    for c in listed:
        glyph, colour = GLYPHS[c.status]
        attested = " (attested)" if c.attested else ""
        label = f"[bold]{safe(c.label)}[/]{attested}"
        parts = c.parts if everything else [p for p in c.parts if p.status is not Status.PASS]
        if c.status is Status.REVIEW and not c.parts and not layout.questions:
            grid.add_row(f"[{colour}]{glyph}[/]", c.id, label)  # the question: --all
            continue
        if c.status is Status.REVIEW and not c.parts and not verbose:
            # The question to judge goes on from its label, at the width of the screen.
            grid.add_row(
                f"[{colour}]{glyph}[/]", c.id, _asked(c.label, detail(c, c.kind)) + attested
            )
            continue
        grid.add_row(f"[{colour}]{glyph}[/]", c.id, label)
        if not c.parts or verbose:
            grid.add_row("", "", f"[dim]{safe(detail(c, c.kind))}[/]")
        for p in parts:
            glyph, colour = GLYPHS[p.status]
            if p.status is Status.REVIEW and not layout.questions:
                grid.add_row("", f"[{colour}]{glyph}[/] {p.id}", safe(p.label))
                continue
            if p.status is Status.REVIEW and not verbose:
                grid.add_row("", f"[{colour}]{glyph}[/] {p.id}", _asked(p.label, detail(p, c.kind)))
                continue
            # The part's label on its row, what it found below: never both in one cell.
            grid.add_row("", f"[{colour}]{glyph}[/] {p.id}", safe(p.label))
            grid.add_row("", "", f"[dim]{safe(detail(p, c.kind))}[/]")
        if verbose:
            grid.add_row("", "", f"[dim italic]source: {safe(c.text)}[/]")
            if c.note:
                grid.add_row("", "", f"[dim italic]note: {safe(c.note)}[/]")
    if listed:
        console.print(grid)
    return True


def _quiet(t: TrialResult, everything: bool, verbose: bool, layout: _Layout = _LAYOUTS[0]) -> bool:
    """Whether a compact section lists its judgments by id, without their questions: its
    trial still waits for data (or the layout says so for all), and nothing of it but
    judgments would be listed."""
    return (
        (t.verdict is Verdict.INCOMPLETE or (layout.ids and t.verdict is Verdict.NEEDS_REVIEW))
        and not everything
        and not verbose
        and all(c.status is Status.REVIEW and not c.parts for c in shown(t, everything)[0])
    )


def _asked(label: str, question: str) -> str:
    """A criterion to judge and its question on one row: "label: question", or, when the
    question opens with the label's words ("Other severe medical condition" and "other
    severe medical conditions (…)"), the question with those words in bold."""
    if question[: len(label)].lower() == label.lower() and label:
        return f"[bold]{safe(question[: len(label)])}[/][dim]{safe(question[len(label) :])}[/]"
    return f"[bold]{safe(label)}[/]: [dim]{safe(question)}[/]"


def _unlisted(t: TrialResult) -> str:
    """What the compact report leaves out of a trial: "pass", or for an ineligible trial
    "more: 6 pass, 1 review, 7 need data"."""
    if t.verdict is not Verdict.INELIGIBLE:
        return "pass"
    n = _counts(t)
    words = {Status.PASS: "pass", Status.REVIEW: "review", Status.UNKNOWN: "need data"}
    return "more not listed (ineligible anyway): " + ", ".join(
        f"{n[st.value]} {word}" for st, word in words.items() if n[st.value]
    )


def _in_full(console: Any, cut: tuple[tuple[TrialResult, Blocker], ...]) -> None:
    """The blockers the summary had to shorten, whole: a shortened text is never the only
    place a blocker is said."""
    console.print()
    console.print("Blockers shortened above, in full:")
    grid = _hanging()
    for t, b in cut:
        grid.add_row(
            "  [red]✘[/]",
            f"{safe(t.product)} {b.id} {safe(b.label)}"
            + (f": [dim]{safe(b.why)}[/]" if b.why else ""),
        )
    console.print(grid)


# The verdicts a trial's caveats qualify: they say what an eligible (or needs-review)
# answer does not cover, and what to check before referring a patient.
_QUALIFIED = (Verdict.ELIGIBLE, Verdict.NEEDS_REVIEW)


def _told(record: Screening, everything: bool, layout: _Layout) -> list[TrialResult]:
    """The trials whose caveats the report gives whole: those whose verdict they qualify
    (unless the layout names them only)."""
    return [
        t
        for t in record.trials
        if t.caveats and (everything or (layout.caveats and t.verdict in _QUALIFIED))
    ]


def _caveats(console: Any, record: Screening, everything: bool, layout: _Layout) -> None:
    """Each caveat once, marked as the summary marks its trial: whole where it qualifies
    the verdict (eligible, needs review); the trials whose caveats wait for such a verdict
    (still incomplete, or ineligible anyway) are named, and `--all` gives their caveats.
    When none is given whole, the legend's "* caveat: --all" says it all."""
    told = _told(record, everything, layout)
    untold = [t for t in record.trials if t.caveats and t not in told]
    if not told:
        return
    console.print()
    grid = _hanging()
    for t in told:
        grid.add_row("[yellow]*[/]", f"[bold]{safe(t.product)}[/]: {safe(' '.join(t.caveats))}")
    if untold:
        grid.add_row(
            "[yellow]*[/]",
            ", ".join(safe(t.product) for t in untold) + ": their caveats with --all",
        )
    console.print(grid)


def detail(result: CriterionResult | PartResult, kind: Kind) -> str:
    """What a report says under a criterion: for a decided one compared with values, each
    value and the rule it met or broke ("disease B-ALL (excluded if Burkitt)"); else the
    reason, which says what is missing or what the investigator is to judge."""
    if result.evidence and result.status in (Status.PASS, Status.FAIL):
        return "; ".join(
            dict.fromkeys(
                f"{shown_value(e)} ({rule_text(e.threshold, kind)})" for e in result.evidence
            )
        )
    return without_prompt(worklist.reason(result))


def rule_text(threshold: str, kind: Kind) -> str:
    """A compared fact's threshold as a rule: an exclusion's tree describes what excludes,
    so its rule reads "excluded if one of 3, 4"; an inclusion's "needs ≤ 1.6 mg/dL"."""
    if threshold.startswith("applies only"):
        return threshold
    return ("excluded if " if kind is Kind.EXCLUSION else "needs ") + threshold


def shown_value(e: Evidence) -> str:
    """A fact a criterion compared, as the file wrote it and as converted: "creatinine
    150 umol/L = 1.7 mg/dL". One form for the summary, the sections and the checklist."""
    return f"{e.label} {e.value}" + (f" = {e.converted}" if e.converted else "")


def without_prompt(reason: str) -> str:
    # Under a ⚑ the words "investigator to judge" say again what the glyph says.
    return reason.removeprefix("investigator to judge: ")


# The lines of a rendered diagnostic that quote the file: "   46 |   asst:" and the caret
# line under it (core._errors.Diagnostic.render).
EXCERPT = re.compile(r"^ *\d* \| ")


def _skipped(work: worklist.Worklist) -> str:
    if work.everywhere:
        return "every trial screened"
    return ", ".join(work.skipped)


def _render_worklist(
    console: Any, work: worklist.Worklist, asked: frozenset[str] | None = None
) -> None:
    """The worklist; the review questions of the `asked` trials (all by default) stand in
    their sections above, the others' are named with --all."""
    console.print()
    if work.empty():
        if work.skipped:
            # One line, at 80 columns too.
            console.print(
                "[bold]To do:[/] nothing that could change a verdict"
                + (
                    ": ineligible for every trial [dim](--all)[/]"
                    if work.everywhere
                    else " [dim](--all: what ineligible trials lack)[/]"
                ),
                highlight=False,
            )
        else:
            console.print("[bold]To do:[/] nothing: every criterion is decided")
    else:
        # The trials left out are the ineligible ones of the summary: named there.
        console.print(
            "[bold]To do[/]"
            + (" [dim](nothing for the trials ineligible anyway: --all)[/]" if work.skipped else "")
        )
        for group, bullets in work.collect.items():
            if bullets:
                hint = f" ({worklist.EMPTY_LIST})" if any(b.lists for b in bullets) else ""
                console.print(f"[bold]{group}[/]{hint}[bold]:[/]")
                grid = _hanging()
                for b in bullets:
                    grid.add_row("  •", f"{safe(b.text)} [dim]— {safe(b.for_text())}[/]")
                console.print(grid)
        if work.judge:
            # A review criterion's question stands in its trial's section above: named here
            # by id, every trial in one bullet. A criterion still waiting for data is listed
            # by id only there, so its open question is asked here in full.
            console.print("[bold]for the investigator:[/]")
            grid = _hanging()
            named: dict[bool, list[str]] = {False: [], True: []}  # by whether only named
            open_now: list[tuple[str, str]] = []
            for trial, items in work.judge.items():
                ids, product = trial.split(" · ", 1)
                here = []
                for item in items:
                    cid = item.split(":", 1)[0]
                    if f"{ids}/{cid}" in work.pending:
                        open_now.append((f"{product} {cid}", item.split(": ", 1)[-1]))
                    else:
                        here.append(cid)
                if here:
                    hushed = asked is not None and ids not in asked
                    named[hushed].append(f"{product} {' '.join(dict.fromkeys(here))}")
            for hushed, where in ((False, "questions above"), (True, "questions: --all")):
                if named[hushed]:
                    grid.add_row("  •", f"{safe(' · '.join(named[hushed]))} [dim]({where})[/]")
            for who, question in open_now:
                grid.add_row("  •", f"{safe(who)}: {safe(question)} [dim](still needs data too)[/]")
            console.print(grid)
    if work.warnings:
        console.print()
        console.print(
            f"[bold yellow]{len(work.warnings)} warning"
            f"{'s' if len(work.warnings) > 1 else ''} about the file[/]"
        )
        for text, left in work.warnings:
            for line in text.split("\n"):
                # The source line and its caret are never wrapped, or the caret would no
                # longer point at its column (as for errors); the message and hint are.
                console.print(
                    safe(line), style="yellow", highlight=False, soft_wrap=bool(EXCERPT.match(line))
                )
            if left:
                console.print(f"  [dim]left unknown: {safe(', '.join(left))}[/]")


# -------------------------------------------------------------------------------- Markdown

_MD_GLYPH = {status: glyph for status, (glyph, _) in GLYPHS.items()}


def markdown(
    record: Record,
    verbose: bool = False,
    everything: bool = False,
    asks: dict[tuple[str, str], dict[str, tuple[str, ...]]] | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> str:
    """One patient's report (or error) as Markdown, in the order of the table report."""
    if isinstance(record, FileError):
        lines = [d.render() for d in record.diagnostics]
        fence = _fence(lines)
        return (
            "\n".join(
                [
                    f"## {code_span(record.file)}: could not be screened",
                    "",
                    fence,
                    *lines,
                    fence,
                    "",
                ]
            )
            + "\n"
        )
    out = [
        f"## {_md(record.patient)} ({code_span(record.file)})",
        "",
        f"Screened as of {record.as_of}, from {AS_OF_SOURCE[record.as_of_source]}.",
        "",
    ]
    summary = _md_summary(record)
    out += summary + [LEGEND, ""]
    decided = ineligible_anyway(record, everything)
    for t in record.trials:
        if t in decided:
            continue
        n = _counts(t)
        tally = ", ".join(f"{n[st.value]} {st.value}" for st in Status if n[st.value])
        out += [f"### {t.trial} · {_md(t.product)} — **{t.verdict.value}** ({tally})", ""]
        listed, unknown, passed = shown(t, everything)
        if listed:
            out += ["| | id | criterion | reason |", "|---|---|---|---|"]
            for c in listed:
                attested = " (attested)" if c.attested else ""
                out.append(
                    f"| {_MD_GLYPH[c.status]} | {c.id} | {_md(c.label)}{attested} | "
                    f"{_md(detail(c, c.kind))} |"
                )
                parts = (
                    c.parts if everything else [p for p in c.parts if p.status is not Status.PASS]
                )
                out += [
                    f"| {_MD_GLYPH[p.status]} | {p.id} | {_md(p.label)} | "
                    f"{_md(detail(p, c.kind))} |"
                    for p in parts
                ]
                if verbose:
                    out.append(f"| | | {_md(c.text)} | {_md(c.note)} |")
            out.append("")
        if unknown:
            out += [
                f"? {len(unknown)} need data (see To do): " + ", ".join(c.id for c in unknown),
                "",
            ]
        if passed:
            out += [f"{passed} {_unlisted(t)} (`--all` lists them).", ""]
    if decided:
        out += [
            "### Ineligible: " + ", ".join(f"{t.trial} · {_md(t.product)}" for t in decided),
            "",
            "The blockers in the table above say why; `--all` lists their criteria.",
            "",
        ]
    if any(t.caveats for t in record.trials):
        # Each caveat once, for every trial (a document has room for them all). A blank
        # line ends the quote: without it a table that followed would be read as part of
        # the quoted paragraph and not render as a table.
        out += ["### Caveats", ""]
        out += "\n>\n".join(
            f"> {t.trial} · {_md(t.product)}: {_md(c)}" for t in record.trials for c in t.caveats
        ).split("\n") + [""]
    work = worklist.build(record, everything, asks, vocabulary)
    out += ["### To do", ""]
    if work.empty():
        out += [
            "Nothing that could change a verdict: ineligible for " + _skipped(work) + "."
            if work.skipped
            else "Nothing: every criterion is decided.",
            "",
        ]
    else:
        if work.skipped:
            out += [f"Nothing asked for {', '.join(work.skipped)}: already ineligible.", ""]
        for group, bullets in work.collect.items():
            if bullets:
                hint = f" ({worklist.EMPTY_LIST})" if any(b.lists for b in bullets) else ""
                out += [f"**{group}**{hint}", ""]
                out += [f"- [ ] {_md(b.text)} — {_md(b.for_text())}" for b in bullets]
                out.append("")
        for trial, items in work.judge.items():
            out += [f"**for the investigator, {_md(trial)}**", ""]
            out += [f"- [ ] {_md(item)}" for item in items] + [""]
    if work.warnings:
        out += [
            f"### {len(work.warnings)} warning{'s' if len(work.warnings) > 1 else ''} "
            "about the file",
            "",
        ]
        for text, left in work.warnings:
            # As written, in a code block: the caret stays under its column, and nothing
            # in a code block is a link or HTML.
            lines = [printable(line) for line in text.split("\n")]
            fence = _fence(lines)
            out += [fence, *lines, fence, ""]
            if left:
                out += [f"Left unknown: {_md(', '.join(left))}.", ""]
    out += ["### Verdicts", ""] + summary
    return "\n".join(out) + "\n"


def _md_summary(record: Screening) -> list[str]:
    out = [
        "| trial | product | verdict | ✔ | ✘ | ? | ⚑ | blocked by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in record.trials:
        n = _counts(t)
        blocked = "; ".join(f"{b.id} {_md(b.text)}" for b in blockers(t))
        caveat = " (caveat)" if t.caveats else ""
        out.append(
            f"| {t.trial}{caveat} | {_md(t.product)} | **{t.verdict.value}** | "
            + " | ".join(str(n[st.value]) for st in Status)
            + f" | {blocked} |"
        )
    return out + [""]


# The Markdown characters that can turn input text into something else: with these
# escaped it opens no link or image (`[x](javascript:…)`, `<javascript:…>`), no raw HTML
# (`<img onerror=…>`), no code span and no table cell. (Emphasis is left alone: it cannot
# hide or run anything, and escaping every `_` would change every field name.)
# A `<` opens HTML or an autolink only before a letter, `/`, `!` or `?`: `< 70 years` stays.
_MD_ACTIVE = re.compile(r"([\\`\[\]|]|<(?=[A-Za-z/!?]))")
_MD_BREAKS = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]+")


def md(text: str) -> str:
    """Input text for Markdown: one line, printable, every active character escaped."""
    return _MD_ACTIVE.sub(r"\\\1", printable(_MD_BREAKS.sub(" ", text)))


_md = md


def code_span(text: str) -> str:
    """Input text as a Markdown code span (nothing inside one is a link or HTML), its
    delimiter longer than any run of backticks in the text, so it cannot be closed early."""
    text = printable(_MD_BREAKS.sub(" ", text)).replace("|", "\\|")
    ticks = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(lines: list[str]) -> str:
    """A code fence longer than any run of backticks in what it holds, so it cannot be
    closed from inside."""
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    return "`" * max(3, longest + 1)
