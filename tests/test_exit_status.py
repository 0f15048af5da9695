"""Every command's exit status for the ordinary I/O failures, as README's table gives them
(issue 19, class 5): a closed standard output, a broken pipe and a closed standard error
are neither "a bug in screener" (4) nor "an input failed" (1).

Each command runs as a real process with the descriptor really closed (`>&-`, `2>&-`) or
its pipe's reader gone before the first byte.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
GOOD = HERE.parent / "examples" / "patients" / "first-visit-minimal-record.yaml"
BUNDLE = sorted((HERE / "data" / "fhir").glob("*.json"))[0]
CASES = HERE / "cases" / "NCT05571540.cases.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cohort of three patients and a screening log of two runs of it."""
    folder = tmp_path_factory.mktemp("exit")
    (folder / "cohort").mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(GOOD, folder / "cohort" / f"{name}.yaml")
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "screener", "check", str(folder / "cohort")]
            + ["--log", str(folder / "log.db"), "--as-of", "2026-11-20", "-f", "jsonl"],
            capture_output=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    return folder


# Every command that writes to standard output, with arguments that make it succeed.
COMMANDS = {
    "check": lambda p: ["check", str(GOOD), "--as-of", "2026-11-20"],
    "check-batch": lambda p: ["check", str(p / "cohort"), "-f", "jsonl", "-j", "2"],
    "check-table": lambda p: ["check", str(p / "cohort"), "--each", "--as-of", "2026-11-20"],
    "validate": lambda p: ["validate", str(p / "cohort")],
    "trials": lambda p: ["trials"],
    "show": lambda p: ["show", "NCT06559644"],
    "test": lambda p: ["test", str(CASES)],
    "import": lambda p: ["import", str(BUNDLE), "--as-of", "2026-11-20"],
    "docs": lambda p: ["docs"],
    "schema": lambda p: ["schema", "patient"],
    "log": lambda p: ["log", "--log", str(p / "log.db")],
    "changes": lambda p: ["changes", "--log", str(p / "log.db")],
}


def shell(args: list[str], redirect: str) -> subprocess.CompletedProcess[bytes]:
    quoted = " ".join(f"'{a}'" for a in [sys.executable, "-m", "screener", *args])
    return subprocess.run(
        ["sh", "-c", f"exec {quoted} {redirect}"], capture_output=True, timeout=300
    )


def one_line_not_a_bug(err: bytes) -> list[bytes]:
    assert b"Traceback" not in err and b"bug in screener" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_closed_standard_output_is_exit_5_for_every_command(place, name):
    run = shell(COMMANDS[name](place), ">&-")
    assert run.returncode == 5, run.stderr
    assert b"standard output is closed" in one_line_not_a_bug(run.stderr)[0]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_broken_pipe_is_exit_5_for_every_command(place, name):
    child = subprocess.Popen(
        [sys.executable, "-m", "screener", *COMMANDS[name](place)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    child.stdout.close()  # the reader is gone before the first byte: `| true`
    _, err = child.communicate(timeout=300)
    assert child.returncode == 5, err
    assert one_line_not_a_bug(err) == [b"output closed before it was complete (broken pipe)"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_closed_standard_error_changes_nothing(place, name):
    """Cron and daemons run with descriptor 2 closed: the run, its output and its status
    are those of a run with standard error open (the messages are lost, nothing else)."""
    args = COMMANDS[name](place)
    plain = shell(args, "2>/dev/null")
    closed = shell(args, "2>&-")
    assert closed.returncode == plain.returncode == 0, closed.stdout[-500:]
    assert closed.stdout == plain.stdout


def test_a_closed_standard_error_with_a_bad_file_is_exit_1_with_its_record(place, tmp_path):
    shutil.copytree(place / "cohort", tmp_path / "cohort")
    (tmp_path / "cohort" / "bad.yaml").write_text("id: [\n")
    run = shell(["check", str(tmp_path / "cohort"), "-f", "jsonl", "-j", "2"], "2>&-")
    assert run.returncode == 1
    assert run.stdout.count(b"\n") == 4 and b'"error"' in run.stdout
