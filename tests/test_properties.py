"""Properties the screener relies on, checked on generated patients (screener.testing._harness).

* unit invariance: a record written in other units gets the same statuses, for labs and
  life expectancies steered close to the rules' thresholds, where a wrong conversion would
  show, but not within 0.5 % of any threshold a rule compares a quantity with (skipped);
* monotonicity: a value made worse (creatinine up, LVEF down, ...) never makes any
  criterion or part better (fail < unknown/review < pass);
* Kleene's laws on real rule nodes: De Morgan, identities, double negation, at_least,
  unknown propagation from a missing field;
* determinism: the same record gives the same JSON bytes, whatever its key order, through
  the library and the command line;
* loader round trip: YAML style (flow, sorted keys, escaped unicode) and JSON do not change
  the loaded record.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import screener
from screener.cli import app
from screener.core import _units as units
from screener.core._model import LabValue
from screener.core._units import Measure
from screener.criteria._conditions import Compare, Count, Every, Exists
from screener.reading._patient import age_on
from screener.reports import _report as report
from screener.testing import (
    FAMILIES,
    in_other_units,
    load_patient,
    patient_from,
    patients,
    screen,
    statuses,
    to_canonical,
    write,
)
from screener.testing._cases import merge

HERE = Path(__file__).parent
BASELINE = HERE / "acceptance" / "patients" / "baseline.yaml"
RULE_SETS = screener.load_rule_sets()
MARGIN = 0.005  # relative distance from a threshold within which unit rounding may flip it

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def all_statuses(patient: screener.Patient) -> dict[str, dict[str, str]]:
    return statuses(screener.screen_patient(patient, RULE_SETS))


RANK = {"fail": 0, "unknown": 1, "review": 1, "pass": 2}


# ------------------------------------------------------------------- thresholds in rules


def _compares(node: Any) -> list[Compare]:
    """The Compare leaves read on the patient itself (not inside a list's items)."""
    if isinstance(node, Compare):
        return [node]
    if isinstance(node, (Exists, Every, Count)):
        return []
    return [c for child in node.children() for c in _compares(child)]


THRESHOLDS: list[Compare] = [
    c
    for rs in RULE_SETS
    for cr in rs.criteria
    for root in ([cr.check] if cr.check is not None else [p.check for p in cr.parts])
    for c in _compares(root)
]


def _lookup(patient: screener.Patient, field: str) -> Any:
    node: Any = patient.data
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _clearance(patient: screener.Patient) -> float | None:
    """The measured clearance, else the Cockcroft–Gault estimate (mL/min), as the engine says."""
    labs = patient.data.get("labs", {})
    if "creatinine_clearance" in labs:
        return units.convert(labs["creatinine_clearance"].value, "ml/min")
    birth, stated = patient.data.get("birth_date"), patient.data.get("age")
    weight, sex, creat = patient.data.get("weight"), patient.data.get("sex"), labs.get("creatinine")
    if weight is None or sex is None or creat is None or (birth is None and stated is None):
        return None
    years = age_on(birth, patient.as_of) if birth is not None else units.convert(stated, "years")
    scr = units.convert(creat.value, "mg/dl", units.CREATININE)
    return max(
        (140 - years)
        * units.convert(weight, "kg")
        / (72 * scr)
        * (0.85 if sex == "female" else 1.0),
        0.0,
    )


def distances(patient: screener.Patient) -> list[tuple[str, float]]:
    """Each compared quantity's relative distance from each threshold a rule compares it with."""
    found = []
    for c in THRESHOLDS:
        if c.field == "labs.creatinine_clearance":
            value: Any = _clearance(patient)
            if value is not None:
                found.append((c.field, abs(value / float(c.threshold.amount.magnitude) - 1)))
            continue
        fact = _lookup(patient, c.field)
        lab = fact if isinstance(fact, LabValue) else None
        value = lab.value if lab else fact
        if not isinstance(value, Measure):
            continue  # integers, INR: written one way only
        if c.threshold.uln_multiple:
            uln = (lab.uln if lab else None) or c.default_uln
            if not isinstance(uln, Measure):
                continue  # no ULN: the leaf is unknown in every unit
            ratio = units.convert(value, uln.unit, c.analyte) / uln.magnitude
            found.append((c.field, abs(ratio / float(c.threshold.amount) - 1)))
        else:
            target = c.threshold.amount
            amount = units.convert(value, target.unit, c.analyte)
            found.append((c.field, abs(amount / target.magnitude - 1)))
    return found


def near_threshold(patient: screener.Patient) -> bool:
    return any(d < MARGIN for _, d in distances(patient))


def test_the_rules_compare_quantities_the_filter_knows():
    fields = {c.field for c in THRESHOLDS}
    assert {
        "labs.creatinine",
        "labs.total_bilirubin",
        "labs.ast",
        "labs.alt",
        "lvef",
        "spo2",
        "life_expectancy",
        "labs.creatinine_clearance",
    } <= fields


# ------------------------------------------------------------------------ helpers' tests


def test_patient_from_merges_overrides_and_deletes_with_none():
    patient = patient_from(BASELINE, {"lvef": None}, labs={"creatinine": "145 umol/L"})
    assert "lvef" not in patient.data
    assert patient.data["labs"]["creatinine"].value.written == "145 umol/L"
    assert patient.data["labs"]["ast"].value.written == "30 U/L"  # merged, not replaced
    found = statuses(screen(patient, "Hema-NeoTIL01"))
    assert found["I7"] == "unknown" and found["I9.c"] == "fail" and found["I9"] == "fail"
    assert statuses(screen(load_patient(BASELINE), "nct06559644"))["I9.c"] == "pass"


def test_screen_names_an_unknown_trial():
    with pytest.raises(ValueError, match="no trial"):
        screen(load_patient(BASELINE), "NCT00000000")


@pytest.mark.slow
@PROPERTY
@given(patients())
def test_generated_patients_are_valid(record: dict):
    patient = patient_from(record)  # raises PatientError if not
    assert not patient.warnings, [d.message for d in patient.warnings]


@pytest.mark.slow
@PROPERTY
@given(patients(), st.data())
def test_in_other_units_keeps_every_value(record: dict, data: st.DataObject):
    other = in_other_units(record, data.draw)
    pairs = [
        (k, f, record.get(k), other.get(k))
        for k, f in (("weight", "mass"), ("life_expectancy", "duration"), ("lvef", "percent"))
    ]
    for name, family in (
        ("creatinine", "creatinine"),
        ("total_bilirubin", "bilirubin"),
        ("ast", "enzyme"),
    ):
        a, b = record.get("labs", {}).get(name), other.get("labs", {}).get(name)
        if isinstance(a, list):  # a series: every result, in its own unit
            pairs += [
                (f"{name}[{i}].{k}", family, x.get(k), y.get(k))
                for i, (x, y) in enumerate(zip(a, b, strict=True))
                for k in ("value", "uln")
            ]
        elif isinstance(a, dict):
            pairs += [(name + "." + k, family, a.get(k), b.get(k)) for k in ("value", "uln")]
        else:
            pairs.append((name, family, a, b))
    for name, family, a, b in pairs:
        if a is None:
            assert b is None
            continue
        x, y = to_canonical(family, a), to_canonical(family, b)
        assert y == pytest.approx(x, rel=1e-7), (name, a, b)


# ---------------------------------------------------------------------- unit invariance


# Values the rules compare, steered close to (not within MARGIN of) their thresholds, where a
# wrong conversion factor would flip a status: lab -> (family, default ULN, absolute limits in
# the family's first unit, ULN multiples); life expectancy in days (12 weeks, 3 months).
STEER = {
    "creatinine": ("creatinine", 1.2, [1.6], [1.5]),
    "total_bilirubin": ("bilirubin", 1.2, [], [2, 3]),
    "direct_bilirubin": ("bilirubin", 0.3, [], [1.5]),
    "ast": ("enzyme", 40, [], [3, 5]),
    "alt": ("enzyme", 40, [], [3, 5]),
}


def steer(record: dict, draw: Any) -> dict:
    """Move some of the record's compared values to within 0.6–15 % of a threshold (half of
    them within 2 %)."""
    record = merge(record, {})

    def off() -> float:
        sign = draw(st.sampled_from([-1, 1]))
        return sign * draw(st.one_of(st.floats(0.006, 0.02), st.floats(0.02, 0.15)))

    for name, (family, default_uln, limits, multiples) in STEER.items():
        if not draw(st.booleans()):
            continue
        lab = record.setdefault("labs", {}).get(name)
        if isinstance(lab, list):  # a series: steer its latest result, alone
            lab = sorted(lab, key=lambda r: r["date"])[-1]
        uln = (
            to_canonical(family, lab["uln"])
            if isinstance(lab, dict) and "uln" in lab
            else default_uln
        )
        target = draw(st.sampled_from(limits + [m * uln for m in multiples])) * (1 + off())
        unit = draw(st.sampled_from(list(FAMILIES[family])))
        value = write(family, target, unit)
        record["labs"][name] = {**lab, "value": value} if isinstance(lab, dict) else value
    if draw(st.booleans()):
        days = draw(st.sampled_from([84.0, 365.25 / 4])) * (1 + off())
        record["life_expectancy"] = write(
            "duration", days, draw(st.sampled_from(["days", "weeks", "months"]))
        )
    return record


@pytest.mark.slow
@PROPERTY
@given(patients(), st.data())
def test_units_do_not_change_any_status(record: dict, data: st.DataObject):
    record = steer(record, data.draw)
    original = patient_from(record)
    assume(not near_threshold(original))
    other = patient_from(in_other_units(record, data.draw))
    assert all_statuses(other) == all_statuses(original)


@pytest.mark.parametrize(
    "field, written, family, units_",
    [
        ("creatinine", "1.2 mg/dL", "creatinine", ["umol/L", "µmol/L", "μmol/L", "mmol/L", "mg/L"]),
        ("creatinine", "2.1 mg/dL", "creatinine", ["umol/L", "µmol/L", "mmol/L"]),
        ("total_bilirubin", "2.9 mg/dL", "bilirubin", ["umol/L", "µmol/L", "μmol/L", "mg/L"]),
        ("total_bilirubin", "4.1 mg/dL", "bilirubin", ["umol/L", "mmol/L"]),
    ],
)
def test_labs_in_every_spelling_of_the_other_unit(field, written, family, units_):
    base = statuses(screen(patient_from(BASELINE, labs={field: written}), "NCT04684147"))
    for unit in units_:
        other = write(family, to_canonical(family, written), unit)
        assert (
            statuses(screen(patient_from(BASELINE, labs={field: other}), "NCT04684147")) == base
        ), other


@pytest.mark.parametrize(
    "weeks, expected_i5, expected_e11",
    [(11, "fail", "fail"), (13, "fail", "fail"), (14, "pass", "pass"), (30, "pass", "pass")],
)
def test_life_expectancy_in_weeks_days_and_months(weeks, expected_i5, expected_e11):
    # CD22 CAR-T I5: > 3 months; HY004 E11: < 3 months excludes; 3 months = 13.04 weeks,
    # so 13 weeks is under 3 months for both.
    for written in (
        f"{weeks} weeks",
        f"{weeks * 7} days",
        f"{weeks * 7 / (365.25 / 12):.6f} months",
    ):
        patient = patient_from(BASELINE, life_expectancy=written)
        assert statuses(screen(patient, "NCT04546906"))["I5"] == expected_i5, written
        assert statuses(screen(patient, "NCT06009107"))["E11"] == expected_e11, written


# ------------------------------------------------------------------------- monotonicity

# field path, family (None: an integer), direction in which the value gets worse, valid range
WORSE = [
    ("labs.creatinine", "creatinine", +1),
    ("labs.total_bilirubin", "bilirubin", +1),
    ("labs.direct_bilirubin", "bilirubin", +1),
    ("labs.ast", "enzyme", +1),
    ("labs.alt", "enzyme", +1),
    ("ecog", None, +1),
    ("dyspnea_grade", None, +1),
    ("lvef", "percent", -1),
    ("spo2", "percent", -1),
    ("life_expectancy", "duration", -1),
    ("diagnosis.bone_marrow_blasts", "percent", -1),
    ("weight", "mass", -1),
]
INT_RANGE = {"ecog": (0, 4), "dyspnea_grade": (0, 5)}


def _scaled(written: str, factor: float) -> str:
    magnitude, _, unit = written.partition(" ")
    return f"{float(magnitude) * factor:.6g} {unit}"


def _nested(path: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def _get(record: dict, path: str) -> Any:
    node: Any = record
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@pytest.mark.slow
@PROPERTY
@given(patients(missing=0.05), st.sampled_from(WORSE), st.data())
def test_a_worse_value_never_improves_a_status(record: dict, change: tuple, data: st.DataObject):
    path, family, direction = change
    current = _get(record, path)
    assume(current is not None)
    if family is None:
        low, high = INT_RANGE[path]
        worse: Any = data.draw(
            st.integers(current, high) if direction > 0 else st.integers(low, current)
        )
    else:
        factor = data.draw(st.floats(1.0, 4.0) if direction > 0 else st.floats(0.25, 1.0))
        if isinstance(current, list):  # a series: every result worse, so the latest is
            worse = [{**r, "value": _scaled(r["value"], factor)} for r in current]
        elif isinstance(current, dict):
            worse = {**current, "value": _scaled(current["value"], factor)}
        else:
            worse = _scaled(current, factor)
        if path == "spo2" or path.endswith("blasts") or path == "lvef":
            assume(to_canonical("percent", worse if isinstance(worse, str) else worse["value"]) > 0)
    before = all_statuses(patient_from(record))
    after = all_statuses(patient_from(merge(record, _nested(path, worse))))
    for trial, found in before.items():
        for cid, status in found.items():
            assert RANK[after[trial][cid]] <= RANK[status], (
                f"{trial} {cid}: {path} {current!r} -> {worse!r} turned {status} into "
                f"{after[trial][cid]}"
            )


# --------------------------------------------------------------------------- Kleene laws

LEAVES = {
    "ecog": "{field: ecog, le: 2}",
    "lvef": "{field: lvef, ge: 50 %}",
    "labs.creatinine": "{field: labs.creatinine, le: 1.6 mg/dL}",
    "spo2": "{field: spo2, ge: 95 %}",
    "diagnosis.status": "{field: diagnosis.status, in: [relapsed, refractory]}",
    "informed_consent": "{field: informed_consent, is: true}",
    "labs.total_bilirubin": "{field: labs.total_bilirubin, le: 3 x ULN}",
}

# id -> check, with $A and $B standing for the two leaves
LAWS = {
    "I1": "$A",
    "I2": "$B",
    "I3": "{all: [$A, $B]}",
    "I4": "{any: [$A, $B]}",
    "I5": "{not: {all: [$A, $B]}}",
    "I6": "{any: [{not: $A}, {not: $B}]}",
    "I7": "{not: {any: [$A, $B]}}",
    "I8": "{all: [{not: $A}, {not: $B}]}",
    "I9": "{all: [$A]}",
    "I10": "{any: [$A]}",
    "I11": "{not: {not: $A}}",
    "I12": "{at_least: 1, of: [$A, $B]}",
    "I13": "{at_least: 2, of: [$A, $B]}",
    "I14": "{all: [$A, $B, $A]}",
    "I15": "{any: [{all: [$A, $B]}, $A]}",
}


@cache
def law_rules(a: str, b: str) -> screener.RuleSet:
    criteria = []
    for cid, check in LAWS.items():
        check = check.replace("$A", LEAVES[a]).replace("$B", LEAVES[b])
        criteria.append(
            f"  - {{id: {cid}, kind: inclusion, label: {cid}, text: {cid},\n     check: {check}}}"
        )
    text = (
        textwrap.dedent("""\
        trial: NCT00000001
        product: Laws
        title: Kleene's laws on real nodes
        sources: [https://example.org]
        criteria:
        """)
        + "\n".join(criteria)
        + "\n"
    )
    return screener.parse_rule_set(text, "rules/NCT00000001.yaml")


def _and(x, y):
    return False if False in (x, y) else (None if None in (x, y) else True)


def _or(x, y):
    return True if True in (x, y) else (None if None in (x, y) else False)


def _not(x):
    return None if x is None else not x


TRUTH = {"pass": True, "fail": False, "unknown": None, "review": None}


@pytest.mark.slow
@PROPERTY
@given(
    patients(),
    st.sampled_from(sorted(LEAVES)),
    st.sampled_from(sorted(LEAVES)),
    st.booleans(),
    st.booleans(),
)
def test_kleene_laws_hold_on_rule_nodes(record: dict, a: str, b: str, drop_a: bool, drop_b: bool):
    for field, drop in ((a, drop_a), (b, drop_b)):
        if drop and _get(record, field) is not None:
            record = merge(record, _nested(field, None))
    result = screen(patient_from(record), law_rules(a, b))
    v = {c.id: TRUTH[c.status.value] for c in result.criteria}
    va, vb = v["I1"], v["I2"]
    by_id = {c.id: c for c in result.criteria}
    for leaf, value, cid in ((a, va, "I1"), (b, vb, "I2")):
        present = _get(record, leaf) is not None
        assert (value is None) == (not present), (leaf, value)
        if not present:  # a missing field: unknown, naming what to collect
            assert by_id[cid].status.value == "unknown" and leaf in by_id[cid].missing
    assert v["I3"] == _and(va, vb) and v["I4"] == _or(va, vb)
    assert v["I5"] == _not(v["I3"]) == v["I6"]  # De Morgan
    assert v["I7"] == _not(v["I4"]) == v["I8"]
    assert v["I9"] == v["I10"] == v["I11"] == va  # identities, double negation
    assert v["I12"] == v["I4"] and v["I13"] == v["I3"]  # at_least 1 = any, at_least n = all
    assert v["I14"] == v["I3"] and v["I15"] == va  # idempotence, absorption
    if va is None and vb is True:
        assert v["I3"] is None and v["I4"] is True
    if va is None and vb is False:
        assert v["I3"] is False and v["I4"] is None
    for cid in LAWS:  # an unknown always says what to collect: no review leaves here
        assert (v[cid] is None) == (by_id[cid].status.value == "unknown")


# ---------------------------------------------------------------------------- determinism


def _json(patient: screener.Patient) -> str:
    return report.dumps(report.to_json(screener.screen_patient(patient, RULE_SETS)))


@pytest.mark.slow
@PROPERTY
@given(patients())
def test_same_record_same_json_bytes(record: dict):
    text = yaml.safe_dump(record, allow_unicode=True, sort_keys=False)
    first = _json(screener.parse_patient(text, "patient.yaml"))
    assert _json(screener.parse_patient(text, "patient.yaml")) == first
    shuffled = dict(sorted(record.items(), reverse=True))
    again = yaml.safe_dump(shuffled, allow_unicode=True, sort_keys=False)
    assert _json(screener.parse_patient(again, "patient.yaml")) == first


def test_cli_json_is_byte_identical_and_matches_the_library(tmp_path: Path):
    record = in_other_units(yaml.safe_load(BASELINE.read_text("utf-8")), random.Random(7))
    path = tmp_path / "patient.yaml"
    path.write_text(yaml.safe_dump(record, allow_unicode=True), encoding="utf-8")
    runner = CliRunner()
    outputs = [runner.invoke(app, ["check", str(path), "--format", "json"]) for _ in range(2)]
    assert all(r.exit_code == 0 for r in outputs), outputs[0].output
    assert outputs[0].stdout == outputs[1].stdout
    assert outputs[0].stdout == _json(screener.load_patient(path)) + "\n"


def test_cli_jsonl_is_the_same_with_one_or_two_workers(tmp_path: Path):
    rng = random.Random(11)
    base = yaml.safe_load(BASELINE.read_text("utf-8"))
    for i in range(4):
        record = in_other_units({**base, "id": f"P{i}"}, rng)
        (tmp_path / f"p{i}.yaml").write_text(
            yaml.safe_dump(record, allow_unicode=True), encoding="utf-8"
        )
    runner = CliRunner()
    out = [
        runner.invoke(app, ["check", str(tmp_path), "--format", "jsonl", "--jobs", jobs])
        for jobs in ("1", "2")
    ]
    assert out[0].exit_code == 0 and out[1].exit_code == 0, out[0].output
    assert out[0].stdout == out[1].stdout
    assert len(out[0].stdout.splitlines()) == 4


# ------------------------------------------------------------------------ loader round trip

STYLES = [
    dict(sort_keys=True),
    dict(sort_keys=False, default_flow_style=True),
    dict(sort_keys=False, allow_unicode=False),
    dict(sort_keys=True, indent=4, width=40),
]


@pytest.mark.slow
@PROPERTY
@given(patients(), st.sampled_from(STYLES))
def test_yaml_style_and_json_do_not_change_the_record(record: dict, style: dict):
    text = yaml.safe_dump(record, allow_unicode=True, sort_keys=False)
    loaded = screener.parse_patient(text)
    redumped = yaml.safe_dump(yaml.safe_load(text), **style)
    assert screener.parse_patient(redumped).data == loaded.data
    as_json = json.dumps(
        record,
        default=lambda d: d.isoformat() if isinstance(d, dt.date) else str(d),
        ensure_ascii=bool(style.get("sort_keys")),
    )
    assert screener.parse_patient(as_json).data == loaded.data


def test_families_cover_every_unit_of_their_fields():
    # The helper's unit tables accept only spellings screener accepts.
    for table in FAMILIES.values():
        for unit in table:
            assert units.normalise_unit(unit) in units.SPELLINGS, unit
