"""The per-patient report as a research nurse reads it: verdicts and blockers first, only what
is not met, a worklist in words, warnings repeated at the end; the same in Markdown."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from rich.cells import cell_len
from typer.testing import CliRunner

from screener.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "patients").glob("*.yaml"))
runner = CliRunner()


def table(*args: str, columns: int = 80) -> list[str]:
    result = runner.invoke(app, ["check", *args], env={"COLUMNS": str(columns)})
    assert result.exit_code in (0, 1), result.output
    return result.stdout.splitlines()


def report(path: Path) -> dict:
    return json.loads(runner.invoke(app, ["check", str(path), "-f", "json"]).stdout)


def verdicts(path: Path) -> dict[str, tuple[str, list[str]]]:
    """Per trial: its verdict as the table prints it, and the ids of what blocks it (a
    failing criterion, or its failing parts)."""
    return {
        t["trial"]: (
            t["verdict"].upper().replace("_", " "),
            [
                i
                for c in t["criteria"]
                if c["status"] == "fail"
                for i in ([p["id"] for p in c["parts"] if p["status"] == "fail"] or [c["id"]])
            ],
        )
        for t in report(path)["trials"]
    }


def blocker_texts(path: Path) -> list[tuple[str, str, str]]:
    """(product, id, "label: why") of every blocker, as the JSON record has it: the why is
    the reason, which gives the value and the rule (an age without where it came from)."""
    out = []
    for t in report(path)["trials"]:
        for c in t["criteria"]:
            if c["status"] != "fail":
                continue
            failing = [p for p in c["parts"] if p["status"] == "fail"]
            for item in failing or [c]:
                why = re.sub(r" \(born [\d-]+, on [\d-]+\)", "", item["reason"])
                out.append((t["product"], item["id"], why))
    return out


def first_section(lines: list[str]) -> int:
    """The line where the details start: after the summary and the legend under it."""
    return next(i for i, line in enumerate(lines) if line.startswith("✔ pass")) + 1


def squeeze(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------- 80 columns, 24 rows


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_a_compact_report_fits_80_lines_with_every_verdict_and_blocker_on_the_first_screen(
    path: Path,
):
    lines = table(str(path), columns=80)
    assert len(lines) <= 80
    # Nothing wider than the screen: each line is one row, so line numbers are rows.
    assert max(cell_len(line) for line in lines) <= 80
    screen = lines[:24]
    for trial, (verdict, failing) in verdicts(path).items():
        at = next(i for i, line in enumerate(screen) if line.startswith(verdict) and trial in line)
        below = screen[at + 1 :]
        for cid in failing:
            assert any(line.startswith(f"  ✘ {cid} ") for line in below), (trial, cid)


@pytest.mark.parametrize(
    "args", [(), ("--all",), ("--verbose",)], ids=["compact", "all", "verbose"]
)
def test_no_text_wraps_past_three_lines_in_a_narrow_column(args: tuple[str, ...]):
    # Text that goes on for more than three lines does so at the width of the screen (a
    # short indent), never in a column pushed right by a wide first one.
    for path in EXAMPLES:
        run = 0
        for line in table(str(path), *args, columns=80):
            indent = len(line) - len(line.lstrip(" "))
            run = run + 1 if line.strip() and indent > 12 else 0
            assert run <= 3, (path.stem, args, line)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_blocker_is_said_whole_with_its_value_and_rule(path: Path):
    # In the summary, or shortened there ("…") and whole further down: never only cut.
    lines = table(str(path), columns=80)
    text = squeeze("\n".join(lines))
    top = squeeze("\n".join(lines[: first_section(lines)]))
    wide = squeeze("\n".join(table(str(path), columns=400)))
    for product, cid, why in blocker_texts(path):
        assert why in wide, (cid, why)  # at 400 columns nothing needs shortening
        whole = f"✘ {cid} "
        assert whole in top
        said_here = why in top
        said_below = f"✘ {product} {cid} " in text and why in text.split(f"✘ {product} {cid} ")[1]
        assert said_here or said_below, (product, cid, why)


def test_a_blocker_gives_the_patients_value_and_the_threshold():
    def summary(name: str) -> str:
        lines = table(str(ROOT / "examples" / "patients" / name), columns=400)
        return "\n".join(lines[: first_section(lines)])

    assert "✘ I4 Age 3 to 18 years: age 23 years > 18 years" in summary("relapsed-t-all.yaml")
    assert "(born" not in summary("relapsed-t-all.yaml")
    ecog = summary("life-expectancy-90-days-ecog-2.yaml")
    assert "✘ I7 ECOG 0–1: ECOG 2 > 1" in ecog
    assert "life expectancy 90 days (= 2.96 months) ≤ 3 months" in ecog
    assert "CD19 result: negative on 2026-11-03 (not positive)" in summary(
        "prior-cd19-car-t-relapse.yaml"
    )


def test_a_blocker_with_no_recorded_value_still_says_what_blocks():
    # CNCT19 I5 and ThisCART19A I4 compare no single value; LstCAR019 I2 is attested.
    imatinib = squeeze(
        "\n".join(table(str(ROOT / "examples" / "patients" / "ph-positive-imatinib-only.yaml")))
    )
    assert "TKI generations failed or not tolerated: 1 (≥ 2 required)" in imatinib
    assert "different TKIs failed: 1 (≥ 2 required)" in imatinib
    attested = table(str(ROOT / "examples" / "patients" / "prior-cd19-car-t-relapse.yaml"))
    line = next(x for x in attested if x.startswith("  ✘ I2 CD19 expression"))
    assert "investigator attested" in line


def test_caveats_are_given_once():
    texts = [c for t in report(EXAMPLES[0])["trials"] for c in t["caveats"]]
    assert len(texts) == 7
    for path in EXAMPLES:
        compact = squeeze("\n".join(table(str(path), columns=80)))
        every = squeeze("\n".join(table(str(path), "--all", columns=80)))
        for caveat in texts:
            assert compact.count(caveat[:50]) <= 1, (path.stem, caveat)
            assert every.count(caveat[:50]) == 1, (path.stem, caveat)


def test_a_caveat_stands_whole_beside_an_eligible_verdict_and_is_pointed_to_otherwise():
    lines = table(str(ROOT / "examples" / "patients" / "complete-record-b-all.yaml"), columns=80)
    text = squeeze("\n".join(lines))
    # HY004 needs review: its withdrawn registration is said in full.
    assert "* HY004: Registry status is withdrawn (last update 2025-08-08); confirm the" in text
    # The paediatric trial is ineligible anyway: named, its caveat given with --all.
    assert "* CD19 CAR-T (paediatric): their caveats with --all" in text
    minimal = table(str(ROOT / "examples" / "patients" / "first-visit-minimal-record.yaml"))
    assert not any(line.startswith("* ") for line in minimal)  # none qualifies a verdict yet
    assert any(line.startswith("✔ pass") and line.endswith("* caveat: --all") for line in minimal)


def test_the_legend_is_printed_once():
    for path in EXAMPLES:
        lines = table(str(path), columns=80)
        assert sum(line.startswith("✔ pass  ✘ fail") for line in lines) == 1, path.stem


def test_an_ineligible_trial_is_told_by_its_blockers_and_listed_whole_with_all():
    path = str(ROOT / "examples" / "patients" / "relapsed-t-all.yaml")
    compact, everything = table(path, columns=80), table(path, "--all", columns=80)
    # No section for a trial the patient is ineligible for: the summary says why.
    assert not any("NCT04546906 · CD22 CAR-T" in line for line in compact)
    assert any("NCT04546906 · CD22 CAR-T" in line for line in everything)
    assert any("Age 2 to 70 years" in line for line in everything)


@pytest.mark.parametrize(
    "args",
    [
        ("relapsed-t-all.yaml",),
        ("life-expectancy-90-days-ecog-2.yaml",),
        ("stale-cd19-marker.yaml", "-t", "CNCT19"),
    ],
    ids=["ineligible-everywhere", "shortened-blockers", "one-trial"],
)
def test_the_same_summary_closes_the_report(args: tuple[str, ...]):
    lines = [
        line.rstrip()
        for line in table(str(ROOT / "examples" / "patients" / args[0]), *args[1:], columns=80)
    ]
    begin = next(i for i, line in enumerate(lines) if re.match(r"[A-Z ]{12} NCT", line))
    opening = lines[begin : first_section(lines) - 1]  # after the header, before the legend
    closing = lines[lines.index("Verdicts") + 1 :]
    assert closing == opening
    assert sum("NCT" in line for line in closing) == (1 if len(args) > 1 else 7)


def test_passing_criteria_are_counted_not_listed_unless_all():
    path = str(ROOT / "examples" / "patients" / "complete-record-b-all.yaml")
    compact, everything = "\n".join(table(path)), "\n".join(table(path, "--all"))
    assert "Age 2 to 70 years" not in compact and "pass (--all)" in compact
    assert "Age 2 to 70 years" in everything


def test_criteria_that_need_data_are_named_once_and_collected_in_the_worklist():
    out = "\n".join(
        table(str(ROOT / "examples" / "patients" / "first-visit-minimal-record.yaml"), columns=200)
    )
    assert " INCOMPLETE  NCT04684147 · CNCT19  ? need data: I1 I3–I10" in out  # by id only
    assert "CD19 and CD22 by flow cytometry" in out
    flow = next(line for line in out.splitlines() if "by flow cytometry" in line)
    assert "CNCT19 I4" in flow and "HY004 I4" in flow
    # Words for people, never a field path.
    assert "diagnosis.markers" not in out and "labs.ast" not in out
    conditions = next(line for line in out.splitlines() if "• conditions" in line)
    assert "ask about" in conditions and "gvhd" in conditions


def test_a_patient_ineligible_everywhere_gets_a_one_line_worklist():
    lines = table(str(ROOT / "examples" / "patients" / "relapsed-t-all.yaml"), columns=80)
    todo = [i for i, line in enumerate(lines) if line.startswith("To do")]
    assert len(todo) == 1
    assert "nothing that could change a verdict" in lines[todo[0]]
    assert cell_len(lines[todo[0]].rstrip()) <= 80  # one line at 80 columns too
    # Eligible for some, ineligible for the others: one line too.
    some = table(str(ROOT / "examples" / "patients" / "age-70-on-screening-day.yaml"))
    (line,) = [line for line in some if line.startswith("To do")]
    assert "nothing that could change a verdict" in line and some[some.index(line) + 1] == ""
    assert lines[todo[0] + 1] == ""  # the next thing is the closing summary
    everything = "\n".join(
        table(str(ROOT / "examples" / "patients" / "relapsed-t-all.yaml"), "--all", columns=200)
    )
    assert "tests to order" in everything or "to ask the patient" in everything


def test_an_ineligible_trial_adds_nothing_to_the_worklist(tmp_path: Path):
    lines = "\n".join(
        table(str(ROOT / "examples" / "patients" / "full-record-ph-positive.yaml"), columns=200)
    )
    assert "To do (nothing for the trials ineligible anyway: --all)" in lines
    assert "HY004 E" not in lines.split("To do", 1)[1].split("for the investigator")[0]
    assert (
        "HY004 E"
        in "\n".join(
            table(str(ROOT / "examples" / "patients" / "full-record-ph-positive.yaml"), "--all")
        ).split("To do", 1)[1]
    )


def test_warnings_are_counted_at_the_end_with_the_criteria_they_left_unknown(tmp_path: Path):
    patient = tmp_path / "typo.yaml"
    text = (ROOT / "tests" / "acceptance" / "patients" / "baseline.yaml").read_text("utf-8")
    patient.write_text(text.replace("ecog: 1", "ecgo: 1"), "utf-8")
    lines = table(str(patient), columns=200)
    assert lines[0].endswith("· 1 warning (at the end)")  # said at the top, given at the end
    end = "\n".join(lines[[i for i, x in enumerate(lines) if x.startswith("To do")][0] :])
    assert "1 warning about the file" in end
    assert "ecgo" in end
    left = next(line for line in end.splitlines() if "left unknown" in line)
    assert "CNCT19 I7" in left and "Hema-NeoTIL01 I6" in left


# --------------------------------------------------------------------------------- Markdown


def _tables(markdown: str) -> tuple[int, int]:
    """How many tables the text means (a header row followed by |---|), and how many a
    CommonMark renderer with GFM tables renders."""
    lines = markdown.splitlines()
    meant = sum(1 for a, b in zip(lines, lines[1:]) if a.startswith("|") and b.startswith("|---"))
    rendered = sum(
        t.type == "table_open" for t in MarkdownIt("commonmark").enable("table").parse(markdown)
    )
    return meant, rendered


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_markdown_table_renders_as_a_table(path: Path):
    out = runner.invoke(app, ["check", str(path), "-f", "markdown"]).stdout
    meant, rendered = _tables(out)
    assert meant >= 2 and rendered == meant


def test_the_cohort_markdown_renders_every_table():
    out = runner.invoke(
        app, ["check", str(ROOT / "examples" / "patients"), "-f", "markdown", "--each"]
    ).stdout
    meant, rendered = _tables(out)
    assert meant > 20 and rendered == meant


def test_a_caveat_quote_is_closed_before_the_table_that_follows():
    out = runner.invoke(app, ["check", str(EXAMPLES[0]), "-f", "markdown", "-t", "CNCT19"]).stdout
    lines = out.splitlines()
    quote = max(i for i, line in enumerate(lines) if line.startswith("> NCT04684147 · CNCT19:"))
    assert lines[quote + 1] == ""
    assert lines[lines.index("### Caveats") + 1] == ""


def test_a_judgment_open_beside_missing_data_is_asked_now(tmp_path: Path):
    # NCT05679687 I7: marrow function is the investigator's (review) while the oxygen part
    # waits for data: the criterion is unknown, but its question must not wait a run.
    patient = tmp_path / "a5.yaml"
    patient.write_text(
        "id: A5\nscreening_date: 2026-11-20\nbirth_date: 1980-05-10\nsex: female\n"
        "weight: 60 kg\ninformed_consent: true\nhsct_planned: true\n"
        "diagnosis: {disease: B-ALL, status: relapsed, bone_marrow_blasts: 30 %,"
        " ph_positive: false, markers: {CD19: {result: positive, specimen: bone marrow,"
        " date: 2026-11-10}}}\necog: 1\nlife_expectancy: 6 months\nlvef: 60 %\nspo2: 97 %\n"
        "labs: {creatinine: {value: 0.8 mg/dL, uln: 1.1 mg/dL}, alt: {value: 20 U/L, uln: 40 U/L},"
        " ast: {value: 20 U/L, uln: 40 U/L}, total_bilirubin: {value: 0.5 mg/dL, uln: 1.2 mg/dL}}\n",
        "utf-8",
    )
    out = "\n".join(table(str(patient), "-t", "NCT05679687", columns=200))
    todo = out.split("To do", 1)[1]
    assert "marrow function adequate for lymphodepletion" in todo
    assert "on supplemental oxygen" in todo
    page = runner.invoke(app, ["check", str(patient), "-t", "NCT05679687", "-f", "html"]).stdout
    assert page.count("☐ pass") == 1  # a sign-off line for it on the chart checklist too


def test_a_blood_count_is_its_own_test_not_blood_chemistry():
    out = table(str(ROOT / "examples" / "patients" / "relapsed-t-all.yaml"), "--all", columns=200)
    (line,) = [line for line in out if "•" in line and "haemoglobin" in line]
    assert "• blood count: haemoglobin, platelets —" in line
    assert not any("chemistry" in line and "platelets" in line for line in out)


def _typos(tmp_path: Path) -> Path:
    """The baseline patient with two nested keys misspelt and one key too long for a line."""
    patient = tmp_path / "typos.yaml"
    text = (ROOT / "tests" / "acceptance" / "patients" / "baseline.yaml").read_text("utf-8")
    text = text.replace("\n  ast:", "\n  asst:").replace("  hiv: negative", "  hvi: negative")
    patient.write_text(text + "extramedullary_details_" + "and_more_" * 10 + "x: 1\n", "utf-8")
    return patient


def test_a_typo_in_a_nested_key_names_the_criteria_it_left_unknown(tmp_path: Path):
    lines = table(str(_typos(tmp_path)), columns=80)
    end = lines[next(i for i, x in enumerate(lines) if "warnings about the file" in x) :]

    def left_after(key: str) -> str:
        at = next(i for i, x in enumerate(end) if f"unknown key {key}" in x)
        return " ".join(next(x for x in end[at:] if "left unknown" in x).split())

    ast, hiv = left_after("labs.asst"), left_after("serology.hvi")
    assert "CNCT19 I8" in ast and "ThisCART19A I7" in ast and "Hema-NeoTIL01 I9" in ast
    assert "HY004 E8" in hiv and "Hema-NeoTIL01 E10" in hiv


def test_a_warnings_caret_stays_under_its_column_at_80_columns(tmp_path: Path):
    lines = table(str(_typos(tmp_path)), columns=80)
    quoted = [i for i, x in enumerate(lines) if x.lstrip()[:1].isdigit() and " | " in x]
    assert len(quoted) == 3
    for i in quoted:
        source, caret = lines[i], lines[i + 1]
        # The key is quoted on one line, whatever its length, and the caret is under it.
        assert caret.rstrip().endswith("^") and caret.strip().startswith("|")
        column = len(caret.rstrip()) - 1
        assert source[column] not in " |", (source, caret)
    assert any(len(lines[i]) > 80 for i in quoted)  # the long key's line, not folded


def test_markdown_and_the_checklist_give_each_warning_as_written(tmp_path: Path):
    patient = _typos(tmp_path)
    out = runner.invoke(app, ["check", str(patient), "-f", "markdown"]).stdout
    blocks = [
        t.content
        for t in MarkdownIt("commonmark").enable("table").parse(out)
        if t.type == "fence" and "warning:" in t.content
    ]
    assert len(blocks) == 3
    for block in blocks:
        header, source, caret, *hint = block.rstrip("\n").split("\n")
        assert ": warning: unknown key " in header and all(h.startswith("hint: ") for h in hint)
        assert source[len(caret) - 1] != " " and caret.endswith("^")
    assert "Left unknown: CNCT19 I8" in out
    page = runner.invoke(app, ["check", str(patient), "-f", "html"]).stdout
    pres = [p.split("</pre>", 1)[0] for p in page.split('<pre class="warning">')[1:]]
    assert len(pres) == 3
    assert all(p.split("\n")[2].endswith("^") for p in pres)
    assert "left unknown: CNCT19 I8" in page


# ------------------------------------------------------ judgments that wait for their data

MINIMAL = ROOT / "examples" / "patients" / "first-visit-minimal-record.yaml"


def test_a_judgment_whose_premise_is_unknown_is_not_asked_but_its_data_is():
    # No serology, no CD22, no therapies: "the positive syphilis serology is a current
    # infection" or "the CD22-positive result predates a CD22-directed therapy" cannot be
    # judged yet; the worklist asks for the serology and the marker instead.
    out = "\n".join(table(str(MINIMAL), columns=200))
    todo = out.split("To do", 1)[1]
    for premature in (
        "syphilis serology is a current",
        "CD22-positive result predates",
        'readings of "failed 2 generation of TKI"',
        "SpO2 of 90–94 %",
    ):
        assert premature not in todo, premature
    virology = next(line for line in todo.splitlines() if "• virology" in line)
    assert "syphilis" in virology and "CD22 CAR-T E6 E7" in virology
    assert "CD19 and CD22 by flow cytometry" in todo
    # A judgment beside missing data, not hanging on it, is asked now.
    assert "marrow function adequate for lymphodepletion" in todo


def test_once_its_premise_is_known_the_judgment_is_asked(tmp_path: Path):
    patient = tmp_path / "syphilis.yaml"
    text = (ROOT / "examples" / "patients" / "complete-record-b-all.yaml").read_text("utf-8")
    assert "  syphilis: negative" in text
    patient.write_text(text.replace("  syphilis: negative", "  syphilis: positive"), "utf-8")
    out = "\n".join(table(str(patient), "-t", "NCT04546906", columns=200))
    assert "syphilis serology is a current syphilis infection" in out
    page = runner.invoke(app, ["check", str(patient), "-t", "NCT04546906", "-f", "html"]).stdout
    sign = page.split("Investigator's decisions", 1)[1]
    assert "syphilis serology is a current syphilis infection" in sign


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_sign_off_line_is_a_judgment_open_now(path: Path):
    data = json.loads(runner.invoke(app, ["check", str(path), "-f", "json"]).stdout)
    open_now, waiting = [], []
    for t in data["trials"]:
        for c in t["criteria"]:
            live = (
                c["review"]
                if c["status"] == "review"
                else [r for p in c["parts"] if p["status"] == "review" for r in p["review"]]
                if c["status"] == "unknown"
                else []
            )
            open_now += live
            waiting += [r for r in c["review"] if r not in live and c["status"] == "unknown"]
    page = runner.invoke(app, ["check", str(path), "-f", "html"]).stdout
    rows = [
        [unescape(cell) for cell in row.split("</td><td>")]
        for block in page.split("Investigator's decisions")[1:]
        for row in block.split("</table>", 1)[0].split('<tr class="sign">')[1:]
    ]
    # (id, question, decision, …): an attested criterion keeps its line, as decided.
    signed = [cells[1] for cells in rows if not cells[2].startswith("attested")]
    assert sorted(signed) == sorted(q for q in open_now)
    assert not set(signed) & (set(waiting) - set(open_now))


def test_the_readmes_report_is_what_screener_prints():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "readme_report", ROOT / "tools" / "readme_report.py"
    )
    assert spec and spec.loader
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    found = tool.blocks((ROOT / "README.md").read_text("utf-8"))
    assert found, "README.md shows no generated report"
    for args, body in found:
        assert body == tool.output(args), "README.md is stale: run python tools/readme_report.py"
        assert len(body.splitlines()) <= 81  # the command, and a report of at most 80 lines


def test_a_man_is_asked_for_reproductive_potential_not_childbearing(tmp_path: Path):
    # Hema-NeoTIL01 I10.b: a man's fertility is not "childbearing"; the question asked of a
    # man whose record says nothing of it is his reproductive potential.
    base = (ROOT / "tests" / "acceptance" / "patients" / "baseline.yaml").read_text("utf-8")
    man = (
        base.replace("sex: female", "sex: male")
        .replace("childbearing_potential: true\n", "")
        .replace("contraception_agreed: true", "contraception_agreed: false")
    )
    patient = tmp_path / "man.yaml"
    patient.write_text(man, "utf-8")
    todo = "\n".join(table(str(patient), "-t", "NCT06559644", columns=200)).split("To do", 1)[1]
    assert "reproductive potential — Hema-NeoTIL01 I10" in todo
    assert "childbearing potential" not in todo
    stated = tmp_path / "stated.yaml"
    stated.write_text(man.replace("sex: male", "sex: male\nreproductive_potential: false"), "utf-8")
    out = "\n".join(table(str(stated), "-t", "NCT06559644", columns=200))
    assert "reproductive potential" not in out.split("To do", 1)[-1]


@pytest.mark.parametrize(
    ("trial", "body", "asked", "unsaid"),
    [
        # CNCT19 I5: a TKI whose generation is unknown (a typo): the readings may agree
        # (imatinib + dasatinib: two generations), so nothing "disagrees" yet.
        (
            "NCT04684147",
            "diagnosis: {disease: B-ALL, status: relapsed, ph_positive: true, abl1_mutations: []}\n"
            "therapies: [{type: tki, drug: imatinib, outcome: failed},"
            " {type: tki, drug: dasatinb, outcome: failed}]\n",
            "TKI generation",
            "disagree for this patient",
        ),
        # Hema-NeoTIL01 I8.b: no SpO2 at all is not an SpO2 of 90–94 %.
        ("NCT06559644", "supplemental_oxygen: false\n", "SpO2", "90–94 %"),
        # Hema-NeoTIL01 E13: the route decides whether the steroid counts at all.
        (
            "NCT06559644",
            "medications: [{name: prednisone, class: corticosteroid, stop_date: 2026-11-10}]\n",
            "route",
            "given as immunosuppression",
        ),
    ],
)
def test_a_question_is_not_asked_before_the_data_it_presupposes(
    tmp_path: Path, trial: str, body: str, asked: str, unsaid: str
):
    patient = tmp_path / "p.yaml"
    patient.write_text("id: P\nscreening_date: 2026-11-20\nsex: female\n" + body, "utf-8")
    out = "\n".join(table(str(patient), "-t", trial, columns=300))
    assert asked in out.split("To do", 1)[1]
    assert unsaid not in out
    data = json.loads(runner.invoke(app, ["check", str(patient), "-t", trial, "-f", "json"]).stdout)
    assert not any(unsaid in r for t in data["trials"] for c in t["criteria"] for r in c["review"])


def test_a_report_that_would_run_past_80_lines_names_its_questions_instead():
    # This patient's questions (CD22 CAR-T I1's reading dispute alone is six lines) would
    # take the compact report past 80 lines at 80 columns: it names them, and says where
    # they are; --all quotes them.
    path = str(ROOT / "examples" / "patients" / "active-gvhd-after-allo-transplant.yaml")
    compact, everything = table(path, columns=80), "\n".join(table(path, "--all", columns=80))
    assert len(compact) <= 80
    assert any(
        line.rstrip() == "⚑ I1  Relapsed/refractory B-ALL (situation 1, 2 or 3)" for line in compact
    )
    assert any("CD22 CAR-T I1 E10" in line and "(questions: --all)" in line for line in compact)
    assert "Which reading does the protocol intend?" in everything
    # A report with room quotes them.
    roomy = "\n".join(table(str(ROOT / "examples" / "patients" / "complete-record-b-all.yaml")))
    assert "any situation that would increase the" in roomy and "(questions above)" in roomy
