"""The nurse's worklist: what to collect, in words for people, and what to ask the investigator.

A screening names the fields each unknown criterion lacks (`labs.ast`,
`diagnosis.markers.CD19.date`). A nurse does not collect fields: she orders a test, asks a
question or records an assessment, and one test answers several fields for several trials.
So fields are gathered into tasks ("CD19 and CD22 by flow cytometry …"), each listing the
criteria waiting for it. Trials the patient is already ineligible for add nothing (their
data would not change the answer); `everything=True` brings them back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from screener.core import _vocabulary as v
from screener.core._model import (
    CriterionResult,
    PartResult,
    Screening,
    Status,
    TrialResult,
    Verdict,
)

# The worklist's headings, in display order (vocabulary.yaml `groups`).
GROUPS = tuple(v.BUILTIN.groups.values())
_Task = v.Task  # what a nurse does to fill fields: vocabulary.yaml `tasks`, in display order
_ITEM = re.compile(r"^(\w+)\[(\d+)\]\.(.+)$")
_MARKER = re.compile(r"^diagnosis\.markers\.([^.]+)")


def label(field: str, vocabulary: v.Vocabulary = v.BUILTIN) -> str:
    """A field for people: `labs.ast.uln` -> "AST upper limit of normal",
    `therapies[1].date` -> "prior therapies #2: date"."""
    item = _ITEM.match(field)
    if item:
        spec = vocabulary.resolve(item.group(1))
        inner = (
            vocabulary.resolve(item.group(3), spec.item)
            if isinstance(spec, v.ListOf) and isinstance(spec.item, v.Record)
            else None
        )
        return (
            f"{spec.label if spec else item.group(1)} #{int(item.group(2)) + 1}: "
            f"{inner.label if inner else item.group(3)}"
        )
    if field.endswith(".uln"):
        return f"{label(field[:-4], vocabulary)} upper limit of normal"
    spec = vocabulary.resolve(field)
    return spec.label if spec is not None else field


@dataclass(frozen=True)
class Bullet:
    text: str  # "CD19 and CD22 by flow cytometry …"
    needed_by: tuple[tuple[str, str], ...]  # ("CNCT19", "I4"), ("HY004", "I4")
    # It asks for a list (conditions, medications): written [] when there are none, which
    # its group's heading says once for all its lists.
    lists: bool = False

    def for_text(self) -> str:
        """ "CNCT19 I4 I8 · HY004 I4": the criteria waiting for it, by trial (in the order
        the summary lists trials and their criteria, runs of three or more as a range)."""
        by_trial: dict[str, list[str]] = {}
        for trial, cid in self.needed_by:
            by_trial.setdefault(trial, []).append(cid)
        return " · ".join(f"{trial} {ranges(ids)}" for trial, ids in by_trial.items())


def ranges(ids: list[str]) -> str:
    """Criterion ids with runs of three or more written as ranges: "I1–I6 E1 E2 E4–E9"."""
    out: list[str] = []
    run: list[tuple[str, int, str]] = []

    def close() -> None:
        out.extend(r[2] for r in run) if len(run) < 3 else out.append(f"{run[0][2]}–{run[-1][2]}")
        run.clear()

    for cid in ids:
        m = re.fullmatch(r"([A-Z]+)(\d+)", cid)
        if m and run and run[-1][0] == m.group(1) and run[-1][1] + 1 == int(m.group(2)):
            run.append((m.group(1), int(m.group(2)), cid))
            continue
        close()
        run.append((m.group(1), int(m.group(2)), cid) if m else ("", -2, cid))
    close()
    return " ".join(out)


@dataclass(frozen=True)
class Worklist:
    collect: dict[str, list[Bullet]]  # group -> bullets
    judge: dict[str, list[str]]  # "NCT… · product" -> "I3: question", open now
    skipped: tuple[str, ...]  # trials left out because the patient is ineligible for them
    warnings: tuple[tuple[str, tuple[str, ...]], ...]  # warning, criteria it left unknown
    everywhere: bool = False  # every trial screened was skipped
    # Of the judged criteria, those still waiting for data too ("NCT…/I7"): the report lists
    # them by id only, so their open questions are asked in the worklist in full.
    pending: frozenset[str] = frozenset()

    def empty(self) -> bool:
        return not any(self.collect.values()) and not self.judge


def _name(t: TrialResult) -> str:
    return t.product or t.trial


def build(
    record: Screening,
    everything: bool = False,
    asks: dict[tuple[str, str], dict[str, tuple[str, ...]]] | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Worklist:
    """The worklist of one screening.

    `asks` maps (trial, criterion) to the item types its list conditions look for
    (rules.RuleSet.asks), so "conditions" becomes "ask about GVHD, autoimmune disease …".
    Fields are put into the tasks of `vocabulary` (the built-in one by default).
    """
    vocab = v.chosen(vocabulary)
    fields: dict[str, dict[tuple[str, str], None]] = {}  # field -> criteria needing it
    wanted: dict[str, set[str]] = {}  # list field -> types asked about
    judge: dict[str, list[str]] = {}
    pending: set[str] = set()
    skipped = []
    unknown: list[tuple[tuple[str, str], CriterionResult]] = []
    for t in record.trials:
        if t.verdict is Verdict.INELIGIBLE and not everything:
            skipped.append(_name(t))  # the summary above pairs it with its id
            continue
        for c in t.criteria:
            who = (_name(t), c.id)
            if c.status is Status.UNKNOWN:
                unknown.append((who, c))
                for field in c.missing:
                    if _uncollectable(field, vocab):
                        continue
                    fields.setdefault(field, {})[who] = None
                    for list_field, types in (asks or {}).get((t.trial, c.id), {}).items():
                        if field == list_field:
                            wanted.setdefault(field, set()).update(types)
            questions = open_questions(c)
            if questions:  # a trial with nothing to judge gets no empty heading
                judge.setdefault(f"{t.trial} · {_name(t)}", []).extend(
                    f"{c.id}: {item}" for item in questions
                )
                if c.status is Status.UNKNOWN:
                    pending.add(f"{t.trial}/{c.id}")
    collect: dict[str, list[Bullet]] = {g: [] for g in GROUPS}
    by_task: dict[_Task, dict[str, list[tuple[str, str]]]] = {}
    for field, asking in fields.items():
        by_task.setdefault(vocab.task(field), {})[field] = list(asking)
    # The criteria waiting for a task, in the order of the trials and their criteria.
    order = {
        (_name(t), c.id): i
        for i, (t, c) in enumerate((t, c) for t in record.trials for c in t.criteria)
    }
    for task in (t for t in vocab.tasks if t in by_task):
        members = by_task[task]
        needed = tuple(
            sorted(
                dict.fromkeys(w for ws in members.values() for w in ws),
                key=lambda w: order.get(w, len(order)),
            )
        )
        if task.whole:
            markers = sorted({m.group(1) for f in members if (m := _MARKER.match(f))})
            text = task.title.format(markers=" and ".join(markers))
        elif len(members) == 1 and isinstance(vocab.resolve(next(iter(members))), v.ListOf):
            field = next(iter(members))  # a whole list, such as conditions: says its name
            text = _described(field, wanted.get(field), vocab)
        else:
            text = f"{task.title}: " + ", ".join(
                dict.fromkeys(_described(f, wanted.get(f), vocab) for f in members)
            )
        lists = any(isinstance(vocab.resolve(f), v.ListOf) for f in members)
        collect[task.group].append(Bullet(text, needed, lists))
    return Worklist(
        collect,
        judge,
        tuple(skipped),
        tuple((w, _left_unknown(w, unknown)) for w in record.warnings),
        everywhere=len(skipped) == len(record.trials) > 1,
        pending=frozenset(pending),
    )


def open_questions(c: CriterionResult | PartResult) -> tuple[str, ...]:
    """The judgments an investigator can make now: those of a criterion, or of a part,
    that awaits review and nothing else.

    A judgment of a criterion or part that still waits for data may hang on that data
    ("the positive syphilis serology is a current infection", with no serology recorded),
    so it is not asked until the data is in: the worklist asks for the data instead. A
    part to judge beside a part that lacks a lab (marrow function beside SpO2) is asked
    now, not on the next run."""
    if c.status is Status.REVIEW:
        return c.review
    if c.status is not Status.UNKNOWN or isinstance(c, PartResult):
        return ()
    live = {item for p in c.parts if p.status is Status.REVIEW for item in p.review}
    return tuple(item for item in c.review if item in live)


def waiting_questions(c: CriterionResult | PartResult) -> tuple[str, ...]:
    """The judgments of a criterion (or part) that wait for its data (see open_questions)."""
    if c.status is not Status.UNKNOWN:
        return ()
    asked = set(open_questions(c))
    return tuple(item for item in c.review if item not in asked)


def reason(result: CriterionResult | PartResult) -> str:
    """A result's reason for people: a judgment that waits for data is said to wait
    ("HIV not recorded …; once known, for the investigator: …"), not asked."""
    text = result.reason
    for item in waiting_questions(result):
        text = text.replace(f"{_ASKED}{item}", f"once known, for the investigator: {item}")
    return text


_ASKED = "investigator to judge: "  # how a review leaf's reason opens (criteria._conditions)


def _uncollectable(field: str, vocabulary: v.Vocabulary) -> bool:
    """A derived value (or its date) that no file can hold: named as missing when its
    formula does not apply (an adult's equation for a child), it is nothing to collect."""
    base = field.removesuffix(".date")
    return base in vocabulary.derivations and base not in vocabulary.entries


def _described(field: str, types: set[str] | None, vocabulary: v.Vocabulary) -> str:
    if isinstance(vocabulary.resolve(field), v.ListOf):
        asked = (
            f"ask about {', '.join(sorted(t.replace('_', ' ') for t in types))}"
            if types
            else "the list"
        )
        return f"{label(field, vocabulary)}: {asked}"
    return label(field, vocabulary)


EMPTY_LIST = "[] for a list with none"  # what a heading over list bullets adds


# What a warning is about (the first line of a rendered diagnostic: "file:3:1: warning:
# unknown key labs.asst (ignored)", "…: warning: diagnosis.markers.CD2: …") and the name
# its hint offers instead ("hint: did you mean 'ast'?").
_SUBJECT = re.compile(r": warning: (?:unknown key (\S+) \(ignored\)|([\w.\[\]]+): )")
_OFFERED = re.compile(r"did you mean '([\w.\[\]]+)'")


def meant(warning: str) -> tuple[str, ...]:
    """The fields a warning's did-you-mean points at, as paths: a hint names a key beside
    the misspelt one, so `labs.asst` with "did you mean 'ast'?" means `labs.ast`."""
    head = warning.split("\n", 1)[0]
    subject = _SUBJECT.search(head)
    path = (subject.group(1) or subject.group(2)) if subject else ""
    parent = path.rsplit(".", 1)[0] + "." if "." in path else ""
    return tuple(dict.fromkeys(parent + name for name in _OFFERED.findall(warning)))


def _left_unknown(
    warning: str, unknown: Iterable[tuple[tuple[str, str], CriterionResult]]
) -> tuple[str, ...]:
    """The criteria a warning left unknown: those lacking the field its hint names
    ("unknown key labs.asst … did you mean 'ast'?": those lacking labs.ast)."""
    names = meant(warning)
    if not names:
        return ()
    return tuple(
        dict.fromkeys(
            " ".join(who)
            for who, c in unknown
            for field in c.missing
            if any(field == n or field.startswith((n + ".", n + "[")) for n in names)
        )
    )
