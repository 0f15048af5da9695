"""One reader per kind of resource besides Observations: the Patient (id, birth date, sex,
a recorded death) and the lists of things (conditions, medications, procedures,
vaccinations, allergies).

A list is given only when the bundle holds resources of its kind, so an absent list stays
unknown; codes the mapping does not know are left out and counted in a warning. Each item's
source (resource, code, date) is recorded under its place in the list.
"""

from __future__ import annotations

from typing import Any

from screener.core._errors import Diagnostic
from screener.reading._fhir_bundle import (
    HINT_EXPORT,
    Index,
    Reading,
    When,
    as_list,
    clean,
    codings,
    concept_name,
    fail,
    period_start,
    resource_name,
)
from screener.reading._fhir_mapping import Mapping

_ACTIVE = {"active", "recurrence", "relapse"}
_INACTIVE = {"inactive", "remission", "resolved"}


class Resources:
    """Reads the Patient and the list resources into `reading`'s record."""

    def __init__(self, reading: Reading, table: Mapping) -> None:
        self.reading = reading
        self.map = table

    def patient(self, patient: dict[str, Any], full_url: Any) -> Diagnostic | None:
        """Id, birth date and sex from the Patient (no name); a recorded death as the
        diagnostic the caller raises, unless the screening date is before it."""
        pid = patient.get("id")
        if not isinstance(pid, str) or not pid.strip():
            tail = str(full_url).rsplit(":", 1)[-1].rsplit("/", 1)[-1] if full_url else ""
            if not tail:
                raise fail(self.reading.display, "the Patient resource has no id", HINT_EXPORT)
            pid = tail
        pid = clean(pid)
        where = f"Patient/{pid}"
        self.reading.record["id"] = pid
        self.reading.sources["id"] = where
        birth = patient.get("birthDate")
        if birth is not None:
            when = When.parse(birth)
            if when is None or "T" in str(birth):
                self.reading.warn(
                    f"{where}: birth date {birth!r} is not a full date; not used",
                    "add birth_date by hand",
                )
            else:
                self.reading.record["birth_date"] = when.date
                self.reading.sources["birth_date"] = where
        gender = patient.get("gender")
        if gender in ("female", "male"):
            self.reading.record["sex"] = gender
            self.reading.sources["sex"] = where
        elif gender is not None:
            self.reading.warn(
                f"{where}: gender {gender!r} is not female or male; sex not set",
                "add sex by hand where a criterion needs it",
            )
        if patient.get("deceasedBoolean") is True:
            return Diagnostic(
                f"patient {pid} is deceased ({where} deceasedBoolean is true): not screened",
                self.reading.display,
                hint="the EHR export records a death; check the file is the right patient",
            )
        died = patient.get("deceasedDateTime")
        if died is not None:
            when = When.parse(died)
            day = when.date.isoformat() if when else clean(str(died))
            first = when.date if when else period_start(died)
            if first is not None and self.reading.on < first:
                # A retrospective screen (as of a date when the patient was alive) is
                # legitimate: screen it, and say the patient has since died.
                self.reading.warn(
                    f"patient {pid} died {day} ({where}), after the screening date "
                    f"{self.reading.on}: screened as of {self.reading.on}",
                    "a retrospective screen: only results up to that date are used",
                )
                return None
            return Diagnostic(
                f"patient {pid} is deceased (died {day}, {where}): not screened",
                self.reading.display,
                hint="the EHR export records a death; check the file is the "
                "right patient, or screen as of a date before the death "
                "(--as-of)",
            )
        return None

    def conditions(self, found: list[tuple[int, dict[str, Any]]]) -> None:
        items: list[dict[str, Any]] = []
        unmapped: list[str] = []
        studied: list[str] = []
        for index, res in found:
            status = _code_of(res.get("verificationStatus"))
            if status in ("refuted", "entered-in-error"):
                continue
            onset = _first_when(res, "onsetDateTime", "onsetPeriod")
            noted = onset or When.parse(res.get("recordedDate"))
            if noted is not None and noted.date > self.reading.on:
                continue
            match = self.map.find("conditions", res.get("code"))
            name = concept_name(res.get("code"), match[1] if match else None)
            if match is None:
                unmapped.append(name or resource_name(res, index))
                continue
            code, _ = match
            if code.data.get("type") is None:
                studied.append(name)
                continue
            item: dict[str, Any] = {"type": code.data["type"]}
            if name:
                item["name"] = name
            item.update({k: val for k, val in code.data.items() if k != "type"})
            clinical = _code_of(res.get("clinicalStatus"))
            abated = _first_when(res, "abatementDateTime", "abatementPeriod", end=True)
            if abated is not None and abated.date > self.reading.on:
                clinical, abated = "active", None  # still present on the as-of date
            if clinical in _ACTIVE:
                item["active"] = True
            elif clinical in _INACTIVE or (clinical is None and abated is not None):
                item["active"] = False
            if code.data["type"] in self.map.event_types:
                if onset is not None:
                    item["date"] = onset.date
            elif abated is not None and item.get("active") is False:
                item["date"] = abated.date
            if item["type"] == "malignancy" and clinical in _ACTIVE | {"remission"}:
                item.setdefault("status", "active" if clinical in _ACTIVE else "remission")
            severity = self.map.find("severity", res.get("severity"))
            if severity is not None:
                grade = severity[0].data["grade"]
                item["severe"] = grade == "severe"
                if item["type"] == "gvhd":
                    item["grade"] = grade
            day = onset.date.isoformat() if onset else "no onset date"
            self.reading.sources[f"conditions[{len(items)}]"] = (
                f"{resource_name(res, index)} ({code.label()}), {day}"
            )
            items.append(item)
        self.reading.record["conditions"] = items
        if unmapped:
            shown = "; ".join(sorted(set(unmapped))[:12])
            more = "" if len(set(unmapped)) <= 12 else f"; and {len(set(unmapped)) - 12} more"
            self.reading.warn(
                f"{len(unmapped)} Condition(s) with codes the mapping does not know were "
                f"left out of conditions: {shown}{more}",
                "add any that matter to the trials by hand (docs/fhir.md lists the mapped codes)",
            )
        if studied:
            self.reading.warn(
                f"{'; '.join(sorted(set(studied)))}: the leukaemia under study is not a "
                "condition entry",
                "record it under diagnosis",
            )

    def medications(self, found: list[tuple[int, dict[str, Any]]], idx: Index) -> None:
        items: list[dict[str, Any]] = []
        for index, res in found:
            status = res.get("status")
            if status in ("entered-in-error", "cancelled", "draft", "not-taken", "intended"):
                continue
            concept = res.get("medicationCodeableConcept")
            where = resource_name(res, index)
            ref = res.get("medicationReference")
            if concept is None and isinstance(ref, dict):
                target = (
                    idx.resolve(ref["reference"]) if isinstance(ref.get("reference"), str) else None
                )
                if target is not None:
                    concept = target.get("code")
                elif clean(ref.get("display")):
                    concept = {"text": ref["display"]}
                else:
                    self.reading.error(
                        f"{where}: medicationReference {ref.get('reference')!r} is not "
                        "in the bundle (broken reference)",
                        HINT_EXPORT,
                    )
                    continue
            name = concept_name(concept)
            if not name:
                self.reading.warn(f"{where}: medication has no name or code; left out")
                continue
            if res["resourceType"] == "MedicationRequest":
                start = When.parse(res.get("authoredOn"))
                bounds = _bounds(res)
                stop = When.parse(bounds.get("end")) if bounds else None
                start = When.parse(bounds.get("start")) if bounds and bounds.get("start") else start
            else:
                start = _first_when(res, "effectiveDateTime", "effectivePeriod")
                period = res.get("effectivePeriod")
                stop = When.parse(period.get("end")) if isinstance(period, dict) else None
            if start is not None and start.date > self.reading.on:
                continue
            item: dict[str, Any] = {"name": name, "class": self._medication_class(concept, name)}
            route = self._route(res, name)
            if route:
                item["route"] = route
            if start is not None:
                item["start_date"] = start.date
            if stop is not None and stop.date <= self.reading.on:
                item["stop_date"] = stop.date
            if status == "active" and "stop_date" not in item:
                item["ongoing"] = True
            elif status in ("completed", "stopped") or "stop_date" in item:
                item["ongoing"] = False
            code = self._code_note(concept, "RxNorm")
            day = start.date.isoformat() if start else "no date"
            self.reading.sources[f"medications[{len(items)}]"] = f"{where}{code}, {day}"
            items.append(item)
        self.reading.record["medications"] = items

    def _code_note(self, concept: Any, system: str) -> str:
        """ " (RxNorm 5640)" for the first coding of `system` in a concept, else ""."""
        return next(
            (
                f" ({system} {c.get('code')})"
                for c in codings(concept)
                if self.map.aliases.get(str(c.get("system", "")).rstrip("/")) == system
            ),
            "",
        )

    def _medication_class(self, concept: Any, name: str) -> str:
        found = self.map.find("medication_codes", concept)
        if found:
            return str(found[0].data["class"])
        for pattern, value in self.map.medication_words:
            if pattern.search(name):
                return value
        return "other"

    def _route(self, res: dict[str, Any], name: str) -> str | None:
        for dosage in as_list(res.get("dosageInstruction")) + as_list(res.get("dosage")):
            if isinstance(dosage, dict):
                found = self.map.find("route_codes", dosage.get("route"))
                if found:
                    return str(found[0].data["route"])
        for pattern, value in self.map.route_words:
            if pattern.search(name):
                return value
        return None

    def procedures(self, found: list[tuple[int, dict[str, Any]]]) -> None:
        items: list[dict[str, Any]] = []
        unmapped: list[str] = []
        for index, res in found:
            if res.get("status") in ("not-done", "entered-in-error", "preparation"):
                continue
            when = _first_when(res, "performedDateTime", "performedPeriod")
            if when is not None and when.date > self.reading.on:
                continue
            match = self.map.find("procedures", res.get("code"))
            name = concept_name(res.get("code"), match[1] if match else None)
            surgical = any(
                self.map.find("surgical_categories", c)
                for c in [res.get("category")] + as_list(res.get("category"))
                if isinstance(c, dict)
            )
            if match is None and not surgical:
                unmapped.append(name or resource_name(res, index))
                continue
            kind = str(match[0].data["type"]) if match else "surgery"
            if kind == "other" and surgical:
                kind = "surgery"
            item: dict[str, Any] = {"type": kind}
            if name:
                item["name"] = name
            if when is not None:
                item["date"] = when.date
            label = f" ({match[0].label()})" if match else " (category: surgical procedure)"
            day = when.date.isoformat() if when else "no date"
            self.reading.sources[f"procedures[{len(items)}]"] = (
                f"{resource_name(res, index)}{label}, {day}"
            )
            items.append(item)
        self.reading.record["procedures"] = items
        if unmapped:
            shown = "; ".join(sorted(set(unmapped))[:12])
            self.reading.warn(
                f"{len(unmapped)} Procedure(s) with codes the mapping does not know were "
                f"left out of procedures: {shown}",
                "add surgery, catheterization, stents or bypass surgery by hand",
            )

    def vaccinations(self, found: list[tuple[int, dict[str, Any]]]) -> None:
        items: list[dict[str, Any]] = []
        for index, res in found:
            if res.get("status") in ("not-done", "entered-in-error"):
                continue
            when = _first_when(res, "occurrenceDateTime")
            if when is not None and when.date > self.reading.on:
                continue
            match = self.map.find("vaccines", res.get("vaccineCode"))
            name = concept_name(res.get("vaccineCode"), match[1] if match else None)
            item: dict[str, Any] = {}
            if name:
                item["name"] = name
            if when is not None:
                item["date"] = when.date
            if match is not None:
                item["live"] = bool(match[0].data["live"])
            code = self._code_note(res.get("vaccineCode"), "CVX")
            day = when.date.isoformat() if when else "no date"
            self.reading.sources[f"vaccinations[{len(items)}]"] = (
                f"{resource_name(res, index)}{code}, {day}"
            )
            items.append(item)
        self.reading.record["vaccinations"] = items

    def allergies(self, found: list[tuple[int, dict[str, Any]]]) -> None:
        """`allergies` from AllergyIntolerance: the substance, `biological` for the substances
        the mapping lists, `severe` when the record says so either way. A "no known allergy"
        record is no item: with no allergy beside it, the list is empty."""
        items: list[dict[str, Any]] = []
        none_known: list[str] = []
        intolerances: list[str] = []
        for index, res in found:
            if _code_of(res.get("verificationStatus")) in ("refuted", "entered-in-error"):
                continue
            when = _first_when(res, "onsetDateTime", "onsetPeriod") or When.parse(
                res.get("recordedDate")
            )
            if when is not None and when.date > self.reading.on:
                continue
            concept = res.get("code")
            where = resource_name(res, index)
            if self.map.find("no_known_allergy", concept):
                none_known.append(where)
                continue
            if res.get("type") == "intolerance":
                # Not immune-mediated (FHIR: "judged to be not allergic or allergy-like"):
                # a trial's allergy criteria do not ask about it.
                intolerances.append(f"{where} ({concept_name(concept) or 'no substance'})")
                continue
            match = self.map.find("allergy_substances", concept)
            name = concept_name(concept, match[1] if match else None)
            item: dict[str, Any] = {}
            if name:
                item["substance"] = name
            else:
                self.reading.warn(
                    f"{where}: allergy with no substance (no code or text); kept without one",
                    "add the substance by hand",
                )
            if match is not None:
                item["biological"] = bool(match[0].data["biological"])
            severe = _severe(res)
            if severe is not None:
                item["severe"] = severe
            label = f" ({match[0].label()})" if match else ""
            day = when.date.isoformat() if when else "no date"
            self.reading.sources[f"allergies[{len(items)}]"] = f"{where}{label}, {day}"
            items.append(item)
        if intolerances:
            self.reading.warn(
                f"{len(intolerances)} intolerance(s), not allergies, were left out of "
                f"allergies: {'; '.join(intolerances[:12])}",
                "add any that is an allergy by hand",
            )
        if none_known and items:
            self.reading.warn(
                f"{', '.join(none_known)} records no known allergy, but the bundle also "
                f"lists {len(items)} allerg{'y' if len(items) == 1 else 'ies'}; those are used",
                "check the allergy list",
            )
        # Called only when the bundle holds AllergyIntolerance resources: as for conditions,
        # they make the list known (refuted ones included), and no resource leaves it unknown.
        self.reading.record["allergies"] = items


def _code_of(concept: Any) -> str | None:
    for coding in codings(concept):
        if isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def _first_when(res: dict[str, Any], *keys: str, end: bool = False) -> When | None:
    for key in keys:
        value = res.get(key)
        if isinstance(value, dict):  # a Period
            ends = (value.get("end"), value.get("start"))
            found = When.parse(ends[not end]) or When.parse(ends[end])
        else:
            found = When.parse(value)
        if found is not None:
            return found
    return None


def _bounds(res: dict[str, Any]) -> dict[str, Any] | None:
    for dosage in as_list(res.get("dosageInstruction")):
        timing = dosage.get("timing") if isinstance(dosage, dict) else None
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
        if isinstance(bounds, dict):
            return bounds
    return None


def _severe(res: dict[str, Any]) -> bool | None:
    """True for criticality high or a severe reaction; False for criticality low with no
    severe reaction; else unknown (None): a reaction's mild or moderate alone says nothing
    of the risk of the next."""
    reactions = [r for r in as_list(res.get("reaction")) if isinstance(r, dict)]
    if res.get("criticality") == "high" or any(r.get("severity") == "severe" for r in reactions):
        return True
    if res.get("criticality") == "low":
        return False
    return None
