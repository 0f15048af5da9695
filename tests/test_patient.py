"""screener/reading/_patient.py: patient files checked and normalised, every problem located."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from screener.core import _units as units
from screener.core._errors import Diagnostic, PatientError
from screener.core._model import LabValue
from screener.core._units import Measure
from screener.reading._patient import normalise_mutation, parse_patient

# A copy of ../shared/spec/patient.yaml (the contract's full example), kept in the project.
SPEC_EXAMPLE = (Path(__file__).parent / "data" / "spec_patient.yaml").read_text(encoding="utf-8")

TODAY = dt.date(2026, 12, 1)
AS_OF = dt.date(2026, 11, 25)


def patient(body: str, **kwargs):
    return parse_patient("id: PT-1\n" + body, "pt.yaml", **kwargs)


def errors(body: str, **kwargs) -> tuple[Diagnostic, ...]:
    with pytest.raises(PatientError) as caught:
        patient(body, **kwargs)
    return caught.value.diagnostics


def only_error(body: str, **kwargs) -> Diagnostic:
    found = errors(body, **kwargs)
    assert len(found) == 1, [d.render() for d in found]
    return found[0]


# ------------------------------------------------------------------------ full example


def test_the_spec_example_loads_without_warnings():
    p = parse_patient(SPEC_EXAMPLE, "patient.yaml")
    assert p.id == "PT-0001"
    assert p.warnings == ()
    assert p.as_of == dt.date(2026, 11, 20)
    assert p.as_of_source == "screening_date"


def test_the_spec_example_is_normalised():
    d = parse_patient(SPEC_EXAMPLE, "patient.yaml").data
    assert d["birth_date"] == dt.date(1979, 4, 2)
    assert d["sex"] == "female"
    assert d["weight"].magnitude == 62 and d["weight"].unit == "kg"
    assert d["pregnancy_test"] == {"result": "negative", "date": dt.date(2026, 11, 18)}
    assert d["diagnosis"]["abl1_mutations"] == ("T315I",)
    assert d["diagnosis"]["markers"]["CD22"]["specimen"] == "peripheral blood"
    assert d["diagnosis"]["bone_marrow_blasts"].magnitude == 32
    assert d["life_expectancy"].unit == "months"
    assert d["nyha_class"] == 1
    labs = d["labs"]
    assert labs["total_bilirubin"].uln.written == "1.2 mg/dL"
    assert labs["total_bilirubin"].date == dt.date(2026, 11, 18)
    assert labs["alt"].uln is None and labs["alt"].value.magnitude == 61
    assert labs["creatinine"].value.unit == "umol/l"
    assert labs["inr"] == LabValue(1.1, 1.2, None, "1.1")
    assert labs["aptt"].value.unit == "s"
    assert set(d["serology"].values()) == {"negative"}
    assert [t["type"] for t in d["therapies"]] == [
        "chemotherapy",
        "tki",
        "tki",
        "car-t",
        "transplant",
    ]
    assert d["therapies"][3]["response"] == "NR"
    assert d["attestations"] == {"NCT06559644/E16": {"result": "pass"}}


# ------------------------------------------------------------------- errors are located


def test_wrong_unit_kind_names_field_kind_and_line():
    d = only_error("ecog: 1\nlvef: 55 kg\n")
    assert "lvef" in d.message
    assert "percentage" in d.message
    assert d.position.line == 3
    assert d.location() == "pt.yaml:3:7"
    assert "lvef: 55 kg" in d.render()


def test_nested_lab_error_names_the_dotted_field():
    d = only_error("labs:\n  alt: 30 U/L\n  ast: 52 mg/dL\n")
    assert d.message.startswith("labs.ast:")
    assert "enzyme" in d.message
    assert d.position.line == 4


def test_a_lab_uln_of_the_wrong_kind_points_at_the_uln():
    d = only_error("labs:\n  ast: {value: 52 U/L, uln: 40 umol/L}\n")
    assert "labs.ast.uln" in d.message
    assert d.position.line == 3 and d.position.column == 29


def test_every_error_is_reported_at_once():
    found = errors("ecog: 7\nlvef: 55 kg\nsex: femal\n")
    assert [d.position.line for d in found] == [2, 3, 4]


@pytest.mark.parametrize(
    ("body", "field", "line"),
    [
        ("ecog: 7\n", "ecog", 2),
        ("ecog: -1\n", "ecog", 2),
        ("lvef: 150 %\n", "lvef", 2),
        ("spo2: 101 %\n", "spo2", 2),
        ("nyha_class: 5\n", "nyha_class", 2),
        ("dyspnea_grade: 6\n", "dyspnea_grade", 2),
        ("age: 200\n", "age", 2),
        ("weight: 1200 lb\n", "weight", 2),
        ("labs:\n  creatinine: -1 mg/dL\n", "labs.creatinine", 3),
        ("labs:\n  creatinine: {value: -1 mg/dL}\n", "labs.creatinine", 3),
        ("labs:\n  creatinine: {value: 97 umol/L, uln: 0 umol/L}\n", "labs.creatinine.uln", 3),
        ("diagnosis:\n  bone_marrow_blasts: 120 %\n", "diagnosis.bone_marrow_blasts", 3),
    ],
)
def test_out_of_range_values_are_refused(body, field, line):
    d = only_error(body)
    assert d.message.startswith(field)
    assert d.position.line == line


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("ecog: 2.5\n", "ecog"),
        ("ecog: true\n", "ecog"),
        ("lvef: 58\n", "lvef"),  # a bare number where a unit is needed
        ("labs:\n  inr: 1.1 U/L\n", "labs.inr"),  # a unit where none belongs
        ("labs:\n  creatinine: 1,4 mg/dL\n", "labs.creatinine"),
        ("informed_consent: yes please\n", "informed_consent"),
        ("screening_date: 20 Nov 2026\n", "screening_date"),
        ("therapies: none\n", "therapies"),
        ("therapies:\n  - {drug: imatinib}\n", "therapies[0]"),  # type is required
        ("age: 47 kg\n", "age"),
    ],
)
def test_malformed_values_name_their_field(body, field):
    d = only_error(body)
    assert d.message.startswith(field), d.message


def test_a_misspelt_choice_gets_a_did_you_mean():
    d = only_error("sex: femal\n")
    assert d.hint == "did you mean 'female'?"


def test_a_missing_id_is_an_error():
    with pytest.raises(PatientError, match="'id'"):
        parse_patient("lvef: 55 %\n", "pt.yaml")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_a_patient_file_is_one_mapping(text):
    with pytest.raises(PatientError):
        parse_patient(text, "pt.yaml")


def test_a_numeric_looking_id_is_not_rewritten():
    # YAML 1.1 reads 0012345 as an octal integer (5349); a record number must not change.
    try:
        p = parse_patient("id: 0012345\n", "pt.yaml")
    except PatientError as exc:  # refusing it, naming the field, would also be honest
        assert "id" in exc.diagnostic.message
    else:
        assert p.id == "0012345"


# ------------------------------------------------------------------- unknown and absent


def test_an_unknown_key_is_a_warning_with_a_did_you_mean():
    p = patient("ecog: 1\nlvf: 55 %\n")
    assert "lvef" not in p.data and "lvf" not in p.data
    (warning,) = p.warnings
    assert "lvf" in warning.message
    assert warning.hint == "did you mean 'lvef'?"
    assert warning.position.line == 3 and warning.position.column == 1


def test_an_unknown_nested_key_is_named_with_its_path():
    p = patient("diagnosis:\n  diseese: B-ALL\n")
    (warning,) = p.warnings
    assert "diagnosis.diseese" in warning.message
    assert warning.hint == "did you mean 'disease'?"
    assert warning.position.line == 3


def test_an_unknown_key_in_a_lab_mapping_is_a_warning():
    p = patient("labs:\n  ast: {value: 52 U/L, ulm: 40 U/L}\n")
    (warning,) = p.warnings
    assert warning.hint == "did you mean 'uln'?"
    assert p.data["labs"]["ast"].uln is None


MARKER = "diagnosis:\n  markers:\n    {name}: {{result: positive, date: 2026-11-10}}\n"


@pytest.mark.parametrize(("name", "meant"), [("CD2", "CD22"), ("cd2", "CD22"), ("CD91", "CD19")])
def test_a_marker_one_slip_from_one_the_rules_read_is_a_warning(name, meant):
    p = patient(MARKER.format(name=name))
    (warning,) = p.warnings
    assert name.upper() in warning.message and "no rule reads" in warning.message
    assert warning.hint.startswith(f"did you mean {meant!r}?")
    assert warning.position.line == 4
    # Kept as written: CD2 is a marker of its own, and the file may mean it.
    assert p.data["diagnosis"]["markers"][name.upper()]["result"] == "positive"


@pytest.mark.parametrize("name", ["CD19", "CD22", "cd19", "CD20", "CD10", "CD34", "TdT"])
def test_a_marker_the_rules_read_or_another_marker_is_no_warning(name):
    # CD20 and CD10 are one letter *typed wrong* from CD22 and CD19, and are markers of their
    # own that a file records: only a letter left out, added or swapped is taken for a slip.
    assert patient(MARKER.format(name=name)).warnings == ()


def test_the_marker_names_are_the_ones_the_bundled_rules_read():
    from screener.core import _vocabulary as v
    from screener.criteria._catalog import load_rule_sets

    def walk(node):
        yield node
        for child in node.children():
            yield from walk(child)

    read = set()
    for rule_set in load_rule_sets():
        for c in rule_set.criteria:
            for top in [c.check] + [p.check for p in c.parts]:
                for node in walk(top) if top is not None else ():
                    for field in node.reads() + node.outer_reads():
                        if field.startswith("diagnosis.markers."):
                            read.add(field.split(".")[2])
    spec = v.BUILTIN.resolve("diagnosis.markers")
    assert isinstance(spec, v.OpenMap) and set(spec.names) == read == {"CD19", "CD22"}


@pytest.mark.parametrize("body", ["", "lvef:\n", "lvef: null\n", "labs: {}\n"])
def test_a_missing_or_empty_key_stays_absent(body):
    p = patient(body)
    assert "lvef" not in p.data
    assert "creatinine" not in p.data.get("labs", {})


@pytest.mark.parametrize("key", ["therapies", "conditions", "medications", "procedures"])
def test_an_empty_list_is_kept_as_an_answer(key):
    p = patient(f"{key}: []\n")
    assert p.data[key] == ()


def test_an_empty_mutation_list_is_kept():
    assert patient("diagnosis:\n  abl1_mutations: []\n").data["diagnosis"]["abl1_mutations"] == ()


# --------------------------------------------------------------------- accepted forms


@pytest.mark.parametrize("written", ["47", "47 years", "47 y"])
def test_age_in_years_with_or_without_the_unit(written):
    age = patient(f"age: {written}\n").data["age"]
    assert units.convert(age, "years") == 47


@pytest.mark.parametrize(("written", "klass"), [("III", 3), ("iv", 4), ("I", 1), ("2", 2)])
def test_nyha_class_in_roman_or_arabic(written, klass):
    assert patient(f"nyha_class: {written}\n").data["nyha_class"] == klass


@pytest.mark.parametrize(
    "written", ["T315I", "p.T315I", "p.Thr315Ile", "Thr315Ile", "p.(Thr315Ile)"]
)
def test_mutation_spellings_normalise(written):
    p = patient(f"diagnosis:\n  abl1_mutations: ['{written}']\n")
    assert p.data["diagnosis"]["abl1_mutations"] == ("T315I",)


@pytest.mark.parametrize("written", ["E255K", "p.Glu255Lys"])
def test_other_mutations_keep_their_identity(written):
    assert normalise_mutation(written) == "E255K"


@pytest.mark.parametrize("written", ["T315", "p.Xyz315Ile", "BCR-ABL1", "315I"])
def test_unreadable_mutations_are_refused(written):
    assert normalise_mutation(written) is None
    d = only_error(f"diagnosis:\n  abl1_mutations: [T315I, '{written}']\n")
    assert "abl1_mutations[1]" in d.message
    assert d.position.line == 3


@pytest.mark.parametrize(
    ("written", "value"),
    [("pos", "positive"), ("Negative", "negative"), ("not detected", "negative")],
)
def test_test_results_accept_lab_wording(written, value):
    assert patient(f"serology:\n  hiv: {written}\n").data["serology"]["hiv"] == value


def test_a_lab_may_be_a_bare_quantity_or_a_mapping():
    labs = patient(
        "labs:\n  alt: 61 U/L\n  ast: {value: 52 IU/L, uln: 40 U/L, date: 2026-11-18}\n"
    ).data["labs"]
    assert labs["alt"].value.magnitude == 61 and labs["alt"].uln is None
    assert labs["ast"].uln.magnitude == 40 and labs["ast"].date == dt.date(2026, 11, 18)


def test_creatinine_value_and_uln_may_use_different_units():
    lab = patient("labs:\n  creatinine: {value: 97 umol/L, uln: 1.2 mg/dL}\n").data["labs"][
        "creatinine"
    ]
    assert lab.value.unit == "umol/l" and lab.uln.unit == "mg/dl"


def test_weight_in_pounds_is_range_checked_in_kilograms():
    w = patient("weight: 150 lb\n").data["weight"]
    assert isinstance(w, Measure)
    assert units.convert(w, "kg") == pytest.approx(68.04, abs=0.01)


# ---------------------------------------------------------------------------- dates


def test_screening_date_wins_over_as_of_and_today():
    p = patient("screening_date: 2026-11-20\n", as_of=AS_OF, today=TODAY)
    assert (p.as_of, p.as_of_source) == (dt.date(2026, 11, 20), "screening_date")


def test_as_of_is_used_without_a_screening_date():
    p = patient("ecog: 1\n", as_of=AS_OF, today=TODAY)
    assert (p.as_of, p.as_of_source) == (AS_OF, "--as-of")


def test_today_is_the_last_resort():
    p = patient("ecog: 1\n", today=TODAY)
    assert (p.as_of, p.as_of_source) == (TODAY, "today")


def test_without_any_date_today_is_the_real_today():
    p = patient("ecog: 1\n")
    assert p.as_of_source == "today"
    assert abs((p.as_of - dt.date.today()).days) <= 1


def test_a_birth_date_after_the_screening_date_is_refused():
    d = only_error("screening_date: 2026-11-20\nbirth_date: 2026-11-21\n")
    assert d.message.startswith("birth_date")
    assert d.position.line == 3


def test_a_birth_date_after_the_as_of_date_is_refused():
    d = only_error("birth_date: 2026-11-30\n", as_of=AS_OF, today=TODAY)
    assert d.message.startswith("birth_date")


def test_a_birth_date_on_the_screening_date_is_allowed():
    patient("screening_date: 2026-11-20\nbirth_date: 2026-11-20\n")


def test_apheresis_before_birth_is_refused():
    d = only_error(
        "screening_date: 2026-11-20\nbirth_date: 1979-04-02\napheresis_date: 1970-01-01\n"
    )
    assert d.message.startswith("apheresis_date")


def test_an_age_that_disagrees_with_the_birth_date_is_a_warning():
    p = patient("screening_date: 2026-11-20\nbirth_date: 1979-04-02\nage: 30\n")
    (warning,) = p.warnings
    assert "birth date" in warning.message and warning.position.line == 4


def test_an_age_that_agrees_with_the_birth_date_is_quiet():
    assert patient("screening_date: 2026-11-20\nbirth_date: 1979-04-02\nage: 47\n").warnings == ()


# ------------------------------------------------------------------------ TKI generation


@pytest.mark.parametrize(
    ("drug", "generation"),
    [("imatinib", 1), ("dasatinib", 2), ("Nilotinib", 2), ("ponatinib", 3), ("asciminib", 3)],
)
def test_tki_generation_comes_from_the_drug_name(drug, generation):
    (therapy,) = patient(f"therapies:\n  - {{type: tki, drug: {drug}}}\n").data["therapies"]
    assert therapy["generation"] == generation


def test_a_stated_generation_is_kept():
    (therapy,) = patient("therapies:\n  - {type: tki, drug: imatinib, generation: 2}\n").data[
        "therapies"
    ]
    assert therapy["generation"] == 2


def test_an_unknown_tki_has_no_generation():
    (therapy,) = patient("therapies:\n  - {type: tki, drug: newtinib}\n").data["therapies"]
    assert "generation" not in therapy


def test_only_tkis_get_a_generation():
    (therapy,) = patient("therapies:\n  - {type: chemotherapy, drug: imatinib}\n").data["therapies"]
    assert "generation" not in therapy


# The fast read (no positions) must agree with the positioned parse, and hand over to it
# whenever positions or the scalar text matter.
FAST_CASES = [
    SPEC_EXAMPLE,
    "id: PT-1\nscreening_date: 2026-11-20\nlabs: {creatinine: {value: 97 umol/L, uln: 1.2 mg/dL}}\n",
    "id: 0012345\n",  # octal-looking id: text as written
    "id: PT-2\ndiagnosis: {cns_involvement: no}\n",  # a YAML 1.1 boolean where a word is meant
    "id: PT-3\nscreening_date: 2026-11-20T09:30:00\n",  # a time of day is dropped
    "id: PT-4\necog: 0x1\nnyha_class: 1_0\ndyspnea_grade: 1:30\n",  # YAML 1.1 integer forms
    "id: PT-5\nweight: ~\nlvef: null\nspo2: =\ninr: .inf\n",  # nulls, the value tag, inf
    "id: PT-6\nlabs:\n  inr: {value: 1.1e0, uln: 12e-1}\ntherapies: [{type: chemotherapy}]\n",
    "- id: PT-7\n",  # not a mapping
    "",  # empty
]


@pytest.mark.parametrize("text", FAST_CASES)
def test_fast_read_agrees_with_the_positioned_parse(text: str):
    from screener.core._errors import PatientError
    from screener.reading._document import parse
    from screener.reading._patient import from_document

    try:
        slow = from_document(parse(text, "p.yaml", PatientError))
    except PatientError as exc:
        with pytest.raises(PatientError) as caught:
            parse_patient(text, "p.yaml")
        assert caught.value.diagnostics == exc.diagnostics
        return
    assert parse_patient(text, "p.yaml").data == slow.data


def test_fast_read_agrees_with_the_positioned_parse_on_every_patient_file():
    from screener.core._errors import PatientError
    from screener.reading._document import parse, parse_fast

    root = Path(__file__).parent.parent
    files = [
        *(root / "examples" / "patients").glob("*.yaml"),
        *(root / "tests" / "acceptance" / "patients").glob("*.yaml"),
    ]
    fast_reads = 0
    for path in files:
        text = path.read_text("utf-8")
        fast = parse_fast(text, str(path))
        if fast is not None:  # None: a mark such as * or ! sends the file to the slow parse
            fast_reads += 1
            assert fast.data == parse(text, str(path), PatientError).data, path
    assert fast_reads > len(files) / 2


SCALARS = [
    "true",
    "yes",
    "No",
    "off",
    "~",
    "null",
    "",
    "12",
    "012",
    "0x1A",
    "1_000",
    "1:30",
    "1.5",
    "1e3",
    ".5",
    ".inf",
    "-.Inf",
    ".NaN",
    "2026-11-20",
    "12 mg/dL",
    "PT-1",
]


@pytest.mark.parametrize("quote", ["", "'", '"'])
def test_fast_read_types_scalars_as_yaml_does_quoted_or_not_first_or_again(quote: str):
    from screener.reading._document import parse_fast

    # Each text twice, and plain before quoted or the other way round: the type of a plain
    # scalar is remembered by its text, which must never give a quoted one a type.
    other = "'" if not quote else ""
    styles = [(v, quote) for v in SCALARS] + [(v, other) for v in SCALARS]
    text = "".join(f"k{i}: {q}{value}{q}\n" for i, (value, q) in enumerate(styles * 2))
    expected = yaml.load(text, Loader=yaml.CSafeLoader)
    got = parse_fast("id: X\n" + text, "p.yaml")
    assert got is not None
    assert {k: v for k, v in got.data.items() if k != "id"} == expected
    assert [type(v) for k, v in got.data.items() if k != "id"] == [
        type(v) for v in expected.values()
    ]


def test_warnings_from_a_fast_read_still_carry_positions():
    patient = parse_patient("id: PT-1\nlvf: 55 %\n", "p.yaml")
    assert patient.warnings[0].position is not None
    assert patient.warnings[0].position.line == 2


def test_duplicate_keys_are_errors_whichever_path_reads_them():
    with pytest.raises(PatientError) as caught:
        parse_patient("id: PT-1\necog: 1\necog: 2\n", "p.yaml")
    assert caught.value.diagnostic.position.line == 3


def test_an_attestation_may_say_who_decided_and_when():
    p = parse_patient(
        "id: A\nattestations:\n"
        "  NCT06559644/E16: {result: fail, by: Dr A. Rivera, date: 2026-11-21}\n"
        "  NCT06559644/E9: pass\n",
        "a.yaml",
    )
    assert p.data["attestations"] == {
        "NCT06559644/E16": {"result": "fail", "by": "Dr A. Rivera", "date": dt.date(2026, 11, 21)},
        "NCT06559644/E9": {"result": "pass"},
    }


@pytest.mark.parametrize("body", ["{by: Dr A}", "{result: maybe}", "{result: pass, when: today}"])
def test_an_attestation_needs_a_result_and_known_keys(body):
    text = f"id: A\nattestations:\n  NCT06559644/E16: {body}\n"
    try:
        p = parse_patient(text, "a.yaml")
    except PatientError:
        return
    assert p.warnings  # an unknown key is a warning with the nearest name


# ---------------------------------------------------------- markers and completed years


def _criterion(p, trial: str, cid: str):
    from screener.criteria import _catalog as catalog
    from screener.screening import _engine as engine

    rule_set = next(r for r in catalog.load_rule_sets() if r.trial == trial)
    result = engine.screen(p, rule_set)
    return next(c for c in result.criteria if c.id == cid)


@pytest.mark.parametrize("name", ["cd19", "Cd19", "CD19", " cD19", "CD 19", "cd-19", "CD_19"])
def test_marker_names_are_read_in_any_case(name):
    p = patient(
        "screening_date: 2026-11-20\ndiagnosis:\n  markers:\n"
        f"    '{name}': {{result: positive, specimen: BM, date: 2026-11-01}}\n"
    )
    assert list(p.data["diagnosis"]["markers"]) == ["CD19"]
    assert p.warnings == ()
    # CNCT19 I4 reads diagnosis.markers.CD19: a lower-case key used to leave it unknown.
    assert _criterion(p, "NCT04684147", "I4").status.value == "pass"


def test_one_marker_under_two_spellings_is_an_error():
    d = only_error(
        "diagnosis:\n  markers:\n    CD22: {result: positive}\n    cd22: {result: negative}\n"
    )
    assert d.message.startswith("diagnosis.markers.cd22: CD22 is given twice")
    assert d.position.line == 5


@pytest.mark.parametrize(
    ("written", "shown"),
    [("65.5 years", "65 years"), ("65.99 years", "65 years"), ("786 months", "65 years")],
)
def test_a_fractional_stated_age_is_completed_years(written, shown):
    # ≤ 65 years: 65.5 years used to fail CNCT19 I2 and HY004 I2, while a birth date giving
    # the same person (65 completed years) passed.
    p = patient(f"screening_date: 2026-11-20\nage: {written}\n")
    for trial in ("NCT04684147", "NCT06009107"):
        c = _criterion(p, trial, "I2")
        assert c.status.value == "pass", c.reason
        assert f"age {shown} (completed years of the stated {written})" in c.reason
    assert (
        _criterion(
            patient("screening_date: 2026-11-20\nage: 66.2 years\n"), "NCT04684147", "I2"
        ).status.value
        == "fail"
    )


def test_a_whole_stated_age_reads_as_before():
    c = _criterion(patient("screening_date: 2026-11-20\nage: 65 years\n"), "NCT04684147", "I2")
    assert "age 65 years (as stated) ≤ 65 years" in c.reason


def test_cockcroft_gault_uses_completed_years_of_a_stated_age():
    from screener.screening._engine import facts_of

    body = "sex: male\nweight: 72 kg\nlabs: {creatinine: 1 mg/dL}\n"
    fractional = facts_of(patient("age: 40.9 years\n" + body)).get("labs.creatinine_clearance")
    whole = facts_of(patient("age: 40 years\n" + body)).get("labs.creatinine_clearance")
    assert fractional.value.value.magnitude == whole.value.value.magnitude == 100


def test_a_stated_age_half_a_year_short_of_the_birth_date_age_is_a_warning():
    p = patient("screening_date: 2026-11-20\nbirth_date: 1979-04-02\nage: 46.5 years\n")
    assert "disagrees with birth date" in p.warnings[0].message


# ------------------------------------------------------------------------- TKI names


def _tki(drug: str, extra: str = ""):
    return patient(f"therapies:\n  - type: tki\n    drug: {drug}\n{extra}")


@pytest.mark.parametrize(
    ("drug", "generation"),
    [
        ("Gleevec", 1),
        ("Glivec", 1),
        ("STI571", 1),
        ("Sprycel", 2),
        ("Tasigna", 2),
        ("Bosulif", 2),
        ("Iclusig", 3),
        ("Scemblix", 3),
        ("HQP1351", 3),
        ("hqp-1351", 3),
        ("ICLUSIG", 3),
        ("dasatinib", 2),
        ("Imatinib", 1),
        # as labelled, with their salt or hydrate
        ("imatinib mesylate", 1),
        ("Imatinib Mesilate", 1),
        ("nilotinib hydrochloride monohydrate", 2),
        ("ponatinib HCl", 3),
        ("radotinib", 2),
        ("Supect", 2),
    ],
)
def test_tki_brand_names_and_codes_have_their_generation(drug, generation):
    p = _tki(drug)
    assert p.data["therapies"][0]["generation"] == generation
    assert p.warnings == ()


def test_two_brands_of_two_generations_satisfy_cnct19_i5():
    p = patient(
        "screening_date: 2026-11-20\ndiagnosis: {ph_positive: true, abl1_mutations: []}\n"
        "therapies:\n  - {type: tki, drug: Glivec, outcome: failed}\n"
        "  - {type: tki, drug: Sprycel, outcome: intolerant}\n"
    )
    assert _criterion(p, "NCT04684147", "I5").status.value == "pass"


def test_an_unknown_tki_name_is_a_warning_with_the_nearest_drug():
    p = _tki("dasatinb")
    assert "generation" not in p.data["therapies"][0]
    (warning,) = p.warnings
    assert warning.message == (
        "therapies[0].drug: unknown TKI 'dasatinb'; its generation is unknown"
    )
    assert warning.hint == "did you mean dasatinib?"
    assert warning.position.line == 4


def test_a_misspelt_brand_is_offered_the_brand_and_its_drug():
    assert _tki("Sprycl").warnings[0].hint == "did you mean Sprycel (dasatinib)?"


def test_a_stated_generation_needs_no_known_name():
    p = _tki("investigational TKI", "    generation: 3\n")
    assert p.warnings == () and p.data["therapies"][0]["generation"] == 3


def test_a_drug_of_another_type_is_not_checked_as_a_tki():
    p = patient("therapies:\n  - {type: immunotherapy, drug: blinatumomab}\n")
    assert p.warnings == ()


def test_a_bilirubin_just_under_three_times_uln_is_not_printed_as_three():
    # "3.594 mg/dL = 3 × ULN (ULN 1.2 mg/dL) > 2 × ULN" read as a value at the 3 × ULN limit
    # (and 3 × 1.2 is 3.6, not 3.594).
    p = patient(
        "screening_date: 2026-11-20\nconditions: []\n"
        "labs:\n  total_bilirubin: {value: 3.594 mg/dL, uln: 1.2 mg/dL}\n"
    )
    part = next(x for x in _criterion(p, "NCT04684147", "I8").parts if x.id == "I8.c")
    assert part.reason.startswith(
        "total bilirubin 3.594 mg/dL = 2.995 × ULN (ULN 1.2 mg/dL) > 2 × ULN"
    )
    assert part.evidence[0].converted == "2.995 × ULN"


# ------------------------------------------------------------------ lab plausibility


def test_every_lab_declares_a_hard_and_a_soft_range():
    from screener.core import _units as units
    from screener.core import _vocabulary as v

    for name, spec in v.PATIENT.fields["labs"].fields.items():
        # An upper bound on both: a one-sided range missing its top would pass this loop
        # before, and an extra zero is the commonest slip.
        assert spec.hard[1] is not None and spec.soft[1] is not None, name
        if spec.default_uln is None:
            continue
        # A lab read as a multiple of its ULN declares where a ULN can lie, on both sides,
        # and its own default ULN lies there.
        for bounds in (spec.uln_hard, spec.uln_soft):
            assert None not in bounds, name
        low, high = spec.uln_soft
        default = (
            units.parse_measure(spec.default_uln, spec.value.kind, spec.value.analyte)
            if isinstance(spec.value, v.Quantity)
            else float(spec.default_uln)
        )
        assert low <= spec.in_range_unit(default) <= high, name
    # Where a unit slip would make a low value pass every limit, a low value is impossible.
    assert v.PATIENT.fields["labs"].fields["creatinine"].hard[0] is not None


@pytest.mark.parametrize(
    ("lab", "written", "bound", "hint"),
    [
        ("total_bilirubin", "30 mmol/L", "above 100 mg/dL = 1.71 mmol/L", "did you mean µmol/L?"),
        ("creatinine", "97 mg/dL", "above 40 mg/dL", "did you mean µmol/L?"),
        ("creatinine", "97 mmol/L", "above 40 mg/dL = 3.54 mmol/L", "did you mean µmol/L?"),
        ("direct_bilirubin", "60 mg/dL", "above 50 mg/dL", "did you mean µmol/L?"),
        ("ast", "60000 IU/L", "above 50000 U/L", "check the value and its unit"),
        ("alt", "75000 U/L", "above 50000 U/L", "check the value and its unit"),
        ("creatinine_clearance", "600 mL/min", "above 500 mL/min", "check the value and its unit"),
        ("inr", "0.3", "below 0.5", "check the value and its unit"),
        ("inr", "25", "above 20", "check the value and its unit"),
        ("aptt", "400 s", "above 300 s", "check the value and its unit"),
        ("aptt", "3 s", "below 5 s", "check the value and its unit"),
    ],
)
def test_an_impossible_lab_value_is_an_error_naming_the_field_and_the_slip(
    lab, written, bound, hint
):
    d = only_error(f"labs:\n  {lab}: {written}\n")
    assert d.message.startswith(f"labs.{lab}: ")
    assert f"{written} is not a possible result ({bound}): a typo or a unit slip" in d.message
    assert d.hint == hint
    assert d.position.line == 3


def test_an_impossible_uln_is_an_error_too():
    d = only_error("labs:\n  total_bilirubin: {value: 1.1 mg/dL, uln: 200 mg/dL}\n")
    assert d.message.startswith(
        "labs.total_bilirubin.uln: total bilirubin ULN 200 mg/dL is not a possible result"
    )


@pytest.mark.parametrize(
    ("lab", "uln", "bound", "hint"),
    [
        # An extra zero: no unit makes it plausible.
        ("ast", "4000 U/L", "above 250 U/L", "check the value and its unit"),
        ("alt", "400 IU/L", "above 250 U/L", "check the value and its unit"),
        # µmol/L written as mg/dL.
        ("total_bilirubin", "20 mg/dL", "above 5 mg/dL", "did you mean µmol/L?"),
        ("creatinine", "110 mg/dL", "above 5 mg/dL", "did you mean µmol/L?"),
        ("direct_bilirubin", "5 mg/dL", "above 2 mg/dL", "did you mean µmol/L?"),
        # mg/dL written as µmol/L.
        ("creatinine", "1.1 umol/L", "below 0.15 mg/dL = 13.3 µmol/L", "did you mean mg/dL?"),
        ("inr", "12", "above 5", "check the value and its unit"),
        ("aptt", "400 s", "above 120 s", "check the value and its unit"),
    ],
)
def test_an_impossible_uln_is_an_error_naming_the_likely_slip(lab, uln, bound, hint):
    d = only_error(f"labs:\n  {lab}: {{value: 1, uln: {uln}}}\n".replace("value: 1,", _ONE[lab]))
    assert d.message.startswith(f"labs.{lab}.uln: ")
    assert f"ULN {uln} is not a possible result ({bound}): a typo or a unit slip" in d.message
    assert d.hint == hint


# A plausible result of each lab, in its range unit.
_ONE = {
    "ast": "value: 30 U/L,",
    "alt": "value: 30 U/L,",
    "total_bilirubin": "value: 1 mg/dL,",
    "direct_bilirubin": "value: 0.2 mg/dL,",
    "creatinine": "value: 0.8 mg/dL,",
    "inr": "value: 1.0,",
    "aptt": "value: 30 s,",
}


@pytest.mark.parametrize(
    ("lab", "uln", "bound"),
    [
        ("total_bilirubin", "3 mg/dL", "above 2 mg/dL"),
        ("ast", "150 U/L", "above 100 U/L"),
        ("creatinine", "0.2 mg/dL", "below 0.3 mg/dL"),
        ("aptt", "80 s", "above 60 s"),
    ],
)
def test_an_implausible_uln_is_a_warning_shown_with_its_results(lab, uln, bound):
    p = patient(f"screening_date: 2026-11-20\nlabs:\n  {lab}: {{{_ONE[lab]} uln: {uln}}}\n")
    (warning,) = p.warnings
    assert warning.message.startswith(f"labs.{lab}.uln: ")
    assert f"ULN {uln} is implausible ({bound})" in warning.message
    assert p.data["labs"][lab].implausible == f"ULN implausible: {bound}"


@pytest.mark.parametrize(
    ("lab", "uln"),
    [
        ("total_bilirubin", "21 umol/L"),
        ("total_bilirubin", "1.0 mg/dL"),
        ("direct_bilirubin", "5 umol/L"),
        ("creatinine", "110 umol/L"),
        ("creatinine", "0.4 mg/dL"),  # a young child's
        ("ast", "35 U/L"),
        ("alt", "56 IU/L"),
        ("inr", "1.3"),
        ("aptt", "45 s"),
    ],
)
def test_a_usual_uln_is_quiet(lab, uln):
    p = patient(f"labs:\n  {lab}: {{{_ONE[lab]} uln: {uln}}}\n")
    assert p.warnings == ()
    assert p.data["labs"][lab].implausible == ""


def test_a_uln_typo_no_longer_passes_ast_at_a_tenth_of_uln():
    # Before: "AST 400 U/L = 0.1 × ULN (ULN 4000 U/L) ≤ 3 × ULN", a pass (CNCT19 I8.a).
    d = only_error("labs:\n  ast: {value: 400 U/L, uln: 4000 U/L}\n")
    assert "AST ULN 4000 U/L is not a possible result" in d.message


@pytest.mark.parametrize(
    ("written", "hint"), [("1.7 umol/L", "did you mean mg/dL?"), ("0.03 mg/dL", None)]
)
def test_a_creatinine_too_low_for_any_patient_is_an_error(written, hint):
    # 1.7 µmol/L is 0.019 mg/dL: a mg/dL result in the wrong unit, which would pass
    # Hema-NeoTIL01 I9.c and make a Cockcroft-Gault clearance of thousands of mL/min.
    d = only_error(f"labs:\n  creatinine: {written}\n")
    assert "is not a possible result (below 0.05 mg/dL" in d.message
    if hint:
        assert d.hint == hint


def test_a_unit_slip_hint_never_offers_a_unit_of_the_same_magnitude():
    # U/L and IU/L are the same unit; mcmol/L is µmol/L: suggesting either changes nothing.
    assert only_error("labs:\n  ast: 60000 IU/L\n").hint == "check the value and its unit"
    d = only_error("labs:\n  total_bilirubin: 3000 mcmol/L\n")
    assert "µmol/L" not in (d.hint or "")


@pytest.mark.parametrize(
    ("lab", "written", "bound"),
    [
        ("total_bilirubin", "45 mg/dL", "above 30 mg/dL"),
        ("creatinine", "1400 umol/L", "above 15 mg/dL = 1326 µmol/L"),
        ("creatinine", "0.05 mg/dL", "below 0.1 mg/dL"),
        ("ast", "6000 U/L", "above 5000 U/L"),
        ("inr", "12", "above 10"),
        ("aptt", "160 s", "above 150 s"),
        ("creatinine_clearance", "300 mL/min", "above 250 mL/min"),
    ],
)
def test_an_implausible_lab_value_is_a_warning_and_shown_with_its_results(lab, written, bound):
    p = patient(f"screening_date: 2026-11-20\nlabs:\n  {lab}: {written}\n")
    (warning,) = p.warnings
    assert warning.message.startswith(f"labs.{lab}: ")
    assert f"{written} is implausible ({bound})" in warning.message
    assert warning.position.line == 4
    assert p.data["labs"][lab].implausible == f"implausible: {bound}"
    from screener.criteria import _catalog as catalog
    from screener.screening import _engine as engine

    screening = engine.screen_patient(p, catalog.load_rule_sets())
    shown = [
        (r.reason, e.value)
        for t in screening.trials
        for c in t.criteria
        for r in (c, *c.parts)
        for e in r.evidence
        if e.field == f"labs.{lab}"
    ]
    assert shown, "some criterion reads the lab"
    for reason, value in shown:
        assert f"(implausible: {bound})" in value
        assert f"(implausible: {bound})" in reason


def test_an_implausible_bilirubin_suggests_the_likely_unit():
    (warning,) = patient("labs:\n  total_bilirubin: 45 mg/dL\n").warnings
    assert warning.hint == "did you mean µmol/L?"


def test_plausible_labs_are_quiet_and_read_as_before():
    p = patient(
        "labs:\n  total_bilirubin: 97 umol/L\n  creatinine: 1.4 mg/dL\n  inr: 1.1\n"
        "  aptt: 34 s\n  ast: {value: 52 U/L, uln: 40 U/L}\n"
    )
    assert p.warnings == ()
    assert all(lab.implausible == "" for lab in p.data["labs"].values())


@pytest.mark.parametrize(
    ("written", "status", "reason"),
    [
        ("1.6000004 mg/dL", "fail", "creatinine 1.6 mg/dL (= 1.6000004 mg/dL) > 1.6 mg/dL"),
        ("1.5999996 mg/dL", "pass", "creatinine 1.6 mg/dL (= 1.5999996 mg/dL) ≤ 1.6 mg/dL"),
        ("1.23456789 mg/dL", "pass", "creatinine 1.23457 mg/dL ≤ 1.6 mg/dL"),
    ],
)
def test_an_export_float_shown_short_still_shows_the_digits_that_decide(written, status, reason):
    # An export's long float is shown to six digits; 1.6000004 mg/dL read "creatinine 1.6 mg/dL
    # > 1.6 mg/dL", a comparison that visibly does not hold.
    p = patient(f"labs:\n  creatinine: {written}\n")
    part = next(x for x in _criterion(p, "NCT06559644", "I9").parts if x.id == "I9.c")
    assert (part.status.value, part.reason) == (status, reason)


def test_every_kind_of_field_has_one_reader():
    # A kind declared in core/_vocabulary.py without a reader would fail only when a file
    # first holds a field of it; a reader for no kind is dead code.
    from screener.core import _vocabulary as v
    from screener.reading import _patient

    assert set(_patient._READERS) == set(v.KINDS.values())


def test_a_stated_generation_that_contradicts_the_reference_warns():
    p = _tki("imatinib", "    generation: 2\n")
    assert p.data["therapies"][0]["generation"] == 2  # the record's word stands
    (warning,) = p.warnings
    assert "imatinib is a generation-1 TKI in the reference data, and the record says 2" in (
        warning.message
    )


def test_salt_names_count_as_one_drug_with_the_generic():
    p = _tki("imatinib mesylate")
    assert p.data["therapies"][0]["generic"] == "imatinib"


def test_a_hyphen_that_is_part_of_a_marker_name_stays():
    p = patient(
        "diagnosis:\n  markers:\n    HLA-DR: {result: positive, specimen: BM, date: 2026-11-01}\n"
    )
    assert "HLA-DR" in p.data["diagnosis"]["markers"]
