"""Regenerate the field reference of docs/patient-format.md from the vocabulary.

Run after changing screener/data/vocabulary.yaml (or the unit spellings):

    python tools/patient_format.py

Only the section between the page's BEGIN/END field reference markers is rewritten; the
prose around it is the page's own. tests/test_vocabulary.py fails when the committed page
is stale. (`screener docs` prints the same section, with `--rules DIR` for a rules
directory's extended vocabulary.)
"""

from __future__ import annotations

from pathlib import Path

from screener.reports._fields import rewrite

PAGE = Path(__file__).resolve().parent.parent / "docs" / "patient-format.md"


if __name__ == "__main__":
    PAGE.write_text(rewrite(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {PAGE}")
