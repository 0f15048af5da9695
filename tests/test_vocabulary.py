"""The vocabulary as data: vocabulary.yaml declares every field, and everything reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from screener.core import _vocabulary as v
from screener.core._errors import RuleSetError
from screener.reading._document import parse
from screener.reports import _fields

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "patient-format.md"


@pytest.mark.parametrize("name", ["patient-format.md", "fhir.md"])
def test_the_committed_field_reference_is_the_generated_one(name):
    page = (ROOT / "docs" / name).read_text(encoding="utf-8")
    assert _fields.rewrite(page) == page, "run: python tools/vocabulary.py"


def test_the_field_reference_lists_every_field_with_its_codes():
    page = PAGE.read_text(encoding="utf-8")
    for path in v.BUILTIN.entries:
        assert f"`{path.replace('.*', '.NAME')}`" in page, path
    for observed in v.BUILTIN.observations:
        for _, code, _ in observed.codes:
            assert code in page, (observed.path, code)


def test_the_shipped_json_is_the_yaml_it_was_made_from():
    import json

    import yaml

    text = v.FILE.read_text(encoding="utf-8")
    assert v.JSON_FILE.read_text(encoding="utf-8") == v.builtin_json(text), (
        "run: python tools/vocabulary.py"
    )
    assert json.loads(v.builtin_json(text))["data"] == yaml.safe_load(text)
    # A stale JSON (the YAML edited since) is not used: the YAML is.
    assert v.builtin_data(text + "\n# edited\n") == yaml.safe_load(text)


def test_the_builtin_file_has_no_key_twice():
    # yaml.safe_load keeps the last of two equal keys; the positioned reader refuses them.
    parse(v.FILE.read_text(encoding="utf-8"), v.SHOWN_FILE, RuleSetError)


@pytest.mark.parametrize(
    "field, title",
    [
        ("labs.ast", "blood chemistry, with the laboratory's upper limits of normal"),
        ("labs.ast.uln", "blood chemistry, with the laboratory's upper limits of normal"),
        ("labs.cockcroft_gault", "blood chemistry, with the laboratory's upper limits of normal"),
        ("labs.platelets", "blood count"),
        ("labs.inr.uln", "coagulation"),
        (
            "diagnosis.markers.CD19.date",
            "{markers} by flow cytometry (bone marrow or blood): result, specimen, date",
        ),
        ("diagnosis.markers", "diagnosis"),
        ("diagnosis.status", "diagnosis"),
        ("diagnosis.abl1_mutations", "BCR::ABL1 testing"),
        ("therapies[1].date", "prior therapies"),
        ("conditions", "conditions"),
        ("age", "about the patient"),
        ("spo2", "pulse oximetry on room air"),
        ("ecog", "record"),
        ("weight", "record"),
    ],
)
def test_a_field_belongs_to_its_own_task_or_its_nearest_enclosing_fields(field, title):
    assert v.BUILTIN.task(field).title == title


def test_every_kind_gives_an_example_and_a_schema():
    for path, _, spec in v.iter_fields(v.BUILTIN):
        assert spec.example(), path
        assert isinstance(spec.schema(), dict), path


# ============================================================ a rule author's vocabulary

RULES = """\
trial: NCT00000001
product: TESTCAR
title: A trial whose rules need fields screener does not ship
sources: [https://example.invalid/NCT00000001]
criteria:
  - id: I1
    kind: inclusion
    label: LDH at most 500 U/L
    text: LDH ≤ 500 U/L
    check: {field: labs.ldh, le: 500 U/L}
  - id: E1
    kind: exclusion
    label: No sickle cell disease
    text: Sickle cell disease
    check: {exists: conditions, where: {field: type, is: sickle_cell}}
"""

VOCABULARY = """\
fields:
  labs.ldh:
    kind: lab
    label: LDH
    unit: enzyme
    range_unit: U/L
    hard: [null, 100000]
    worse: high
    codes:
      LOINC:
        "2532-0": Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma
choices:
  conditions[].type:
    values: [sickle_cell]
    synonyms: {"sickle cell disease": sickle_cell}
units:
  "units/L": U/L
drugs:
  vodobatinib: {class: tki, generation: 3}
  K0706: {same_as: vodobatinib}
"""

TODAY = __import__("datetime").date(2026, 11, 20)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "NCT00000001.yaml").write_text(RULES, encoding="utf-8")
    (folder / "vocabulary.yaml").write_text(VOCABULARY, encoding="utf-8")
    return folder


def _screen(patient, rule_sets):
    from screener.screening._engine import screen_patient

    (trial,) = screen_patient(patient, rule_sets).trials
    return {c.id: c.status.value for c in trial.criteria}


def test_an_extension_field_is_screened_from_a_yaml_patient(rules: Path):
    from screener.criteria._catalog import load_rule_sets, vocabulary_of
    from screener.reading._patient import parse_patient

    sets = load_rule_sets(rules)
    vocabulary = vocabulary_of(sets)
    assert vocabulary is not None and vocabulary is not v.BUILTIN
    text = "id: P1\nlabs: {ldh: 300 units/L}\nconditions: [{type: Sickle Cell Disease}]\n"
    patient = parse_patient(text, "p.yaml", today=TODAY, vocabulary=vocabulary)
    assert patient.warnings == ()
    assert _screen(patient, sets) == {"I1": "pass", "E1": "fail"}
    high = parse_patient(
        "id: P2\nlabs: {ldh: 800 U/L}\nconditions: []\n",
        "q.yaml",
        today=TODAY,
        vocabulary=vocabulary,
    )
    assert _screen(high, sets) == {"I1": "fail", "E1": "pass"}
    # The built-in vocabulary never learnt the field: the same file there is a warning.
    plain = parse_patient("id: P3\nlabs: {ldh: 300 U/L}\n", "r.yaml", today=TODAY)
    assert "unknown key labs.ldh" in plain.warnings[0].message
    assert v.BUILTIN.resolve("labs.ldh") is None


def test_an_extension_field_is_filled_from_a_fhir_bundle(rules: Path, tmp_path: Path):
    import json

    from screener.criteria._catalog import load_rule_sets, vocabulary_of
    from screener.reading._fhir import load_bundle_patient

    sets = load_rule_sets(rules)
    observation = {
        "resourceType": "Observation",
        "id": "ldh-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2532-0"}]},
        "subject": {"reference": "Patient/pt-1"},
        "effectiveDateTime": "2026-11-10",
        "valueQuantity": {
            "value": 612,
            "unit": "U/L",
            "system": "http://unitsofmeasure.org",
            "code": "U/L",
        },
    }
    patient = {"resourceType": "Patient", "id": "pt-1", "gender": "female"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in (patient, observation)
        ],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    found = load_bundle_patient(path, "bundle.json", today=TODAY, vocabulary=vocabulary_of(sets))
    assert found.data["labs"]["ldh"].written == "612 U/L"
    assert found.sources["labs.ldh"] == "Observation/ldh-1 (LOINC 2532-0), 2026-11-10"
    assert _screen(found, sets)["I1"] == "fail"
    # Without the rules directory's vocabulary, the code means nothing.
    assert "labs" not in load_bundle_patient(path, "bundle.json", today=TODAY).data


def test_the_cli_honours_the_rules_directory_vocabulary(rules: Path, tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from screener.cli import app

    runner = CliRunner()
    patient = tmp_path / "p.yaml"
    patient.write_text("id: P1\nscreening_date: 2026-11-20\nlabs: {ldh: 300 U/L}\nconditions: []\n")
    checked = runner.invoke(app, ["check", str(patient), "--rules", str(rules), "--format", "json"])
    assert checked.exit_code == 0, checked.output
    (trial,) = json.loads(checked.stdout)["trials"]
    assert [c["status"] for c in trial["criteria"]] == ["pass", "pass"]
    valid = runner.invoke(app, ["validate", str(patient), "--rules", str(rules)])
    assert valid.exit_code == 0 and "1 valid" in valid.output, valid.output
    assert "unknown key" in runner.invoke(app, ["validate", str(patient)]).output
    schema = json.loads(runner.invoke(app, ["schema", "patient", "--rules", str(rules)]).stdout)
    assert "ldh" in schema["properties"]["labs"]["properties"]
    docs = runner.invoke(app, ["docs", "--rules", str(rules)])
    assert "`labs.ldh`" in docs.stdout and "LOINC 2532-0" in docs.stdout


def test_extension_tkis_count_their_generation(rules: Path):
    from screener.criteria._catalog import load_vocabulary
    from screener.reading._patient import parse_patient

    vocabulary = load_vocabulary(rules)
    text = "id: P1\ntherapies: [{type: tki, drug: K0706}, {type: tki, drug: Vodobatinib}]\n"
    patient = parse_patient(text, "p.yaml", today=TODAY, vocabulary=vocabulary)
    assert [t["generation"] for t in patient.data["therapies"]] == [3, 3]
    assert [t["generic"] for t in patient.data["therapies"]] == ["vodobatinib", "vodobatinib"]


def _error(folder: Path, *files: tuple[str, str]) -> RuleSetError:
    from screener.criteria._catalog import load_rule_sets

    for name, text in files:
        (folder / name).write_text(text, encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_rule_sets(folder)
    return caught.value


def test_redefining_a_builtin_field_names_both_files_and_lines(rules: Path):
    text = "fields:\n  labs.ast: {kind: lab, label: AST again, unit: enzyme}\n"
    error = _error(rules, ("vocabulary.yaml", text))
    d = error.diagnostic
    assert d.file.endswith("vocabulary.yaml") and d.position is not None
    assert d.position.line == 2
    builtin_line = next(
        i
        for i, line in enumerate(v.FILE.read_text(encoding="utf-8").splitlines(), 1)
        if line.startswith("  labs.ast:")
    )
    assert f"field labs.ast is already declared at {v.SHOWN_FILE}:{builtin_line}:3" in d.message


def test_two_extension_files_declaring_one_field_name_both(rules: Path):
    more = "fields:\n  # the same lab again\n  labs.ldh: {kind: lab, label: LDH, unit: enzyme}\n"
    error = _error(rules, ("z.vocabulary.yaml", more))
    d = error.diagnostic
    assert d.file.endswith("z.vocabulary.yaml") and d.position.line == 3
    assert "field labs.ldh is already declared at " in d.message
    assert d.message.split(" at ")[1].startswith(str(rules / "vocabulary.yaml") + ":2:3")


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("fields:\n  labs.ck: {kind: labb, label: CK}\n", 2, "unknown kind 'labb'"),
        ("fields:\n  labs.ck: {kind: lab, label: CK, unit: enzym}\n", 2, "unknown unit kind"),
        ("fields:\n  labz.ck: {kind: lab, label: CK}\n", 2, "labz is not a record"),
        ("fields:\n  labs.CK: {kind: lab, label: CK}\n", 2, "lower case"),
        ("choices:\n  conditions[].type:\n    values: [gvhd]\n", 3, "value 'gvhd' is already"),
        ('units:\n  "mg/dl": mg/dL\n', 2, "unit 'mg/dl' is already"),
        ("drugs:\n  imatinib: {class: tki, generation: 1}\n", 2, "drug 'imatinib' is already"),
        ("fieldz: {}\n", 1, "unknown section 'fieldz'"),
        (
            "fields:\n  labs.ck:\n    kind: lab\n    label: CK\n    unit: enzyme\n"
            '    worse: high\n    codes:\n      LOINC:\n        "2160-0": Creatinine\n',
            9,
            "LOINC 2160-0 already fills labs.creatinine (screener/data/vocabulary.yaml:",
        ),
        (
            "fields:\n  labs.ck:\n    kind: lab\n    label: CK\n    unit: enzyme\n"
            '    worse: high\n    codes:\n      LOINCC:\n        "2157-6": CK\n',
            8,
            "unknown code system 'LOINCC'",
        ),
    ],
)
def test_a_broken_vocabulary_file_is_an_error_at_its_line(rules: Path, text, line, message):
    error = _error(rules, ("vocabulary.yaml", text))
    assert message in error.diagnostic.message
    assert error.diagnostic.position is not None and error.diagnostic.position.line == line


def test_an_extension_kind_key_is_checked_with_a_hint(rules: Path):
    text = "fields:\n  labs.ck:\n    kind: lab\n    label: CK\n    unit: enzyme\n    hardd: [null, 9]\n"
    d = _error(rules, ("vocabulary.yaml", text)).diagnostic
    assert "unknown key 'hardd' for a lab field" in d.message and d.hint == "did you mean 'hard'?"
    assert d.position.line == 6


def test_a_default_uln_outside_its_own_uln_range_is_an_error(rules: Path):
    text = (
        "fields:\n  labs.ck:\n    kind: lab\n    label: CK\n    unit: enzyme\n"
        "    range_unit: U/L\n    hard: [null, 100000]\n    uln_hard: [20, 1000]\n"
        "    uln_soft: [50, 400]\n    default_uln: 4000 U/L\n    uln_source: ck\n"
        "sources:\n  ck: a test\n"
    )
    d = _error(rules, ("vocabulary.yaml", text)).diagnostic
    assert "default ULN '4000 U/L' lies outside uln_soft [50, 400]" in d.message


def test_a_uln_range_needs_its_unit(rules: Path):
    text = "fields:\n  labs.ck:\n    kind: lab\n    label: CK\n    unit: enzyme\n    uln_hard: [1, 9]\n"
    d = _error(rules, ("vocabulary.yaml", text)).diagnostic
    assert "uln_hard needs range_unit" in d.message


# ========================================================= fields r/r B-ALL trials ask for

NEW_RULES = """\
trial: NCT00000002
product: NEWFIELDS
title: Criteria on the fields added for r/r B-ALL trials
sources: [https://example.invalid/NCT00000002]
criteria:
  - {id: I1, kind: inclusion, label: HbA1c, text: HbA1c < 6.5 %, check: {field: labs.hba1c, lt: 6.5 %}}
  - {id: I2, kind: inclusion, label: glucose, text: glucose ≤ 7 mmol/L,
     check: {field: labs.glucose, le: 7 mmol/L}}
  - {id: I3, kind: inclusion, label: ANC, text: ANC ≥ 1 × 10^9/L, check: {field: labs.anc, ge: 1 x10^9/L}}
  - {id: I4, kind: inclusion, label: performance, text: Karnofsky or Lansky ≥ 60,
     check: {any: [{field: karnofsky, ge: 60}, {field: lansky, ge: 60}]}}
  - {id: I5, kind: inclusion, label: QTc, text: QTc ≤ 480 ms within 28 days,
     check: {field: qtc, le: 480 ms, fresh: {within: 28 days, before: screening}}}
  - {id: E1, kind: exclusion, label: CNS-3, text: CNS-3 disease, check: {field: diagnosis.cns_status, is: CNS-3}}
  - {id: E2, kind: exclusion, label: hypertension, text: systolic ≥ 160 mmHg,
     check: {field: blood_pressure.systolic, ge: 160 mmHg}}
"""


def _new(text: str) -> dict[str, str]:
    from screener.criteria._rules import parse_rule_set
    from screener.reading._patient import parse_patient

    patient = parse_patient("id: P1\nscreening_date: 2026-11-20\n" + text, "p.yaml")
    return _screen(patient, [parse_rule_set(NEW_RULES)])


def test_the_new_fields_are_screened_with_their_units():
    statuses = _new(
        "labs: {hba1c: 6.4 %, glucose: 126 mg/dL, anc: 1500 /µL}\n"
        "karnofsky: 70\nqtc: {value: 430 ms, date: 2026-11-10}\n"
        "diagnosis: {cns_status: CNS2}\nblood_pressure: {systolic: 130 mmHg, diastolic: 80 mmHg}\n"
    )
    assert statuses == {k: "pass" for k in ("I1", "I2", "I3", "I4", "I5", "E1", "E2")}
    worse = _new(
        "labs: {hba1c: 48 mmol/mol, glucose: 7.2 mmol/L, anc: 0.8 ×10⁹/L}\n"
        "karnofsky: 50\nlansky: 50\nqtc: {value: 0.5 s, date: 2026-11-10}\n"
        "diagnosis: {cns_status: CNS-3b}\nblood_pressure: {systolic: 165 mmHg}\n"
    )
    assert worse == {k: "fail" for k in ("I1", "I2", "I3", "I4", "I5", "E1", "E2")}


def test_hba1c_converts_by_the_master_equation_not_by_a_factor():
    from screener.core import _units as units

    ifcc = units.parse_measure("48 mmol/mol", units.FRACTION, units.HBA1C)
    assert units.convert(ifcc, "%", units.HBA1C) == pytest.approx(6.543, abs=1e-3)
    ngsp = units.parse_measure("6.5 %", units.FRACTION, units.HBA1C)
    assert units.convert(ngsp, "mmol/mol", units.HBA1C) == pytest.approx(47.5, abs=0.1)
    for kind, analyte in ((units.FRACTION, None), (units.CONCENTRATION, units.GLUCOSE)):
        with pytest.raises(units.UnitError, match="mmol/mol is a unit of HbA1c"):
            units.parse_measure("55 mmol/mol", kind, analyte)


@pytest.mark.parametrize(
    "text, message",
    [
        ("karnofsky: 85\n", "karnofsky: Karnofsky performance status 85 is not a step"),
        ("lansky: 110\n", "out of range (0–100)"),
        ("qtc: 450 days\n", "days is not a unit for an ECG interval; expected ms or s"),
        ("height: 170 kg\n", "kg is a mass; expected a length"),
        ("lvef: 55 mmol/mol\n", "mmol/mol is a unit of HbA1c (IFCC), not a percentage"),
        ("labs: {albumin: 600 umol/L}\n", "no molar mass is known for albumin"),
        ("mrd: {method: FISH}\n", "expected one of flow, PCR, NGS"),
    ],
)
def test_the_new_fields_refuse_what_they_cannot_be(text, message):
    from screener.core._errors import PatientError
    from screener.reading._patient import parse_patient

    with pytest.raises(PatientError) as caught:
        parse_patient("id: P1\n" + text, "p.yaml")
    assert message in caught.value.diagnostic.message


@pytest.mark.parametrize(
    "written",
    ["10^9/L", "10*9/L", "x10*9/L", "x10^3/µL", "K/µL", "/µL", "cells/µL", "/mm³", "cells/mm3"],
)
def test_counts_are_read_in_every_spelling_labs_use(written):
    from screener.core import _units as units
    from screener.reading._patient import parse_patient

    amount = 1.5 if "9" in written or "3" in written.split("/")[0] or "K" in written else 1500
    patient = parse_patient(f"id: P1\nlabs: {{anc: {amount} {written}}}\n", "p.yaml")
    lab = patient.data["labs"]["anc"]
    assert units.convert(lab.value, "10^9/l") == pytest.approx(1.5)


def test_a_blood_pressure_panel_fills_both_values_and_its_date(tmp_path: Path):
    import json

    from screener.reading._fhir import load_bundle_patient

    def component(code: str, value: int) -> dict:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {
                "value": value,
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    panel = {
        "resourceType": "Observation",
        "id": "bp-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/pt-1"},
        "effectiveDateTime": "2026-11-12",
        "component": [component("8480-6", 142), component("8462-4", 91)],
    }
    patient = {"resourceType": "Patient", "id": "pt-1"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient, "fullUrl": "urn:uuid:pt-1"}, {"resource": panel}],
    }
    path = tmp_path / "bp.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    found = load_bundle_patient(path, "bp.json", today=TODAY)
    bp = found.data["blood_pressure"]
    assert (bp["systolic"].written, bp["diastolic"].written) == ("142 mmHg", "91 mmHg")
    assert str(bp["date"]) == "2026-11-12"


def test_rule_cases_read_their_patient_with_the_rule_sets_vocabulary(rules: Path):
    from screener.criteria._catalog import load_rule_sets
    from screener.testing._cases import Case, run_case

    (rule_set,) = load_rule_sets(rules)
    case = Case(
        "high LDH",
        {"id": "C1", "labs": {"ldh": "900 U/L"}, "conditions": []},
        {"I1": "fail", "E1": "pass"},
        None,
        None,
        "t.cases.yaml",
        1,
    )
    outcome = run_case(case, rule_set)
    assert outcome.error is None and outcome.mismatches == {}
