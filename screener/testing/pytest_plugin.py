"""pytest plugin: collect `<NCT id>.cases.yaml` rule test cases as test items.

Registered through the `pytest11` entry point, so any project with screener installed can
keep its case files beside its tests. Ids read `<case file>::<trial>::<case>`, and the
trial's product name is a keyword too, so `pytest -k CNCT19` selects a trial's cases.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from screener.criteria._catalog import load_rule_sets
from screener.criteria._rules import RuleSet
from screener.testing._cases import SUFFIX, Case, CaseFileError, explain, load_suite, run_case

if TYPE_CHECKING:
    # What pytest's own repr_failure returns; pytest does not export the name.
    from _pytest._code.code import TerminalRepr


@cache
def _rule_sets() -> dict[str, RuleSet]:
    return {r.trial: r for r in load_rule_sets()}


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
        rule_set = _rule_sets().get(suite.trial)
        if rule_set is None:
            raise CaseFileCollectionError(f"{self.path}: no rule set for trial {suite.trial}")
        for case in suite.cases:
            item = CaseItem.from_parent(
                self, name=f"{suite.trial}::{case.name}", case=case, rule_set=rule_set
            )
            item.extra_keyword_matches.update({rule_set.trial, rule_set.product})
            if case.xfail:
                item.add_marker(pytest.mark.xfail(reason=case.xfail, strict=True))
            yield item


class CaseMismatch(Exception):
    pass


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, rule_set: RuleSet, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.rule_set = rule_set

    def runtest(self) -> None:
        outcome = run_case(self.case, self.rule_set)
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
