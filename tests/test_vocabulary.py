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


def test_the_committed_field_reference_is_the_generated_one():
    page = PAGE.read_text(encoding="utf-8")
    assert _fields.rewrite(page) == page, "run: python tools/patient_format.py"


def test_the_field_reference_lists_every_field_with_its_codes():
    page = PAGE.read_text(encoding="utf-8")
    for path in v.BUILTIN.entries:
        assert f"`{path.replace('.*', '.NAME')}`" in page, path
    for observed in v.BUILTIN.observations:
        for _, code, _ in observed.codes:
            assert code in page, (observed.path, code)


def test_the_builtin_file_has_no_key_twice():
    # yaml.safe_load keeps the last of two equal keys; the positioned reader refuses them.
    parse(v.FILE.read_text(encoding="utf-8"), v.SHOWN_FILE, RuleSetError)


@pytest.mark.parametrize(
    "field, title",
    [
        ("labs.ast", "blood chemistry (with the laboratory's upper limits of normal)"),
        ("labs.ast.uln", "blood chemistry (with the laboratory's upper limits of normal)"),
        ("labs.cockcroft_gault", "blood chemistry (with the laboratory's upper limits of normal)"),
        ("labs.inr.uln", "coagulation"),
        (
            "diagnosis.markers.CD19.date",
            "{markers} by flow cytometry on bone marrow or peripheral "
            "blood: result, specimen and date",
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
