"""Worker processes and signals, with real processes and real signals (issue 19, class 4).

Each test starts `python -m screener check` on a cohort, finds its worker processes in
/proc, and sends one of them (or the parent, or the whole group) a signal while the batch
runs: the batch must finish (or stop as documented), lose no file, leave no worker behind
and never hang. Every wait is bounded, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from screener.cli._batch import screen_file
from screener.criteria._catalog import load_rule_sets
from screener.reports._report import jsonl_line

HERE = Path(__file__).parent
GOOD = HERE.parent / "examples" / "patients" / "first-visit-minimal-record.yaml"
# A worker that hangs the batch is the failure looked for: far above the seconds a run of
# this cohort takes, and still bounded.
BUDGET = 120
RULE_SETS = load_rule_sets()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


def cohort(folder: Path, size: int) -> Path:
    folder.mkdir()
    for i in range(size):
        shutil.copy(GOOD, folder / f"p{i:05}.yaml")
    return folder


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start(folder: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "screener", "check", str(folder), "-f", "jsonl", "-o", str(out)]
        + ["-j", "2", "--as-of", "2026-11-20", *extra],
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group: the test can see (and reap) all of it
    )


def workers_of(child: subprocess.Popen[bytes], out: Path) -> list[int]:
    """The two workers, once the batch is under way (its temporary output exists)."""
    deadline = time.monotonic() + BUDGET
    found: list[int] = []
    while time.monotonic() < deadline and child.poll() is None:
        found = children(child.pid)
        if len(found) >= 2 and list(out.parent.glob(f".{out.name}.*.partial")):
            return found
    raise AssertionError(f"no two workers seen (exit {child.poll()}): make the cohort larger")


def finish(child: subprocess.Popen[bytes]) -> bytes:
    try:
        _, err = child.communicate(timeout=BUDGET)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise AssertionError("the batch hung after a worker was signalled") from None
    return err


def nothing_left(group: int) -> None:
    """No process of the run's group is left (a worker may take a moment to exit)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(group, signal.SIGKILL)
    raise AssertionError("processes of the run outlived it")


def signal_masks(pid: int) -> dict[str, int]:
    """The process's SigIgn and SigCgt masks (signal n is bit n - 1)."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("SigIgn", "SigCgt"):
            found[name] = int(value.split()[0], 16)
    return found


def set_up(pid: int) -> dict[str, int]:
    """A worker's masks once its initializer has run (it ignores SIGINT from then on)."""
    deadline = time.monotonic() + BUDGET
    while time.monotonic() < deadline:
        masks = signal_masks(pid)
        if caught(masks["SigIgn"], signal.SIGINT):
            return masks
        time.sleep(0.01)
    raise AssertionError(f"worker {pid} never finished starting")


def caught(mask: int, signum: int) -> bool:
    return bool(mask >> (signum - 1) & 1)


def test_workers_do_not_inherit_the_parents_termination_handlers(tmp_path):
    """The parent turns SIGTERM and SIGHUP into a clean stop; a worker that did the same
    would survive the pool's own terminate() and keep the pool's shutdown waiting."""
    folder = cohort(tmp_path / "cohort", 1500)
    out = tmp_path / "out.jsonl"
    child = start(folder, out)
    try:
        workers = workers_of(child, out)
        parent = signal_masks(child.pid)["SigCgt"]
        masks = {pid: set_up(pid)["SigCgt"] for pid in workers}
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
    assert caught(parent, signal.SIGTERM) and caught(parent, signal.SIGHUP)
    assert masks
    for pid, mask in masks.items():
        assert not caught(mask, signal.SIGTERM), f"worker {pid} handles SIGTERM"
        assert not caught(mask, signal.SIGHUP), f"worker {pid} handles SIGHUP"


def written(out: Path) -> int:
    """Bytes of output the run has written so far (its temporary file)."""
    sizes = []
    for partial in out.parent.glob(f".{out.name}.*.partial"):
        try:
            sizes.append(partial.stat().st_size)
        except OSError:  # renamed meanwhile: the run is done
            pass
    return max(sizes, default=-1)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.5])
def test_a_worker_signalled_mid_batch_loses_no_file_and_hangs_nothing(tmp_path, signum, share):
    """The signal goes to a worker once `share` of the output is written (the moment by
    the run's progress, not by the clock, whatever the machine's speed)."""
    size = 1500
    folder = cohort(tmp_path / "cohort", size)
    out = tmp_path / "out.jsonl"
    child = start(folder, out)
    workers_of(child, out)
    one = len(jsonl_line(screen_file(str(folder / "p00000.yaml"), RULE_SETS)))
    deadline = time.monotonic() + BUDGET
    while written(out) < share * size * one and child.poll() is None:
        assert time.monotonic() < deadline, "the run wrote nothing"
    victims = children(child.pid)
    assert child.poll() is None and victims, "finished before it could be signalled"
    os.kill(victims[0], signum)
    err = finish(child)
    assert child.returncode == 0, err
    assert b"bug" not in err and b"terminated" not in err, err
    found = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # every file once, in input order, and screened: the lost chunk was screened again
    assert [Path(r["file"]).name for r in found] == [f"p{i:05}.yaml" for i in range(size)]
    assert not [r for r in found if "error" in r]
    nothing_left(child.pid)


def test_a_chunk_whose_worker_dies_twice_becomes_error_records_and_the_batch_goes_on(tmp_path):
    """The first worker is killed; then the fresh worker that screens the lost chunk again
    is killed too: that chunk's files (and only whole chunks) become error records."""
    size = 1500
    folder = cohort(tmp_path / "cohort", size)
    out = tmp_path / "out.jsonl"
    child = start(folder, out)
    first = workers_of(child, out)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + BUDGET
    second = None
    while second is None and time.monotonic() < deadline and child.poll() is None:
        fresh = [pid for pid in children(child.pid) if pid not in first]
        if fresh:
            second = fresh[0]
            os.kill(second, signal.SIGKILL)
    assert second is not None, "no fresh worker was started"
    err = finish(child)
    assert child.returncode == 1, err  # some input could not be screened: exit 1, not 4
    assert b"bug" not in err, err
    found = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [Path(r["file"]).name for r in found] == [f"p{i:05}.yaml" for i in range(size)]
    failed = [r for r in found if "error" in r]
    assert 1 <= len(failed) < size // 2
    assert all("worker process" in r["error"]["message"] for r in failed)
    assert all("bug" not in r["error"]["message"] for r in failed)
    nothing_left(child.pid)


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [(signal.SIGTERM, 143, b"terminated"), (signal.SIGHUP, 129, b"hung up")],
    ids=["TERM", "HUP"],
)
@pytest.mark.parametrize("whom", ["parent", "group"])
def test_a_termination_signal_to_the_parent_or_its_group_is_a_clean_stop(
    tmp_path, signum, status, said, whom
):
    folder = cohort(tmp_path / "cohort", 1500)
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    child = start(folder, out)
    workers_of(child, out)
    (os.kill if whom == "parent" else os.killpg)(child.pid, signum)
    err = finish(child)
    assert child.returncode == status, err
    assert said in err and b"bug" not in err, err
    assert out.read_text() == "old\n"
    assert not list(tmp_path.glob(".out.jsonl.*"))
    nothing_left(child.pid)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_termination_signal_stops_an_export_import_cleanly(tmp_path, signum, status):
    pytest.importorskip("duckdb")
    export = tmp_path / "export"
    export.mkdir()
    bundle = json.loads((HERE / "data" / "fhir").glob("*.json").__next__().read_text())
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    with open(export / "Patient.ndjson", "w", encoding="utf-8") as handle:
        for i in range(20_000):
            handle.write(json.dumps({**patient, "id": f"pt-{i:05}"}) + "\n")
    target = tmp_path / "patients"
    child = subprocess.Popen(
        [sys.executable, "-m", "screener", "import", str(export), "-o", str(target)],
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + BUDGET
    while child.poll() is None and time.monotonic() < deadline:
        if target.is_dir() and len(list(target.glob("*.yaml"))) >= 20:
            break
    assert child.poll() is None, "finished before it could be signalled: make the export larger"
    os.kill(child.pid, signum)
    err = finish(child)
    assert child.returncode == status, err
    assert b"bug" not in err and b"Traceback" not in err, err
    assert not list(target.glob(".*.partial"))
    nothing_left(child.pid)
