"""Reusing results across patients: one cache, passed to the engine, that owns every store.

A cohort mostly repeats what it has seen: most criteria read a few facts that most patients
share (negative serology, signed consent, ECOG 1), so a criterion's result, and the JSON
written for it, can be reused for every patient whose facts at the criterion's inputs are
the same. The engine takes a `ResultCache` (`screen(..., cache=)`); without one nothing is
reused and every result is computed afresh, which is what reuse must never differ from
(tests/test_memo.py checks both ways over every patient the project has).

What is kept, all bounded, so memory stays flat however many patients a worker screens:

* for each criterion and part, its inputs (worked out from its tree once) and its results
  by key (`result`: the fingerprints of the facts at those inputs, the dates when it counts
  from them, the attestation and --max-age);
* the fingerprints of the current patient's facts, by field (a field is read by many
  criteria of many trials), for as long as that patient's facts are in use;
* the encoded JSON of results, by result (`encoded`): a result reused is encoded once, and
  its JSON goes when the result does.

Nothing a patient is made of is kept alive by the cache once the patient is screened and
written: what outlived it would be promoted by the garbage collector, whose collections
then cost a batch noticeably more.

One cache serves one process (a worker, or a single check), and is never sent between
processes. Threads may share it: a store emptied or filled by two at once loses entries at
worst, and a patient's fingerprints are never mixed with another's (`result`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from screener.core._memo import keep
from screener.core._model import LabValue
from screener.core._units import Measure
from screener.criteria._conditions import Node, _OverList
from screener.criteria._rules import Criterion, RuleSet
from screener.reading._facts import Fact, Missing, Scope

T = TypeVar("T")

# ------------------------------------------------------------------ what makes it safe


def inputs(nodes: Sequence[Node]) -> tuple[tuple[str, ...], bool]:
    """Everything a tree's outcome depends on: the patient's fields it reads, and whether
    it also reads the screening date (an anchor's date, such as apheresis_date, is one
    of the fields).

    The rule that makes reuse safe: a result is reused for any patient whose facts at these
    fields are the same (see `ResultCache.result`), so this must name every field the tree
    reads (tests/test_memo.py traces what each tree really reads, for every patient the
    project has). Nodes inside a list item read the item, which is part of the list's
    value; only their dates, and the patient fields they compare the item with
    (`outer_reads`), count.
    """
    fields: dict[str, None] = {}
    dated = False

    def visit(node: Node, top: bool) -> None:
        nonlocal dated
        dated = dated or node.dated
        if top:
            fields.update(dict.fromkeys(node.reads()))
        fields.update(dict.fromkeys(node.outer_reads()))
        for child in node.children():
            visit(child, top and not isinstance(node, _OverList))

    for node in nodes:
        visit(node, True)
    return tuple(fields), dated


def fingerprint(fact: Fact | Missing) -> Any:
    """A hashable stand-in for a fact, equal only for facts that read the same."""
    if isinstance(fact, Missing):
        return (Missing, fact.fields, fact.why)  # a tuple hashes and compares in C
    return (_freeze(fact.value), fact.note, fact.date)


def _freeze(value: Any) -> Any:
    kind = type(value)
    # Tagged with the type, since True == 1 == 1.0 but they read differently.
    if kind is Measure:
        return (kind, type(value.magnitude), value.magnitude, value.unit, value.written)
    if kind is LabValue:
        return (
            kind,
            _freeze(value.value),
            _freeze(value.uln),
            value.date,
            value.written,
            value.implausible,
            tuple(_freeze(x) for x in value.earlier),
        )
    if kind is dict:
        return (kind, tuple((k, _freeze(x)) for k, x in value.items()))
    if kind is list or kind is tuple:
        return (kind, tuple(_freeze(x) for x in value))
    hash(value)  # anything unhashable is a bug here, not a silent cache miss
    return (kind, value)


# ------------------------------------------------------------------------- the stores


class Tree:
    """What the cache keeps for one criterion or part: its inputs and its results."""

    __slots__ = ("inputs", "dated", "results", "parts")

    def __init__(self, checks: Sequence[Node], parts: tuple[Tree, ...] = ()) -> None:
        self.inputs, self.dated = inputs(checks)
        self.results: dict[Any, Any] = {}
        self.parts = parts  # a criterion made of parts keeps theirs too


def _criterion_tree(c: Criterion) -> Tree:
    parts = tuple(Tree([p.check]) for p in c.parts)
    return Tree([c.check] if c.check is not None else [p.check for p in c.parts], parts)


class _Encoded(weakref.ref[Any]):
    """A result's JSON, held by a weak reference to the result (ResultCache.encoded)."""

    __slots__ = ("key", "data")
    key: int
    data: bytes

    def __new__(cls, result: Any, drop: Callable[[_Encoded], None], data: bytes) -> _Encoded:
        self = super().__new__(cls, result, drop)
        self.key, self.data = id(result), data
        return self

    def __init__(self, result: Any, drop: Callable[[_Encoded], None], data: bytes) -> None:
        super().__init__(result, drop)  # type: ignore[call-arg]  # typeshed: ref.__init__ is object's


class ResultCache:
    """The results, fingerprints and encoded JSON reused across patients, all bounded.

    `size` results are kept per criterion or part: room for every whole percentage (marrow
    blasts). A store that is full is emptied rather than trimmed (core._memo.keep): what a
    cohort repeats is found again at once, and what it never repeats (a lab value) costs no
    bookkeeping per entry.
    """

    def __init__(self, size: int = 128, encoded: int = 65_536) -> None:
        self.size = size
        self.encoded_size = encoded
        # By rule set, the trees of its criteria in order. Keyed by identity (a rule set
        # is frozen data, and hashing its whole tree for each patient would cost more than
        # the lookup saves); the rule set is kept with them, so its id cannot be reused.
        # Bounded too: a Dask worker receives new rule-set objects with every run.
        self._trees: dict[int, tuple[RuleSet, tuple[Tree, ...]]] = {}
        # The fingerprints of one patient's facts by field, with the scope they came from:
        # one pair, replaced whole, so a thread of a threaded Dask worker screening
        # another patient meanwhile can only make this one's fingerprints be worked out
        # again, never lend it its own. The scope is held weakly and its fingerprints
        # dropped with it: a patient's objects that outlived its screening would be
        # promoted by the collector, and collections cost a batch a tenth more time.
        self._prints: tuple[weakref.ref[Scope] | None, dict[str, Any]] = (None, {})
        # Encoded results by identity, each with a weak reference to the result, which
        # takes the entry out when the result goes: so the JSON lives exactly as long as its
        # result (kept by a store, or by records still being written), an id is never
        # another result's, and no result is kept alive for its JSON.
        self._encoded: dict[int, _Encoded] = {}

    def trees(self, rule_set: RuleSet) -> tuple[Tree, ...]:
        """The trees of a rule set's criteria, in order (worked out on first use)."""
        found = self._trees.get(id(rule_set))
        if found is None or found[0] is not rule_set:
            trees = tuple(_criterion_tree(c) for c in rule_set.criteria)
            found = keep(self._trees, id(rule_set), (rule_set, trees), 64)
        return found[1]

    def result(
        self,
        tree: Tree,
        facts: Scope,
        attestation: bool | None,
        compute: Callable[..., T],
        *args: Any,
    ) -> T:
        """The tree's result for this patient: one computed before for the same key, else
        `compute(*args)`, kept.

        The key is what a tree depends on for a patient: the fingerprints of the facts at
        its inputs, the screening date if it counts from it, its
        attestation and --max-age. Equal keys give equal results as long as the tree's
        inputs name every field it reads (`inputs`). Built here, in the one call the
        engine makes per criterion, since a call more per criterion is a cost a cohort
        feels.
        """
        held, prints = self._prints
        if held is None or held() is not facts:
            prints = {}
            self._prints = (weakref.ref(facts, self._forget), prints)
        patient = facts.patient
        key: list[Any] = [attestation, facts.max_age]
        if tree.dated:  # an anchor's date is a field among the inputs (Window.outer_reads)
            key.append(patient.as_of)
        for name in tree.inputs:
            found = prints.get(name)
            if found is None:
                found = prints[name] = fingerprint(facts.fact(name))
            key.append(found)
        results, frozen = tree.results, tuple(key)
        kept = results.get(frozen)
        if kept is None:
            kept = keep(results, frozen, compute(*args), self.size)
        return kept

    def encoded(self, results: Iterable[T], encode: Callable[[T], bytes]) -> list[bytes]:
        """`encode(result)` for each result, kept with the result: a reused result is the
        very object an earlier patient got, so its JSON is encoded once. (A whole list per
        call: a call per result cost a tenth of writing a record.)"""
        store, size = self._encoded, self.encoded_size
        found = []
        for result in results:
            kept = store.get(id(result))
            if kept is None or kept() is not result:
                kept = keep(store, id(result), _Encoded(result, self._drop, encode(result)), size)
            found.append(kept.data)
        return found

    def _drop(self, gone: _Encoded) -> None:
        # Called as the result is freed, so before its id can be another object's.
        if self._encoded.get(gone.key) is gone:
            del self._encoded[gone.key]

    def _forget(self, gone: weakref.ref[Scope]) -> None:
        if self._prints[0] is gone:
            self._prints = (None, {})

    def sizes(self) -> tuple[list[int], int]:
        """How many results each criterion's and part's store holds, and how many encoded
        results are kept (for the test that they stay bounded)."""
        stores = []
        for _, trees in self._trees.values():
            for tree in trees:
                stores += [len(tree.results), *(len(p.results) for p in tree.parts)]
        return stores, len(self._encoded)
