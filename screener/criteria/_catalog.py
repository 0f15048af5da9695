"""Where the trial rule sets live, and loading all of them at once.

A wheel carries the rule files inside the package (`screener/rules/`); a source checkout
or an editable install keeps them in the project's top-level `rules/`. Both are found
here, so `pip install .` and `pip install -e .` behave the same.

A rules directory may hold vocabulary files beside its rule sets (`vocabulary.yaml`,
`*.vocabulary.yaml`): fields, labs, unit spellings, choice values and drugs its rules
need that screener does not know. They extend the built-in vocabulary into the one the
directory's rule sets are checked against, and each rule set carries it
(`RuleSet.vocabulary`), so the patients screened with them are read with it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from screener.core import _vocabulary as v
from screener.core._errors import Diagnostic, RuleSetError, nearest
from screener.criteria._rules import RuleSet, load_rule_set, text_digest
from screener.reading._document import load, read_text
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


def _yaml_files(folder: Path) -> list[Path]:
    # Both YAML suffixes: an NCT….yml file silently skipped would screen without its trial.
    # Editor leftovers (.#NCT….yaml, NCT….yaml~) are not rule sets.
    return sorted(
        f
        for f in folder.glob("*")
        if f.suffix.lower() in (".yaml", ".yml") and not f.name.startswith((".#", "._"))
    )


def files_read(directory: str | Path | None = None) -> list[Path]:
    """Every file loading a rules directory reads (its rule sets and vocabulary files), so a
    command's --output can refuse to replace one (cli/_output.atomic_output's inputs)."""
    return _yaml_files(Path(directory) if directory is not None else rules_dir())


def is_vocabulary_file(path: Path) -> bool:
    """`vocabulary.yaml` or `NAME.vocabulary.yaml` (either YAML suffix, any case)."""
    stem = path.stem.lower()
    return stem == "vocabulary" or stem.endswith(".vocabulary")


def load_vocabulary(directory: str | Path | None = None) -> v.Vocabulary:
    """The built-in vocabulary, extended by the vocabulary files of a rules directory (in
    name order); a broken or conflicting declaration is a RuleSetError at its file:line."""
    vocabulary = v.BUILTIN
    if directory is None:
        return vocabulary
    for path in _yaml_files(Path(directory)):
        if is_vocabulary_file(path):
            doc = load(path, shown(str(path)), RuleSetError)
            vocabulary = vocabulary.extend(doc.data, doc.file, doc.diagnostic)
            # Its derived values must name registered formulas with inputs that fit them.
            from screener.reading._formulas import check as check_formulas

            check_formulas(vocabulary)
            # The FHIR code systems a declaration names must be ones the importer knows.
            from screener.reading._fhir import code_systems  # only with a vocabulary file

            known = code_systems()
            for observed in vocabulary.observations:
                origin = vocabulary.origins[observed.path]
                for system, _, _ in observed.codes:
                    if system not in known and origin.file == doc.file:
                        raise RuleSetError(
                            doc.diagnostic(
                                f"unknown code system {system!r}",
                                origin.at + ("codes", system),
                                key=True,
                                hint=f"one of: {', '.join(sorted(known))}",
                            )
                        )
    return vocabulary


def vocabulary_of(rule_sets: Iterable[RuleSet]) -> v.Vocabulary | None:
    """The vocabulary rule sets were checked against (None: the built-in one), with which
    the patients screened with them are read."""
    return next((r.vocabulary for r in rule_sets if r.vocabulary is not None), None)


def load_rule_sets(
    directory: str | Path | None = None, vocabulary: v.Vocabulary | None = None
) -> list[RuleSet]:
    """Every rule set in a directory, ordered by trial id; any broken one stops the load.

    Their fields are checked against `vocabulary`, by default the built-in one extended by
    the directory's vocabulary files."""
    folder = Path(directory) if directory is not None else rules_dir()
    own = ""  # the digest of the directory's vocabulary files, when they are what is used
    if vocabulary is None:
        vocabulary = load_vocabulary(directory)
        own = _vocabulary_digest(folder) if directory is not None else ""
    files = [f for f in _yaml_files(folder) if not is_vocabulary_file(f)]
    if not files:
        raise RuleSetError(
            Diagnostic(f"no rule files (*.yaml, *.yml) in {shown(str(folder))}", shown(str(folder)))
        )
    rule_sets = [load_rule_set(f, vocabulary=vocabulary) for f in files]
    # NCT….yaml beside NCT….yml (or .YAML): both are loaded, and one trial would be
    # screened twice, ELIGIBLE and INELIGIBLE in one report if the two differ.
    first: dict[str, RuleSet] = {}
    for rule_set in rule_sets:
        other = first.setdefault(rule_set.trial, rule_set)
        if other is not rule_set:
            raise RuleSetError(
                Diagnostic(
                    f"trial {rule_set.trial} is loaded twice: from {other.file} and from "
                    f"{rule_set.file}",
                    rule_set.file,
                    hint="keep one rule file per trial (remove or rename the other copy)",
                )
            )
    # A vocabulary file decides how the directory's rules read a patient (a soft limit, a
    # choice value), so it is part of every rule set's version: editing it must change
    # each digest, as editing the rule file does. Without vocabulary files a digest stays
    # the rule file's own.
    if own:
        rule_sets = [replace(r, digest=text_digest(f"{r.digest} {own}")) for r in rule_sets]
    return rule_sets


def _vocabulary_digest(folder: Path) -> str:
    """A digest of a directory's vocabulary files, by name and text ("" if it has none)."""
    texts = [
        f"{path.name}\n{read_text(path, shown(str(path)), RuleSetError)}"
        for path in _yaml_files(folder)
        if is_vocabulary_file(path)
    ]
    return text_digest("\n".join(texts)) if texts else ""


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
