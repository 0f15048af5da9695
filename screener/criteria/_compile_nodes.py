"""Rule compiler, middle layer: the node kinds that combine conditions or look into lists.

`all`, `any`, `not`, `at_least`, `if` and `review` combine conditions; `exists`, `every` and
`count` apply them to the items of a list (over_list is what the three share). `node` turns
any condition into its node, by the kind its keys name, a field condition (compiled by the
layer below, criteria._compile_fields) included. The layer keeps what a criterion's nodes
need to know of it: its kind (whether a condition that does not apply holds) and the review
leaves met so far. How the layers make one compiler: see criteria._compile_fields.
"""

from __future__ import annotations

from typing import Any

from screener.core import _vocabulary as v
from screener.core._model import Kind
from screener.criteria._compile_fields import FieldCompiler
from screener.criteria._conditions import (
    NEGATED,
    All,
    Any_,
    AtLeast,
    Count,
    Every,
    Exists,
    If,
    Node,
    Not,
    Review,
)
from screener.criteria._language import (
    AT_LEAST,
    CONDITION,
    CONDITIONS,
    ITEM_FIELD,
    LIST,
    TEXT,
    WHOLE,
    Key,
    Language,
    node_kind,
)
from screener.reading._document import Document, PathKey


class NodeCompiler(FieldCompiler):
    def __init__(
        self, doc: Document, language: Language, vocabulary: v.Vocabulary | None = None
    ) -> None:
        super().__init__(doc, language, vocabulary)
        self.kind = Kind.INCLUSION  # of the criterion being compiled
        self.reviews = 0  # review leaves met in it

    # --------------------------------------------------------------------------- nodes
    #
    # Each step below declares the node kind it compiles (see criteria._language): its keys,
    # and a docstring with a summary and examples that docs/rule-language.md shows and
    # tests/test_rule_language.py screens. The kinds are tried in the order declared, these
    # first and then the field condition of the layer below, except that a field condition
    # is tried first (Language.dispatch); the unknown-condition hint lists them in that order.

    def node(self, data: Any, path: PathKey, scope: v.Record, negated: bool) -> Node:
        if not isinstance(data, dict) or not data:
            raise self.fail(path, "a condition must be a mapping such as {field: ecog, le: 2}")
        kind = self.language.kind_for(data)
        if kind is None:
            names = list(self.language.kinds)
            raise self.fail(
                path,
                f"unknown condition with keys {', '.join(map(str, sorted(data)))}",
                f"use {', '.join(names[:-1])} or {names[-1]}",
            )
        if not kind.takes_operators:
            self.mapping(data, path, kind.accepted, set(kind.required), kind.what)
        node: Node = kind.compile(self, data, path, scope, negated)
        return node

    def list_of_nodes(
        self, data: Any, path: PathKey, scope: v.Record, negated: bool
    ) -> tuple[Node, ...]:
        if not isinstance(data, list) or not data:
            raise self.fail(path, "expected a non-empty list of conditions")
        return tuple(self.node(item, path + (i,), scope, negated) for i, item in enumerate(data))

    @node_kind("all", Key("all", CONDITIONS, "the conditions"), what="an 'all' node")
    def all_of(self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool) -> Node:
        """Every one of the conditions holds.

        One condition that fails makes it fail; otherwise one that is unknown makes it
        unknown.

        pass: {all: [{field: ecog, le: 2}, {field: age, ge: 18 years}]}
        fail: {all: [{field: ecog, le: 2}, {field: age, ge: 65 years}]}
        unknown: {all: [{field: ecog, le: 2}, {field: lvef, ge: 50 %}]}
        """
        return All(self.list_of_nodes(data["all"], path + ("all",), scope, negated))

    @node_kind("any", Key("any", CONDITIONS, "the conditions"), what="an 'any' node")
    def any_of(self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool) -> Node:
        """At least one of the conditions holds.

        One condition that holds makes it hold; otherwise one that is unknown makes it
        unknown.

        pass: {any: [{field: ecog, le: 0}, {field: diagnosis.status, is: relapsed}]}
        fail: {any: [{field: ecog, le: 0}, {field: diagnosis.status, is: refractory}]}
        unknown: {any: [{field: ecog, le: 0}, {field: lvef, ge: 50 %}]}
        """
        return Any_(self.list_of_nodes(data["any"], path + ("any",), scope, negated))

    @node_kind("not", Key("not", CONDITION, "the condition"))
    def not_(self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool) -> Node:
        """The condition does not hold.

        An unknown condition stays unknown. A review cannot sit under `not`: an attestation
        must move its criterion the way it says.

        pass: {not: {field: diagnosis.cns_involvement, is: active}}
        fail: {not: {field: diagnosis.ph_positive, is: true}}
        """
        return Not(self.node(data["not"], path + ("not",), scope, not negated))

    @node_kind(
        "at_least",
        Key("at_least", AT_LEAST, "how many of the conditions must hold"),
        Key("of", CONDITIONS, "the conditions"),
        required=("at_least", "of"),
        what="an 'at_least' node",
    )
    def at_least(self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool) -> Node:
        """At least so many of the conditions hold.

        pass:
          at_least: 2
          of: [{field: ecog, le: 1}, {field: sex, is: male}, {field: age, lt: 40 years}]
        fail:
          at_least: 2
          of: [{field: ecog, le: 0}, {field: sex, is: male}, {field: age, lt: 40 years}]
        """
        count = data["at_least"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise self.fail(path + ("at_least",), "at_least needs a whole number ≥ 1")
        items = self.list_of_nodes(data["of"], path + ("of",), scope, negated)
        if count > len(items):
            raise self.fail(path + ("at_least",), f"at_least {count} of only {len(items)}")
        return AtLeast(count, items)

    @node_kind(
        "if",
        Key("if", CONDITION, "whom the condition applies to"),
        Key("then", CONDITION, "what must hold for them"),
        Key("else", CONDITION, "what must hold for the others (optional)"),
        required=("if", "then"),
        what="an 'if' node",
    )
    def if_(self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool) -> Node:
        """A condition that applies only to some patients.

        Where `if` does not hold and there is no `else`, the condition does not stand in the
        patient's way: it holds in an inclusion and does not in an exclusion (the other way
        round under `not`). An unknown `if` leaves it unknown unless both branches agree. A
        review cannot decide whether an `if` applies.

        pass: {if: {field: sex, is: female}, then: {field: pregnancy_test.result, is: negative}}
        fail: {if: {field: sex, is: female}, then: {field: ecog, le: 0}}
        pass: {if: {field: sex, is: male}, then: {field: ecog, le: 0}}
        unknown: {if: {field: lvef, lt: 50 %}, then: {field: ecog, le: 0}}
        """
        before = self.reviews
        condition = self.node(data["if"], path + ("if",), scope, negated)
        if self.reviews != before:
            raise self.fail(path + ("if",), "a review cannot decide whether an 'if' applies")
        otherwise = (
            self.node(data["else"], path + ("else",), scope, negated) if "else" in data else None
        )
        return If(
            condition,
            self.node(data["then"], path + ("then",), scope, negated),
            otherwise,
            inapplicable=(self.kind is Kind.INCLUSION) != negated,
        )

    @node_kind("review", Key("review", TEXT, "the question, as the investigator will read it"))
    def review(self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool) -> Node:
        """A judgment only the investigator can make.

        A criterion that hangs on one is `review` until the patient file attests it
        (`attestations: {NCT06559644/E16: pass}`); the rest of the tree may decide it first.
        A review cannot sit under `not`, nor decide an `if`.

        review: {review: Investigator judges the patient fit for apheresis}
        pass: {any: [{field: ecog, le: 1}, {review: ECOG 2 is due to the leukemia}]}
        fail: {all: [{field: ecog, le: 0}, {review: The patient is fit for apheresis}]}
        """
        if negated:
            raise self.fail(
                path,
                "a review cannot sit under 'not'",
                "an attestation must move its criterion the way it says",
            )
        self.reviews += 1
        return Review(self.text(data["review"], path + ("review",), "review"))

    @node_kind(
        "exists",
        Key("exists", LIST, "the list"),
        Key("where", CONDITION, "which items count (their own fields: type, date, …)"),
        Key("label", TEXT, "what reasons call the list"),
    )
    def exists(self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool) -> Node:
        """Some item of a list matches `where` (any item, without `where`).

        An empty list (`[]`: reviewed, none) makes it fail; a list the record does not hold
        leaves it unknown.

        pass: {exists: therapies, where: {field: type, is: car-t}}
        fail: {exists: therapies, where: {field: type, is: transplant}}
        fail: {exists: vaccinations}
        unknown: {exists: procedures}
        """
        list_path, item, label, where = self.over_list("exists", data, path, scope, negated)
        return Exists(list_path, where, item, label)

    @node_kind(
        "every",
        Key("every", LIST, "the list"),
        Key("where", CONDITION, "which items it is about (all, without where)"),
        Key("check", CONDITION, "what each of them must satisfy"),
        Key("label", TEXT, "what reasons call the list"),
        required=("every", "check"),
    )
    def every(self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool) -> Node:
        """Every item of a list that matches `where` satisfies `check`.

        pass: {every: therapies, where: {field: type, is: tki}, check: {field: outcome, is: failed}}
        fail: {every: therapies, check: {field: type, is: tki}}
        """
        list_path, item, label, where = self.over_list("every", data, path, scope, negated)
        check = self.node(data["check"], path + ("check",), item, negated)
        return Every(list_path, where, item, label, check)

    @node_kind(
        "count",
        Key("count", LIST, "the list"),
        Key("where", CONDITION, "which items count (all, without where)"),
        Key("distinct", ITEM_FIELD, "items with the same value of this field count once"),
        Key("label", TEXT, "what reasons call the list"),
        Key("lt", WHOLE, "fewer than"),
        Key("le", WHOLE, "at most"),
        Key("gt", WHOLE, "more than"),
        Key("ge", WHOLE, "at least"),
        tolerated=("eq", "ne"),
    )
    def count(self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool) -> Node:
        """How many items of a list match `where`, compared with a whole number.

        Exactly one of lt, le, gt and ge.

        pass: {count: therapies, where: {field: type, is: tki}, ge: 2}
        fail: {count: therapies, where: {field: type, is: tki}, ge: 3}
        pass: {count: therapies, ge: 4}
        fail: {count: therapies, distinct: type, ge: 4}
        """
        list_path, item, label, where = self.over_list("count", data, path, scope, negated)
        ops = [op for op in data if op in NEGATED]
        if len(ops) != 1 or ops[0] in ("eq", "ne"):
            raise self.fail(path, "count needs exactly one of lt, le, gt, ge")
        number = data[ops[0]]
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise self.fail(path + (ops[0],), "a count compares with a whole number")
        distinct = data.get("distinct")
        if distinct is not None:
            self.field_spec(distinct, path + ("distinct",), item)
        return Count(list_path, where, item, label, ops[0], number, distinct)

    def over_list(
        self, name: str, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool
    ) -> tuple[str, v.Record, str, Node | None]:
        """What exists, every and count share: the list, its item record, its label and
        `where`."""
        list_path = data[name]
        spec = self.field_spec(list_path, path + (name,), scope)
        if not isinstance(spec, v.ListOf) or not isinstance(spec.item, v.Record):
            raise self.fail(path + (name,), f"{list_path} is not a list of records")
        item = spec.item
        label = (
            self.text(data["label"], path + ("label",), "label") if "label" in data else spec.label
        )
        where = (
            self.node(data["where"], path + ("where",), item, negated) if "where" in data else None
        )
        return list_path, item, label, where
