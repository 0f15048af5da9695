"""A checklist for the chart: one patient's screening as a self-contained HTML page to print.

The nurse prints it for the investigator: who was screened, on which date, by which version
of the tool and of the rule sets; per trial the verdict and every criterion with its source
text, the patient's values, the rule, the status and the reason; and for every item only
the investigator can judge, a line for the decision, name, signature and date (filled in
where the file already records an attestation with who and when).

No scripts, no links, no external assets: the page prints the same anywhere and cannot call
out. Every text from a patient or rule file is HTML-escaped. Page size is left to the
printer, so it prints on A4 and Letter alike.
"""

from __future__ import annotations

import datetime as dt

from screener._version import __version__
from screener.core._errors import printable
from screener.core._model import CriterionResult, Kind, PartResult, Screening, TrialResult
from screener.reports import _worklist as worklist
from screener.reports._report import (
    AS_OF_SOURCE,
    GLYPHS,
    counts_text,
    rule_text,
    shown_value,
    verdict_word,
    without_prompt,
)
from screener.reports._report import html_text as escape

_CSS = """
@page { margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font: 9pt/1.3 "DejaVu Sans", Arial, sans-serif; color: #000; margin: 0; }
h1 { font-size: 14pt; margin: 0 0 4pt; }
h2 { font-size: 11.5pt; margin: 14pt 0 4pt; break-after: avoid; }
h3 { font-size: 10pt; margin: 8pt 0 3pt; break-after: avoid; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; margin: 0 0 6pt; }
th, td { border: 0.6pt solid #777; padding: 2pt 3pt; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #eee; text-align: left; }
thead { display: table-header-group; }  /* the header repeats on every printed page */
tr.sign, tbody tr { break-inside: avoid; }  /* a criterion is read, and signed, on one page */
.meta td { border: none; padding: 0 6pt 0 0; }
.source { color: #333; font-size: 8.5pt; }
.caveat { border: 0.8pt solid #b80; padding: 3pt 5pt; margin: 3pt 0; }
.verdict { font-weight: bold; }
.sign td { height: 26pt; }
.small { font-size: 8.5pt; color: #333; }
pre.warning { font: 8pt/1.25 "DejaVu Sans Mono", monospace; margin: 3pt 0 1pt;
              white-space: pre-wrap; overflow-wrap: anywhere; }
"""

_WIDTHS = ("6%", "38%", "16%", "13%", "9%", "18%")


def _cell(text: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f"<td{cls}>{escape(text)}</td>"


def _values(result: CriterionResult | PartResult, kind: Kind) -> tuple[str, str]:
    """The patient's values and the rule, from the facts the criterion compared, the rule
    in the report's words: an exclusion's threshold says what excludes ("excluded if one
    of 3, 4"), an inclusion's what it needs."""
    values = "; ".join(dict.fromkeys(map(shown_value, result.evidence)))
    rules = "; ".join(
        dict.fromkeys(rule_text(e.threshold, kind) for e in result.evidence if e.threshold)
    )
    return values, rules


def _criterion_rows(t: TrialResult) -> list[str]:
    rows = []
    for c in t.criteria:
        glyph = GLYPHS[c.status][0]
        values, rule = _values(c, c.kind)
        # The source's words, not the rule set's reading notes (`screener show` has those):
        # the investigator signs against the protocol's text.
        what = (
            f"<td><b>{escape(c.label)}</b>{' (attested)' if c.attested else ''}"
            f'<div class="source">{escape(c.text)}</div></td>'
        )
        rows.append(
            f"<tr>{_cell(c.id)}{what}{_cell(values)}{_cell(rule)}"
            f"{_cell(f'{glyph} {c.status.value}')}"
            f"{_cell(without_prompt(worklist.reason(c)))}</tr>"
        )
        for p in c.parts:
            p_values, p_rule = _values(p, c.kind)
            rows.append(
                f"<tr>{_cell(p.id)}{_cell(p.label)}{_cell(p_values)}{_cell(p_rule)}"
                f"{_cell(f'{GLYPHS[p.status][0]} {p.status.value}')}"
                f"{_cell(without_prompt(worklist.reason(p)))}</tr>"
            )
    return rows


def _sign_off(record: Screening, t: TrialResult) -> list[str]:
    """A line per item the investigator judges: review items open now (not those that
    wait for data: see worklist.open_questions), and attested ones."""
    said = {key: (result, by, date) for key, result, by, date in record.attestations}
    rows = []
    for c in t.criteria:
        key = f"{t.trial}/{c.id}"
        questions = worklist.open_questions(c) or ((c.reason,) if key in said else ())
        if not questions:
            continue
        result, by, date = said.get(key, ("", "", ""))
        decision = f"attested: {result}" if result else "☐ pass   ☐ fail"
        for question in questions:
            rows.append(
                f"<tr>{_cell(c.id)}{_cell(question)}{_cell(decision)}{_cell(by)}"
                f"<td></td>{_cell(date)}</tr>"
            )
    return rows


def checklist(record: Screening, printed: dt.datetime) -> str:
    """The whole page. `printed` is the time of the run, shown on the page (and only here:
    JSON output stays the same bytes for the same input)."""
    head = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # Nothing may load from anywhere, as on the cohort page: self-contained by
        # construction, and the browser is told so too.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>Pre-screening checklist: {escape(record.patient)}</title>"
        f"<style>{_CSS}</style></head><body>"
    )
    meta = [
        ("Patient", record.patient),
        ("File", record.file),
        ("Screened as of", f"{record.as_of} ({AS_OF_SOURCE[record.as_of_source]})"),
        ("Screener version", __version__),
        ("Rule sets", record.rules_digest),
        ("Printed", printed.strftime("%Y-%m-%d %H:%M %Z").strip()),
    ]
    out = [head, "<h1>Pre-screening checklist</h1>", '<table class="meta">']
    out += [f"<tr><td><b>{escape(k)}</b></td>{_cell(val)}</tr>" for k, val in meta]
    out.append("</table>")
    out.append(
        '<p class="small">A pre-screening aid, not an eligibility decision: the '
        "investigator decides, with the protocol in hand. ✔ pass · ✘ fail (blocks "
        "enrolment) · ? unknown (data to collect) · ⚑ review (investigator).</p>"
    )
    out.append(
        '<h2>Verdicts</h2><table><tr><th style="width:16%">trial</th>'
        '<th style="width:20%">product</th><th style="width:18%">verdict</th>'
        "<th>criteria by status</th></tr>"
    )
    out += [
        f"<tr>{_cell(t.trial)}{_cell(t.product)}{_cell(verdict_word(t.verdict), 'verdict')}"
        f"{_cell(counts_text(t))}</tr>"
        for t in record.trials
    ]
    out.append("</table>")
    if record.warnings:
        # Each as written, in a <pre>: the caret stays under the column it points at.
        out.append("<h2>Warnings about the file</h2>")
        for text, left in worklist.build(record, everything=True).warnings:
            out.append(f'<pre class="warning">{escape(printable(text))}</pre>')
            if left:
                out.append(f'<p class="small">left unknown: {escape(", ".join(left))}</p>')
    for t in record.trials:
        out.append(
            f"<h2>{escape(t.trial)} · {escape(t.product)}: {escape(verdict_word(t.verdict))}</h2>"
        )
        out.append(f'<p class="small">{escape(t.title)} — rule set {escape(t.digest)}</p>')
        out += [f'<div class="caveat">caveat: {escape(c)}</div>' for c in t.caveats]
        cols = "".join(f'<col style="width:{w}">' for w in _WIDTHS)
        out.append(
            f"<table>{cols}<thead><tr><th>id</th><th>criterion and source text</th>"
            "<th>patient's value</th><th>rule</th><th>status</th><th>reason</th></tr>"
            "</thead><tbody>"
        )
        out += _criterion_rows(t)
        out.append("</tbody></table>")
        sign = _sign_off(record, t)
        if sign:
            out.append(
                '<h3>Investigator\'s decisions</h3><table><col style="width:6%">'
                '<col style="width:34%"><col style="width:14%">'
                '<col style="width:16%"><col style="width:18%"><col style="width:12%">'
                "<tr><th>id</th><th>to judge</th><th>decision</th><th>name</th>"
                "<th>signature</th><th>date</th></tr>"
            )
            out += [row.replace("<tr>", '<tr class="sign">', 1) for row in sign]
            out.append("</table>")
        later = [c.id for c in t.criteria if worklist.waiting_questions(c)]
        if later:
            # Not signed yet: the question hangs on data the file lacks (its reason says
            # which); the next screening, with the data, asks it.
            out.append(
                f'<p class="small">To judge once their data is in (see each reason): '
                f"{escape(' '.join(later))}</p>"
            )
    out.append("</body></html>\n")
    return "\n".join(out)
