"""screener/criteria/_rules.py (rule sets checked at load time) and
screener/screening/_engine.py on small rule sets."""

from __future__ import annotations

import textwrap

import pytest

from screener.core._errors import Diagnostic, RuleSetError
from screener.core._model import Kind, Status, Verdict
from screener.criteria._rules import RuleSet, parse_rule_set
from screener.reading._patient import parse_patient
from screener.screening._engine import screen

TRIAL = "NCT00000001"
FILE = f"rules/{TRIAL}.yaml"
HEAD = textwrap.dedent(f"""\
    trial: {TRIAL}
    product: Test product
    title: A test trial
    sources: [https://example.org/trial]
    criteria:
""")
HEAD_LINES = HEAD.count("\n")  # the first criterion starts on line HEAD_LINES + 1

MINIMAL = HEAD + textwrap.dedent("""\
  - id: I1
    kind: inclusion
    label: ECOG ≤ 2
    text: ECOG performance status ≤ 2
    check: {field: ecog, le: 2}
  - id: E1
    kind: exclusion
    label: Active CNS disease
    text: Active CNS involvement
    check: {field: diagnosis.cns_involvement, is: active}
""")


def criterion(check: str, cid: str = "I1", kind: str | None = None) -> str:
    """One criterion; the check is on line 5 of the block (see CHECK_LINE)."""
    kind = kind or ("inclusion" if cid.startswith("I") else "exclusion")
    return (
        f"  - id: {cid}\n    kind: {kind}\n    label: Label {cid}\n    text: Text of {cid}\n"
        f"    check: {check}\n"
    )


CHECK_LINE = HEAD_LINES + 5  # the line of the first criterion's `check:`
CHECK_COLUMN = len("    check: ") + 1  # where a flow mapping after `check:` starts


def rule_set(*criteria: str) -> RuleSet:
    return parse_rule_set(HEAD + "".join(criteria), FILE)


def both(check: str) -> RuleSet:
    """The same check as an inclusion I1 and an exclusion E1."""
    return rule_set(criterion(check, "I1"), criterion(check, "E1"))


def refused(*criteria: str) -> Diagnostic:
    with pytest.raises(RuleSetError) as caught:
        rule_set(*criteria)
    return caught.value.diagnostic


def column_of(needle: str, check: str) -> int:
    """Column of `needle` on the `check:` line written by criterion()."""
    return len("    check: ") + check.index(needle) + 1


PATIENT = "id: PT-1\nscreening_date: 2026-11-20\n"


def run(rules: RuleSet, body: str = ""):
    p = parse_patient(PATIENT + body, "pt.yaml")
    return {c.id: c for c in screen(p, rules).criteria}


# ------------------------------------------------------------------------------ loading


def test_a_minimal_rule_set_compiles():
    rs = parse_rule_set(MINIMAL, FILE)
    assert rs.trial == TRIAL
    assert rs.sources == ("https://example.org/trial",)
    assert [(c.id, c.kind) for c in rs.criteria] == [("I1", Kind.INCLUSION), ("E1", Kind.EXCLUSION)]
    assert rs.criterion("E1").label == "Active CNS disease"
    assert rs.criterion("E2") is None


def test_a_minimal_rule_set_screens():
    rs = parse_rule_set(MINIMAL, FILE)
    result = screen(
        parse_patient(PATIENT + "ecog: 1\ndiagnosis: {cns_involvement: none}\n", "pt.yaml"), rs
    )
    assert result.verdict is Verdict.ELIGIBLE
    assert [c.status for c in result.criteria] == [Status.PASS, Status.PASS]


def test_the_file_name_must_match_the_trial():
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(MINIMAL, "rules/NCT99999999.yaml")
    assert caught.value.diagnostic.position.line == 1


def test_an_unknown_field_gets_a_did_you_mean():
    check = "{field: ecgo, le: 2}"
    d = refused(criterion(check))
    assert "unknown field 'ecgo'" in d.message
    assert d.hint == "did you mean 'ecog'?"
    assert d.location() == f"{FILE}:{CHECK_LINE}:{column_of('ecgo', check)}"


def test_an_unknown_field_inside_a_list_item():
    check = "{exists: therapies, where: {field: drgu, is: x}}"
    d = refused(criterion(check))
    assert "drgu" in d.message
    assert d.hint == "did you mean 'drug'?"
    assert d.position.line == CHECK_LINE


@pytest.mark.parametrize(
    ("check", "needle", "words"),
    [
        ("{field: lvef, ge: 50 kg}", "50 kg", ["LVEF", "a mass", "a percentage"]),
        ("{field: labs.ast, le: 40 umol/L}", "40 umol/L", ["AST", "molar", "enzyme"]),
        ("{field: labs.ast, le: 1.2 mg/dL}", "1.2 mg/dL", ["AST", "enzyme"]),
        ("{field: labs.creatinine, le: 40 U/L}", "40 U/L", ["creatinine", "concentration"]),
        ("{field: life_expectancy, gt: 12 kg}", "12 kg", ["duration"]),
        ("{field: ecog, le: 2 x ULN}", "2 x ULN", ["ECOG", "ULN"]),
        ("{field: lvef, ge: 2 x ULN}", "2 x ULN", ["LVEF", "ULN"]),
        ("{field: sex, is: femal}", "femal", ["femal", "sex"]),
        ("{field: ecog, le: two}", "two", ["ECOG"]),
        ("{field: ecog, is: 7}", "7", ["ECOG"]),
        ("{field: diagnosis.ph_positive, is: yes please}", "yes please", []),
        ("{field: screening_date, within: 6 kg, before: screening}", "6 kg", ["duration"]),
        ("{field: screening_date, within: 6 months, before: lunch}", "lunch", ["screening"]),
        ("{field: ecog, within: 6 months, before: screening}", "ecog", ["date"]),
        ("{field: lvef, contains: T315I}", "T315I", ["mutations"]),
    ],
)
def test_bad_thresholds_are_refused_where_written(check, needle, words):
    d = refused(criterion(check))
    assert d.location() == f"{FILE}:{CHECK_LINE}:{column_of(needle, check)}", d.render()
    for word in words:
        assert word in d.message, d.message


def test_an_unknown_value_of_a_choice_lists_the_values():
    d = refused(criterion("{field: sex, is: femal}"))
    assert "female" in (d.hint or "")


def test_an_unknown_operator_gets_a_did_you_mean():
    check = "{field: ecog, lte: 2}"
    d = refused(criterion(check))
    assert "unknown operator 'lte'" in d.message
    assert d.hint is not None and "did you mean" in d.hint
    assert d.location() == f"{FILE}:{CHECK_LINE}:{column_of('lte', check)}"


@pytest.mark.parametrize(
    ("check", "needle"),
    [
        ("{all: [{field: ecog, le: 2}], extra: 1}", "extra"),
        ("{not: {field: ecog, le: 2}, also: 1}", "also"),
        (
            "{if: {field: sex, is: male}, then: {field: ecog, le: 1}, otherwise: {field: ecog, le: 2}}",
            "otherwise",
        ),
        ("{exists: therapies, whereas: {field: type, is: tki}}", "whereas"),
    ],
)
def test_an_unknown_key_in_a_node_is_refused_at_the_key(check, needle):
    d = refused(criterion(check))
    assert f"unknown key {needle!r}" in d.message
    assert d.location() == f"{FILE}:{CHECK_LINE}:{column_of(needle, check)}"


@pytest.mark.parametrize("check", ["{foo: 1}", "{field: ecog, le: 2, ge: 0}", "[ecog]", "{}"])
def test_malformed_conditions_are_refused_at_the_node(check):
    d = refused(criterion(check))
    assert d.location() == f"{FILE}:{CHECK_LINE}:{CHECK_COLUMN}"


@pytest.mark.parametrize(
    "check",
    [
        "{not: {review: Investigator judges}}",
        "{any: [{field: ecog, le: 1}, {not: {all: [{review: x}]}}]}",
    ],
)
def test_a_review_under_not_is_refused(check):
    d = refused(criterion(check))
    assert "review" in d.message and "not" in d.message
    assert d.location() == f"{FILE}:{CHECK_LINE}:{column_of('{review', check)}"


def test_a_review_cannot_decide_an_if():
    d = refused(criterion("{if: {review: x}, then: {field: ecog, le: 1}}"))
    assert "review" in d.message and "if" in d.message


@pytest.mark.parametrize(
    ("ids", "bad_index", "expected"),
    [
        (["I1", "I3"], 1, "expected I2"),
        (["I2"], 0, "expected I1"),
        (["I1", "E2"], 1, "expected E1"),
        (["I1", "I1"], 1, "expected I2"),
        (["I1", "E1", "I2"], 2, "after the exclusions"),
    ],
)
def test_criterion_ids_must_run_in_order_without_gaps(ids, bad_index, expected):
    d = refused(*(criterion("{field: ecog, le: 2}", cid) for cid in ids))
    assert expected in d.message
    assert d.location() == f"{FILE}:{HEAD_LINES + 1 + 5 * bad_index}:9"  # the value of `id:`


@pytest.mark.parametrize(("cid", "kind"), [("E1", "inclusion"), ("I1", "exclusion")])
def test_the_kind_must_match_the_id(cid, kind):
    d = refused(criterion("{field: ecog, le: 2}", cid, kind))
    assert "id" in d.message
    assert d.location() == f"{FILE}:{HEAD_LINES + 2}:11"  # the value of `kind:`


@pytest.mark.parametrize("cid", ["C1", "I", "i1", "I1a", "1"])
def test_criterion_ids_look_like_i1_or_e12(cid):
    d = refused(criterion("{field: ecog, le: 2}", cid, "inclusion"))
    assert d.position.line == HEAD_LINES + 1


PARTS = """\
  - id: I1
    kind: inclusion
    label: Adequate organ function
    text: Organ function
    parts:
      - {{id: {a}, label: ECOG, check: {{field: ecog, le: 2}}}}
      - {{id: {b}, label: LVEF, check: {{field: lvef, ge: 50 %}}}}
"""


@pytest.mark.parametrize(
    ("a", "b", "bad"),
    [
        ("I1.a", "I2.b", "I2.b"),
        ("I1.1", "I1.b", "I1.1"),
        ("I1.a", "I1.a", None),
        ("I1.a", "I1.B", "I1.B"),
    ],
)
def test_parts_need_ids_of_their_criterion(a, b, bad):
    d = refused(PARTS.format(a=a, b=b))
    if bad is not None:
        assert bad in d.message
        line = HEAD_LINES + (6 if bad == a else 7)
        assert d.location() == f"{FILE}:{line}:{len('      - {id: ') + 1}"
    else:
        assert "duplicate" in d.message


def test_parts_compile_and_report_each_part():
    rs = rule_set(PARTS.format(a="I1.a", b="I1.b"))
    result = run(rs, "ecog: 1\n")["I1"]
    assert [(p.id, p.status) for p in result.parts] == [
        ("I1.a", Status.PASS),
        ("I1.b", Status.UNKNOWN),
    ]
    assert result.status is Status.UNKNOWN
    assert result.missing == ("lvef",)


def test_a_criterion_has_check_or_parts_not_both():
    text = PARTS.format(a="I1.a", b="I1.b") + "    check: {field: ecog, le: 2}\n"
    d = refused(text)
    assert d.position.line == HEAD_LINES + 1


# ---------------------------------------------------------------------- engine: leaves


def test_a_missing_field_is_unknown_and_named():
    results = run(both("{field: lvef, ge: 50 %}"))
    for cid in ("I1", "E1"):
        assert results[cid].status is Status.UNKNOWN
        assert results[cid].missing == ("lvef",)
        assert "lvef" in results[cid].reason


def test_a_missing_lab_is_named_by_its_path():
    result = run(both("{field: labs.total_bilirubin, le: 3 x ULN}"))["I1"]
    assert result.status is Status.UNKNOWN
    assert result.missing == ("labs.total_bilirubin",)


@pytest.mark.parametrize(
    ("written", "status"),
    [
        ("1.6 mg/dL", Status.PASS),
        ("140 umol/L", Status.PASS),
        ("145 umol/L", Status.FAIL),
        ("1.61 mg/dL", Status.FAIL),
    ],
)
def test_creatinine_threshold_across_units(written, status):
    result = run(
        both("{field: labs.creatinine, le: 1.6 mg/dL}"), f"labs: {{creatinine: {written}}}\n"
    )["I1"]
    assert result.status is status


def test_a_value_exactly_at_the_threshold_in_other_units_holds():
    exact = 1.6 * 10 / 113.12 * 1000  # 1.6 mg/dL in µmol/L
    result = run(
        both("{field: labs.creatinine, le: 1.6 mg/dL}"), f"labs: {{creatinine: {exact!r} umol/L}}\n"
    )["I1"]
    assert result.status is Status.PASS
    assert "1.6 mg/dL" in result.reason


def test_uln_multiples_use_the_file_uln_and_say_when_assumed():
    rules = both("{field: labs.total_bilirubin, le: 3 x ULN}")
    own = run(rules, "labs: {total_bilirubin: {value: 3.7 mg/dL, uln: 1.0 mg/dL}}\n")["I1"]
    assert own.status is Status.FAIL
    assumed = run(rules, "labs: {total_bilirubin: 3.6 mg/dL}\n")["I1"]
    assert assumed.status is Status.PASS  # 3.6 = 3 × the default 1.2 mg/dL
    assert "assumed" in assumed.reason


# ---------------------------------------------------------------------------- engine: if


def test_an_if_that_does_not_apply_passes_an_inclusion_and_clears_an_exclusion():
    results = run(
        both("{if: {field: sex, is: male}, then: {field: ecog, le: 1}}"), "sex: female\necog: 3\n"
    )
    assert results["I1"].status is Status.PASS
    assert results["E1"].status is Status.PASS
    assert "does not apply" in results["I1"].reason


def test_an_if_that_applies_decides_by_its_then():
    results = run(
        both("{if: {field: sex, is: male}, then: {field: ecog, le: 1}}"), "sex: male\necog: 3\n"
    )
    assert results["I1"].status is Status.FAIL  # inclusion does not hold
    assert results["E1"].status is Status.PASS  # excluding condition absent


def test_an_if_whose_condition_is_unknown_is_unknown_unless_the_branches_agree():
    rules = both("{if: {field: sex, is: male}, then: {field: ecog, le: 1}}")
    unsure = run(rules, "ecog: 3\n")["I1"]
    assert unsure.status is Status.UNKNOWN and "sex" in unsure.missing
    agreeing = run(rules, "ecog: 0\n")["I1"]
    assert agreeing.status is Status.PASS


# ------------------------------------------------------------------------ engine: lists


def test_exists_over_an_empty_list_is_false():
    results = run(both("{exists: therapies, where: {field: type, is: car-t}}"), "therapies: []\n")
    assert results["I1"].status is Status.FAIL
    assert results["E1"].status is Status.PASS


def test_exists_over_a_missing_list_is_unknown():
    results = run(both("{exists: therapies, where: {field: type, is: car-t}}"))
    for cid in ("I1", "E1"):
        assert results[cid].status is Status.UNKNOWN
        assert results[cid].missing == ("therapies",)


def test_exists_finds_a_match():
    results = run(
        both("{exists: therapies, where: {field: type, is: car-t}}"),
        "therapies: [{type: tki}, {type: car-t, response: NR}]\n",
    )
    assert results["I1"].status is Status.PASS
    assert results["E1"].status is Status.FAIL


EVERY_CART_NR = "{every: therapies, where: {field: type, is: car-t}, check: {field: response, in: [NR, relapse]}}"


def test_every_with_no_matching_items_holds():
    results = run(both(EVERY_CART_NR), "therapies: [{type: tki, drug: imatinib}]\n")
    assert results["I1"].status is Status.PASS
    assert results["E1"].status is Status.FAIL


def test_every_fails_on_one_bad_item_and_is_unknown_on_an_unanswered_one():
    rules = both(EVERY_CART_NR)
    assert (
        run(rules, "therapies: [{type: car-t, response: NR}, {type: car-t, response: CR}]\n")[
            "I1"
        ].status
        is Status.FAIL
    )
    unknown = run(rules, "therapies: [{type: car-t, response: NR}, {type: car-t}]\n")["I1"]
    assert unknown.status is Status.UNKNOWN
    assert unknown.missing == ("therapies[1].response",)


def test_every_over_a_missing_list_is_unknown():
    assert run(both(EVERY_CART_NR))["I1"].status is Status.UNKNOWN


COUNT_DISTINCT = "{count: therapies, where: {field: type, is: tki}, distinct: drug, ge: 2}"


@pytest.mark.parametrize(
    ("therapies", "status"),
    [
        ("[{type: tki, drug: imatinib}, {type: tki, drug: imatinib}]", Status.FAIL),
        ("[{type: tki, drug: imatinib}, {type: tki, drug: dasatinib}]", Status.PASS),
        ("[{type: tki, drug: imatinib}, {type: chemotherapy, drug: dasatinib}]", Status.FAIL),
        ("[{type: tki, drug: imatinib}, {type: tki}]", Status.UNKNOWN),
        ("[]", Status.FAIL),
    ],
)
def test_count_distinct_counts_values_not_items(therapies, status):
    assert run(both(COUNT_DISTINCT), f"therapies: {therapies}\n")["I1"].status is status


def test_count_without_distinct_counts_items():
    rules = both("{count: therapies, where: {field: type, is: tki}, ge: 2}")
    assert (
        run(rules, "therapies: [{type: tki, drug: imatinib}, {type: tki, drug: imatinib}]\n")[
            "I1"
        ].status
        is Status.PASS
    )


# ----------------------------------------------------------------------- engine: windows

WITHIN_SCREENING = (
    "{exists: therapies, where: {all: [{field: type, is: transplant}, "
    "{field: date, within: 6 months, before: screening}]}}"
)
WITHIN_APHERESIS = (
    "{exists: therapies, where: {all: [{field: type, is: transplant}, "
    "{field: date, within: 6 months, before: apheresis}]}}"
)


@pytest.mark.parametrize(
    ("date", "inside"),
    [
        ("2026-05-20", True),  # first day of the window
        ("2026-11-20", True),  # screening day itself
        ("2026-08-01", True),
        ("2026-05-19", False),  # the day before the window
        ("2026-11-21", False),  # after screening
        ("2025-11-20", False),
    ],
)
def test_within_before_screening_includes_both_ends(date, inside):
    results = run(both(WITHIN_SCREENING), f"therapies: [{{type: transplant, date: {date}}}]\n")
    assert results["I1"].status is (Status.PASS if inside else Status.FAIL)
    assert results["E1"].status is (Status.FAIL if inside else Status.PASS)


def test_a_window_on_a_missing_date_is_unknown():
    result = run(both(WITHIN_SCREENING), "therapies: [{type: transplant}]\n")["I1"]
    assert result.status is Status.UNKNOWN
    assert result.missing == ("therapies[0].date",)


@pytest.mark.parametrize("date", ["2026-10-01", "2026-05-20"])
def test_before_apheresis_without_an_apheresis_date_is_unknown(date):
    result = run(both(WITHIN_APHERESIS), f"therapies: [{{type: transplant, date: {date}}}]\n")["I1"]
    assert result.status is Status.UNKNOWN
    assert result.missing == ("apheresis_date",)


def test_a_date_older_than_the_window_before_screening_is_outside_any_apheresis_window():
    results = run(both(WITHIN_APHERESIS), "therapies: [{type: transplant, date: 2026-05-19}]\n")
    assert results["I1"].status is Status.FAIL
    assert results["E1"].status is Status.PASS


@pytest.mark.parametrize(
    ("date", "inside"),
    [("2026-06-01", True), ("2026-12-01", True), ("2026-05-31", False), ("2026-12-02", False)],
)
def test_before_apheresis_uses_the_apheresis_date(date, inside):
    results = run(
        both(WITHIN_APHERESIS),
        f"apheresis_date: 2026-12-01\ntherapies: [{{type: transplant, date: {date}}}]\n",
    )
    assert results["I1"].status is (Status.PASS if inside else Status.FAIL)


def test_a_fractional_month_window_is_not_silently_shortened():
    # 2.5 months (pint: 76 days); 2026-09-10 is 71 days before screening on 2026-11-20.
    check = "{exists: therapies, where: {field: date, within: 2.5 months, before: screening}}"
    try:
        rules = both(check)
    except RuleSetError:
        return  # refusing a fractional month at load time is also acceptable
    result = run(rules, "therapies: [{type: transplant, date: 2026-09-10}]\n")["I1"]
    assert result.status is Status.PASS, result.reason


# -------------------------------------------------------------------- engine: judgments


@pytest.mark.parametrize(("said", "status"), [("pass", Status.PASS), ("fail", Status.FAIL)])
def test_attestations_settle_review_items_of_both_kinds(said, status):
    rules = both("{review: Any condition the investigator believes unsuitable}")
    results = run(rules, f"attestations: {{{TRIAL}/I1: {said}, {TRIAL}/E1: {said}}}\n")
    for cid in ("I1", "E1"):
        assert results[cid].status is status
        assert results[cid].attested


def test_without_an_attestation_a_judgment_is_review():
    rules = both("{review: Any condition the investigator believes unsuitable}")
    results = run(rules)
    for cid in ("I1", "E1"):
        assert results[cid].status is Status.REVIEW
        assert results[cid].review == ("Any condition the investigator believes unsuitable",)
        assert not results[cid].attested
    p = parse_patient(PATIENT, "pt.yaml")
    assert screen(p, rules).verdict is Verdict.NEEDS_REVIEW


def test_an_attestation_for_another_trial_or_criterion_settles_nothing():
    rules = both("{review: judge}")
    results = run(rules, "attestations: {NCT99999999/I1: pass, " + TRIAL + "/I2: pass}\n")
    assert results["I1"].status is Status.REVIEW


def test_an_attestation_does_not_override_computed_facts():
    rules = both("{all: [{field: ecog, le: 2}, {review: judge}]}")
    results = run(rules, f"ecog: 3\nattestations: {{{TRIAL}/I1: pass}}\n")
    assert results["I1"].status is Status.FAIL


# ---------------------------------------------------------------------- engine: verdicts


def test_the_verdict_is_the_worst_criterion():
    rules = rule_set(
        criterion("{field: ecog, le: 2}", "I1"),
        criterion("{field: lvef, ge: 50 %}", "I2"),
        criterion("{review: judge}", "I3"),
    )
    p = parse_patient(PATIENT + "ecog: 1\n", "pt.yaml")
    assert screen(p, rules).verdict is Verdict.INCOMPLETE
    p = parse_patient(PATIENT + "ecog: 3\n", "pt.yaml")
    assert screen(p, rules).verdict is Verdict.INELIGIBLE
    p = parse_patient(PATIENT + "ecog: 1\nlvef: 55 %\n", "pt.yaml")
    assert screen(p, rules).verdict is Verdict.NEEDS_REVIEW


def test_results_keep_source_order():
    rules = rule_set(
        criterion("{field: ecog, le: 2}", "I1"),
        criterion("{field: ecog, le: 2}", "I2"),
        criterion("{field: ecog, ge: 4}", "E1"),
    )
    p = parse_patient(PATIENT + "ecog: 1\n", "pt.yaml")
    assert [c.id for c in screen(p, rules).criteria] == ["I1", "I2", "E1"]


# ------------------------------------- mentions, dates compared with dates, if_missing


MENTIONS = "{exists: therapies, where: {field: target, mentions: CD22}}"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("CD22", Status.FAIL),
        ("cd22", Status.FAIL),
        ("CD19/CD22", Status.FAIL),
        ("anti-CD22 scFv", Status.FAIL),
        # Marker lists written short name every marker: a bispecific's target.
        ("CD19/22", Status.FAIL),
        ("CD19 / 22", Status.FAIL),
        ("CD19CD22", Status.FAIL),
        ("CD19/20/22", Status.FAIL),
        ("CD19", Status.PASS),
        ("CD220", Status.PASS),
        ("CD19/20", Status.PASS),
        ("CD19 22", Status.PASS),  # no slash: not the shorthand
        ("day 1/22", Status.PASS),  # a number after a number is not a marker
    ],
)
def test_mentions_finds_a_whole_word_in_any_case(target, status):
    rules = rule_set(criterion(MENTIONS, "E1"))
    body = f"therapies: [{{type: car-t, target: '{target}'}}]\n"
    assert run(rules, body)["E1"].status is status


def test_mentions_takes_a_list_of_words_and_phrases():
    check = "{exists: therapies, where: {field: drug, mentions: [inotuzumab ozogamicin, besponsa]}}"
    rules = rule_set(criterion(check, "E1"))
    assert (
        run(rules, "therapies: [{type: other, drug: Ozogamicin inotuzumab}]\n")["E1"].status
        is Status.FAIL
    )
    assert (
        run(rules, "therapies: [{type: other, drug: inotuzumab}]\n")["E1"].status is Status.PASS
    )  # half a phrase is not the phrase
    assert run(rules, "therapies: [{type: other, drug: BESPONSA}]\n")["E1"].status is Status.FAIL


def test_mentions_of_an_unrecorded_text_is_unknown():
    rules = rule_set(criterion(MENTIONS, "E1"))
    result = run(rules, "therapies: [{type: car-t}]\n")["E1"]
    assert result.status is Status.UNKNOWN
    assert result.missing == ("therapies[0].target",)


@pytest.mark.parametrize(
    ("check", "words"),
    [
        ("{field: ecog, mentions: CD22}", ["mentions", "free text"]),
        ("{exists: therapies, where: {field: type, mentions: tki}}", ["free text", "is or in"]),
        ("{exists: therapies, where: {field: target, mentions: []}}", ["word"]),
        ("{exists: therapies, where: {field: target, mentions: ' - '}}", ["word"]),
    ],
)
def test_mentions_is_refused_where_it_cannot_mean_anything(check, words):
    d = refused(criterion(check))
    text = f"{d.message} {d.hint}"
    assert all(w in text for w in words), text


DATE_ORDER = "{exists: therapies, where: {field: date, lt: diagnosis.markers.CD22.date}}"


@pytest.mark.parametrize(
    ("therapy", "marker", "status"),
    [
        ("2026-01-01", "2026-02-01", Status.FAIL),  # the therapy came first
        ("2026-02-01", "2026-02-01", Status.PASS),  # the same day is not before
        ("2026-03-01", "2026-02-01", Status.PASS),
    ],
)
def test_a_date_in_a_list_item_is_compared_with_a_patient_date(therapy, marker, status):
    rules = rule_set(criterion(DATE_ORDER, "E1"))
    body = (
        f"diagnosis: {{markers: {{CD22: {{result: positive, date: {marker}}}}}}}\n"
        f"therapies: [{{type: other, date: {therapy}}}]\n"
    )
    result = run(rules, body)["E1"]
    assert result.status is status
    if status is Status.FAIL:
        assert f"is before diagnosis.markers.CD22.date {marker}" in result.reason


def test_a_date_comparison_names_both_dates_when_one_is_missing():
    rules = rule_set(criterion(DATE_ORDER, "E1"))
    result = run(rules, "therapies: [{type: other, date: 2026-01-01}]\n")["E1"]
    assert result.status is Status.UNKNOWN
    assert result.missing == ("diagnosis.markers.CD22.date",)


def test_a_date_comparison_is_an_input_of_its_criterion():
    # Reuse of results keys on a criterion's inputs: the patient date read from inside a
    # list item must be one of them, or two patients differing only there would share one.
    from screener.screening._reuse import inputs

    rules = rule_set(criterion(DATE_ORDER, "E1"))
    fields, _ = inputs([rules.criteria[0].check])
    assert fields == ("therapies", "diagnosis.markers.CD22.date")


@pytest.mark.parametrize(
    ("check", "words"),
    [
        ("{exists: therapies, where: {field: date, lt: 2026-01-01}}", ["date field"]),
        ("{exists: therapies, where: {field: date, lt: ecog}}", ["date field"]),
        (
            "{exists: therapies, where: {field: date, lt: diagnosis.markers.CD22.dat}}",
            ["unknown field"],
        ),
    ],
)
def test_a_date_is_compared_only_with_another_date_field(check, words):
    d = refused(criterion(check))
    assert all(w in d.message for w in words), d.message


UNRECORDED = (
    "{exists: medications, where: {all: [{field: class, is: corticosteroid}, "
    "{not: {field: ongoing, is: false, if_missing: false}}]}}"
)


@pytest.mark.parametrize(
    ("medication", "status"),
    [
        ("{name: prednisone, class: corticosteroid, ongoing: true}", Status.FAIL),
        ("{name: prednisone, class: corticosteroid, ongoing: false}", Status.PASS),
        ("{name: prednisone, class: corticosteroid}", Status.FAIL),  # not marked stopped
    ],
)
def test_if_missing_gives_an_items_unrecorded_attribute_a_stated_value(medication, status):
    rules = rule_set(criterion(UNRECORDED, "E1"))
    result = run(rules, f"medications: [{medication}]\n")["E1"]
    assert result.status is status
    if "ongoing" not in medication:
        assert "taken as not met" in result.reason


def test_if_missing_leaves_the_other_facts_of_the_item_unknown():
    rules = rule_set(criterion(UNRECORDED, "E1"))
    assert run(rules, "medications: [{name: prednisone}]\n")["E1"].status is Status.UNKNOWN


@pytest.mark.parametrize(
    ("check", "words"),
    [
        (
            "{exists: medications, where: {field: ongoing, is: true, if_missing: maybe}}",
            ["true or false"],
        ),
        (
            "{exists: medications, where: {field: ongoing, is: true, if_missing: 0}}",
            ["true or false"],
        ),
        (
            "{field: pregnancy_test.result, is: negative, if_missing: true, "
            "fresh: {within: 3 days, before: screening}}",
            ["fresh"],
        ),
    ],
)
def test_if_missing_is_refused_for_non_booleans_and_with_fresh(check, words):
    d = refused(criterion(check))
    assert all(w in d.message for w in words), d.message


def test_if_missing_on_a_patient_fact_reads_its_absence_and_says_so():
    # An exception only a positive statement invokes: unrecorded, it does not apply.
    check = (
        "{any: [{field: lvef, ge: 50 %}, {all: [{field: organ_dysfunction_disease_related,"
        " is: true, if_missing: false}, {review: disease-related?}]}]}"
    )
    rules = rule_set(criterion(check))
    failed = run(rules, "lvef: 40 %\n")["I1"]
    assert failed.status is Status.FAIL and "taken as not met" in failed.reason
    assert (
        run(rules, "lvef: 40 %\norgan_dysfunction_disease_related: true\n")["I1"].status
        is Status.REVIEW
    )
    assert run(rules, "lvef: 55 %\n")["I1"].status is Status.PASS


@pytest.mark.parametrize(
    "field, hint",
    [
        ("platelets", "did you mean 'labs.platelets'?"),  # the same field under labs
        ("labs.creatinin", "did you mean 'labs.creatinine'?"),
        # an abbreviation one letter from another lab is not that lab
        ("labs.plt", "declared in a vocabulary.yaml beside the rule sets"),
        ("labs.ldh", "declared in a vocabulary.yaml beside the rule sets"),
    ],
)
def test_an_unknown_field_is_corrected_or_told_how_to_declare_it(field, hint):
    d = refused(criterion(f"{{field: {field}, ge: 1}}"))
    assert f"unknown field '{field}'" in d.message
    assert hint in (d.hint or ""), d.hint
