"""The cohort summary as one self-contained HTML page, to show and to print.

No script, no font, no image or style sheet from anywhere: a Content-Security-Policy that
allows nothing but the page's own style says so to the browser too, so the page reads the
same offline and leaks nothing when opened. Per trial: the attrition funnel (an SVG drawn
here, its numbers also in a table), then the verdict matrix, the patients closest to
eligible and, per trial and for the cohort, how many patients lack each field.

Every value that comes from a patient file (ids, file names, reasons) or a rule file is
HTML-escaped where it is written: patient files are anyone's text. The only links are a
matrix row's to its patient's checklist, when `check --each` wrote it beside the page: a
relative address of a file name made safe (checklist_name), which loads nothing.
"""

from __future__ import annotations

import datetime as dt
import marshal
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from screener.core._model import Record, Screening
from screener.reports._report import html_text
from screener.reports._summary import SHORT, VERDICTS, Cohort, _title, entry, mark, mark_of

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.eligible { background: #d9f2d9; } .ineligible { background: #f8d7d7; }
.incomplete { background: #fdf0c8; } .needs_review { background: #ecdcf5; }
.caveat { color: #8a5a00; } .warning { color: #a40000; font-weight: bold; }
section { break-inside: avoid-page; }
svg text { font: 12px system-ui, sans-serif; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
"""


def _e(value: Any) -> str:
    return html_text(value)  # control characters visible, then escaped


def _funnel_svg(cohort: Cohort, trial: str) -> str:
    """Hand-drawn bars: screened, then what is left after each criterion that excluded
    anyone (most excluding first), each bar labelled with its numbers as text."""
    tally = cohort.trials[trial]
    total = sum(tally.verdicts.values())
    steps = [("screened", 0, total)] + [
        (cohort.criterion(trial, cid), gone, left)
        for cid, gone, left in tally.funnel(cohort.order(trial))
    ]
    row, label_w, bar_w = 24, 330, 300
    height = row * len(steps) + 8
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 120}" '
        f'height="{height}" role="img" aria-label="attrition funnel for {_e(trial)}">'
    ]
    for i, (label, gone, left) in enumerate(steps):
        y = 4 + i * row
        width = round(bar_w * left / total, 1) if total else 0
        shown = label if len(label) <= 52 else label[:51] + "…"
        out.append(f'<text x="0" y="{y + 16}">{_e(shown)}</text>')
        out.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{width}" height="{row - 6}" fill="#4a7fb5"/>'
        )
        note = f"{left}" if i == 0 else f"{left} (−{gone})"
        out.append(f'<text x="{label_w + width + 6}" y="{y + 16}">{_e(note)}</text>')
    out.append("</svg>")
    return "".join(out)


def _funnel_table(cohort: Cohort, trial: str) -> str:
    tally = cohort.trials[trial]
    rows = "".join(
        f"<tr><td>{_e(cohort.criterion(trial, cid))}</td><td class=n>{tally.excluded_by[cid]}</td>"
        f"<td class=n>{tally.alone[cid]}</td><td class=n>{gone}</td><td class=n>{left}</td></tr>"
        for cid, gone, left in tally.funnel(cohort.order(trial))
    )
    return (
        "<table><tr><th>criterion</th><th>patients excluded</th><th>excluded by it alone"
        "</th><th>removed at this step</th><th>left after it</th></tr>" + rows + "</table>"
    )


def _missing_table(counts: Any, total: int) -> str:
    if not counts:
        return "<p>No field is missing for any patient.</p>"
    rows = "".join(
        f"<tr><td><code>{_e(name)}</code></td><td class=n>{n}</td>"
        f"<td class=n>{round(100 * n / total) if total else 0} %</td></tr>"
        for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return (
        "<table><tr><th>field</th><th>patients lacking it</th><th>of the cohort</th></tr>"
        + rows
        + "</table>"
    )


def page(cohort: Cohort, links: Mapping[str, str] | None = None) -> str:
    """The whole page. `links`: input file -> the file name of its patient's checklist,
    written beside the page (check --each): the matrix row links to it, by a relative
    address only, so the page and its checklists move together and nothing is fetched."""
    links = links or {}
    trials = cohort.screened()
    screened = len(cohort.rows)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may load from anywhere: the page is self-contained by construction.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        "<title>Cohort screening summary</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Cohort screening summary</h1>",
        f"<p>{_e(_title(cohort))}.</p>",
    ]
    for patient, files in cohort.duplicates().items():
        out.append(
            f'<p class="warning">warning: patient id {_e(patient)} appears in '
            f"{len(files)} files: {_e(', '.join(files))}</p>"
        )

    out.append("<section><h2>Verdicts</h2><table><tr><th>patient</th>")
    for t in trials:
        tally = cohort.trials[t]
        sign = f" {mark(tally)}" if tally.caveats else ""
        out.append(
            f'<th title="{_e(" ".join(tally.caveats))}">{_e(t)}<br>{_e(tally.product)}{sign}</th>'
        )
    out.append("</tr>")
    for patient, verdicts, file in cohort.sorted_rows():
        cells = "".join(
            f'<td class="{_e(verdicts.get(t, ""))}">{_e(SHORT.get(verdicts.get(t, ""), ""))}</td>'
            for t in trials
        )
        name = links.get(file)
        who = f'<a href="{_e(quote(name))}">{_e(patient)}</a>' if name else _e(patient)
        out.append(f"<tr><td>{who}</td>{cells}</tr>")
    for verdict in VERDICTS:
        out.append(
            f'<tr><th class="{verdict}">{_e(SHORT[verdict])}</th>'
            + "".join(f"<td class=n>{cohort.trials[t].verdicts[verdict]}</td>" for t in trials)
            + "</tr>"
        )
    out.append("</table>")
    out += [
        f'<p class="caveat">{mark_of(c)} {_e(t)}: {_e(c)}</p>'
        for t in trials
        for c in cohort.trials[t].caveats
    ]
    out.append("</section>")

    for t in trials:
        tally = cohort.trials[t]
        out.append(f"<section><h2>{_e(t)} · {_e(tally.product)}</h2>")
        out += [f'<p class="caveat">{mark_of(c)} caveat: {_e(c)}</p>' for c in tally.caveats]
        out.append(f"<h3>Attrition</h3>{_funnel_svg(cohort, t)}")
        out.append(
            _funnel_table(cohort, t)
            if tally.excluded_by
            else "<p>No criterion excluded any patient.</p>"
        )
        out.append(
            f"<p>Not excluded by any criterion: "
            f"{sum(n for f, n in tally.failing_sets.items() if not f)}; eligible: "
            f"{tally.verdicts['eligible']}.</p>"
        )
        out.append(f"<h3>Missing data</h3>{_missing_table(tally.missing, screened)}</section>")

    closest = cohort.closest(trials)
    if closest:
        out.append(
            "<section><h2>Closest to eligible: blocked by exactly one criterion</h2>"
            "<table><tr><th>patient</th><th>trial</th><th>blocked by</th><th>value</th>"
            "</tr>"
        )
        out += [
            f"<tr><td>{_e(c.patient)}</td><td>{_e(c.trial)}</td>"
            f"<td>{_e(cohort.criterion(c.trial, c.criterion))}</td><td>{_e(c.value)}</td></tr>"
            for c in closest
        ]
        out.append("</table></section>")
    out.append(
        "<section><h2>Missing data across the cohort</h2>"
        + _missing_table(cohort.missing, screened)
        + "</section>"
    )
    if cohort.errors:
        out.append("<section><h2>Files that could not be screened</h2>")
        out += [
            f"<p><code>{_e(name)}</code></p><pre>{_e(cohort.messages.get(name, ''))}</pre>"
            for name in cohort.errors
        ]
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------- checklists beside the page


@dataclass(frozen=True)
class WithChecklist:
    """A worker's renderer for `check DIR -f html -o PAGE --each`: the summary's entry of a
    record and its patient's chart checklist (checklist.checklist), in one payload
    (`unpack_checklist` reads it), so the main process only writes the pages. `printed` is
    the run's time, the same on every checklist. marshal, as log.LogRender: bytes and
    text made by this screener's own worker."""

    printed: dt.datetime

    def __call__(self, record: Record) -> bytes:
        from screener.reports._checklist import checklist

        page = checklist(record, self.printed) if isinstance(record, Screening) else ""
        return marshal.dumps((entry(record), page))


def unpack_checklist(payload: bytes) -> tuple[bytes, str]:
    """What WithChecklist made of a record: (the summary's entry, the checklist or "")."""
    data, page = marshal.loads(payload)
    return data, page


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
NAME_LIMIT = 100  # characters of a patient id kept in a checklist's file name


def checklist_name(patient: str, taken: set[str]) -> str:
    """A checklist's file name from its patient id, safe anywhere: only letters, digits,
    '.', '_' and '-' (anything else, a slash or '..' included, becomes '_'), no leading
    dot, at most NAME_LIMIT characters, and none already `taken` (compared without case,
    for file systems that ignore it): a second file of the same id gets '-2', and so on.
    The name is added to `taken`."""
    stem = _UNSAFE.sub("_", patient).strip(".")[:NAME_LIMIT] or "patient"
    name, n = f"{stem}.html", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}.html"
    taken.add(name.lower())
    return name
