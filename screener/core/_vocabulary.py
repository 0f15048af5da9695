"""The patient vocabulary: every field a patient file may hold, its kind and its label.

The fields are data (screener/data/vocabulary.yaml, one declaration per field); the kinds of
field are the classes here, and each kind carries its own behaviour: which keys its
declaration takes and how they build it, its JSON Schema fragment and an example value. So
a field of an existing kind is one YAML entry. One `Vocabulary` serves every side: the
patient loader reads and normalises values with it, the rule loader checks that a rule
names a real field, compares it with a value of the right kind and uses units of the right
dimension, the FHIR importer maps the codes it declares, the worklist groups fields into
the nurse's tasks, and docs/patient-format.md describes the same fields for people.

A rule author's vocabulary file extends the built-in one (`Vocabulary.extend`) into a new
object that is passed down explicitly; the built-in vocabulary (`BUILTIN`) is the default
everywhere and never changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any, ClassVar

import yaml

from screener.core import _reference as reference
from screener.core import _units as units
from screener.core._errors import Diagnostic, Position, RuleSetError, nearest
from screener.core._units import Analyte, Kind

FILE = Path(__file__).resolve().parent.parent / "data" / "vocabulary.yaml"
SHOWN_FILE = "screener/data/vocabulary.yaml"  # as errors name it, wherever it is installed
_FOLD = re.compile(r"[\s_\-'.]+")
_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z", re.ASCII)
_NUMBER = r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"

# Where a declaration is written: Document.diagnostic's signature (message, path, key=, hint=).
Locate = Callable[..., Diagnostic]
DocPath = tuple[str | int, ...]


def fold(text: str) -> str:
    """Spelling-insensitive key: case, spaces, hyphens, underscores and dots ignored."""
    return _FOLD.sub("", text.lower())


# ---------------------------------------------------------------------------- the kinds


@dataclass(frozen=True)
class Spec:
    """Base of all field kinds."""

    label: str
    # The worklist task that collects this field (vocabulary.yaml `tasks`); None: its
    # enclosing field's.
    task: str | None = field(default=None, kw_only=True)

    # The keys a declaration of this kind may hold besides the common ones.
    KEYS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def declared(cls, b: _Builder, path: str, e: dict[str, Any], children: dict[str, Spec]) -> Spec:
        """A field of this kind from its declaration (and its children's specs)."""
        return cls(e["label"], task=e.get("task"))

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of a value of this field."""
        return {"type": ["string", "integer"], "description": self.label}

    def example(self) -> str:
        """A value as a patient file would write it, for imports' TODO lines and the docs."""
        return "text"

    def form(self) -> str:
        """What a value looks like, in words, for docs/patient-format.md."""
        return "text"


@dataclass(frozen=True)
class Text(Spec):
    pass


@dataclass(frozen=True)
class Date(Spec):
    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date", "description": f"{self.label} (ISO)"}

    def example(self) -> str:
        return "YYYY-MM-DD"

    def form(self) -> str:
        return "an ISO date"


@dataclass(frozen=True)
class Bool(Spec):
    def schema(self) -> dict[str, Any]:
        return {"type": "boolean", "description": self.label}

    def example(self) -> str:
        return "true or false"

    def form(self) -> str:
        return "true/false"


@dataclass(frozen=True)
class Choice(Spec):
    """One of a fixed set of words; `synonyms` maps what a nurse might type to a value."""

    values: tuple[str, ...] = ()
    synonyms: tuple[tuple[str, str], ...] = ()

    KEYS = frozenset({"values", "synonyms"})

    @classmethod
    def declared(cls, b: _Builder, path: str, e: dict[str, Any], children: dict[str, Spec]) -> Spec:
        values, synonyms = b.choice(path, e)
        return cls(e["label"], values, synonyms, task=e.get("task"))

    def lookup(self) -> dict[str, str]:
        """Folded spelling -> value; built once per field, as every patient file asks."""
        return _choice_table(self.values, self.synonyms)

    def schema(self) -> dict[str, Any]:
        # The loader ignores case, spaces and hyphens; a schema cannot, so it lists the
        # canonical values first (offered for completion) and then the common spellings.
        words = list(self.values)
        for word in [*self.values, *(s for s, _ in self.synonyms)]:
            for form in (word, word.lower(), word.upper(), word[:1].upper() + word[1:]):
                if form not in words:
                    words.append(form)
        return {"description": f"{self.label}: one of {', '.join(self.values)}", "enum": words}

    def example(self) -> str:
        shown = list(self.values[:6]) + (["…"] if len(self.values) > 6 else [])
        return " / ".join(shown)

    def form(self) -> str:
        return "one of " + ", ".join(f"`{x}`" for x in self.values)


@cache
def _choice_table(values: tuple[str, ...], synonyms: tuple[tuple[str, str], ...]) -> dict[str, str]:
    table = {fold(v): v for v in values}
    table.update({fold(s): v for s, v in synonyms})
    return table


@dataclass(frozen=True)
class Integer(Spec):
    low: int = 0
    high: int = 10
    roman: bool = False  # NYHA classes are often written I-IV
    step: int = 1  # Karnofsky and Lansky scores go by tens

    KEYS = frozenset({"range", "roman", "step"})

    @classmethod
    def declared(cls, b: _Builder, path: str, e: dict[str, Any], children: dict[str, Spec]) -> Spec:
        low, high = b.bounds(path, e, "range", whole=True)
        step = e.get("step", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise b.fail(path, "step", "step is a whole number ≥ 1")
        return cls(e["label"], low, high, bool(e.get("roman")), step, task=e.get("task"))

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "integer",
            "minimum": self.low,
            "maximum": self.high,
            "description": self.label,
        }
        if self.step != 1:
            schema["multipleOf"] = self.step
        if self.roman:
            return {
                "description": self.label,
                "anyOf": [schema, {"enum": ["I", "II", "III", "IV"][self.low - 1 : self.high]}],
            }
        return schema

    def example(self) -> str:
        return f"{self.low} to {self.high}"

    def form(self) -> str:
        by = f" by {self.step}s" if self.step != 1 else ""
        roman = " (I–IV also)" if self.roman else ""
        return f"a whole number {self.low}–{self.high}{by}{roman}"


@dataclass(frozen=True)
class Number(Spec):
    """A unitless number such as an INR."""

    low: float = 0.0
    high: float = 1e6

    KEYS = frozenset({"range"})

    @classmethod
    def declared(cls, b: _Builder, path: str, e: dict[str, Any], children: dict[str, Spec]) -> Spec:
        low, high = b.bounds(path, e, "range", default=(0.0, 1e6))
        return cls(e["label"], low, high, task=e.get("task"))

    def schema(self) -> dict[str, Any]:
        return {
            "type": "number",
            "minimum": self.low,
            "maximum": self.high,
            "description": self.label,
        }

    def example(self) -> str:
        return "1.0"

    def form(self) -> str:
        return "a number (no unit)"


@dataclass(frozen=True)
class Quantity(Spec):
    kind: Kind = units.CONCENTRATION
    analyte: Analyte | None = None
    low: float | None = 0.0  # in `range_unit`; None = unbounded
    high: float | None = None
    range_unit: str = ""
    # A bare number read in this unit (`age: 47` is 47 years); "" = a bare number is refused.
    bare_number: str = ""
    above_zero: bool = False  # a weight of 0 kg is a typo, not a patient

    KEYS = frozenset(
        {"unit", "analyte", "molar_mass", "range", "range_unit", "bare_number", "above_zero"}
    )

    @classmethod
    def declared(cls, b: _Builder, path: str, e: dict[str, Any], children: dict[str, Spec]) -> Spec:
        kind, analyte = b.unit(path, e)
        low, high = b.bounds(path, e, "range", default=(0.0, None))
        low = None if low is None else float(low)
        return cls(
            e["label"],
            kind,
            analyte,
            low,
            high,
            b.range_unit(path, e, kind, analyte),
            str(e.get("bare_number", "")),
            bool(e.get("above_zero")),
            task=e.get("task"),
        )

    def accepted(self) -> list[str]:
        """The SPELLINGS keys this field accepts."""
        return accepted_units(self.kind, self.analyte)

    def schema(self) -> dict[str, Any]:
        keys = self.accepted()
        spellings = sorted(set().union(*(_forms(k) for k in keys)), key=lambda f: (-len(f), f))
        pattern = rf"^\s*{_NUMBER}\s*({'|'.join(re.escape(f) for f in spellings)})\s*$"
        shown = ", ".join(dict.fromkeys(units.SPELLINGS[k][1] for k in keys))
        schema: dict[str, Any] = {
            "type": "string",
            "pattern": pattern,
            "examples": [self.kind.example],
            "description": f"{self.label}: {self.kind.name} in {shown}",
        }
        if self.bare_number:
            bare = {
                "type": "number",
                "minimum": 0,
                "description": f"{self.label} in {self.bare_number}",
            }
            return {"anyOf": [schema, bare]}
        return schema

    def example(self) -> str:
        return self.kind.example

    def form(self) -> str:
        shown = ", ".join(dict.fromkeys(f"`{units.SPELLINGS[k][1]}`" for k in self.accepted()))
        return f"{self.kind.name} in {shown}"


Bounds = tuple[float | None, float | None]  # (low, high); None = no bound on that side


@dataclass(frozen=True)
class Lab(Spec):
    """A lab result: a bare quantity (or number), or {value, uln, date}.

    Plausibility, in `range_unit` ("" for a bare number such as the INR): a value or ULN
    outside `hard` cannot be a living patient's result, so it is an error (most often a unit
    slip, which the error names); a value outside `soft` is implausible, a warning that the
    result shows. A unit typo must not turn into a confident verdict.
    """

    value: Quantity | Number = field(default_factory=lambda: Number("value"))
    default_uln: str | None = None  # used only when the file gives none; said in the result
    uln_source: str | None = None
    hard: Bounds = (None, None)
    soft: Bounds = (None, None)
    range_unit: str = ""

    KEYS = frozenset(
        {"unit", "analyte", "molar_mass", "range_unit", "hard", "soft", "default_uln", "uln_source"}
    )

    @classmethod
    def declared(cls, b: _Builder, path: str, e: dict[str, Any], children: dict[str, Spec]) -> Spec:
        label = e["label"]
        value: Quantity | Number
        if "unit" in e:
            kind, analyte = b.unit(path, e)
            value = Quantity(label, kind, analyte)
            range_unit = b.range_unit(path, e, kind, analyte)
        else:
            for key in ("analyte", "molar_mass", "range_unit"):
                if key in e:
                    raise b.fail(path, key, f"{key} needs a unit", "a lab without unit is a number")
            value, range_unit = Number(label), ""
        default = e.get("default_uln")
        source = None
        if default is not None:
            default = str(default)
            source = b.source(path, e)
            b.check_uln(path, value, default)
        elif "uln_source" in e:
            raise b.fail(path, "uln_source", "uln_source goes with default_uln")
        return cls(
            label,
            value,
            default,
            source,
            b.bounds(path, e, "hard", default=(None, None)),
            b.bounds(path, e, "soft", default=(None, None)),
            range_unit,
            task=e.get("task"),
        )

    def schema(self) -> dict[str, Any]:
        value = self.value.schema()
        if isinstance(self.value, Number):  # a bare number (INR): its hard range
            low, high = self.hard
            value = {
                **value,
                **({"minimum": low} if low is not None else {}),
                **({"maximum": high} if high is not None else {}),
            }
        mapping = {
            "type": "object",
            "additionalProperties": False,
            "required": ["value"],
            "properties": {
                "value": value,
                "uln": value,
                "date": {"type": "string", "format": "date"},
            },
        }
        return {
            "description": f"{self.label}: a value, or {{value, uln, date}}",
            "anyOf": [value, mapping],
        }

    def example(self) -> str:
        inner = self.value
        sample = inner.kind.example if isinstance(inner, Quantity) else "1.0"
        return f"{{value: {sample}, uln: {sample}, date: YYYY-MM-DD}}"

    def form(self) -> str:
        return f"a lab: {self.value.form()}, or `{{value, uln, date}}`"


@dataclass(frozen=True)
class Record(Spec):
    """A mapping with known keys."""

    fields: dict[str, Spec] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    @classmethod
    def declared(cls, b: _Builder, path: str, e: dict[str, Any], children: dict[str, Spec]) -> Spec:
        required = tuple(k for k in children if b.required(path, k))
        return cls(e["label"], dict(children), required, task=e.get("task"))

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "description": self.label,
            "additionalProperties": False,
            "properties": {k: s.schema() for k, s in self.fields.items()},
            "required": list(self.required),
        }

    def example(self) -> str:
        return "{" + ", ".join(self.fields) + "}"

    def form(self) -> str:
        return "a mapping of the fields below"


@dataclass(frozen=True)
class Attestation(Record):
    """An investigator's decision on a judged criterion: `pass` or `fail`, or the same with
    who decided and when, `{result: pass, by: Dr A. Rivera, date: 2026-11-21}`."""

    def schema(self) -> dict[str, Any]:
        record = {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: s.schema() for k, s in self.fields.items()},
            "required": list(self.required),
        }
        return {
            "description": f"{self.label}: pass or fail, or {{result, by, date}}",
            "anyOf": [self.fields["result"].schema(), record],
        }

    def example(self) -> str:
        return "pass"

    def form(self) -> str:
        return "`pass` or `fail`, or `{result, by, date}`"


@dataclass(frozen=True)
class OpenMap(Spec):
    """A mapping whose keys are names (CD19, CD22) and values all of one kind."""

    value: Spec = field(default_factory=lambda: Text("value"))
    upper_keys: bool = False  # names with one canonical spelling: `cd19:` is CD19

    KEYS = frozenset({"upper_keys"})

    @classmethod
    def declared(cls, b: _Builder, path: str, e: dict[str, Any], children: dict[str, Spec]) -> Spec:
        if "*" not in children:
            raise b.fail(path, "kind", f"a map needs its values declared as {path}.*")
        return cls(e["label"], children["*"], bool(e.get("upper_keys")), task=e.get("task"))

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "description": self.label,
            "additionalProperties": self.value.schema(),
        }

    def example(self) -> str:
        return "{NAME: " + self.value.example() + "}"

    def form(self) -> str:
        return "a mapping by name"


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec = field(default_factory=lambda: Text("item"))

    @classmethod
    def declared(cls, b: _Builder, path: str, e: dict[str, Any], children: dict[str, Spec]) -> Spec:
        if "[]" not in children:
            raise b.fail(path, "kind", f"a list needs its items declared as {path}[]")
        return cls(e["label"], children["[]"], task=e.get("task"))

    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "description": f"{self.label} ([] = reviewed: none)",
            "items": self.item.schema(),
        }

    def example(self) -> str:
        return "a list ([] for none)"

    def form(self) -> str:
        return "a list (`[]` = reviewed: none)"


@dataclass(frozen=True)
class Mutations(Spec):
    """Protein changes such as T315I, also written p.T315I or p.Thr315Ile."""

    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "description": f"{self.label} ([] = tested, none found)",
            "items": {"type": "string", "examples": ["T315I", "p.T315I", "p.Thr315Ile"]},
        }

    def example(self) -> str:
        return "[T315I] ([] if none found)"

    def form(self) -> str:
        return "a list of protein changes (`T315I`, `p.T315I`, `p.Thr315Ile`; `[]` = none found)"


# The kinds a declaration may name; a kind of field that is not here is new Python.
KINDS: dict[str, type[Spec]] = {
    "text": Text,
    "date": Date,
    "bool": Bool,
    "choice": Choice,
    "integer": Integer,
    "number": Number,
    "quantity": Quantity,
    "lab": Lab,
    "record": Record,
    "attestation": Attestation,
    "map": OpenMap,
    "list": ListOf,
    "mutations": Mutations,
}
_CONTAINERS = {"record": ".", "attestation": ".", "map": ".*", "list": "[]"}
_COMMON = frozenset(
    {"kind", "label", "task", "required", "doc", "example", "codes", "worse", "used_by"}
)
_WORSE = ("high", "low", "positive")


def accepted_units(kind: Kind, analyte: Analyte | None) -> list[str]:
    """The SPELLINGS keys a field of this kind (and analyte) accepts."""
    keys = []
    for key in units.SPELLINGS:
        try:
            units.check_kind(key, kind, analyte)
        except units.UnitError:
            continue
        keys.append(key)
    return keys


def _forms(key: str) -> set[str]:
    """How a lab report may write one accepted unit: as listed, as displayed, any micro sign."""
    forms = {key, units.SPELLINGS[key][1]}
    for form in list(forms):
        if "mol" in form:
            plain = form.replace("µ", "u")
            forms |= {plain, plain.replace("u", "µ", 1), plain.replace("u", "μ", 1)}
    return forms


# ------------------------------------------------------------------------ the vocabulary


@dataclass(frozen=True)
class Task:
    """Something a nurse does that fills fields: order a test, ask a question, record."""

    name: str
    group: str  # the worklist heading: "tests to order", …
    title: str  # what to do; the fields' labels follow unless `whole`
    whole: bool = False  # the title says it all: fields are not listed


@dataclass(frozen=True)
class Observed:
    """A field the FHIR importer fills from Observations with these codes."""

    path: str
    worse: str  # high, low or positive: which of two simultaneous results is kept
    codes: tuple[tuple[str, str, str], ...]  # (system alias, code, display)


@dataclass(frozen=True)
class _Origin:
    """Where something was declared: its file, and the path of its key in that file."""

    file: str
    locate: Locate
    at: DocPath

    def where(self) -> str:
        return self.locate("", self.at, key=True).location()


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per catalog
class Vocabulary:
    entries: dict[str, dict[str, Any]]  # path -> declaration, in file order
    origins: dict[str, _Origin]  # path, or "choice:path:value", "unit:…", … -> declaration
    sources: dict[str, str]
    value_sets: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]]
    groups: dict[str, str]
    task_table: dict[str, Task]
    default_task: str
    derived_entries: dict[str, dict[str, Any]]
    unit_aliases: dict[str, str]  # normalised spelling -> SPELLINGS key
    tki_generations: dict[str, int]  # folded generic name -> generation
    tki_names: dict[str, str]  # folded brand or code -> generic name
    tki_known: tuple[str, ...]  # names as written, for did-you-mean hints
    medication_words: dict[str, tuple[str, ...]]  # class -> drug names (FHIR importer)
    files: tuple[str, ...]  # the extension files, in the order read

    # ----------------------------------------------------------------- built from data

    @cached_property
    def _built(self) -> tuple[Record, dict[str, Spec]]:
        return _Builder(self).build()

    @property
    def root(self) -> Record:
        """The patient record: every field a file may hold."""
        return self._built[0]

    @property
    def derived(self) -> dict[str, Spec]:
        """Facts computed from others; a rule may name them like any field."""
        return self._built[1]

    @cached_property
    def observations(self) -> tuple[Observed, ...]:
        found = []
        for path, e in self.entries.items():
            if "codes" in e:
                codes = tuple(
                    (system, code, str(display))
                    for system, table in e["codes"].items()
                    for code, display in table.items()
                )
                found.append(Observed(path, e["worse"], codes))
        return tuple(found)

    @cached_property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(self.task_table.values())

    def resolve(self, path: str, root: Spec | None = None) -> Spec | None:
        """The spec of a dotted field path (`labs.creatinine`, `diagnosis.markers.CD19.result`)."""
        if root is None or root is self.root:
            found = self.derived.get(path)
            if found is not None:
                return found
            root = self.root
        return _walk(path, root)

    def field_names(self, spec: Spec | None = None) -> list[str]:
        return field_names(self.root if spec is None else spec)

    def task(self, path: str) -> Task:
        """The task a field belongs to: its own, or its nearest enclosing field's.

        `labs.ast.uln` is in blood chemistry, `therapies[1].date` in prior therapies,
        `diagnosis.markers.CD19.date` in flow cytometry, anything undeclared in `record`."""
        spec: Spec | None = self.root
        found = self.default_task
        parts = [p for p in re.sub(r"\[\d*\]", "", path).split(".") if p]
        for part in parts:
            if isinstance(spec, Record):
                spec = spec.fields.get(part)
            elif isinstance(spec, OpenMap):
                spec = spec.value
            elif isinstance(spec, ListOf):
                spec = spec.item.fields.get(part) if isinstance(spec.item, Record) else None
            else:
                spec = None
            if spec is None:
                break
            if isinstance(spec, ListOf) and spec.task is None and spec.item.task is not None:
                found = spec.item.task
            if spec.task is not None:
                found = spec.task
        return self.task_table[found]

    # ------------------------------------------------------------------- extension

    def extend(self, data: Any, file: str, locate: Locate) -> Vocabulary:
        """This vocabulary with a rule author's vocabulary file added (see _Extension).

        A file may add; it may not change what is declared: a field, a choice value, a
        unit spelling or a drug declared twice is an error naming both places."""
        return _Extension(self, file, locate).apply(data)


def _walk(path: str, root: Spec) -> Spec | None:
    spec: Spec = root
    for part in path.split("."):
        if isinstance(spec, Record):
            if part not in spec.fields:
                return None
            spec = spec.fields[part]
        elif isinstance(spec, OpenMap):
            spec = spec.value
        elif isinstance(spec, Lab) and part in ("value", "uln"):
            spec = spec.value
        elif isinstance(spec, Lab) and part == "date":
            spec = _DATE
        else:
            return None
    return spec


_DATE = Date("date")


def field_names(spec: Spec) -> list[str]:
    """All dotted paths under a record, for did-you-mean hints on misspelt fields."""
    names: list[str] = []
    if isinstance(spec, Record):
        for key, sub in spec.fields.items():
            names.append(key)
            names.extend(f"{key}.{name}" for name in field_names(sub))
    return names


def parent_of(path: str) -> tuple[str, str]:
    """(`conditions[]`, `type`) for `conditions[].type`; ("", `ecog`) for a top-level field;
    the key is "[]" for a list's items and "*" for a map's values."""
    if path.endswith("[]"):
        return path[:-2], "[]"
    head, dot, last = path.rpartition(".")
    return (head, last) if dot else ("", path)


# ------------------------------------------------------------------------- building


class _Builder:
    """Makes the spec tree of a vocabulary's declarations, checking each one."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.entries = vocabulary.entries

    def fail(
        self, path: str, key: str | None, message: str, hint: str | None = None
    ) -> RuleSetError:
        origin = self.vocabulary.origins[path]
        at = origin.at + ((key,) if key else ())
        return RuleSetError(origin.locate(f"{path}: {message}", at, key=key is None, hint=hint))

    def build(self) -> tuple[Record, dict[str, Spec]]:
        children: dict[str, dict[str, str]] = {"": {}}
        for path in self.entries:
            parent, key = parent_of(path)
            children.setdefault(parent, {})[key] = path
        specs: dict[str, Spec] = {}

        def make(path: str) -> Spec:
            e = self.entries[path]
            kind = KINDS[e["kind"]]
            subs = {key: make(sub) for key, sub in children.get(path, {}).items()}
            spec = specs[path] = kind.declared(self, path, e, subs)
            return spec

        top = {key: make(path) for key, path in children[""].items()}
        root = Record("patient", top, tuple(k for k in top if self.required("", k)))
        derived: dict[str, Spec] = {}
        for path, e in self.vocabulary.derived_entries.items():
            like = specs[e["like"]]
            derived[path] = replace(like, label=e["label"]) if "label" in e else like
        return root, derived

    def required(self, parent: str, key: str) -> bool:
        path = key if not parent else f"{parent}.{key}" if key not in ("[]",) else parent + key
        return bool(self.entries.get(path, {}).get("required"))

    def choice(
        self, path: str, e: dict[str, Any]
    ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        values = e.get("values")
        if isinstance(values, str):
            found = self.vocabulary.value_sets.get(values)
            if found is None:
                raise self.fail(path, "values", f"unknown value set {values!r}")
            return found
        return tuple(values or ()), tuple((e.get("synonyms") or {}).items())

    def bounds(
        self,
        path: str,
        e: dict[str, Any],
        key: str,
        default: Bounds = (None, None),
        whole: bool = False,
    ) -> Any:
        if key not in e:
            return default
        value = e[key]
        kind = int if whole else (int, float)
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(x is None or (isinstance(x, kind) and not isinstance(x, bool)) for x in value)
            and not (whole and None in value)
        )
        if not ok:
            what = "two whole numbers" if whole else "two numbers (null: no bound)"
            raise self.fail(path, key, f"{key} is [low, high]: {what}")
        low, high = value
        if low is not None and high is not None and low > high:
            raise self.fail(path, key, f"{key} {value}: low is above high")
        return tuple(value)

    def unit(self, path: str, e: dict[str, Any]) -> tuple[Kind, Analyte | None]:
        name = e.get("unit")
        kind = units.KINDS.get(name) if isinstance(name, str) else None
        if kind is None:
            guess = nearest(str(name), list(units.KINDS))
            raise self.fail(
                path,
                "unit",
                f"unknown unit kind {name!r}",
                f"did you mean {guess!r}?" if guess else f"one of: {', '.join(units.KINDS)}",
            )
        analyte = None
        if "analyte" in e:
            known = units.ANALYTES.get(e["analyte"])
            if "molar_mass" in e:
                mass = e["molar_mass"]
                if isinstance(mass, bool) or not isinstance(mass, (int, float)) or mass <= 0:
                    raise self.fail(path, "molar_mass", "molar_mass is a number of g/mol above 0")
                if known is not None:
                    raise self.fail(
                        path, "molar_mass", f"{e['analyte']} already has a molar mass", None
                    )
                analyte = Analyte(str(e["analyte"]), float(mass))
            elif known is None:
                raise self.fail(
                    path,
                    "analyte",
                    f"unknown analyte {e['analyte']!r}",
                    f"give its molar_mass (g/mol), or one of: {', '.join(units.ANALYTES)}",
                )
            else:
                analyte = known
        elif "molar_mass" in e:
            raise self.fail(path, "molar_mass", "molar_mass goes with analyte (its name)")
        return kind, analyte

    def range_unit(self, path: str, e: dict[str, Any], kind: Kind, analyte: Analyte | None) -> str:
        unit = e.get("range_unit")
        if unit is None:
            for key in ("range", "hard", "soft"):
                if key in e:
                    raise self.fail(path, key, f"{key} needs range_unit, the unit it is in")
            return ""
        key = units.normalise_unit(str(unit))
        try:
            if key not in units.SPELLINGS:
                raise units.UnitError(f"unknown unit {unit!r}")
            units.check_kind(key, kind, analyte)
        except units.UnitError as exc:
            raise self.fail(path, "range_unit", str(exc), exc.hint) from None
        return str(unit)

    def source(self, path: str, e: dict[str, Any]) -> str:
        name = e.get("uln_source")
        text = self.vocabulary.sources.get(name) if isinstance(name, str) else None
        if text is None:
            raise self.fail(
                path,
                "uln_source",
                "a default ULN needs uln_source, a name from `sources` saying where it comes from",
            )
        return text

    def check_uln(self, path: str, value: Quantity | Number, default: str) -> None:
        try:
            if isinstance(value, Quantity):
                units.parse_measure(default, value.kind, value.analyte)
            else:
                float(default)
        except (units.UnitError, ValueError) as exc:
            raise self.fail(path, "default_uln", f"default ULN {default!r}: {exc}") from None


# ------------------------------------------------------------------------ extension


class _Extension:
    """A rule author's vocabulary file, added to a vocabulary.

    The file's sections: `fields` (new fields, declared as in vocabulary.yaml), `choices`
    (values and synonyms added to a choice field), `units` (spellings of accepted units),
    `drugs` (TKIs with their generation, brand names, medication classes), `tasks` and
    `sources` (new names only)."""

    SECTIONS = ("fields", "choices", "units", "drugs", "tasks", "sources")

    def __init__(self, base: Vocabulary, file: str, locate: Locate) -> None:
        self.base = base
        self.file = file
        self.locate = locate
        self.origins = dict(base.origins)

    def fail(
        self, at: DocPath, message: str, hint: str | None = None, key: bool = False
    ) -> RuleSetError:
        return RuleSetError(self.locate(message, at, key=key, hint=hint))

    def origin(self, at: DocPath) -> _Origin:
        return _Origin(self.file, self.locate, at)

    def conflict(self, at: DocPath, what: str, earlier: _Origin | str) -> RuleSetError:
        where = earlier if isinstance(earlier, str) else earlier.where()
        return self.fail(
            at,
            f"{what} is already declared at {where}; a vocabulary file may add, not redefine",
            "give it another name, or leave the declaration to the file that has it",
            key=True,
        )

    def apply(self, data: Any) -> Vocabulary:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.fail((), "a vocabulary file is one YAML mapping")
        for key in data:
            if key not in self.SECTIONS:
                guess = nearest(str(key), list(self.SECTIONS))
                raise self.fail(
                    (key,),
                    f"unknown section {key!r} in a vocabulary file",
                    f"did you mean {guess!r}?" if guess else f"one of: {', '.join(self.SECTIONS)}",
                    key=True,
                )
            if data[key] is not None and not isinstance(data[key], dict):
                raise self.fail((key,), f"{key} is a mapping")
        base = self.base
        sources = {**base.sources, **self.names(data.get("sources"), "sources", base.sources, str)}
        task_table = dict(base.task_table)
        for name, raw in (data.get("tasks") or {}).items():
            if name in task_table:
                raise self.conflict(
                    ("tasks", name), f"task {name!r}", self.origins.get(f"task:{name}", SHOWN_FILE)
                )
            task_table[name] = _task(
                name, raw, base.groups, lambda m, h=None, n=name: self.fail(("tasks", n), m, h)
            )
            self.origins[f"task:{name}"] = self.origin(("tasks", name))
        entries = {path: dict(e) for path, e in base.entries.items()}
        for path, raw in (data.get("fields") or {}).items():
            at: DocPath = ("fields", path)
            if not isinstance(path, str):
                raise self.fail(at, f"a field path is text, not {path!r}", key=True)
            if path in entries or path in base.derived_entries:
                raise self.conflict(at, f"field {path}", self.origins[path])
            _check_path(path, entries, lambda m, h=None, a=at: self.fail(a, m, h, key=True))
            entries[path] = _check_entry(
                raw,
                task_table,
                lambda m, h=None, k=None, a=at: self.fail(
                    a + ((k,) if k else ()), m, h, key=k is None
                ),
            )
            self.origins[path] = self.origin(at)
        for path, raw in (data.get("choices") or {}).items():
            self.add_choices(entries, path, raw)
        aliases = dict(base.unit_aliases)
        for spelling, target in (data.get("units") or {}).items():
            self.add_unit(aliases, spelling, target)
        tki_generations = dict(base.tki_generations)
        tki_names = dict(base.tki_names)
        known = list(base.tki_known)
        words = {k: list(v) for k, v in base.medication_words.items()}
        classes = set(_values(entries, "medications[].class", base.value_sets))
        for name, raw in (data.get("drugs") or {}).items():
            at = ("drugs", name)
            if not isinstance(name, str) or not name.strip():
                raise self.fail(at, f"a drug name is text, not {name!r}", key=True)
            folded = fold(name)
            if folded in tki_generations or folded in tki_names:
                raise self.conflict(
                    at,
                    f"drug {name!r}",
                    self.origins.get(f"drug:{folded}", "screener/data/reference.yaml"),
                )
            if not isinstance(raw, dict):
                raise self.fail(
                    at,
                    "a drug is {class: …} (a TKI with generation: 1–3) or {same_as: a TKI}",
                )
            extra = set(raw) - {"class", "generation", "same_as"}
            if extra:
                raise self.fail(
                    at + (sorted(extra)[0],),
                    f"unknown key {sorted(extra)[0]!r} in a drug",
                    "allowed: class, generation, same_as",
                    key=True,
                )
            if "same_as" in raw:
                generic = fold(str(raw["same_as"]))
                if generic not in tki_generations or set(raw) != {"same_as"}:
                    raise self.fail(
                        at + ("same_as",),
                        f"same_as names a known TKI (with nothing else), not {raw['same_as']!r}",
                    )
                tki_names[folded] = str(raw["same_as"]).strip().casefold()
            elif raw.get("class") == "tki":
                generation = raw.get("generation")
                if isinstance(generation, bool) or generation not in (1, 2, 3):
                    raise self.fail(at + ("generation",), "a TKI needs its generation: 1, 2 or 3")
                tki_generations[folded] = generation
            elif raw.get("class") in classes:
                if "generation" in raw:
                    raise self.fail(at + ("generation",), "a generation is for a TKI (class: tki)")
                words.setdefault(str(raw["class"]), []).append(name.strip())
            else:
                raise self.fail(
                    at + ("class",),
                    f"class is tki or a medication class ({', '.join(sorted(classes))}), "
                    f"not {raw.get('class')!r}",
                )
            known.append(name.strip())
            self.origins[f"drug:{folded}"] = self.origin(at)
        extended = Vocabulary(
            entries=entries,
            origins=self.origins,
            sources=sources,
            value_sets=base.value_sets,
            groups=base.groups,
            task_table=task_table,
            default_task=base.default_task,
            derived_entries=base.derived_entries,
            unit_aliases=aliases,
            tki_generations=tki_generations,
            tki_names=tki_names,
            tki_known=tuple(known),
            medication_words={k: tuple(v) for k, v in words.items()},
            files=(*base.files, self.file),
        )
        extended.root  # noqa: B018 - build the tree now: a bad declaration fails at load
        return extended

    def names(
        self, table: Any, section: str, known: Mapping[str, Any], kind: type
    ) -> dict[str, Any]:
        out = {}
        for name, value in (table or {}).items():
            if name in known:
                raise self.conflict(
                    (section, name),
                    f"{section[:-1]} {name!r}",
                    self.origins.get(f"{section}:{name}", SHOWN_FILE),
                )
            if not isinstance(value, kind):
                raise self.fail((section, name), f"{section[:-1]} {name!r} is text")
            out[name] = value.strip() if isinstance(value, str) else value
            self.origins[f"{section}:{name}"] = self.origin((section, name))
        return out

    def add_choices(self, entries: dict[str, dict[str, Any]], path: Any, raw: Any) -> None:
        at: DocPath = ("choices", path)
        e = entries.get(path) if isinstance(path, str) else None
        if e is None or e.get("kind") != "choice":
            choices = [p for p, x in entries.items() if x.get("kind") == "choice"]
            guess = nearest(str(path), choices)
            raise self.fail(
                at,
                f"{path} is not a choice field",
                f"did you mean {guess!r}?" if guess else None,
                key=True,
            )
        if not isinstance(raw, dict) or not set(raw) <= {"values", "synonyms"}:
            raise self.fail(
                at, "choices of a field are {values: [...], synonyms: {spelling: value}}"
            )
        values = list(_values(entries, path, self.base.value_sets))
        synonyms = dict(_synonyms(entries, path, self.base.value_sets))
        table = {fold(v): v for v in values} | {fold(s): v for s, v in synonyms.items()}
        new = raw.get("values") or []
        if not isinstance(new, list):
            raise self.fail(at + ("values",), "values is a list of words")
        for i, value in enumerate(new):
            if not isinstance(value, str) or not value.strip():
                raise self.fail(at + ("values", i), f"a value is text (quote it), not {value!r}")
            if fold(value) in table:
                raise self.conflict(
                    at + ("values", i),
                    f"{path} value {value!r}",
                    self.origins.get(f"choice:{path}:{fold(value)}", self.origins[path]),
                )
            values.append(value)
            table[fold(value)] = value
            self.origins[f"choice:{path}:{fold(value)}"] = self.origin(at + ("values", i))
        spellings = raw.get("synonyms") or {}
        if not isinstance(spellings, dict):
            raise self.fail(at + ("synonyms",), "synonyms is a mapping {what is written: value}")
        for spelling, value in spellings.items():
            where = at + ("synonyms", spelling)
            if not isinstance(spelling, str) or not isinstance(value, str):
                raise self.fail(
                    where,
                    "a synonym and its value are text (quote them: YAML reads no as false)",
                    key=True,
                )
            if value not in values:
                raise self.fail(
                    where, f"{value!r} is not a value of {path}", f"one of: {', '.join(values)}"
                )
            if fold(spelling) in table:
                raise self.conflict(
                    where,
                    f"{path} spelling {spelling!r}",
                    self.origins.get(f"choice:{path}:{fold(spelling)}", self.origins[path]),
                )
            synonyms[spelling] = value
            table[fold(spelling)] = value
            self.origins[f"choice:{path}:{fold(spelling)}"] = self.origin(where)
        entries[path] = {**e, "values": values, "synonyms": synonyms}

    def add_unit(self, aliases: dict[str, str], spelling: Any, target: Any) -> None:
        at: DocPath = ("units", spelling)
        if not isinstance(spelling, str) or not isinstance(target, str):
            raise self.fail(at, "a unit spelling and the unit it means are text", key=True)
        key = units.normalise_unit(spelling)
        if key in units.SPELLINGS:
            raise self.conflict(at, f"unit {spelling!r}", "screener/core/_units.py (SPELLINGS)")
        if key in aliases:
            raise self.conflict(at, f"unit {spelling!r}", self.origins[f"unit:{key}"])
        meant = units.normalise_unit(target)
        if meant not in units.SPELLINGS:
            guess = units.unit_hint(target)
            raise self.fail(
                at,
                f"{target!r} is not an accepted unit",
                f"did you mean {guess!r}?" if guess else None,
            )
        aliases[key] = meant
        self.origins[f"unit:{key}"] = self.origin(at)


def _values(
    entries: dict[str, dict[str, Any]], path: str, sets: Mapping[str, Any]
) -> tuple[str, ...]:
    values = entries[path].get("values") or ()
    return tuple(sets[values][0]) if isinstance(values, str) else tuple(values)


def _synonyms(
    entries: dict[str, dict[str, Any]], path: str, sets: Mapping[str, Any]
) -> tuple[tuple[str, str], ...]:
    values = entries[path].get("values")
    if isinstance(values, str):
        return tuple(sets[values][1])
    return tuple((entries[path].get("synonyms") or {}).items())


def _task(
    name: Any, raw: Any, groups: Mapping[str, str], fail: Callable[..., RuleSetError]
) -> Task:
    if (
        not isinstance(raw, dict)
        or not {"group", "title"} <= set(raw)
        or not set(raw) <= {"group", "title", "whole"}
    ):
        raise fail("a task is {group, title} (and whole: true when the title says it all)")
    if raw["group"] not in groups:
        raise fail(f"unknown group {raw['group']!r}", f"one of: {', '.join(groups)}")
    if not isinstance(raw["title"], str) or not raw["title"].strip():
        raise fail("a task's title is text")
    return Task(str(name), groups[raw["group"]], raw["title"], bool(raw.get("whole")))


def _check_path(
    path: str, entries: Mapping[str, dict[str, Any]], fail: Callable[..., RuleSetError]
) -> None:
    parent, key = parent_of(path)
    if key not in ("[]", "*") and not _NAME.match(key):
        raise fail(
            f"field name {key!r} must be lower case letters, digits and underscores",
            "such as labs.ldh or conditions[].onset_date",
        )
    if not parent:
        return
    container = entries.get(parent, {}).get("kind")
    wanted = {"[]": "list", "*": "map"}.get(key)
    ok = container == wanted if wanted else container in ("record", "attestation")
    if not ok:
        near = nearest(parent, [p for p, e in entries.items() if e.get("kind") in _CONTAINERS])
        raise fail(
            f"{parent} is not a {wanted or 'record'} that could hold {path}",
            f"did you mean {near!r}?" if near else None,
        )


def _check_entry(
    raw: Any, tasks: Mapping[str, Task], fail: Callable[..., RuleSetError]
) -> dict[str, Any]:
    """A declaration's shape: its kind, its keys, its label and task, its codes.

    What the kind makes of its own keys is checked when the tree is built (Spec.declared)."""
    if not isinstance(raw, dict):
        raise fail("a field is declared as a mapping {kind: …, label: …}")
    kind = raw.get("kind")
    if kind not in KINDS:
        guess = nearest(str(kind), list(KINDS))
        raise fail(
            f"unknown kind {kind!r}" if "kind" in raw else "a field needs its kind",
            f"did you mean {guess!r}?" if guess else f"one of: {', '.join(KINDS)}",
            "kind" if "kind" in raw else None,
        )
    allowed = _COMMON | KINDS[kind].KEYS
    for key in raw:
        if key not in allowed:
            guess = nearest(str(key), sorted(allowed))
            raise fail(
                f"unknown key {key!r} for a {kind} field",
                f"did you mean {guess!r}?" if guess else f"allowed: {', '.join(sorted(allowed))}",
                key,
            )
    if not isinstance(raw.get("label"), str) or not raw["label"].strip():
        raise fail(
            "a field needs a label, the words reports use for it",
            None,
            "label" if "label" in raw else None,
        )
    if "task" in raw and raw["task"] not in tasks:
        guess = nearest(str(raw["task"]), list(tasks))
        raise fail(
            f"unknown task {raw['task']!r}",
            f"did you mean {guess!r}?" if guess else f"one of: {', '.join(tasks)}",
            "task",
        )
    if kind == "choice":
        values = raw.get("values")
        if isinstance(values, list):
            if not values or not all(isinstance(x, str) and x.strip() for x in values):
                raise fail(
                    "values is a non-empty list of words (quote yes/no: YAML reads booleans)",
                    None,
                    "values",
                )
        elif not isinstance(values, str):
            raise fail("a choice needs its values", None, "values" if "values" in raw else None)
        synonyms = raw.get("synonyms") or {}
        if not isinstance(synonyms, dict) or not all(
            isinstance(s, str) and isinstance(x, str) and isinstance(values, list) and x in values
            for s, x in synonyms.items()
        ):
            raise fail(
                "synonyms is {what is written: one of the values} (quote yes/no)", None, "synonyms"
            )
    if "codes" in raw:
        codes = raw["codes"]
        if not isinstance(codes, dict) or not all(
            isinstance(system, str)
            and isinstance(table, dict)
            and table
            and all(isinstance(c, str) for c in table)
            for system, table in codes.items()
        ):
            raise fail('codes are {LOINC: {"code": display}}, each code quoted', None, "codes")
        if raw.get("worse") not in _WORSE:
            raise fail(
                f"a field with codes says which result is worse: {', '.join(_WORSE)}",
                None,
                "worse" if "worse" in raw else None,
            )
    elif "worse" in raw:
        raise fail("worse goes with codes", None, "worse")
    return dict(raw)


# --------------------------------------------------------------------- the built-in one


def _builtin_locate(
    message: str, at: DocPath = (), *, key: bool = False, hint: str | None = None
) -> Diagnostic:
    """A diagnostic at a key of the built-in file: its marks are found only when needed."""
    text = FILE.read_text(encoding="utf-8")
    node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    mark = node.start_mark if node is not None else None
    for part in at:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, value in node.value:
            if k.value == str(part):
                mark, node = (k.start_mark if key else value.start_mark), value
                break
        else:
            break
    position = Position(mark.line + 1, mark.column + 1) if mark is not None else None
    lines = text.splitlines()
    line = lines[position.line - 1] if position and position.line <= len(lines) else None
    return Diagnostic(message, SHOWN_FILE, position, hint, line)


def load_builtin() -> Vocabulary:
    """The vocabulary shipped with screener; a bad declaration fails loudly at start-up."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    raw = yaml.load(FILE.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    sources = {k: " ".join(str(v).split()) for k, v in raw["sources"].items()}
    value_sets = {
        name: (tuple(s["values"]), tuple((s.get("synonyms") or {}).items()))
        for name, s in raw["value_sets"].items()
    }
    groups = dict(raw["groups"])

    def fail_at(at: DocPath) -> Callable[..., RuleSetError]:
        def fail(message: str, hint: str | None = None, key: str | None = None) -> RuleSetError:
            where = at + ((key,) if key else ())
            return RuleSetError(_builtin_locate(message, where, key=key is None, hint=hint))

        return fail

    tasks = {
        name: _task(name, t, groups, fail_at(("tasks", name))) for name, t in raw["tasks"].items()
    }
    origins: dict[str, _Origin] = {}
    entries: dict[str, dict[str, Any]] = {}
    for path, e in raw["fields"].items():
        at: DocPath = ("fields", path)
        _check_path(path, entries, fail_at(at))
        entries[path] = _check_entry(e, tasks, fail_at(at))
        origins[path] = _Origin(SHOWN_FILE, _builtin_locate, at)
    for name in tasks:
        origins[f"task:{name}"] = _Origin(SHOWN_FILE, _builtin_locate, ("tasks", name))
    generations = {fold(d): int(g) for d, g in reference.values("tki_generations").items()}
    names = {fold(n): str(g) for n, g in reference.values("tki_names").items()}
    return Vocabulary(
        entries=entries,
        origins=origins,
        sources=sources,
        value_sets=value_sets,
        groups=groups,
        task_table=tasks,
        default_task=raw["default_task"],
        derived_entries=dict(raw["derived"]),
        unit_aliases={},
        tki_generations=generations,
        tki_names=names,
        tki_known=tuple(
            sorted(reference.values("tki_generations")) + sorted(reference.values("tki_names"))
        ),
        medication_words={},
        files=(),
    )


BUILTIN = load_builtin()
PATIENT = BUILTIN.root
DERIVED: dict[str, Spec] = BUILTIN.derived
# TKI generations, keyed by folded drug name (reference data, with its source).
TKI_GENERATIONS: dict[str, int] = BUILTIN.tki_generations
POS_NEG = BUILTIN.value_sets["positive_negative"]
DEFAULT_ULN_SOURCE = BUILTIN.sources["typical_adult"]
THERAPY = PATIENT.fields["therapies"].item  # type: ignore[attr-defined]
CONDITION = PATIENT.fields["conditions"].item  # type: ignore[attr-defined]
MEDICATION = PATIENT.fields["medications"].item  # type: ignore[attr-defined]


def result(label: str) -> Choice:
    """A positive/negative test result."""
    return Choice(label, *POS_NEG)


def resolve(path: str, root: Spec | None = None) -> Spec | None:
    """The spec of a dotted field path in the built-in vocabulary, or under `root`."""
    return BUILTIN.resolve(path, root)


def chosen(vocabulary: Vocabulary | None) -> Vocabulary:
    """The vocabulary to use: the one given, else the built-in one."""
    return BUILTIN if vocabulary is None else vocabulary


def iter_fields(vocabulary: Vocabulary) -> Iterator[tuple[str, dict[str, Any], Spec]]:
    """Every declared field with its declaration and spec, in file order (for the docs)."""
    for path, e in vocabulary.entries.items():
        spec = _spec_at(vocabulary, path)
        if spec is not None:
            yield path, e, spec


def _spec_at(vocabulary: Vocabulary, path: str) -> Spec | None:
    spec: Spec | None = vocabulary.root
    for part in re.findall(r"\[\]|\*|[^.\[\]*]+", path):
        if spec is None:
            return None
        if part == "[]":
            spec = spec.item if isinstance(spec, ListOf) else None
        elif part == "*":
            spec = spec.value if isinstance(spec, OpenMap) else None
        else:
            spec = spec.fields.get(part) if isinstance(spec, Record) else None
    return spec
