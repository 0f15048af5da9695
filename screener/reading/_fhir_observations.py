"""Choosing among a bundle's Observations: one value per field, and a lab's series.

Each Observation (and each component of one) whose code the mapping knows is a candidate
for its field, if it is final (or amended, corrected), has a full effective date, and that
date is on or before the as-of date. Of a field's candidates the latest is kept (for a lab,
with its earlier results of the 13 months before the as-of date, as a list); two
different results at the same moment keep the one farther from normal (the field's
`worse`: high, low or positive), and a warning names both. A result is read as its field's
kind asks (a positive/negative word, an ECOG grade, a score, a quantity in a known unit,
a unitless number), copied exactly, never rounded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.reading._fhir_bundle import (
    Reading,
    When,
    as_list,
    clean,
    codings,
    concept_name,
    resource_name,
)
from screener.reading._fhir_mapping import Mapping, ObservationRule

_GOOD_OBSERVATION = ("final", "amended", "corrected")
# How far back before the as-of date a lab's earlier results are read into its series: 400
# days (13 months) hold every window a criterion has asked for (weeks to a calendar year,
# leap years included) and a baseline.
SERIES_SPAN = dt.timedelta(days=400)


def _lab_result(chosen: _Candidate) -> dict[str, Any]:
    result: dict[str, Any] = {"value": chosen.value, "date": chosen.when.date}
    if chosen.uln is not None:
        result["uln"] = chosen.uln
    return result


def _number(value: Any) -> str:
    """A JSON number as text, exactly (Python's shortest round-trip form)."""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _absent(part: dict[str, Any]) -> str:
    return concept_name(part.get("dataAbsentReason")) or "data absent"


@dataclass
class _Candidate:
    """One result for one field."""

    when: When
    order: int  # bundle order, for a stable choice
    rule: ObservationRule
    name: str  # Observation/… (with "component" when it came from one)
    value: Any  # as the record will hold it (text, number, word)
    rank: float  # for `worse`: larger = farther from normal
    uln: Any = None
    problem: str | None = None  # a result that is there but cannot be used (e.g. "<0.2")
    notes: list[tuple[str, str | None]] = field(default_factory=list)  # warned if chosen

    @property
    def where(self) -> str:
        """Where the result came from, as warnings and the sources say it."""
        return f"{self.name} ({self.rule.code.label()}), {self.when.date}"


class Observations:
    """Reads a bundle's Observations into `reading`'s record, one value per field."""

    def __init__(self, reading: Reading, table: Mapping) -> None:
        self.reading = reading
        self.map = table
        self.notes: list[tuple[str, str | None]] = []  # about the candidate being read

    def read(self, found: list[tuple[int, dict[str, Any]]]) -> None:
        by_field: dict[str, list[_Candidate]] = {}
        skipped = 0
        for index, obs in found:
            status = obs.get("status")
            parts: list[tuple[str, dict[str, Any]]] = [("", obs)]
            parts += [
                (" component", c) for c in as_list(obs.get("component")) if isinstance(c, dict)
            ]
            for suffix, part in parts:
                rule = self._rule(part.get("code"))
                if rule is None:
                    continue
                name = resource_name(obs, index) + suffix
                if status is not None and status not in _GOOD_OBSERVATION:
                    skipped += 1
                    continue
                when = self._when(obs)
                if when is None:
                    self.reading.warn(
                        f"{name} ({rule.code.label()}): no full effective date; not used",
                        "a result is used only when its date is known",
                    )
                    continue
                if when.date > self.reading.on:
                    self.reading.later += 1
                    continue
                self.notes = []
                candidate = self._candidate(part, rule, name, when, index)
                if candidate is not None:
                    candidate.notes = self.notes
                    by_field.setdefault(rule.field, []).append(candidate)
        if skipped:
            self.reading.warn(
                f"{skipped} mapped result(s) not final (status registered, preliminary, "
                "cancelled or entered-in-error) were not used"
            )
        for name, candidates in by_field.items():
            self._choose(name, candidates)

    def _rule(self, concept: Any) -> ObservationRule | None:
        for coding in codings(concept):
            alias = self.map.aliases.get(str(coding.get("system", "")).rstrip("/"))
            code = coding.get("code")
            if alias and isinstance(code, str):
                rule = self.map.observations.get((alias, code.strip()))
                if rule is not None:
                    return rule
        return None

    def _when(self, obs: dict[str, Any]) -> When | None:
        for key in ("effectiveDateTime", "effectiveInstant"):
            if key in obs:
                return When.parse(obs[key])
        period = obs.get("effectivePeriod")
        if isinstance(period, dict):
            return When.parse(period.get("end")) or When.parse(period.get("start"))
        return None

    def _candidate(
        self, part: dict[str, Any], rule: ObservationRule, name: str, when: When, order: int
    ) -> _Candidate | None:
        label = f"{name} ({rule.code.label()})"
        spec = rule.spec
        inner = spec.value if isinstance(spec, v.Lab) else spec
        values = [k for k in part if k.startswith("value")]
        if isinstance(spec, v.Record):  # pregnancy_test: {result, date}
            inner = spec.fields["result"]
        if isinstance(inner, v.Choice):
            word = self._result(part, label)
            if word is None:
                return None
            return _Candidate(when, order, rule, name, word, 1.0 if word == "positive" else 0.0)
        if isinstance(inner, v.Integer):
            grade = (
                self._grade(part, label)
                if rule.field == "ecog"  # ECOG has its own answer list (LL529-9)
                else self._score(part, label, inner)
            )
            if grade is None:
                return None
            return _Candidate(when, order, rule, name, grade, float(grade))
        # a quantity (Quantity) or a unitless number (the INR)
        quantity = part.get("valueQuantity")
        if (
            quantity is None
            and isinstance(part.get("valueInteger"), int)
            and isinstance(inner, v.Number)
        ):
            quantity = {"value": part["valueInteger"]}
        if quantity is None:
            if "dataAbsentReason" in part:
                self.reading.warn(f"{label}: no value ({_absent(part)}); not used")
                return None
            got = f"only {', '.join(values)}" if values else "no value"
            self.reading.error(
                f"{label}: {got}; a number with a unit (valueQuantity) is needed",
                "a result without a value cannot be screened",
            )
            return None
        if not isinstance(quantity, dict) or not _is_number(quantity.get("value")):
            self.reading.error(f"{label}: valueQuantity has no numeric value")
            return None
        text = self._quantity(quantity, inner, label)
        if text is None:
            return None
        rank = self._rank(text, inner, rule.worse)
        candidate = _Candidate(when, order, rule, name, text, rank)
        comparator = quantity.get("comparator")
        if comparator:
            candidate.problem = f"{comparator}{text} is a bound, not a value"
        if isinstance(spec, v.Lab):
            candidate.uln = self._uln(part, quantity, inner, label)
        return candidate

    def _unit(self, quantity: dict[str, Any], label: str) -> str | None:
        """The screener's spelling of a valueQuantity's unit ("" for none); None if unknown."""
        written = [
            w
            for w in (quantity.get("code"), quantity.get("unit"))
            if isinstance(w, str) and w.strip()
        ]
        if not written:
            return ""
        for text in written:  # the UCUM code first, then the human-readable unit
            if text.strip() in self.map.ucum_units:
                return self.map.ucum_units[text.strip()]
        for text in written:
            if text.strip() in self.map.non_ucum_units:
                spelling = self.map.non_ucum_units[text.strip()]
                ucum = " or ".join(k for k, s in self.map.ucum_units.items() if s == spelling)
                self.notes.append(
                    (
                        f"{label}: unit {text!r} is not a UCUM code; read as "
                        f"{spelling or 'no unit'}",
                        f"UCUM writes {ucum}" if ucum else None,
                    )
                )
                return spelling
        accepted = ", ".join(k for k in self.map.ucum_units if k)
        self.reading.error(
            f"{label}: unknown unit {written[0]!r}", f"accepted UCUM units: {accepted}"
        )
        return None

    def _quantity(self, quantity: dict[str, Any], spec: v.Spec, label: str) -> Any:
        unit = self._unit(quantity, label)
        if unit is None:
            return None
        number = quantity["value"]
        if isinstance(spec, v.Number):
            if unit:
                self.reading.error(
                    f"{label}: unit {unit!r} on a unitless result", "an INR has no unit"
                )
                return None
            return number
        assert isinstance(spec, v.Quantity)
        if not unit:
            self.reading.error(
                f"{label}: the value has no unit",
                f"expected {spec.kind.name} such as {spec.kind.example!r}",
            )
            return None
        text = f"{_number(number)} {unit}"
        try:
            units.parse_measure(text, spec.kind, spec.analyte)
        except units.UnitError as exc:
            self.reading.error(f"{label}: {exc}", exc.hint)
            return None
        return text

    def _rank(self, value: Any, spec: v.Spec, worse: str) -> float:
        if isinstance(value, str):
            assert isinstance(spec, v.Quantity)
            measure = units.parse_measure(value, spec.kind, spec.analyte)
            amount = units.convert(measure, spec.kind.references[0], spec.analyte)
        else:
            amount = float(value)
        return -amount if worse == "low" else amount

    def _uln(self, part: dict[str, Any], quantity: dict[str, Any], spec: v.Spec, label: str) -> Any:
        ranges = part.get("referenceRange")
        if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], dict):
            return None
        high = ranges[0].get("high")
        if not isinstance(high, dict) or not _is_number(high.get("value")):
            return None
        if not any(k in high for k in ("code", "unit")):
            # a limit written without a unit is in the result's unit
            high = {**high, **{k: quantity[k] for k in ("code", "unit", "system") if k in quantity}}
        if high["value"] <= 0:
            self.notes.append(
                (
                    f"{label}: referenceRange high {high['value']} is not above zero; no ULN taken",
                    None,
                )
            )
            return None
        errors = len(self.reading.errors)
        text = self._quantity(high, spec, label + " referenceRange.high")
        if text is None:
            # a bad limit loses the limit, not the result: a default ULN applies, and says so
            bad = self.reading.errors[errors:]
            del self.reading.errors[errors:]
            self.notes.extend((d.message + "; no ULN taken", d.hint) for d in bad)
        return text

    def _result(self, part: dict[str, Any], label: str) -> str | None:
        concept = part.get("valueCodeableConcept")
        lookup = v.result("result").lookup()
        if concept is not None:
            found = self.map.find("results", concept)
            if found:
                return str(found[0].data["result"])
            word = lookup.get(v.fold(concept_name(concept)))
            if word:
                return word
            self.reading.warn(
                f"{label}: result {concept_name(concept)!r} is neither positive nor "
                "negative; not used",
                "enter the result by hand",
            )
            return None
        if isinstance(part.get("valueString"), str):
            word = lookup.get(v.fold(clean(part["valueString"])))
            if word:
                return word
            self.reading.warn(
                f"{label}: result {part['valueString']!r} is neither positive nor "
                "negative; not used",
                "enter the result by hand",
            )
            return None
        for concept in as_list(part.get("interpretation")):
            found = self.map.find("results", concept)
            if found:
                return str(found[0].data["result"])
        if "dataAbsentReason" in part:
            self.reading.warn(f"{label}: no result ({_absent(part)}); not used")
            return None
        values = [k for k in part if k.startswith("value")]
        got = f"only {', '.join(values)}" if values else "no value"
        self.reading.error(
            f"{label}: {got}; a positive/negative result (valueCodeableConcept or "
            "valueString) is needed",
            "a result without a value cannot be screened",
        )
        return None

    def _grade(self, part: dict[str, Any], label: str) -> int | None:
        grade: Any = None
        if "valueInteger" in part:
            grade = part["valueInteger"]
        elif isinstance(part.get("valueQuantity"), dict):
            grade = part["valueQuantity"].get("value")
        elif "valueCodeableConcept" in part:
            found = self.map.find("ecog_answers", part["valueCodeableConcept"])
            if found:
                grade = found[0].data["grade"]
            else:
                name = concept_name(part["valueCodeableConcept"])
                grade = int(name) if name.isdigit() else None
                if grade is None:
                    self.reading.warn(f"{label}: answer {name!r} is not an ECOG grade; not used")
                    return None
        else:
            for concept in as_list(part.get("interpretation")):
                found = self.map.find("ecog_answers", concept)
                if found:
                    grade = found[0].data["grade"]
                    break
        if grade is None:
            if "dataAbsentReason" in part:
                return None
            self.reading.error(
                f"{label}: no value; an ECOG grade (valueInteger 0–5) is needed",
                "a result without a value cannot be screened",
            )
            return None
        if not _is_number(grade) or float(grade) != int(grade) or not 0 <= grade <= 5:
            self.reading.error(f"{label}: {grade!r} is not an ECOG grade (0–5)")
            return None
        if grade == 5:
            self.reading.warn(
                f"{label}: ECOG 5 (dead) recorded; not used",
                "check the record: a living patient has ECOG 0–4",
            )
            return None
        return int(grade)

    def _score(self, part: dict[str, Any], label: str, spec: v.Integer) -> int | None:
        """A whole-number score other than ECOG (Karnofsky, Lansky): valueInteger, or a
        valueQuantity's number, within the field's scale."""
        score: Any = part.get("valueInteger")
        if score is None and isinstance(part.get("valueQuantity"), dict):
            score = part["valueQuantity"].get("value")
        if score is None:
            if "dataAbsentReason" in part:
                self.reading.warn(f"{label}: no value ({_absent(part)}); not used")
                return None
            self.reading.error(
                f"{label}: no value; a {spec.label} (valueInteger {spec.low}–{spec.high}) "
                "is needed",
                "a result without a value cannot be screened",
            )
            return None
        if (
            not _is_number(score)
            or float(score) != int(score)
            or not spec.low <= score <= spec.high
            or (int(score) - spec.low) % spec.step
        ):
            self.reading.error(f"{label}: {score!r} is not a {spec.label} ({spec.low}–{spec.high})")
            return None
        return int(score)

    def _earlier(
        self, name: str, candidates: list[_Candidate], latest: When
    ) -> list[dict[str, Any]]:
        """A lab's results before its latest, oldest first, one per moment (chosen as the
        latest is, with the same warnings), back to SERIES_SPAN before the as-of date: what
        `worst`, `occasions` and `change` read. A result that cannot be used (a bound such
        as "<10") is left out with a warning: a criterion reading the series may miss it."""
        start = self.reading.on - SERIES_SPAN
        moments: dict[Any, list[_Candidate]] = {}
        for c in candidates:
            if c.when != latest and c.when.date >= start:
                moments.setdefault(c.when, []).append(c)
        results = []
        for when in sorted(moments):
            chosen = self._pick(name, moments[when], when)
            if chosen.problem:
                self.reading.warn(
                    f"{name}: an earlier result, {chosen.where}, {chosen.problem}; not in the "
                    "series of results",
                    "a criterion reading the lab's earlier results may miss it: enter it by hand",
                )
                continue
            results.append(_lab_result(chosen))
        return results

    def _pick(self, name: str, tied: list[_Candidate], when: When) -> _Candidate:
        """The one of a moment's results that is kept: the one farther from normal, with a
        warning when they differ, and the chosen one's own notes."""
        chosen = max(tied, key=lambda c: (c.rank, c.order))
        if len({str(c.value) for c in tied}) > 1:
            listed = "; ".join(f"{c.value} ({c.name})" for c in tied)
            side = {"high": "higher", "low": "lower", "positive": "positive"}[chosen.rule.worse]
            self.reading.warn(
                f"{name}: {len(tied)} different results at the same time "
                f"({when.date}): {listed}; the {side} one, {chosen.value}, is used",
                "check which result is right and correct the file if need be",
            )
        for message, hint in chosen.notes:
            self.reading.warn(message, hint)
        return chosen

    def _choose(self, name: str, candidates: list[_Candidate]) -> None:
        latest = max(c.when for c in candidates)
        chosen = self._pick(name, [c for c in candidates if c.when == latest], latest)
        where = chosen.where
        if chosen.problem:
            self.reading.warn(
                f"{name}: the latest result, {where}, {chosen.problem}; not used",
                "enter the value by hand",
            )
            return
        spec = chosen.rule.spec
        if isinstance(spec, v.Lab):
            value: Any = _lab_result(chosen)
            if chosen.uln is not None:
                where += ", ULN from referenceRange"
            earlier = self._earlier(name, candidates, latest)
            if earlier:
                value = [*earlier, value]
                where += f", with {len(earlier)} earlier result{'s' * (len(earlier) > 1)}"
        elif isinstance(spec, v.Record):
            value = {"result": chosen.value, "date": chosen.when.date}
        else:
            value = chosen.value
        *heads, last = name.split(".")
        into = self.reading.record
        for head in heads:
            into = into.setdefault(head, {})
        into[last] = value
        if heads and not isinstance(spec, (v.Lab, v.Record)):
            # A part of a dated record (a blood pressure's systolic value): the record's
            # date is the result's, as a lab's is.
            holder = self.reading.vocabulary.resolve(".".join(heads))
            if isinstance(holder, v.Record) and isinstance(holder.fields.get("date"), v.Date):
                into["date"] = max(into.get("date", chosen.when.date), chosen.when.date)
        self.reading.sources[name] = where
        self.reading.dates[name] = chosen.when.date
