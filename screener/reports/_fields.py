"""The field reference of docs/patient-format.md, generated from the vocabulary.

The page's prose is written by people; its tables of fields and labs are this module's
output (`screener docs`, or `python tools/vocabulary.py` to rewrite the page), so the
page cannot drift from what the loader accepts. A test fails when the committed page is
stale. With `--rules DIR` the same tables describe a rules directory's fields too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from screener.core import _units as units
from screener.core import _vocabulary as v
from screener.reading._formulas import FORMULAS

BEGIN = "<!-- BEGIN field reference (generated: python tools/vocabulary.py; do not edit) -->"
END = "<!-- END field reference -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _shown_path(path: str) -> str:
    return path.replace(".*", ".NAME")


def _bounds(bounds: v.Bounds, unit: str) -> str:
    low, high = bounds
    suffix = f" {unit}" if unit else ""
    if low is None and high is None:
        return "—"
    if low is None:
        return f"≤ {units.fmt(float(high or 0))}{suffix}"
    if high is None:
        return f"≥ {units.fmt(float(low))}{suffix}"
    return f"{units.fmt(float(low))}–{units.fmt(float(high))}{suffix}"


def _uln_bounds(spec: v.Lab) -> str:
    """A lab's ULN ranges, or what a ULN is checked by when it declares none."""
    if (spec.uln_hard, spec.uln_soft) == ((None, None), (None, None)):
        return "as hard" if spec.hard != (None, None) else "—"
    return f"{_bounds(spec.uln_hard, spec.range_unit)}, {_bounds(spec.uln_soft, spec.range_unit)}"


def _codes(e: dict[str, Any]) -> str:
    return ", ".join(
        f"{system} {code}" for system, table in e.get("codes", {}).items() for code in table
    )


def _form(spec: v.Spec, e: dict[str, Any]) -> str:
    form = spec.form()
    if e.get("required"):
        form += "; required"
    return form


def field_table(vocabulary: v.Vocabulary) -> str:
    """Every field a patient file may hold: its form, an example and what it means."""
    rows = [
        "| field | form | example | meaning |",
        "|---|---|---|---|",
    ]
    for path, e, spec in v.iter_fields(vocabulary):
        example = e.get("example")
        if example is None and not isinstance(spec, (v.Record, v.OpenMap, v.ListOf)):
            example = spec.example()
        meaning = e.get("doc", spec.label)
        if e.get("used_by"):
            meaning += f" (used by {e['used_by']})"
        rows.append(
            f"| `{_shown_path(path)}` | {_cell(_form(spec, e))} | "
            f"{'`' + _cell(str(example)) + '`' if example else ''} | {_cell(meaning)} |"
        )
    for path, spec in vocabulary.derived.items():
        if path in vocabulary.entries:
            continue
        e = vocabulary.derived_entries[path]
        meaning = e.get("doc", spec.label) + (
            f" (used by {e['used_by']})" if "used_by" in e else ""
        )
        rows.append(f"| `{path}` | derived, never written | | {_cell(meaning)} |")
    return "\n".join(rows)


def derived_table(vocabulary: v.Vocabulary) -> str:
    """Each derived value: its unit, the formula that computes it with its equation and
    source, the field each input is read from, and the measured field it stands in for."""
    rows = [
        "| derived value | unit | formula | inputs | stands in for |",
        "|---|---|---|---|---|",
    ]
    for path, d in vocabulary.derivations.items():
        formula = FORMULAS[d.formula]
        inputs = ", ".join(f"{role}: `{source}`" for role, source in d.inputs)
        rows.append(
            f"| `{path}` ({_cell(d.spec.label)}) | {units.SPELLINGS[formula.unit][1]} | "
            f"`{d.formula}`: {_cell(formula.equation)} ({_cell(formula.source)}) | {inputs} | "
            f"{'`' + d.stands_in_for + '`' if d.stands_in_for else '—'} |"
        )
    return "\n".join(rows)


def lab_table(vocabulary: v.Vocabulary) -> str:
    """Each lab's units, plausible ranges, default ULN and the codes the importer reads."""
    rows = [
        "| lab | units | hard (error) | soft (warning) | ULN: hard, soft | default ULN "
        "| FHIR codes |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, e, spec in v.iter_fields(vocabulary):
        if not isinstance(spec, v.Lab):
            continue
        inner = spec.value
        if isinstance(inner, v.Quantity):
            accepted = ", ".join(dict.fromkeys(units.SPELLINGS[k][1] for k in inner.accepted()))
            if inner.analyte is not None and inner.analyte.molar_mass is not None:
                accepted += f" (molar mass {units.fmt(inner.analyte.molar_mass, 6)} g/mol)"
        else:
            accepted = "no unit"
        rows.append(
            f"| `{path}` ({_cell(spec.label)}) | {_cell(accepted)} | "
            f"{_bounds(spec.hard, spec.range_unit)} | {_bounds(spec.soft, spec.range_unit)} | "
            f"{_uln_bounds(spec)} | {spec.default_uln or '—'} | {_codes(e) or '—'} |"
        )
    return "\n".join(rows)


def coded_table(vocabulary: v.Vocabulary) -> str:
    """The other fields the FHIR importer fills, by code."""
    rows = ["| field | FHIR codes |", "|---|---|"]
    for path, e, spec in v.iter_fields(vocabulary):
        if "codes" in e and not isinstance(spec, v.Lab):
            rows.append(f"| `{path}` | {_codes(e)} |")
    return "\n".join(rows)


def reference(vocabulary: v.Vocabulary = v.BUILTIN) -> str:
    """The generated part of docs/patient-format.md, markers included."""
    sources = "\n\n".join(f"**{name}**: {text}" for name, text in vocabulary.sources.items())
    return "\n".join(
        [
            BEGIN,
            "",
            "### Fields",
            "",
            field_table(vocabulary),
            "",
            "### Derived values",
            "",
            "Computed from other fields by a registered formula (screener/reading/_formulas.py) "
            "when a rule reads them, never written in a file. A derived lab is dated by its "
            "oldest dated input, so a freshness window applies to it. One that stands in for a "
            "measured field fills that field when the record lacks it, and says so in its note.",
            "",
            derived_table(vocabulary),
            "",
            "### Labs",
            "",
            "A value beyond the hard limit cannot be a living patient's result: the file is an "
            "error naming the field, and the hint names the unit in which the number would be "
            "plausible. A value beyond the soft limit is screened, with a warning, and every "
            "criterion that reads it shows it as implausible. A laboratory's ULN is checked "
            "the same way against its own ranges (ULN: hard, soft), or, where a lab declares "
            "none, against the value's hard range (as hard). A default "
            "ULN is used only when a lab gives no `uln`, and the result then says it was "
            "assumed.",
            "",
            lab_table(vocabulary),
            "",
            "Sources of the default ULNs: " + sources,
            "",
            "### Other fields read from FHIR",
            "",
            coded_table(vocabulary),
            "",
            END,
        ]
    )


FHIR_BEGIN = "<!-- BEGIN observation codes (generated: python tools/vocabulary.py; do not edit) -->"
FHIR_END = "<!-- END observation codes -->"


def _fhir_value(spec: v.Spec) -> str:
    if isinstance(spec, v.Lab):
        return f"{spec.value.form()}; lab `{{value, uln, date}}`"
    if isinstance(spec, v.Record):
        return "qualitative (positive/negative) + date"
    if isinstance(spec, v.Choice):
        return "qualitative (positive/negative)"
    if isinstance(spec, v.Integer):
        return f"a score {spec.low}–{spec.high}" + (f" by {spec.step}s" if spec.step != 1 else "")
    return spec.form()


def observation_table(vocabulary: v.Vocabulary = v.BUILTIN) -> str:
    """docs/fhir.md's table of the Observation codes the importer reads, by field."""
    rows = [
        FHIR_BEGIN,
        "",
        "| code system | code | display | screener field | value |",
        "|---|---|---|---|---|",
    ]
    for observed in vocabulary.observations:
        spec = vocabulary.resolve(observed.path)
        assert spec is not None
        for system, code, display in observed.codes:
            rows.append(
                f"| {system} | {code} | {_cell(display)} | `{observed.path}` | "
                f"{_cell(_fhir_value(spec))} |"
            )
    return "\n".join([*rows, "", FHIR_END])


def _section(begin: str, end: str) -> re.Pattern[str]:
    return re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _: text


def rewrite(page: str, vocabulary: v.Vocabulary = v.BUILTIN) -> str:
    """The page with its generated sections replaced by the vocabulary's current ones:
    docs/patient-format.md's field reference, docs/fhir.md's observation codes."""
    done = page
    for begin, end, made in (
        (BEGIN, END, reference),
        (FHIR_BEGIN, FHIR_END, observation_table),
    ):
        # a function, not a replacement string: the text's backslashes are taken as written
        done = _section(begin, end).sub(_constant(made(vocabulary)), done, count=1)
    if done == page and BEGIN not in page and FHIR_BEGIN not in page:
        raise ValueError("the page has no generated section")
    return done
