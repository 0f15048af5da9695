"""Write the README's example reports from real runs of `screener check`.

A report in README.md is a ```text block under a marker that names its arguments:

    <!-- readme_report: check examples/patients/missing-serology-and-echo.yaml -->

This writes, in each such block, the command line and what it prints at 80 columns (the
width the compact report is laid out for), trailing blanks stripped:

    python tools/readme_report.py

tests/test_nurse_report.py fails while a block differs from what this writes, so the
README never shows a report screener no longer prints.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
WIDTH = 80
_BLOCK = re.compile(
    r"(<!-- readme_report: (?P<args>[^>]+?) -->\n```text\n)(?P<body>.*?)(```)", re.S
)


def output(args: str) -> str:
    """The block's text for `screener ARGS`: the command, then its output at WIDTH columns."""
    from contextlib import chdir

    from typer.testing import CliRunner

    from screener.cli import app

    with chdir(README.parent):  # the paths in the arguments are the project's own
        result = CliRunner().invoke(app, args.split(), env={"COLUMNS": str(WIDTH), "NO_COLOR": "1"})
    lines = [line.rstrip() for line in result.stdout.rstrip("\n").split("\n")]
    return "\n".join([f"$ screener {args}", *lines]) + "\n"


def blocks(text: str) -> list[tuple[str, str]]:
    """Each marked block of a README: (its arguments, the text it holds)."""
    return [(m.group("args"), m.group("body")) for m in _BLOCK.finditer(text)]


def rewritten(text: str) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + output(m.group("args")) + m.group(4), text)


if __name__ == "__main__":
    before = README.read_text("utf-8")
    if not blocks(before):
        sys.exit(f"no '<!-- readme_report: … -->' block in {README}")
    README.write_text(rewritten(before), "utf-8")
    print(f"wrote {len(blocks(before))} report(s) in {README}")
