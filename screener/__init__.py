"""screener: pre-screen patients for clinical trials from a YAML patient file.

The public Python API, usable without the command line::

    from screener import load_patient, load_rule_sets, screen
    patient = load_patient("examples/patients/baseline.yaml")
    for rule_set in load_rule_sets():
        result = screen(patient, rule_set)
        print(result.trial, result.verdict.value)

A cohort screened in one process is faster with one `ResultCache` passed to every call
(`screen_patient(patient, rule_sets, cache=cache)`): results are reused for patients whose
facts a criterion reads are the same, and are the results that would be computed.
"""

from screener.core._errors import PatientError, RuleSetError, ScreenerError
from screener.core._model import CriterionResult, Patient, Screening, Status, TrialResult, Verdict
from screener.criteria._catalog import load_rule_sets, rules_dir
from screener.criteria._rules import RuleSet, load_rule_set, parse_rule_set
from screener.reading._patient import load_patient, parse_patient
from screener.screening._engine import screen, screen_patient
from screener.screening._reuse import ResultCache

from ._version import __version__

__all__ = [
    "__version__",
    "CriterionResult",
    "Patient",
    "PatientError",
    "ResultCache",
    "RuleSet",
    "RuleSetError",
    "ScreenerError",
    "Screening",
    "Status",
    "TrialResult",
    "Verdict",
    "load_patient",
    "load_rule_set",
    "load_rule_sets",
    "parse_patient",
    "parse_rule_set",
    "rules_dir",
    "screen",
    "screen_patient",
]
