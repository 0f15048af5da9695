"""Turn screening results into JSON, CSV and Markdown for scripts and rich tables for people.

JSON keys are sorted and the text is deterministic, so the same input gives the same
bytes. The per-patient report shows, per trial, a verdict banner and every criterion with
the patient's value (as written and as converted) and what is required; then one to-do
list: data to collect, grouped as a nurse gathers it, and items for the investigator.
"""

from __future__ import annotations

import csv
import io
import json
import re
from functools import lru_cache
from typing import Any

from .batch import FileError, Record
from .errors import printable
from .model import (CriterionResult, Evidence, Kind, PartResult, Screening, Status, TrialResult,
                    Verdict)


# The keys of these three are written in sorted order, so the text _criterion_bytes makes
# without sorting is the text json.dumps(sort_keys=True) makes.

def _evidence_json(evidence: tuple[Evidence, ...]) -> list[dict[str, str]]:
    return [{"converted": e.converted, "field": e.field, "label": e.label,
             "threshold": e.threshold, "value": e.value} for e in evidence]


def _part_json(part: PartResult) -> dict[str, Any]:
    return {"id": part.id, "missing": list(part.missing), "reason": part.reason,
            "review": list(part.review), "status": part.status.value,
            "values": _evidence_json(part.evidence)}


def _criterion_json(c: CriterionResult) -> dict[str, Any]:
    return {"attested": c.attested, "id": c.id, "kind": c.kind.value, "label": c.label,
            "missing": list(c.missing), "parts": [_part_json(p) for p in c.parts],
            "reason": c.reason, "review": list(c.review), "status": c.status.value,
            "values": _evidence_json(c.evidence)}


_STATUSES = tuple((s, s.value) for s in Status)  # Enum's .value is a Python-level property


def _counts(t: TrialResult) -> dict[str, int]:
    statuses = [c.status for c in t.criteria]
    return {value: statuses.count(status) for status, value in _STATUSES}


def _trial_fields(t: TrialResult) -> dict[str, Any]:
    return {"trial": t.trial, "product": t.product, "title": t.title, "verdict": t.verdict.value,
            "caveats": list(t.caveats), "counts": _counts(t)}


def _trial_json(t: TrialResult) -> dict[str, Any]:
    return {**_trial_fields(t), "criteria": [_criterion_json(c) for c in t.criteria]}


def _error_json(record: FileError) -> dict[str, Any]:
    first = record.diagnostics[0]
    return {"file": record.file,
            "error": {"message": first.message, "line": first.position.line
                      if first.position else None,
                      "column": first.position.column if first.position else None,
                      "hint": first.hint, "text": first.render()},
            "errors": [d.to_json() for d in record.diagnostics]}


def _screening_fields(record: Screening) -> dict[str, Any]:
    data: dict[str, Any] = {"patient": record.patient, "file": record.file,
                            "as_of": record.as_of, "as_of_source": record.as_of_source,
                            "warnings": list(record.warnings)}
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
_compact = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                            check_circular=False).encode
_in_order = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),  # keys as built
                             check_circular=False).encode


def _criterion_bytes(c: CriterionResult) -> bytes:
    # Criterion results are shared by patients with the same facts (engine.screen_criterion),
    # so their JSON is too: encoded once and kept with the result. Kept as UTF-8 since the
    # text has characters such as ≤ and ×, which make Python store a whole record two bytes
    # a character: joining and encoding that cost more than the rest of the record.
    data = c.memo.get("jsonl")
    if data is None:
        data = c.memo["jsonl"] = _in_order(_criterion_json(c)).encode()
    return data


@lru_cache(maxsize=None)
def _key(name: str) -> bytes:
    return (_compact(name) + ":").encode()


@lru_cache(maxsize=64)
def _trial_frame(trial: str, product: str, title: str, caveats: tuple[str, ...]
                 ) -> tuple[bytes, bytes, bytes]:
    """A trial's JSON object around its counts, criteria and verdict, keys in sorted order:
    caveats, counts, criteria, product, title, trial, verdict."""
    tail = b",".join(_key(k) + _compact(v).encode() for k, v in
                     (("product", product), ("title", title), ("trial", trial)))
    return (b'{"caveats":' + _compact(list(caveats)).encode() + b',"counts":', b',"criteria":[',
            b"]," + tail + b',"verdict":')


_VERDICTS = {v: _compact(v.value).encode() for v in Verdict}


def _counts_bytes(t: TrialResult) -> bytes:
    return ("{" + ",".join(f'"{k}":{n}' for k, n in sorted(_counts(t).items())) + "}").encode()


def _trials_pieces(record: Screening) -> list[bytes]:
    pieces = [b"["]
    for i, t in enumerate(record.trials):
        head, criteria, tail = _trial_frame(t.trial, t.product, t.title, t.caveats)
        pieces += (b"," if i else b"", head, _counts_bytes(t), criteria,
                   b",".join(map(_criterion_bytes, t.criteria)), tail, _VERDICTS[t.verdict], b"}")
    pieces.append(b"]")
    return pieces


def jsonl_line(record: Record) -> bytes:
    """One JSON Lines record as UTF-8: dumps(to_json(record), compact=True) and a newline,
    assembled from each criterion's cached JSON, since a cohort repeats most results.
    The pieces are joined once, at the end: a record is some 32 kB."""
    if isinstance(record, FileError):
        return _terminal_safe((_compact(_error_json(record)) + "\n").encode())
    members: dict[str, Any] = {k: _compact(v).encode()
                               for k, v in _screening_fields(record).items()}
    members["trials"] = None  # its place in the sorted order
    pieces: list[bytes] = []
    for name, value in sorted(members.items()):
        pieces += (b"," if pieces else b"{", _key(name))
        if value is None:
            pieces += _trials_pieces(record)
        else:
            pieces.append(value)
    pieces.append(b"}\n")
    return _terminal_safe(b"".join(pieces))


def json_document(record: Record) -> str:
    text = dumps(to_json(record))
    return _C1_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _C1_TEXT.search(text) \
        else text


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

CSV_COLUMNS = ["file", "patient", "as_of", "trial", "verdict", "criterion", "kind", "status",
               "reason", "missing", "error", "line"]


def csv_header() -> str:
    return _csv_line(CSV_COLUMNS)


def csv_rows(record: Record) -> str:
    """One row per criterion and per part (id I8.a), or one error row for a bad file."""
    if isinstance(record, FileError):
        first = record.diagnostics[0]
        line = first.position.line if first.position else ""
        return _csv_line([record.file, "", "", "", "", "", "", "", "", "", first.message, line])
    out = []
    for t in record.trials:
        for c in t.criteria:
            for cid, status, reason, missing in [(c.id, c.status, c.reason, c.missing)] + [
                    (p.id, p.status, p.reason, p.missing) for p in c.parts]:
                out.append(_csv_line([record.file, record.patient, record.as_of, t.trial,
                                      t.verdict.value, cid, c.kind.value, status.value, reason,
                                      ";".join(missing), "", ""]))
    return "".join(out)


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


# ------------------------------------------------------------------------------ to-do list

# How a nurse gathers missing data: what to order, what to ask, what to assess or record.
_LABS = ("labs.", "serology.", "pregnancy_test", "diagnosis.markers", "diagnosis.bone_marrow",
         "diagnosis.abl1", "diagnosis.ph_positive", "lvef", "spo2")
_HISTORY = ("therapies", "conditions", "medications", "procedures", "vaccinations", "allergies",
            "immunotherapy_ae_grade", "diagnosis.", "birth_date", "pregnan", "lactating",
            "childbearing_potential")
TODO_GROUPS = ("labs and tests to order", "history to ask about",
               "assessments and consent to record")


def todo_group(field: str) -> str:
    if field.startswith(_LABS):
        return TODO_GROUPS[0]
    if field.startswith(_HISTORY):
        return TODO_GROUPS[1]
    return TODO_GROUPS[2]


def todo(record: Screening) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """Data to collect (group -> field -> criteria needing it) and investigator items."""
    collect: dict[str, dict[str, list[str]]] = {g: {} for g in TODO_GROUPS}
    judge: list[str] = []
    for t in record.trials:
        for c in t.criteria:
            if c.status is Status.UNKNOWN:
                for name in c.missing:
                    collect[todo_group(name)].setdefault(name, []).append(f"{t.trial} {c.id}")
            if c.status in (Status.REVIEW, Status.UNKNOWN):
                judge.extend(f"{t.trial} {c.id}: {item}" for item in c.review)
    return collect, judge


# ------------------------------------------------------------------------------ rich table


def safe(text: str) -> str:
    """Input text (ids, values, labels, rule texts, names) for a rich console: control
    characters made visible, so no escape sequence reaches a terminal or a text file, and
    markup brackets escaped, so `[/bold]` in a rule file prints as written."""
    from rich.markup import escape

    return escape(printable(text))


GLYPHS = {Status.PASS: ("✔", "green"), Status.FAIL: ("✘", "red"),
          Status.UNKNOWN: ("?", "yellow"), Status.REVIEW: ("⚑", "magenta")}
VERDICT_STYLE = {Verdict.ELIGIBLE: "bold green", Verdict.INELIGIBLE: "bold red",
                 Verdict.INCOMPLETE: "bold yellow", Verdict.NEEDS_REVIEW: "bold magenta"}
AS_OF_SOURCE = {"screening_date": "the file's screening_date", "--as-of": "--as-of",
                "today": "today's date (no screening_date in the file)"}


def _cells(result: CriterionResult | PartResult, kind: Kind) -> tuple[str, str, str]:
    """Value (as written, then as converted), the rule, and the reason when they say less.

    An exclusion's tree describes what excludes, so its rule reads "excluded if …".
    """
    if not result.evidence:
        return "", "", result.reason
    # One line per fact: "age 45 years" once, with both its bounds ("≥ 18 years, < 70 years").
    facts: dict[tuple[str, str, str], list[str]] = {}
    for e in result.evidence:
        facts.setdefault((f"{e.label} {e.value}", e.converted, e.field), []).append(e.threshold)
    values, required = [], []
    prefix = "excluded if " if kind is Kind.EXCLUSION else ""
    for (shown, converted, _), thresholds in facts.items():
        values.append(shown + (f" = {converted}" if converted else ""))
        required.append(prefix + ", ".join(thresholds))
    return "\n".join(values), "\n".join(required), ""


def render(console: Any, record: Record, verbose: bool = False) -> None:
    """Print one patient's screening (or its error) on a rich console."""
    from rich.table import Table

    if isinstance(record, FileError):
        for d in record.diagnostics:
            # Never wrap: the caret must stay under the column it points at.
            console.print(safe(d.render()), style="red", highlight=False, soft_wrap=True)
        return
    console.print(f"[bold]{safe(record.patient)}[/] ({safe(record.file)}) — screened as of "
                  f"{record.as_of}, from {AS_OF_SOURCE[record.as_of_source]}")
    for warning in record.warnings:
        console.print(safe(warning), style="yellow", highlight=False)
    for trial in record.trials:
        console.print()
        console.print(f"[{VERDICT_STYLE[trial.verdict]}] {trial.verdict.value.upper()} [/] "
                      f"[bold]{trial.trial}[/] · {safe(trial.product)}",
                      style=VERDICT_STYLE[trial.verdict].replace("bold ", "reverse "))
        for caveat in trial.caveats:
            console.print(f"  [bold yellow]caveat:[/] {safe(caveat)}")
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("", width=1)
        table.add_column("id", no_wrap=True)
        table.add_column("criterion", ratio=3)
        table.add_column("patient value", ratio=2)
        table.add_column("rule", ratio=2)
        table.add_column("reason", ratio=4)
        for c in trial.criteria:
            glyph, colour = GLYPHS[c.status]
            label = c.label + (" (attested)" if c.attested else "")
            value, required, reason = _cells(c, c.kind)
            if c.parts:
                value, required, reason = "", "", _parts_summary(c)
            if verbose:
                reason = c.reason
            table.add_row(f"[{colour}]{glyph}[/]", c.id, safe(label), safe(value),
                          safe(required), safe(reason))
            for p in c.parts:
                glyph, colour = GLYPHS[p.status]
                value, required, reason = _cells(p, c.kind)
                table.add_row(f"[{colour}]{glyph}[/]", f" {p.id}", "", safe(value),
                              safe(required), safe(p.reason if verbose else reason))
            if verbose:
                table.add_row("", "", f"[dim]{safe(c.text)}[/]", "", "",
                              f"[dim italic]{safe(c.note)}[/]" if c.note else "")
        console.print(table)
    if verbose and record.sources:
        console.print()
        console.print("[bold]Where the facts came from[/]")
        for field, source in record.sources:
            console.print(f"  {safe(field)}: [dim]{safe(source)}[/]", highlight=False)
    collect, judge = todo(record)
    if any(collect.values()) or judge:
        console.print()
        console.print("[bold]To do[/]")
        for group, fields in collect.items():
            if fields:
                console.print(f"  [bold]{group}:[/]")
                for name, needed_by in fields.items():
                    console.print(f"    • {safe(name)}  "
                                  f"[dim](for {safe(', '.join(needed_by))})[/]",
                                  highlight=False)
        if judge:
            console.print("  [bold]for the investigator:[/]")
            for item in judge:
                console.print(f"    • {safe(item)}", highlight=False)


def _parts_summary(c: CriterionResult) -> str:
    """A criterion made of parts reads as a tally; each part's own row gives the reason."""
    tally: dict[str, int] = {}
    for p in c.parts:
        tally[p.status.value] = tally.get(p.status.value, 0) + 1
    rule = "all parts must hold" if c.combine == "all" else "one part suffices"
    return f"{rule}: " + ", ".join(f"{n} {s}" for s, n in tally.items())


# -------------------------------------------------------------------------------- Markdown

_MD_GLYPH = {status: glyph for status, (glyph, _) in GLYPHS.items()}


def markdown(record: Record, verbose: bool = False) -> str:
    """One patient's report (or error) as Markdown."""
    if isinstance(record, FileError):
        lines = [d.render() for d in record.diagnostics]
        fence = _fence(lines)
        return "\n".join([f"## {code_span(record.file)}: could not be screened", "", fence,
                          *lines, fence, ""]) + "\n"
    out = [f"## {_md(record.patient)} ({code_span(record.file)})", "",
           f"Screened as of {record.as_of}, from {AS_OF_SOURCE[record.as_of_source]}.", ""]
    out += [f"> warning: {_md(w)}" for w in record.warnings]
    for t in record.trials:
        out += [f"### {t.trial} · {_md(t.product)} — **{t.verdict.value}**", ""]
        out += [f"> caveat: {_md(c)}" for c in t.caveats]
        out += ["| | id | criterion | status | reason |", "|---|---|---|---|---|"]
        for c in t.criteria:
            out.append(f"| {_MD_GLYPH[c.status]} | {c.id} | {_md(c.label)} | {c.status.value} "
                       f"| {_md(c.reason)} |")
            out += [f"| {_MD_GLYPH[p.status]} | {p.id} | | {p.status.value} | {_md(p.reason)} |"
                    for p in c.parts]
            if verbose:
                out.append(f"| | | {_md(c.text)} | | {_md(c.note)} |")
        out.append("")
    collect, judge = todo(record)
    if any(collect.values()) or judge:
        out += ["### To do", ""]
        for group, fields in collect.items():
            if fields:
                out.append(f"**{group}**")
                out += [f"- [ ] {code_span(name)} (for {_md(', '.join(ids))})"
                        for name, ids in fields.items()]
                out.append("")
        if judge:
            out.append("**for the investigator**")
            out += [f"- [ ] {_md(item)}" for item in judge]
            out.append("")
    return "\n".join(out) + "\n"


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
