"""Cohort summaries: verdict counts, attrition per criterion, patients closest to eligible.

Built incrementally from screening records, keeping only a few ids per patient, so a
cohort of any size is summarised without holding its reports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .batch import FileError, Record
from .model import Status, Verdict
from .report import code_span, md as _md


@dataclass
class TrialTally:
    trial: str
    product: str
    verdicts: Counter[str] = field(default_factory=Counter)
    excluded_by: Counter[str] = field(default_factory=Counter)  # patients a criterion failed
    alone: Counter[str] = field(default_factory=Counter)  # ... where it was the only failure
    closest: list[tuple[str, str]] = field(default_factory=list)  # (patient, the one criterion)


@dataclass
class Cohort:
    """Accumulates what the cohort summary shows, one record at a time."""

    trials: dict[str, TrialTally] = field(default_factory=dict)
    rows: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # patient, verdicts
    errors: list[str] = field(default_factory=list)

    def add(self, record: Record) -> None:
        if isinstance(record, FileError):
            self.errors.append(record.file)
            return
        verdicts = {}
        for trial in record.trials:
            tally = self.trials.setdefault(trial.trial, TrialTally(trial.trial, trial.product))
            tally.verdicts[trial.verdict.value] += 1
            verdicts[trial.trial] = trial.verdict.value
            failing = [c.id for c in trial.criteria if c.status is Status.FAIL]
            tally.excluded_by.update(failing)
            if len(failing) == 1:
                tally.alone[failing[0]] += 1
                tally.closest.append((record.patient, failing[0]))
        self.rows.append((record.patient, verdicts))

    def order(self, trial: str) -> list[str]:
        """Criteria of a trial that excluded anyone, most first, then by id."""
        tally = self.trials[trial]
        return sorted(tally.excluded_by, key=lambda c: (-tally.excluded_by[c], _id_key(c)))


def _id_key(cid: str) -> tuple[int, int]:
    """Source order: inclusions, then exclusions, each by number."""
    return (0 if cid[0] == "I" else 1), int(cid[1:].split(".")[0])


VERDICTS = [v.value for v in Verdict]
SHORT = {"eligible": "eligible", "ineligible": "ineligible", "incomplete": "incomplete",
         "needs_review": "review"}


def render(console: object, cohort: Cohort) -> None:
    """The cohort summary as rich tables."""
    from rich import box
    from .report import safe as escape
    from rich.table import Table

    from .report import VERDICT_STYLE

    console.print()  # type: ignore[attr-defined]
    console.rule("[bold]Cohort summary")  # type: ignore[attr-defined]
    trials = sorted(cohort.trials)
    matrix = Table(title=f"{len(cohort.rows)} patients screened"
                   + (f", {len(cohort.errors)} files with errors" if cohort.errors else ""),
                   title_justify="left",
                   box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # The patient id is what a coordinator acts on: never truncate it; trial headers wrap.
    widest = max((len(patient) for patient, _ in cohort.rows), default=7)
    matrix.add_column("patient", no_wrap=True, min_width=min(max(widest, 7), 40))
    for trial in trials:
        matrix.add_column(f"{trial}\n{escape(cohort.trials[trial].product)}", overflow="fold",
                          min_width=len(trial))
    for patient, verdicts in cohort.rows:
        cells = []
        for trial in trials:
            verdict = verdicts.get(trial, "")
            style = VERDICT_STYLE.get(Verdict(verdict)) if verdict else ""
            cells.append(f"[{style}]{SHORT[verdict]}[/]" if verdict else "")
        matrix.add_row(escape(patient), *cells)
    matrix.add_section()
    for verdict in VERDICTS:
        matrix.add_row(f"[bold]{SHORT[verdict]}[/]",
                       *(str(cohort.trials[t].verdicts[verdict]) for t in trials))
    console.print(matrix)  # type: ignore[attr-defined]
    for trial in trials:
        tally = cohort.trials[trial]
        if not tally.excluded_by:
            continue
        attrition = Table(title=f"{trial} · {escape(tally.product)}: attrition",
                          title_justify="left")
        attrition.add_column("criterion")
        attrition.add_column("patients excluded", justify="right")
        attrition.add_column("excluded by it alone", justify="right")
        for cid in cohort.order(trial):
            attrition.add_row(cid, str(tally.excluded_by[cid]), str(tally.alone[cid]))
        console.print(attrition)  # type: ignore[attr-defined]
    closest = [(t, p, c) for t in trials for p, c in cohort.trials[t].closest]
    if closest:
        near = Table(title="Closest to eligible: blocked by exactly one criterion",
                     title_justify="left")
        near.add_column("patient")
        near.add_column("trial")
        near.add_column("blocked by")
        for trial, patient, cid in sorted(closest, key=lambda x: (x[1], x[0])):
            near.add_row(escape(patient), trial, cid)
        console.print(near)  # type: ignore[attr-defined]
    for name in cohort.errors:
        console.print(f"[red]could not screen[/] {escape(name)}")  # type: ignore[attr-defined]


def markdown(cohort: Cohort) -> str:
    """The cohort summary as Markdown tables."""
    trials = sorted(cohort.trials)
    out = ["## Cohort summary", "",
           f"{len(cohort.rows)} patients screened"
           + (f", {len(cohort.errors)} files with errors" if cohort.errors else "") + ".", "",
           "| patient | "
           + " | ".join(f"{t} ({_md(cohort.trials[t].product)})" for t in trials) + " |",
           "|---|" + "---|" * len(trials)]
    for patient, verdicts in cohort.rows:
        out.append(f"| {_md(patient)} | " + " | ".join(verdicts.get(t, "") for t in trials) + " |")
    for verdict in VERDICTS:
        out.append(f"| **{verdict}** | "
                   + " | ".join(str(cohort.trials[t].verdicts[verdict]) for t in trials) + " |")
    for trial in trials:
        tally = cohort.trials[trial]
        if not tally.excluded_by:
            continue
        out += ["", f"### {trial} · {_md(tally.product)}: attrition", "",
                "| criterion | patients excluded | excluded by it alone |", "|---|---:|---:|"]
        out += [f"| {c} | {tally.excluded_by[c]} | {tally.alone[c]} |"
                for c in cohort.order(trial)]
    closest = sorted(((p, t, c) for t in trials for p, c in cohort.trials[t].closest))
    if closest:
        out += ["", "### Closest to eligible", "", "| patient | trial | blocked by |",
                "|---|---|---|"]
        out += [f"| {_md(p)} | {t} | {c} |" for p, t, c in closest]
    if cohort.errors:
        out += ["", "### Files that could not be screened", ""]
        out += [f"- {code_span(name)}" for name in cohort.errors]
    return "\n".join(out) + "\n"
