"""The chart checklist (`check FILE --format html`), printed to PDF by a real headless
Chromium (Debian's package; `.ci/run` installs it) and read back with pdftotext."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from screener.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "patients" / "complete-record-b-all.yaml"
MINIMAL = ROOT / "examples" / "patients" / "first-visit-minimal-record.yaml"
runner = CliRunner()

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOTEXT = shutil.which("pdftotext")
needs_browser = pytest.mark.skipif(
    (CHROMIUM is None or PDFTOTEXT is None) and not os.environ.get("CI"),
    reason="needs Debian's chromium and poppler-utils (.ci/run installs them)",
)


def html_of(path: Path, tmp_path: Path, *args: str) -> Path:
    out = tmp_path / f"{path.stem}.html"
    result = runner.invoke(app, ["check", str(path), "-f", "html", "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


def print_pdf(html: Path, tmp_path: Path, page: str | None = None) -> tuple[str, str]:
    """The text of the printed pages, and pdfinfo's page size."""
    assert CHROMIUM and PDFTOTEXT, "chromium and pdftotext must be installed"
    if page is not None:  # as a printer set to this paper would lay it out
        text = html.read_text("utf-8").replace("<style>", f"<style>@page {{ size: {page}; }}", 1)
        html = html.with_name(f"{html.stem}-{page}.html")
        html.write_text(text, "utf-8")
    pdf = html.with_suffix(".pdf")
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--print-to-pdf={pdf}",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    # In the order the page draws its text, cell by cell: a wrapped label comes out whole.
    text = subprocess.run(
        [PDFTOTEXT, "-raw", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    return text, info


def screening(path: Path) -> dict:
    return json.loads(runner.invoke(app, ["check", str(path), "-f", "json"]).stdout)


def _rule(threshold: str, kind: str) -> str:
    if threshold.startswith("applies only"):
        return threshold
    return ("excluded if " if kind == "exclusion" else "needs ") + threshold


# How a judgment is introduced in a reason: asked now, or once its data is in.
_PROMPTS = ("investigator to judge: ", "once known, for the investigator: ")


def _reason(text: str) -> str:
    for prompt in _PROMPTS:
        text = text.replace(prompt, "")
    return text


def _reason_head(text: str) -> str:
    """A reason's words up to its first judgment's prompt (a reason that opens with one is
    printed without it), at most 80 characters: to find in the printed text."""
    text = next((text[len(p) :] for p in _PROMPTS if text.startswith(p)), text)
    return text[: min([text.find(p) for p in _PROMPTS if p in text] + [80])]


def expected_rows(trial: dict) -> list[dict[str, str]]:
    """What the checklist must say of each criterion and part of a trial, from the JSON
    record: its source text (criteria), the patient's values, the rule, status, reason."""
    rows = []
    for c in trial["criteria"]:
        for item in [c, *c["parts"]]:
            values = item["values"]
            rows.append(
                {
                    "id": item["id"],
                    "label": item.get("label", ""),
                    "values": "; ".join(
                        dict.fromkeys(
                            f"{e['label']} {e['value']}"
                            + (f" = {e['converted']}" if e["converted"] else "")
                            for e in values
                        )
                    ),
                    "rule": "; ".join(
                        dict.fromkeys(
                            _rule(e["threshold"], c["kind"]) for e in values if e["threshold"]
                        )
                    ),
                    "status": item["status"],
                    "reason": _reason(item["reason"]),
                    "head": _reason_head(item["reason"]),
                }
            )
    return rows


def source_texts(trial: str) -> dict[str, str]:
    import yaml

    rules = yaml.safe_load((ROOT / "rules" / f"{trial}.yaml").read_text("utf-8"))
    return {c["id"]: " ".join(c["text"].split()) for c in rules["criteria"]}


def squeezed(text: str) -> str:
    """Text without any white space: a printed cell breaks lines where it likes."""
    return "".join(text.split())


@pytest.mark.slow
@needs_browser
@pytest.mark.parametrize(
    ("example", "page", "size"),
    [
        (EXAMPLE, "A4", "(A4)"),
        (EXAMPLE, "letter", "(letter)"),
        (MINIMAL, "A4", "(A4)"),  # a first visit: almost everything unknown
    ],
    ids=["complete-A4", "complete-letter", "minimal-A4"],
)
def test_the_printed_checklist_holds_every_criterion_and_a_sign_off_per_review(
    tmp_path: Path, example: Path, page: str, size: str
):
    text, info = print_pdf(html_of(example, tmp_path), tmp_path, page)
    assert size in info
    data = screening(example)
    assert data["patient"] in text and data["screener_version"] in text
    assert data["rules_digest"] in text
    flat = " ".join(text.split())
    assert f"as of {data['as_of']}" in flat and "Printed 20" in flat
    for trial in data["trials"]:
        assert f"{trial['trial']} · {trial['product']}: " in flat
        section = squeezed(flat.split(f"{trial['trial']} · {trial['product']}: ", 1)[1])
        texts = source_texts(trial["trial"])
        for c in trial["criteria"]:
            # Compared without spaces: a cell may break a label after a dash. The label,
            # then the source's words in the same cell.
            assert squeezed(f"{c['id']}{c['label']}") in section, (trial["trial"], c["id"])
            assert squeezed(texts[c["id"]][:60]) in section, (trial["trial"], c["id"])
        at = 0
        for row in expected_rows(trial):
            # Row after row, and in the order a row prints them: values, rule, status,
            # reason. (A part's label is not in the JSON: its id alone anchors it.)
            printed = [row["values"], row["rule"], row["status"], row["head"]]
            at = section.index(squeezed(row["id"] + row["label"]), at)
            for cell in filter(None, printed):
                found = section.find(squeezed(cell), at)
                assert found >= 0, (trial["trial"], row["id"], cell)
                at = found
    # A sign-off line per judgment open now: a criterion awaiting review, or a part of one
    # still waiting for data (worklist.open_questions).
    reviews = sum(
        len(c["review"])
        if c["status"] == "review"
        else sum(len(p["review"]) for p in c["parts"] if p["status"] == "review")
        for t in data["trials"]
        for c in t["criteria"]
    )
    assert reviews > 0 and text.count("☐ pass") == reviews
    assert text.count("signature") >= sum(
        any(c["status"] == "review" for c in t["criteria"]) for t in data["trials"]
    )


@pytest.mark.slow
@needs_browser
def test_an_attestation_with_who_and_when_is_printed(tmp_path: Path):
    patient = tmp_path / "attested.yaml"
    patient.write_text(
        EXAMPLE.read_text("utf-8").replace(
            "attestations:\n",
            "attestations:\n"
            "  NCT06559644/E16: {result: pass, by: Dr A. Rivera, date: 2026-11-21}\n",
        ),
        "utf-8",
    )
    text, _ = print_pdf(html_of(patient, tmp_path), tmp_path)
    assert "Dr A. Rivera" in text and "2026-11-21" in text and "attested: pass" in text


def test_every_value_from_the_patient_file_is_escaped(tmp_path: Path):
    patient = tmp_path / "hostile.yaml"
    patient.write_text(
        "id: '<script>alert(1)</script>'\nscreening_date: 2026-11-20\n"
        "conditions:\n  - {type: other, name: '<img src=x onerror=alert(2)>'}\n"
        "'<b>key</b>': 1\n"
        "attestations:\n  NCT06559644/E16: {result: pass, by: '<a href=\"javascript:x\">Dr</a>'}\n",
        "utf-8",
    )
    page = html_of(patient, tmp_path).read_text("utf-8")
    lowered = page.lower()
    for raw in ("<script", "<img", "<a ", "<b>key", 'javascript:x">'):
        assert raw not in lowered, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;a href=&quot;javascript:x&quot;&gt;Dr&lt;/a&gt;" in page
    # Self-contained: nothing fetched from anywhere when printed.
    for outside in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert outside not in lowered.replace("&lt;img src=x", ""), outside


EXAMPLES = sorted((ROOT / "examples" / "patients").glob("*.yaml"))


def _rows(page: str, trial: dict) -> dict[str, list[str]]:
    """The checklist's criterion rows of a trial: id -> its cells, as text."""
    import re
    from html import unescape

    section = page.split(f"<h2>{trial['trial']} · ", 1)[1].split("<h2>", 1)[0]
    body = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = {}
    for row in body.split("<tr>")[1:]:
        cells = [unescape(re.sub("<[^>]+>", " ", c)) for c in row.split("</td>")[:-1]]
        rows[" ".join(cells[0].split())] = [" ".join(c.split()) for c in cells]
    return rows


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_criterion_row_holds_its_source_values_rule_status_and_reason(path: Path):
    page = runner.invoke(app, ["check", str(path), "-f", "html"]).stdout
    for trial in screening(path)["trials"]:
        rows, texts = _rows(page, trial), source_texts(trial["trial"])
        for row in expected_rows(trial):
            ident, what, values, rule, status, reason = rows[row["id"]]
            assert row["label"] in what
            if row["id"] in texts:  # a criterion: its source text, whole, under its label
                assert texts[row["id"]] in what, (trial["trial"], row["id"])
            assert values == row["values"] and rule == row["rule"], (trial["trial"], row["id"])
            assert status.endswith(row["status"]) and _reason(reason) == " ".join(
                row["reason"].split()
            ), (trial["trial"], row["id"])


def test_an_exclusions_rule_says_what_excludes():
    # E2 of Hema-NeoTIL01 excludes NYHA class 3 or 4: "one of 3, 4" alone would read as
    # a requirement beside a patient in class 1 who passes.
    page = runner.invoke(app, ["check", str(EXAMPLE), "-f", "html"]).stdout
    data = screening(EXAMPLE)
    hema = next(t for t in data["trials"] if t["trial"] == "NCT06559644")
    nyha = _rows(page, hema)["E2"]
    assert nyha[3] == "excluded if one of 3, 4" and nyha[4].endswith("pass")
    for trial in data["trials"]:
        kinds = {c["id"]: c["kind"] for c in trial["criteria"]}
        for ident, cells in _rows(page, trial).items():
            rules = [r for r in cells[3].split("; ") if r and not r.startswith("applies only")]
            word = "excluded if " if kinds[ident.split(".")[0]] == "exclusion" else "needs "
            assert all(r.startswith(word) for r in rules), (trial["trial"], ident, cells[3])


def test_the_checklist_forbids_loading_anything():
    page = runner.invoke(app, ["check", str(EXAMPLE), "-f", "html"]).stdout
    head = page.split("</head>", 1)[0]
    assert (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">" in head
    )


def test_html_for_a_directory_is_the_cohort_page_not_a_checklist():
    result = runner.invoke(app, ["check", str(ROOT / "examples" / "patients"), "-f", "html"])
    assert result.exit_code == 0
    assert "Pre-screening checklist" not in result.stdout and "<svg" in result.stdout
