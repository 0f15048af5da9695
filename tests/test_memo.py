"""Reusing results across patients never changes a result.

With a result cache (screening._reuse.ResultCache), the engine keeps each criterion's result
by the facts at its inputs, and the JSON Lines writer keeps each result's text. Both are
only safe if `inputs` names everything a criterion's outcome depends on, and if the reused
text is the text that would have been written. These tests check both over every patient
the project has: the examples, the acceptance patients, every rule case and the FHIR
bundles, then over generated ones; screening without a cache is what reuse must equal.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import screener
from screener.cli._batch import FileError, load_any, screen_file
from screener.criteria._catalog import load_rule_sets
from screener.criteria._conditions import Node
from screener.reports import _report as report
from screener.screening._engine import facts_of
from screener.screening._reuse import ResultCache, Tree
from screener.testing import patient_from, patients
from screener.testing._cases import load_case_patient, load_suite

ROOT = Path(__file__).parent.parent
RULE_SETS = tuple(load_rule_sets())


@cache
def corpus() -> tuple[screener.Patient, ...]:
    found = [
        load_any(str(p))
        for folder in (ROOT / "examples" / "patients", ROOT / "tests" / "acceptance" / "patients")
        for p in sorted(folder.glob("*.yaml"))
    ]
    for bundle in sorted((ROOT / "tests" / "data" / "fhir").glob("*.json")):
        try:
            found.append(load_any(str(bundle)))
        except screener.ScreenerError:  # a deceased patient is not screened
            continue
    for suite in sorted((ROOT / "tests" / "cases").glob("*.cases.yaml")):
        # (a case of a patient that must not load is no patient to screen)
        found += [
            load_case_patient(case) for case in load_suite(suite).cases if case.rejected is None
        ]
    return tuple(found)


@pytest.mark.slow
def test_the_corpus_is_the_whole_collection():
    assert len(corpus()) > 600  # 20 examples, 31 acceptance, bundles, 570 cases


def _reads(patient: screener.Patient, check: Node, attestation: bool | None) -> set[str]:
    scope = facts_of(patient).judged(attestation)
    scope.trace = set()
    check.evaluate(scope)
    return scope.trace


@pytest.mark.slow
def test_inputs_name_every_fact_a_criterion_or_part_reads():
    # The rule that makes ResultCache.result's key safe: a tree's inputs name every field it reads.
    cache = ResultCache()
    for patient in corpus():
        for rule_set in RULE_SETS:
            for c, tree in zip(rule_set.criteria, cache.trees(rule_set)):
                # A criterion made of parts is remembered whole and part by part.
                whole = [c.check] if c.check is not None else [p.check for p in c.parts]
                units: list[tuple[str, list[Node], Tree]] = [(c.id, whole, tree)]
                units += [(p.id, [p.check], t) for p, t in zip(c.parts, tree.parts)]
                for name, checks, kept in units:
                    inputs, dated = kept.inputs, kept.dated
                    for attestation in (None, True, False) if c.judged else (None,):
                        read = set().union(*(_reads(patient, n, attestation) for n in checks))
                        dates = {"(as of)"} & read
                        where = f"{rule_set.trial} {name}, {patient.file}"
                        assert read - dates <= set(inputs), where
                        assert dated or not dates, where


def _screen_all(
    patients: tuple[screener.Patient, ...], cache: ResultCache | None
) -> list[screener.Screening]:
    return [screener.screen_patient(p, RULE_SETS, cache=cache) for p in patients]


def _reused(screenings: list[screener.Screening]) -> int:
    """How many criterion results are the very object an earlier patient got."""
    seen: set[int] = set()
    reused = 0
    for s in screenings:
        for t in s.trials:
            for c in t.criteria:
                reused += id(c) in seen
                seen.add(id(c))
    return reused


@pytest.mark.slow
def test_reused_results_are_the_results_computed_afresh():
    patients_ = corpus()
    cache = ResultCache()
    remembered = _screen_all(patients_, cache)
    again = _screen_all(patients_, cache)  # now every criterion is answered from memory
    assert _reused(remembered) > len(patients_) * 10  # the memory is really used
    fresh = _screen_all(patients_, None)
    assert _reused(fresh) == 0
    for memo, second, new in zip(remembered, again, fresh):
        assert memo == new, memo.file
        assert second == new, memo.file
        plain = (report.dumps(report.to_json(new), compact=True) + "\n").encode()
        # The same bytes whether the writer reuses encoded results or encodes afresh.
        assert report.jsonl_line(memo, cache) == plain, memo.file
        assert report.jsonl_line(second, cache) == plain, memo.file
        assert report.jsonl_line(new) == plain, memo.file


def test_with_and_without_a_cache_every_example_gives_the_same_bytes():
    # The golden test's own outputs, screened by a batch (one cache for all the files)
    # and file by file without one.
    files = [
        str(p)
        for folder in (ROOT / "examples" / "patients", ROOT / "tests" / "acceptance" / "patients")
        for p in sorted(folder.glob("*.yaml"))
    ]
    cache = ResultCache()
    for _ in range(2):  # the second time round, every result is a reused one
        for name in files:
            reused = report.jsonl_line(screen_file(name, list(RULE_SETS), cache=cache), cache)
            afresh = report.jsonl_line(screen_file(name, list(RULE_SETS)))
            assert reused == afresh, name
            assert report.json_document(
                screen_file(name, list(RULE_SETS), cache=cache)
            ) == report.json_document(screen_file(name, list(RULE_SETS))), name


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(patients(), min_size=2, max_size=6))
def test_reuse_across_generated_patients_changes_nothing(records: list[dict]):
    loaded = tuple(patient_from(r) for r in records)
    assert _screen_all(loaded, ResultCache()) == _screen_all(loaded, None)


def test_the_same_facts_give_the_same_result_and_other_facts_another():
    base = {"id": "A", "screening_date": "2026-11-20", "ecog": 1, "weight": "70 kg"}
    cache = ResultCache()
    first, same, other = (
        screener.screen_patient(patient_from(r), RULE_SETS, cache=cache)
        for r in (base, {**base, "id": "B", "weight": "71 kg"}, {**base, "id": "C", "ecog": 3})
    )

    def ecog(s: screener.Screening) -> screener.CriterionResult:
        trial = next(t for t in s.trials if t.trial == "NCT06559644")
        return next(c for c in trial.criteria if "ECOG" in c.label)

    assert ecog(same) is ecog(first)  # weight is not an input of the ECOG criterion
    assert ecog(other).status.value == "fail" and ecog(first).status.value == "pass"


def test_jsonl_line_is_dumps_of_to_json_for_errors_and_imports(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: X\necog: [\n", encoding="utf-8")
    bundle = next((ROOT / "tests" / "data" / "fhir").glob("*.json"))
    for record in (
        screen_file(str(bad), list(RULE_SETS)),
        screen_file(str(bundle), list(RULE_SETS)),
    ):
        assert isinstance(record, FileError) or record.sources
        assert (
            report.jsonl_line(record)
            == (report.dumps(report.to_json(record), compact=True) + "\n").encode()
        )


@pytest.mark.slow
def test_the_memory_of_results_stays_bounded_however_many_patients():
    # Flat memory over a cohort of any size: every store has a fixed bound.
    cache = ResultCache()
    records = [
        {
            "id": f"P{i}",
            "screening_date": "2026-11-20",
            "birth_date": f"19{40 + i % 50}-01-{1 + i % 28:02d}",
            "weight": f"{50 + i} kg",
            "labs": {"creatinine": f"{0.5 + i / 100:.2f} mg/dL", "ast": f"{10 + i} U/L"},
        }
        for i in range(cache.size * 3)
    ]
    for record in records:
        screening = screener.screen_patient(patient_from(record), RULE_SETS, cache=cache)
        report.jsonl_line(screening, cache)
    # 384 weights and creatinines: unbounded, the clearance criteria would keep 384 each.
    results, encoded = cache.sizes()
    assert max(results) <= cache.size
    assert encoded <= cache.encoded_size


@pytest.mark.slow
@pytest.mark.parametrize("cached", [False, True], ids=["afresh", "with a cache"])
def test_screening_and_writing_a_patient_leaves_no_reference_cycles(cached: bool):
    # Worker processes collect garbage rarely (batch._init_worker) on the strength of this:
    # a cycle would keep each patient's objects alive until the next collection. A cache
    # holds a patient's scope and its results' JSON only weakly, so it makes none either.
    import gc

    files = [
        p
        for folder in (ROOT / "examples" / "patients", ROOT / "tests" / "acceptance" / "patients")
        for p in sorted(folder.glob("*.yaml"))
    ]
    cache = ResultCache() if cached else None
    for path in files:  # the cache's own stores are made and filled before counting
        report.jsonl_line(screen_file(str(path), list(RULE_SETS), cache=cache), cache)
    gc.collect()
    gc.disable()
    try:
        for path in files:
            report.jsonl_line(screen_file(str(path), list(RULE_SETS), cache=cache), cache)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_the_json_kept_for_a_result_goes_with_the_result():
    cache = ResultCache()
    screening = screener.screen_patient(patient_from({"id": "A", "ecog": 1}), RULE_SETS)
    report.jsonl_line(screening, cache)  # results of no store: only the records hold them
    _, encoded = cache.sizes()
    assert encoded == sum(len(t.criteria) for t in screening.trials)
    del screening
    assert cache.sizes()[1] == 0
