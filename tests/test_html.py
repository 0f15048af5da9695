"""The cohort page (--format html): self-contained, escaped, and readable in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from screener.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "patients"
BASELINE = Path(__file__).parent / "acceptance" / "patients" / "baseline.yaml"
runner = CliRunner()

ALLOWED = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "h1",
    "h2",
    "h3",
    "p",
    "section",
    "table",
    "tr",
    "th",
    "td",
    "br",
    "code",
    "pre",
    "svg",
    "rect",
    "text",
    "a",  # a matrix row's link to the patient's checklist beside the page (--each)
}


class Page(HTMLParser):
    """The tags, attributes and text of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


HOSTILE_ID = '<script>alert("id")</script>'
HOSTILE_FILE = "<img src=x onerror=alert(1)>.yaml"


def test_values_from_patient_files_are_escaped(tmp_path: Path):
    folder = tmp_path / "cohort"
    folder.mkdir()
    text = BASELINE.read_text("utf-8")
    old = next(line for line in text.splitlines() if line.startswith("id:"))
    (folder / "a.yaml").write_text(text.replace(old, "id: '" + HOSTILE_ID + "'", 1), "utf-8")
    (folder / HOSTILE_FILE).write_text(text.replace(old, "id: '" + HOSTILE_ID + "'", 1), "utf-8")
    (folder / "broken.yaml").write_text('id: x\nlvef: "</pre><script>x()</script>"\n', "utf-8")
    target = tmp_path / "cohort.html"
    result = runner.invoke(app, ["check", str(folder), "-f", "html", "-o", str(target)])
    assert result.exit_code == 1  # the broken file
    page = parse(target.read_text("utf-8"))
    assert {tag for tag, _ in page.tags} <= ALLOWED
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    text = "".join(page.text)
    assert HOSTILE_ID in text  # shown as text, where a browser shows it
    assert HOSTILE_FILE in text  # the duplicate-id warning names the file
    assert "</pre><script>x()</script>" in text  # the broken file's line, in its error


def relative_links(page: Page, folder: Path) -> list[Path]:
    """Every link of a page, each checked to be a plain relative address of a file that
    exists beside the page: nothing is fetched from anywhere, nor from above the folder.
    Anything else that could load (src, action, srcset, data, href on another tag) fails."""
    from urllib.parse import unquote, urlsplit

    targets = []
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if tag == "a" and name == "href":
                assert value and not urlsplit(value).scheme and not urlsplit(value).netloc
                assert "/" not in value and "\\" not in value and not value.startswith(".")
                target = folder / unquote(value)
                assert target.is_file(), value
                targets.append(target)
            elif name in ("src", "href", "action", "srcset", "data"):
                pytest.fail(f"<{tag} {name}={value!r}> would load something")
    return targets


@pytest.mark.parametrize("each", [False, True])
def test_the_page_loads_nothing_from_anywhere(tmp_path: Path, each: bool):
    target = tmp_path / "cohort.html"
    command = ["check", str(EXAMPLES), "-f", "html", "-o", str(target)]
    assert runner.invoke(app, command + (["--each"] if each else [])).exit_code == 0
    page = parse(target.read_text("utf-8"))
    links = relative_links(page, tmp_path)
    assert len(links) == (len(list(EXAMPLES.glob("*.yaml"))) if each else 0)
    csp = next(
        attrs["content"]
        for tag, attrs in page.tags
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp


@pytest.mark.slow
def test_a_headless_browser_prints_the_page_with_its_numbers(tmp_path: Path):
    if not (shutil.which("chromium") and shutil.which("pdftotext")):
        message = "needs Debian's chromium and poppler-utils (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run it, not skip it
        pytest.skip(message)
    target = tmp_path / "cohort.html"
    command = ["check", str(EXAMPLES), "-f", "html", "-o", str(target), "--each"]
    assert runner.invoke(app, command).exit_code == 0
    text = _printed(target, tmp_path)
    examples = len(list((ROOT / "examples" / "patients").glob("*.yaml")))
    assert "Cohort screening summary" in text and f"{examples} patients screened" in text
    for number in range(1, 24):
        assert f"PT-{number:04d}" in text
    # The funnel's numbers are text in the drawing: NCT04546906 screens every example, and
    # CD22 negativity (I2) takes two of them.
    funnel = text.split("NCT04546906 · CD22 CAR-T", 1)[1].split("NCT04684147 · CNCT19", 1)[0]
    assert "I2 CD22 positive by flow cytometry" in funnel and f"{examples - 2} (−2)" in funnel
    assert "E10 Prior CAR-T therapy" in text
    assert "Attrition" in text and "Missing data" in text
    assert "Registry status is withdrawn" in text
    # A checklist the page links to prints too, in the same browser, with its patient.
    href = next(attrs["href"] for tag, attrs in parse(target.read_text("utf-8")).tags if tag == "a")
    checklist = _printed(tmp_path / str(href), tmp_path)
    assert "Pre-screening checklist" in checklist and "PT-0001" in checklist


def _printed(page: Path, tmp_path: Path) -> str:
    """A page printed to PDF by headless Chromium, as pdftotext reads it back."""
    pdf = page.with_suffix(".pdf")
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout


def test_each_writes_every_patients_checklist_beside_the_page_and_links_it(tmp_path: Path):
    folder = tmp_path / "cohort"
    folder.mkdir()
    ids = [
        "PT-1",
        "PT-1",  # a second file of the same id: its own checklist
        "../../etc/passwd",
        HOSTILE_ID,
        "cohort",  # the page's own name
        "Ünïcode id",
        ".hidden",
    ]
    for i, pid in enumerate(ids):
        text = BASELINE.read_text("utf-8")
        old = next(line for line in text.splitlines() if line.startswith("id:"))
        (folder / f"p{i}.yaml").write_text(text.replace(old, f"id: {json.dumps(pid)}", 1), "utf-8")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    target = folder / "cohort.html"  # beside the inputs: none of them is touched
    result = runner.invoke(app, ["check", str(folder), "-f", "html", "-o", str(target), "--each"])
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in folder.glob("*.yaml")} == before
    written = sorted(p.name for p in folder.glob("*.html"))
    assert written == sorted(
        [
            "cohort.html",
            "PT-1.html",
            "PT-1-2.html",
            "_.._etc_passwd.html",
            "_script_alert_id_script_.html",
            "cohort-2.html",
            "_n_code_id.html",
            "hidden.html",
        ]
    )
    page = parse(target.read_text("utf-8"))
    links = relative_links(page, folder)
    assert len(links) == len(ids) == len(set(links))
    # each link is the checklist of the patient on its row
    anchors = [
        (attrs["href"], text)
        for (tag, attrs), text in zip(page.tags, _texts_after(target.read_text("utf-8")))
        if tag == "a"
    ]
    for href, text in anchors:
        checklist = parse((folder / href).read_text("utf-8"))
        assert f"Pre-screening checklist: {text}" in "".join(checklist.text)
    # The next run screens the same patients: the pages written beside them are not input.
    again = runner.invoke(app, ["check", str(folder), "-f", "jsonl"])
    assert len(again.stdout.splitlines()) == len(ids)


def _texts_after(text: str) -> list[str]:
    """Per start tag, the text right after it (an anchor's: the patient id it shows)."""

    class Texts(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.out: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.out.append("")

        def handle_data(self, data: str) -> None:
            if self.out and not self.out[-1]:
                self.out[-1] = data

    parser = Texts()
    parser.feed(text)
    return parser.out


def test_each_for_the_cohort_page_needs_an_output_file(tmp_path: Path):
    for output in ([], ["-o", "-"], ["-o", "/dev/null"]):
        result = runner.invoke(app, ["check", str(EXAMPLES), "-f", "html", "--each", *output])
        assert result.exit_code == 2 and "beside the cohort page" in result.output


def test_the_missing_data_counts_are_those_of_the_records(tmp_path: Path):
    """Across the cohort: per field, the patients some trial's unknown criterion lacks it
    for, as the JSON records say, every count on the page."""
    import re
    from collections import Counter

    target = tmp_path / "cohort.html"
    assert (
        runner.invoke(app, ["check", str(EXAMPLES), "-f", "html", "-o", str(target)]).exit_code == 0
    )
    records = [
        json.loads(line)
        for line in runner.invoke(app, ["check", str(EXAMPLES), "-f", "jsonl"]).stdout.splitlines()
    ]
    expected: Counter[str] = Counter()
    for r in records:
        expected.update(
            {
                name
                for t in r["trials"]
                for c in t["criteria"]
                if c["status"] == "unknown"
                for name in c["missing"]
            }
        )
    section = target.read_text("utf-8").split("Missing data across the cohort", 1)[1]
    shown = {
        name: int(n)
        for name, n in re.findall(
            r"<tr><td><code>([^<]+)</code></td><td class=n>(\d+)</td>", section
        )
    }
    assert shown == dict(expected) and len(shown) > 10
