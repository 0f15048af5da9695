"""JSON Schemas for patient files and rule files, for editors' completion and checking.

The patient schema is generated from the vocabulary the loader itself uses (each kind of
field gives its own fragment, `Spec.schema`), so the two can never disagree about a
field's name, kind, values or units; the rules schema's conditions from the rule
language's declarations (criteria._language), which the compiler dispatches on.
"""

from __future__ import annotations

import copy
from typing import Any

from screener.core import _reference as reference
from screener.core import _vocabulary as v
from screener.criteria._language import CONDITION, TEXT, Key, NodeKind
from screener.criteria._rules import LANGUAGE

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def spec_schema(spec: v.Spec) -> dict[str, Any]:
    """The JSON Schema of one vocabulary field (each kind of field knows its own)."""
    return spec.schema()


def patient_schema(vocabulary: v.Vocabulary | None = None) -> dict[str, Any]:
    """The patient-file schema of a vocabulary: the built-in one, or a rules directory's."""
    schema = v.chosen(vocabulary).root.schema()
    schema["properties"]["attestations"]["propertyNames"] = {
        "pattern": rf"^(?:{reference.trial_id_pattern()})/[IE]\d+$"
    }
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
            "trial": {"type": "string", "pattern": rf"^(?:{reference.trial_id_pattern()})$"},
            "product": text,
            "title": text,
            "sources": {"type": "array", "items": text},
            "caveats": {"type": "array", "items": text},
            "criteria": {"type": "array", "items": criterion, "minItems": 1},
        },
        "$defs": {"node": {"oneOf": nodes}},
    }
