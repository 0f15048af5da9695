"""Rule test cases as data: one YAML file per trial, each case a patient and expectations.

A case file (`<NCT id>.cases.yaml`) reads::

    trial: NCT06559644
    base: ../acceptance/patients/baseline.yaml   # a file, relative to this one, or a mapping
    cases:
      - name: creatinine-140-umol-passes
        patient: {labs: {creatinine: 140 umol/L}}   # overrides merged into the base
        expect: {I9.c: pass, I9: pass}
      - name: no-lvef-is-unknown
        patient: {lvef: null}                        # null removes a key from the base
        expect: {I7: unknown}
        verdict: incomplete
      - name: known-gap
        file: patients/odd.yaml                      # a whole patient file instead
        expect: {E1: fail}
        xfail: "conditions vocabulary cannot say this yet"
      - name: implausible-uln-is-shown
        patient: {labs: {total_bilirubin: {value: 1 mg/dL, uln: 3 mg/dL}}}
        warns: "ULN 3 mg/dL is implausible"          # a loading warning says this (or a list)
        expect: {I9.a: pass}
      - name: uln-typo-is-an-error
        patient: {labs: {ast: {value: 30 U/L, uln: 4000 U/L}}}
        rejected: "is not a possible result"         # the patient does not load, saying this

Overrides merge into the base recursively: mappings merge, anything else (lists included)
replaces, and `null` deletes. Keys are strict, so a typo fails with the case file's line.
The same cases run under pytest (the plugin in `pytest_plugin.py`) and `screener test`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from screener.core._errors import Diagnostic, ScreenerError, nearest
from screener.core._model import Patient, Status, TrialResult, Truth, Verdict, kleene_not, status_of
from screener.core._vocabulary import BUILTIN, Vocabulary
from screener.criteria._conditions import All, Any_, AtLeast, If, Node, Not, Review, Unrecorded
from screener.criteria._rules import Criterion, RuleSet
from screener.reading._document import Document, PathKey, load
from screener.reading._patient import parse_patient
from screener.screening._engine import screen

SUFFIX = ".cases.yaml"
_STATUSES = {s.value for s in Status}
_VERDICTS = {v.value for v in Verdict}


class CaseFileError(ScreenerError):
    """A case file that cannot be used; names the case file and line."""


@dataclass(frozen=True)
class Case:
    name: str
    patient: dict[str, Any]  # the merged patient record, before loading
    expect: dict[str, str]
    verdict: str | None
    xfail: str | None
    file: str
    line: int
    # Each key the case's overrides set, as the patient reader names it ("labs.creatinine",
    # "therapies[0].drug"), with its path in the case file: a typo is reported there.
    keys: dict[str, PathKey] = field(default_factory=dict, compare=False, repr=False)
    # The overrides' `null`s of keys the base lacks, likewise: a deletion deleting nothing.
    deletions: dict[str, PathKey] = field(default_factory=dict, compare=False, repr=False)
    # Text a warning of the patient's must hold, each; and, for a patient that must not
    # load at all (an impossible value), text its error must hold.
    warns: tuple[str, ...] = ()
    rejected: str | None = None


@dataclass(frozen=True)
class Suite:
    trial: str
    file: str
    cases: tuple[Case, ...]
    doc: Document | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Outcome:
    """What running a case gave: the trial result and the expectations it missed."""

    case: Case
    result: TrialResult | None
    actual: dict[str, str]
    mismatches: dict[str, tuple[str, str]] = field(default_factory=dict)
    error: str | None = None
    warnings: tuple[str, ...] = ()  # what loading the case's patient warned of

    @property
    def passed(self) -> bool:
        return self.error is None and not self.mismatches


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides into a copy of base: mappings merge, other values replace, None deletes."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _Reader:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.here = Path(doc.file).parent

    def fail(
        self, path: PathKey, message: str, hint: str | None = None, key: bool = False
    ) -> CaseFileError:
        return CaseFileError(self.doc.diagnostic(message, path, key=key, hint=hint))

    def strict(self, data: Any, path: PathKey, allowed: tuple[str, ...], what: str) -> dict:
        return self.doc.strict(data, path, allowed, what, CaseFileError)

    def patient_file(self, name: Any, path: PathKey) -> dict[str, Any]:
        if not isinstance(name, str):
            raise self.fail(path, "a patient file is named by a path relative to the case file")
        target = self.here / name
        try:
            data = load(target, str(target), CaseFileError).data
        except CaseFileError as exc:
            raise self.fail(
                path, f"cannot use patient file {name}: {exc.diagnostic.message}"
            ) from None
        if not isinstance(data, dict):
            raise self.fail(path, f"patient file {name} is not a mapping")
        return data

    def suite(self) -> Suite:
        data = self.strict(self.doc.data, (), ("trial", "base", "cases"), "a case file")
        trial = data.get("trial")
        if not isinstance(trial, str):
            raise self.fail(("trial",), "a case file names its trial: trial: NCT…")
        base: dict[str, Any] = {}
        if "base" in data:
            raw = data["base"]
            base = raw if isinstance(raw, dict) else self.patient_file(raw, ("base",))
        cases = data.get("cases")
        if not isinstance(cases, list) or not cases:
            raise self.fail(("cases",), "cases must be a non-empty list")
        read = [self.case(item, ("cases", i), base) for i, item in enumerate(cases)]
        names = [c.name for c in read]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise self.fail(("cases", i, "name"), f"duplicate case name {name!r}")
        return Suite(trial, self.doc.file, tuple(read), self.doc)

    def case(self, data: Any, path: PathKey, base: dict[str, Any]) -> Case:
        data = self.strict(
            data,
            path,
            ("name", "patient", "file", "expect", "verdict", "xfail", "warns", "rejected"),
            "a case",
        )
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or " " in name:
            raise self.fail(
                path + ("name",),
                "a case needs a name without spaces",
                "e.g. creatinine-145-umol-fails",
            )
        if "patient" in data and "file" in data:
            raise self.fail(path, "a case takes patient (overrides of base) or file, not both")
        keys: dict[str, PathKey] = {}
        deletions: dict[str, PathKey] = {}
        if "file" in data:
            patient = self.patient_file(data["file"], path + ("file",))
        else:
            overrides = data.get("patient", {})
            if not isinstance(overrides, dict):
                raise self.fail(path + ("patient",), "patient must be a mapping of overrides")
            patient = merge(base, overrides)
            keys = _key_paths(overrides, path + ("patient",))
            deletions = _idle_deletions(base, overrides, path + ("patient",))
        rejected = data.get("rejected")
        if rejected is not None and (not isinstance(rejected, str) or not rejected.strip()):
            raise self.fail(path + ("rejected",), "rejected takes text the error must hold")
        if rejected is not None and ({"expect", "verdict", "warns"} & set(data)):
            raise self.fail(
                path + ("rejected",),
                "a rejected patient is never screened: it takes no expect, verdict or warns",
            )
        warns = data.get("warns", [])
        warns = [warns] if isinstance(warns, str) else warns
        if not isinstance(warns, list) or not all(isinstance(w, str) and w.strip() for w in warns):
            raise self.fail(path + ("warns",), "warns takes text a warning must hold, or a list")
        expect = data.get("expect", {})
        if rejected is None and (
            not isinstance(expect, dict) or (not expect and "verdict" not in data)
        ):
            raise self.fail(
                path + ("expect",), "a case expects statuses of some criteria, or a verdict"
            )
        for cid, status in expect.items():
            if status not in _STATUSES:
                raise self.fail(
                    path + ("expect", cid),
                    f"{status!r} is not a status",
                    f"one of: {', '.join(sorted(_STATUSES))}",
                )
        verdict = data.get("verdict")
        if verdict is not None and verdict not in _VERDICTS:
            raise self.fail(
                path + ("verdict",),
                f"{verdict!r} is not a verdict",
                f"one of: {', '.join(sorted(_VERDICTS))}",
            )
        xfail = data.get("xfail")
        if xfail is not None and (not isinstance(xfail, str) or not xfail.strip()):
            raise self.fail(path + ("xfail",), "xfail takes the reason, as text")
        pos = self.doc.position(path)
        return Case(
            name,
            patient,
            {str(k): v for k, v in expect.items()},
            verdict,
            xfail,
            self.doc.file,
            pos.line if pos else 0,
            keys,
            deletions,
            tuple(warns),
            rejected,
        )


def _key_paths(overrides: dict[str, Any], at: PathKey, prefix: str = "") -> dict[str, PathKey]:
    """Dotted names (as the patient reader writes them) of every key the overrides set."""
    found: dict[str, PathKey] = {}
    for key, value in overrides.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        found[name] = at + (key,)
        if isinstance(value, dict):
            found.update(_key_paths(value, at + (key,), name))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    found.update(_key_paths(item, at + (key, i), f"{name}[{i}]"))
    return found


def _idle_deletions(
    base: dict[str, Any], overrides: dict[str, Any], at: PathKey, prefix: str = ""
) -> dict[str, PathKey]:
    """`null` overrides of keys the base does not have, by dotted name: a deletion that
    deletes nothing is a typo (`lvf: null` for `lvef`) unless the name is a real field the
    base happens to lack; typos() tells which."""
    found: dict[str, PathKey] = {}
    for key, value in overrides.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if value is None and key not in base:
            found[name] = at + (key,)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            found.update(_idle_deletions(base[key], value, at + (key,), name))
    return found


_UNKNOWN_KEY = re.compile(r"^unknown key (.+) \(ignored\)$")


def typos(suite: Suite, case: Case, patient: Patient) -> list[Diagnostic]:
    """Keys the case's overrides set that the patient format does not know, each positioned
    in the case file: a misspelt override would otherwise test a patient without it."""
    found = []
    vocabulary = patient.vocabulary or BUILTIN
    for name, where in case.deletions.items():
        if suite.doc is not None and vocabulary.resolve(name) is None:
            guess = nearest(name, vocabulary.field_names())
            message = f"case {case.name}: {name}: null deletes nothing, and is no field"
            hint = f"did you mean {guess!r}?" if guess else None
            found.append(suite.doc.diagnostic(message, where, key=True, hint=hint))
    for warning in patient.warnings:
        match = _UNKNOWN_KEY.match(warning.message)
        if match is None or suite.doc is None:
            continue
        at = case.keys.get(match.group(1))
        if at is not None:
            message = f"case {case.name}: unknown key {match.group(1)}"
            found.append(suite.doc.diagnostic(message, at, key=True, hint=warning.hint))
    return found


def load_suite(path: str | Path) -> Suite:
    """Read and check a case file; raises CaseFileError naming the case file and line."""
    doc = load(Path(path), str(path), CaseFileError)
    if doc.data is None:
        raise CaseFileError(Diagnostic("case file is empty", str(path)))
    return _Reader(doc).suite()


def statuses(result: TrialResult) -> dict[str, str]:
    """Criterion and part ids to statuses, in report order."""
    found: dict[str, str] = {}
    for c in result.criteria:
        found[c.id] = c.status.value
        for p in c.parts:
            found[p.id] = p.status.value
    return found


def load_case_patient(case: Case, vocabulary: Vocabulary | None = None) -> Patient:
    """The case's patient, read with the fields its rule set was checked against."""
    text = yaml.safe_dump(case.patient, allow_unicode=True, sort_keys=False)
    return parse_patient(text, f"{case.file}::{case.name}", vocabulary=vocabulary)


def run_case(
    case: Case, rule_set: RuleSet, suite: Suite | None = None, patient: Patient | None = None
) -> Outcome:
    """Screen a case's patient and compare with what it expects. With its `suite`, a key the
    overrides misspell is an error at its line in the case file, not a silently absent fact.
    `patient`: the case's patient, if already loaded."""
    if patient is None:
        try:
            patient = load_case_patient(case, rule_set.vocabulary)
        except ScreenerError as exc:
            if case.rejected is not None and case.rejected in str(exc):
                return Outcome(case, None, {})
            said = f", but not for {case.rejected!r}" if case.rejected is not None else ""
            return Outcome(case, None, {}, error=f"the case's patient does not load{said}:\n{exc}")
    if suite is not None and (found := typos(suite, case, patient)):
        return Outcome(case, None, {}, error="\n".join(d.render() for d in found))
    warnings = tuple(w.message for w in patient.warnings)
    if case.rejected is not None:
        return Outcome(
            case,
            None,
            {},
            error=f"the case's patient loads, but should be rejected for {case.rejected!r}",
            warnings=warnings,
        )
    unsaid = [w for w in case.warns if not any(w in m for m in warnings)]
    if unsaid:
        said = "\n".join(f"  {m}" for m in warnings) or "  (none)"
        return Outcome(
            case,
            None,
            {},
            error=f"no warning says {', '.join(map(repr, unsaid))}; the warnings:\n{said}",
            warnings=warnings,
        )
    result = screen(patient, rule_set)
    actual = statuses(result)
    mismatches = {}
    for cid, want in case.expect.items():
        got = actual.get(cid, "<no such criterion>")
        if got != want:
            mismatches[cid] = (want, got)
    if case.verdict is not None and result.verdict.value != case.verdict:
        mismatches["verdict"] = (case.verdict, result.verdict.value)
    return Outcome(case, result, actual, mismatches, warnings=warnings)


def explain(outcome: Outcome) -> str:
    """A failure as a rule author reads it: expected against actual, then YAML to paste."""
    case = outcome.case
    lines = [f"{case.file}:{case.line}: case {case.name}"]
    if outcome.error:
        return "\n".join(lines + [outcome.error])
    assert outcome.result is not None
    reasons = {c.id: c.reason for c in outcome.result.criteria}
    reasons.update({p.id: p.reason for c in outcome.result.criteria for p in c.parts})
    width = max(len("criterion"), *(len(k) for k in outcome.mismatches))
    lines.append(f"  {'criterion':<{width}}  expected  actual")
    for cid, (want, got) in outcome.mismatches.items():
        lines.append(f"  {cid:<{width}}  {want:<8}  {got}")
        if cid in reasons:
            lines.append(f"  {'':<{width}}  because: {reasons[cid]}")
    paste = {
        "expect": {k: outcome.actual[k] for k in case.expect if k in outcome.actual},
        "verdict": outcome.result.verdict.value,
    }
    if case.verdict is None:
        del paste["verdict"]
    if outcome.warnings:
        # What a warned-of patient gives is not yet what the case means to test.
        lines.append("the case's patient has warnings; fix them before taking its statuses:")
        lines.extend(f"  {w}" for w in outcome.warnings)
        return "\n".join(lines)
    lines.append("actual, ready to paste:")
    lines.extend(
        "  " + line
        for line in yaml.safe_dump(paste, sort_keys=False, allow_unicode=True).splitlines()
    )
    return "\n".join(lines)


def find_suites(paths: list[Path]) -> list[Path]:
    """Case files under the given files and directories, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob(f"*{SUFFIX}")))
        elif path.name.endswith(SUFFIX):
            found.append(path)
    return found


def computable(criterion: Criterion) -> bool:
    """A criterion with any leaf that reads the record (not only investigator judgment)."""
    roots = [p.check for p in criterion.parts] if criterion.check is None else [criterion.check]
    stack: list[Node] = list(roots)
    while stack:
        node = stack.pop()
        if not node.children() and not isinstance(node, Review):
            return True
        stack.extend(node.children())
    return False


_ANY_TRUTH: frozenset[Truth] = frozenset({True, False, None})


def truths(node: Node, attested: bool = False) -> frozenset[Truth]:
    """The values a node can take on some patient record.

    An over-approximation: a leaf that reads the record may be true, false or unknown, and
    children are taken as independent, so a value left out cannot happen, whatever the
    record; a kind of node not known here may take any value. A review leaf is unknown
    unless `attested`: an investigator's attestation may then settle it either way.
    """
    if isinstance(node, Review):
        return _ANY_TRUTH if attested else frozenset({None})
    if isinstance(node, Not):
        return frozenset(kleene_not(t) for t in truths(node.item, attested))
    if isinstance(node, All | Any_):
        sets = [truths(n, attested) for n in node.items]
        strong, weak = (False, True) if isinstance(node, All) else (True, False)
        found: set[Truth] = set()
        if any(strong in t for t in sets):
            found.add(strong)  # one child decides
        if all(weak in t for t in sets):
            found.add(weak)  # every child agrees
        if all(t - {strong} for t in sets) and any(None in t for t in sets):
            found.add(None)
        return frozenset(found)
    if isinstance(node, AtLeast):
        sets = [truths(n, attested) for n in node.items]
        found = set()
        if sum(True in t for t in sets) >= node.count:
            found.add(True)
        if sum(False in t for t in sets) > len(sets) - node.count:
            found.add(False)
        if any(None in t for t in sets):
            found.add(None)
        return frozenset(found)
    if isinstance(node, Unrecorded):
        return truths(node.item, attested) | {node.value}
    if isinstance(node, If):
        otherwise = (
            truths(node.otherwise, attested)
            if node.otherwise is not None
            else frozenset({node.inapplicable})
        )
        unsure = {None} if None in truths(node.condition, attested) else set()
        return frozenset(truths(node.then, attested) | otherwise | unsure)
    return _ANY_TRUTH


def reachable(criterion: Criterion, attested: bool = False) -> frozenset[str]:
    """The statuses ("pass", "fail") a criterion can reach: from the recorded facts alone,
    or also with an investigator's attestation (`attested`)."""
    if criterion.check is not None:
        root = criterion.check
    else:
        combined = All if criterion.combine == "all" else Any_
        root = combined(tuple(p.check for p in criterion.parts))
    values = truths(root, attested and criterion.judged)
    return frozenset(status_of(t, criterion.kind, ()).value for t in values if t is not None)


@dataclass(frozen=True)
class Coverage:
    """Which statuses the cases drove each criterion (and part) of one trial to."""

    trial: str
    seen: dict[str, set[str]]
    computable: dict[str, bool]
    # What the recorded facts alone can make of each criterion: "pass" and "fail", or less
    # for one that, by construction, only an attestation can fail (or pass).
    reachable: dict[str, frozenset[str]] = field(default_factory=dict)

    def gaps(self) -> dict[str, list[str]]:
        """Computable criteria lacking a passing or a failing case, of the statuses the
        recorded facts can give them."""
        found: dict[str, list[str]] = {}
        for cid, seen in self.seen.items():
            can = self.reachable.get(cid, frozenset({"pass", "fail"}))
            lacking: list[str] = [s for s in ("pass", "fail") if s in can and s not in seen]
            if self.computable[cid] and lacking:
                found[cid] = lacking
        return found


def coverage(rule_set: RuleSet, outcomes: list[Outcome]) -> Coverage:
    seen: dict[str, set[str]] = {}
    flags: dict[str, bool] = {}
    can: dict[str, frozenset[str]] = {}
    for c in rule_set.criteria:
        seen[c.id] = set()
        flags[c.id] = computable(c)
        can[c.id] = reachable(c)
    for outcome in outcomes:
        for cid, status in outcome.actual.items():
            if cid in seen:
                seen[cid].add(status)
    return Coverage(rule_set.trial, seen, flags, can)
