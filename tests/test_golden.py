"""The JSON a script reads is the same bytes, change after change.

`screener check FILE --format json` (and `--format jsonl` of a whole folder) for every
example and acceptance patient, screened on a fixed date, is compared with the files under
tests/data/golden/. A refactoring that changes one byte of them changes behaviour a user
relies on; a deliberate change (a new field, a reworded reason) regenerates them and the
diff is reviewed with the change:

    python tests/test_golden.py      # rewrites tests/data/golden/ from the current code
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from screener.cli import app

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"
FOLDERS = ("examples/patients", "tests/acceptance/patients")
AS_OF = "2026-11-20"  # files without a screening_date are screened on this day, not today
# The version a report names changes with every release, not with behaviour: it is kept out
# of the comparison, so a release does not rewrite every golden file.
_VERSION = re.compile(rb'("screener_version": ?)"[^"]*"')


def patient_files() -> list[str]:
    """Every example and acceptance patient, as the path a user types from the root."""
    return [
        path.relative_to(ROOT).as_posix() for folder in FOLDERS for path in _yaml(ROOT / folder)
    ]


def _yaml(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml"))


def outputs() -> Iterator[tuple[str, list[str]]]:
    """(golden file, command line) for each output compared: one JSON report per patient,
    and each folder's JSON Lines (the bytes the cohort path assembles)."""
    for name in patient_files():
        yield f"json/{name.replace('/', '__')}.json", [name, "--format", "json"]
    for folder in FOLDERS:
        yield f"jsonl/{folder.replace('/', '__')}.jsonl", [folder, "--format", "jsonl"]


def screen(args: list[str]) -> bytes:
    """The command's standard output, run from the root so paths read as in the README."""
    here = Path.cwd()
    os.chdir(ROOT)
    try:
        result = CliRunner().invoke(app, ["check", *args, "--as-of", AS_OF, "--jobs", "1"])
    finally:
        os.chdir(here)
    # Exit 0 or the verdict's status: only an input or usage error would mean a broken run.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.stdout_bytes, result.output
    return _VERSION.sub(rb'\1"(any)"', result.stdout_bytes)


@pytest.mark.parametrize(("golden", "args"), [pytest.param(*o, id=o[0]) for o in outputs()])
def test_output_is_the_golden_bytes(golden: str, args: list[str]):
    expected = (GOLDEN / golden).read_bytes()
    assert screen(args) == expected, (
        f"{' '.join(args)} differs from tests/data/golden/{golden}; if the change is "
        "meant, regenerate with `python tests/test_golden.py` and review the diff"
    )


def test_every_patient_has_a_golden_file():
    # A new example without a golden file would go unchecked; a stale one hides nothing.
    expected = {golden for golden, _ in outputs()}
    found = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()}
    assert found == expected
    assert len([g for g in expected if g.startswith("json/")]) == len(patient_files()) > 20


def regenerate() -> None:
    for old in GOLDEN.rglob("*"):
        if old.is_file():
            old.unlink()
    for golden, args in outputs():
        target = GOLDEN / golden
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(screen(args))
        print(f"wrote tests/data/golden/{golden}")


if __name__ == "__main__":
    sys.exit(regenerate())
