"""pytest plugin: collect `<NCT id>.cases.yaml` rule test cases as test items.

Registered through the `pytest11` entry point, so any project with screener installed can
keep its case files beside its tests. Ids read `<case file>::<trial>::<case>`, and the
trial's product name is a keyword too, so `pytest -k CNCT19` selects a trial's cases.

The cases run against the bundled rule sets, or against a directory of the author's own:
`pytest --screener-rules rules/`, or in the project's configuration::

    [tool.pytest.ini_options]
    screener_rules = "rules"      # relative to the configuration file

A key that a case's overrides misspell (`labs: {creatinin: …}`) is a collection error at
its line in the case file, since the case would otherwise test a patient without the fact.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from screener.core._errors import ScreenerError
from screener.core._model import Patient
from screener.criteria._catalog import load_rule_sets
from screener.criteria._rules import RuleSet
from screener.testing._cases import (
    SUFFIX,
    Case,
    CaseFileError,
    explain,
    load_case_patient,
    load_suite,
    run_case,
    typos,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("screener", "screener rule test cases")
    group.addoption(
        "--screener-rules",
        metavar="DIR",
        default=None,
        help="directory of rule sets the case files run against (default: the bundled ones)",
    )
    parser.addini(
        "screener_rules",
        "directory of rule sets the case files run against, relative to the configuration file",
        default="",
    )


if TYPE_CHECKING:
    # What pytest's own repr_failure returns; pytest does not export the name.
    from _pytest._code.code import TerminalRepr


@cache
def _rule_sets(directory: Path | None) -> dict[str, RuleSet]:
    return {r.trial: r for r in load_rule_sets(directory)}


def _rules_dir(config: pytest.Config) -> Path | None:
    given = config.getoption("--screener-rules")
    if given:
        return Path(given).resolve()
    ini = config.getini("screener_rules")
    if ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        return (base / str(ini)).resolve()
    return None


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(SUFFIX):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFileCollectionError(Exception):
    """A broken case file, reported at collection with its file and line."""


class CaseFile(pytest.File):
    def collect(self) -> Any:
        try:
            suite = load_suite(self.path)
        except CaseFileError as exc:
            raise CaseFileCollectionError(str(exc)) from None
        directory = _rules_dir(self.config)
        try:
            rule_set = _rule_sets(directory).get(suite.trial)
        except ScreenerError as exc:
            raise CaseFileCollectionError(str(exc)) from None
        if rule_set is None:
            where = directory if directory is not None else "the bundled rule sets"
            raise CaseFileCollectionError(
                f"{self.path}: no rule set for trial {suite.trial} in {where}"
            )
        for case in suite.cases:
            try:
                patient = load_case_patient(case, rule_set.vocabulary)
            except ScreenerError:
                patient = None  # the item reports it, as a failed case
            if patient is not None and (found := typos(suite, case, patient)):
                raise CaseFileCollectionError("\n".join(d.render() for d in found))
            item = CaseItem.from_parent(
                self,
                name=f"{suite.trial}::{case.name}",
                case=case,
                rule_set=rule_set,
                patient=patient,
            )
            item.extra_keyword_matches.update({rule_set.trial, rule_set.product})
            if case.xfail:
                item.add_marker(pytest.mark.xfail(reason=case.xfail, strict=True))
            yield item


class CaseMismatch(Exception):
    pass


class CaseItem(pytest.Item):
    def __init__(
        self, *, case: Case, rule_set: RuleSet, patient: Patient | None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.rule_set = rule_set
        self.patient = patient

    def runtest(self) -> None:
        outcome = run_case(self.case, self.rule_set, patient=self.patient)
        if not outcome.passed:
            raise CaseMismatch(explain(outcome))

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, CaseMismatch):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, f"{self.rule_set.trial}::{self.case.name}"


def pytest_exception_interact(node: Any, call: Any, report: Any) -> None:
    # Show a broken case file as its one-line diagnostic, not a traceback into the plugin.
    if isinstance(call.excinfo.value, CaseFileCollectionError) and hasattr(report, "longrepr"):
        report.longrepr = str(call.excinfo.value)
