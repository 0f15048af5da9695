"""The example patients in examples/patients/ load cleanly and, together, show every verdict.

Each example is screened through the public API against every rule set. The examples are
documentation, so they must load without warnings, carry unique patient ids and a short
comment saying what they illustrate, and between them show each trial reaching each of the
four verdicts at least once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from screener import load_patient, load_rule_sets, screen, screen_patient

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "patients"
FILES = sorted(EXAMPLES.glob("*.yaml"))
VERDICTS = ("eligible", "ineligible", "incomplete", "needs_review")


@pytest.fixture(scope="module")
def rule_sets():
    return load_rule_sets()


@pytest.fixture(scope="module")
def verdicts(rule_sets) -> dict[str, dict[str, str]]:
    """File name -> trial -> verdict, for every example."""
    found = {}
    for path in FILES:
        patient = load_patient(path)
        found[path.name] = {r.trial: screen(patient, r).verdict.value for r in rule_sets}
    return found


def test_there_are_examples():
    assert len(FILES) >= 17, f"expected at least 17 example patients, found {len(FILES)}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_loads_without_warnings(path: Path, rule_sets):
    patient = load_patient(path)
    assert not patient.warnings, [d.render("warning") for d in patient.warnings]
    # Attestation warnings (unknown trial or criterion, computed criterion) come with screening.
    screening = screen_patient(patient, rule_sets)
    assert screening.warnings == (), "\n".join(screening.warnings)
    assert {t.trial for t in screening.trials} == {r.trial for r in rule_sets}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_opens_with_a_short_comment(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    assert 1 <= header <= 3, f"{path.name}: expected a 1-3 line comment at the top, found {header}"


def test_patient_ids_are_unique():
    seen: dict[str, list[str]] = {}
    for path in FILES:
        seen.setdefault(load_patient(path).id, []).append(path.name)
    duplicates = {pid: names for pid, names in seen.items() if len(names) > 1}
    assert not duplicates, f"patient ids used by more than one example: {duplicates}"


def test_every_trial_shows_every_verdict(rule_sets, verdicts):
    shown = {r.trial: set() for r in rule_sets}
    for by_trial in verdicts.values():
        for trial, verdict in by_trial.items():
            shown[trial].add(verdict)
    missing = {trial: [v for v in VERDICTS if v not in got] for trial, got in shown.items()}
    missing = {trial: gaps for trial, gaps in missing.items() if gaps}
    if missing:
        matrix = "\n".join(f"  {name}: {by_trial}" for name, by_trial in sorted(verdicts.items()))
        print("verdicts per example:\n" + matrix)
        print(
            "missing verdicts per trial: "
            + "; ".join(f"{trial}: {', '.join(gaps)}" for trial, gaps in sorted(missing.items()))
        )
    assert not missing, f"verdicts no example shows: {missing}"
