"""Rule sets: read a trial's YAML, check every part of it, and compile it into nodes.

Everything that can be wrong with a rule set is found here, when it loads, with the rule
file, line and column: unknown keys and fields, operators that do not suit a field,
thresholds in units of the wrong kind, malformed trees, criterion ids out of order. A
rule set that loads can therefore be applied to any valid patient without a per-patient
surprise.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace
from dataclasses import field as _field
from functools import lru_cache
from pathlib import Path
from typing import Any

from screener.core import _reference as reference
from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.core._errors import RuleSetError, nearest
from screener.core._errors import describe_value as _q
from screener.core._model import Kind
from screener.core._units import Measure, UnitError
from screener.criteria._conditions import (
    ANCHORS,
    NEGATED,
    All,
    Any_,
    AtLeast,
    Compare,
    Contains,
    Count,
    DateOrder,
    Every,
    Exists,
    Fresh,
    If,
    Leaf,
    Mentions,
    Node,
    Not,
    OneOf,
    Review,
    Threshold,
    Unrecorded,
    Window,
    inputs,
    words_of,
)
from screener.criteria._language import (
    ANCHOR,
    AT_LEAST,
    BOOLEAN,
    CONDITION,
    CONDITIONS,
    DURATION,
    FIELD,
    ITEM_FIELD,
    LIST,
    MUTATION,
    ONE_VALUE,
    TEXT,
    THRESHOLD,
    VALUES,
    WHOLE,
    WINDOW,
    WORDS,
    Key,
    Language,
    Operator,
    companion,
    modifier,
    node_kind,
    operator,
)
from screener.reading._document import Document, PathKey, load, parse
from screener.reading._patient import normalise_mutation

_LEAVES: dict[Node, Node] = {}
# ASCII digits only, to the end of the text: Python's \d also matches Arabic-Indic and
# other digits (NCT٠٠٠…), and $ a final line break, which would make look-alike ids.
# `2.0 mg/dL (34.2 µmol/L)`: a limit and the source's own equivalent in other units
_STATED = re.compile(r"^\s*([^()]+?)\s*\(\s*(?:=\s*)?([^()]+?)\s*\)\s*\Z")
# A stated equivalent further than this from the converted limit is a typo, not rounding.
_STATED_TOLERANCE = 0.05
_ULN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:x|×|\*)?\s*ULN\s*\Z", re.IGNORECASE | re.ASCII)
_CRITERION_ID = re.compile(r"^([IE])(\d+)\Z", re.ASCII)


@dataclass(frozen=True)
class Part:
    id: str
    label: str
    text: str
    check: Node
    inputs: tuple[str, ...] = ()  # as for Criterion
    dated: bool = False
    memo: dict[Any, Any] = _field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Criterion:
    id: str
    kind: Kind
    label: str
    text: str
    note: str
    check: Node | None  # None when the criterion is made of parts
    parts: tuple[Part, ...] = ()
    combine: str = "all"  # how parts make the whole: all or any
    judged: bool = False  # holds a review leaf, so an attestation can settle it
    # What the result depends on (conditions.inputs): the fields read, and whether dates
    # are counted from the screening or apheresis date.
    inputs: tuple[str, ...] = ()
    dated: bool = False
    # The item types its list conditions look for, by list ("conditions": gvhd, stroke, …),
    # so a worklist can say which conditions to ask about.
    asks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Results already computed, by the facts they were computed from (engine.screen_criterion).
    # Not part of the criterion's value: left out of equality, hashing and repr.
    memo: dict[Any, Any] = _field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class RuleSet:
    trial: str
    product: str
    title: str
    sources: tuple[str, ...]
    caveats: tuple[str, ...]
    criteria: tuple[Criterion, ...]
    file: str
    # The rule set's version: a digest of the rule file's text, so a report, a log or a
    # checklist says exactly which encoding of the criteria decided it.
    digest: str = ""
    # The vocabulary its fields were checked against when a rules directory extends the
    # built-in one (None: the built-in one): patients screened with it are read with it.
    vocabulary: v.Vocabulary | None = _field(default=None, compare=False, repr=False)

    def criterion(self, cid: str) -> Criterion | None:
        return next((c for c in self.criteria if c.id == cid), None)


class _Compiler:
    def __init__(self, doc: Document, vocabulary: v.Vocabulary | None = None) -> None:
        self.doc = doc
        # The fields a rule may name: the built-in vocabulary, or a rules directory's.
        self.vocabulary = v.chosen(vocabulary)
        self.root = self.vocabulary.root
        self.kind = Kind.INCLUSION  # of the criterion being compiled
        self.reviews = 0  # review leaves met in it

    def fail(
        self, path: PathKey, message: str, hint: str | None = None, key: bool = False
    ) -> RuleSetError:
        return RuleSetError(self.doc.diagnostic(message, path, key=key, hint=hint))

    def mapping(
        self, value: Any, path: PathKey, allowed: set[str], required: set[str], what: str
    ) -> dict[str, Any]:
        return self.doc.strict(value, path, sorted(allowed), what, RuleSetError, sorted(required))

    def text(self, value: Any, path: PathKey, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"{what} must be non-empty text")
        return value.strip()

    def texts(self, value: Any, path: PathKey, what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, f"{what} must be a list")
        return tuple(self.text(item, path + (i,), what) for i, item in enumerate(value))

    # ------------------------------------------------------------------------ rule set

    def rule_set(self) -> RuleSet:
        data = self.mapping(
            self.doc.data,
            (),
            {"trial", "product", "title", "sources", "caveats", "criteria"},
            {"trial", "product", "title", "sources", "criteria"},
            "a rule set",
        )
        trial = self.text(data["trial"], ("trial",), "trial")
        if reference.registry_of(trial) is None:
            raise self.fail(
                ("trial",),
                f"trial id {_q(trial)} is not a registry id",
                f"a trial is named by its registration number, such as "
                f"{reference.trial_id_examples()}",
            )
        stem = Path(self.doc.file).stem
        if stem != reference.trial_file_stem(trial) and not self.doc.file.startswith("<"):
            raise self.fail(
                ("trial",),
                f"rule file {Path(self.doc.file).name} holds trial {trial}",
                f"name the file {reference.trial_file_stem(trial)}.yaml",
            )
        raw = data["criteria"]
        if not isinstance(raw, list) or not raw:
            raise self.fail(("criteria",), "criteria must be a non-empty list")
        criteria = tuple(self.criterion(item, ("criteria", i)) for i, item in enumerate(raw))
        self.check_order(criteria)
        return RuleSet(
            trial=trial,
            product=self.text(data["product"], ("product",), "product"),
            title=self.text(data["title"], ("title",), "title"),
            sources=self.texts(data["sources"], ("sources",), "sources"),
            caveats=self.texts(data.get("caveats"), ("caveats",), "caveats"),
            criteria=criteria,
            file=self.doc.file,
            digest=text_digest(self.doc.text),
            vocabulary=None if self.vocabulary is v.BUILTIN else self.vocabulary,
        )

    def check_order(self, criteria: tuple[Criterion, ...]) -> None:
        """Ids run I1, I2, … then E1, E2, …: a gap would be a silently dropped criterion."""
        expected = {"I": 1, "E": 1}
        seen_exclusion = False
        for index, criterion in enumerate(criteria):
            letter, number = criterion.id[0], int(criterion.id[1:])
            path = ("criteria", index, "id")
            if letter == "I" and seen_exclusion:
                raise self.fail(
                    path,
                    f"inclusion {criterion.id} comes after the exclusions",
                    "list criteria in source order: I1, I2, …, then E1, E2, …",
                )
            seen_exclusion |= letter == "E"
            if number != expected[letter]:
                raise self.fail(
                    path,
                    f"criterion {criterion.id} is out of order: expected "
                    f"{letter}{expected[letter]}",
                    "every numbered item of the source appears, in source order",
                )
            expected[letter] += 1

    def criterion(self, data: Any, path: PathKey) -> Criterion:
        data = self.mapping(
            data,
            path,
            {"id", "kind", "label", "text", "note", "check", "parts", "combine"},
            {"id", "kind", "label", "text"},
            "a criterion",
        )
        cid = self.text(data["id"], path + ("id",), "id")
        match = _CRITERION_ID.match(cid)
        if not match:
            raise self.fail(path + ("id",), f"criterion id {_q(cid)} must look like I1 or E12")
        kind_text = data["kind"]
        if kind_text not in ("inclusion", "exclusion"):
            raise self.fail(path + ("kind",), "kind must be inclusion or exclusion")
        kind = self.kind = Kind(kind_text)
        if (kind is Kind.INCLUSION) != (match.group(1) == "I"):
            raise self.fail(path + ("kind",), f"{cid} is {kind_text}, but its id says otherwise")
        if ("check" in data) == ("parts" in data):
            raise self.fail(path, f"criterion {cid} needs either check or parts (not both)")
        parts: tuple[Part, ...] = ()
        self.reviews = 0
        if "parts" in data:
            raw = data["parts"]
            if not isinstance(raw, list) or not raw:
                raise self.fail(path + ("parts",), "parts must be a non-empty list")
            parts = tuple(self.part(item, path + ("parts", i), cid) for i, item in enumerate(raw))
            ids = [p.id for p in parts]
            if len(set(ids)) != len(ids):
                raise self.fail(path + ("parts",), f"duplicate part ids in {cid}")
            combine = data.get("combine", "all")
            if combine not in ("all", "any"):
                raise self.fail(path + ("combine",), "combine must be all or any")
            check: Node | None = None
        else:
            if "combine" in data:
                raise self.fail(path + ("combine",), "combine goes with parts")
            combine = "all"
            check = self.node(data["check"], path + ("check",), self.root, False)
        fields, dated = inputs([check] if check is not None else [p.check for p in parts])
        return Criterion(
            id=cid,
            kind=kind,
            label=self.text(data["label"], path + ("label",), "label"),
            text=self.text(data["text"], path + ("text",), "text"),
            note=self.text(data["note"], path + ("note",), "note") if "note" in data else "",
            check=check,
            parts=parts,
            combine=combine,
            judged=self.reviews > 0,
            inputs=fields,
            dated=dated,
            asks=asked_types([check] if check is not None else [p.check for p in parts]),
        )

    def part(self, data: Any, path: PathKey, cid: str) -> Part:
        data = self.mapping(
            data, path, {"id", "label", "text", "check"}, {"id", "label", "check"}, "a part"
        )
        pid = self.text(data["id"], path + ("id",), "id")
        if not re.match(rf"^{re.escape(cid)}\.[a-z]$", pid):
            raise self.fail(path + ("id",), f"part id {_q(pid)} must be {cid}.a, {cid}.b, …")
        check = self.node(data["check"], path + ("check",), self.root, False)
        fields, dated = inputs([check])
        return Part(
            pid,
            self.text(data["label"], path + ("label",), "label"),
            self.text(data["text"], path + ("text",), "text") if "text" in data else "",
            check,
            fields,
            dated,
        )

    # --------------------------------------------------------------------------- nodes
    #
    # Each step below declares the node kind, operator or modifier it compiles (see
    # criteria._language): its keys, and a docstring with a summary and examples that
    # docs/rule-language.md shows and tests/test_rule_language.py screens. The kinds are
    # tried in the order declared here, a field condition first (Language.dispatch), and
    # the unknown-condition hint lists them in that order.

    def node(self, data: Any, path: PathKey, scope: v.Record, negated: bool) -> Node:
        if not isinstance(data, dict) or not data:
            raise self.fail(path, "a condition must be a mapping such as {field: ecog, le: 2}")
        kind = LANGUAGE.kind_for(data)
        if kind is None:
            names = list(LANGUAGE.kinds)
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

    @node_kind(
        "field",
        Key("field", FIELD, "the field tested (in a list's where or check: the item's own)"),
        takes_operators=True,
    )
    def field_condition(
        self, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool
    ) -> Node:
        """A test of one field of the record: the field, one operator, and modifiers.

        The operator is one of those below, or within or at_least with before. A field the
        record does not hold leaves the condition unknown, and the screener asks for it,
        unless `if_missing` says what its absence means.

        pass: {field: ecog, le: 2}
        fail: {field: ecog, le: 0}
        unknown: {field: lvef, ge: 50 %}
        """
        return self.leaf(data, path, scope)

    def field_spec(self, name: Any, path: PathKey, scope: v.Record) -> v.Spec:
        if not isinstance(name, str):
            raise self.fail(path, "a field name must be text such as labs.creatinine")
        spec = self.vocabulary.resolve(name, scope)
        if spec is None:
            top = scope is self.root
            names = v.field_names(scope) + (list(self.vocabulary.derived) if top else [])
            guess = nearest(name, names)
            raise self.fail(
                path,
                f"unknown field {_q(name)}" + ("" if top else f" in a {scope.label}"),
                f"did you mean {guess!r}?" if guess else None,
            )
        return spec

    def leaf(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        for found in LANGUAGE.modifiers.values():  # in order: if_missing wraps fresh
            if found.name in data:
                node: Node = found.compile(self, data, path, scope)
                break
        else:
            node = self.test(data, path, scope)
        # Equal leaves of different criteria and trials become one object, so screening
        # a patient computes each once (conditions.Leaf memoises by identity).
        return _LEAVES.setdefault(node, node) if isinstance(node, Leaf) else node

    def test(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        """A field condition without modifiers: the field and its operator."""
        field = data["field"]
        spec = self.field_spec(field, path + ("field",), scope)
        if ".markers." in f".{field}":
            # A marker's fields read as "CD19 result", not a bare "result".
            marker = field.split("markers.", 1)[1].split(".")[0]
            spec = replace(spec, label=f"{marker} {spec.label}")
        ops = [k for k in data if k != "field"]
        pair = LANGUAGE.pairs.get(frozenset(ops))
        if pair is not None:
            return self.step(pair, field, spec, data, path)
        if len(ops) != 1:
            paired = [o for o in LANGUAGE.operators.values() if o.with_]
            raise self.fail(
                path,
                f"a field condition has one operator: {', '.join(LANGUAGE.single())}, or "
                f"{'/'.join(o.name for o in paired)} with "
                f"{'/'.join(dict.fromkeys(str(o.with_) for o in paired))}",
            )
        op = ops[0]
        found = LANGUAGE.operators.get(op) if isinstance(op, str) else None
        if found is not None and found.compile is not None and found.with_ is None:
            return self.step(found, field, spec, data, path)
        raise self.fail(
            path + (op,), f"unknown operator {_q(op)}", key=True, hint=LANGUAGE.hint(op)
        )

    def step(
        self, operator: Operator, field: str, spec: v.Spec, data: dict[str, Any], path: PathKey
    ) -> Node:
        assert operator.compile is not None
        node: Node = operator.compile(self, operator.name, field, spec, data, path)
        return node

    # ------------------------------------------------------------------------ operators

    @operator(
        "lt",
        THRESHOLD,
        """Below the threshold.

        A date field is compared with another date field of the patient's in the same way:
        `lt` is before it, `gt` after it.

        pass: {field: age, lt: 40 years}
        fail: {field: age, lt: 30 years}
        pass:
          exists: therapies
          where:
            all:
              - {field: type, is: car-t}
              - {field: date, lt: diagnosis.markers.CD19.date}
        """,
        aliases=("<",),
    )
    @operator(
        "le",
        THRESHOLD,
        """At most the threshold.

        Units convert (creatinine 97 µmol/L is 1.097 mg/dL); a multiple of the ULN uses
        the lab's own ULN, or the reference one. A limit the source also states in other
        units is written as the source writes it, `1.1 mg/dL (96 µmol/L)`: a value is then
        compared with the source's own number in its unit or dimension (97 µmol/L with 96),
        and converts through the analyte's molar mass only where the source states none;
        an equivalent more than 5 % off the limit is refused as a typo. For every operator,
        a value equal to the limit at a relative 1e-9 is equal (a converted 1.6 mg/dL is
        not above 1.6 mg/dL).

        pass: {field: labs.total_bilirubin, le: 1.5 x ULN}
        fail: {field: labs.creatinine, le: 1 mg/dL}
        fail: {field: labs.creatinine, le: 1.1 mg/dL (96 µmol/L)}
        """,
        aliases=("lte", "<="),
    )
    @operator(
        "gt",
        THRESHOLD,
        """Above the threshold.

        pass: {field: labs.total_bilirubin, gt: 1 x ULN}
        fail: {field: ecog, gt: 1}
        """,
        aliases=(">",),
    )
    @operator(
        "ge",
        THRESHOLD,
        """At least the threshold.

        pass: {field: age, ge: 18 years}
        fail: {field: labs.creatinine, ge: 1.2 mg/dL}
        """,
        aliases=("gte", ">="),
    )
    @operator(
        "eq",
        THRESHOLD,
        """Equal to the threshold.

        pass: {field: ecog, eq: 1}
        fail: {field: ecog, eq: 0}
        """,
        aliases=("=", "==", "equals"),
    )
    @operator(
        "ne",
        THRESHOLD,
        """Other than the threshold.

        pass: {field: ecog, ne: 0}
        fail: {field: ecog, ne: 1}
        """,
        aliases=("!=", "neq"),
    )
    def comparison(
        self, op: str, field: str, spec: v.Spec, data: dict[str, Any], path: PathKey
    ) -> Node:
        at = path + (op,)
        if isinstance(spec, v.Date):
            # A date is compared with another date of the patient's, named by its field.
            other = data[op]
            if not isinstance(other, str) or not isinstance(
                self.field_spec(other, at, self.root), v.Date
            ):
                raise self.fail(
                    at,
                    f"a date is compared with another date field, not {_q(other)}",
                    "for a span before screening use within/at_least with before",
                )
            return DateOrder(field, op, other, spec.label)
        return self.compare(field, spec, op, data[op], at)

    @operator(
        "is",
        ONE_VALUE,
        """The field has this value.

        A word of the field's list of values, in any case and spelling the patient loader
        accepts; a whole number; or true or false.

        pass: {field: diagnosis.disease, is: B-ALL}
        fail: {field: diagnosis.ph_positive, is: false}
        """,
    )
    @operator(
        "in",
        VALUES,
        """The field has one of these values.

        pass: {field: diagnosis.status, in: [relapsed, refractory]}
        fail: {field: diagnosis.disease, in: [T-ALL, AML]}
        """,
    )
    def one_of(
        self, op: str, field: str, spec: v.Spec, data: dict[str, Any], path: PathKey
    ) -> Node:
        at = path + (op,)
        raw = [data[op]] if op == "is" else data[op]
        if op == "in" and (not isinstance(raw, list) or not raw):
            raise self.fail(at, "in needs a non-empty list")
        # Each item at its own path: the error points at it, and `in: [no]` finds the
        # text YAML read as false.
        values = tuple(
            self.value_for(spec, item, at if op == "is" else at + (i,))
            for i, item in enumerate(raw)
        )
        return OneOf(field, values, spec.label)

    @operator("contains", MUTATION)
    def contains(
        self, op: str, field: str, spec: v.Spec, data: dict[str, Any], path: PathKey
    ) -> Node:
        """A list of mutations includes this protein change.

        T315I, p.T315I and p.Thr315Ile are the same change.

        pass: {field: diagnosis.abl1_mutations, contains: p.Thr315Ile}
        fail: {field: diagnosis.abl1_mutations, contains: E255K}
        """
        at = path + (op,)
        if not isinstance(spec, v.Mutations):
            raise self.fail(at, f"contains works on a list of mutations, not {spec.label}")
        name = normalise_mutation(str(data[op]))
        if name is None:
            raise self.fail(at, f"cannot read {_q(data[op])} as a protein change")
        return Contains(field, name, spec.label)

    @operator("mentions", WORDS)
    def mentions(
        self, op: str, field: str, spec: v.Spec, data: dict[str, Any], path: PathKey
    ) -> Node:
        """Free text mentions the word, or one of the words.

        Whole words, in any case.

        pass: {exists: therapies, where: {field: target, mentions: CD19}}
        fail:
          exists: therapies
          where: {all: [{field: type, is: car-t}, {field: target, mentions: [CD22, BCMA]}]}
        """
        at = path + (op,)
        if not isinstance(spec, v.Text):
            raise self.fail(
                at,
                f"mentions looks for words in free text; {field} is {spec.label}",
                "use is or in for a field with set values",
            )
        raw = data[op] if isinstance(data[op], list) else [data[op]]
        if not raw or not all(isinstance(w, str) and words_of(w) for w in raw):
            raise self.fail(at, "mentions needs a word or a non-empty list of words")
        return Mentions(field, tuple(str(w).strip() for w in raw), spec.label)

    @operator(
        "within",
        DURATION,
        """The date lies within the span before screening or apheresis, both days included.

        Months are calendar months.

        pass:
          exists: conditions
          where:
            all:
              - {field: type, is: myocardial_infarction}
              - {field: date, within: 3 years, before: screening}
        fail:
          exists: conditions
          where:
            all:
              - {field: type, is: myocardial_infarction}
              - {field: date, within: 6 months, before: screening}
        """,
        with_="before",
    )
    @operator(
        "at_least",
        DURATION,
        """The date lies at least the span before screening or apheresis.

        pass:
          exists: therapies
          where:
            all:
              - {field: type, is: car-t}
              - {field: date, at_least: 3 months, before: screening}
        fail:
          exists: therapies
          where:
            all:
              - {field: type, is: car-t}
              - {field: date, at_least: 1 year, before: screening}
        """,
        with_="before",
    )
    def span(self, op: str, field: str, spec: v.Spec, data: dict[str, Any], path: PathKey) -> Node:
        return self.window(field, spec, data, path)

    # ------------------------------------------------------------------------ modifiers

    @modifier("if_missing", BOOLEAN)
    def unrecorded(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        """What the condition means when its fact is not recorded: true met, false not met.

        Only where the criterion's text makes an absence an answer: a list item's
        unrecorded attribute (a medication not marked as stopped is still taken), or an
        exception that only a positive statement invokes. Everywhere else a missing fact
        leaves the criterion unknown; the reason says the value was read from an absence,
        and the criterion's note should say why. It does not go with fresh.

        pass: {exists: medications, where: {field: ongoing, is: true, if_missing: true}}
        fail: {exists: medications, where: {field: ongoing, is: true, if_missing: false}}
        """
        value = data["if_missing"]
        at = path + ("if_missing",)
        if not isinstance(value, bool):
            raise self.fail(at, f"if_missing is true or false, not {_q(value)}")
        if "fresh" in data:
            raise self.fail(at, "if_missing does not go with fresh")
        rest = {k: x for k, x in data.items() if k != "if_missing"}
        return Unrecorded(self.leaf(rest, path, scope), value)

    @modifier("fresh", WINDOW)
    def fresh(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        """The fact counts only if dated within the span; an older one is data to collect.

        For a lab, a marker or a dated record (pregnancy_test): a result outside the window
        leaves the condition unknown, never a silent pass or fail on stale data.

        pass:
          field: pregnancy_test.result
          is: negative
          fresh: {within: 7 days, before: screening}
        unknown:
          field: pregnancy_test.result
          is: negative
          fresh: {within: 2 days, before: screening}
        fail:
          field: diagnosis.markers.CD19.result
          is: negative
          fresh: {within: 1 month, before: screening}
        """
        field = data["field"]
        spec = self.field_spec(field, path + ("field",), scope)
        window = self.mapping(
            data["fresh"], path + ("fresh",), {"within", "before"}, {"within", "before"}, "fresh"
        )
        date_field = (
            f"{field}.date" if isinstance(spec, v.Lab) else field.rsplit(".", 1)[0] + ".date"
        )
        if (
            "." not in field
            and not isinstance(spec, v.Lab)
            or not isinstance(self.vocabulary.resolve(date_field, scope), v.Date)
        ):
            raise self.fail(path + ("fresh",), f"{field} has no date to be fresh by")
        inner = self.leaf({k: x for k, x in data.items() if k != "fresh"}, path, scope)
        label = (
            spec.label
            if isinstance(spec, v.Lab)
            else (self.vocabulary.resolve(field.rsplit(".", 1)[0], scope) or spec).label
        )
        if ".markers." in f".{field}":
            label = field.split("markers.", 1)[1].split(".")[0] + " " + label
        return Fresh(
            date_field,
            self.window(date_field, v.Date("date"), window, path + ("fresh",)),
            inner,
            label,
        )

    # -------------------------------------------------------------------------- values

    def value_for(self, spec: v.Spec, value: Any, path: PathKey) -> Any:
        if isinstance(spec, v.Bool):
            if not isinstance(value, bool):
                raise self.fail(path, f"{spec.label} is true or false, not {_q(value)}")
            return value
        if isinstance(spec, v.Choice):
            if isinstance(value, bool):
                # YAML 1.1 reads `no` as false; `is: no` means the word (cns_involvement: no).
                value = self.doc.scalars.get(path, value)
            found = spec.lookup().get(v.fold(str(value)))
            if found is None:
                raise self.fail(
                    path,
                    f"{_q(value)} is not a value of {spec.label}",
                    f"one of: {', '.join(spec.values)}",
                )
            return found
        if isinstance(spec, v.Integer):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not spec.low <= value <= spec.high
            ):
                raise self.fail(path, f"{spec.label} takes whole numbers {spec.low}–{spec.high}")
            return value
        raise self.fail(path, f"is/in do not apply to {spec.label}; compare it with lt, le, gt, ge")

    def compare(self, field: str, spec: v.Spec, op: str, raw: Any, path: PathKey) -> Node:
        value_spec = spec.value if isinstance(spec, v.Lab) else spec
        label = spec.label
        if isinstance(raw, str) and (match := _ULN.match(raw)):
            if not isinstance(spec, v.Lab):
                raise self.fail(
                    path, f"{label} has no upper limit of normal; ULN multiples apply to labs"
                )
            default = self.amount(value_spec, spec.default_uln, path) if spec.default_uln else None
            analyte = value_spec.analyte if isinstance(value_spec, v.Quantity) else None
            multiple = float(match.group(1))
            if multiple > units.MAX_MAGNITUDE:  # 400 nines would be inf
                raise self.fail(path, f"{_q(raw)} is too large a multiple of ULN")
            if multiple <= 0:  # 0 x ULN would hold for no lab value, or for every one
                raise self.fail(
                    path, f"{_q(raw)} cannot be meant: a multiple of ULN must be above zero"
                )
            return Compare(
                field, op, Threshold(multiple, True), label, analyte, default, spec.uln_source
            )
        if isinstance(value_spec, v.Quantity):
            stated: tuple[Measure, ...] = ()
            if isinstance(raw, str) and (both := _STATED.match(raw)):
                raw = both.group(1)
                stated = (self.stated(value_spec, raw, both.group(2), path),)
            amount = self.amount(value_spec, raw, path)
            if isinstance(amount, Measure) and amount.magnitude < 0:
                # Ages, durations, masses and concentrations are never negative: such a
                # threshold is a typo (`ge: -18 years`) that would pass every patient.
                raise self.fail(path, f"threshold for {label} cannot be negative: {amount.written}")
            return Compare(field, op, Threshold(amount, stated=stated), label, value_spec.analyte)
        if isinstance(value_spec, (v.Integer, v.Number)):
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise self.fail(
                    path, f"{label} is a plain number; compare it with one, not {_q(raw)}"
                )
            # .nan would make every comparison false, .inf every one true, and an integer
            # beyond a float's range cannot be compared at all.
            if (
                isinstance(raw, int)
                and abs(raw) > units.MAX_MAGNITUDE
                or isinstance(raw, float)
                and not math.isfinite(raw)
            ):
                raise self.fail(
                    path,
                    f"a threshold for {label} must be a finite number of "
                    f"reasonable size, not {raw}",
                )
            return Compare(field, op, Threshold(float(raw)), label)
        raise self.fail(path, f"{label} cannot be compared with {op}; use is or in")

    def stated(self, spec: v.Quantity, limit: str, other: str, path: PathKey) -> Measure:
        """The source's equivalent of a limit in other units: it must be of the field's kind,
        in another unit, and agree with the limit once converted (else it is a typo)."""
        main = self.amount(spec, limit, path)
        also = self.amount(spec, other, path)
        assert isinstance(main, Measure) and isinstance(also, Measure)
        if also.unit == main.unit:
            raise self.fail(
                path, f"{_q(other)} is in the limit's own unit; an equivalent is in another unit"
            )
        try:
            back = units.convert(also, main.unit, spec.analyte)
        except UnitError as exc:
            raise self.fail(path, f"threshold for {spec.label}: {exc}", exc.hint) from None
        if not math.isclose(back, main.magnitude, rel_tol=_STATED_TOLERANCE):
            raise self.fail(
                path,
                f"{also.written} is {units.fmt(back)} {main.display_unit} of {spec.label}, "
                f"not {main.written}",
                "an equivalent in parentheses restates the same limit in another unit",
            )
        return also

    def amount(self, spec: v.Spec, raw: Any, path: PathKey) -> Measure | float:
        if isinstance(spec, v.Quantity):
            try:
                return units.parse_measure(
                    raw, spec.kind, spec.analyte, self.vocabulary.unit_aliases
                )
            except UnitError as exc:
                raise self.fail(path, f"threshold for {spec.label}: {exc}", exc.hint) from None
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise self.fail(path, f"{spec.label} is a plain number")
        try:
            return float(raw)
        except ValueError:
            raise self.fail(path, f"{spec.label} is a plain number, not {_q(raw)}") from None

    def window(self, field: str, spec: v.Spec, data: dict[str, Any], path: PathKey) -> Window:
        if not isinstance(spec, v.Date):
            raise self.fail(
                path + ("field",), f"within/before needs a date field; {field} is {spec.label}"
            )
        span = "at_least" if "at_least" in data else "within"
        try:
            within = units.parse_measure(data[span], units.DURATION)
        except UnitError as exc:
            raise self.fail(path + (span,), str(exc), exc.hint) from None
        try:
            units.whole_calendar_span(within)
        except UnitError as exc:
            raise self.fail(path + (span,), str(exc), exc.hint) from None
        if within.magnitude < 0:
            # A negative span would turn "within 3 months before" into an empty window.
            raise self.fail(path + (span,), f"a span cannot be negative: {within.written}")
        anchor = data["before"]
        # A list or mapping written here would not even hash: refuse it as what it is.
        if not isinstance(anchor, str) or anchor not in ANCHORS:
            raise self.fail(path + ("before",), f"before must be one of {', '.join(ANCHORS)}")
        return Window(field, within, anchor, spec.label, at_least=span == "at_least")


LANGUAGE = Language.of(
    _Compiler,
    companion(
        "before",
        ANCHOR,
        """The date a span is counted back from: screening, or the planned apheresis.

        pass: {field: pregnancy_test.date, within: 7 days, before: screening}
        fail: {field: pregnancy_test.date, within: 2 days, before: screening}
        """,
    ),
)


def asked_types(nodes: list[Node]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """For each list a tree looks into, the `type` values its conditions select items by."""
    found: dict[str, dict[str, None]] = {}

    def types(node: Node) -> list[str]:
        here = (
            [str(x) for x in node.values]
            if isinstance(node, OneOf) and node.field == "type"
            else []
        )
        return here + [t for child in node.children() for t in types(child)]

    def visit(node: Node) -> None:
        if isinstance(node, (Exists, Every, Count)) and node.where is not None:
            found.setdefault(node.list, {}).update(dict.fromkeys(types(node.where)))
        for child in node.children():
            visit(child)

    for node in nodes:
        visit(node)
    return tuple((name, tuple(values)) for name, values in found.items() if values)


def text_digest(text: str) -> str:
    """A short, stable digest of a text (the first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@lru_cache(maxsize=16)
def rules_digest(versions: tuple[tuple[str, str], ...]) -> str:
    """One digest for the rule sets a screening used, from their (trial, digest) pairs in
    order; a cohort screens every patient with the same ones, so it is worked out once."""
    return text_digest("\n".join(f"{trial} {digest}" for trial, digest in versions))


def from_document(doc: Document, vocabulary: v.Vocabulary | None = None) -> RuleSet:
    if doc.data is None:
        raise RuleSetError(doc.diagnostic("file is empty: a rule set is one YAML mapping", ()))
    if not isinstance(doc.data, dict):
        raise RuleSetError(doc.diagnostic("a rule set is one YAML mapping", ()))
    return _Compiler(doc, vocabulary).rule_set()


def load_rule_set(
    path: str | Path, display: str | None = None, vocabulary: v.Vocabulary | None = None
) -> RuleSet:
    """Load and check one rule file; raises RuleSetError with the rule file:line at fault."""
    return from_document(load(Path(path), display, RuleSetError), vocabulary)


def parse_rule_set(
    text: str, file: str = "<rules>", vocabulary: v.Vocabulary | None = None
) -> RuleSet:
    return from_document(parse(text, file, RuleSetError), vocabulary)
