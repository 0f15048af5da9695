"""Labs as lists of dated results, the conditions that read them (worst, occasions, change)
and the trial's own dates as anchors (lymphodepletion, infusion, enrolment, treatment start).

Each status below is worked out by hand from the dates and values in the test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screener import parse_patient, parse_rule_set, screen
from screener.core._errors import PatientError, RuleSetError
from screener.screening._reuse import ResultCache
from screener.testing import patient_from, patients

RULE = """\
trial: NCT09999999
product: X
title: t
sources: [https://example.org]
criteria:
  - id: I1
    kind: inclusion
    label: L
    text: T
    check: CHECK
"""

HEAD = "id: p\nscreening_date: 2026-03-02\n"
# Platelets 45, 60 and 65 ×10⁹/L on 18, 24 and 28 February (written out of order on
# purpose: the reader orders them by date).
PLATELETS = (
    "labs:\n  platelets:\n"
    "    - {value: 60 x10^9/L, date: 2026-02-24}\n"
    "    - {value: 45 x10^9/L, date: 2026-02-18}\n"
    "    - {value: 65 x10^9/L, date: 2026-02-28}\n"
)


def _result(check: str, patient: str = HEAD + PLATELETS):
    rule_set = parse_rule_set(RULE.replace("CHECK", check), "NCT09999999.yaml")
    return screen(parse_patient(patient, "p.yaml"), rule_set).criteria[0]


def _status(check: str, patient: str = HEAD + PLATELETS) -> str:
    return _result(check, patient).status.value


def _rule_error(check: str) -> str:
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(RULE.replace("CHECK", check), "NCT09999999.yaml")
    return caught.value.diagnostic.message


# ------------------------------------------------------------------------ reading a series


def test_the_latest_result_of_a_series_decides_a_plain_condition():
    result = _result("{field: labs.platelets, ge: 62 x10^9/L}")
    assert result.status.value == "pass"  # 65 on 28 February, not 45 or 60
    assert "65 x10^9/L on 2026-02-28, the latest of 3 results" in result.reason
    assert _status("{field: labs.platelets, ge: 66 x10^9/L}") == "fail"


def test_results_of_one_day_keep_the_order_the_file_gives():
    text = HEAD + (
        "labs:\n  platelets:\n"
        "    - {value: 40 x10^9/L, date: 2026-02-28}\n"
        "    - {value: 70 x10^9/L, date: 2026-02-28}\n"
    )
    assert _status("{field: labs.platelets, ge: 50 x10^9/L}", text) == "pass"


def test_a_series_of_several_results_needs_every_date():
    text = HEAD + "labs:\n  platelets: [{value: 40 x10^9/L, date: 2026-02-28}, 70 x10^9/L]\n"
    with pytest.raises(PatientError) as caught:
        parse_patient(text, "p.yaml")
    (d,) = caught.value.diagnostics
    assert "needs its date, to tell which is the latest" in d.message
    assert d.position is not None and (d.position.line, d.position.column) == (4, 54)


def test_an_empty_series_records_no_result():
    result = _result("{field: labs.platelets, ge: 50 x10^9/L}", HEAD + "labs: {platelets: []}\n")
    assert result.status.value == "unknown" and result.missing == ("labs.platelets",)


def test_each_result_of_a_series_is_checked_as_a_single_one_is():
    # 30 mmol/L of bilirubin is not a possible result, in a series as alone.
    text = HEAD + "labs:\n  total_bilirubin: [{value: 30 mmol/L, date: 2026-02-20}]\n"
    with pytest.raises(PatientError) as caught:
        parse_patient(text, "p.yaml")
    assert "did you mean µmol/L?" in (caught.value.diagnostics[0].hint or "")


# ------------------------------------------------------------------------------- worst


def test_the_worst_result_in_the_window_decides():
    # 14 days before 2 March: 16 February on, so 45 is in and fails ≥ 50.
    result = _result(
        "{field: labs.platelets, ge: 50 x10^9/L, worst: {within: 14 days, before: screening}}"
    )
    assert result.status.value == "fail"
    assert "45 x10^9/L on 2026-02-18" in result.reason
    assert "the worst of 3 results within 14 days before screening" in result.reason
    # 7 days: 23 February on, so 60 and 65, the worst 60.
    seven = _result(
        "{field: labs.platelets, ge: 50 x10^9/L, worst: {within: 7 days, before: screening}}"
    )
    assert seven.status.value == "pass"
    assert "60 x10^9/L on 2026-02-24" in seven.reason and "worst of 2 results" in seven.reason


def test_worst_of_an_upper_limit_is_the_highest_with_each_results_own_uln():
    text = HEAD + (
        "labs:\n  total_bilirubin:\n"
        "    - {value: 1.9 mg/dL, uln: 1.0 mg/dL, date: 2026-02-25}\n"  # 1.9 × ULN
        "    - {value: 2.0 mg/dL, uln: 1.2 mg/dL, date: 2026-02-27}\n"  # 1.67 × ULN
        "    - {value: 1.1 mg/dL, uln: 1.2 mg/dL, date: 2026-03-01}\n"
    )
    check = (
        "{field: labs.total_bilirubin, le: LIMIT x ULN, worst: {within: 7 days, before: screening}}"
    )
    failed = _result(check.replace("LIMIT", "1.8"), text)
    assert failed.status.value == "fail" and "1.9 mg/dL on 2026-02-25" in failed.reason
    assert _status(check.replace("LIMIT", "1.9"), text) == "pass"


def test_worst_without_a_result_in_the_window_asks_for_a_current_one():
    result = _result(
        "{field: labs.platelets, ge: 50 x10^9/L, worst: {within: 2 days, before: screening}}",
        HEAD + "labs: {platelets: [{value: 80 x10^9/L, date: 2026-02-20}]}\n",
    )
    assert result.status.value == "unknown" and result.missing == ("labs.platelets",)
    assert "no result within 2 days before screening" in result.reason


def test_worst_of_a_single_undated_result_asks_for_its_date():
    result = _result(
        "{field: labs.platelets, ge: 50 x10^9/L, worst: {within: 7 days, before: screening}}",
        HEAD + "labs: {platelets: 80 x10^9/L}\n",
    )
    assert result.status.value == "unknown" and result.missing == ("labs.platelets.date",)


# --------------------------------------------------------------------------- occasions


@pytest.mark.parametrize(
    "limit, times, consecutive, status",
    [
        ("50", 2, "false", "pass"),  # 60 and 65
        ("50", 3, "false", "unknown"),  # two meet it, the latest does: one more may
        ("50", 3, "true", "unknown"),
        ("62", 2, "false", "unknown"),  # only 65 meets it, and it is the latest
        ("70", 2, "false", "fail"),  # the latest, 65, does not
        ("40", 3, "true", "pass"),
    ],
)
def test_occasions_counts_the_results_in_the_window(limit, times, consecutive, status):
    check = (
        f"{{field: labs.platelets, ge: {limit} x10^9/L, occasions: "
        f"{{times: {times}, within: 14 days, before: screening, consecutive: {consecutive}}}}}"
    )
    assert _status(check) == status


def test_consecutive_occasions_need_the_latest_results_in_a_row():
    text = HEAD + (
        "labs:\n  platelets:\n"
        "    - {value: 60 x10^9/L, date: 2026-02-20}\n"
        "    - {value: 40 x10^9/L, date: 2026-02-24}\n"
        "    - {value: 65 x10^9/L, date: 2026-02-28}\n"
    )
    base = "{field: labs.platelets, ge: 50 x10^9/L, occasions: {times: 2, within: 14 days, before: screening"
    assert _status(base + "}}", text) == "pass"  # 60 and 65, not in a row
    result = _result(base + ", consecutive: true}}", text)
    assert result.status.value == "unknown" and result.missing == ("labs.platelets",)
    assert "a further result is needed" in result.reason


# ------------------------------------------------------------------------------ change

CREATININE = HEAD + (
    "labs:\n  creatinine:\n"
    "    - {value: 0.8 mg/dL, date: 2025-12-01}\n"
    "    - {value: 88.4 umol/L, date: 2026-02-10}\n"  # 1.0 mg/dL
    "    - {value: 1.3 mg/dL, date: 2026-02-27}\n"
)


@pytest.mark.parametrize(
    "check, status",
    [
        # since the first: 0.8 -> 1.3, +0.5 mg/dL (+44 µmol/L), +62.5 %
        ("ge: 0.5 mg/dL, change: {since: first}", "pass"),
        ("ge: 0.51 mg/dL, change: {since: first}", "fail"),
        ("ge: 44 umol/L, change: {since: first}", "pass"),
        ("ge: 62.5 %, change: {since: first, relative: true}", "pass"),
        ("ge: 63 %, change: {since: first, relative: true}", "fail"),
        # a fall of at least 0.2 mg/dL did not happen
        ("le: -0.2 mg/dL, change: {since: first}", "fail"),
        # since screening: the baseline is the last result on or before 2 March, the
        # latest itself, so there is no later result to measure a change by
        ("ge: 0.3 mg/dL, change: {since: screening}", "unknown"),
    ],
)
def test_change_from_a_baseline(check, status):
    assert _status("{field: labs.creatinine, " + check + "}", CREATININE) == status


def test_change_since_an_anchor_takes_the_last_result_on_or_before_it():
    # Treatment started on 15 February: the baseline is 1.0 mg/dL of 10 February.
    text = CREATININE.replace(HEAD, HEAD + "treatment_start_date: 2026-02-15\n")
    result = _result(
        "{field: labs.creatinine, ge: 0.3 mg/dL, change: {since: treatment_start}}", text
    )
    assert result.status.value == "pass"
    assert "88.4 umol/L on 2026-02-10 → 1.3 mg/dL on 2026-02-27" in result.reason
    assert (
        _status("{field: labs.creatinine, ge: 0.31 mg/dL, change: {since: treatment_start}}", text)
        == "fail"
    )
    # Without the date, it asks for it.
    unknown = _result(
        "{field: labs.creatinine, ge: 0.3 mg/dL, change: {since: treatment_start}}", CREATININE
    )
    assert unknown.status.value == "unknown" and unknown.missing == ("treatment_start_date",)


def test_change_of_a_single_result_asks_for_a_later_one():
    result = _result(
        "{field: labs.creatinine, ge: 0.3 mg/dL, change: {since: first}}",
        HEAD + "labs: {creatinine: {value: 1.3 mg/dL, date: 2026-02-27}}\n",
    )
    assert result.status.value == "unknown" and result.missing == ("labs.creatinine",)
    assert "needs a later result" in result.reason


# ----------------------------------------------------------------------------- anchors

WINDOWED = (
    "{exists: therapies, where: {all: [{field: type, is: chemotherapy}, "
    "{field: date, within: 14 days, before: lymphodepletion}]}}"
)


@pytest.mark.parametrize(
    "dates, therapy, status, missing",
    [
        ("lymphodepletion_date: 2026-03-20\n", "2026-03-10", "pass", ()),
        ("lymphodepletion_date: 2026-03-20\n", "2026-03-01", "fail", ()),
        # without the date: a therapy more than 14 days before screening is before it too
        ("", "2026-02-01", "fail", ()),
        ("", "2026-02-25", "unknown", ("lymphodepletion_date",)),
    ],
)
def test_a_span_before_lymphodepletion(dates, therapy, status, missing):
    text = HEAD + dates + f"therapies: [{{type: chemotherapy, date: {therapy}}}]\n"
    result = _result(WINDOWED, text)
    assert (result.status.value, result.missing) == (status, missing)


@pytest.mark.parametrize(
    "anchor, field", [("infusion", "infusion_date"), ("enrolment", "enrolment_date")]
)
def test_every_built_in_anchor_is_its_date_field(anchor, field):
    check = (
        f"{{field: labs.platelets, ge: 50 x10^9/L, worst: {{within: 3 days, before: {anchor}}}}}"
    )
    assert _status(check, HEAD + f"{field}: 2026-02-26\n" + PLATELETS) == "pass"  # 60 only
    assert _status(check, HEAD + f"{field}: 2026-02-19\n" + PLATELETS) == "fail"  # 45
    assert _result(check).missing == (field,)


def test_results_are_not_reused_across_patients_whose_anchor_differs():
    rule_set = parse_rule_set(RULE.replace("CHECK", WINDOWED), "NCT09999999.yaml")
    cache = ResultCache()
    statuses = []
    for ld in ("2026-03-20", "2026-04-30"):
        text = (
            HEAD
            + f"lymphodepletion_date: {ld}\ntherapies: [{{type: chemotherapy, date: 2026-03-10}}]\n"
        )
        patient = parse_patient(text, "p.yaml")
        statuses.append(screen(patient, rule_set, cache=cache).criteria[0].status.value)
    assert statuses == ["pass", "fail"]


def test_results_are_not_reused_across_series_that_differ_before_the_latest():
    rule_set = parse_rule_set(
        RULE.replace(
            "CHECK",
            "{field: labs.platelets, ge: 50 x10^9/L, worst: {within: 14 days, before: screening}}",
        ),
        "NCT09999999.yaml",
    )
    cache = ResultCache()
    found = []
    for first in ("45", "55"):
        text = HEAD + PLATELETS.replace("45 x10^9/L", f"{first} x10^9/L")
        found.append(
            screen(parse_patient(text, "p.yaml"), rule_set, cache=cache).criteria[0].status.value
        )
    assert found == ["fail", "pass"]


# ------------------------------------------------------------------- what the loader refuses


@pytest.mark.parametrize(
    "check, message",
    [
        ("{field: ecog, le: 1, worst: {within: 7 days, before: screening}}", "not a lab"),
        (
            "{field: labs.platelets, eq: 50 x10^9/L, worst: {within: 7 days, before: screening}}",
            "worst goes with lt, le, gt or ge",
        ),
        (
            "{field: labs.platelets, ge: 50 x10^9/L, worst: {within: 7 days, before: screening},"
            " fresh: {within: 7 days, before: screening}}",
            "does not go with fresh",
        ),
        (
            "{field: labs.platelets, ge: 50 x10^9/L, occasions: {times: 1, within: 7 days, "
            "before: screening}}",
            "2 or more",
        ),
        ("{field: labs.creatinine, ge: 50, change: {since: first, relative: true}}", "per cent"),
        (
            "{field: labs.creatinine, ge: 2 x ULN, change: {since: first}}",
            "not a multiple of the ULN",
        ),
        (
            "{field: labs.creatinine, ge: 0.3 mg/dL, change: {since: last}}",
            "since is first or one of",
        ),
        (
            "{field: labs.platelets, ge: 50 x10^9/L, if_missing: true, worst: {within: 7 days, "
            "before: screening}}",
            "if_missing does not go with worst",
        ),
    ],
)
def test_the_loader_refuses_series_conditions_that_cannot_be_meant(check, message):
    assert message in _rule_error(check)


def test_a_misspelt_anchor_is_corrected():
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(
            RULE.replace(
                "CHECK", "{field: pregnancy_test.date, within: 7 days, before: enrollment}"
            ),
            "NCT09999999.yaml",
        )
    assert caught.value.diagnostic.hint == "did you mean 'enrolment'?"


# ---------------------------------------------------------- anchors a vocabulary declares

EXTENSION_RULE = RULE.replace("NCT09999999", "NCT09999998").replace(
    "CHECK",
    "{field: labs.platelets, ge: 50 x10^9/L, worst: {within: 3 days, before: reinfusion}}",
)


def _folder(tmp_path: Path, vocabulary: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "NCT09999998.yaml").write_text(EXTENSION_RULE, encoding="utf-8")
    (folder / "vocabulary.yaml").write_text(vocabulary, encoding="utf-8")
    return folder


def test_a_vocabulary_file_declares_an_anchor(tmp_path: Path):
    from screener.criteria._catalog import load_rule_sets, vocabulary_of
    from screener.screening._engine import screen_patient

    folder = _folder(
        tmp_path,
        "fields:\n  reinfusion_date: {kind: date, label: reinfusion date, anchor: reinfusion}\n",
    )
    sets = load_rule_sets(folder)
    vocabulary = vocabulary_of(sets)
    text = HEAD + "reinfusion_date: 2026-02-26\n" + PLATELETS
    patient = parse_patient(text, "p.yaml", vocabulary=vocabulary)
    (trial,) = screen_patient(patient, sets).trials
    assert trial.criteria[0].status.value == "pass"


@pytest.mark.parametrize(
    "vocabulary, message",
    [
        (
            "fields:\n  reinfusion_date: {kind: date, label: r, anchor: apheresis}\n",
            "anchor 'apheresis' is already apheresis_date's",
        ),
        (
            "fields:\n  reinfusion_date: {kind: date, label: r, anchor: screening}\n",
            "an anchor is a name",
        ),
        (
            "fields:\n  labs.reinfusion_date: {kind: date, label: r, anchor: reinfusion}\n",
            "at the top",
        ),
    ],
)
def test_an_anchor_that_cannot_be_meant_is_an_error(tmp_path: Path, vocabulary, message):
    from screener.criteria._catalog import load_rule_sets

    with pytest.raises(RuleSetError) as caught:
        load_rule_sets(_folder(tmp_path, vocabulary))
    assert message in caught.value.diagnostic.message
    assert caught.value.diagnostic.file.endswith("vocabulary.yaml")


# ------------------------------------------------------------- what a series does not hold


def test_a_value_computed_from_the_latest_inputs_has_no_series():
    message = _rule_error(
        "{field: labs.egfr, ge: 60 mL/min/1.73m2, worst: {within: 7 days, before: screening}}"
    )
    assert "computed from the latest of its inputs" in message


def test_a_stand_in_is_read_as_a_series_only_from_measured_results():
    check = "{field: labs.anc, ge: 1.0 x10^9/L, worst: {within: 14 days, before: screening}}"
    measured = HEAD + (
        "labs:\n  anc:\n"
        "    - {value: 0.4 x10^9/L, date: 2026-02-20}\n"
        "    - {value: 1.5 x10^9/L, date: 2026-02-28}\n"
    )
    assert _status(check, measured) == "fail"  # 0.4 in the window
    # From the differential, the count is made of the latest white count only: not a
    # series, so it cannot show that every count in the window met the limit.
    derived = HEAD + (
        "labs:\n"
        "  wbc: [{value: 1.0 x10^9/L, date: 2026-02-20}, {value: 3.0 x10^9/L, date: 2026-02-28}]\n"
        "  neutrophils_percent: {value: 50 %, date: 2026-02-28}\n"
    )
    result = _result(check, derived)
    assert result.status.value == "unknown" and result.missing == ("labs.anc",)
    assert "no measured result recorded" in result.reason


def test_max_age_leaves_out_earlier_results_older_than_it():
    from screener.core._units import DURATION, parse_measure
    from screener.screening._engine import screen_patient

    rule_set = parse_rule_set(
        RULE.replace(
            "CHECK",
            "{field: labs.platelets, ge: 50 x10^9/L, worst: {within: 30 days, before: screening}}",
        ),
        "NCT09999999.yaml",
    )
    patient = parse_patient(HEAD + PLATELETS, "p.yaml")
    # 45 on 18 February fails it; --max-age 10 days leaves only 24 and 28 February.
    (plain,) = screen_patient(patient, [rule_set]).trials
    (recent,) = screen_patient(
        patient, [rule_set], max_age=parse_measure("10 days", DURATION)
    ).trials
    assert (plain.criteria[0].status.value, recent.criteria[0].status.value) == ("fail", "pass")


def test_an_occasion_is_a_day():
    text = HEAD + (
        "labs:\n  platelets:\n"
        "    - {value: 60 x10^9/L, date: 2026-02-28}\n"
        "    - {value: 65 x10^9/L, date: 2026-02-28}\n"
    )
    check = "{field: labs.platelets, ge: 50 x10^9/L, occasions: {times: 2, within: 14 days, before: screening}}"
    result = _result(check, text)
    assert result.status.value == "unknown" and "1 of the 2 days needed" in result.reason


def test_a_result_after_screening_is_said_to_be_after_it():
    text = HEAD + (
        "labs:\n  platelets:\n"
        "    - {value: 60 x10^9/L, date: 2026-02-28}\n"
        "    - {value: 45 x10^9/L, date: 2026-03-04}\n"
    )
    result = _result(
        "{field: labs.platelets, ge: 50 x10^9/L, worst: {within: 7 days, before: screening}}", text
    )
    assert result.status.value == "fail"
    assert "within 7 days before screening (or after it)" in result.reason


def test_an_earlier_result_without_a_uln_is_named_by_its_date():
    # Platelets have no default ULN: the earlier result's multiple cannot be had.
    text = HEAD + (
        "labs:\n  platelets:\n"
        "    - {value: 300 x10^9/L, date: 2026-02-25}\n"
        "    - {value: 310 x10^9/L, uln: 400 x10^9/L, date: 2026-03-01}\n"
    )
    result = _result(
        "{field: labs.platelets, le: 1 x ULN, worst: {within: 7 days, before: screening}}", text
    )
    assert result.status.value == "unknown"
    assert "the result of 2026-02-25: platelets has no ULN" in result.reason


def test_first_and_screening_are_not_anchor_names(tmp_path: Path):
    from screener.criteria._catalog import load_rule_sets

    with pytest.raises(RuleSetError) as caught:
        load_rule_sets(
            _folder(tmp_path, "fields:\n  reinfusion_date: {kind: date, label: r, anchor: first}\n")
        )
    assert "an anchor is a name" in caught.value.diagnostic.message


# ------------------------------------------------------------ result reuse over the series

SERIES_RULES = RULE.replace(
    "    check: CHECK\n",
    "    check:\n      all:\n"
    "        - {field: labs.creatinine, le: 1.5 x ULN, worst: {within: 30 days, before: screening}}\n"
    "        - {field: labs.ast, le: 3 x ULN, occasions: {times: 2, within: 60 days, before: lymphodepletion}}\n"
    "        - {field: labs.alt, lt: 50 %, change: {since: first, relative: true}}\n"
    "        - {field: labs.total_bilirubin, le: 0.5 mg/dL, change: {since: treatment_start}}\n"
    "        - {field: labs.creatinine, le: 2 x ULN, fresh: {within: 14 days, before: infusion}}\n",
)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            patients(missing=0.1),
            st.dictionaries(
                st.sampled_from(["lymphodepletion_date", "treatment_start_date", "infusion_date"]),
                st.dates(dt.date(2023, 6, 1), dt.date(2028, 6, 1)),
            ),
        ),
        min_size=2,
        max_size=5,
    )
)
def test_reusing_series_results_changes_nothing(records):
    from screener.screening._engine import facts_of, screen_patient
    from screener.screening._reuse import inputs as tree_inputs

    rule_set = parse_rule_set(SERIES_RULES, "NCT09999999.yaml")
    loaded = []
    for record, dates in records:
        # Anchors come on or after screening, as the vocabulary says of them.
        on = record["screening_date"]
        loaded.append(patient_from({**record, **{k: max(d, on) for k, d in dates.items()}}))
    cache = ResultCache()
    reused = [screen_patient(p, [rule_set], cache=cache) for p in loaded]
    assert reused == [screen_patient(p, [rule_set]) for p in loaded]
    (criterion,) = rule_set.criteria
    fields, _ = tree_inputs([criterion.check])
    for patient in loaded:
        scope = facts_of(patient)
        scope.trace = set()
        criterion.check.evaluate(scope)
        assert scope.trace - {"(as of)"} <= set(fields)
