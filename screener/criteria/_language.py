"""The rule language, declared once.

Every node kind (`all`, `not`, `exists`, `field`, …), field operator (`le`, `in`,
`within`, …) and modifier (`fresh`, `if_missing`) is declared by a decorator on the
compiler step that compiles it (criteria._compile_nodes, criteria._compile_fields), with its
keys and a docstring: a one-line summary, optional detail, and examples, each a condition
with the status it gives on EXAMPLE_PATIENT. From these declarations the compiler
dispatches, criteria._schema writes the rules JSON Schema and criteria._docs writes
docs/rule-language.md; tests run every example. So the grammar, the schema, the reference
page and the compiler cannot disagree.

The shape follows yamllint (a rule carries its id, its options and its documentation) and
sqlfluff (a rule's passing and failing cases are data beside it).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from screener.core import _vocabulary as v
from screener.core._errors import nearest

# The dates a span is counted back from, as the built-in vocabulary names them (a rules
# directory's vocabulary may declare more: the compiler checks against the one in use).
ANCHORS = tuple(v.BUILTIN.anchors)

# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Value:
    """How a key's value is written: in words for the reference page, and as JSON Schema
    for editors (the compiler checks more than a schema can: fields, units, values)."""

    words: str
    schema: Mapping[str, Any]


_TEXT: Mapping[str, Any] = {"type": "string", "minLength": 1}
_NODE: Mapping[str, Any] = {"$ref": "#/$defs/node"}
_DURATION: Mapping[str, Any] = {"type": "string", "examples": ["6 months", "12 weeks", "3 days"]}
_ANCHOR: Mapping[str, Any] = {"type": "string", "minLength": 1, "examples": list(ANCHORS)}

CONDITION = Value("a condition", _NODE)
CONDITIONS = Value(
    "a non-empty list of conditions", {"type": "array", "items": _NODE, "minItems": 1}
)
TEXT = Value("text", _TEXT)
FIELD = Value("a field name, such as labs.creatinine", _TEXT)
ITEM_FIELD = Value("a field of the list's items, such as type", _TEXT)
LIST = Value("a list of records, such as therapies", _TEXT)
AT_LEAST = Value(
    "a whole number ≥ 1, at most the number of conditions", {"type": "integer", "minimum": 1}
)
WHOLE = Value("a whole number ≥ 0", {"type": "integer", "minimum": 0})
THRESHOLD = Value(
    "a number, a quantity (18 years, 1.5 mg/dL), a multiple of the lab's ULN (3 x ULN), "
    "or, for a date field, another date field",
    {},
)
ONE_VALUE = Value("a value of the field: a word, a whole number, or true/false", {})
VALUES = Value("a non-empty list of values of the field", {"type": "array", "minItems": 1})
MUTATION = Value("a protein change, such as T315I", _TEXT)
WORDS = Value(
    "a word or a non-empty list of words",
    {"anyOf": [_TEXT, {"type": "array", "items": _TEXT, "minItems": 1}]},
)
DURATION = Value("a duration, such as 6 months", _DURATION)
_ANCHOR_WORDS = f"{', '.join(ANCHORS[:-1])} or {ANCHORS[-1]}"
ANCHOR = Value(f"{_ANCHOR_WORDS} (or an anchor a vocabulary file declares)", _ANCHOR)
BOOLEAN = Value("true or false", {"type": "boolean"})
OCCASIONS = Value(
    "{times: a whole number ≥ 2, within: a duration, before: an anchor, consecutive: "
    "true or false}",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["times", "within", "before"],
        "properties": {
            "times": {"type": "integer", "minimum": 2},
            "within": _DURATION,
            "before": _ANCHOR,
            "consecutive": {"type": "boolean"},
        },
    },
)
CHANGE = Value(
    "{since: first or an anchor, relative: true or false}",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["since"],
        "properties": {"since": _ANCHOR, "relative": {"type": "boolean"}},
    },
)
WINDOW = Value(
    "{within: a duration, before: an anchor, as for within}",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["within", "before"],
        "properties": {"within": _DURATION, "before": _ANCHOR},
    },
)


@dataclass(frozen=True)
class Key:
    """One key of a node kind: its name, how its value is written, and what it means."""

    name: str
    value: Value
    doc: str


# ----------------------------------------------------------------------- documentation

STATUSES = ("pass", "fail", "unknown", "review")
_EXAMPLE = re.compile(rf"^({'|'.join(STATUSES)}):(?: (.*))?$")


@dataclass(frozen=True)
class Example:
    """A condition (YAML, as a rule author writes it under `check:`) and the status it gives
    as the check of an inclusion criterion screened on EXAMPLE_PATIENT."""

    status: str
    check: str


@dataclass(frozen=True)
class Doc:
    summary: str  # one line
    detail: str  # paragraphs, may be empty
    examples: tuple[Example, ...]


def parse_doc(text: str | None) -> Doc:
    """A step's docstring: the summary line, detail paragraphs, and example lines.

    An example starts with its status (`pass: {field: ecog, le: 2}`); lines indented below
    it continue it, so an example may be block YAML.
    """
    lines = inspect.cleandoc(text or "").splitlines()
    if not lines or not lines[0].strip():
        raise ValueError("a rule-language step needs a docstring")
    detail: list[str] = []
    examples: list[list[str]] = []
    statuses: list[str] = []
    for line in lines[1:]:
        match = _EXAMPLE.match(line)
        if match:
            statuses.append(match.group(1))
            examples.append([match.group(2)] if match.group(2) else [])
        elif examples and (line.startswith(" ") or not line.strip()):
            examples[-1].append(line)
        elif examples:
            raise ValueError(f"text after the examples of {lines[0]!r}: {line!r}")
        else:
            detail.append(line)
    return Doc(
        summary=lines[0].strip(),
        detail="\n".join(detail).strip(),
        examples=tuple(
            Example(status, inspect.cleandoc("\n".join(body)))
            for status, body in zip(statuses, examples)
        ),
    )


# ------------------------------------------------------------------------ declarations


@dataclass(frozen=True)
class NodeKind:
    """A kind of condition, recognised by its own key (`all`, `exists`, `field`, …)."""

    name: str
    keys: tuple[Key, ...]  # the first is the kind's own key
    required: tuple[str, ...]
    # The step: (compiler, data, path, scope, negated) -> Node.
    compile: Callable[..., Any]
    doc: Doc
    what: str  # how an error names it: "an 'all' node"
    # A field condition takes the field operators and modifiers besides its own keys and
    # checks them itself, so that a misspelt operator is named as one.
    takes_operators: bool = False
    # Keys let past the key check so that the step can refuse them with a better message
    # than "unknown key" (count with eq: "count needs exactly one of lt, le, gt, ge").
    tolerated: tuple[str, ...] = ()

    @property
    def accepted(self) -> set[str]:
        """The keys the reader lets a node of this kind have."""
        return {k.name for k in self.keys} | set(self.tolerated)


@dataclass(frozen=True)
class Operator:
    """A field condition's test (`le: 2`, `in: [relapsed, refractory]`)."""

    name: str
    value: Value
    # The step: (compiler, op, field, spec, data, path) -> Node; None for a key that only
    # completes another (before, with within or at_least).
    compile: Callable[..., Any] | None
    doc: Doc
    aliases: tuple[str, ...] = ()  # spellings from other languages, for the hint (lte → le)
    with_: str | None = None  # the key it is written with (within … before …)


@dataclass(frozen=True)
class Modifier:
    """A key that changes what a field condition means (`fresh`, `if_missing`)."""

    name: str
    value: Value
    # The step: (compiler, data, path, scope) -> Node, given the whole field condition.
    compile: Callable[..., Any]
    doc: Doc


Entry = NodeKind | Operator | Modifier
F = TypeVar("F", bound=Callable[..., Any])


def _declare(make: Callable[[Callable[..., Any]], Entry]) -> Callable[[F], F]:
    def mark(step: F) -> F:
        # Decorators apply bottom-up: prepend, so stacked declarations keep reading order.
        step._declares = (make(step), *getattr(step, "_declares", ()))  # type: ignore[attr-defined]
        return step

    return mark


def node_kind(
    name: str,
    *keys: Key,
    required: Iterable[str] | None = None,
    what: str | None = None,
    takes_operators: bool = False,
    tolerated: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Declare the decorated compiler step as the one for node kind `name`; its docstring
    is the kind's documentation. `keys` start with the kind's own key."""
    return _declare(
        lambda step: NodeKind(
            name,
            keys,
            tuple(required) if required is not None else (name,),
            step,
            parse_doc(step.__doc__),
            what or f"a {name!r} node",
            takes_operators,
            tolerated,
        )
    )


def operator(
    name: str,
    value: Value,
    doc: str | None = None,
    aliases: tuple[str, ...] = (),
    with_: str | None = None,
) -> Callable[[F], F]:
    """Declare the decorated step as field operator `name` (doc: the step's docstring,
    unless several operators share the step)."""
    return _declare(
        lambda step: Operator(name, value, step, parse_doc(doc or step.__doc__), aliases, with_)
    )


def modifier(name: str, value: Value) -> Callable[[F], F]:
    return _declare(lambda step: Modifier(name, value, step, parse_doc(step.__doc__)))


def companion(name: str, value: Value, doc: str) -> Operator:
    """A key with no step of its own, written with another operator (before)."""
    return Operator(name, value, None, parse_doc(doc))


# ---------------------------------------------------------------------------- language


@dataclass(frozen=True)
class Language:
    """Every declaration of a compiler, in the order its classes declare them: the
    compiler's own class first, then each base in turn (criteria._rules builds the compiler
    in layers, the node kinds' on top of the field conditions')."""

    kinds: Mapping[str, NodeKind]
    operators: Mapping[str, Operator]
    modifiers: Mapping[str, Modifier]
    # Worked out once from the above, as the compiler asks for every condition.
    # The order kinds are tried in: a field condition first, as one of its operators
    # (at_least) is also a node kind's key.
    dispatch: tuple[NodeKind, ...] = ()
    # Operators written as a pair, by their keys: {within, before} -> within.
    pairs: Mapping[frozenset[str], Operator] = field(default_factory=dict)

    @classmethod
    def of(cls, compiler: type, *companions: Operator) -> Language:
        # A step a subclass overrides is the subclass's: the first of a name counts.
        steps: dict[str, Any] = {}
        for layer in compiler.__mro__:
            for name, step in vars(layer).items():
                steps.setdefault(name, step)
        entries = [entry for step in steps.values() for entry in getattr(step, "_declares", ())]
        entries += companions
        kinds = {e.name: e for e in entries if isinstance(e, NodeKind)}
        operators = {e.name: e for e in entries if isinstance(e, Operator)}
        modifiers = {e.name: e for e in entries if isinstance(e, Modifier)}
        if len(kinds) + len(operators) + len(modifiers) != len(entries):  # pragma: no cover
            raise ValueError("a node kind, operator or modifier is declared twice")
        return cls(
            kinds,
            operators,
            modifiers,
            tuple(sorted(kinds.values(), key=lambda k: not k.takes_operators)),
            {frozenset((o.name, o.with_)): o for o in operators.values() if o.with_},
        )

    def kind_for(self, data: Mapping[str, Any]) -> NodeKind | None:
        """The kind a condition's keys name."""
        for kind in self.dispatch:
            if kind.name in data:
                return kind
        return None

    def allowed(self, kind: NodeKind) -> tuple[Key, ...]:
        """Every key a kind takes, its operators and modifiers included."""
        if not kind.takes_operators:
            return kind.keys
        extra: list[Operator | Modifier] = [*self.operators.values(), *self.modifiers.values()]
        return kind.keys + tuple(Key(e.name, e.value, e.doc.summary) for e in extra)

    def single(self) -> list[str]:
        """Operators written alone in a field condition (le, in, mentions, …)."""
        paired = {name for o in self.operators.values() if o.with_ for name in (o.name, o.with_)}
        return [n for n, o in self.operators.items() if o.compile and n not in paired]

    def hint(self, op: object) -> str | None:
        """What to say of a key a field condition does not take as its operator."""
        firsts = [o for o in self.operators.values() if o.with_]
        if any(op == o.name for o in firsts):
            return f"{op} goes with {self.operators[str(op)].with_}"
        if any(op == o.with_ for o in firsts):
            return f"{op} goes with {' or '.join(o.name for o in firsts if o.with_ == op)}"
        aliases = {a: o.name for o in self.operators.values() for a in o.aliases}
        guess = aliases.get(str(op).lower()) or nearest(str(op), [*self.operators, *self.modifiers])
        return f"did you mean {guess!r}?" if guess else None


# ------------------------------------------------------------------------ the examples

# Every documented example is the check of an inclusion criterion screened on this patient
# (docs/rule-language.md shows it; tests/test_rule_language.py screens each example).
# LVEF, procedures and the trial's own dates (apheresis, lymphodepletion, …) are left out
# on purpose (what is not recorded is unknown), and `vaccinations: []` says none were
# given. Creatinine and platelets are lists of dated results; the latest decides unless a
# condition reads the series (worst, occasions, change).
EXAMPLE_PATIENT = """\
id: EXAMPLE-1
screening_date: 2026-03-02
age: 34 years
sex: female
ecog: 1
pregnancy_test: {result: negative, date: 2026-02-27}
diagnosis:
  disease: B-ALL
  status: relapsed
  cns_involvement: none
  ph_positive: true
  abl1_mutations: [T315I]
  markers:
    CD19: {result: positive, specimen: bone marrow, date: 2026-02-20}
labs:
  total_bilirubin: {value: 1.4 mg/dL, uln: 1.2 mg/dL}
  creatinine: [{value: 0.7 mg/dL, date: 2025-12-01}, {value: 97 umol/L, date: 2026-02-27}]
  platelets:
    - {value: 45 x10^9/L, date: 2026-02-18}
    - {value: 60 x10^9/L, date: 2026-02-24}
    - {value: 65 x10^9/L, date: 2026-02-28}
therapies:
  - {type: chemotherapy, regimen: hyper-CVAD, cycles: 4, date: 2024-09-01}
  - {type: tki, drug: imatinib, outcome: failed, date: 2024-10-01}
  - {type: tki, drug: ponatinib, outcome: failed, date: 2025-03-01}
  - {type: car-t, target: CD19, date: 2025-09-01, response: relapse}
conditions:
  - {type: myocardial_infarction, date: 2024-05-10}
medications:
  - {name: fluconazole}
vaccinations: []
"""
