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


@pytest.mark.slow
@needs_browser
@pytest.mark.parametrize(("page", "size"), [("A4", "(A4)"), ("letter", "(letter)")])
def test_the_printed_checklist_holds_every_criterion_and_a_sign_off_per_review(
    tmp_path: Path, page: str, size: str
):
    text, info = print_pdf(html_of(EXAMPLE, tmp_path), tmp_path, page)
    assert size in info
    data = screening(EXAMPLE)
    assert "PT-0002" in text and data["screener_version"] in text
    assert data["rules_digest"] in text
    flat = " ".join(text.split())
    sections = flat.split(" · ")
    for trial in data["trials"]:
        assert f"{trial['trial']} · {trial['product']}: " in flat
        section = flat.split(f"{trial['trial']} · {trial['product']}: ", 1)[1]
        for c in trial["criteria"]:
            # Compared without spaces: a cell may break a label after a dash.
            assert f"{c['id']}{c['label']}".replace(" ", "") in section.replace(" ", ""), (
                trial["trial"],
                c["id"],
            )
    assert sections
    reviews = sum(
        len(c["review"]) for t in data["trials"] for c in t["criteria"] if c["status"] == "review"
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


def test_html_for_a_directory_is_the_cohort_page_not_a_checklist():
    result = runner.invoke(app, ["check", str(ROOT / "examples" / "patients"), "-f", "html"])
    assert result.exit_code == 0
    assert "Pre-screening checklist" not in result.stdout and "<svg" in result.stdout
