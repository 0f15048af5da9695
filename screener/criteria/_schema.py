"""JSON Schemas for patient files and rule files, for editors' completion and checking.

The patient schema is generated from the vocabulary the loader itself uses, so the two can
never disagree about a field's name, kind, values or units; the rules schema's conditions
from the rule language's declarations (criteria._language), which the compiler dispatches on.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.criteria._language import CONDITION, TEXT, Key, NodeKind
from screener.criteria._rules import LANGUAGE

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_NUMBER = r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"


def _accepted(kind: units.Kind, analyte: units.Analyte | None) -> list[str]:
    """The SPELLINGS keys a field of this kind accepts."""
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


def _quantity(spec: v.Quantity) -> dict[str, Any]:
    keys = _accepted(spec.kind, spec.analyte)
    spellings = sorted(set().union(*(_forms(k) for k in keys)), key=lambda f: (-len(f), f))
    pattern = rf"^\s*{_NUMBER}\s*({'|'.join(re.escape(f) for f in spellings)})\s*$"
    shown = ", ".join(dict.fromkeys(units.SPELLINGS[k][1] for k in keys))
    schema: dict[str, Any] = {
        "type": "string",
        "pattern": pattern,
        "examples": [spec.kind.example],
        "description": f"{spec.label}: {spec.kind.name} in {shown}",
    }
    if spec is v.PATIENT.fields["age"]:
        return {"anyOf": [schema, {"type": "number", "minimum": 0, "description": "age in years"}]}
    return schema


def spec_schema(spec: v.Spec) -> dict[str, Any]:
    """The JSON Schema of one vocabulary field."""
    if isinstance(spec, v.Attestation):
        record = {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: spec_schema(s) for k, s in spec.fields.items()},
            "required": list(spec.required),
        }
        return {
            "description": f"{spec.label}: pass or fail, or {{result, by, date}}",
            "anyOf": [spec_schema(spec.fields["result"]), record],
        }
    if isinstance(spec, v.Record):
        return {
            "type": "object",
            "description": spec.label,
            "additionalProperties": False,
            "properties": {k: spec_schema(s) for k, s in spec.fields.items()},
            "required": list(spec.required),
        }
    if isinstance(spec, v.OpenMap):
        return {
            "type": "object",
            "description": spec.label,
            "additionalProperties": spec_schema(spec.value),
        }
    if isinstance(spec, v.ListOf):
        return {
            "type": "array",
            "description": f"{spec.label} ([] = reviewed: none)",
            "items": spec_schema(spec.item),
        }
    if isinstance(spec, v.Lab):
        value = spec_schema(spec.value)
        if isinstance(spec.value, v.Number):  # a bare number (INR): its hard range
            low, high = spec.hard
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
            "description": f"{spec.label}: a value, or {{value, uln, date}}",
            "anyOf": [value, mapping],
        }
    if isinstance(spec, v.Quantity):
        return _quantity(spec)
    if isinstance(spec, v.Choice):
        # The loader ignores case, spaces and hyphens; a schema cannot, so it lists the
        # canonical values first (offered for completion) and then the common spellings.
        words = list(spec.values)
        for word in [*spec.values, *(s for s, _ in spec.synonyms)]:
            for form in (word, word.lower(), word.upper(), word[:1].upper() + word[1:]):
                if form not in words:
                    words.append(form)
        return {"description": f"{spec.label}: one of {', '.join(spec.values)}", "enum": words}
    if isinstance(spec, v.Integer):
        schema: dict[str, Any] = {
            "type": "integer",
            "minimum": spec.low,
            "maximum": spec.high,
            "description": spec.label,
        }
        if spec.roman:
            return {
                "description": spec.label,
                "anyOf": [schema, {"enum": ["I", "II", "III", "IV"][spec.low - 1 : spec.high]}],
            }
        return schema
    if isinstance(spec, v.Number):
        return {
            "type": "number",
            "minimum": spec.low,
            "maximum": spec.high,
            "description": spec.label,
        }
    if isinstance(spec, v.Bool):
        return {"type": "boolean", "description": spec.label}
    if isinstance(spec, v.Date):
        return {"type": "string", "format": "date", "description": f"{spec.label} (ISO)"}
    if isinstance(spec, v.Mutations):
        return {
            "type": "array",
            "description": f"{spec.label} ([] = tested, none found)",
            "items": {"type": "string", "examples": ["T315I", "p.T315I", "p.Thr315Ile"]},
        }
    if isinstance(spec, v.Text):
        return {"type": ["string", "integer"], "description": spec.label}
    raise TypeError(f"no schema for {type(spec).__name__}")  # pragma: no cover


def patient_schema() -> dict[str, Any]:
    schema = spec_schema(v.PATIENT)
    schema["properties"]["attestations"]["propertyNames"] = {"pattern": r"^NCT\d{8}/[IE]\d+$"}
    return {
        "$schema": DRAFT,
        "$id": "https://screener.invalid/schema/patient.json",
        "title": "screener patient file",
        **schema,
    }


def _key(key: Key) -> dict[str, Any]:
    return {**copy.deepcopy(dict(key.value.schema)), "description": key.doc}


def node_schema(kind: NodeKind) -> dict[str, Any]:
    """The JSON Schema of one node kind, from its declaration (criteria._language)."""
    return {
        "type": "object",
        "description": kind.doc.summary,
        "required": list(kind.required),
        "additionalProperties": False,
        "properties": {key.name: _key(key) for key in LANGUAGE.allowed(kind)},
    }


def rules_schema() -> dict[str, Any]:
    """The rule-file language; the rule loader checks more (fields, units) than a schema can.

    The conditions come from the compiler's own declarations, so the schema offers exactly
    the node kinds, keys and operators the loader accepts."""
    text = dict(TEXT.schema)
    node_ref = dict(CONDITION.schema)
    nodes = [node_schema(kind) for kind in LANGUAGE.kinds.values()]
    part = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "label", "check"],
        "properties": {
            "id": {"type": "string", "pattern": r"^[IE]\d+\.[a-z]$"},
            "label": text,
            "text": text,
            "check": node_ref,
        },
    }
    criterion = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "kind", "label", "text"],
        "properties": {
            "id": {"type": "string", "pattern": r"^[IE]\d+$"},
            "kind": {"enum": ["inclusion", "exclusion"]},
            "label": text,
            "text": text,
            "note": text,
            "check": node_ref,
            "parts": {"type": "array", "items": part, "minItems": 1},
            "combine": {"enum": ["all", "any"]},
        },
    }
    return {
        "$schema": DRAFT,
        "$id": "https://screener.invalid/schema/rules.json",
        "title": "screener rule set",
        "type": "object",
        "additionalProperties": False,
        "required": ["trial", "product", "title", "sources", "criteria"],
        "properties": {
            "trial": {"type": "string", "pattern": r"^NCT\d{8}$"},
            "product": text,
            "title": text,
            "sources": {"type": "array", "items": text},
            "caveats": {"type": "array", "items": text},
            "criteria": {"type": "array", "items": criterion, "minItems": 1},
        },
        "$defs": {"node": {"oneOf": nodes}},
    }
