"""Write a synthetic FHIR bulk export of N patients, made from the sample Synthea bundles.

    python benchmarks/bulk_export.py OUT_DIR -n 10000 [--seed 1] [--files 4]

Each patient is one of the six sample bundles (tests/data/fhir) under a new UUID, born on
another day, with every date moved by the same random span, quantities scaled by a random
factor and creatinine written in umol/L for a share of patients. Per patient it keeps the
Patient, its Conditions, and a sample of the rest that screening reads (12 Observations,
3 MedicationRequests, 2 Procedures, 2 Immunizations), plus 2 Encounters and 2 Claims that
screening must skip. The samples hold no AllergyIntolerance: about one patient in six is
given one (a penicillin, peanut or codeine allergy, or "no known allergy"), drawn from the
patient's id so the other resources are those of an export without them. Each type is
spread over `--files` files (`Observation.000.ndjson`, …) and the lines of all patients are
shuffled together, as a server writes them; a manifest
lists the files. Prints the export's size on disk.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import random
import uuid
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data" / "fhir"
KEEP = {
    "Observation": 12,
    "MedicationRequest": 3,
    "Procedure": 2,
    "Immunization": 2,
    "Encounter": 2,
    "Claim": 2,
}  # Patient and Conditions: all
DATE_KEYS = (
    "effectiveDateTime",
    "issued",
    "onsetDateTime",
    "abatementDateTime",
    "recordedDate",
    "authoredOn",
    "performedDateTime",
    "occurrenceDateTime",
    "start",
    "end",
    "created",
)
CREATININE = {"2160-0", "38483-4"}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ALLERGY_SHARE = 1 / 6  # of patients with an AllergyIntolerance
ALLERGIES = (  # code system, code, display, criticality
    (RXNORM, "70618", "Penicillin", "high"),
    (RXNORM, "70618", "Penicillin", "low"),
    (SNOMED, "91935009", "Allergy to peanuts", "high"),
    (RXNORM, "2670", "Codeine", "low"),
    (SNOMED, "716186003", "No known allergy", None),
)
# Lines held in memory before they are shuffled into the files: a window, not the export.
WINDOW = 20_000


def _templates() -> list[dict[str, list[dict[str, Any]]]]:
    found = []
    for path in sorted(SAMPLES.glob("*.json")):
        by_type: dict[str, list[dict[str, Any]]] = {}
        for entry in json.loads(path.read_text(encoding="utf-8"))["entry"]:
            resource = entry["resource"]
            by_type.setdefault(resource["resourceType"], []).append(resource)
        found.append(by_type)
    return found


def _shift(node: Any, days: dt.timedelta) -> None:
    """Every date and dateTime below `node` moved by `days` (the time of day kept)."""
    if isinstance(node, list):
        for item in node:
            _shift(item, days)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in DATE_KEYS and isinstance(value, str) and len(value) >= 10:
            try:
                day = dt.date.fromisoformat(value[:10]) + days
            except ValueError:
                continue
            node[key] = day.isoformat() + value[10:]
        else:
            _shift(value, days)


def _vary(resource: dict[str, Any], scale: float, molar: bool) -> None:
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), (int, float)):
        return
    codes = {c.get("code") for c in resource.get("code", {}).get("coding", [])}
    value = quantity["value"] * scale
    if molar and codes & CREATININE and quantity.get("code") == "mg/dL":
        quantity.update(value=round(value * 88.42, 1), unit="umol/L", code="umol/L")
    else:
        quantity["value"] = round(value, 2)


def patient(
    templates: list[dict[str, list[dict[str, Any]]]], rng: random.Random
) -> list[dict[str, Any]]:
    """One synthetic patient's resources."""
    template = rng.choice(templates)
    pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    days = dt.timedelta(days=rng.randint(-1500, 0))
    scale = rng.uniform(0.8, 1.25)
    molar = rng.random() < 0.3
    out = []
    person = copy.deepcopy(template["Patient"][0])
    person["id"] = pid
    person.pop("text", None)  # the narrative names the template patient
    born = dt.date.fromisoformat(person["birthDate"]) + dt.timedelta(days=rng.randint(-4000, 4000))
    person["birthDate"] = min(born, dt.date(2025, 1, 1)).isoformat()
    if "deceasedDateTime" in person and rng.random() < 0.5:
        del person["deceasedDateTime"]  # fewer of the dead than among the six samples
    out.append(person)
    for kind, resources in template.items():
        if kind == "Patient":
            continue
        if kind != "Condition" and kind not in KEEP:
            continue
        chosen = (
            resources
            if kind == "Condition"
            else rng.sample(resources, min(KEEP[kind], len(resources)))
        )
        for resource in chosen:
            resource = copy.deepcopy(resource)
            resource["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            resource.pop("text", None)
            key = "patient" if kind in ("Immunization", "Claim") else "subject"
            # the reference forms servers write
            resource[key] = {"reference": rng.choice([f"Patient/{pid}", f"urn:uuid:{pid}"])}
            _shift(resource, days)
            _vary(resource, scale, molar)
            out.append(resource)
    out += _allergies(pid)
    return out


def _allergies(pid: str) -> list[dict[str, Any]]:
    """The patient's AllergyIntolerance, if any; drawn from its id, not from the export's
    random stream, so adding allergies left every other resource as it was."""
    rng = random.Random(pid)
    if rng.random() >= ALLERGY_SHARE:
        return []
    system, code, display, criticality = rng.choice(ALLERGIES)
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "patient": {"reference": f"Patient/{pid}"},
        "recordedDate": "2019-03-15",
    }
    if criticality is not None:
        resource["criticality"] = criticality
    return [resource]


def write_export(folder: Path, n: int, seed: int = 1, files: int = 4) -> int:
    """Write the export; returns its size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    templates = _templates()
    kinds = ["Patient", "Condition", *KEEP, "AllergyIntolerance"]
    streams = {
        (k, i): (folder / f"{k}.{i:03d}.ndjson").open("w", encoding="utf-8")
        for k in kinds
        for i in range(files)
    }
    pending: list[tuple[str, str]] = []

    def spill() -> None:
        rng.shuffle(pending)
        for kind, line in pending:
            streams[(kind, rng.randrange(files))].write(line)
        pending.clear()

    for _ in range(n):
        for resource in patient(templates, rng):
            pending.append((resource["resourceType"], json.dumps(resource) + "\n"))
        if len(pending) >= WINDOW:
            spill()
    spill()
    for stream in streams.values():
        stream.close()
    manifest = {
        "transactionTime": "2026-11-20T00:00:00Z",
        "request": "https://ehr.example/fhir/$export",
        "requiresAccessToken": True,
        "output": [
            {"type": k, "url": f"https://ehr.example/bulk/{k}.{i:03d}.ndjson"}
            for k in kinds
            for i in range(files)
        ],
        "error": [],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return sum(p.stat().st_size for p in folder.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--files", type=int, default=4)
    args = parser.parse_args()
    size = write_export(args.folder, args.n, args.seed, args.files)
    print(f"{args.n:,} patients: {size / 1e6:,.1f} MB on disk in {args.folder}")


if __name__ == "__main__":
    main()
