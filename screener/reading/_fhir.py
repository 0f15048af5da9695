"""FHIR R4 Bundles (EHR exports) read into the same patient facts a YAML file gives.

A Bundle (transaction, collection, searchset, batch or document) is read with plain `json`;
its one Patient and the Observations, Conditions, MedicationRequests/-Statements,
Procedures, Immunizations and AllergyIntolerances that refer to it become a record in the
patient-file format, which `patient.from_mapping` then checks exactly as it checks a YAML
file. Which code means which field is data (screener/data/fhir_mapping.yaml, documented in
docs/fhir.md).

Rules, in one place:

* **Latest value wins**, among results dated on or before the as-of date (the `as_of`
  argument, else today); a result dated after it is ignored. Two different results at
  the same moment: the one farther from normal is kept, and a warning names both.
* **Nothing is guessed.** An unknown unit, an Observation with no value, a reference to a
  patient the bundle does not hold, a malformed bundle: a `PatientError` naming the file
  (and the resource). Codes the mapping does not know are left out and counted in a
  warning; a list (conditions, medications, …) is given only when the bundle has
  resources of that kind, so an absent list stays unknown.
* **Values are copied exactly**, never rounded: rounding 49.96 % to 50 % would pass an
  LVEF ≥ 50 % criterion the patient fails.
* **A deceased patient is not screened** (`PatientError`: the patient died on …), unless
  the screening date (`as_of`) is before the death: a retrospective screen, with a warning.
* Only the Patient's id, birth date and sex are copied from the Patient: no name.

This module is the entry; the work is split by concern: `_fhir_bundle` (the JSON, the
bundle's shape, references, which resources are about the patient), `_fhir_mapping` (the
code tables), `_fhir_observations` (choosing among results) and `_fhir_resources` (a reader
per resource type).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screener.core import _vocabulary as v
from screener.core._errors import Diagnostic, PatientError
from screener.core._model import Patient
from screener.reading._fhir_bundle import (
    BUNDLE_TYPES,
    HINT_EXPORT,
    MAX_BYTES,
    Index,
    Reading,
    When,
    about_patient,
    clean,
    codings,
    concept_name,
    entries,
    read_json,
    the_patient,
)
from screener.reading._fhir_mapping import (
    MAPPING_FILE,
    Code,
    Mapping,
    ObservationRule,
    code_systems,
    mapping,
)
from screener.reading._fhir_observations import Observations
from screener.reading._fhir_resources import Resources
from screener.reading._patient import from_mapping

CLINICAL = (
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "Procedure",
    "Immunization",
    "AllergyIntolerance",
)
STALE_DAYS = 90  # a warning says so when every dated value is older than this


@dataclass
class Extract:
    """What a bundle says about its patient, before the patient-file checks."""

    record: dict[str, Any]
    sources: dict[str, str]
    warnings: list[Diagnostic]
    errors: list[Diagnostic]
    deceased: Diagnostic | None
    as_of: dt.date
    file: str
    # dotted field path -> date of the result it came from (for the importer's notes)
    dates: dict[str, dt.date] = field(default_factory=dict)
    vocabulary: v.Vocabulary | None = None  # read with (None: the built-in one)


def read_bundle(
    path: Path,
    display: str,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Extract:
    """Read a bundle into a patient-file record; structural problems raise PatientError.

    Problems with single resources (unknown units, values missing, broken references) are
    collected in `errors`, and a recorded death in `deceased`, for the caller to raise.
    `vocabulary` (a rules directory's, else the built-in one) says which codes fill which
    fields.
    """
    return extract_bundle(read_json(path, display), display, as_of, today, vocabulary)


def extract_bundle(
    bundle: Any,
    display: str,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Extract:
    """`read_bundle` for a bundle already parsed (e.g. one patient's lines of a bulk export)."""
    on = as_of or today or dt.date.today()
    vocab = v.chosen(vocabulary)
    table = mapping(None if vocab is v.BUILTIN else vocab)
    reading = Reading(display, on, vocab)
    found = entries(bundle, display)
    patient = the_patient(found, display)
    index = Index()
    for _, resource, full_url in found:
        index.add(resource, full_url)
    full_url = next(u for _, r, u in found if r is patient)
    resources = Resources(reading, table)
    deceased = resources.patient(patient, full_url)
    by_type: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, resource, _ in found:
        if resource["resourceType"] in CLINICAL and about_patient(
            reading, resource, i, index, patient
        ):
            by_type.setdefault(resource["resourceType"], []).append((i, resource))
    Observations(reading, table).read(by_type.get("Observation", []))
    if "Condition" in by_type:
        resources.conditions(by_type["Condition"])
    medications = by_type.get("MedicationRequest", []) + by_type.get("MedicationStatement", [])
    if medications:
        resources.medications(sorted(medications, key=lambda pair: pair[0]), index)
    if "Procedure" in by_type:
        resources.procedures(by_type["Procedure"])
    if "Immunization" in by_type:
        resources.vaccinations(by_type["Immunization"])
    if "AllergyIntolerance" in by_type:
        resources.allergies(by_type["AllergyIntolerance"])
    if reading.later:
        reading.warn(
            f"{reading.later} mapped result(s) dated after {on} were ignored",
            "results count only up to the as-of date (--as-of, else today)",
        )
    if reading.dates:
        newest = max(reading.dates.values())
        if (on - newest).days > STALE_DAYS:
            reading.warn(
                f"every result taken from the bundle is more than {STALE_DAYS} days "
                f"old (the newest is from {newest}, {(on - newest).days} days before "
                f"{on})",
                "screen with --max-age (e.g. 30d) to count old results as "
                "missing, and collect current ones",
            )
    record = {key: reading.record[key] for key in vocab.root.fields if key in reading.record}
    return Extract(
        record,
        reading.sources,
        reading.warnings,
        reading.errors,
        deceased,
        on,
        display,
        reading.dates,
        vocabulary,
    )


def _with_sources(error: PatientError, sources: dict[str, str]) -> PatientError:
    """Name the FHIR resource a field came from in the patient-file check's messages."""
    out = []
    for d in error.diagnostics:
        head = d.message.split(":", 1)[0]
        key = next(
            (
                k
                for k in sorted(sources, key=len, reverse=True)
                if head == k or head.startswith(k + ".") or head.startswith(k + "[")
            ),
            None,
        )
        if key is not None:
            d = Diagnostic(
                f"{d.message} (from {sources[key]})", d.file, d.position, d.hint, d.source_line
            )
        out.append(d)
    return PatientError(*out)


def patient_from_extract(
    extract: Extract, as_of: dt.date | None = None, today: dt.date | None = None
) -> Patient:
    """The checked Patient, or a PatientError (the death first, then every problem)."""
    problems = ([extract.deceased] if extract.deceased else []) + list(extract.errors)
    if problems:
        raise PatientError(*problems)
    try:
        return from_mapping(
            extract.record,
            extract.file,
            as_of,
            today,
            sources=extract.sources,
            warnings=tuple(extract.warnings),
            vocabulary=extract.vocabulary,
        )
    except PatientError as exc:
        raise _with_sources(exc, extract.sources) from None


def load_bundle_patient(
    path: Path,
    display: str,
    as_of: dt.date | None = None,
    today: dt.date | None = None,
    vocabulary: v.Vocabulary | None = None,
) -> Patient:
    """A patient from a FHIR R4 Bundle (.json), checked like a YAML patient file.

    Raises PatientError, naming `display`, for an unreadable or malformed file, a bundle
    without exactly one Patient, broken references, unknown units, results without a
    value, and a deceased patient.
    """
    extract = read_bundle(Path(path), display, as_of, today, vocabulary)
    return patient_from_extract(extract, as_of, today)


# What other modules and the tests use of the FHIR reader, wherever it now lives.
__all__ = [
    "BUNDLE_TYPES",
    "CLINICAL",
    "HINT_EXPORT",
    "MAPPING_FILE",
    "MAX_BYTES",
    "STALE_DAYS",
    "Code",
    "Extract",
    "Mapping",
    "ObservationRule",
    "When",
    "clean",
    "code_systems",
    "codings",
    "concept_name",
    "extract_bundle",
    "load_bundle_patient",
    "mapping",
    "patient_from_extract",
    "read_bundle",
    "read_json",
]
