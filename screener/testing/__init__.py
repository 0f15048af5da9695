"""The rule-author kit: helpers for rule authors' tests: patients from a base and overrides,
screening one trial,
and hypothesis strategies for valid patient records.

Building and screening a patient::

    from screener.testing import patient_from, screen, statuses

    base = "tests/acceptance/patients/baseline.yaml"
    patient = patient_from(base, labs={"creatinine": "145 umol/L"})      # keyword overrides
    patient = patient_from(base, {"lvef": None, "ecog": 2})               # or one mapping
    assert statuses(screen(patient, "NCT06559644"))["I9.c"] == "fail"
    assert statuses(screen(patient, "Hema-NeoTIL01"))["I7"] == "unknown"  # product names too

`load_patient(path)`
    A patient file, read and checked exactly as `screener check` reads it.
`patient_from(base, overrides=None, /, **fields)`
    `base` is a mapping in the patient-file format or a patient file (str or Path). The
    overrides merge into a copy of it as in case files (`screener.testing._cases.merge`): mappings
    merge, anything else (lists included) replaces, and `None` deletes a key. The result is
    dumped to YAML and loaded with `screener.parse_patient`, so it is checked exactly as a
    file is; a bad value raises `screener.PatientError` naming the field.
`screen(patient, trial)`
    One trial's `TrialResult`. `trial` is an NCT id or a product name (case-insensitive), or
    a `RuleSet`; the bundled rule sets are loaded once per process. `patient` may also be a
    mapping or a file, read as `patient_from` reads a base.
`statuses(result)`
    `{criterion or part id: status}` of a `TrialResult`, in report order (`I9`, `I9.a`, …);
    of a `Screening`, `{trial: {id: status}}`.

Property-based testing (needs hypothesis, installed with the `test` extra; it is imported
only when these are called)::

    from hypothesis import given, strategies as st
    from screener.testing import in_other_units, patient_from, patients, screen, statuses

    @given(patients(), st.data())
    def test_units_do_not_matter(record, data):
        other = in_other_units(record, data.draw)
        ...

`patients(missing=0.15)`
    A strategy of valid patient mappings in the contract format (plain dicts of str, int,
    bool, list and `datetime.date`, ready for `yaml.safe_dump`; they load without errors or
    warnings). Values range realistically (creatinine 0.3–4 mg/dL, SpO2 80–100 %, LVEF
    20–75 %, life expectancy 2 weeks to 2 years, ...) and are written with three significant
    digits, as a lab report prints them; each optional field is left out with a probability
    of about `missing`. Every quantity is in a randomly chosen unit: creatinine and
    bilirubin in mg/dL or µmol/L (also spelled umol/L and μmol/L), a ULN independently of
    its value, weight in kg or lb, life expectancy in days, weeks or months, AST/ALT in U/L
    or IU/L. The strategy does not steer values away from the rules' thresholds: a test that
    compares two spellings of one value skips values within its tolerance of a threshold.
`in_other_units(mapping, rng_or_draw)`
    A copy of a patient mapping with every quantity (weight, age, life expectancy, LVEF,
    SpO2, blasts, lab values and ULNs) rewritten in an equivalent unit chosen by
    `rng_or_draw`: a `random.Random`, or hypothesis's `draw` (from `st.data()` or a
    composite strategy). Creatinine and bilirubin may also become mg/L or mmol/L. The
    conversions use the module's own constants (molar masses 113.12 and 584.66 g/mol, 1 lb
    = 0.45359237 kg, 1 month = 365.25/12 days), not screener's, so a test of invariance
    checks screener's conversions; a converted value keeps 8 significant digits (a relative
    error below 1e-7).
`to_canonical(family, text)`, `write(family, value, unit)`, `FAMILIES`
    The unit tables behind both: `to_canonical("creatinine", "97 umol/L")` is 1.0973 (mg/dL),
    `write("mass", 62, "lb")` is "136.6866 lb". Families: creatinine, bilirubin (mg/dL),
    enzyme (U/L), percent, mass (kg), duration (days), age (years), seconds, flow (mL/min).
"""

from screener.testing._harness import (
    FAMILIES,
    in_other_units,
    load_patient,
    patient_from,
    patients,
    rule_sets,
    screen,
    statuses,
    to_canonical,
    write,
)

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
