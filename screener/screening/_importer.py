"""Turn a FHIR R4 bundle into the patient YAML a nurse completes (`screener import`).

The file holds what the bundle gave, each value with a `# source:` comment naming the FHIR
resource, its code and date; then, in place and commented out, every field the screened
trials read that the bundle did not give (with the criteria that read it and an example),
and at the end the same as a checklist. The file loads as it is, and screens as the bundle
does; uncommenting and filling in a placeholder adds that fact.

Which fields the trials need is read from the rule sets themselves (the fields their
condition trees name), so a new or changed rule set changes the checklist with it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from screener.core import _vocabulary as v
from screener.core._errors import Diagnostic, PatientError
from screener.criteria._catalog import load_rule_sets, vocabulary_of
from screener.criteria._rules import RuleSet
from screener.reading._fhir import Extract, clean, patient_from_extract, read_bundle
from screener.reading._formulas import FORMULAS

_PLAIN = re.compile(r"^[A-Za-z0-9µ_][A-Za-z0-9µ_ .%/+\-()]*$")
# What json.dumps leaves raw but YAML refuses in its text (DEL, C1 controls, non-characters)
# or reads as a line break even inside quotes (NEL, the Unicode line and paragraph separators).
_UNSAFE_IN_YAML = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


# ------------------------------------------------------------------ what the trials read


def needed_fields(rule_sets: Iterable[RuleSet] | None = None) -> dict[str, list[str]]:
    """Every field path the rule sets read -> the criteria reading it ("NCT… I8.c").

    Paths inside a list's items are written `conditions[].severe`.
    """
    sets = list(rule_sets) if rule_sets is not None else load_rule_sets()
    needed: dict[str, list[str]] = {}
    for rule_set in sets:
        for criterion in rule_set.criteria:
            checks = (
                [(criterion.id, criterion.check)]
                if criterion.check is not None
                else [(part.id, part.check) for part in criterion.parts]
            )
            for cid, check in checks:
                for path in _fields(check):
                    refs = needed.setdefault(path, [])
                    ref = f"{rule_set.trial} {cid}"
                    if ref not in refs:
                        refs.append(ref)
    return needed


def _fields(node: Any) -> list[str]:
    """Field paths a condition tree reads: leaves' `.field`, list nodes' `.list`."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(node, "")]
    while stack:
        item, prefix = stack.pop()
        name = getattr(item, "list", None)
        if isinstance(name, str):  # exists / every / count over a list
            found.append(prefix + name)
            distinct = getattr(item, "distinct", None)
            if isinstance(distinct, str):
                found.append(f"{prefix}{name}[].{distinct}")
            stack.extend((child, f"{prefix}{name}[].") for child in item.children())
            continue
        for attr in ("field", "date_field"):
            path = getattr(item, attr, None)
            if isinstance(path, str):
                found.append(prefix + path)
        stack.extend((child, prefix) for child in item.children())
    return found


def _has(record: dict[str, Any], path: str) -> bool:
    node: Any = record
    for part in path.split("."):
        if isinstance(node, dict) and node.get(part) is not None:
            node = node[part]
        else:
            return False
    return True


def _given(record: dict[str, Any], path: str, vocabulary: v.Vocabulary) -> bool:
    """Whether the record answers a field, directly or through what it is computed from
    (the vocabulary's derived values: age from a birth date, a creatinine clearance by
    Cockcroft–Gault, …)."""
    derived = vocabulary.derivations.get(path)
    if derived is not None:
        return not _to_collect(record, derived, vocabulary)
    stand_in = vocabulary.stand_ins.get(path)
    return _has(record, path) or (
        stand_in is not None and not _to_collect(record, stand_in, vocabulary)
    )


def _to_collect(record: dict[str, Any], d: v.Derived, vocabulary: v.Vocabulary) -> list[str]:
    """The fields to collect so that a derived value can be computed (none: it can): its
    inputs the record lacks, those of derived inputs in turn, and of alternatives (a birth
    date, or else a stated age) the first."""
    roles = FORMULAS[d.formula].roles
    wanted: list[str] = []
    alternatives: dict[str, list[str] | None] = {}  # group -> the first one's gaps, or None
    for role, source in d.inputs:
        if source == d.path:  # the field a file writes (age's stated age)
            lacks = [] if _has(record, source) else [source]
        elif source not in vocabulary.derivations:
            lacks = [] if _given(record, source, vocabulary) else [source]
        else:
            lacks = _to_collect(record, vocabulary.derivations[source], vocabulary)
        group = roles[role].one_of
        if not group:
            wanted += lacks
        elif not lacks:
            alternatives[group] = None  # one alternative is given
        else:
            alternatives.setdefault(group, lacks)
    for first in alternatives.values():
        wanted += first or []
    return list(dict.fromkeys(wanted))


def missing_fields(
    record: dict[str, Any], needed: dict[str, list[str]], vocabulary: v.Vocabulary | None = None
) -> dict[str, list[str]]:
    """The needed top-level and nested fields (not list-item fields) the record lacks; for
    a derived value, what it is computed from (age: the birth date)."""
    vocab = v.chosen(vocabulary)
    out: dict[str, list[str]] = {}
    for path, refs in needed.items():
        if "[]" in path or _given(record, path, vocab):
            continue
        derived = vocab.derivations.get(path)
        for field in [path] if derived is None else _to_collect(record, derived, vocab):
            out.setdefault(field, [])
            out[field].extend(r for r in refs if r not in out[field])
    return out


def item_fields(needed: dict[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    """List name -> the item fields the trials read in it -> criteria."""
    out: dict[str, dict[str, list[str]]] = {}
    for path, refs in needed.items():
        if "[]." in path:
            name, _, sub = path.partition("[].")
            out.setdefault(name, {}).setdefault(sub, []).extend(refs)
    return out


# ------------------------------------------------------------------------------ writing


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def scalar(value: Any) -> str:
    """A value as YAML that reads back as the same value (text is quoted when needed)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    # A lone surrogate (JSON's "\ud800" escape) is no character: a UTF-8 file cannot hold
    # it, so it becomes U+FFFD, the character that says one was lost.
    text = _SURROGATE.sub("\ufffd", str(value))
    if _PLAIN.match(text) and text == text.strip():
        try:
            if yaml.safe_load(text) == text:
                return text
        except yaml.YAMLError:
            pass
    return _UNSAFE_IN_YAML.sub(
        lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False)
    )


def flow(mapping: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {scalar(val)}" for k, val in mapping.items()) + "}"


def _comment(text: str) -> str:
    return clean(text)


def _refs(refs: list[str]) -> str:
    """NCT06559644 I1, I9; NCT04684147 I2: criteria grouped by trial."""
    by_trial: dict[str, list[str]] = {}
    for ref in refs:
        trial, _, cid = ref.partition(" ")
        by_trial.setdefault(trial, []).append(cid)
    return "; ".join(f"{t} {', '.join(ids)}" for t, ids in sorted(by_trial.items()))


def _example(spec: v.Spec) -> str:
    return spec.example()  # each kind of field knows how a value of it is written


def _age(day: dt.date, on: dt.date) -> str:
    days = (on - day).days
    if days >= 730:
        return f"{days // 365} years old"
    if days > 30:
        return f"{days} days old"
    return ""


class _Writer:
    def __init__(self, extract: Extract, needed: dict[str, list[str]]) -> None:
        self.ex = extract
        self.missing = missing_fields(extract.record, needed, extract.vocabulary)
        self.items = item_fields(needed)
        self.lines: list[str] = []

    def source(self, path: str) -> str:
        where = self.ex.sources.get(path)
        if where is None:
            return ""
        note = [f"source: {where}"]
        day = self.ex.dates.get(path)
        if day is not None and _age(day, self.ex.as_of):
            note.append(_age(day, self.ex.as_of))
        return "  # " + _comment("; ".join(note))

    def todo(self, path: str) -> list[str]:
        """Missing needed paths at or under `path`."""
        return [p for p in self.missing if p == path or p.startswith(path + ".")]

    def record(
        self, spec: v.Record | v.OpenMap, data: dict[str, Any] | None, prefix: str, depth: int
    ) -> None:
        pad = "  " * depth
        if isinstance(spec, v.OpenMap):
            keys = list(data or {})
            keys += sorted(
                {p[len(prefix) :].split(".")[0] for p in self.todo(prefix[:-1])} - set(keys)
            )
            fields = {k: spec.value for k in keys}
        else:
            fields = spec.fields
        for key, sub in fields.items():
            path = prefix + key
            value = (data or {}).get(key)
            if value is None and path == "screening_date":
                self.lines.append(
                    f"# screening_date:  # TODO YYYY-MM-DD, the date of this "
                    f"screen (the values here are as of {self.ex.as_of})"
                )
            elif value is None:
                self.placeholder(key, sub, path, depth)
            elif isinstance(sub, (v.Record, v.OpenMap)) and path not in self.ex.sources:
                self.lines.append(f"{pad}{key}:")
                self.record(sub, value, path + ".", depth + 1)
            elif isinstance(sub, v.ListOf):
                self.listing(key, sub, value, path, depth)
            elif isinstance(value, list) and isinstance(sub, v.Lab):
                # A lab's series, oldest first: the latest (last) decides, as in the file.
                self.lines.append(f"{pad}{key}:{self.source(path)}" + self.uln_note(sub, value[-1]))
                self.lines += [f"{pad}  - {flow(result)}" for result in value]
            elif isinstance(value, dict):
                self.lines.append(
                    f"{pad}{key}: {flow(value)}{self.source(path)}" + self.uln_note(sub, value)
                )
            else:
                self.lines.append(f"{pad}{key}: {scalar(value)}{self.source(path)}")

    def uln_note(self, spec: v.Spec, value: dict[str, Any]) -> str:
        if isinstance(spec, v.Lab) and "uln" not in value:
            return "; no ULN in the bundle: add the lab's uln (else a default is assumed)"
        return ""

    def placeholder(self, key: str, spec: v.Spec, path: str, depth: int) -> None:
        todo = self.todo(path)
        if not todo:
            return
        pad = "  " * depth
        if isinstance(spec, (v.Record, v.OpenMap)) and path not in todo:
            self.lines.append(f"# {pad}{key}:")
            self.record(spec, None, path + ".", depth + 1)
            return
        refs = _refs(self.missing[path])
        self.lines.append(f"# {pad}{key}:  # TODO {_example(spec)}; needed by {refs}")

    def listing(
        self, key: str, spec: v.ListOf, items: list[dict[str, Any]], path: str, depth: int
    ) -> None:
        pad = "  " * depth
        self.lines.append(f"{pad}{key}:" + (" []" if not items else ""))
        for i, item in enumerate(items):
            self.lines.append(f"{pad}  - {flow(item)}{self.source(f'{path}[{i}]')}")
        wanted = [
            name
            for name in self.items.get(path, {})
            if any(name.split(".")[0] not in item for item in items)
        ]
        if wanted and items:
            label = getattr(spec.item, "label", key)
            self.lines.append(
                f"{pad}  # TODO each {label}: the trials also read "
                f"{', '.join(sorted(wanted))}; add them where known"
            )

    def write(self) -> str:
        ex = self.ex
        header = [
            f"# Patient record imported from the FHIR bundle {Path(ex.file).name}",
            f"# Values are the latest on or before {ex.as_of} (a lab's results of the 13 "
            "months before, too); results",
            "# dated after it were ignored.",
            "# Each value says where it came from. Check them, then fill in the TODO lines "
            "(uncomment",
            "# and complete them): the screened trials need those facts. docs/fhir.md says "
            "how each",
            "# field was read; docs/patient-format.md describes the fields.",
        ]
        self.lines = header
        self.record(v.chosen(ex.vocabulary).root, ex.record, "", 0)
        if ex.warnings:
            self.lines.append("")
            self.lines.append("# Import warnings:")
            for warning in ex.warnings:
                text = warning.message + (f" — {warning.hint}" if warning.hint else "")
                self.lines.append(f"#   - {_comment(text)}")
        self.lines.append("")
        if self.missing:
            self.lines.append(
                f"# Checklist: {len(self.missing)} field(s) the screened trials "
                "read that the bundle did not give"
            )
            for path, refs in self.missing.items():
                self.lines.append(f"#   [ ] {path}  ({_refs(refs)})")
        else:
            self.lines.append("# Checklist: the bundle gave every field the trials read")
        return "\n".join(self.lines) + "\n"


def _order(
    needed: dict[str, list[str]], vocabulary: v.Vocabulary | None = None
) -> dict[str, list[str]]:
    """Needed paths in the vocabulary's order (so the checklist reads like the file)."""
    names = v.field_names(v.chosen(vocabulary).root)
    rank = {name: i for i, name in enumerate(names)}

    def key(path: str) -> tuple[int, str]:
        parts = path.replace("[]", "").split(".")
        for n in range(len(parts), 0, -1):
            head = ".".join(parts[:n])
            if head in rank:
                return rank[head], path
        return len(names), path

    return {p: needed[p] for p in sorted(needed, key=key)}


def bundle_to_yaml(
    path: Path,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    rule_sets: Iterable[RuleSet] | None = None,
) -> str:
    """The patient YAML equivalent to a FHIR R4 bundle, for the nurse to complete.

    Raises PatientError (naming the file) when the bundle cannot be read or its patient
    cannot be screened (a deceased patient included), exactly as screening it would.
    """
    path = Path(path)
    sets = list(rule_sets) if rule_sets is not None else load_rule_sets()
    # The codes and fields of the rules' vocabulary (a rules directory may extend it).
    vocabulary = vocabulary_of(sets)
    extract = read_bundle(path, str(path), as_of, today, vocabulary)
    patient_from_extract(extract, as_of, today)  # the same checks as screening the bundle
    needed = _order(needed_fields(sets), vocabulary)
    return _Writer(extract, needed).write()


def export_to_yaml(
    folder: Path,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    rule_sets: Iterable[RuleSet] | None = None,
) -> Iterator[tuple[str, str | None, tuple[Diagnostic, ...]]]:
    """`bundle_to_yaml` for every patient of a FHIR bulk export (see bulk.py), by id.

    Yields (patient id, YAML text, ()) for each patient, and (file, None, diagnostics) for
    each malformed line, orphaned resources and each patient that cannot be screened.
    """
    from screener.reading._bulk import ExportIndex, Reader

    sets = list(rule_sets) if rule_sets is not None else load_rule_sets()
    vocabulary = vocabulary_of(sets)
    needed = _order(needed_fields(sets), vocabulary)
    with ExportIndex(Path(folder)) as index:  # named as shown(folder)
        for problem in index.line_errors():
            yield problem.file, None, (problem.diagnostic,)
        reader = Reader(index.paths, tuple(f.path for f in index.files))
        try:
            for group in index.groups():
                try:
                    _, extract = reader.extract(group, as_of, today, vocabulary)
                    patient_from_extract(extract, as_of, today)
                except PatientError as exc:
                    yield exc.diagnostics[0].file or index.display, None, exc.diagnostics
                    continue
                yield str(extract.record["id"]), _Writer(extract, needed).write(), ()
        finally:
            reader.close()


__all__ = ["bundle_to_yaml", "export_to_yaml", "needed_fields", "missing_fields"]
