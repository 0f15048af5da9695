"""The screening log for people and scripts: what changed between runs, a patient's history.

Reads what screener/reports/_log.py returns (it holds the SQL) and renders it as rich tables, JSON
(keys sorted, like every JSON screener writes) or CSV (through report.csv_line, the one CSV
writer, so the same cells are neutralised for spreadsheets).

Everything a log holds came from an input (patient ids, file names, reasons, labels) or
from the log file itself, which anyone may have written: on a terminal each such text
goes through report.safe, as in every other report, so no escape sequence (colours, an
OSC-8 link) and no markup reaches the screen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from screener.core._model import Status
from screener.reports._report import csv_line, dumps, safe


def _short(digest: str | None) -> str:
    """A digest as people compare them: a file's `sha256:` and 12 hex digits; a rule
    digest, already 16 hex digits with no algorithm named, as it is."""
    if not digest:
        return "—"
    algorithm, colon, hexdigits = digest.partition(":")
    return f"{algorithm}:{hexdigits[:12]}" if colon else digest


def _run_line(data: dict[str, Any]) -> str:
    return (
        f"run {data['run']} ({data['started_at']}, screener {data['tool_version']}, "
        f"rules {_short(data['rules_digest'])}"
        + (f", as of {data['as_of']}" if data["as_of"] else "")
        + ")"
    )


def _moved(old: str | None, new: str | None) -> str:
    return f"{old or '—'} → {new or '—'}" if old != new else (new or "—")


# ------------------------------------------------------------------------------ changes

CHANGES_COLUMNS = [
    "patient",
    "file",
    "trial",
    "previous_run",
    "old_verdict",
    "new_verdict",
    "file_changed",
    "criterion",
    "parent",
    "label",
    "old_status",
    "new_status",
    "old_reason",
    "new_reason",
]


def changes_json(data: dict[str, Any]) -> str:
    return dumps(data) + "\n"


def _yes_no(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "no"


def changes_csv(data: dict[str, Any]) -> str:
    """One row per criterion (or part) that moved; a verdict that changed with no criterion
    moving is a row with an empty criterion. `previous_run` is the run of the screening
    the patient is compared with; `file_changed` is empty where a digest is unknown."""
    out = [csv_line(CHANGES_COLUMNS)]
    for change in data["changes"]:
        head = [
            change["patient"],
            change["file"],
            change["trial"],
            change["previous_run"],
            change["old_verdict"] or "",
            change["new_verdict"] or "",
            _yes_no(change["file_changed"]),
        ]
        for c in change["criteria"] or [None]:
            out.append(
                csv_line(
                    head
                    + (
                        [
                            c["criterion"],
                            c["parent"] or "",
                            c["label"] or "",
                            c["old_status"] or "",
                            c["new_status"] or "",
                            c["old_reason"] or "",
                            c["new_reason"] or "",
                        ]
                        if c
                        else [""] * 7
                    )
                )
            )
    return "".join(out)


LISTED = 20  # patient ids a list in the table shows before "and N more"


def _ids_line(ids: list[str]) -> str:
    shown = ", ".join(safe(i) for i in ids[:LISTED])
    more = len(ids) - LISTED
    return shown + (f" and {more} more (-f json lists them all)" if more > 0 else "")


def _patients(n: int) -> str:
    return f"{n} patient{'' if n == 1 else 's'}"


def render_changes(console: Any, data: dict[str, Any]) -> None:
    run, compared = data["run"], data["compared_with"]
    console.print(f"[bold]Changes in {safe(_run_line(run))}[/]")
    if not compared:
        console.print(
            "nothing to compare: "
            + (
                "the first run in the log"
                if run["run"] == 1 and data["against"] is None
                else "no patient of this run was screened before for its trials"
            )
            + f" ({_patients(len(data['added']))})"
        )
    elif data["against"] is not None:
        console.print("compared with each patient's screening in:")
    else:
        console.print("compared with each patient's latest earlier screening for the trial, in:")
    # What differs between the runs is said once, not as a change of every patient: a
    # trial only one of the two screenings screened is not compared at all.
    for other in compared:
        trials = other["trials"]
        console.print(
            f"  {safe(_run_line(other['run']))}: {_patients(other['patients'])}, "
            + ("every trial" if trials == run["trials"] else f"for {safe(', '.join(trials))}"),
            highlight=False,
        )
        for rules in other["rules_changed"]:
            console.print(
                f"    [bold yellow]the rules changed for {safe(rules['trial'])}:[/] "
                f"{safe(_short(rules['old_digest']))} → {safe(_short(rules['new_digest']))}",
                highlight=False,
            )
        if other["tool_changed"]:
            console.print(
                f"    [bold yellow]screener changed:[/] {safe(other['run']['tool_version'])} "
                f"→ {safe(run['tool_version'])}",
                highlight=False,
            )
    since = f"run {data['against']}" if data["against"] is not None else "any earlier run"
    if data["trials_new"]:
        console.print(
            f"[bold yellow]trials not screened in {since}, not compared:[/] "
            + safe(", ".join(data["trials_new"]))
        )
    if data["trials_dropped"]:
        before = f"run {data['against']}" if data["against"] is not None else "the run before"
        console.print(
            f"[bold yellow]trials screened in {before} and not in this run:[/] "
            + safe(", ".join(data["trials_dropped"]))
        )
    if compared and not data["changes"]:
        console.print("no verdict or criterion changed for any patient compared")
    several = len(compared) > 1
    # A list, not a table: reasons are long, and a table of them is unreadable at 80 columns.
    for change in data["changes"]:
        notes = [f"since run {change['previous_run']}"] if several else []
        if change["file_changed"]:
            notes.append("the patient file changed")
        console.print()
        console.print(
            f"[bold]{safe(change['patient'])}[/] · {safe(change['trial'])}: "
            f"{safe(_moved(change['old_verdict'], change['new_verdict']))}"
            + (f"  [dim]({'; '.join(notes)})[/]" if notes else ""),
            highlight=False,
        )
        # A criterion of parts gives all its parts' reasons in one: its parts that moved
        # say what changed, so the criterion itself shows only its status.
        explained = {c["parent"] for c in change["criteria"] if c["parent"]}
        for c in change["criteria"]:
            indent = "    " if c["parent"] else "  "
            console.print(
                f"{indent}[bold]{safe(c['criterion'])}[/] {safe(c['label'] or '')}: "
                f"{safe(_moved(c['old_status'], c['new_status']))}",
                highlight=False,
            )
            if c["criterion"] not in explained:
                console.print(f"{indent}    was: {safe(c['old_reason'] or '—')}", highlight=False)
                console.print(f"{indent}    now: {safe(c['new_reason'] or '—')}", highlight=False)
    if data["changes"]:
        console.print()
    if data["added"] and compared:
        what = (
            f"not screened in run {data['against']}"
            if data["against"] is not None
            else "screened for the first time"
        )
        console.print(f"[bold]{what}:[/] {_ids_line(data['added'])}", highlight=False)
    if data["removed"]:
        console.print(
            "[bold]not screened in this run:[/] " + _ids_line(data["removed"]), highlight=False
        )
    for error in data["errors"]:
        console.print(f"[red]could not be screened in this run:[/] {safe(error['file'])}")


# ------------------------------------------------------------------------------ history

HISTORY_COLUMNS = [
    "run",
    "started_at",
    "tool_version",
    "rules_digest",
    "file",
    "file_digest",
    "as_of",
    "trial",
    "product",
    "verdict",
    "failing",
    "unknown",
]


def _ids(trial: dict[str, Any], status: Status) -> str:
    return ";".join(
        cid
        for cid, c in trial["criteria"].items()
        if c["status"] == status.value and not c["parent"]
    )


def history_json(patient: str, screenings: list[dict[str, Any]]) -> str:
    return dumps({"patient": patient, "screenings": screenings}) + "\n"


def history_csv(screenings: list[dict[str, Any]]) -> str:
    out = [csv_line(HISTORY_COLUMNS)]
    for s in screenings:
        for trial, t in s["trials"].items():
            out.append(
                csv_line(
                    [
                        s["run"],
                        s["started_at"],
                        s["tool_version"],
                        s["rules_digest"],
                        s["file"],
                        s["file_digest"] or "",
                        s["patient_as_of"],
                        trial,
                        t["product"],
                        t["verdict"],
                        _ids(t, Status.FAIL),
                        _ids(t, Status.UNKNOWN),
                    ]
                )
            )
    return "".join(out)


def render_history(console: Any, patient: str, screenings: list[dict[str, Any]]) -> None:
    from screener.core._model import Verdict
    from screener.reports._report import VERDICT_STYLE

    console.print(f"[bold]{safe(patient)}[/]: screened {len(screenings)} times")
    previous: dict[str, Any] | None = None
    for s in screenings:
        changed = previous is not None and previous["file_digest"] != s["file_digest"]
        console.print()
        console.print(
            f"[bold]run {s['run']}[/] {safe(s['started_at'])}: {safe(s['file'])} "
            f"({safe(_short(s['file_digest']))}{', changed' if changed else ''}), "
            f"as of {safe(str(s['patient_as_of']))}, rules {safe(_short(s['rules_digest']))}, "
            f"screener {safe(s['tool_version'])}",
            highlight=False,
        )
        for trial, t in s["trials"].items():
            verdict = Verdict(t["verdict"])
            failing = _ids(t, Status.FAIL).replace(";", ", ")
            unknown = _ids(t, Status.UNKNOWN).replace(";", ", ")
            why = "; ".join(
                x
                for x in (
                    f"fails {failing}" if failing else "",
                    f"unknown {unknown}" if unknown else "",
                )
                if x
            )
            console.print(
                f"  {safe(trial)} {safe(t['product'])}: "
                f"[{VERDICT_STYLE[verdict]}]{verdict.value}[/]"
                + (f" [dim]({safe(why)})[/]" if why else ""),
                highlight=False,
            )
            # Why the patient was not enrolled: each failing criterion with its reason.
            for cid, c in t["criteria"].items():
                if c["status"] == Status.FAIL.value and not c["parent"]:
                    console.print(
                        f"      {safe(cid)} {safe(c['label'])}: {safe(c['reason'])}",
                        highlight=False,
                    )
        previous = s


# ------------------------------------------------------------------------ every screening

EVERY_COLUMNS = [
    "run",
    "started_at",
    "tool_version",
    "rules_digest",
    "patient",
    "file",
    "file_digest",
    "as_of",
    "trial",
    "product",
    "verdict",
    "failing",
    "reasons",
    "unknown",
    "review",
    "error",
]


def _why(items: list[dict[str, Any]]) -> str:
    """Criteria with their reasons, one a line (a reason may hold semicolons)."""
    return "\n".join(f"{c['criterion']} {c['label']}: {c['reason']}" for c in items)


def every_json(screenings: Iterator[dict[str, Any]]) -> Iterator[str]:
    """One JSON array, written as the screenings are read."""
    first = True
    for s in screenings:
        yield ("[\n" if first else ",\n") + _indented(dumps(s))
        first = False
    yield "[]\n" if first else "\n]\n"


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def every_csv(screenings: Iterator[dict[str, Any]]) -> Iterator[str]:
    """One row per screening and trial (an unreadable file: one row with its error).
    `failing`, `unknown`, `review`: criterion ids, `;`-separated; `reasons`: each failing
    criterion with its label and reason, one a line (why the patient was not enrolled)."""
    yield csv_line(EVERY_COLUMNS)
    for s in screenings:
        head = [
            s["run"],
            s["started_at"],
            s["tool_version"],
            s["rules_digest"],
            s["patient"] or "",
            s["file"],
            s["file_digest"] or "",
            s["as_of"] or "",
        ]
        if s["error"] is not None or not s["trials"]:
            yield csv_line(head + [""] * 7 + [s["error"] or ""])
            continue
        for t in s["trials"]:
            yield csv_line(
                head
                + [
                    t["trial"],
                    t["product"],
                    t["verdict"],
                    ";".join(c["criterion"] for c in t["fail"]),
                    _why(t["fail"]),
                    ";".join(c["criterion"] for c in t["unknown"]),
                    ";".join(c["criterion"] for c in t["review"]),
                    "",
                ]
            )


def render_every(console: Any, screenings: Iterator[dict[str, Any]]) -> None:
    """Every screening, run by run: per patient and trial the verdict and, when not
    eligible, why: each failing criterion with its reason, else what is unknown (with the
    fields to collect) or awaits review."""
    from screener.core._model import Verdict
    from screener.reports._report import VERDICT_STYLE

    run = None
    count = 0
    for s in screenings:
        count += 1
        if s["run"] != run:
            run = s["run"]
            console.print()
            console.print(
                f"[bold]run {run}[/] {safe(s['started_at'])}, screener "
                f"{safe(s['tool_version'])}, rules {safe(_short(s['rules_digest']))}",
                highlight=False,
            )
        if s["error"] is not None:
            console.print(
                f"  [red]could not be screened:[/] {safe(s['file'])}: {safe(s['error'])}",
                highlight=False,
            )
            continue
        console.print(
            f"  [bold]{safe(s['patient'] or '')}[/] {safe(s['file'])} "
            f"({safe(_short(s['file_digest']))}), as of {safe(s['as_of'] or '—')}",
            highlight=False,
        )
        for t in s["trials"]:
            try:
                style = VERDICT_STYLE[Verdict(t["verdict"])]
            except ValueError:  # a log someone edited: shown as written
                style = "bold"
            console.print(
                f"    {safe(t['trial'])} {safe(t['product'])}: [{style}]{safe(t['verdict'])}[/]",
                highlight=False,
            )
            # Why not enrolled: each failing criterion with its reason; else, in one line
            # each, what is unknown (and the fields to collect) and what awaits review.
            for c in t["fail"]:
                console.print(
                    f"      {safe(c['criterion'])} {safe(c['label'])}: {safe(c['reason'])}",
                    highlight=False,
                )
            if t["fail"]:
                continue
            if t["unknown"]:
                fields = sorted({f for c in t["unknown"] for f in c["missing"]})
                console.print(
                    "      unknown: "
                    + safe(", ".join(c["criterion"] for c in t["unknown"]))
                    + (f" (collect {safe(', '.join(fields))})" if fields else ""),
                    highlight=False,
                )
            if t["review"]:
                console.print(
                    "      review: " + safe(", ".join(c["criterion"] for c in t["review"])),
                    highlight=False,
                )
    if not count:
        console.print("the log holds no screenings")


# --------------------------------------------------------------------------------- runs

RUNS_COLUMNS = [
    "run",
    "started_at",
    "finished_at",
    "tool_version",
    "rules_digest",
    "as_of",
    "max_age",
    "trials",
    "files",
    "errors",
]


def runs_csv(runs: list[dict[str, Any]]) -> str:
    return "".join(
        [csv_line(RUNS_COLUMNS)]
        + [
            csv_line([r[k] if k != "trials" else ";".join(r[k]) for k in RUNS_COLUMNS])
            for r in runs
        ]
    )


def render_runs(console: Any, runs: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table

    # Fits 80 columns: the time to the minute, and "as of" only when some run gave one.
    with_as_of = any(r["as_of"] for r in runs)
    columns = ["run", "started (UTC)", "version", "rules"]
    columns += ["as of"] if with_as_of else []
    columns += ["trials", "files", "errors"]
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        title=f"{len(runs)} runs",
        title_justify="left",
    )
    for name in columns:
        table.add_column(name, no_wrap=name in ("started (UTC)", "rules"))
    for r in runs:
        # A rich Table reads its cells as markup: the log's texts are made safe first.
        started = r["started_at"].replace("+00:00", "").replace("T", " ")[:16]
        cells = [
            str(r["run"]),
            safe(started),
            safe(r["tool_version"]),
            safe(_short(r["rules_digest"])),
        ]
        cells += [safe(r["as_of"] or "")] if with_as_of else []
        cells += [str(len(r["trials"])), str(r["files"]), str(r["errors"])]
        table.add_row(*cells)
    console.print(table)
