"""The FHIR mapping: which code means which field or value, read from
screener/data/fhir_mapping.yaml (coded answers, conditions, procedures, vaccines,
medication classes, units) and from the vocabulary (the Observation codes declared with each
field), checked once per vocabulary. docs/fhir.md lists the mapped codes.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from screener.core import _vocabulary as v
from screener.reading._fhir_bundle import codings

MAPPING_FILE = Path(__file__).resolve().parent.parent / "data" / "fhir_mapping.yaml"


@dataclass(frozen=True)
class Code:
    """A coded concept the mapping knows: system alias, code and display name."""

    system: str  # alias: LOINC, SNOMED, ICD-10, …
    code: str
    display: str
    data: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        return f"{self.system} {self.code}"


@dataclass(frozen=True)
class ObservationRule:
    field: str
    worse: str  # high, low or positive: which of two simultaneous results is kept
    spec: v.Spec
    code: Code


@dataclass(frozen=True)
class Mapping:
    aliases: dict[str, str]  # system URL -> alias
    observations: dict[tuple[str, str], ObservationRule]  # (alias, code)
    tables: dict[str, dict[tuple[str, str], Code]]  # results, ecog_answers, conditions, …
    icd10_prefixes: tuple[tuple[str, Code], ...]  # longest first, dots removed
    ucum_units: dict[str, str]
    non_ucum_units: dict[str, str]
    event_types: frozenset[str]
    medication_words: tuple[tuple[re.Pattern[str], str], ...]
    route_words: tuple[tuple[re.Pattern[str], str], ...]

    def find(self, table: str, concept: Any) -> tuple[Code, dict[str, Any]] | None:
        """The first coding of a CodeableConcept that `table` knows, and that coding."""
        for coding in codings(concept):
            alias = self.aliases.get(str(coding.get("system", "")).rstrip("/"))
            code = coding.get("code")
            if alias is None or not isinstance(code, str):
                continue
            found = self.tables[table].get((alias, code.strip()))
            if found is None and table == "conditions" and alias == "ICD-10":
                key = code.strip().upper().replace(".", "")
                found = next((c for p, c in self.icd10_prefixes if key.startswith(p)), None)
            if found is not None:
                return found, coding
        return None


def _merged(table: dict[str, list[str]], more: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """The medication words of fhir_mapping.yaml and those a vocabulary file adds (drugs)."""
    merged = {name: list(words) for name, words in table.items()}
    for name, words in more.items():
        merged.setdefault(name, []).extend(words)
    return merged


def _words(table: dict[str, list[str]]) -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple(
        (re.compile(rf"\b{re.escape(word)}", re.IGNORECASE), value)
        for value, words in table.items()
        for word in words
    )


def code_systems() -> frozenset[str]:
    """The code systems the mapping knows, by alias (LOINC, SNOMED, …)."""
    raw = yaml.safe_load(MAPPING_FILE.read_text(encoding="utf-8"))
    return frozenset(raw["systems"])


@lru_cache(maxsize=8)
def mapping(vocabulary: v.Vocabulary | None = None) -> Mapping:
    """The mapping table, read and checked once per vocabulary; a bad table fails loudly at
    first use.

    Which code fills which field is declared with the field (vocabulary.yaml `codes`, and a
    rules directory's vocabulary file); the tables of coded answers, conditions, units, … are
    here in fhir_mapping.yaml."""
    vocabulary = v.chosen(vocabulary)
    raw = yaml.safe_load(MAPPING_FILE.read_text(encoding="utf-8"))
    aliases = {url.rstrip("/"): alias for alias, urls in raw["systems"].items() for url in urls}

    def coded(
        section: dict[str, dict[str, Any]], keys: AbstractSet[str] = frozenset()
    ) -> dict[tuple[str, str], Code]:
        table: dict[tuple[str, str], Code] = {}
        for alias, codes in section.items():
            if alias not in raw["systems"]:
                raise ValueError(f"{MAPPING_FILE.name}: unknown code system {alias!r}")
            for code, value in codes.items():
                if not isinstance(code, str):
                    raise ValueError(f"{MAPPING_FILE.name}: {alias} code {code!r} must be quoted")
                data = dict(value) if isinstance(value, dict) else {"display": value}
                # a display with a comma, unquoted in a flow mapping, makes stray keys
                stray = set(data) - keys - {"display"}
                if stray or not isinstance(data.get("display"), str):
                    raise ValueError(
                        f"{MAPPING_FILE.name}: {alias} {code}: unexpected "
                        f"{sorted(stray) or 'display'} (quote the display)"
                    )
                table[(alias, code)] = Code(alias, code, str(data.pop("display", "")), data)
        return table

    observations: dict[tuple[str, str], ObservationRule] = {}
    for observed in vocabulary.observations:
        spec = vocabulary.resolve(observed.path)
        assert spec is not None  # declared with the field itself
        for alias, code, display in observed.codes:
            if alias not in raw["systems"]:
                raise ValueError(f"{observed.path}: unknown code system {alias!r}")
            if (alias, code) in observations:
                raise ValueError(
                    f"{alias} {code} is mapped to both {observations[(alias, code)].field} "
                    f"and {observed.path}"
                )
            observations[(alias, code)] = ObservationRule(
                observed.path, observed.worse, spec, Code(alias, code, display)
            )
    keys = {
        "results": {"result"},
        "ecog_answers": {"grade"},
        "conditions": {"type", "kind", "category"},
        "severity": {"grade"},
        "procedures": {"type"},
        "surgical_categories": set(),
        "vaccines": {"live"},
        "medication_codes": {"class"},
        "route_codes": {"route"},
        "allergy_substances": {"biological"},
        "no_known_allergy": set(),
    }
    tables = {name: coded(raw[name], allowed) for name, allowed in keys.items()}
    conditions = vocabulary.resolve("conditions")
    assert isinstance(conditions, v.ListOf) and isinstance(conditions.item, v.Record)
    condition_types = conditions.item.fields["type"].values  # type: ignore[attr-defined]
    for mapped in tables["conditions"].values():
        kind = mapped.data.get("type")
        if kind is not None and kind not in condition_types:
            raise ValueError(
                f"{MAPPING_FILE.name}: {mapped.label()}: unknown condition type {kind!r}"
            )
    prefixes = sorted(
        (
            (c.code.upper().replace(".", ""), c)
            for (a, _), c in tables["conditions"].items()
            if a == "ICD-10"
        ),
        key=lambda pair: -len(pair[0]),
    )
    return Mapping(
        aliases,
        observations,
        tables,
        tuple(prefixes),
        {str(k): str(v_) for k, v_ in raw["ucum_units"].items()},
        {str(k): str(v_) for k, v_ in raw["non_ucum_units"].items()},
        frozenset(raw["condition_event_types"]),
        _words(_merged(raw["medication_words"], vocabulary.medication_words)),
        _words(raw["route_words"]),
    )
