"""The README's layout section and CONTRIBUTING.md describe the tree that is there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "screener"


def _section(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def _subpackages() -> set[str]:
    return {p.parent.name for p in PACKAGE.glob("*/__init__.py")}


def test_the_readme_layout_names_every_module_and_only_modules_that_exist():
    layout = _section((ROOT / "README.md").read_text("utf-8"), "Layout: `screener/`", "`rules/`")
    listed: dict[str, set[str]] = {}
    for block in re.split(r"\n- ", layout)[1:]:
        package = re.match(r"`(\w+)/`", block)
        assert package, block[:40]
        listed[package.group(1)] = set(re.findall(r"`(_?\w+)\.py`", block))
    assert set(listed) == _subpackages()
    for package, modules in listed.items():
        there = {p.stem for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__"}
        # a module the layout names under another package (e.g. a generator) is not here
        assert there <= modules, f"{package}/: not in the README layout: {there - modules}"
        assert {m for m in modules if m.startswith("_")} <= there, package


def test_contributing_names_every_layer_in_the_order_imports_point():
    table = _section((ROOT / "CONTRIBUTING.md").read_text("utf-8"), "| layer |", "\n\n")
    rows = re.findall(r"^\| `(\w+)/`(?: and `(\w+)/`)? \|", table, re.M)
    layers = [name for row in rows for name in row if name]
    assert set(layers) == _subpackages()
    # top to bottom, as the import contract lists them
    contract = (ROOT / "pyproject.toml").read_text("utf-8")
    declared = contract.split("layers = [", 1)[1].split("]", 1)[0]
    order = re.findall(r'"screener\.(\w+)(?: \| screener\.(\w+))?"', declared)
    assert layers == [name for row in order for name in row if name]
