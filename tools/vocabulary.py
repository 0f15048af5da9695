"""Regenerate what is made from screener/data/vocabulary.yaml: its JSON twin, the field
reference of docs/patient-format.md and the Observation codes of docs/fhir.md.

Run after changing the vocabulary (or the unit spellings):

    python tools/vocabulary.py

`vocabulary.json` holds the same declarations with the YAML text's digest, so start-up
reads JSON instead of parsing YAML; a stale one is ignored (the YAML is parsed). In the
pages only the sections between their BEGIN/END markers are rewritten; the prose around
them is the pages' own. tests/test_vocabulary.py fails when any of these is stale.
(`screener docs` prints the field reference, with `--rules DIR` for a rules directory's
extended vocabulary.)
"""

from __future__ import annotations

from pathlib import Path

from screener.core import _vocabulary as v
from screener.reports._fields import rewrite

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = (DOCS / "patient-format.md", DOCS / "fhir.md")


if __name__ == "__main__":
    v.JSON_FILE.write_text(v.builtin_json(v.FILE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {v.JSON_FILE}")
    for page in PAGES:
        page.write_text(rewrite(page.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote {page}")
