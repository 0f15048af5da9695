"""Rule compiler, bottom layer: field conditions, their operators, modifiers and values.

`{field: labs.creatinine, le: 1.5 x ULN}` and the like: the field looked up in the record
(field_spec), its operator (`le`, `in`, `mentions`, `within`, …) with a threshold or values
checked against the field's kind and units, and the modifiers `fresh` and `if_missing`. This
is the layer every other stands on, so it also holds the document being compiled and the way
a step reports a fault in it (fail, mapping, text), which the layers above use as well.

The compiler is one object built in layers, each a class in its own module extending the one
below: FieldCompiler here, NodeCompiler (criteria._compile_nodes: the node kinds that combine
conditions and look into lists) on it, and the rule-set compiler (criteria._rules: criteria,
parts, ids) on that. A layer calls its own steps and those below it, never one above, but
for `interned`, which the top layer fills in. One object rather than three composed ones
because the language dispatches to a step as a plain function of the compiler
(`kind.compile(self, …)`, criteria._language), whichever layer declares it: a field
condition is a node kind declared here and dispatched by NodeCompiler.node, and an operator
step is dispatched by the `test` step here. Language.of collects the declarations from every
layer, the top's first. What outlives one compilation is the top layer's to keep: the
language it was built from (handed in) and the table of interned leaves (`interned`).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import replace
from typing import Any

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.core._errors import RuleSetError, nearest
from screener.core._errors import describe_value as _q
from screener.core._units import Measure, UnitError
from screener.criteria._conditions import (
    OPERATORS,
    Change,
    Compare,
    Contains,
    DateOrder,
    Fresh,
    Leaf,
    Mentions,
    Node,
    Occasions,
    OneOf,
    Threshold,
    Unrecorded,
    Window,
    Worst,
    words_of,
)
from screener.criteria._language import (
    ANCHOR,
    BOOLEAN,
    CHANGE,
    DURATION,
    FIELD,
    MUTATION,
    OCCASIONS,
    ONE_VALUE,
    THRESHOLD,
    VALUES,
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
from screener.reading._document import Document, PathKey
from screener.reading._patient import normalise_mutation

# `2.0 mg/dL (34.2 µmol/L)`: a limit and the source's own equivalent in other units
_STATED = re.compile(r"^\s*([^()]+?)\s*\(\s*(?:=\s*)?([^()]+?)\s*\)\s*\Z")
# A stated equivalent further than this from the converted limit is a typo, not rounding.
# Sources round an equivalent to 3 digits, or to the nearest 10 µmol/L (1.5 mg/dL of
# creatinine, 132.6 µmol/L, printed as 130: 2.0 % off); 139 (4.8 % off) is a slip.
_STATED_TOLERANCE = 0.025
# ASCII digits only, to the end of the text (as for the ids, criteria._rules).
_PERCENT = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*%\s*\Z", re.ASCII)
# The modifiers that read a lab's dates: a field condition takes at most one of them.
_DATED = ("fresh", "worst", "occasions", "change")
_ULN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:x|×|\*)?\s*ULN\s*\Z", re.IGNORECASE | re.ASCII)

# `before`, written with within or at_least: a key with no step of its own.
BEFORE = companion(
    "before",
    ANCHOR,
    """The date a span is counted back from: screening, or a trial event's date.

    apheresis is apheresis_date, lymphodepletion lymphodepletion_date, infusion
    infusion_date, enrolment enrolment_date and treatment_start treatment_start_date; a
    vocabulary file may declare more (`anchor:` on a date field). These events come on
    or after screening: without the event's date, a date more than the span before
    screening is decided, and any other leaves the condition unknown, asking for it.

    pass: {field: pregnancy_test.date, within: 7 days, before: screening}
    fail: {field: pregnancy_test.date, within: 2 days, before: screening}
    """,
)


def field_guess(name: str, names: list[str]) -> str | None:
    """The known field a misspelt one most likely meant, or None: a field of the same last
    name elsewhere (`platelets` is `labs.platelets`), else a close spelling whose last name
    is close too, so `labs.plt` does not suggest `labs.alt`."""
    last = name.rsplit(".", 1)[-1].lower()
    same = [n for n in names if n.rsplit(".", 1)[-1].lower() == last]
    if len(same) == 1:
        return same[0]
    guess = nearest(name, names)
    if guess is None:
        return None
    theirs = guess.rsplit(".", 1)[-1].lower()
    return guess if difflib.SequenceMatcher(None, last, theirs).ratio() >= 0.75 else None


class FieldCompiler:
    def __init__(
        self, doc: Document, language: Language, vocabulary: v.Vocabulary | None = None
    ) -> None:
        self.doc = doc
        self.language = language
        # The fields a rule may name: the built-in vocabulary, or a rules directory's.
        self.vocabulary = v.chosen(vocabulary)
        self.root = self.vocabulary.root

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

    def interned(self, leaf: Leaf) -> Node:  # pragma: no cover - the top layer keeps them
        """The one object standing for every leaf equal to this one."""
        raise NotImplementedError

    # ------------------------------------------------------------------ field conditions
    #
    # As in criteria._compile_nodes, each step declares what it compiles: the field
    # condition (a node kind, declared after that layer's), then its operators and modifiers,
    # each in the order the reference page lists them.

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
            guess = field_guess(name, names)
            # A likely typo gets its correction; a field the trial needs that screener does
            # not have gets the way to declare it, never the nearest unrelated field.
            hint = (
                f"did you mean {guess!r}?"
                if guess
                else "a field screener does not ship is declared in a vocabulary.yaml beside "
                'the rule sets (docs/patient-format.md, "Fields of your own")'
                if top
                else None
            )
            raise self.fail(
                path,
                f"unknown field {_q(name)}" + ("" if top else f" in a {scope.label}"),
                hint,
            )
        return spec

    def leaf(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        for found in self.language.modifiers.values():  # in order: if_missing wraps fresh
            if found.name in data:
                node: Node = found.compile(self, data, path, scope)
                break
        else:
            node = self.test(data, path, scope)
        # Equal leaves become one object (the top layer keeps the table: criteria._rules).
        return self.interned(node) if isinstance(node, Leaf) else node

    def test(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        """A field condition without modifiers: the field and its operator."""
        field = data["field"]
        spec = self.field_spec(field, path + ("field",), scope)
        if ".markers." in f".{field}":
            # A marker's fields read as "CD19 result", not a bare "result".
            marker = field.split("markers.", 1)[1].split(".")[0]
            spec = replace(spec, label=f"{marker} {spec.label}")
        ops = [k for k in data if k != "field"]
        pair = self.language.pairs.get(frozenset(ops))
        if pair is not None:
            return self.step(pair, field, spec, data, path)
        if len(ops) != 1:
            paired = [o for o in self.language.operators.values() if o.with_]
            raise self.fail(
                path,
                f"a field condition has one operator: {', '.join(self.language.single())}, or "
                f"{'/'.join(o.name for o in paired)} with "
                f"{'/'.join(dict.fromkeys(str(o.with_) for o in paired))}",
            )
        op = ops[0]
        found = self.language.operators.get(op) if isinstance(op, str) else None
        if found is not None and found.compile is not None and found.with_ is None:
            return self.step(found, field, spec, data, path)
        raise self.fail(
            path + (op,), f"unknown operator {_q(op)}", key=True, hint=self.language.hint(op)
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
        an equivalent more than 2.5 % off the limit is refused as a typo. For every operator,
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

        Whole words, in any case. Marker lists written short name every marker: CD19/22
        and CD19CD22 mention CD22.

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
        """The date lies within the span before screening or another anchor, both days included.

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
        """The date lies at least the span before screening or another anchor.

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
        for other in _DATED:
            if other in data:
                raise self.fail(at, f"if_missing does not go with {other}")
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
        for other in _DATED[1:]:
            if other in data:
                raise self.fail(path + (other,), f"{other} does not go with fresh", key=True)
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

    # ----------------------------------------------------------------------- lab series

    def series_test(
        self, name: str, data: dict[str, Any], path: PathKey, scope: v.Record
    ) -> tuple[str, v.Lab]:
        """The lab a series modifier reads, checked: a lab of the patient's, with no other
        modifier that reads its dates."""
        field = data["field"]
        spec = self.field_spec(field, path + ("field",), scope)
        if scope is not self.root or not isinstance(spec, v.Lab):
            raise self.fail(
                path + (name,),
                f"{name} reads a lab's dated results; {field} is {spec.label}, not a lab",
            )
        if field in self.vocabulary.derivations:
            inputs = ", ".join(f for _, f in self.vocabulary.derivations[field].inputs)
            raise self.fail(
                path + (name,),
                f"{name} reads a lab's dated results, and {field} is computed from the latest "
                "of its inputs: it has no series",
                f"apply {name} to what it is computed from ({inputs})",
            )
        for other in _DATED:
            if other != name and other in data:
                raise self.fail(path + (other,), f"{other} does not go with {name}", key=True)
        if "if_missing" in data:
            raise self.fail(path + ("if_missing",), f"if_missing does not go with {name}")
        return field, spec

    def compared(self, name: str, data: dict[str, Any], path: PathKey, scope: v.Record) -> Compare:
        """The comparison a series modifier applies to each result."""
        inner = self.test({k: x for k, x in data.items() if k != name}, path, scope)
        if not isinstance(inner, Compare):
            raise self.fail(path, f"{name} goes with a comparison: lt, le, gt, ge, eq or ne")
        return inner

    @modifier("worst", WINDOW)
    def worst(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        """The worst result dated within the span decides: every one must meet it.

        For a lab written as a list of dated results: with le or lt the highest result is
        the worst, with ge or gt the lowest, and a multiple of the ULN is taken with each
        result's own ULN. No result in the span leaves it unknown, asking for one.

        fail:
          field: labs.platelets
          ge: 50 x10^9/L
          worst: {within: 14 days, before: screening}
        pass:
          field: labs.platelets
          ge: 50 x10^9/L
          worst: {within: 3 days, before: screening}
        unknown:
          field: labs.platelets
          ge: 50 x10^9/L
          worst: {within: 7 days, before: lymphodepletion}
        """
        field, _ = self.series_test("worst", data, path, scope)
        window = self.mapping(
            data["worst"], path + ("worst",), {"within", "before"}, {"within", "before"}, "worst"
        )
        inner = self.compared("worst", data, path, scope)
        if inner.op not in ("lt", "le", "gt", "ge"):
            raise self.fail(path + (inner.op,), "worst goes with lt, le, gt or ge", key=True)
        span = self.window(f"{field}.date", v.Date("date"), window, path + ("worst",))
        return Worst(field, span, inner, inner.label, field in self.vocabulary.stand_ins)

    @modifier("occasions", OCCASIONS)
    def occasions(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        """The condition holds on at least so many results dated within the span.

        For a lab written as a list of dated results: on `times` days in the span a result
        meets it (of one day's results, the last written counts; with `consecutive: true`,
        the latest `times` days all do). The latest need not meet it unless consecutive:
        combine with a plain condition for that. Fewer is a fail when the latest result in
        the span does not meet it, and unknown, asking for a further result, when it does.

        pass:
          field: labs.platelets
          ge: 50 x10^9/L
          occasions: {times: 2, within: 14 days, before: screening}
        fail:
          field: labs.platelets
          ge: 70 x10^9/L
          occasions: {times: 2, within: 14 days, before: screening}
        unknown:
          field: labs.platelets
          ge: 50 x10^9/L
          occasions: {times: 3, within: 14 days, before: screening, consecutive: true}
        """
        field, _ = self.series_test("occasions", data, path, scope)
        at = path + ("occasions",)
        given = self.mapping(
            data["occasions"],
            at,
            {"times", "within", "before", "consecutive"},
            {"times", "within", "before"},
            "occasions",
        )
        times = given["times"]
        if isinstance(times, bool) or not isinstance(times, int) or times < 2:
            raise self.fail(
                at + ("times",), f"times is a whole number of results, 2 or more, not {_q(times)}"
            )
        consecutive = given.get("consecutive", False)
        if not isinstance(consecutive, bool):
            raise self.fail(at + ("consecutive",), "consecutive is true or false")
        inner = self.compared("occasions", data, path, scope)
        window = {"within": given["within"], "before": given["before"]}
        span = self.window(f"{field}.date", v.Date("date"), window, at)
        measured = field in self.vocabulary.stand_ins
        return Occasions(field, span, inner, inner.label, measured, times, consecutive)

    @modifier("change", CHANGE)
    def change(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        """The change of a lab from a baseline result to the latest is compared instead.

        The operator's limit is a change in the lab's units (`ge: 0.3 mg/dL` a rise of at
        least 0.3 mg/dL, `le: -10 x10^9/L` a fall of at least 10), or with `relative: true`
        a change in per cent of the baseline (`ge: 50 %`). The baseline is the first
        result recorded (`since: first`) or the last one dated on or before an anchor
        (`since: screening`, `since: lymphodepletion`); without a later result, or without
        the anchor's date, it is unknown.

        pass:
          field: labs.creatinine
          ge: 0.3 mg/dL
          change: {since: first}
        fail:
          field: labs.creatinine
          ge: 60 %
          change: {since: first, relative: true}
        unknown:
          field: labs.creatinine
          ge: 0.3 mg/dL
          change: {since: treatment_start}
        """
        field, spec = self.series_test("change", data, path, scope)
        at = path + ("change",)
        given = self.mapping(data["change"], at, {"since", "relative"}, {"since"}, "change")
        since = given["since"]
        anchors = self.vocabulary.anchors
        if since != "first":
            self.anchor(
                since,
                at + ("since",),
                f"since is first or one of {', '.join(anchors)}, not {_q(since)}",
            )
        relative = given.get("relative", False)
        if not isinstance(relative, bool):
            raise self.fail(at + ("relative",), "relative is true or false")
        ops = [k for k in data if k not in ("field", "change")]
        if len(ops) != 1 or ops[0] not in OPERATORS:
            raise self.fail(path, "a change is compared with one of lt, le, gt, ge, eq or ne")
        op = ops[0]
        raw = data[op]
        limit: Measure | float
        if relative:
            match = _PERCENT.match(raw) if isinstance(raw, str) else None
            if match is None:
                raise self.fail(
                    path + (op,), "a relative change is in per cent, such as 50 % or -25 %"
                )
            limit = float(match.group(1))
        elif isinstance(raw, str) and _ULN.match(raw):
            raise self.fail(
                path + (op,), "a change is in the lab's units, not a multiple of the ULN"
            )
        else:
            limit = self.amount(spec.value, raw, path + (op,))
        analyte = spec.value.analyte if isinstance(spec.value, v.Quantity) else None
        return Change(
            field,
            op,
            limit,
            relative,
            since,
            spec.label,
            analyte,
            anchors[since] if since != "first" else None,
            field in self.vocabulary.stand_ins,
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
                value = self.doc.written(path, value)
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
            self.meant(spec, op, amount, path)
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
            self.meant(spec, op, float(raw), path)
            return Compare(field, op, Threshold(float(raw)), label)
        raise self.fail(path, f"{label} cannot be compared with {op}; use is or in")

    def meant(self, spec: v.Spec, op: str, amount: Measure | float, path: PathKey) -> None:
        # A threshold outside what the field can be (its declared range) decides every
        # patient alike: a typo (`ge: -18 years`, `le: 0 mg/dL`), never a criterion.
        if (why := v.unmeant(spec, op, amount)) is not None:
            raise self.fail(path, f"threshold for {spec.label} {why}")

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
        anchors = self.vocabulary.anchors
        anchor = self.anchor(
            data["before"], path + ("before",), f"before must be one of {', '.join(anchors)}"
        )
        return Window(
            field,
            within,
            anchor,
            spec.label,
            at_least=span == "at_least",
            anchor_field=anchors[anchor],
        )

    def anchor(self, value: Any, at: PathKey, message: str) -> str:
        """An anchor a span counts from, by its name in the vocabulary in use; else the
        error `message`, with the name meant or how to declare one."""
        anchors = self.vocabulary.anchors
        # A list or mapping written here would not even hash: refuse it as what it is.
        if isinstance(value, str) and value in anchors:
            return value
        guess = nearest(value, list(anchors)) if isinstance(value, str) else None
        raise self.fail(
            at,
            message,
            f"did you mean {guess!r}?"
            if guess
            else "a date of the trial's own is declared with `anchor:` in a vocabulary.yaml",
        )
