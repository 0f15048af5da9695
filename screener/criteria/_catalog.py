"""Where the trial rule sets live, and loading all of them at once.

A wheel carries the rule files inside the package (`screener/rules/`); a source checkout
or an editable install keeps them in the project's top-level `rules/`. Both are found
here, so `pip install .` and `pip install -e .` behave the same.
"""

from __future__ import annotations

from pathlib import Path

from screener.core._errors import Diagnostic, RuleSetError, nearest
from screener.criteria._rules import RuleSet, load_rule_set
from screener.reading._files import shown

_PACKAGE = Path(__file__).resolve().parent.parent  # screener/, beside which a checkout keeps rules/


def rules_dir() -> Path:
    """The directory of the bundled rule sets."""
    for candidate in (_PACKAGE / "rules", _PACKAGE.parent / "rules"):
        if candidate.is_dir() and any(candidate.glob("NCT*.yaml")):
            return candidate
    raise RuleSetError(
        Diagnostic(
            f"no rule sets found in {_PACKAGE / 'rules'} or {_PACKAGE.parent / 'rules'}",
            None,
            hint="reinstall screener",
        )
    )


def load_rule_sets(directory: str | Path | None = None) -> list[RuleSet]:
    """Every rule set in a directory, ordered by trial id; any broken one stops the load."""
    folder = Path(directory) if directory is not None else rules_dir()
    # Both YAML suffixes: an NCT….yml file silently skipped would screen without its trial.
    # Editor leftovers (.#NCT….yaml, NCT….yaml~) are not rule sets.
    files = sorted(
        f
        for f in folder.glob("*")
        if f.suffix.lower() in (".yaml", ".yml") and not f.name.startswith((".#", "._"))
    )
    if not files:
        raise RuleSetError(
            Diagnostic(f"no rule files (*.yaml, *.yml) in {shown(str(folder))}", shown(str(folder)))
        )
    return [load_rule_set(f) for f in files]


def select(rule_sets: list[RuleSet], wanted: list[str]) -> list[RuleSet]:
    """Keep the trials named by NCT id or product name (case-insensitive), in catalog order."""
    if not wanted:
        return rule_sets
    chosen: list[RuleSet] = []
    for name in wanted:
        key = name.strip().lower()
        matches = [r for r in rule_sets if key in (r.trial.lower(), r.product.lower())]
        if not matches:
            known = [r.trial for r in rule_sets] + [r.product for r in rule_sets]
            guess = nearest(name, known)
            raise ValueError(
                f"no trial {name!r}"
                + (f"; did you mean {guess}?" if guess else "")
                + f" (known: {', '.join(r.trial for r in rule_sets)})"
            )
        chosen.extend(m for m in matches if m not in chosen)
    return [r for r in rule_sets if r in chosen]
