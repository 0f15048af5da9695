"""Apply rule sets to a patient: criterion statuses, verdicts, attestations.

The engine attaches identity (trial and criterion ids), kind and status to what the
condition trees compute; the trees themselves only say true, false or unknown and why.
"""

from __future__ import annotations

from collections.abc import Iterable

from screener.core import _vocabulary as v
from screener.core._errors import nearest
from screener.core._model import (
    CriterionResult,
    Kind,
    Outcome,
    PartResult,
    Patient,
    Screening,
    TrialResult,
    kleene_and,
    kleene_or,
    status_of,
    verdict_of,
)
from screener.core._units import Measure
from screener.criteria._conditions import combine
from screener.criteria._rules import Criterion, Part, RuleSet, rules_digest
from screener.reading._facts import Scope
from screener.screening._reuse import ResultCache, Tree


def _attestation(patient: Patient, trial: str, criterion: Criterion) -> bool | None:
    """The value a review leaf takes once the investigator has decided the criterion
    (which must be a judged one)."""
    said = patient.data.get("attestations", {}).get(f"{trial}/{criterion.id}")
    if said is None:
        return None
    passes = said["result"] == "pass"
    # For an exclusion the tree says whether the excluding condition is present.
    return passes if criterion.kind is Kind.INCLUSION else not passes


def _part(part: Part, outcome: Outcome, kind: Kind) -> PartResult:
    return PartResult(
        part.id,
        status_of(outcome.value, kind, outcome.missing),
        outcome.reason,
        outcome.missing,
        outcome.review,
        outcome.evidence,
        part.label,
    )


def screen_criterion(
    patient: Patient,
    trial: str,
    criterion: Criterion,
    facts: Scope,
    cache: ResultCache | None = None,
    tree: Tree | None = None,
) -> CriterionResult:
    """One criterion's status and reasons; `facts` (see facts_of) is shared across criteria.

    With a `cache` (and the criterion's `tree` in it), a result computed before for the
    same facts at the criterion's inputs is reused (see screening._reuse).
    """
    attestation = _attestation(patient, trial, criterion) if criterion.judged else None
    if cache is None or tree is None:
        return _screen_criterion(criterion, facts, attestation, None, None)
    return cache.result(
        tree, facts, attestation, _screen_criterion, criterion, facts, attestation, cache, tree
    )


def _screen_criterion(
    criterion: Criterion,
    facts: Scope,
    attestation: bool | None,
    cache: ResultCache | None,
    tree: Tree | None,
) -> CriterionResult:
    scope = facts.judged(attestation)
    parts: tuple[PartResult, ...] = ()
    if criterion.check is None:
        # A part is kept by its own inputs, so an organ-function criterion whose bilirubin
        # is new still reuses its unchanged coagulation and oxygen parts.
        kind = criterion.kind
        if cache is None or tree is None:
            screened = [_fresh_part(p, kind, scope) for p in criterion.parts]
        else:
            screened = [
                cache.result(t, facts, attestation, _fresh_part, p, kind, scope)
                for p, t in zip(criterion.parts, tree.parts)
            ]
        outcomes = [outcome for outcome, _ in screened]
        parts = tuple(result for _, result in screened)
        outcome = combine(outcomes, kleene_and if criterion.combine == "all" else kleene_or)
    else:
        outcome = criterion.check.evaluate(scope)
    status = status_of(outcome.value, criterion.kind, outcome.missing)
    return CriterionResult(
        id=criterion.id,
        kind=criterion.kind,
        label=criterion.label,
        status=status,
        reason=outcome.reason,
        missing=outcome.missing,
        review=outcome.review,
        parts=parts,
        combine=criterion.combine,
        attested=attestation is not None,
        evidence=outcome.evidence,
        text=criterion.text,
        note=criterion.note,
    )


def _fresh_part(part: Part, kind: Kind, scope: Scope) -> tuple[Outcome, PartResult]:
    outcome = part.check.evaluate(scope)
    return outcome, _part(part, outcome, kind)


def facts_of(patient: Patient, max_age: Measure | None = None) -> Scope:
    """The patient's facts, looked up once and shared by every criterion screened."""
    # The fields of the vocabulary the patient was read with (a rules directory may extend it).
    root = (patient.vocabulary or v.BUILTIN).root
    return Scope(patient, patient.data, root, max_age=max_age)


def screen(
    patient: Patient,
    rule_set: RuleSet,
    max_age: Measure | None = None,
    facts: Scope | None = None,
    cache: ResultCache | None = None,
) -> TrialResult:
    """Screen one patient against one trial. Pure: no I/O. With a `cache`, results computed
    for earlier patients with the same facts are reused: the very results that would be
    computed (see screening._reuse); without one, every result is computed afresh.

    With `max_age`, a dated lab, marker or test older than that before the screening date
    counts as missing, so stale data never silently decides a screen.
    """
    base = facts if facts is not None else facts_of(patient, max_age)
    trial = rule_set.trial
    if cache is None:
        results = tuple(screen_criterion(patient, trial, c, base) for c in rule_set.criteria)
    else:
        results = tuple(
            screen_criterion(patient, trial, c, base, cache, t)
            for c, t in zip(rule_set.criteria, cache.trees(rule_set))
        )
    return TrialResult(
        trial=rule_set.trial,
        product=rule_set.product,
        title=rule_set.title,
        verdict=verdict_of(r.status for r in results),
        criteria=results,
        caveats=rule_set.caveats,
        digest=rule_set.digest,
    )


def attestation_warnings(
    patient: Patient, rule_sets: Iterable[RuleSet], known_trials: Iterable[str] = ()
) -> list[str]:
    """Attestations that name no known criterion, or one with nothing left to judge.

    `known_trials` are trials that exist but were not screened this time (--trial): their
    attestations are simply not used, not mistakes.
    """
    return [message for _, message in attestation_problems(patient, rule_sets, known_trials)]


def attestation_problems(
    patient: Patient, rule_sets: Iterable[RuleSet], known_trials: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """As attestation_warnings, each with the attestation key it is about (for a position)."""
    sets = {r.trial: r for r in rule_sets}
    elsewhere = set(known_trials) - set(sets)
    products = {v.fold(r.product): r.trial for r in sets.values()}
    warnings = []
    for key in patient.data.get("attestations", {}):
        # the last "/": a CTRI id holds slashes itself (CTRI/2020/03/023958/I1)
        trial, _, cid = key.rpartition("/") if "/" in key else (key, "", "")
        rule_set = sets.get(trial)
        if rule_set is None:
            if trial not in elsewhere:
                # CNCT19/I3 names the product: attestations are keyed by the NCT id.
                named = products.get(v.fold(trial))
                guess = f"{named}/{cid}" if named else nearest(trial, sorted(set(sets) | elsewhere))
                what = f"{trial!r} is a product, not a trial id" if named else f"no trial {trial!r}"
                warnings.append(
                    (
                        key,
                        f"attestation {key}: {what}"
                        + (f" (did you mean {guess}?)" if guess else ""),
                    )
                )
            continue
        criterion = rule_set.criterion(cid)
        if criterion is None:
            warnings.append((key, f"attestation {key}: {trial} has no criterion {cid!r}"))
        elif not criterion.judged:
            warnings.append(
                (key, f"attestation {key} ignored: {cid} is computed from the record, not judged")
            )
    return warnings


def screen_patient(
    patient: Patient,
    rule_sets: Iterable[RuleSet],
    max_age: Measure | None = None,
    known_trials: Iterable[str] = (),
    cache: ResultCache | None = None,
) -> Screening:
    """Screen one patient against several trials, in the order given; `cache` as for screen
    (a batch passes one per worker process)."""
    rule_sets = tuple(rule_sets)
    facts = facts_of(patient, max_age)
    warnings = [d.render("warning") for d in patient.warnings]
    warnings += attestation_warnings(patient, rule_sets, known_trials)
    return Screening(
        patient=patient.id,
        file=patient.file,
        as_of=patient.as_of.isoformat(),
        as_of_source=patient.as_of_source,
        trials=tuple(screen(patient, r, max_age, facts, cache) for r in rule_sets),
        warnings=tuple(warnings),
        sources=tuple(sorted(patient.sources.items())),
        rules_digest=rules_digest(tuple((r.trial, r.digest) for r in rule_sets)),
        attestations=tuple(
            (key, a["result"], a.get("by", ""), str(a.get("date", "")))
            for key, a in patient.data.get("attestations", {}).items()
        ),
    )
