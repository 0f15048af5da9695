"""Turn screening results into JSON for scripts and rich tables for people.

JSON keys are sorted and the text is deterministic, so the same input gives the same
bytes. Tables show, per trial, a verdict, every criterion with its reason, and a to-do
list: what to collect and what the investigator must judge.
"""

from __future__ import annotations

import json
from typing import Any

from .batch import FileError
from .model import CriterionResult, PartResult, Screening, Status, TrialResult, Verdict


def _part_json(part: PartResult) -> dict[str, Any]:
    return {"id": part.id, "status": part.status.value, "reason": part.reason,
            "missing": list(part.missing), "review": list(part.review)}


def _criterion_json(c: CriterionResult) -> dict[str, Any]:
    return {"id": c.id, "kind": c.kind.value, "label": c.label, "status": c.status.value,
            "reason": c.reason, "missing": list(c.missing), "review": list(c.review),
            "attested": c.attested, "parts": [_part_json(p) for p in c.parts]}


def _trial_json(t: TrialResult) -> dict[str, Any]:
    counts = {s.value: 0 for s in Status}
    for c in t.criteria:
        counts[c.status.value] += 1
    return {"trial": t.trial, "product": t.product, "title": t.title, "verdict": t.verdict.value,
            "caveats": list(t.caveats), "counts": counts,
            "criteria": [_criterion_json(c) for c in t.criteria]}


def to_json(record: Screening | FileError) -> dict[str, Any]:
    if isinstance(record, FileError):
        first = record.diagnostics[0]
        return {"file": record.file,
                "error": {"message": first.message, "line": first.position.line
                          if first.position else None,
                          "column": first.position.column if first.position else None,
                          "hint": first.hint, "text": first.render()},
                "errors": [d.to_json() for d in record.diagnostics]}
    data = {"patient": record.patient, "file": record.file, "as_of": record.as_of,
            "as_of_source": record.as_of_source, "warnings": list(record.warnings),
            "trials": [_trial_json(t) for t in record.trials]}
    if record.sources:
        data["sources"] = dict(record.sources)
    return data


def dumps(data: Any, compact: bool = False) -> str:
    if compact:
        return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2)


# ------------------------------------------------------------------------------- tables

GLYPHS = {Status.PASS: ("✔", "green"), Status.FAIL: ("✘", "red"),
          Status.UNKNOWN: ("?", "yellow"), Status.REVIEW: ("⚑", "magenta")}
VERDICT_STYLE = {Verdict.ELIGIBLE: "bold green", Verdict.INELIGIBLE: "bold red",
                 Verdict.INCOMPLETE: "bold yellow", Verdict.NEEDS_REVIEW: "bold magenta"}
AS_OF_SOURCE = {"screening_date": "the file's screening_date", "--as-of": "--as-of",
                "today": "today's date (no screening_date in the file)"}


def render(console: Any, record: Screening | FileError) -> None:
    """Print one patient's screening (or its error) on a rich console."""
    from rich.markup import escape
    from rich.table import Table

    if isinstance(record, FileError):
        for d in record.diagnostics:
            # Never wrap: the caret must stay under the column it points at.
            console.print(escape(d.render()), style="red", highlight=False, soft_wrap=True)
        return
    console.print(f"[bold]{escape(record.patient)}[/] ({escape(record.file)}) — screened as of "
                  f"{record.as_of}, from {AS_OF_SOURCE[record.as_of_source]}")
    for warning in record.warnings:
        console.print(escape(warning), style="yellow", highlight=False)
    for trial in record.trials:
        console.print()
        console.print(f"[{VERDICT_STYLE[trial.verdict]}]{trial.verdict.value.upper()}[/]  "
                      f"[bold]{trial.trial}[/] · {escape(trial.product)}")
        for caveat in trial.caveats:
            console.print(f"  [bold yellow]caveat:[/] {escape(caveat)}")
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False,
                      expand=False)
        table.add_column("", width=1)
        table.add_column("id", no_wrap=True)
        table.add_column("criterion")
        table.add_column("status", no_wrap=True)
        table.add_column("reason")
        for c in trial.criteria:
            glyph, colour = GLYPHS[c.status]
            label = c.label + (" (attested)" if c.attested else "")
            table.add_row(f"[{colour}]{glyph}[/]", c.id, escape(label),
                          f"[{colour}]{c.status.value}[/]",
                          escape(_parts_summary(c) if c.parts else c.reason))
            for p in c.parts:
                glyph, colour = GLYPHS[p.status]
                table.add_row(f"[{colour}]{glyph}[/]", f"  {p.id}", "",
                              f"[{colour}]{p.status.value}[/]", escape(p.reason))
        console.print(table)
        todo = todo_list(trial)
        for heading, items in todo.items():
            if items:
                console.print(f"  [bold]{heading}:[/]")
                for item in items:
                    console.print(f"    • {escape(item)}", highlight=False)


def _parts_summary(c: CriterionResult) -> str:
    """A criterion made of parts reads as a tally; each part's own row gives the reason."""
    tally: dict[str, int] = {}
    for p in c.parts:
        tally[p.status.value] = tally.get(p.status.value, 0) + 1
    rule = "all parts must hold" if c.combine == "all" else "one part suffices"
    return f"{rule}: " + ", ".join(f"{n} {s}" for s, n in tally.items())


def todo_list(trial: TrialResult) -> dict[str, list[str]]:
    """What the nurse should collect, and what the investigator should judge."""
    collect: dict[str, list[str]] = {}
    judge: list[str] = []
    for c in trial.criteria:
        if c.status is Status.UNKNOWN:
            for name in c.missing:
                collect.setdefault(name, []).append(c.id)
        if c.status in (Status.REVIEW, Status.UNKNOWN):
            judge.extend(f"{c.id}: {item}" for item in c.review)
    return {"data to collect": [f"{name} (for {', '.join(ids)})" for name, ids in collect.items()],
            "for the investigator": judge}
