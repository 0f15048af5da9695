"""The rule-author kit's helpers; documented, and re-exported, in `screener.testing`."""

from __future__ import annotations

import copy
import datetime as dt
import math
import random
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from screener.core._errors import PatientError
from screener.core._model import Patient, Screening, TrialResult
from screener.criteria import _catalog as catalog
from screener.criteria._rules import RuleSet
from screener.reading._document import load as _load_document
from screener.reading._patient import load_patient as _load_patient
from screener.reading._patient import parse_patient
from screener.screening._engine import screen as _screen
from screener.testing._cases import merge
from screener.testing._cases import statuses as _trial_statuses

__all__ = [
    "FAMILIES",
    "in_other_units",
    "load_patient",
    "patient_from",
    "patients",
    "rule_sets",
    "screen",
    "statuses",
    "to_canonical",
    "write",
]

# ----------------------------------------------------------------------------- patients


def load_patient(path: str | Path) -> Patient:
    """A patient file, read and checked exactly as `screener check` reads it."""
    return _load_patient(path)


def patient_from(
    base: Mapping[str, Any] | str | Path,
    overrides: Mapping[str, Any] | None = None,
    /,
    **fields: Any,
) -> Patient:
    """A patient from a base record plus overrides (None deletes a key), checked as a file is."""
    if isinstance(base, Mapping):
        record, name = copy.deepcopy(dict(base)), "<patient_from>"
    else:
        path = Path(base)
        data = _load_document(path, str(path), PatientError).data
        if not isinstance(data, dict):
            raise TypeError(f"{path} does not hold a patient mapping")
        record, name = data, str(path)
    if overrides:
        record = merge(record, dict(overrides))
    if fields:
        record = merge(record, fields)
    text = yaml.safe_dump(record, allow_unicode=True, sort_keys=False)
    return parse_patient(text, name if not (overrides or fields) else f"{name} (with overrides)")


@cache
def _rule_sets(directory: str | None) -> tuple[RuleSet, ...]:
    return tuple(catalog.load_rule_sets(Path(directory) if directory else None))


def rule_sets(directory: str | Path | None = None) -> tuple[RuleSet, ...]:
    """The rule sets of a directory (default: the bundled ones), loaded once per process."""
    return _rule_sets(str(directory) if directory is not None else None)


def _rule_set(trial: str | RuleSet) -> RuleSet:
    if isinstance(trial, RuleSet):
        return trial
    return catalog.select(list(rule_sets()), [trial])[0]


def screen(patient: Patient | Mapping[str, Any] | str | Path, trial: str | RuleSet) -> TrialResult:
    """Screen a patient against one trial, named by NCT id or product name (or a RuleSet)."""
    if not isinstance(patient, Patient):
        patient = patient_from(patient)
    return _screen(patient, _rule_set(trial))


def statuses(result: TrialResult | Screening) -> dict[str, Any]:
    """Criterion and part ids to status values; of a Screening, per trial."""
    if isinstance(result, Screening):
        return {t.trial: _trial_statuses(t) for t in result.trials}
    return _trial_statuses(result)


# ------------------------------------------------------------------------------- units

CREATININE_G_PER_MOL = 113.12
BILIRUBIN_G_PER_MOL = 584.66
KG_PER_LB = 0.45359237
DAYS = {"days": 1.0, "weeks": 7.0, "months": 365.25 / 12, "years": 365.25}

# Each family: canonical unit, and unit as written -> canonical units per written unit.
_MASS_CONC = {"mg/dL": 1.0, "mg/L": 0.1}


def _molar(grams_per_mol: float) -> dict[str, float]:
    # 1 µmol/L = M µg/L = M/10000 mg/dL
    per_umol = grams_per_mol / 10000.0
    return {
        **_MASS_CONC,
        "umol/L": per_umol,
        "µmol/L": per_umol,
        "μmol/L": per_umol,
        "mcmol/L": per_umol,
        "micromol/L": per_umol,
        "mmol/L": per_umol * 1000.0,
    }


FAMILIES: dict[str, dict[str, float]] = {
    "creatinine": _molar(CREATININE_G_PER_MOL),  # canonical mg/dL
    "bilirubin": _molar(BILIRUBIN_G_PER_MOL),  # canonical mg/dL
    "enzyme": {"U/L": 1.0, "IU/L": 1.0},  # canonical U/L
    "percent": {"%": 1.0, "percent": 1.0},  # canonical %
    "mass": {"kg": 1.0, "lb": KG_PER_LB, "lbs": KG_PER_LB},  # canonical kg
    "duration": {"days": 1.0, "weeks": 7.0, "months": DAYS["months"]},  # canonical days
    "age": {"years": 1.0, "months": 1.0 / 12},  # canonical years
    "seconds": {"s": 1.0, "sec": 1.0, "seconds": 1.0},
    "flow": {"mL/min": 1.0},
}
# Spellings in FAMILIES compared without case and with the micro signs folded, as screener does.
_FOLD = {"µ": "u", "μ": "u"}

# Where each quantity of the contract lives, and its family.
_TOP = {
    "weight": "mass",
    "life_expectancy": "duration",
    "lvef": "percent",
    "spo2": "percent",
    "age": "age",
}
_DIAGNOSIS = {"bone_marrow_blasts": "percent"}
_LABS = {
    "total_bilirubin": "bilirubin",
    "direct_bilirubin": "bilirubin",
    "ast": "enzyme",
    "alt": "enzyme",
    "creatinine": "creatinine",
    "aptt": "seconds",
    "creatinine_clearance": "flow",
}


def _fold(unit: str) -> str:
    for a, b in _FOLD.items():
        unit = unit.replace(a, b)
    return unit.replace(" ", "").lower()


def _split(text: str) -> tuple[float, str]:
    number, _, unit = str(text).strip().partition(" ")
    return float(number), unit.strip()


def to_canonical(family: str, text: str) -> float:
    """A written quantity of a family (`"97 umol/L"` as creatinine) in the family's first unit."""
    magnitude, unit = _split(text)
    table = {_fold(u): f for u, f in FAMILIES[family].items()}
    return magnitude * table[_fold(unit)]


def number(x: float, digits: int = 8) -> str:
    """A number as a lab report writes it: no float noise, no exponent for clinical sizes."""
    if abs(x - round(x)) <= 1e-9 * max(1.0, abs(x)):
        return str(int(round(x)))
    text = f"{x:.{digits}g}"
    if "e" in text:
        text = f"{x:.{digits + 6}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _rounded(x: float) -> str:
    """Three significant digits, as a lab report prints (1.61, 142, 0.0512)."""
    if x == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(x))))
    return number(round(x, decimals))


def write(family: str, canonical: float, unit: str) -> str:
    """A canonical value of a family written in `unit`, e.g. write("mass", 62, "lb")."""
    return f"{number(canonical / FAMILIES[family][unit])} {unit}"


Chooser = Callable[[list[str]], str]


def _chooser(rng_or_draw: random.Random | Callable[..., Any]) -> Chooser:
    if isinstance(rng_or_draw, random.Random) or hasattr(rng_or_draw, "choice"):
        return lambda options: rng_or_draw.choice(options)
    from hypothesis import strategies as st

    return lambda options: rng_or_draw(st.sampled_from(options))


def _rewrite(value: Any, family: str, choose: Chooser) -> Any:
    if isinstance(value, str):
        canonical = to_canonical(family, value)
        return write(family, canonical, choose(list(FAMILIES[family])))
    if isinstance(value, dict):
        out = dict(value)
        for key in ("value", "uln"):
            if isinstance(out.get(key), str):
                out[key] = _rewrite(out[key], family, choose)
        return out
    if isinstance(value, list):  # a lab's dated results, each in a unit of its own
        return [_rewrite(item, family, choose) for item in value]
    return value  # a bare number (age: 47) stays as written


def in_other_units(
    mapping: Mapping[str, Any], rng_or_draw: random.Random | Callable[..., Any]
) -> dict[str, Any]:
    """A copy of a patient mapping with every quantity rewritten in an equivalent unit.

    `rng_or_draw` picks the unit of each quantity (a lab's value and ULN independently): a
    `random.Random`, or hypothesis's `draw`. The unit may be the one already used.
    """
    choose = _chooser(rng_or_draw)
    out = copy.deepcopy(dict(mapping))
    for key, family in _TOP.items():
        if key in out:
            out[key] = _rewrite(out[key], family, choose)
    diagnosis = out.get("diagnosis")
    if isinstance(diagnosis, dict):
        for key, family in _DIAGNOSIS.items():
            if key in diagnosis:
                diagnosis[key] = _rewrite(diagnosis[key], family, choose)
    labs = out.get("labs")
    if isinstance(labs, dict):
        for key, family in _LABS.items():
            if key in labs:
                labs[key] = _rewrite(labs[key], family, choose)
    return out


# -------------------------------------------------------------------------- strategies


def patients(missing: float = 0.15) -> Any:
    """A hypothesis strategy of valid patient mappings in the contract format, whose labs
    may also be lists of dated results (see the module doc)."""
    from hypothesis import strategies as st

    percent = max(0, min(100, round(missing * 100)))

    def optional(draw: Any, record: dict[str, Any], key: str, strategy: Any) -> None:
        if draw(st.integers(0, 99)) >= percent:
            record[key] = draw(strategy)

    def quantity(family: str, low: float, high: float, units: list[str] | None = None) -> Any:
        @st.composite
        def build(draw: Any) -> str:
            canonical = draw(st.floats(low, high, allow_nan=False, allow_infinity=False))
            unit = draw(st.sampled_from(units or list(FAMILIES[family])))
            return f"{_rounded(canonical / FAMILIES[family][unit])} {unit}"

        return build()

    def lab(
        family: str,
        low: float,
        high: float,
        uln_low: float,
        uln_high: float,
        units: list[str] | None = None,
    ) -> Any:
        value = quantity(family, low, high, units)
        uln = quantity(family, uln_low, uln_high, units)
        # A lab may also be a list of dated results (the latest decides), one of a few days.
        day = st.dates(dt.date(2023, 10, 1), dt.date(2027, 12, 31))
        result = st.fixed_dictionaries({"value": value, "date": day}, optional={"uln": uln})
        return st.one_of(
            value,
            st.fixed_dictionaries({"value": value}, optional={"uln": uln}),
            st.lists(result, min_size=2, max_size=3),
        )

    def numeric_lab(low: float, high: float, uln_low: float, uln_high: float) -> Any:
        value = st.floats(low, high).map(lambda x: round(x, 2))
        uln = st.floats(uln_low, uln_high).map(lambda x: round(x, 2))
        return st.one_of(value, st.fixed_dictionaries({"value": value}, optional={"uln": uln}))

    words = st.sampled_from
    result = words(["positive", "negative"])
    specimen = words(["bone marrow", "peripheral blood"])

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        screening = draw(st.dates(dt.date(2024, 1, 1), dt.date(2027, 12, 31)))

        def before(low: int, high: int) -> dt.date:
            return screening - dt.timedelta(days=draw(st.integers(low, high)))

        record: dict[str, Any] = {
            "id": f"HYP-{draw(st.integers(0, 99999)):05d}",
            "screening_date": screening,
        }
        if draw(st.integers(0, 99)) >= percent:
            if draw(st.integers(0, 9)) == 0:
                record["age"] = f"{draw(st.integers(1, 90))} years"
            else:
                record["birth_date"] = before(365, 90 * 365)
        sex = draw(words(["female", "male"]))
        if draw(st.integers(0, 99)) >= percent:
            record["sex"] = sex
        optional(draw, record, "weight", quantity("mass", 35, 140, ["kg", "lb"]))
        optional(draw, record, "informed_consent", st.booleans())
        optional(
            draw,
            record,
            "apheresis_date",
            st.integers(0, 21).map(lambda d: screening + dt.timedelta(days=d)),
        )
        optional(draw, record, "childbearing_potential", st.booleans())
        if sex == "female":
            optional(draw, record, "pregnant", st.booleans())
            optional(draw, record, "lactating", st.booleans())
            optional(
                draw,
                record,
                "pregnancy_test",
                st.fixed_dictionaries(
                    {"result": result},
                    optional={
                        "date": st.integers(0, 30).map(lambda d: screening - dt.timedelta(days=d))
                    },
                ),
            )
        optional(draw, record, "contraception_agreed", st.booleans())

        diagnosis: dict[str, Any] = {}
        optional(
            draw,
            diagnosis,
            "disease",
            words(["B-ALL", "B-ALL", "B-ALL", "T-ALL", "AML", "Burkitt", "MPAL"]),
        )
        optional(draw, diagnosis, "who_2022", st.booleans())
        optional(
            draw,
            diagnosis,
            "status",
            words(["relapsed", "refractory", "remission", "newly-diagnosed"]),
        )
        optional(draw, diagnosis, "isolated_extramedullary", st.booleans())
        optional(draw, diagnosis, "cns_involvement", words(["none", "active", "history"]))
        optional(draw, diagnosis, "bone_marrow_blasts", quantity("percent", 0, 100, ["%"]))
        optional(draw, diagnosis, "ph_positive", st.booleans())
        optional(draw, diagnosis, "abl1_mutations", words([[], [], ["T315I"], ["E255K"]]))
        markers: dict[str, Any] = {}
        for name in ("CD19", "CD22"):
            optional(
                draw,
                markers,
                name,
                st.fixed_dictionaries(
                    {"result": result},
                    optional={
                        "specimen": specimen,
                        "date": st.integers(0, 200).map(lambda d: screening - dt.timedelta(days=d)),
                    },
                ),
            )
        if markers:
            diagnosis["markers"] = markers
        if diagnosis or draw(st.booleans()):
            record["diagnosis"] = diagnosis

        optional(draw, record, "ecog", st.integers(0, 4))
        optional(
            draw,
            record,
            "life_expectancy",
            quantity("duration", 14, 730, ["days", "weeks", "months"]),
        )
        optional(draw, record, "lvef", quantity("percent", 20, 75, ["%"]))
        optional(draw, record, "nyha_class", st.integers(1, 4))
        optional(draw, record, "dyspnea_grade", st.integers(0, 5))
        optional(draw, record, "spo2", quantity("percent", 80, 100, ["%"]))
        optional(draw, record, "supplemental_oxygen", st.booleans())
        optional(draw, record, "immunotherapy_ae_grade", st.integers(0, 5))
        optional(draw, record, "apheresis_access", st.booleans())

        labs: dict[str, Any] = {}
        molar = ["mg/dL", "umol/L", "µmol/L", "μmol/L"]
        optional(draw, labs, "total_bilirubin", lab("bilirubin", 0.15, 8, 0.8, 1.5, molar))
        optional(draw, labs, "direct_bilirubin", lab("bilirubin", 0.05, 3, 0.2, 0.4, molar))
        optional(draw, labs, "ast", lab("enzyme", 5, 500, 30, 60))
        optional(draw, labs, "alt", lab("enzyme", 5, 500, 30, 60))
        optional(draw, labs, "creatinine", lab("creatinine", 0.3, 4, 0.9, 1.4, molar))
        if draw(st.integers(0, 3)) == 0:
            labs["creatinine_clearance"] = draw(quantity("flow", 15, 150))
        optional(draw, labs, "inr", numeric_lab(0.8, 3.0, 1.1, 1.3))
        optional(draw, labs, "aptt", lab("seconds", 20, 80, 35, 45, ["s"]))
        if labs or draw(st.booleans()):
            record["labs"] = labs

        serology: dict[str, Any] = {}
        for key in ("hbsag", "anti_hcv", "hbv_dna", "hcv_rna", "hiv", "syphilis"):
            optional(draw, serology, key, words(["negative", "negative", "positive"]))
        if serology:
            record["serology"] = serology

        therapy = st.one_of(
            st.fixed_dictionaries(
                {
                    "type": st.just("chemotherapy"),
                    "regimen": words(["hyper-CVAD", "BFM", "FLAG"]),
                    "cycles": st.integers(1, 8),
                }
            ),
            st.fixed_dictionaries(
                {"type": st.just("tki"), "drug": words(["imatinib", "dasatinib", "ponatinib"])},
                optional={"outcome": words(["failed", "intolerant", "responding"])},
            ),
            st.fixed_dictionaries(
                {"type": st.just("car-t"), "target": words(["CD19", "CD22"])},
                optional={
                    "response": words(["CR", "NR", "relapse"]),
                    "date": st.integers(60, 900).map(lambda d: screening - dt.timedelta(days=d)),
                },
            ),
            st.fixed_dictionaries(
                {
                    "type": st.just("transplant"),
                    "kind": words(["allogeneic", "autologous"]),
                    "date": st.integers(10, 900).map(lambda d: screening - dt.timedelta(days=d)),
                }
            ),
        )
        optional(draw, record, "therapies", st.lists(therapy, max_size=3))
        condition = st.fixed_dictionaries(
            {
                "type": words(
                    [
                        "infection",
                        "malignancy",
                        "stroke",
                        "autoimmune",
                        "hypertension",
                        "gilbert_syndrome",
                    ]
                )
            },
            optional={
                "date": st.integers(0, 2000).map(lambda d: screening - dt.timedelta(days=d)),
                "active": st.booleans(),
                "severe": st.booleans(),
            },
        )
        optional(draw, record, "conditions", st.lists(condition, max_size=2))
        return record

    return build()
