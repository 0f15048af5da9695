"""screener/reading/_fhir.py and screener/screening/_importer.py: FHIR R4 bundles read into
patient facts.

The six Synthea bundles in tests/data/fhir/ (Apache-2.0, see the LICENSE and README there)
are real-world-shaped exports nobody on the project wrote; small hand-made bundles cover
every mapped code and every way a bundle can be malformed.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.core._errors import PatientError
from screener.core._model import Status, Verdict
from screener.criteria import _catalog as catalog
from screener.reading import _fhir as fhir
from screener.reading import _fhir_mapping as fhir_mapping
from screener.reading._patient import from_mapping, parse_patient
from screener.screening import _engine as engine
from screener.screening import _importer as importer

DATA = Path(__file__).parent / "data" / "fhir"
BUNDLES = {
    path.name.split("_")[0] + "_" + path.name.split("_")[1]: path
    for path in sorted(DATA.glob("*.json"))
}
TODAY = dt.date(2026, 11, 20)
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RULE_SETS = {r.trial: r for r in catalog.load_rule_sets()}
THIRTY_DAYS = units.parse_measure("30 days", units.DURATION)


def extract(name: str, **kwargs: Any) -> fhir.Extract:
    kwargs.setdefault("today", TODAY)
    return fhir.read_bundle(BUNDLES[name], f"{name}.json", **kwargs)


def load(name: str, **kwargs: Any):
    kwargs.setdefault("today", TODAY)
    return fhir.load_bundle_patient(BUNDLES[name], f"{name}.json", **kwargs)


def criterion(patient, trial: str, cid: str, max_age=None):
    result = engine.screen(patient, RULE_SETS[trial], max_age)
    for c in result.criteria:
        if c.id == cid:
            return c
        for part in c.parts:
            if part.id == cid:
                return part
    raise AssertionError(f"no {trial} {cid}")


def messages(diagnostics) -> str:
    return "\n".join(d.message + " " + (d.hint or "") for d in diagnostics)


# ------------------------------------------------------------------------ bundle helpers

PATIENT = {"resourceType": "Patient", "id": "pt-1", "gender": "female", "birthDate": "1980-05-17"}


def entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource.get('id', 'x')}", "resource": resource}


def bundle_dict(
    *resources: dict[str, Any], patient: dict[str, Any] | None = PATIENT, kind: str = "collection"
) -> dict[str, Any]:
    found = ([patient] if patient is not None else []) + list(resources)
    return {"resourceType": "Bundle", "type": kind, "entry": [entry(r) for r in found]}


def write(tmp_path: Path, data: Any, name: str = "bundle.json") -> Path:
    path = tmp_path / name
    # surrogatepass: damage may include lone surrogates, which then reach the reader as the
    # invalid UTF-8 bytes a broken export would hold, instead of failing in the test itself.
    path.write_text(
        data if isinstance(data, str) else json.dumps(data),
        encoding="utf-8",
        errors="surrogatepass",
    )
    return path


def read(tmp_path: Path, *resources: dict[str, Any], **kwargs: Any) -> fhir.Extract:
    options = {k: kwargs.pop(k) for k in ("as_of", "today") if k in kwargs}
    options.setdefault("today", TODAY)
    path = write(tmp_path, bundle_dict(*resources, **kwargs))
    return fhir.read_bundle(path, "bundle.json", **options)


def patient_of(tmp_path: Path, *resources: dict[str, Any], **kwargs: Any):
    options = {k: kwargs.pop(k) for k in ("as_of", "today") if k in kwargs}
    options.setdefault("today", TODAY)
    path = write(tmp_path, bundle_dict(*resources, **kwargs))
    return fhir.load_bundle_patient(path, "bundle.json", **options)


def failure(tmp_path: Path, data: Any, **kwargs: Any) -> PatientError:
    path = write(tmp_path, data)
    with pytest.raises(PatientError) as caught:
        fhir.load_bundle_patient(path, "export/bundle.json", today=TODAY, **kwargs)
    for d in caught.value.diagnostics:
        assert d.file == "export/bundle.json"
    return caught.value


_ids = iter(range(10**6))


def obs(
    code: str,
    value: Any = None,
    unit: str | None = None,
    date: str = "2026-11-10",
    system: str = LOINC,
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"obs-{next(_ids)}",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "urn:uuid:pt-1"},
        "effectiveDateTime": date,
    }
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity.update(unit=unit, system=UCUM, code=unit)
        resource["valueQuantity"] = quantity
    resource.update(extra)
    return resource


def coded(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    return {"coding": [coding]}


def condition(
    code: str, system: str = SNOMED, display: str = "a condition", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"cond-{next(_ids)}",
        "code": coded(system, code, display),
        "subject": {"reference": "urn:uuid:pt-1"},
        **extra,
    }


# ================================================================ the Synthea bundles


def test_the_sample_bundles_and_their_notice_are_in_the_project():
    assert len(BUNDLES) == 6
    assert (DATA / "LICENSE").read_text().startswith("Copyright 2018 Boston Children's")
    assert "Synthea" in (DATA / "README.md").read_text()


def test_angelic_mueller_latest_creatinine_is_3_24_mg_dl_from_blood_loinc_38483_4():
    ex = extract("Angelic_Mueller")
    creatinine = ex.record["labs"]["creatinine"]
    assert creatinine == {"value": "3.2362191736536725 mg/dL", "date": dt.date(2020, 4, 13)}
    assert ex.sources["labs.creatinine"] == (
        "Observation/c83d434c-44e2-4817-97b9-d97666167010 (LOINC 38483-4), 2020-04-13"
    )
    patient = load("Angelic_Mueller")
    lab = patient.data["labs"]["creatinine"]
    assert lab.value.magnitude == pytest.approx(3.2362191736536725)
    assert lab.value.unit == "mg/dl" and lab.uln is None and lab.date == dt.date(2020, 4, 13)
    assert patient.id == "2ec622d5-095b-44d4-9cb2-c0e7e451cd74"
    assert patient.data["sex"] == "female" and patient.data["birth_date"] == dt.date(1978, 4, 3)
    assert patient.sources["labs.creatinine"].startswith("Observation/c83d434c")
    assert patient.as_of == TODAY and patient.as_of_source == "today"


def test_angelic_mueller_fails_the_creatinine_limit_with_the_lab_date_in_the_reason():
    patient = load("Angelic_Mueller")
    part = criterion(patient, "NCT06559644", "I9.c")
    assert part.status is Status.FAIL
    # Display keeps six significant digits of an export's long float; the data keeps all.
    assert part.reason == "creatinine 3.23622 mg/dL on 2020-04-13 > 1.6 mg/dL"
    assert engine.screen(patient, RULE_SETS["NCT06559644"]).verdict is Verdict.INELIGIBLE


def test_years_old_labs_count_as_missing_with_max_age():
    patient = load("Angelic_Mueller")
    part = criterion(patient, "NCT06559644", "I9.c", THIRTY_DAYS)
    assert part.status is Status.UNKNOWN
    assert "labs.creatinine dated 2020-04-13 is older than 30 days before 2026-11-20" in part.reason
    assert part.missing == ("labs.creatinine",)
    # ... and the import says so even without --max-age
    assert "more than 90 days old (the newest is from 2020-04-13" in messages(patient.warnings)


def test_no_referenceRange_in_synthea_so_every_lab_uses_the_default_uln_and_says_so():
    for name in ("Angelic_Mueller", "Jordan_Cruickshank", "Tom_Goodwin"):
        labs = extract(name).record["labs"]
        assert labs and all("uln" not in lab for lab in labs.values())
    part = criterion(load("Angelic_Mueller"), "NCT06559644", "I9.a")
    assert part.status is Status.PASS
    assert "(ULN 1.2 mg/dL assumed, no ULN in the record)" in part.reason


def test_jordan_cruickshank_ast_alt_in_iu_per_litre_are_read_with_a_warning():
    ex = extract("Jordan_Cruickshank")
    labs = ex.record["labs"]
    assert labs["ast"] == {"value": "163.40549045276282 IU/L", "date": dt.date(2017, 6, 24)}
    assert labs["alt"] == {"value": "142.266670665861 IU/L", "date": dt.date(2017, 6, 24)}
    warned = [w for w in ex.warnings if "'IU/L' is not a UCUM code" in w.message]
    assert len(warned) == 2
    assert all(
        w.hint == "UCUM writes [IU]/L" and w.file == "Jordan_Cruickshank.json" for w in warned
    )
    assert ex.sources["labs.ast"] == (
        "Observation/41a8b6eb-cb88-412e-825f-bf9a3e4be4af (LOINC 1920-8), 2017-06-24"
    )
    # AST 163 IU/L is over 3 × the assumed ULN of 40
    patient = load("Jordan_Cruickshank")
    assert patient.data["labs"]["ast"].value.unit == "iu/l"
    part = criterion(patient, "NCT04684147", "I8.a")
    assert part.status is Status.FAIL
    assert "AST 163.405 IU/L on 2017-06-24 = 4.09 × ULN" in part.reason


def test_jordan_cruickshank_bilirubin_42719_5_and_creatinine_2160_0_then_38483_4():
    ex = extract("Jordan_Cruickshank")
    assert ex.record["labs"]["total_bilirubin"] == {
        "value": "1.2468872654071044 mg/dL",
        "date": dt.date(2017, 6, 24),
    }
    assert "(LOINC 42719-5), 2017-06-24" in ex.sources["labs.total_bilirubin"]
    # the latest creatinine is a blood one (38483-4) from 2020
    assert ex.record["labs"]["creatinine"] == {
        "value": "0.7630770376230118 mg/dL",
        "date": dt.date(2020, 11, 30),
    }
    assert "(LOINC 38483-4), 2020-11-30" in ex.sources["labs.creatinine"]
    # as of mid-2017 it is the serum one (2160-0); later results are ignored and counted
    # and the one of 2016-11-07, within the 13 months before, is read as its earlier result
    early = extract("Jordan_Cruickshank", as_of=dt.date(2017, 7, 1))
    assert early.record["labs"]["creatinine"] == [
        {"value": "0.8041971009367287 mg/dL", "date": dt.date(2016, 11, 7)},
        {"value": "0.7619723892354778 mg/dL", "date": dt.date(2017, 6, 24)},
    ]
    assert early.sources["labs.creatinine"] == (
        "Observation/f078d8c9-65b3-4763-a0a2-c863c0fdc4d4 (LOINC 2160-0), 2017-06-24, "
        "with 1 earlier result"
    )
    assert early.record["weight"] == "76.39493668019327 kg"  # 2016-11-07, not 2017-11-13
    assert "dated after 2017-07-01 were ignored" in messages(early.warnings)


def test_michele_wolf_is_deceased_and_becomes_an_error_record():
    with pytest.raises(PatientError) as caught:
        load("Michele_Wolf")
    first = caught.value.diagnostic
    assert first.file == "Michele_Wolf.json"
    assert first.message == (
        "patient 0f49d2d0-59be-4f72-a22b-0a582367b44b is deceased (died "
        "2016-04-05, Patient/0f49d2d0-59be-4f72-a22b-0a582367b44b): "
        "not screened"
    )
    assert "right patient" in first.hint
    assert "Traceback" not in str(caught.value)


def test_michele_wolf_lvef_below_50_and_heart_failure_are_read():
    ex = extract("Michele_Wolf")
    assert ex.deceased is not None
    # two LVEFs from one echo on 2015-10-06: the lower is kept, and a warning names both
    assert ex.record["lvef"] == "39.952520898786815 %"
    assert ex.sources["lvef"] == (
        "Observation/b17d4baa-91b1-45c6-ae70-6a16976f92a5 (LOINC 10230-1), 2015-10-06"
    )
    tie = next(w for w in ex.warnings if w.message.startswith("lvef: 2 different results"))
    assert "47.94109791855291 %" in tie.message and "the lower one" in tie.message
    assert {
        "type": "heart_failure",
        "name": "Chronic congestive heart failure (disorder)",
        "active": True,
    } in ex.record["conditions"]
    # were she alive, LVEF 39.95 % would fail LVEF ≥ 50 %
    alive = from_mapping(ex.record, "Michele_Wolf.json", today=TODAY)
    part = criterion(alive, "NCT06559644", "I7")
    assert part.status is Status.FAIL
    assert part.reason == "LVEF 39.9525 % < 50 %"


def test_luigi_wiegand_is_a_child_ineligible_by_age_for_the_adult_trials():
    patient = load("Luigi_Wiegand")
    assert patient.data["birth_date"] == dt.date(2020, 10, 20)
    assert patient.data["sex"] == "male"
    for trial, cid in (("NCT06559644", "I1"), ("NCT04684147", "I2"), ("NCT06009107", "I2")):
        c = criterion(patient, trial, cid)
        assert c.status is Status.FAIL, (trial, c.reason)
        assert "age 6 years (born 2020-10-20, on 2026-11-20) < 18 years" in c.reason
        assert engine.screen(patient, RULE_SETS[trial]).verdict is Verdict.INELIGIBLE
    # NCT04546906 takes patients from 2 years old
    assert criterion(patient, "NCT04546906", "I7").status is Status.PASS
    # no Condition or medication resources: those lists stay unknown, not empty
    assert "conditions" not in patient.data and "medications" not in patient.data
    assert len(patient.data["vaccinations"]) == 12


def test_garrett_thompson_died_in_infancy():
    ex = extract("Garrett_Thompson")
    assert ex.record["birth_date"] == dt.date(1972, 3, 30)
    assert ex.deceased is not None and "died 1973-07-19" in ex.deceased.message
    types = {(c["type"], c["name"]) for c in ex.record["conditions"]}
    assert ("cns_disorder", "Seizure disorder") in types
    assert ("cns_disorder", "Epilepsy") in types
    with pytest.raises(PatientError, match="is deceased"):
        load("Garrett_Thompson")


def test_tom_goodwin_male_born_1968_with_liver_panel_and_weight():
    ex = extract("Tom_Goodwin")
    assert ex.record["sex"] == "male" and ex.record["birth_date"] == dt.date(1968, 4, 30)
    assert ex.record["weight"] == "86.78064727443127 kg"
    assert ex.sources["weight"] == (
        "Observation/45c55b8d-0e85-4327-9dc1-ad8583a8f4ce (LOINC 29463-7), 2020-05-12"
    )
    labs = ex.record["labs"]
    assert labs["total_bilirubin"]["value"] == "0.11900299815236146 mg/dL"
    assert labs["ast"]["value"] == "21.961359459171135 U/L"
    assert labs["alt"]["value"] == "23.27822394220447 U/L"
    assert {lab["date"] for lab in labs.values()} == {dt.date(2020, 5, 12)}
    # two creatinines from one blood draw: 1.06 and 3.42 mg/dL; the higher is kept
    assert labs["creatinine"]["value"] == "3.416782423247231 mg/dL"
    tie = next(w for w in ex.warnings if w.message.startswith("labs.creatinine: 2 different"))
    assert "1.0606523555763823 mg/dL" in tie.message and "the higher one" in tie.message
    # a bundle with Condition resources, none mapped: conditions is [] and a warning lists them
    assert ex.record["conditions"] == []
    assert "4 Condition(s) with codes the mapping does not know" in messages(ex.warnings)
    assert "Prediabetes" in messages(ex.warnings)
    patient = load("Tom_Goodwin")
    clearance = criterion(patient, "NCT04684147", "I8.d")
    assert "Cockcroft–Gault estimate: age 58, 86.8 kg, male" in clearance.reason


def test_zero_width_spaces_never_leak_from_the_synthea_displays():
    raw = BUNDLES["Michele_Wolf"].read_text(encoding="utf-8")
    assert "\u200b" in raw
    for name in BUNDLES:
        ex = extract(name)
        text = json.dumps(
            [ex.record, ex.sources, [w.message for w in ex.warnings]],
            default=str,
            ensure_ascii=False,
        )
        assert "\u200b" not in text, name


def test_synthea_values_with_many_decimals_are_copied_exactly():
    ex = extract("Angelic_Mueller")
    assert ex.record["weight"] == "79.15129452124671 kg"
    raw = json.loads(BUNDLES["Angelic_Mueller"].read_text())
    values = [
        e["resource"]["valueQuantity"]["value"]
        for e in raw["entry"]
        if e["resource"]["id"] == "c83d434c-44e2-4817-97b9-d97666167010"
    ]
    assert float(ex.record["labs"]["creatinine"]["value"].split()[0]) == values[0]


def test_every_living_synthea_bundle_screens_without_error():
    for name in ("Angelic_Mueller", "Jordan_Cruickshank", "Luigi_Wiegand", "Tom_Goodwin"):
        patient = load(name)
        screening = engine.screen_patient(patient, RULE_SETS.values())
        assert screening.sources  # provenance travels with the result
        assert all(t.verdict is not Verdict.ELIGIBLE for t in screening.trials)


# ==================================================================== the importer


@pytest.mark.parametrize(
    "name", ["Angelic_Mueller", "Jordan_Cruickshank", "Luigi_Wiegand", "Tom_Goodwin"]
)
def test_imported_yaml_loads_and_screens_exactly_as_the_bundle(name):
    text = importer.bundle_to_yaml(BUNDLES[name], today=TODAY)
    from_yaml = parse_patient(text, f"{name}.yaml", today=TODAY)
    from_json = load(name)
    assert from_yaml.warnings == ()
    for rule_set in RULE_SETS.values():
        a, b = engine.screen(from_yaml, rule_set), engine.screen(from_json, rule_set)
        assert a.verdict == b.verdict
        assert [(c.id, c.status, c.reason) for c in a.criteria] == [
            (c.id, c.status, c.reason) for c in b.criteria
        ]


def test_imported_yaml_says_where_each_value_came_from_and_what_is_missing():
    text = importer.bundle_to_yaml(BUNDLES["Angelic_Mueller"], today=TODAY)
    assert (
        "  creatinine: {value: 3.2362191736536725 mg/dL, date: 2020-04-13}  # source: "
        "Observation/c83d434c-44e2-4817-97b9-d97666167010 (LOINC 38483-4), 2020-04-13; "
        "6 years old; no ULN in the bundle"
    ) in text
    assert "sex: female  # source: Patient/2ec622d5-095b-44d4-9cb2-c0e7e451cd74" in text
    assert "# screening_date:  # TODO" in text
    # placeholders sit where the field goes, commented out, with the criteria that read it
    assert (
        "#   direct_bilirubin:  # TODO {value: 1.1 mg/dL, uln: 1.1 mg/dL, date: "
        "YYYY-MM-DD}; needed by NCT04684147 I8.c" in text
    )
    assert "# informed_consent:  # TODO true or false; needed by NCT04546906 I6" in text
    # the checklist: what the trials read that the bundle did not give, and only that
    checklist = text.split("# Checklist:")[1]
    assert "[ ] labs.direct_bilirubin  (NCT04684147 I8.c)" in checklist
    assert "[ ] diagnosis.markers.CD19.result" in checklist
    assert "[ ] allergies" in checklist
    for field in (
        "labs.creatinine ",
        "birth_date",
        "sex ",
        "weight",
        "conditions",
        "vaccinations",
        "labs.creatinine_clearance",
    ):  # CrCl: Cockcroft–Gault
        assert f"[ ] {field}" not in checklist, field
    assert "# Import warnings:" in text and "Sprain of ankle" in text


def test_uncommenting_and_filling_a_placeholder_adds_the_fact():
    text = importer.bundle_to_yaml(BUNDLES["Tom_Goodwin"], today=TODAY)
    filled = text.replace("# informed_consent:  # TODO", "informed_consent: true  # was TODO")
    patient = parse_patient(filled, "tom.yaml", today=TODAY)
    assert patient.data["informed_consent"] is True


def test_importing_a_deceased_patient_is_refused_like_screening_it():
    with pytest.raises(PatientError, match="is deceased"):
        importer.bundle_to_yaml(BUNDLES["Michele_Wolf"], today=TODAY)


def test_the_checklist_comes_from_the_rule_sets():
    needed = importer.needed_fields(RULE_SETS.values())
    assert "NCT06559644 I9.c" in needed["labs.creatinine"]
    assert "NCT06559644 I7" in needed["lvef"]
    assert "age" in needed and "conditions" in needed and "conditions[].type" in needed
    assert "diagnosis.markers.CD19.date" in needed  # a freshness window's date field
    assert all(v.resolve(p.replace("[]", "").split(".")[0]) is not None for p in needed)
    missing = importer.missing_fields({"birth_date": dt.date(1980, 1, 1)}, needed)
    assert "birth_date" not in missing and "age" not in missing
    assert "labs.creatinine_clearance" in missing  # no weight, sex or creatinine to estimate


def test_imported_text_is_quoted_where_yaml_would_misread_it(tmp_path):
    resources = [
        {
            **condition("38341003", display="Hypertension: stage 2, #1 \u200bproblem"),
            "subject": {"reference": "Patient/0012345"},
        },
        {
            "resourceType": "Immunization",
            "id": "imm",
            "status": "completed",
            "vaccineCode": coded("http://hl7.org/fhir/sid/cvx", "140", "yes"),
            "patient": {"reference": "Patient/0012345"},
            "occurrenceDateTime": "2026-11-01",
        },
    ]
    path = write(tmp_path, bundle_dict(*resources, patient={**PATIENT, "id": "0012345"}))
    text = importer.bundle_to_yaml(path, today=TODAY)
    patient = parse_patient(text, "p.yaml", today=TODAY)
    assert patient.id == "0012345"
    assert patient.data["conditions"][0]["name"] == "Hypertension: stage 2, #1 problem"
    assert patient.data["vaccinations"][0]["name"] == "yes"


# ====================================================== every mapped code, hand-made

_UCUM_FOR = {
    "mg/dl": "mg/dL",
    "u/l": "U/L",
    "%": "%",
    "kg": "kg",
    "s": "s",
    "ml/min": "mL/min",
    "days": "d",
    "10^9/l": "10*9/L",
    "g/dl": "g/dL",
    "mmol/l": "mmol/L",
    "mmhg": "mm[Hg]",
    "cm": "cm",
    "ms": "ms",
}
OBSERVATION_RULES = sorted(
    fhir.mapping().observations.values(), key=lambda r: (r.field, r.code.code)
)


def _observation_for(rule: fhir.ObservationRule) -> tuple[dict[str, Any], Any]:
    """A valid Observation for a mapped code, and what the record should then hold."""
    spec = rule.spec
    inner = spec.value if isinstance(spec, v.Lab) else spec
    if isinstance(spec, v.Record):
        inner = spec.fields["result"]
    if isinstance(inner, v.Choice):
        resource = obs(
            rule.code.code,
            system=LOINC,
            valueCodeableConcept=coded(SNOMED, "260385009", "Negative"),
        )
        expected: Any = "negative"
        if isinstance(spec, v.Record):
            expected = {"result": "negative", "date": dt.date(2026, 11, 10)}
        return resource, expected
    if isinstance(inner, v.Integer):
        score = inner.low + inner.step  # 1 for ECOG, 10 for Karnofsky
        return obs(rule.code.code, valueInteger=score), score
    if isinstance(inner, v.Number):
        return obs(rule.code.code, 1.1), {"value": 1.1, "date": dt.date(2026, 11, 10)}
    unit = _UCUM_FOR[inner.kind.references[0]]
    if isinstance(spec, v.Lab) and spec.range_unit:  # the unit its plausible range is in
        unit = _UCUM_FOR[units.normalise_unit(spec.range_unit).replace("×10⁹", "10^9")]
    # a possible result for every lab: 42.5 mg/dL creatinine is beyond its hard limit
    amount = 12.5 if isinstance(spec, v.Lab) else 42.5
    if isinstance(spec, v.Lab) and any(
        (low is not None and amount < low) or (high is not None and amount > high)
        for low, high in (spec.hard, spec.soft)
    ):
        amount = sum(spec.soft) / 2  # 12.5 ms is no QTc: the middle of its plausible range
    resource = obs(rule.code.code, amount, unit)
    text = f"{amount} {fhir.mapping().ucum_units[unit]}"
    if isinstance(spec, v.Lab):
        return resource, {"value": text, "date": dt.date(2026, 11, 10)}
    return resource, text


def _get(record: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        record = record[part]
    return record


@pytest.mark.parametrize(
    "rule", OBSERVATION_RULES, ids=[f"{r.code.code}-{r.field}" for r in OBSERVATION_RULES]
)
def test_every_mapped_observation_code_fills_its_field(tmp_path, rule):
    resource, expected = _observation_for(rule)
    ex = read(tmp_path, resource)
    assert ex.errors == [] and ex.warnings == []
    assert _get(ex.record, rule.field) == expected
    assert ex.sources[rule.field] == (
        f"Observation/{resource['id']} (LOINC {rule.code.code}), 2026-11-10"
    )
    patient = fhir.patient_from_extract(ex, today=TODAY)  # and it passes the file checks
    assert patient.sources[rule.field] == ex.sources[rule.field]


def test_the_mapping_covers_the_fields_and_codes_the_issue_asks_for():
    fields = {(r.field, r.code.code) for r in fhir.mapping().observations.values()}
    for pair in [
        ("labs.creatinine", "2160-0"),
        ("labs.creatinine", "38483-4"),
        ("labs.creatinine", "14682-9"),
        ("labs.total_bilirubin", "1975-2"),
        ("labs.total_bilirubin", "42719-5"),
        ("labs.total_bilirubin", "14631-6"),
        ("labs.direct_bilirubin", "1968-7"),
        ("labs.ast", "1920-8"),
        ("labs.alt", "1742-6"),
        ("lvef", "10230-1"),
        ("ecog", "89247-1"),
        ("weight", "29463-7"),
        ("spo2", "59408-5"),
        ("spo2", "2708-6"),
        ("labs.inr", "6301-6"),
        ("labs.inr", "34714-6"),
        ("labs.aptt", "14979-9"),
        ("labs.aptt", "3173-2"),
    ]:
        assert pair in fields
    covered = {r.field for r in fhir.mapping().observations.values()}
    assert {
        "serology.hiv",
        "serology.hbsag",
        "serology.anti_hcv",
        "serology.hbv_dna",
        "serology.hcv_rna",
        "pregnancy_test",
    } <= covered


def test_no_code_is_mapped_twice_and_every_code_is_quoted():
    raw = yaml.safe_load(fhir.MAPPING_FILE.read_text(encoding="utf-8"))
    # Observation codes are declared with their fields, in the vocabulary.
    vocabulary = yaml.safe_load(v.FILE.read_text(encoding="utf-8"))
    seen: set[tuple[str, str]] = set()
    for entry in vocabulary["fields"].values():
        for system, codes in entry.get("codes", {}).items():
            for code in codes:
                assert isinstance(code, str)
                assert (system, code) not in seen, code
                seen.add((system, code))
    assert len(seen) == len(fhir.mapping().observations)
    for section in (
        "conditions",
        "procedures",
        "vaccines",
        "medication_codes",
        "results",
        "allergy_substances",
        "no_known_allergy",
    ):
        for codes in raw[section].values():
            assert all(isinstance(code, str) for code in codes)


def test_docs_list_every_mapped_code():
    doc = (Path(__file__).parent.parent / "docs" / "fhir.md").read_text(encoding="utf-8")
    m = fhir.mapping()
    codes = [r.code.code for r in m.observations.values()]
    for table in (
        "conditions",
        "procedures",
        "vaccines",
        "medication_codes",
        "results",
        "ecog_answers",
        "severity",
        "route_codes",
        "allergy_substances",
        "no_known_allergy",
    ):
        codes += [c.code for c in m.tables[table].values()]
    codes += [c for c in m.ucum_units if c] + [c for c in m.non_ucum_units if c]
    missing = [c for c in codes if c not in doc]
    assert not missing, missing


def _result_codes():
    m = fhir.mapping()
    systems = {alias: url for url, alias in m.aliases.items()}
    return [(systems[c.system], c.code, c.data["result"]) for c in m.tables["results"].values()]


@pytest.mark.parametrize("system,code,result", _result_codes())
def test_every_qualitative_answer_code(tmp_path, system, code, result):
    as_value = read(tmp_path, obs("75622-1", valueCodeableConcept=coded(system, code)))
    assert as_value.record["serology"]["hiv"] == result
    as_interpretation = read(tmp_path, obs("16128-1", interpretation=[coded(system, code)]))
    assert as_interpretation.record["serology"]["anti_hcv"] == result


def test_qualitative_results_as_words_and_unreadable_ones(tmp_path):
    ex = read(
        tmp_path,
        obs("5196-1", valueString="Non-reactive"),
        obs("11259-9", valueCodeableConcept={"text": "Detected"}),
        obs("2106-3", valueString="equivocal"),
    )
    assert ex.record["serology"] == {"hbsag": "negative", "hcv_rna": "positive"}
    assert "pregnancy_test" not in ex.record
    assert "'equivocal' is neither positive nor negative" in messages(ex.warnings)


def _ecog_answers():
    return [(c.code, c.data["grade"]) for c in fhir.mapping().tables["ecog_answers"].values()]


@pytest.mark.parametrize("code,grade", _ecog_answers())
def test_every_ecog_answer_as_value_and_as_interpretation(tmp_path, code, grade):
    for form in (
        {"valueCodeableConcept": coded(LOINC, code)},
        {"interpretation": [coded(LOINC, code)]},
    ):
        ex = read(tmp_path, obs("89247-1", **form))
        if grade == 5:
            assert "ecog" not in ex.record
            assert "ECOG 5 (dead) recorded; not used" in messages(ex.warnings)
        else:
            assert ex.record["ecog"] == grade


def test_ecog_out_of_range_is_an_error(tmp_path):
    error = failure(tmp_path, bundle_dict(obs("89247-1", valueInteger=7)))
    assert "7 is not an ECOG grade (0–5)" in error.diagnostic.message


def _condition_codes():
    m = fhir.mapping()
    systems = {"SNOMED": SNOMED, "ICD-10": ICD10}
    return [(systems[c.system], c.code, c.data) for c in m.tables["conditions"].values()]


@pytest.mark.parametrize(
    "system,code,data", _condition_codes(), ids=[c[1] for c in _condition_codes()]
)
def test_every_mapped_condition_code(tmp_path, system, code, data):
    ex = read(tmp_path, condition(code, system, display="The \u200bcondition"))
    if data.get("type") is None:  # the leukaemia under study
        assert ex.record["conditions"] == []
        assert "the leukaemia under study is not a condition entry" in messages(ex.warnings)
        return
    [item] = ex.record["conditions"]
    assert item["type"] == data["type"] and item["name"] == "The condition"
    for key, value in data.items():
        if key != "type":
            assert item[key] == value
    label = "SNOMED" if system == SNOMED else "ICD-10"
    assert f"({label} {code})" in ex.sources["conditions[0]"]
    fhir.patient_from_extract(ex, today=TODAY)


def test_icd10_codes_match_by_the_longest_prefix_dots_ignored(tmp_path):
    ex = read(
        tmp_path,
        condition("G40.909", ICD10),
        condition("I5023", ICD10),
        condition("C91.00", ICD10),
        condition("C61", ICD10),
        condition("D89.811", ICD10),
        condition("Z99.9", ICD10, display="Dependence on unspecified device"),
    )
    assert [c["type"] for c in ex.record["conditions"]] == [
        "cns_disorder",
        "heart_failure",
        "malignancy",
        "gvhd",
    ]
    assert ex.record["conditions"][3]["kind"] == "chronic"
    assert "1 Condition(s) with codes the mapping does not know" in messages(ex.warnings)
    assert "Dependence on unspecified device" in messages(ex.warnings)


def test_condition_status_dates_and_severity(tmp_path):
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    ex = read(
        tmp_path,
        condition(
            "22298006",
            onsetDateTime="2026-08-01",  # an event: its onset
            clinicalStatus=coded(clinical, "resolved"),
            abatementDateTime="2026-08-20",
        ),
        condition(
            "10509002",
            onsetDateTime="2026-10-01",  # over: its abatement date
            clinicalStatus=coded(clinical, "resolved"),
            abatementDateTime="2026-10-15",
        ),
        condition(
            "234646005",
            onsetDateTime="2026-10-01",  # still present: no date
            clinicalStatus=coded(clinical, "active"),
            severity=coded(SNOMED, "24484000", "Severe"),
        ),
        condition(
            "49436004",
            onsetDateTime="2026-11-01",  # abates after the as-of date
            clinicalStatus=coded(clinical, "resolved"),
            abatementDateTime="2026-11-25",
        ),
        condition("363346000", clinicalStatus=coded(clinical, "remission")),
        condition("59282003", onsetDateTime="2026-12-01"),  # after the as-of date
        condition("128053003", verificationStatus=coded(clinical, "entered-in-error")),
    )
    items = ex.record["conditions"]
    assert items[0] == {
        "type": "myocardial_infarction",
        "name": "a condition",
        "active": False,
        "date": dt.date(2026, 8, 1),
    }
    assert items[1] == {
        "type": "infection",
        "name": "a condition",
        "active": False,
        "date": dt.date(2026, 10, 15),
    }
    assert items[2] == {
        "type": "gvhd",
        "name": "a condition",
        "active": True,
        "severe": True,
        "grade": "severe",
    }
    assert items[3] == {"type": "arrhythmia", "name": "a condition", "active": True}
    assert items[4] == {
        "type": "malignancy",
        "name": "a condition",
        "active": False,
        "status": "remission",
    }
    assert len(items) == 5
    patient = fhir.patient_from_extract(ex, today=TODAY)
    e3 = criterion(patient, "NCT06559644", "E3")  # MI within 6 months
    assert e3.status is Status.FAIL


def _procedure_codes():
    return [(c.code, c.data["type"]) for c in fhir.mapping().tables["procedures"].values()]


@pytest.mark.parametrize("code,kind", _procedure_codes())
def test_every_mapped_procedure_code(tmp_path, code, kind):
    ex = read(
        tmp_path,
        {
            "resourceType": "Procedure",
            "id": "proc",
            "status": "completed",
            "code": coded(SNOMED, code, "A procedure"),
            "subject": {"reference": "urn:uuid:pt-1"},
            "performedPeriod": {"start": "2026-11-02T10:00:00Z", "end": "2026-11-02T11:00:00Z"},
        },
    )
    assert ex.record["procedures"] == [
        {"type": kind, "name": "A procedure", "date": dt.date(2026, 11, 2)}
    ]
    assert ex.sources["procedures[0]"] == f"Procedure/proc (SNOMED {code}), 2026-11-02"


def test_a_surgical_category_makes_an_unknown_procedure_a_surgery(tmp_path):
    surgical = {
        "resourceType": "Procedure",
        "id": "p1",
        "status": "completed",
        "code": {"text": "Excision of lesion"},
        "category": coded(SNOMED, "387713003", "Surgical procedure"),
        "subject": {"reference": "urn:uuid:pt-1"},
        "performedDateTime": "2026-11-05",
    }
    unknown = {**surgical, "id": "p2", "category": None, "code": {"text": "Something else"}}
    ex = read(tmp_path, surgical, unknown)
    assert ex.record["procedures"] == [
        {"type": "surgery", "name": "Excision of lesion", "date": dt.date(2026, 11, 5)}
    ]
    assert "left out of procedures: Something else" in messages(ex.warnings)
    patient = fhir.patient_from_extract(ex, today=TODAY)
    assert criterion(patient, "NCT06559644", "E15").status is Status.FAIL


def _vaccine_codes():
    return [(c.code, c.data["live"]) for c in fhir.mapping().tables["vaccines"].values()]


@pytest.mark.parametrize("code,live", _vaccine_codes())
def test_every_mapped_vaccine_code(tmp_path, code, live):
    ex = read(
        tmp_path,
        {
            "resourceType": "Immunization",
            "id": "imm",
            "status": "completed",
            "vaccineCode": coded("http://hl7.org/fhir/sid/cvx", code, "vaccine"),
            "patient": {"reference": "urn:uuid:pt-1"},
            "occurrenceDateTime": "2026-11-01T09:00:00+01:00",
        },
    )
    assert ex.record["vaccinations"] == [
        {"name": "vaccine", "date": dt.date(2026, 11, 1), "live": live}
    ]


def test_an_unknown_vaccine_is_kept_with_live_unknown(tmp_path):
    ex = read(
        tmp_path,
        {
            "resourceType": "Immunization",
            "id": "imm",
            "status": "completed",
            "vaccineCode": {"text": "Tick-borne encephalitis"},
            "patient": {"reference": "urn:uuid:pt-1"},
            "occurrenceDateTime": "2026-11-01",
        },
        {
            "resourceType": "Immunization",
            "id": "no",
            "status": "not-done",
            "vaccineCode": {"text": "refused"},
            "patient": {"reference": "urn:uuid:pt-1"},
        },
    )
    assert ex.record["vaccinations"] == [
        {"name": "Tick-borne encephalitis", "date": dt.date(2026, 11, 1)}
    ]
    patient = fhir.patient_from_extract(ex, today=TODAY)
    assert criterion(patient, "NCT06559644", "E15").status is Status.FAIL


# ------------------------------------------------------------------------------ allergies

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def allergy(concept: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": f"alg-{next(_ids)}",
        "patient": {"reference": "urn:uuid:pt-1"},
        "recordedDate": "2019-03-15",
        **extra,
    }
    if concept is not None:
        resource["code"] = concept
    return resource


def verification(code: str) -> dict[str, Any]:
    system = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
    return {"coding": [{"system": system, "code": code}]}


PENICILLIN = coded(RXNORM, "70618", "Penicillin")


def test_a_severe_penicillin_allergy_is_a_serious_biological_allergy(tmp_path):
    ex = read(tmp_path, allergy(PENICILLIN, criticality="high"))
    assert ex.record["allergies"] == [
        {"substance": "Penicillin", "biological": True, "severe": True}
    ]
    assert ex.sources["allergies[0]"].endswith(" (RxNorm 70618), 2019-03-15")
    patient = fhir.patient_from_extract(ex, today=TODAY)
    assert criterion(patient, "NCT04546906", "E8").status is Status.FAIL  # excluded


def test_a_refuted_allergy_is_no_allergy(tmp_path):
    refuted = allergy(PENICILLIN, criticality="high", verificationStatus=verification("refuted"))
    wrong = allergy(PENICILLIN, verificationStatus=verification("entered-in-error"))
    ex = read(tmp_path, refuted, wrong)
    assert ex.record["allergies"] == []
    patient = fhir.patient_from_extract(ex, today=TODAY)
    assert criterion(patient, "NCT04546906", "E8").status is Status.PASS


def test_no_allergy_resource_leaves_allergies_unknown(tmp_path):
    ex = read(tmp_path, obs("29463-7", 70, "kg"))
    assert "allergies" not in ex.record
    patient = fhir.patient_from_extract(ex, today=TODAY)
    assert criterion(patient, "NCT04546906", "E8").status is Status.UNKNOWN


@pytest.mark.parametrize("code", ["716186003", "409137002"])
def test_no_known_allergy_is_the_empty_list(tmp_path, code):
    ex = read(tmp_path, allergy(coded(SNOMED, code, "No known allergy")))
    assert ex.record["allergies"] == []
    assert not ex.warnings
    patient = fhir.patient_from_extract(ex, today=TODAY)
    assert criterion(patient, "NCT04546906", "E8").status is Status.PASS


def test_no_known_allergy_beside_an_allergy_keeps_the_allergy_and_says_so(tmp_path):
    ex = read(
        tmp_path,
        allergy(coded(SNOMED, "716186003", "No known allergy"), id="nka"),
        allergy({"text": "Peanut"}, criticality="low"),
    )
    assert ex.record["allergies"] == [{"substance": "Peanut", "severe": False}]
    assert "AllergyIntolerance/nka records no known allergy" in messages(ex.warnings)


@pytest.mark.parametrize(
    "criticality,reactions,severe",
    [
        ("high", [], True),
        ("low", [], False),
        ("low", ["mild", "moderate"], False),
        ("low", ["severe"], True),
        (None, ["severe"], True),
        ("unable-to-assess", ["mild"], None),
        (None, ["moderate"], None),
        (None, [], None),
    ],
)
def test_severity_from_criticality_and_reactions(tmp_path, criticality, reactions, severe):
    extra: dict[str, Any] = {"reaction": [{"severity": r} for r in reactions]}
    if criticality is not None:
        extra["criticality"] = criticality
    ex = read(tmp_path, allergy(PENICILLIN, **extra))
    (item,) = ex.record["allergies"]
    assert item.get("severe") == severe
    patient = fhir.patient_from_extract(ex, today=TODAY)
    expected = {True: Status.FAIL, False: Status.PASS, None: Status.UNKNOWN}[severe]
    assert criterion(patient, "NCT04546906", "E8").status is expected


def test_biological_only_for_the_listed_substances(tmp_path):
    ex = read(
        tmp_path,
        allergy({"text": "Amoxicillin"}, criticality="high"),  # a name alone is not guessed at
        allergy(coded(SNOMED, "91935009", "Allergy to peanuts"), criticality="high"),
        allergy(coded(SNOMED, "764147003", "Cephalosporin"), criticality="high"),
    )
    assert ex.record["allergies"] == [
        {"substance": "Amoxicillin", "severe": True},
        {"substance": "Allergy to peanuts", "severe": True},
        {"substance": "Cephalosporin", "biological": True, "severe": True},
    ]


def _allergy_codes():
    m = fhir.mapping()
    systems = {"RxNorm": RXNORM, "SNOMED": SNOMED}
    return [(systems[c.system], c.code) for c in m.tables["allergy_substances"].values()]


@pytest.mark.parametrize("system,code", _allergy_codes())
def test_every_mapped_allergy_substance_is_biological(tmp_path, system, code):
    ex = read(tmp_path, allergy(coded(system, code, "a substance")))
    assert ex.record["allergies"] == [{"substance": "a substance", "biological": True}]


def test_allergies_after_the_as_of_date_intolerances_and_unnamed_ones(tmp_path):
    ex = read(
        tmp_path,
        allergy(PENICILLIN, criticality="high", recordedDate="2026-12-01"),
        allergy(coded(RXNORM, "2670", "Codeine"), type="intolerance", criticality="high"),
        allergy(None, criticality="high"),
    )
    assert ex.record["allergies"] == [{"severe": True}]  # unknown substance: kept
    text = messages(ex.warnings)
    assert "allergy with no substance (no code or text); kept without one" in text
    assert "1 intolerance(s), not allergies, were left out of allergies" in text
    assert "(Codeine)" in text


def test_an_allergy_of_another_patient_is_an_error(tmp_path):
    other = allergy(PENICILLIN, patient={"reference": "Patient/someone-else"})
    error = failure(tmp_path, bundle_dict(other))
    assert "patient refers to Patient/someone-else, which is not in the bundle" in str(error)


def test_imported_allergies_load_and_screen_as_the_bundle(tmp_path):
    path = write(tmp_path, bundle_dict(allergy(PENICILLIN, criticality="high")))
    text = importer.bundle_to_yaml(path, today=TODAY)
    assert "# source: AllergyIntolerance/" in text
    patient = parse_patient(text, "pt.yaml", today=TODAY)
    assert [dict(a) for a in patient.data["allergies"]] == [
        {"substance": "Penicillin", "biological": True, "severe": True}
    ]
    assert criterion(patient, "NCT04546906", "E8").status is Status.FAIL


def _medication_codes():
    return [(c.code, c.data["class"]) for c in fhir.mapping().tables["medication_codes"].values()]


@pytest.mark.parametrize("code,kind", _medication_codes())
def test_every_mapped_medication_code(tmp_path, code, kind):
    ex = read(
        tmp_path,
        {
            "resourceType": "MedicationRequest",
            "id": "mr",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "urn:uuid:pt-1"},
            "medicationCodeableConcept": coded(
                "http://www.nlm.nih.gov/research/umls/rxnorm", code, "Drug X"
            ),
            "authoredOn": "2026-10-01",
        },
    )
    assert ex.record["medications"] == [
        {"name": "Drug X", "class": kind, "start_date": dt.date(2026, 10, 1), "ongoing": True}
    ]
    assert ex.sources["medications[0]"] == f"MedicationRequest/mr (RxNorm {code}), 2026-10-01"


def test_medication_class_and_route_from_names_and_dosage(tmp_path):
    def request(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "resourceType": "MedicationRequest",
            "id": f"mr-{next(_ids)}",
            "status": "completed",
            "intent": "order",
            "subject": {"reference": "urn:uuid:pt-1"},
            "medicationCodeableConcept": {"text": name},
            "authoredOn": "2026-09-01",
            **extra,
        }

    statement = {
        "resourceType": "MedicationStatement",
        "id": "ms",
        "status": "active",
        "subject": {"reference": "urn:uuid:pt-1"},
        "medicationCodeableConcept": {"text": "Tacrolimus 1 MG Oral Capsule"},
        "effectivePeriod": {"start": "2026-06-01"},
    }
    ex = read(
        tmp_path,
        request("predniSONE 20 MG Oral Tablet"),
        request("Fluticasone 110 MCG/ACTUAT Metered Dose Inhaler"),
        request(
            "Dexamethasone 4 MG/ML Injectable Solution",
            dosageInstruction=[{"route": coded(SNOMED, "47625008")}],
        ),
        request("Hydrocortisone 10 MG/ML Topical Cream"),
        request("Aspirin 81 MG Oral Tablet"),
        statement,
        request("Future drug", authoredOn="2027-01-01"),
    )
    meds = ex.record["medications"]
    assert [(m["name"].split()[0], m["class"], m.get("route")) for m in meds] == [
        ("predniSONE", "corticosteroid", "oral"),
        ("Fluticasone", "corticosteroid", "inhaled"),
        ("Dexamethasone", "corticosteroid", "intravenous"),
        ("Hydrocortisone", "corticosteroid", "topical"),
        ("Aspirin", "other", "oral"),
        ("Tacrolimus", "immunosuppressant", "oral"),
    ]
    assert meds[0]["ongoing"] is False and meds[5]["ongoing"] is True
    assert meds[5]["start_date"] == dt.date(2026, 6, 1)


def test_a_medication_reference_is_resolved_in_the_bundle(tmp_path):
    medication = {
        "resourceType": "Medication",
        "id": "med-1",
        "code": coded("http://www.nlm.nih.gov/research/umls/rxnorm", "6902", "methylPREDNISolone"),
    }
    request = {
        "resourceType": "MedicationRequest",
        "id": "mr",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/pt-1"},
        "medicationReference": {"reference": "Medication/med-1"},
    }
    ex = read(tmp_path, medication, request)
    assert ex.record["medications"] == [
        {"name": "methylPREDNISolone", "class": "corticosteroid", "ongoing": True}
    ]
    broken = {**request, "medicationReference": {"reference": "Medication/gone"}}
    error = failure(tmp_path, bundle_dict(broken))
    assert "medicationReference 'Medication/gone' is not in the bundle" in error.diagnostic.message


# ====================================================================== units


@pytest.mark.parametrize("code", [c for c in fhir.mapping().ucum_units])
def test_every_ucum_code_is_read_without_a_warning(tmp_path, code):
    spelling = fhir.mapping().ucum_units[code]
    other = {  # fields outside labs: (LOINC, a plausible value, where the record holds it)
        "mmHg": ("8480-6", 120, ("blood_pressure", "systolic")),
        "cm": ("8302-2", 170, ("height",)),
        "m": ("8302-2", 1.7, ("height",)),
        "in": ("8302-2", 67, ("height",)),
        "ms": ("8636-3", 430, ("qtc", "value")),
    }
    if spelling in other:
        loinc, value, where = other[spelling]
        ex = read(tmp_path, obs(loinc, value, code))
        assert ex.errors == [] and ex.warnings == []
        got: Any = ex.record
        for key in where:
            got = got[key]
        assert got == f"{value} {spelling}"
        return
    field = {
        "mg/dL": "creatinine",
        "mg/L": "creatinine",
        "umol/L": "creatinine",
        "mmol/L": "creatinine",
        "U/L": "ast",
        "IU/L": "ast",
        "%": None,
        "kg": None,
        "g": None,
        "lb": None,
        "s": "aptt",
        "mL/min": "creatinine_clearance",
        "": "inr",
        "g/dL": "haemoglobin",
        "g/L": "haemoglobin",
        "mmol/mol": "hba1c",
        "10^3/uL": "platelets",
        "10^9/L": "platelets",
        "/uL": "platelets",
    }[spelling]
    lab_code = {
        "creatinine": "2160-0",
        "ast": "1920-8",
        "aptt": "14979-9",
        "creatinine_clearance": "2164-2",
        "inr": "6301-6",
        "haemoglobin": "718-7",
        "platelets": "777-3",
        "hba1c": "59261-8",
    }
    # A plausible value in each unit: no warning may come from the value itself.
    plausible = {
        "g/dL": 12.5,
        "g/L": 125,
        "10^3/uL": 150,
        "10^9/L": 150,
        "/uL": 150000,
        "mmol/mol": 48,
    }
    if field is None:
        loinc = "10230-1" if spelling == "%" else "29463-7"
        value = 5000 if spelling == "g" else 55
    else:
        loinc, value = lab_code[field], plausible.get(spelling, 1.5)
    ex = read(tmp_path, obs(loinc, value, code))
    assert ex.errors == [] and ex.warnings == []
    got = (
        ex.record["labs"][field]["value"]
        if field
        else ex.record["lvef" if spelling == "%" else "weight"]
    )
    assert got == (value if spelling == "" else f"{value} {spelling}")


@pytest.mark.parametrize("written", list(fhir.mapping().non_ucum_units))
def test_non_ucum_spellings_are_read_with_a_warning(tmp_path, written):
    spelling = fhir.mapping().non_ucum_units[written]
    loinc = {
        "IU/L": "1920-8",
        "U/L": "1920-8",
        "umol/L": "14682-9",
        "mg/dL": "2160-0",
        "lb": "29463-7",
        "s": "3173-2",
        "": "34714-6",
        "K/uL": "777-3",
        "10^3/uL": "777-3",
        "10^9/L": "777-3",
        "/mm3": "777-3",
        "ms": "8636-3",
        "mmHg": "8480-6",
        "in": "8302-2",
    }[spelling]
    value = (
        150000
        if spelling == "/mm3"
        else 150
        if loinc in ("777-3", "8480-6")
        else 430
        if spelling == "ms"
        else 67
        if spelling == "in"
        else 2.5
    )
    quantity = {"value": value, "unit": written}  # no UCUM code, as many exports write it
    ex = read(tmp_path, obs(loinc, valueQuantity=quantity))
    assert ex.errors == []
    [warning] = ex.warnings
    assert f"unit {written!r} is not a UCUM code" in warning.message
    assert warning.file == "bundle.json"


def test_molar_and_pound_units_convert_for_screening(tmp_path):
    patient = patient_of(tmp_path, obs("14682-9", 150, "umol/L"), obs("29463-7", 154, "[lb_av]"))
    assert patient.data["weight"].written == "154 lb"
    part = criterion(patient, "NCT06559644", "I9.c")
    assert part.status is Status.FAIL
    assert part.reason == "creatinine 150 umol/L on 2026-11-10 (= 1.7 mg/dL) > 1.6 mg/dL"
    lower = patient_of(tmp_path, obs("14682-9", 130, "umol/L"))
    assert criterion(lower, "NCT06559644", "I9.c").status is Status.PASS


def test_an_unknown_unit_is_an_error_naming_the_observation(tmp_path):
    resource = obs("2160-0", 1.1, "mg/100mL")
    error = failure(tmp_path, bundle_dict(resource))
    assert error.diagnostic.message == (
        f"Observation/{resource['id']} (LOINC 2160-0): unknown unit 'mg/100mL'"
    )
    assert "accepted UCUM units: mg/dL" in error.diagnostic.hint


def test_a_unit_of_the_wrong_kind_is_an_error_naming_the_observation(tmp_path):
    resource = obs("10230-1", 55, "kg")
    error = failure(tmp_path, bundle_dict(resource))
    assert error.diagnostic.message == (
        f"Observation/{resource['id']} (LOINC 10230-1): kg is a mass; expected a percentage "
        "such as '55 %'"
    )


def test_a_value_without_a_unit_is_an_error(tmp_path):
    error = failure(tmp_path, bundle_dict(obs("1920-8", 30)))
    assert "the value has no unit" in error.diagnostic.message


def test_a_unit_on_the_inr_is_an_error(tmp_path):
    error = failure(tmp_path, bundle_dict(obs("6301-6", 1.1, "s")))
    assert "unit 's' on a unitless result" in error.diagnostic.message


def test_an_out_of_range_value_names_the_field_and_its_source(tmp_path):
    resource = obs("10230-1", 150, "%")
    error = failure(tmp_path, bundle_dict(resource))
    assert error.diagnostic.message == (
        f"lvef: LVEF 150 % is out of range (0–100 %) (from Observation/{resource['id']} "
        "(LOINC 10230-1), 2026-11-10)"
    )


# ========================================================== latest value and dates


def test_the_latest_value_on_or_before_the_as_of_date_wins(tmp_path):
    resources = [
        obs("2160-0", 0.9, "mg/dL", date="2026-10-01"),
        obs("2160-0", 1.4, "mg/dL", date="2026-11-18T08:00:00+01:00"),
        obs("14682-9", 80, "umol/L", date="2026-11-18T07:30:00Z"),  # 8:30 local
        obs("2160-0", 2.0, "mg/dL", date="2026-12-01"),
    ]
    ex = read(tmp_path, *resources)
    # The latest (80 µmol/L, an hour after the 1.4 mg/dL) decides; the earlier results of
    # the 13 months before the as-of date come before it, oldest first.
    assert ex.record["labs"]["creatinine"] == [
        {"value": "0.9 mg/dL", "date": dt.date(2026, 10, 1)},
        {"value": "1.4 mg/dL", "date": dt.date(2026, 11, 18)},
        {"value": "80 umol/L", "date": dt.date(2026, 11, 18)},
    ]
    assert "1 mapped result(s) dated after 2026-11-20 were ignored" in messages(ex.warnings)
    early = read(tmp_path, *resources, as_of=dt.date(2026, 11, 1))
    assert early.record["labs"]["creatinine"] == {
        "value": "0.9 mg/dL",
        "date": dt.date(2026, 10, 1),
    }
    assert early.as_of == dt.date(2026, 11, 1)


def test_a_labs_results_of_the_year_before_are_its_series_in_the_import_too(tmp_path):
    resources = [
        obs("2160-0", 0.7, "mg/dL", date="2025-10-01"),  # more than 400 days before: not read
        obs("2160-0", 0.9, "mg/dL", date="2026-01-05"),
        obs("2160-0", 1.4, "mg/dL", date="2026-11-18"),
    ]
    direct = patient_of(tmp_path, *resources).data["labs"]["creatinine"]
    assert [r.written for r in direct.series] == ["0.9 mg/dL", "1.4 mg/dL"]
    path = write(tmp_path, bundle_dict(*resources))
    text = importer.bundle_to_yaml(path, today=TODAY)
    assert "    - {value: 0.9 mg/dL, date: 2026-01-05}\n" in text
    imported = parse_patient(text, "p.yaml", today=TODAY).data["labs"]["creatinine"]
    assert imported == direct


def test_a_date_exactly_on_the_as_of_date_counts(tmp_path):
    ex = read(tmp_path, obs("1742-6", 30, "U/L", date="2026-11-20T23:59:00-05:00"))
    assert ex.record["labs"]["alt"]["date"] == dt.date(2026, 11, 20)


def test_results_without_a_full_date_or_not_final_are_not_used(tmp_path):
    ex = read(
        tmp_path,
        obs("1742-6", 30, "U/L", date="2026-11"),
        obs("1920-8", 30, "U/L", status="preliminary"),
        obs("1920-8", 31, "U/L", status="entered-in-error"),
    )
    assert "labs" not in ex.record
    text = messages(ex.warnings)
    assert "no full effective date; not used" in text
    assert "2 mapped result(s) not final" in text


def test_effective_period_and_components(tmp_path):
    echo = obs(
        "34552-0",
        component=[
            {
                "code": coded(LOINC, "18043-0"),
                "valueQuantity": {"value": 48, "unit": "%", "system": UCUM, "code": "%"},
            }
        ],
    )
    del echo["effectiveDateTime"]
    echo["effectivePeriod"] = {"start": "2026-11-03T09:00:00Z", "end": "2026-11-03T10:00:00Z"}
    ex = read(tmp_path, echo)
    assert ex.record["lvef"] == "48 %"
    assert ex.sources["lvef"] == f"Observation/{echo['id']} component (LOINC 18043-0), 2026-11-03"


def test_reference_range_high_becomes_the_uln(tmp_path):
    ex = read(
        tmp_path,
        obs(
            "1975-2",
            20,
            "umol/L",
            referenceRange=[
                {"high": {"value": 21, "unit": "umol/L", "system": UCUM, "code": "umol/L"}}
            ],
        ),
        obs("1920-8", 50, "U/L", referenceRange=[{"high": {"value": 35}}]),
        obs("1742-6", 50, "U/L", referenceRange=[{"low": {"value": 5}}]),
        obs("6301-6", 1.3, referenceRange=[{"high": {"value": 1.2}}]),
    )
    labs = ex.record["labs"]
    assert labs["total_bilirubin"]["uln"] == "21 umol/L"
    assert labs["ast"]["uln"] == "35 U/L"  # a limit without a unit is in the result's unit
    assert "uln" not in labs["alt"]
    assert labs["inr"] == {"value": 1.3, "uln": 1.2, "date": dt.date(2026, 11, 10)}
    assert ex.sources["labs.ast"].endswith(", ULN from referenceRange")
    patient = fhir.patient_from_extract(ex, today=TODAY)
    assert "(ULN 21 umol/L)" in criterion(patient, "NCT06559644", "I9.a").reason


def test_a_bad_reference_range_loses_the_limit_not_the_result(tmp_path):
    ex = read(
        tmp_path,
        obs(
            "1920-8",
            50,
            "U/L",
            referenceRange=[
                {"high": {"value": 35, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}
            ],
        ),
    )
    assert ex.errors == []
    assert ex.record["labs"]["ast"] == {"value": "50 U/L", "date": dt.date(2026, 11, 10)}
    assert "referenceRange.high: mg/dL is a mass concentration" in messages(ex.warnings)
    assert "no ULN taken" in messages(ex.warnings)


def test_a_result_with_a_comparator_leaves_the_field_unknown(tmp_path):
    older = obs("2160-0", 1.0, "mg/dL", date="2026-10-01")
    bound = obs(
        "2160-0",
        0.2,
        "mg/dL",
        valueQuantity={
            "value": 0.2,
            "comparator": "<",
            "unit": "mg/dL",
            "system": UCUM,
            "code": "mg/dL",
        },
    )
    ex = read(tmp_path, older, bound)
    assert "labs" not in ex.record
    assert "<0.2 mg/dL is a bound, not a value; not used" in messages(ex.warnings)


def test_same_moment_results_keep_the_one_farther_from_normal(tmp_path):
    ex = read(
        tmp_path,
        obs("59408-5", 97, "%"),
        obs("2708-6", 91, "%"),
        obs("75622-1", valueString="negative"),
        obs("56888-1", valueString="positive"),
    )
    assert ex.record["spo2"] == "91 %"
    assert ex.record["serology"]["hiv"] == "positive"
    assert "the lower one, 91 %, is used" in messages(ex.warnings)


# ====================================================================== the patient


def test_a_patient_without_birth_date_or_sex_is_screened_with_those_unknown(tmp_path):
    ex = read(
        tmp_path,
        patient={"resourceType": "Patient", "id": "p", "gender": "unknown", "birthDate": "1980"},
    )
    assert ex.record == {"id": "p"}
    text = messages(ex.warnings)
    assert "birth date '1980' is not a full date" in text and "gender 'unknown'" in text
    patient = fhir.patient_from_extract(ex, today=TODAY)
    assert criterion(patient, "NCT06559644", "I1").status is Status.UNKNOWN


def test_deceased_boolean_is_refused(tmp_path):
    error = failure(tmp_path, bundle_dict(patient={**PATIENT, "deceasedBoolean": True}))
    assert error.diagnostic.message.startswith("patient pt-1 is deceased")
    alive = patient_of(tmp_path, patient={**PATIENT, "deceasedBoolean": False})
    assert alive.id == "pt-1"


def test_lists_are_given_only_when_the_bundle_has_such_resources(tmp_path):
    patient = patient_of(tmp_path)
    for name in ("conditions", "medications", "procedures", "vaccinations", "labs"):
        assert name not in patient.data
    assert criterion(patient, "NCT06559644", "E15").status is Status.UNKNOWN


def test_searchset_bundles_with_relative_and_absolute_references(tmp_path):
    base = "https://ehr.example.org/fhir"
    data = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": f"{base}/Patient/123",
                "resource": {**PATIENT, "id": "123"},
                "search": {"mode": "include"},
            },
            {
                "fullUrl": f"{base}/Observation/o1",
                "resource": {
                    **obs("1742-6", 20, "U/L"),
                    "id": "o1",
                    "subject": {"reference": "Patient/123"},
                },
            },
            {
                "fullUrl": f"{base}/Observation/o2",
                "resource": {
                    **obs("1920-8", 25, "U/L"),
                    "id": "o2",
                    "subject": {"reference": f"{base}/Patient/123/_history/2"},
                },
            },
            {
                "resource": {"resourceType": "OperationOutcome", "issue": []},
                "search": {"mode": "outcome"},
            },
        ],
    }
    patient = fhir.load_bundle_patient(write(tmp_path, data), "s.json", today=TODAY)
    assert patient.id == "123"
    assert set(patient.data["labs"]) == {"alt", "ast"}


@pytest.mark.parametrize("kind", ["transaction", "collection", "searchset", "batch"])
def test_the_bundle_types(tmp_path, kind):
    path = write(tmp_path, bundle_dict(obs("1742-6", 20, "U/L"), kind=kind))
    assert fhir.load_bundle_patient(path, "b.json", today=TODAY).id == "pt-1"


# ============================================================ malformed input: errors


def test_not_json_gives_line_and_column(tmp_path):
    error = failure(tmp_path, '{\n  "resourceType": "Bundle",\n  "type": collection\n}')
    d = error.diagnostic
    assert d.message == "not valid JSON: Expecting value"
    assert (d.position.line, d.position.column) == (3, 11)
    assert d.source_line == '  "type": collection'
    assert '3 |   "type": collection' in d.render()


def test_empty_binary_and_unreadable_files(tmp_path):
    assert "file is empty" in failure(tmp_path, "  \n").diagnostic.message
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(PatientError, match="not UTF-8"):
        fhir.load_bundle_patient(path, "latin1.json")
    with pytest.raises(PatientError) as caught:
        fhir.load_bundle_patient(tmp_path / "missing.json", "missing.json")
    assert caught.value.diagnostic.message.startswith("cannot read file")
    assert caught.value.diagnostic.file == "missing.json"
    with pytest.raises(PatientError, match="cannot read file"):
        fhir.load_bundle_patient(tmp_path, "a-directory")


def test_nan_and_infinite_numbers_are_not_json(tmp_path):
    error = failure(tmp_path, '{"resourceType": "Bundle", "type": "collection", "x": NaN}')
    assert error.diagnostic.message == "not valid JSON: NaN is not a JSON number"
    error = failure(tmp_path, '{"resourceType": "Bundle", "type": "collection", "x": 1e400}')
    assert error.diagnostic.message == "not valid JSON: 1e400 is too large a number"


@pytest.mark.parametrize(
    "data,message",
    [
        ([1, 2], "not a FHIR resource: the file holds a JSON list, not an object"),
        ({"type": "collection", "entry": []}, "not a FHIR resource: no resourceType"),
        (PATIENT, "a FHIR Patient resource, not a Bundle"),
        (
            {"resourceType": "Bundle", "type": "history", "entry": []},
            "Bundle type 'history' is not read (only transaction, collection, searchset, batch, "
            "document)",
        ),
        (
            {"resourceType": "Bundle", "type": "collection", "entry": {}},
            "Bundle.entry is not a list",
        ),
        ({"resourceType": "Bundle", "type": "collection"}, "the bundle has no Patient resource"),
    ],
)
def test_not_a_bundle(tmp_path, data, message):
    error = failure(tmp_path, data)
    assert error.diagnostic.message == message
    assert error.diagnostic.hint


def test_entries_without_a_resource(tmp_path):
    data = bundle_dict()
    data["entry"] += [
        {"fullUrl": "urn:uuid:nothing"},
        {"resource": {"id": "no-type"}},
        "text",
        {"request": {"method": "DELETE", "url": "Observation/1"}},
    ]
    error = failure(tmp_path, data)
    assert [d.message for d in error.diagnostics] == [
        "malformed Bundle: entry 1 has no resource",
        "malformed Bundle: entry 2: resource has no resourceType",
        "malformed Bundle: entry 3 is not a JSON object",
    ]


def test_no_patient_or_two_patients(tmp_path):
    error = failure(tmp_path, bundle_dict(obs("1742-6", 20, "U/L"), patient=None))
    assert error.diagnostic.message == "the bundle has no Patient resource"
    error = failure(tmp_path, bundle_dict({**PATIENT, "id": "pt-2"}))
    assert error.diagnostic.message.startswith("the bundle holds 2 Patient resources (pt-1, pt-2)")


def test_a_reference_to_a_missing_patient(tmp_path):
    stray = {**obs("1742-6", 20, "U/L"), "subject": {"reference": "urn:uuid:someone-else"}}
    error = failure(tmp_path, bundle_dict(stray))
    assert error.diagnostic.message == (
        f"Observation/{stray['id']}: subject refers to urn:uuid:someone-else, which is not in "
        "the bundle"
    )
    other = {"resourceType": "Group", "id": "g1"}
    wrong = {**obs("1742-6", 20, "U/L"), "subject": {"reference": "Group/g1"}}
    error = failure(tmp_path, bundle_dict(other, wrong))
    assert (
        "subject refers to Group/g1, not to this bundle's Patient/pt-1" in error.diagnostic.message
    )


def test_an_observation_without_a_value(tmp_path):
    empty = obs("2160-0")
    error = failure(tmp_path, bundle_dict(empty))
    assert error.diagnostic.message == (
        f"Observation/{empty['id']} (LOINC 2160-0): no value; a number with a unit "
        "(valueQuantity) is needed"
    )
    texty = obs("2160-0", valueString="1.1 mg/dL")
    assert "only valueString" in failure(tmp_path, bundle_dict(texty)).diagnostic.message
    blank = obs("75622-1")
    assert "a positive/negative result" in failure(tmp_path, bundle_dict(blank)).diagnostic.message
    numberless = obs("2160-0", valueQuantity={"value": "1.1", "unit": "mg/dL"})
    assert (
        "valueQuantity has no numeric value"
        in failure(tmp_path, bundle_dict(numberless)).diagnostic.message
    )


def test_a_result_marked_absent_is_only_a_warning(tmp_path):
    absent = obs("2160-0", dataAbsentReason={"text": "Sample hemolyzed"})
    ex = read(tmp_path, obs("2160-0", 1.0, "mg/dL", date="2026-10-01"), absent)
    assert ex.errors == []
    assert "no value (Sample hemolyzed); not used" in messages(ex.warnings)
    assert ex.record["labs"]["creatinine"]["value"] == "1.0 mg/dL"


def test_every_problem_is_reported_at_once_and_the_death_first(tmp_path):
    data = bundle_dict(
        obs("2160-0", 1.0, "furlong"),
        obs("1742-6"),
        patient={**PATIENT, "deceasedDateTime": "2026-01-02T03:04:05Z"},
    )
    error = failure(tmp_path, data)
    assert [d.message.split(":")[0] for d in error.diagnostics][
        0
    ] == "patient pt-1 is deceased (died 2026-01-02, Patient/pt-1)"
    assert len(error.diagnostics) == 3
    assert "Traceback" not in str(error)


def test_the_mapping_table_is_checked_when_read(tmp_path, monkeypatch):
    bad = yaml.safe_load(fhir.MAPPING_FILE.read_text(encoding="utf-8"))
    bad["conditions"]["SNOMED"]["84757009"]["type"] = "cns_disordr"
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    monkeypatch.setattr(fhir_mapping, "MAPPING_FILE", path)  # where the loader reads it
    fhir.mapping.cache_clear()
    try:
        with pytest.raises(ValueError, match="unknown condition type 'cns_disordr'"):
            fhir.mapping()
    finally:
        monkeypatch.undo()
        fhir.mapping.cache_clear()


# ============================================================ never a traceback

FUZZ_EXAMPLES = int(os.environ.get("FHIR_FUZZ", "400"))  # FHIR_FUZZ=5000 for a long run

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "2026-11-01",
            "mg/dL",
            "IU/L",
            "final",
            "urn:uuid:pt-1",
            "Patient/pt-1",
            "active",
            "\ud800",
            "a\x1b\u2028b",
            "1e400",
        ]
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _sample_bundle() -> dict[str, Any]:
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    return bundle_dict(
        obs("2160-0", 1.1, "mg/dL", referenceRange=[{"high": {"value": 1.2, "unit": "mg/dL"}}]),
        obs("89247-1", valueInteger=1),
        obs("75622-1", valueString="negative"),
        obs(
            "34552-0",
            component=[
                {"code": coded(LOINC, "18043-0"), "valueQuantity": {"value": 55, "unit": "%"}}
            ],
        ),
        condition(
            "22298006",
            onsetDateTime="2026-08-01",
            clinicalStatus=coded(clinical, "active"),
            severity=coded(SNOMED, "24484000"),
        ),
        {
            "resourceType": "MedicationRequest",
            "id": "mr",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "urn:uuid:pt-1"},
            "authoredOn": "2026-10-01",
            "medicationCodeableConcept": {"text": "Prednisone 5 MG Oral Tablet"},
            "dosageInstruction": [
                {
                    "route": coded(SNOMED, "26643006"),
                    "timing": {"repeat": {"boundsPeriod": {"end": "2026-11-01"}}},
                }
            ],
        },
        {
            "resourceType": "Procedure",
            "id": "pr",
            "status": "completed",
            "code": coded(SNOMED, "45595009"),
            "subject": {"reference": "urn:uuid:pt-1"},
            "performedPeriod": {"start": "2026-10-01"},
            "category": coded(SNOMED, "387713003"),
        },
        {
            "resourceType": "Immunization",
            "id": "im",
            "status": "completed",
            "vaccineCode": coded("http://hl7.org/fhir/sid/cvx", "140"),
            "patient": {"reference": "urn:uuid:pt-1"},
            "occurrenceDateTime": "2026-11-01",
        },
    )


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, prefix + (i,))
    return found


_SAMPLE_PATHS = _paths(_sample_bundle())


@pytest.mark.slow
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(where=st.lists(st.sampled_from(_SAMPLE_PATHS), min_size=1, max_size=3), junk=JSON)
def test_any_damage_to_a_bundle_is_a_patient_error_or_a_patient(tmp_path, where, junk):
    # A deep copy: the sample shares the module's PATIENT, which the damage must not reach.
    data = copy.deepcopy(_sample_bundle())
    for path in where:
        if not path:
            data = copy.deepcopy(junk)
            continue
        node = data
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = copy.deepcopy(junk)
        except (KeyError, IndexError, TypeError):
            continue
    file = write(tmp_path, data)
    try:
        patient = fhir.load_bundle_patient(file, "fuzz.json", today=TODAY)
    except PatientError as exc:
        assert all(d.file == "fuzz.json" for d in exc.diagnostics)
    else:
        for rule_set in RULE_SETS.values():
            engine.screen(patient, rule_set)
        parse_patient(importer.bundle_to_yaml(file, today=TODAY), "fuzz.yaml", today=TODAY)


@pytest.mark.parametrize("odd", ["\x7f", "\x85", "\x9f", "\u2028", "\u2029", "\ufffe", "\x01"])
def test_imported_text_with_characters_yaml_refuses_or_breaks_reads_back_the_same(odd: str):
    # Found by the fuzz test above: a DEL in a coding system made `import` write a file that
    # `check` refused ("character U+007F is not allowed in YAML text").
    text = f"surgery{odd} 45595009"
    written = f"id: {importer.scalar(text)}\n"
    assert yaml.safe_load(written)["id"] == text
    assert parse_patient(written, "p.yaml").id == text


# ------------------------------------------------------------- deaths and retrospective screens


def test_a_screen_dated_before_the_death_is_screened_with_a_warning(tmp_path):
    # A retrospective screen as of a day the patient was alive used to be refused outright.
    died = {**PATIENT, "deceasedDateTime": "2026-01-02T03:04:05Z"}
    patient = patient_of(tmp_path, patient=died, as_of=dt.date(2026, 1, 1))
    assert patient.as_of == dt.date(2026, 1, 1)
    (warning,) = [w for w in patient.warnings if "died" in w.message]
    assert warning.message == (
        "patient pt-1 died 2026-01-02 (Patient/pt-1), after the "
        "screening date 2026-01-01: screened as of 2026-01-01"
    )
    screening = engine.screen_patient(patient, RULE_SETS.values())
    assert any("died 2026-01-02" in w for w in screening.warnings)


@pytest.mark.parametrize("as_of", [dt.date(2026, 1, 2), dt.date(2026, 6, 1)])
def test_a_screen_on_or_after_the_death_is_still_an_error(tmp_path, as_of):
    died = {**PATIENT, "deceasedDateTime": "2026-01-02T03:04:05Z"}
    error = failure(tmp_path, bundle_dict(patient=died), as_of=as_of)
    assert error.diagnostic.message == (
        "patient pt-1 is deceased (died 2026-01-02, Patient/pt-1): not screened"
    )
    assert "--as-of" in error.diagnostic.hint


def test_deceased_boolean_is_refused_whatever_the_screening_date(tmp_path):
    error = failure(
        tmp_path,
        bundle_dict(patient={**PATIENT, "deceasedBoolean": True}),
        as_of=dt.date(1990, 1, 1),
    )
    assert error.diagnostic.message.startswith("patient pt-1 is deceased")


@pytest.mark.parametrize(
    ("died", "as_of", "screened"),
    [
        ("2026-04", dt.date(2026, 3, 31), True),
        ("2026-04", dt.date(2026, 4, 1), False),
        ("2026", dt.date(2025, 12, 31), True),
        ("2026", dt.date(2026, 2, 1), False),
        ("sometime", dt.date(2000, 1, 1), False),
    ],
)
def test_a_partial_death_date_counts_from_its_first_day(tmp_path, died, as_of, screened):
    data = bundle_dict(patient={**PATIENT, "deceasedDateTime": died})
    if screened:
        patient = fhir.load_bundle_patient(write(tmp_path, data), "b.json", as_of=as_of)
        assert any(f"died {died}" in w.message for w in patient.warnings)
    else:
        assert "is deceased" in failure(tmp_path, data, as_of=as_of).diagnostic.message


def test_a_retrospective_screen_of_michele_wolf_before_her_death():
    patient = load("Michele_Wolf", as_of=dt.date(2016, 1, 1))
    assert any("died 2016-04-05" in w.message for w in patient.warnings)
    # her LVEF of 2015-10-06 counts, and fails LVEF ≥ 50 %
    assert criterion(patient, "NCT06559644", "I7").status is Status.FAIL


def test_an_impossible_lab_value_in_an_export_is_an_error_naming_its_resource(tmp_path):
    # 97 "mg/dL" creatinine is 97 µmol/L with the wrong unit code; it used to fail the
    # creatinine criteria with confidence.
    error = failure(tmp_path, bundle_dict(obs("2160-0", 97, "mg/dL")))
    (d,) = error.diagnostics
    assert d.message.startswith(
        "labs.creatinine.value: creatinine 97 mg/dL is not a possible result (above 40 mg/dL)"
    )
    assert "(from Observation/" in d.message and d.hint == "did you mean µmol/L?"


def test_an_implausible_lab_value_in_an_export_is_screened_with_a_warning(tmp_path):
    patient = patient_of(tmp_path, obs("1975-2", 45, "mg/dL"))
    assert any(
        w.message.startswith("labs.total_bilirubin.value: total bilirubin 45 mg/dL is implausible")
        for w in patient.warnings
    )
    assert "(implausible: above 30 mg/dL)" in criterion(patient, "NCT06559644", "I9.a").reason


def test_an_imported_lone_surrogate_becomes_a_replacement_character():
    # Found by the fuzz test above: a JSON "\ud800" escape in a coding system made `import`
    # write a file that `check` refused (a UTF-8 file cannot hold a lone surrogate).
    written = f"id: {importer.scalar('surgery' + chr(0xD800) + ' 45595009')}\n"
    written.encode("utf-8")  # writable as UTF-8
    assert parse_patient(written, "p.yaml").id == "surgery\ufffd 45595009"


def test_an_earlier_result_that_cannot_be_used_is_left_out_of_the_series_with_a_warning(tmp_path):
    low = obs("777-3", 10, "10*3/uL", date="2026-11-01")
    low["valueQuantity"]["comparator"] = "<"
    ex = read(tmp_path, low, obs("777-3", 150, "10*3/uL", date="2026-11-18"))
    assert ex.record["labs"]["platelets"] == {"value": "150 10^3/uL", "date": dt.date(2026, 11, 18)}
    assert "an earlier result" in messages(ex.warnings)
    assert "not in the series of results" in messages(ex.warnings)
