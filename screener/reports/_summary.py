"""Cohort summaries: verdict counts, attrition per criterion, patients closest to eligible.

Built incrementally from screening records, keeping only a few ids per patient, so a
cohort of any size is summarised without holding its reports.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from screener.core._model import CriterionResult, FileError, Record, Screening, Status, Verdict
from screener.reports._report import _fence, code_span, safe
from screener.reports._report import md as _md

if TYPE_CHECKING:
    # rich is imported where a summary is printed, not when this module is.
    from rich.console import Console


@dataclass(frozen=True)
class Closest:
    """A patient blocked from a trial by exactly one criterion."""

    patient: str
    trial: str
    criterion: str
    value: str  # what blocked: the patient's value against the rule
    missing: int  # fields the trial still lacks for the patient


@dataclass
class TrialTally:
    trial: str
    product: str
    verdicts: Counter[str] = field(default_factory=Counter)
    excluded_by: Counter[str] = field(default_factory=Counter)  # patients a criterion failed
    alone: Counter[str] = field(default_factory=Counter)  # ... where it was the only failure
    closest: list[Closest] = field(default_factory=list)
    caveats: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)  # criterion id -> short label
    # How many patients failed exactly this set of criteria: enough to draw the attrition
    # funnel in any order, and a cohort has few distinct sets.
    failing_sets: Counter[tuple[str, ...]] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)  # field -> patients it is missing for

    def funnel(self, order: list[str]) -> list[tuple[str, int, int]]:
        """(criterion, patients it removes at its step, patients left after it), taking the
        criteria in `order`: a patient leaves at the first criterion they fail."""
        left = sum(self.verdicts.values())
        steps = []
        remaining = dict(self.failing_sets)
        for cid in order:
            gone = sum(n for failing, n in remaining.items() if cid in failing)
            remaining = {f: n for f, n in remaining.items() if cid not in f}
            left -= gone
            steps.append((cid, gone, left))
        return steps


# What the summary keeps of one patient, as JSON: small enough for a worker process to send
# instead of the whole record (a record is some 32 kB; this is a few hundred bytes), so a
# summary-only run of a cohort costs about what a JSON Lines run does.
#   {"patient", "file", "trials": [[trial, verdict, [failing ids], blocking, [missing fields]]],
#    "missing": [fields missing for any trial]}
#   {"error": file, "message": the first diagnostic}        for a file that could not be read


def entry(record: Record) -> bytes:
    """The summary's view of one record, as UTF-8 JSON (a `batch.Render`)."""
    return json.dumps(_entry(record), ensure_ascii=False, separators=(",", ":")).encode()


def _entry(record: Record) -> dict[str, Any]:
    if isinstance(record, FileError):
        return {"error": record.file, "message": record.diagnostics[0].render()}
    trials = []
    missing: set[str] = set()
    for t in record.trials:
        failing = [c for c in t.criteria if c.status is Status.FAIL]
        blocking = blocking_value(failing[0]) if len(failing) == 1 else None
        lacking = sorted(
            {name for c in t.criteria if c.status is Status.UNKNOWN for name in c.missing}
        )
        trials.append([t.trial, t.verdict.value, [c.id for c in failing], blocking, lacking])
        missing.update(lacking)
    return {
        "patient": record.patient,
        "file": record.file,
        "trials": trials,
        "missing": sorted(missing),
    }


def blocking_value(c: CriterionResult) -> str:
    """What made a failing criterion fail: its reason, which gives the patient's value
    against the rule ("creatinine 150 umol/L (= 1.7 mg/dL) > 1.6 mg/dL"). A criterion of
    parts fails through its failing parts, so those are named with their reasons."""
    if c.parts:
        failing = [p for p in c.parts if p.status is Status.FAIL]
        if failing:
            return "; ".join(f"{p.id}: {p.reason}" for p in failing)
    return c.reason


@dataclass
class Cohort:
    """Accumulates what the cohort summary shows, one record at a time."""

    trials: dict[str, TrialTally] = field(default_factory=dict)
    # patient, verdicts (trial -> verdict), the file it was read from
    rows: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)  # file -> why it was not screened
    files: dict[str, list[str]] = field(default_factory=dict)  # patient id -> its files
    missing: Counter[str] = field(default_factory=Counter)  # field -> patients lacking it

    def describe(self, rule_sets: Any) -> None:
        """Products, caveats and criterion labels from the rule sets, for summaries built
        from entries (which carry only ids)."""
        for r in rule_sets:
            tally = self.trials.setdefault(r.trial, TrialTally(r.trial, r.product))
            tally.caveats = tuple(r.caveats)
            tally.labels.update((c.id, c.label) for c in r.criteria)

    def add(self, record: Record) -> None:
        if isinstance(record, Screening):
            for t in record.trials:
                tally = self.trials.setdefault(t.trial, TrialTally(t.trial, t.product))
                tally.caveats = t.caveats
                tally.labels.update((c.id, c.label) for c in t.criteria if c.status is Status.FAIL)
        self.add_entry(_entry(record))

    def add_entry(self, data: bytes | dict[str, Any]) -> None:
        """Add what `entry` made of a record (in a worker process)."""
        item = json.loads(data) if isinstance(data, bytes) else data
        if "error" in item:
            self.errors.append(item["error"])
            self.messages[item["error"]] = item["message"]
            return
        patient = item["patient"]
        verdicts = {}
        for trial, verdict, failing, blocking, lacking in item["trials"]:
            tally = self.trials.get(trial)
            if tally is None:
                tally = self.trials[trial] = TrialTally(trial, "")
            tally.verdicts[verdict] += 1
            verdicts[trial] = verdict
            tally.excluded_by.update(failing)
            tally.failing_sets[tuple(failing)] += 1
            tally.missing.update(lacking)
            if len(failing) == 1:
                tally.alone[failing[0]] += 1
                tally.closest.append(
                    Closest(patient, trial, failing[0], blocking or "", len(lacking))
                )
        self.rows.append((patient, verdicts, item["file"]))
        self.files.setdefault(patient, []).append(item["file"])
        self.missing.update(item["missing"])

    def order(self, trial: str) -> list[str]:
        """Criteria of a trial that excluded anyone, most first, then by id."""
        tally = self.trials[trial]
        return sorted(tally.excluded_by, key=lambda c: (-tally.excluded_by[c], _id_key(c)))

    def sorted_rows(self) -> list[tuple[str, dict[str, str], str]]:
        """The matrix in patient-id order (file names say nothing a coordinator acts on),
        numbers by their value (PT-2 before PT-10); a stable sort keeps the files of a
        duplicated id in input order."""
        return sorted(self.rows, key=lambda row: natural(row[0]))

    def duplicates(self) -> dict[str, list[str]]:
        """Patient ids that appear in more than one file: a copy, or two patients given one
        id, and either way the counts are wrong until it is fixed."""
        return {
            p: files
            for p, files in sorted(self.files.items(), key=lambda kv: natural(kv[0]))
            if len(files) > 1
        }

    def closest(self, trials: list[str]) -> list[Closest]:
        """Everyone blocked by exactly one criterion, by patient id, then trial."""
        return sorted(
            (c for t in trials for c in self.trials[t].closest),
            key=lambda c: (natural(c.patient), c.trial),
        )

    def nearest(self, trials: list[str], n: int) -> list[Closest]:
        """The `n` patient-trial pairs a coordinator looks at first: patients eligible for
        no trial before those already eligible for one, then those with the fewest fields
        still missing for the trial, then by id; one per trial and criterion, so that a
        blocker shared by hundreds (an age limit) does not fill the list."""
        eligible = {p for p, verdicts, _ in self.rows if "eligible" in verdicts.values()}
        ranked = sorted(
            self.closest(trials), key=lambda c: (c.patient in eligible, c.missing)
        )  # stable: by id within a rank
        chosen: dict[tuple[str, str], Closest] = {}
        for c in ranked:
            chosen.setdefault((c.trial, c.criterion), c)
            if len(chosen) == n:
                break
        return list(chosen.values())

    def criterion(self, trial: str, cid: str) -> str:
        """A criterion as the coordinator reads it: its id and its label."""
        label = self.trials[trial].labels.get(cid)
        return f"{cid} {label}" if label else cid

    def screened(self) -> list[str]:
        """The trials in the summary: those some patient was screened against."""
        return sorted(t for t, tally in self.trials.items() if tally.verdicts)


_DIGITS = re.compile("([0-9]+)")


def natural(text: str) -> tuple[Any, ...]:
    """A sort key that reads numbers by value: PT-2 before PT-10, case aside. re.split with
    a group alternates text and digits, so every position compares like with like; the
    text itself breaks ties (PT-02 and PT-2)."""
    parts = _DIGITS.split(text)
    return (
        tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(parts)),
        text,
    )


def _id_key(cid: str) -> tuple[int, int]:
    """Source order: inclusions, then exclusions, each by number."""
    return (0 if cid[0] == "I" else 1), int(cid[1:].split(".")[0])


VERDICTS = [v.value for v in Verdict]
SHORT = {
    "eligible": "eligible",
    "ineligible": "ineligible",
    "incomplete": "incomplete",
    "needs_review": "review",
}
GLYPH = {"eligible": "✔", "ineligible": "✘", "incomplete": "?", "needs_review": "⚑"}


CAVEAT = "†"  # marks a trial whose caveats (a source cut off or copied) qualify its verdicts
WARNING = "‡"  # ... and one whose registration is withdrawn or whose criteria are unpublished,
# so that an eligible verdict may mean nothing: these must stand out from a mere source note
# A caveat is the rule file's own sentence; one that says the registration is withdrawn,
# terminated or suspended, or that the criteria are not published, is of the second kind.
_SERIOUS = re.compile(
    r"\b(withdrawn|terminated|suspended|not published|unpublished)\b", re.IGNORECASE
)


def serious(caveat: str) -> bool:
    """Whether a caveat says the trial may not be open or its criteria are not known."""
    return _SERIOUS.search(caveat) is not None


def mark(tally: TrialTally) -> str:
    """The trial's mark in the matrix: ‡, †, or none."""
    if any(serious(c) for c in tally.caveats):
        return WARNING
    return CAVEAT if tally.caveats else ""


def mark_of(caveat: str) -> str:
    return WARNING if serious(caveat) else CAVEAT


def _title(cohort: Cohort) -> str:
    files = len(cohort.rows)
    patients = len(cohort.files)
    return (
        f"{patients} patients screened"
        + (f" in {files} files" if files != patients else "")
        + (f", {len(cohort.errors)} files with errors" if cohort.errors else "")
    )


def _duplicate_lines(cohort: Cohort) -> list[str]:
    return [
        f"patient id {patient} appears in {len(files)} files: {', '.join(files)}"
        for patient, files in cohort.duplicates().items()
    ]


# What the summary shows by default, so that it is read on one screen: per trial the
# criteria that exclude the most, and the patients closest to eligible a coordinator looks
# at first. `full` (check --each) shows all of both, and every caveat; so do HTML and CSV.
TOP_CRITERIA = 2
TOP_CLOSEST = 5


def render(console: Console, cohort: Cohort, full: bool = False) -> None:
    """The cohort summary as rich text: in full, or condensed to be read on one screen."""
    from screener.reports._report import VERDICT_STYLE
    from screener.reports._report import safe as escape

    console.print()
    console.rule("[bold]Cohort summary")
    for line in _duplicate_lines(cohort):
        console.print(f"[bold yellow]warning:[/] {escape(line)}")
    trials = cohort.screened()
    # The matrix and the closest-to-eligible list grow with the cohort: they are laid out
    # here as one styled text, since rich's Table measures and wraps every cell (12 s for
    # 10,000 patients, against well under a second). The patient id is never truncated.
    header = [["", "patient"]] + [
        [trial, cohort.trials[trial].product + f" {mark(cohort.trials[trial])}".rstrip()]
        for trial in trials
    ]
    short = SHORT
    # Seven trials of words ("ineligible") do not fit 80 columns: a narrow terminal gets
    # one glyph per verdict and the trials by number, named in a key under the matrix.
    ids = max((len(p) for p, _, _ in cohort.rows), default=7)
    compact = ids + (len(_GAP) + 11) * len(trials) > console.width
    if compact:
        short = GLYPH
        header = [["patient"]] + [
            [trial.removeprefix("NCT0") + mark(cohort.trials[trial])] for trial in trials
        ]
    style = {v.value: VERDICT_STYLE[v] for v in Verdict}
    rows: list[list[tuple[str, str]] | None] = [
        [(patient, "")]
        + [(short.get(verdicts.get(t, ""), ""), style.get(verdicts.get(t, ""), "")) for t in trials]
        for patient, verdicts, _ in cohort.sorted_rows()
    ]
    rows.append(None)
    rows += [
        [(short[verdict], "bold")] + [(str(cohort.trials[t].verdicts[verdict]), "") for t in trials]
        for verdict in VERDICTS
    ]
    console.print(_title(cohort), style="italic")
    _grid(console, header, rows, wrap=len(trials) + 1)
    if compact:
        console.print(
            "  ".join(f"{GLYPH[v]} {v.replace('_', ' ')}" for v in VERDICTS),
            style="dim",
            highlight=False,
        )
        # the key, wrapped as words: one line per trial would be seven
        console.print(
            " · ".join(
                f"[bold]{trial.removeprefix('NCT0')}[/] {escape(cohort.trials[trial].product)}"
                for trial in trials
            ),
            highlight=False,
        )
    _render_caveats(console, cohort, trials, full)
    if full:
        _render_attrition_tables(console, cohort, trials)
    else:
        _render_attrition_grid(console, cohort, trials)
    closest = cohort.closest(trials) if full else cohort.nearest(trials, TOP_CLOSEST)
    if closest:
        console.print()
        total = sum(len(cohort.trials[t].closest) for t in trials)
        if full:
            console.print("Closest to eligible: blocked by exactly one criterion", style="italic")
        else:
            # The count per trial and criterion is the attrition's "alone" column; the
            # patients shown are those eligible for no trial first (Cohort.nearest).
            console.print(
                "Closest to eligible (one criterion blocks): "
                + (
                    f"{len(closest)} of {total}; all: --each, HTML"
                    if len(closest) < total
                    else f"all {total}"
                ),
                style="italic",
                highlight=False,
            )
        _grid(
            console,
            [["patient"], ["trial"], ["blocked by"], ["value"]],
            [
                [
                    (c.patient, ""),
                    (c.trial, ""),
                    (cohort.criterion(c.trial, c.criterion), ""),
                    (c.value, ""),
                ]
                for c in closest
            ],
            wrap=2,
            clip=None if full else 2,
        )
    for name in cohort.errors:
        console.print(f"[red]could not screen[/] {safe(name)}")
        message = cohort.messages.get(name)
        if message:
            console.print(
                safe(message),
                style="red",
                highlight=False,
                soft_wrap=True,
            )


def _render_caveats(console: Console, cohort: Cohort, trials: list[str], full: bool) -> None:
    """A withdrawn registration or unpublished criteria (‡) in full, always; the notes on a
    source (†) in full with --each, else one line naming their trials."""
    from screener.reports._report import safe as escape

    noted = []
    for trial in trials:
        for caveat in cohort.trials[trial].caveats:
            if full or serious(caveat):
                console.print(
                    f"[bold yellow]{mark_of(caveat)} {trial}:[/] {escape(caveat)}",
                    highlight=False,
                )
            elif trial not in noted:
                noted.append(trial)
    if noted:  # the trials are marked in the matrix: what the mark means is enough here
        console.print(
            f"[bold yellow]{CAVEAT}[/] a note on the source (cut off, or a copy): "
            "--each or `screener show TRIAL`",
            highlight=False,
        )


def _render_attrition_tables(console: Console, cohort: Cohort, trials: list[str]) -> None:
    """Per trial, every criterion that excluded anyone."""
    from rich import box
    from rich.table import Table

    from screener.reports._report import safe as escape

    for trial in trials:
        tally = cohort.trials[trial]
        if not tally.excluded_by:
            continue
        attrition = Table(
            title=f"{trial} · {escape(tally.product)}: attrition",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        attrition.add_column("criterion")
        attrition.add_column("patients excluded", justify="right")
        attrition.add_column("excluded by it alone", justify="right")
        for cid in cohort.order(trial):
            attrition.add_row(
                escape(cohort.criterion(trial, cid)),
                str(tally.excluded_by[cid]),
                str(tally.alone[cid]),
            )
        console.print(attrition)


def _render_attrition_grid(console: Console, cohort: Cohort, trials: list[str]) -> None:
    """One table for every trial: the criteria that exclude the most patients, with how
    many they exclude and how many they alone exclude (those closest to eligible)."""
    rows: list[list[tuple[str, str]] | None] = []
    left_out = 0
    for trial in trials:
        order = cohort.order(trial)
        tally = cohort.trials[trial]
        left_out += max(0, len(order) - TOP_CRITERIA)
        for i, cid in enumerate(order[:TOP_CRITERIA]):
            rows.append(
                [
                    (trial if i == 0 else "", "bold"),
                    (str(tally.excluded_by[cid]).rjust(8), ""),
                    (str(tally.alone[cid]).rjust(5), ""),
                    (cohort.criterion(trial, cid), ""),
                ]
            )
    if not rows:
        return
    console.print()
    console.print(
        f"Attrition, the {TOP_CRITERIA} criteria per trial excluding the most"
        + (f" ({left_out} more: --each, HTML)" if left_out else ""),
        style="italic",
        highlight=False,
    )
    _grid(console, [["trial"], ["excludes"], ["alone"], ["criterion"]], rows, wrap=3, clip=1)


_GAP = "  "


def _grid(
    console: Console,
    header: list[list[str]],
    rows: list[list[tuple[str, str]] | None],
    wrap: int,
    clip: int | None = None,
) -> None:
    """Print a table as one rich Text: `header` gives each column's heading lines, a row
    is (text, style) per cell, None a blank line. Columns from `wrap` on share what is left
    of the console's width and wrap their words (headings always fit their column), to at
    most `clip` lines, the last ending in "…"; those before it are as wide as their widest
    cell, never cut."""
    from rich.cells import cell_len
    from rich.text import Span, Text

    # A patient id is anyone's text: a line break or a terminal control in it would break
    # the rows, so it is shown as its Unicode control picture, one column wide.
    rows = [
        row if row is None else [(_visible(cell), cell_style) for cell, cell_style in row]
        for row in rows
    ]

    body = [row for row in rows if row is not None]
    # A column is as wide as its widest cell or its heading's lines (a long one wraps).
    widths = [
        max(
            [cell_len(row[i][0]) for row in body]
            + [min(cell_len(part), 16) for part in column]
            + [cell_len(word) for part in column for word in part.split()]
            + [1]
        )
        for i, column in enumerate(header)
    ]
    if wrap < len(header):
        room = max(
            console.width - sum(widths[:wrap]) - len(_GAP) * (len(header) - 1),
            20 * (len(header) - wrap),
        )
        natural = widths[wrap:]
        # Narrowest first: each takes what it needs up to a fair share of what is left.
        for k, i in enumerate(sorted(range(len(natural)), key=natural.__getitem__)):
            natural[i] = min(natural[i], room // (len(natural) - k))
            room -= natural[i]
        widths[wrap:] = natural

    # The text is joined once and styled by spans: appending 500,000 pieces to a rich Text
    # one by one cost more than the rest of the summary.
    parts: list[str] = []
    spans: list[Span] = []
    at = 0

    def put(piece: str, style: str = "") -> None:
        nonlocal at
        if style and piece:
            spans.append(Span(at, at + len(piece), style))
        parts.append(piece)
        at += len(piece)

    def line(cells: list[list[str]], styles: list[str]) -> None:
        for depth in range(max(len(c) for c in cells)):
            for i, (lines, cell_style) in enumerate(zip(cells, styles)):
                piece = lines[depth] if depth < len(lines) else ""
                if i:
                    put(_GAP)
                put(piece, cell_style)
                if i < len(cells) - 1:
                    put(" " * (widths[i] - cell_len(piece)))
            put("\n")

    head_lines = [
        [line_ for part in column for line_ in _wrapped(_visible(part), widths[i])]
        for i, column in enumerate(header)
    ]
    height = max(len(h) for h in head_lines)
    line([[""] * (height - len(h)) + h for h in head_lines], ["bold"] * len(header))
    put("─" * (sum(widths) + len(_GAP) * (len(widths) - 1)), "dim")
    put("\n")
    for row in rows:
        if row is None:
            put("\n")
            continue
        line(
            [
                _clipped(_wrapped(cell, widths[i]), widths[i], clip) if i >= wrap else [cell]
                for i, (cell, _) in enumerate(row)
            ],
            [cell_style for _, cell_style in row],
        )
    plain = "".join(parts)
    if console.color_system is None:
        # A file or a pipe: rich would emit no style, only copy the text, and copying
        # 40,000 lines through its renderer costs seconds.
        console.file.write(plain)
        return
    console.print(Text(plain, spans=spans), soft_wrap=True, end="")


def _visible(text: str) -> str:
    if text.isprintable():
        return text
    from screener.core._errors import _CONTROLS, _picture

    return _CONTROLS.sub(_picture, text.replace("\t", " "))


def _clipped(lines: list[str], width: int, clip: int | None) -> list[str]:
    if clip is None or len(lines) <= clip:
        return lines
    last = lines[clip - 1]
    return [*lines[: clip - 1], (last if len(last) < width else last[: width - 1]) + "…"]


@lru_cache(maxsize=4096)
def _wrapped(text: str, width: int) -> list[str]:
    """A cell's lines at a column's width (a cohort repeats labels and reasons)."""
    import textwrap

    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def markdown(cohort: Cohort, full: bool = False) -> str:
    """The cohort summary as Markdown tables: in full, or condensed as `render` is."""
    trials = cohort.screened()
    out = ["## Cohort summary", ""]
    warnings = [f"> warning: {_md(line)}" for line in _duplicate_lines(cohort)]
    # A blank line after the quote: else the next line is read as part of it.
    out += [*warnings, ""] if warnings else []
    out += [
        _title(cohort) + ".",
        "",
        "| patient | "
        + " | ".join(
            f"{t} ({_md(cohort.trials[t].product)})"
            + (f" {mark(cohort.trials[t])}" if mark(cohort.trials[t]) else "")
            for t in trials
        )
        + " |",
        "|---|" + "---|" * len(trials),
    ]
    for patient, verdicts, _ in cohort.sorted_rows():
        out.append(f"| {_md(patient)} | " + " | ".join(verdicts.get(t, "") for t in trials) + " |")
    for verdict in VERDICTS:
        out.append(
            f"| **{verdict}** | "
            + " | ".join(str(cohort.trials[t].verdicts[verdict]) for t in trials)
            + " |"
        )
    notes = [
        f"- {mark_of(c)} {t}: {_md(c)}"
        for t in trials
        for c in cohort.trials[t].caveats
        if full or serious(c)
    ]
    noted = [
        t for t in trials if not full and any(not serious(c) for c in cohort.trials[t].caveats)
    ]
    if noted:
        notes.append(
            f"- {CAVEAT} a note on the source (cut off, or a copy) qualifies "
            f"{', '.join(noted)}: `--each` or `screener show TRIAL`"
        )
    if notes:
        out += ["", *notes]
    if full:
        for trial in trials:
            tally = cohort.trials[trial]
            if not tally.excluded_by:
                continue
            out += [
                "",
                f"### {trial} · {_md(tally.product)}: attrition",
                "",
                "| criterion | patients excluded | excluded by it alone |",
                "|---|---:|---:|",
            ]
            out += [
                f"| {_md(cohort.criterion(trial, c))} | {tally.excluded_by[c]} | {tally.alone[c]} |"
                for c in cohort.order(trial)
            ]
    else:
        rows = [
            f"| {t} | {_md(cohort.criterion(t, c))} | {cohort.trials[t].excluded_by[c]} | "
            f"{cohort.trials[t].alone[c]} |"
            for t in trials
            for c in cohort.order(t)[:TOP_CRITERIA]
        ]
        left_out = sum(max(0, len(cohort.order(t)) - TOP_CRITERIA) for t in trials)
        if rows:
            out += [
                "",
                "### Attrition",
                "",
                f"Per trial the {TOP_CRITERIA} criteria that exclude the most patients"
                + (f" ({left_out} more: `--each`, `-f html`)" if left_out else "")
                + "; alone: the patients it is the only criterion to exclude.",
                "",
                "| trial | criterion | patients excluded | excluded by it alone |",
                "|---|---|---:|---:|",
                *rows,
            ]
    closest = cohort.closest(trials) if full else cohort.nearest(trials, TOP_CLOSEST)
    if closest:
        total = sum(len(cohort.trials[t].closest) for t in trials)
        out += ["", "### Closest to eligible", ""]
        if not full and len(closest) < total:
            out += [
                f"{total} patient–trial pairs are blocked by exactly one criterion; the first "
                f"{len(closest)}, patients eligible for no trial first (all: `--each`, "
                "`-f html`).",
                "",
            ]
        out += ["| patient | trial | blocked by | value |", "|---|---|---|---|"]
        out += [
            f"| {_md(c.patient)} | {c.trial} | {_md(cohort.criterion(c.trial, c.criterion))} | "
            f"{_md(c.value)} |"
            for c in closest
        ]
    if cohort.errors:
        out += ["", "### Files that could not be screened", ""]
        for name in cohort.errors:
            out.append(f"- {code_span(name)}")
            message = cohort.messages.get(name)
            if message:
                # A fence longer than any run of backticks in the message (a file name may
                # hold some), so the message cannot close it and turn into Markdown.
                lines = message.splitlines()
                fence = _fence(lines)
                out += ["", fence, *lines, fence, ""]
    return "\n".join(out) + "\n"
