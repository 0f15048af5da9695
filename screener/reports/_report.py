"""Turn screening results into JSON, CSV and Markdown for scripts and rich tables for people.

JSON keys are sorted and the text is deterministic, so the same input gives the same
bytes. The per-patient report shows, per trial, a verdict banner and every criterion with
the patient's value (as written and as converted) and what is required; then one to-do
list: data to collect, grouped as a nurse gathers it, and items for the investigator.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace
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
    if compact:
        return _compact(data)
    return json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2)


# What is encoded here is built afresh from frozen results and holds no cycles, so the
# encoders skip the bookkeeping that detects them (a dict entry per container).
_compact = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), check_circular=False
).encode


# jsonl_line writes the bytes dumps(to_json(record), compact=True) would, assembled from
# pieces that a cohort repeats, each encoded by the same encoder from the same definition
# (_trial_json, _criterion_json), so key order and text cannot drift from the plain record
# (tests/test_memo.py compares the two for every patient the project has).


def _criterion_bytes(c: CriterionResult) -> bytes:
    # Kept as UTF-8 since the text has characters such as ≤ and ×, which make Python store
    # a whole record two bytes a character: joining and encoding that cost more than the
    # rest of the record.
    return _compact(_criterion_json(c)).encode()


@cache
def _key(name: str) -> bytes:
    return (_compact(name) + ":").encode()


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
        found = tuple(_compact(record).encode().split(_MARKER))
        assert len(found) == len(_PER_PATIENT) + 1, found
        keep(_FRAMES, key, found, 64)
    return found


_VERDICTS = {v: _compact(v.value).encode() for v in Verdict}


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
        return _terminal_safe((_compact(_error_json(record)) + "\n").encode())
    members: dict[str, Any] = {
        k: _compact(v).encode() for k, v in _screening_fields(record).items()
    }
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
    text = dumps(to_json(record))
    return (
        _C1_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _C1_TEXT.search(text) else text
    )


# JSON escapes C0 controls (ESC is written \u001b) but, with ensure_ascii=False, writes the
# C1 controls (U+009B is a one-byte CSI) and bidirectional overrides as they are, so a JSON
# file shown with `cat` could still drive a terminal. They are written as \u escapes: the
# same strings for every JSON reader, and bytes unchanged for text without them.
_C1_TEXT = re.compile("[\x80-\x9f\u202a-\u202e\u2066-\u2069]")
_C1_UTF8 = re.compile(b"\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")


def _terminal_safe(data: bytes) -> bytes:
    if _C1_UTF8.search(data) is None:  # the usual case: one scan, no copy
        return data
    return _C1_UTF8.sub(lambda m: f"\\u{ord(m.group().decode()):04x}".encode(), data)


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


def blockers(t: TrialResult) -> list[tuple[str, str]]:
    """The failing criteria (or failing parts) of a trial: (id, "label: the patient's
    values"). A label states its threshold ("Estimated survival > 3 months"), so with the
    values it says why in one line; the trial's section gives the whole reason."""
    out = []
    for c in t.criteria:
        if c.status is not Status.FAIL:
            continue
        failing: list[PartResult | CriterionResult] = [
            p for p in c.parts if p.status is Status.FAIL
        ]
        for item in failing or [c]:
            name = item.label or c.label
            values = "; ".join(dict.fromkeys(map(shown_value, item.evidence)))
            out.append((item.id, f"{name}: {values}" if values else name))
    return out


def ineligible_anyway(record: Screening, everything: bool) -> list[TrialResult]:
    """The trials a compact report tells only by their blockers in the summary: the patient
    is ineligible for them, and their own sections (what else they lack) would only
    lengthen the report; `--all` shows them."""
    return [] if everything else [t for t in record.trials if t.verdict is Verdict.INELIGIBLE]


def brief(text: str, limit: int = 110) -> str:
    """A reason cut at a word to about two lines, for the summary; the trial's section
    below gives it whole."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(";,: ") + " …"


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


def _grid() -> Any:
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    return grid


def _summary(console: Any, record: Screening) -> None:
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=12)
    grid.add_column(ratio=1)
    width = max(len(t.product) for t in record.trials) if record.trials else 0
    for t in record.trials:
        # A caveat (unpublished criteria, a withdrawn registration) qualifies the verdict.
        caveat = "[yellow]*[/]" if t.caveats else " "
        grid.add_row(
            f"[{VERDICT_STYLE[t.verdict]}]{verdict_word(t.verdict)}[/]",
            f"[bold]{t.trial}[/]{caveat} {safe(t.product.ljust(width))}  [dim]{counts_text(t)}[/]",
        )
        for cid, text in blockers(t):
            grid.add_row("", f"[red]✘ {cid}[/] {safe(brief(text))}")
    console.print(grid)
    if any(t.caveats for t in record.trials):
        console.print("[yellow]*[/] [dim]a caveat qualifies the verdict: see below[/]")


def render(
    console: Any,
    record: Record,
    verbose: bool = False,
    everything: bool = False,
    asks: dict[tuple[str, str], dict[str, tuple[str, ...]]] | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> None:
    """Print one patient's screening (or its error) on a rich console: the verdicts and
    blockers first, then per trial the criteria that are not met, the worklist, the
    warnings, and the verdicts again. `everything` lists passing criteria and the needs of
    trials already ineligible too."""
    if isinstance(record, FileError):
        for d in record.diagnostics:
            # Never wrap: the caret must stay under the column it points at.
            console.print(safe(d.render()), style="red", highlight=False, soft_wrap=True)
        return
    console.print(
        f"[bold]{safe(record.patient)}[/] · {safe(record.file)} [dim]· as of "
        f"{record.as_of}, from {AS_OF_SOURCE[record.as_of_source]}[/]"
    )
    _summary(console, record)
    console.print(LEGEND, style="dim", highlight=False)
    decided = ineligible_anyway(record, everything)
    for t in record.trials:
        if t in decided:
            continue
        console.print()
        console.print(
            f"[{VERDICT_STYLE[t.verdict]}] {verdict_word(t.verdict)} [/] "
            f"[bold]{t.trial}[/] · {safe(t.product)}   [dim]{counts_text(t)}[/]",
            highlight=False,
        )
        if t.caveats:
            notes = _grid()
            for caveat in t.caveats:
                notes.add_row("", "[bold yellow]caveat:[/]", safe(caveat))
            console.print(notes)
        listed, unknown, passed = shown(t, everything)
        grid = _grid()
        for c in listed:
            glyph, colour = GLYPHS[c.status]
            attested = " (attested)" if c.attested else ""
            grid.add_row(f"[{colour}]{glyph}[/]", c.id, f"[bold]{safe(c.label)}[/]{attested}")
            parts = c.parts if everything else [p for p in c.parts if p.status is not Status.PASS]
            if not c.parts or verbose:
                grid.add_row("", "", f"[dim]{safe(detail(c, c.kind))}[/]")
            for p in parts:
                glyph, colour = GLYPHS[p.status]
                grid.add_row(
                    "",
                    f"[{colour}]{glyph}[/] {p.id}",
                    f"{safe(p.label)}: [dim]{safe(detail(p, c.kind))}[/]",
                )
            if verbose:
                grid.add_row("", "", f"[dim italic]source: {safe(c.text)}[/]")
                if c.note:
                    grid.add_row("", "", f"[dim italic]note: {safe(c.note)}[/]")
        if unknown:
            grid.add_row(
                "[yellow]?[/]",
                str(len(unknown)),
                "need data: "
                + " ".join(c.id for c in unknown)
                + " [dim](see To do)[/]"
                + (f" · [green]✔[/] {passed} pass" if passed else ""),
            )
        elif passed:
            grid.add_row(
                "[green]✔[/]" if t.verdict is not Verdict.INELIGIBLE else "·",
                str(passed),
                _unlisted(t) + " [dim](--all)[/]",
            )
        console.print(grid)
    if decided:
        console.print()
        notes = _grid()
        notes.add_row(
            f"[{VERDICT_STYLE[Verdict.INELIGIBLE]}] INELIGIBLE [/]",
            "",
            ", ".join(f"{t.trial} {safe(t.product)}" for t in decided)
            + " [dim]— the blockers above say why; --all lists their criteria[/]",
        )
        for t in decided:
            for caveat in t.caveats:
                notes.add_row("", f"[bold yellow]caveat[/] {t.trial}:", safe(caveat))
        console.print(notes)
    if verbose and record.sources:
        console.print()
        console.print("[bold]Where the facts came from[/]")
        for field, source in record.sources:
            console.print(f"  {safe(field)}: [dim]{safe(source)}[/]", highlight=False)
    _render_worklist(console, worklist.build(record, everything, asks, vocabulary))
    if len(record.trials) > 1:
        console.print()
        console.print("[bold]Verdicts[/]")
        _summary(console, record)


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


def _render_worklist(console: Any, work: worklist.Worklist) -> None:
    console.print()
    if work.empty():
        if work.skipped:
            console.print(
                "[bold]To do:[/] nothing that could change a verdict: ineligible for "
                + _skipped(work)
                + " [dim](--all lists their gaps)[/]"
            )
        else:
            console.print("[bold]To do:[/] nothing: every criterion is decided")
    else:
        console.print("[bold]To do[/]")
        if work.skipped:
            console.print(
                f"  [dim]not asked for {', '.join(work.skipped)}: ineligible anyway (--all)[/]"
            )
        for group, bullets in work.collect.items():
            if bullets:
                console.print(f"  [bold]{group}:[/]")
                for b in bullets:
                    console.print(
                        f"    • {safe(b.text)} [dim]— {safe(b.for_text())}[/]", highlight=False
                    )
        if work.judge:
            # A review criterion's question stands in its trial's section above: named here
            # by id. A criterion still waiting for data is listed by id only there, so its
            # open question is asked here in full.
            console.print("  [bold]for the investigator:[/]")
            for trial, items in work.judge.items():
                ids = trial.split(" · ", 1)[0]
                named = [
                    i.split(":", 1)[0]
                    for i in items
                    if f"{ids}/{i.split(':', 1)[0]}" not in work.pending
                ]
                asked = [i for i in items if f"{ids}/{i.split(':', 1)[0]}" in work.pending]
                line = " ".join(dict.fromkeys(named)) + (" (questions above)" if named else "")
                console.print(
                    f"    • {safe(trial)}: {safe(line)}" if named else f"    • {safe(trial)}:",
                    highlight=False,
                )
                for item in asked:
                    console.print(
                        f"      {safe(item)} [dim](still needs data too)[/]", highlight=False
                    )
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
        if t.caveats:
            # A blank line ends the quote: without it the table below would be read as
            # part of the quoted paragraph and not render as a table.
            out += "\n>\n".join(f"> caveat: {_md(c)}" for c in t.caveats).split("\n") + [""]
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
        out += (
            "\n>\n".join(
                f"> caveat ({t.trial}): {_md(c)}" for t in decided for c in t.caveats
            ).split("\n")
            + [""]
            if any(t.caveats for t in decided)
            else []
        )
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
                out += [f"**{group}**", ""]
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
    if len(record.trials) > 1:
        out += ["### Verdicts", ""] + summary
    return "\n".join(out) + "\n"


def _md_summary(record: Screening) -> list[str]:
    out = [
        "| trial | product | verdict | ✔ | ✘ | ? | ⚑ | blocked by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in record.trials:
        n = _counts(t)
        blocked = "; ".join(f"{cid} {_md(text)}" for cid, text in blockers(t))
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
