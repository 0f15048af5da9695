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
from functools import lru_cache
from pathlib import Path
from typing import Any

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
    Mentions,
    Node,
    Not,
    OneOf,
    Review,
    Threshold,
    Unrecorded,
    Window,
    words_of,
)
from screener.reading._document import Document, PathKey, load, parse
from screener.reading._patient import normalise_mutation

_LEAVES: dict[Node, Node] = {}
# ASCII digits only, to the end of the text: Python's \d also matches Arabic-Indic and
# other digits (NCT٠٠٠…), and $ a final line break, which would make look-alike ids.
_ULN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:x|×|\*)?\s*ULN\s*\Z", re.IGNORECASE | re.ASCII)
_CRITERION_ID = re.compile(r"^([IE])(\d+)\Z", re.ASCII)
_TRIAL_ID = re.compile(r"^NCT\d{8}\Z", re.ASCII)
# Spellings other languages use for the operators, so the hint names the right one
# (difflib alone suggests lt for lte).
_OPERATOR_ALIASES = {
    "lte": "le",
    "gte": "ge",
    "<": "lt",
    "<=": "le",
    ">": "gt",
    ">=": "ge",
    "=": "eq",
    "==": "eq",
    "!=": "ne",
    "neq": "ne",
    "equals": "eq",
}


@dataclass(frozen=True)
class Part:
    id: str
    label: str
    text: str
    check: Node


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
    # The item types its list conditions look for, by list ("conditions": gvhd, stroke, …),
    # so a worklist can say which conditions to ask about.
    asks: tuple[tuple[str, tuple[str, ...]], ...] = ()


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

    def criterion(self, cid: str) -> Criterion | None:
        return next((c for c in self.criteria if c.id == cid), None)


class _Compiler:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
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
        if not _TRIAL_ID.match(trial):
            raise self.fail(
                ("trial",), f"trial id {_q(trial)} is not an NCT number (NCT + 8 digits)"
            )
        stem = Path(self.doc.file).stem
        if stem != trial and not self.doc.file.startswith("<"):
            raise self.fail(
                ("trial",),
                f"rule file {Path(self.doc.file).name} holds trial {trial}",
                f"name the file {trial}.yaml",
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
            check = self.node(data["check"], path + ("check",), v.PATIENT, False)
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
            asks=asked_types([check] if check is not None else [p.check for p in parts]),
        )

    def part(self, data: Any, path: PathKey, cid: str) -> Part:
        data = self.mapping(
            data, path, {"id", "label", "text", "check"}, {"id", "label", "check"}, "a part"
        )
        pid = self.text(data["id"], path + ("id",), "id")
        if not re.match(rf"^{re.escape(cid)}\.[a-z]$", pid):
            raise self.fail(path + ("id",), f"part id {_q(pid)} must be {cid}.a, {cid}.b, …")
        check = self.node(data["check"], path + ("check",), v.PATIENT, False)
        return Part(
            pid,
            self.text(data["label"], path + ("label",), "label"),
            self.text(data["text"], path + ("text",), "text") if "text" in data else "",
            check,
        )

    # --------------------------------------------------------------------------- nodes

    def node(self, data: Any, path: PathKey, scope: v.Record, negated: bool) -> Node:
        if not isinstance(data, dict) or not data:
            raise self.fail(path, "a condition must be a mapping such as {field: ecog, le: 2}")
        keys = set(data)
        if "field" in keys:
            return self.leaf(data, path, scope)
        for name in ("all", "any"):
            if name in keys:
                self.mapping(data, path, {name}, {name}, f"an {name!r} node")
                items = self.list_of_nodes(data[name], path + (name,), scope, negated)
                return All(items) if name == "all" else Any_(items)
        if "not" in keys:
            self.mapping(data, path, {"not"}, {"not"}, "a 'not' node")
            return Not(self.node(data["not"], path + ("not",), scope, not negated))
        if "at_least" in keys:
            self.mapping(data, path, {"at_least", "of"}, {"at_least", "of"}, "an 'at_least' node")
            count = data["at_least"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise self.fail(path + ("at_least",), "at_least needs a whole number ≥ 1")
            items = self.list_of_nodes(data["of"], path + ("of",), scope, negated)
            if count > len(items):
                raise self.fail(path + ("at_least",), f"at_least {count} of only {len(items)}")
            return AtLeast(count, items)
        if "if" in keys:
            self.mapping(data, path, {"if", "then", "else"}, {"if", "then"}, "an 'if' node")
            before = self.reviews
            condition = self.node(data["if"], path + ("if",), scope, negated)
            if self.reviews != before:
                raise self.fail(path + ("if",), "a review cannot decide whether an 'if' applies")
            otherwise = (
                self.node(data["else"], path + ("else",), scope, negated)
                if "else" in data
                else None
            )
            return If(
                condition,
                self.node(data["then"], path + ("then",), scope, negated),
                otherwise,
                inapplicable=(self.kind is Kind.INCLUSION) != negated,
            )
        if "review" in keys:
            self.mapping(data, path, {"review"}, {"review"}, "a 'review' node")
            if negated:
                raise self.fail(
                    path,
                    "a review cannot sit under 'not'",
                    "an attestation must move its criterion the way it says",
                )
            self.reviews += 1
            return Review(self.text(data["review"], path + ("review",), "review"))
        for name in ("exists", "every", "count"):
            if name in keys:
                return self.over_list(name, data, path, scope, negated)
        raise self.fail(
            path,
            f"unknown condition with keys {', '.join(map(str, sorted(keys)))}",
            "use all, any, not, at_least, if, review, exists, every, count or field",
        )

    def list_of_nodes(
        self, data: Any, path: PathKey, scope: v.Record, negated: bool
    ) -> tuple[Node, ...]:
        if not isinstance(data, list) or not data:
            raise self.fail(path, "expected a non-empty list of conditions")
        return tuple(self.node(item, path + (i,), scope, negated) for i, item in enumerate(data))

    def over_list(
        self, name: str, data: dict[str, Any], path: PathKey, scope: v.Record, negated: bool
    ) -> Node:
        allowed = (
            {name, "where", "label"}
            | ({"check"} if name == "every" else set())
            | ({"distinct", *NEGATED} if name == "count" else set())
        )
        required = {name} | ({"check"} if name == "every" else set())
        self.mapping(data, path, allowed, required, f"a {name!r} node")
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
        if name == "exists":
            return Exists(list_path, where, item, label)
        if name == "every":
            check = self.node(data["check"], path + ("check",), item, negated)
            return Every(list_path, where, item, label, check)
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

    def field_spec(self, name: Any, path: PathKey, scope: v.Record) -> v.Spec:
        if not isinstance(name, str):
            raise self.fail(path, "a field name must be text such as labs.creatinine")
        spec = v.resolve(name, scope)
        if spec is None:
            names = v.field_names(scope) + (list(v.DERIVED) if scope is v.PATIENT else [])
            guess = nearest(name, names)
            raise self.fail(
                path,
                f"unknown field {_q(name)}"
                + ("" if scope is v.PATIENT else f" in a {scope.label}"),
                f"did you mean {guess!r}?" if guess else None,
            )
        return spec

    def leaf(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        if "if_missing" in data:
            return self.unrecorded(data, path, scope)
        node = self._leaf(data, path, scope)
        # Equal leaves of different criteria and trials become one object, so screening
        # a patient computes each once (conditions.Leaf memoises by identity).
        return _LEAVES.setdefault(node, node)

    def unrecorded(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        """`if_missing: false`: what a condition means when its fact is not recorded."""
        value = data["if_missing"]
        at = path + ("if_missing",)
        if not isinstance(value, bool):
            raise self.fail(at, f"if_missing is true or false, not {_q(value)}")
        if "fresh" in data:
            raise self.fail(at, "if_missing does not go with fresh")
        rest = {k: x for k, x in data.items() if k != "if_missing"}
        return Unrecorded(self.leaf(rest, path, scope), value)

    def _leaf(self, data: dict[str, Any], path: PathKey, scope: v.Record) -> Node:
        field = data["field"]
        spec = self.field_spec(field, path + ("field",), scope)
        if "fresh" in data:
            return self.fresh(field, spec, data, path, scope)
        if ".markers." in f".{field}":
            # A marker's fields read as "CD19 result", not a bare "result".
            marker = field.split("markers.", 1)[1].split(".")[0]
            spec = replace(spec, label=f"{marker} {spec.label}")
        ops = [k for k in data if k != "field"]
        if set(ops) in ({"within", "before"}, {"at_least", "before"}):
            return self.window(field, spec, data, path)
        if len(ops) != 1:
            raise self.fail(
                path,
                "a field condition has one operator: lt, le, gt, ge, eq, ne, is, "
                "in, contains, mentions, or within/at_least with before",
            )
        op = ops[0]
        at = path + (op,)
        if op in NEGATED and isinstance(spec, v.Date):
            # A date is compared with another date of the patient's, named by its field.
            other = data[op]
            if not isinstance(other, str) or not isinstance(
                self.field_spec(other, at, v.PATIENT), v.Date
            ):
                raise self.fail(
                    at,
                    f"a date is compared with another date field, not {_q(other)}",
                    "for a span before screening use within/at_least with before",
                )
            return DateOrder(field, op, other, spec.label)
        if op in NEGATED:
            return self.compare(field, spec, op, data[op], at)
        if op == "mentions":
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
        if op in ("is", "in"):
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
        if op == "contains":
            if not isinstance(spec, v.Mutations):
                raise self.fail(at, f"contains works on a list of mutations, not {spec.label}")
            name = normalise_mutation(str(data[op]))
            if name is None:
                raise self.fail(at, f"cannot read {_q(data[op])} as a protein change")
            return Contains(field, name, spec.label)
        guess = _OPERATOR_ALIASES.get(str(op).lower()) or nearest(
            str(op), [*NEGATED, "is", "in", "contains", "mentions", "within"]
        )
        raise self.fail(
            at,
            f"unknown operator {_q(op)}",
            key=True,
            hint=f"did you mean {guess!r}?" if guess else None,
        )

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
            amount = self.amount(value_spec, raw, path)
            if isinstance(amount, Measure) and amount.magnitude < 0:
                # Ages, durations, masses and concentrations are never negative: such a
                # threshold is a typo (`ge: -18 years`) that would pass every patient.
                raise self.fail(path, f"threshold for {label} cannot be negative: {amount.written}")
            return Compare(field, op, Threshold(amount), label, value_spec.analyte)
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

    def amount(self, spec: v.Spec, raw: Any, path: PathKey) -> Measure | float:
        if isinstance(spec, v.Quantity):
            try:
                return units.parse_measure(raw, spec.kind, spec.analyte)
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
        if anchor not in ANCHORS:
            raise self.fail(path + ("before",), f"before must be one of {', '.join(ANCHORS)}")
        return Window(field, within, anchor, spec.label, at_least=span == "at_least")

    def fresh(
        self, field: str, spec: v.Spec, data: dict[str, Any], path: PathKey, scope: v.Record
    ) -> Node:
        """`fresh: {within: 3 months, before: screening}` on a leaf whose record has a date."""
        window = self.mapping(
            data["fresh"], path + ("fresh",), {"within", "before"}, {"within", "before"}, "fresh"
        )
        date_field = (
            f"{field}.date" if isinstance(spec, v.Lab) else field.rsplit(".", 1)[0] + ".date"
        )
        if (
            "." not in field
            and not isinstance(spec, v.Lab)
            or not isinstance(v.resolve(date_field, scope), v.Date)
        ):
            raise self.fail(path + ("fresh",), f"{field} has no date to be fresh by")
        inner = self.leaf({k: x for k, x in data.items() if k != "fresh"}, path, scope)
        label = (
            spec.label
            if isinstance(spec, v.Lab)
            else (v.resolve(field.rsplit(".", 1)[0], scope) or spec).label
        )
        if ".markers." in f".{field}":
            label = field.split("markers.", 1)[1].split(".")[0] + " " + label
        return Fresh(
            date_field,
            self.window(date_field, v.Date("date"), window, path + ("fresh",)),
            inner,
            label,
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


def from_document(doc: Document) -> RuleSet:
    if doc.data is None:
        raise RuleSetError(doc.diagnostic("file is empty: a rule set is one YAML mapping", ()))
    if not isinstance(doc.data, dict):
        raise RuleSetError(doc.diagnostic("a rule set is one YAML mapping", ()))
    return _Compiler(doc).rule_set()


def load_rule_set(path: str | Path, display: str | None = None) -> RuleSet:
    """Load and check one rule file; raises RuleSetError with the rule file:line at fault."""
    return from_document(load(Path(path), display, RuleSetError))


def parse_rule_set(text: str, file: str = "<rules>") -> RuleSet:
    return from_document(parse(text, file, RuleSetError))
