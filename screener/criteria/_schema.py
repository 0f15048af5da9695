"""JSON Schemas for patient files and rule files, for editors' completion and checking.

The patient schema is generated from the vocabulary the loader itself uses (each kind of
field gives its own fragment, `Spec.schema`), so the two can never disagree about a
field's name, kind, values or units.
"""

from __future__ import annotations

from typing import Any

from screener.core import _vocabulary as v

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def spec_schema(spec: v.Spec) -> dict[str, Any]:
    """The JSON Schema of one vocabulary field (each kind of field knows its own)."""
    return spec.schema()


def patient_schema(vocabulary: v.Vocabulary | None = None) -> dict[str, Any]:
    """The patient-file schema of a vocabulary: the built-in one, or a rules directory's."""
    schema = v.chosen(vocabulary).root.schema()
    schema["properties"]["attestations"]["propertyNames"] = {"pattern": r"^NCT\d{8}/[IE]\d+$"}
    return {
        "$schema": DRAFT,
        "$id": "https://screener.invalid/schema/patient.json",
        "title": "screener patient file",
        **schema,
    }


def rules_schema() -> dict[str, Any]:
    """The rule-file language; the rule loader checks more (fields, units) than a schema can."""
    text = {"type": "string", "minLength": 1}
    duration = {"type": "string", "examples": ["6 months", "12 weeks", "3 days"]}
    comparison = {
        op: {"description": f"compare with {sym}"}
        for op, sym in (
            ("lt", "<"),
            ("le", "≤"),
            ("gt", ">"),
            ("ge", "≥"),
            ("eq", "="),
            ("ne", "≠"),
        )
    }
    node_ref = {"$ref": "#/$defs/node"}
    nodes = [
        {
            "type": "object",
            "required": ["all"],
            "additionalProperties": False,
            "properties": {"all": {"type": "array", "items": node_ref, "minItems": 1}},
        },
        {
            "type": "object",
            "required": ["any"],
            "additionalProperties": False,
            "properties": {"any": {"type": "array", "items": node_ref, "minItems": 1}},
        },
        {
            "type": "object",
            "required": ["not"],
            "additionalProperties": False,
            "properties": {"not": node_ref},
        },
        {
            "type": "object",
            "required": ["at_least", "of"],
            "additionalProperties": False,
            "properties": {
                "at_least": {"type": "integer", "minimum": 1},
                "of": {"type": "array", "items": node_ref},
            },
        },
        {
            "type": "object",
            "required": ["if", "then"],
            "additionalProperties": False,
            "properties": {"if": node_ref, "then": node_ref, "else": node_ref},
        },
        {
            "type": "object",
            "required": ["review"],
            "additionalProperties": False,
            "properties": {"review": text},
        },
        {
            "type": "object",
            "required": ["exists"],
            "additionalProperties": False,
            "properties": {"exists": text, "where": node_ref, "label": text},
        },
        {
            "type": "object",
            "required": ["every", "check"],
            "additionalProperties": False,
            "properties": {"every": text, "where": node_ref, "check": node_ref, "label": text},
        },
        {
            "type": "object",
            "required": ["count"],
            "additionalProperties": False,
            "properties": {
                "count": text,
                "where": node_ref,
                "distinct": text,
                "label": text,
                **{op: {"type": "integer"} for op in ("lt", "le", "gt", "ge")},
            },
        },
        {
            "type": "object",
            "required": ["field"],
            "additionalProperties": False,
            "properties": {
                "field": text,
                **comparison,
                "is": {},
                "in": {"type": "array"},
                "contains": text,
                "within": duration,
                "mentions": {"anyOf": [text, {"type": "array", "items": text, "minItems": 1}]},
                "if_missing": {"type": "boolean"},
                "at_least": duration,
                "before": {"enum": ["screening", "apheresis"]},
                "fresh": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["within", "before"],
                    "properties": {
                        "within": duration,
                        "before": {"enum": ["screening", "apheresis"]},
                    },
                },
            },
        },
    ]
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
