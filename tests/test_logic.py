"""Three-valued (Kleene) logic and the mapping from truth to statuses and verdicts."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from screener.core._model import (
    Kind,
    Status,
    Verdict,
    at_least,
    kleene_and,
    kleene_not,
    kleene_or,
    status_of,
    verdict_of,
)

T, F, U = True, False, None
TRUTHS = (T, F, U)
truths = st.sampled_from(TRUTHS)
truth_lists = st.lists(truths, max_size=8)

# Kleene's strong three-valued tables, written out independently of the implementation.
AND = {
    (T, T): T,
    (T, F): F,
    (T, U): U,
    (F, T): F,
    (F, F): F,
    (F, U): F,
    (U, T): U,
    (U, F): F,
    (U, U): U,
}
OR = {
    (T, T): T,
    (T, F): T,
    (T, U): T,
    (F, T): T,
    (F, F): F,
    (F, U): U,
    (U, T): T,
    (U, F): U,
    (U, U): U,
}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(TRUTHS, repeat=2)))
def test_and_truth_table(a, b):
    assert kleene_and([a, b]) is AND[a, b]


@pytest.mark.parametrize(("a", "b"), list(itertools.product(TRUTHS, repeat=2)))
def test_or_truth_table(a, b):
    assert kleene_or([a, b]) is OR[a, b]


@pytest.mark.parametrize(("a", "expected"), [(T, F), (F, T), (U, U)])
def test_not_truth_table(a, expected):
    assert kleene_not(a) is expected


def test_empty_and_is_true_and_empty_or_is_false():
    assert kleene_and([]) is True
    assert kleene_or([]) is False


def test_and_or_accept_generators():
    assert kleene_and(v for v in [T, T]) is True
    assert kleene_or(v for v in [F, U]) is None


def test_a_false_part_decides_an_all_despite_unknowns():
    assert kleene_and([U, U, F, U]) is False


def test_a_true_part_decides_an_any_despite_unknowns():
    assert kleene_or([U, F, T, U]) is True


def test_unknown_propagates_while_it_could_change_the_answer():
    assert kleene_and([T, U, T]) is None
    assert kleene_or([F, U, F]) is None
    assert kleene_not(kleene_and([T, U])) is None


@given(truth_lists)
def test_de_morgan_for_and(values):
    assert kleene_not(kleene_and(values)) is kleene_or([kleene_not(v) for v in values])


@given(truth_lists)
def test_de_morgan_for_or(values):
    assert kleene_not(kleene_or(values)) is kleene_and([kleene_not(v) for v in values])


@given(truth_lists)
def test_and_agrees_with_pairwise_folding(values):
    folded = True
    for v in values:
        folded = AND[folded, v]
    assert kleene_and(values) is folded


@given(truth_lists)
def test_or_agrees_with_pairwise_folding(values):
    folded = False
    for v in values:
        folded = OR[folded, v]
    assert kleene_or(values) is folded


@given(truth_lists)
def test_true_is_the_identity_of_and_and_false_of_or(values):
    assert kleene_and(values + [T]) is kleene_and(values)
    assert kleene_or(values + [F]) is kleene_or(values)


@given(truth_lists)
def test_and_or_ignore_order(values):
    assert kleene_and(values) is kleene_and(list(reversed(values)))
    assert kleene_or(values) is kleene_or(list(reversed(values)))


@given(truth_lists)
def test_resolving_unknowns_never_contradicts_a_definite_answer(values):
    """If the answer is already certain, filling in the unknowns cannot change it."""
    unknowns = [i for i, v in enumerate(values) if v is None]
    for fill in itertools.product((T, F), repeat=len(unknowns)):
        filled = list(values)
        for i, value in zip(unknowns, fill):
            filled[i] = value
        for rule in (kleene_and, kleene_or):
            if rule(values) is not None:
                assert rule(filled) is rule(values)


# ------------------------------------------------------------------------------ at_least


@pytest.mark.parametrize(
    ("n", "values", "expected"),
    [
        (1, [T, F], T),
        (2, [T, F, T], T),
        (2, [T, F, F], F),
        (2, [T, U, F], U),
        (2, [T, U, U], U),
        (1, [U, U], U),
        (3, [T, T], F),
        (1, [], F),
        (0, [], T),
    ],
)
def test_at_least(n, values, expected):
    assert at_least(n, values) is expected


@given(truth_lists)
def test_at_least_one_is_or_and_at_least_all_is_and(values):
    assert at_least(1, values) is kleene_or(values)
    if values:
        assert at_least(len(values), values) is kleene_and(values)


def test_at_least_accepts_a_generator():
    assert at_least(2, (v for v in [T, U, T])) is True


# ----------------------------------------------------------------------- status, verdict


@pytest.mark.parametrize(
    ("value", "kind", "missing", "expected"),
    [
        (T, Kind.INCLUSION, (), Status.PASS),
        (F, Kind.INCLUSION, (), Status.FAIL),
        (T, Kind.EXCLUSION, (), Status.FAIL),  # the excluding condition holds: blocks
        (F, Kind.EXCLUSION, (), Status.PASS),  # the excluding condition is absent
        (U, Kind.INCLUSION, ("lvef",), Status.UNKNOWN),
        (U, Kind.EXCLUSION, ("lvef",), Status.UNKNOWN),
        (U, Kind.INCLUSION, (), Status.REVIEW),  # unknown with nothing to collect: judgment
        (U, Kind.EXCLUSION, (), Status.REVIEW),
    ],
)
def test_status_of(value, kind, missing, expected):
    assert status_of(value, kind, missing) is expected


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], Verdict.ELIGIBLE),
        ([Status.PASS, Status.PASS], Verdict.ELIGIBLE),
        ([Status.PASS, Status.REVIEW], Verdict.NEEDS_REVIEW),
        ([Status.REVIEW, Status.UNKNOWN], Verdict.INCOMPLETE),
        ([Status.UNKNOWN, Status.REVIEW, Status.FAIL], Verdict.INELIGIBLE),
        ([Status.FAIL, Status.PASS], Verdict.INELIGIBLE),
    ],
)
def test_verdict_of(statuses, expected):
    assert verdict_of(statuses) is expected


SEVERITY = {Status.FAIL: 0, Status.UNKNOWN: 1, Status.REVIEW: 2, Status.PASS: 3}
VERDICT_FOR = {
    Status.FAIL: Verdict.INELIGIBLE,
    Status.UNKNOWN: Verdict.INCOMPLETE,
    Status.REVIEW: Verdict.NEEDS_REVIEW,
    Status.PASS: Verdict.ELIGIBLE,
}


@given(st.lists(st.sampled_from(list(Status)), min_size=1, max_size=10))
def test_verdict_follows_the_worst_status(statuses):
    worst = min(statuses, key=SEVERITY.__getitem__)
    assert verdict_of(statuses) is VERDICT_FOR[worst]
    assert verdict_of(iter(statuses)) is VERDICT_FOR[worst]


def test_verdict_values_are_the_contract_words():
    assert [v.value for v in Verdict] == ["ineligible", "incomplete", "needs_review", "eligible"]
    assert {s.value for s in Status} == {"pass", "fail", "unknown", "review"}
