"""--engine dask (screener/cli/_engines.py) on a real two-worker-process LocalCluster.

The same bytes as the local engine, for a bulk export and for a folder of patient files,
and no patient lost or repeated when a worker is killed in the middle of a run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

# Every test here runs on the module's LocalCluster of worker processes.
pytestmark = pytest.mark.slow

pytest.importorskip("duckdb")
distributed = pytest.importorskip("distributed")

from test_bulk import BUNDLES, make_export  # noqa: E402

from screener.cli import app  # noqa: E402
from screener.cli._batch import expand, run  # noqa: E402
from screener.cli._engines import run_export, run_files  # noqa: E402
from screener.criteria import _catalog as catalog  # noqa: E402
from screener.reading import _bulk as bulk
from screener.reports._report import jsonl_line  # noqa: E402

AS_OF = dt.date(2026, 11, 20)
RULE_SETS = catalog.load_rule_sets()
EXAMPLES = Path(__file__).parent.parent / "examples" / "patients"


@pytest.fixture(scope="module")
def cluster():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never a clash with a running cluster
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield cluster, client


def _many(folder: Path, copies: int) -> None:
    """An export of `copies` copies of each sample bundle's patient, each under its own id."""
    make_export(folder, BUNDLES)
    for path in sorted(folder.glob("*.ndjson")):
        lines = path.read_text(encoding="utf-8").splitlines()
        with path.open("a", encoding="utf-8") as out:
            for copy in range(1, copies):
                out.write("".join(_renamed(line, f"c{copy:03d}-") + "\n" for line in lines))


def _renamed(line: str, prefix: str) -> str:
    """A resource of another patient: its id and its patient's id prefixed."""
    data = json.loads(line)
    data["id"] = prefix + data["id"]
    for key in ("subject", "patient"):
        patient = bulk.patient_key(data.get(key))
        if patient is not None:
            data[key]["reference"] = data[key]["reference"].replace(patient, prefix + patient)
    return json.dumps(data)


def local(folder: Path) -> list[bytes]:
    return [d.data for d in run_export(str(folder), RULE_SETS, AS_OF, render=jsonl_line)]


def test_an_export_on_the_cluster_is_the_same_bytes_as_the_local_run(tmp_path, cluster):
    _, client = cluster
    make_export(tmp_path / "export")
    expected = local(tmp_path / "export")
    got = [
        d.data
        for d in run_export(
            str(tmp_path / "export"),
            RULE_SETS,
            AS_OF,
            render=jsonl_line,
            engine="dask",
            scheduler=client,
            partition=2,
        )
    ]
    assert got == expected and len(got) == 6


def test_the_cli_points_at_a_scheduler_address(tmp_path, cluster):
    dask_cluster, _ = cluster
    make_export(tmp_path / "export")
    out = tmp_path / "dask.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "check",
            str(tmp_path / "export"),
            "--as-of",
            "2026-11-20",
            "-f",
            "jsonl",
            "-o",
            str(out),
            "--engine",
            "dask",
            "--scheduler",
            dask_cluster.scheduler_address,
        ],
    )
    assert result.exit_code == 1, result.output  # two of the patients died
    assert out.read_bytes() == b"".join(local(tmp_path / "export"))
    usage = CliRunner().invoke(app, ["check", str(tmp_path / "export"), "--engine", "dask"])
    assert usage.exit_code == 2 and "--scheduler" in usage.output


def test_a_folder_of_patient_files_on_the_cluster_is_the_same_bytes(tmp_path, cluster):
    _, client = cluster
    folder = tmp_path / "cohort"
    shutil.copytree(EXAMPLES, folder)
    (folder / "broken.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    shutil.copy(BUNDLES[0], folder / "bundle.json")
    entries = expand([str(folder)])
    expected = [d.data for d in run(entries, RULE_SETS, AS_OF, render=jsonl_line)]
    got = [
        d.data
        for d in run_files(
            entries, RULE_SETS, AS_OF, render=jsonl_line, scheduler=client, partition=3
        )
    ]
    assert got == expected and len(got) == len(entries) > 5


def test_a_worker_killed_mid_run_loses_and_repeats_no_patient(tmp_path, cluster):
    _, client = cluster
    folder = tmp_path / "export"
    _many(folder, 10)
    expected = local(folder)
    assert len(expected) == 60
    pids = client.run(os.getpid)
    got = []
    killed = False
    for done in run_export(
        str(folder),
        RULE_SETS,
        AS_OF,
        render=jsonl_line,
        engine="dask",
        scheduler=client,
        partition=2,
    ):
        got.append(done.data)
        if len(got) == 4 and not killed:
            # a real SIGKILL of one worker process while partitions are in flight on both
            os.kill(next(iter(pids.values())), signal.SIGKILL)
            killed = True
    assert killed
    assert got == expected
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it, for the next test


def test_every_worker_killed_mid_run_the_restarted_ones_still_have_the_settings(tmp_path, cluster):
    # No worker that saw the run's start survives: what the run's settings were must come
    # from the scheduler (a worker plugin), not from a copy held by a worker.
    _, client = cluster
    client.wait_for_workers(2, timeout=60)
    folder = tmp_path / "export"
    _many(folder, 10)
    expected = local(folder)
    pids = client.run(os.getpid)
    got = []
    for done in run_export(
        str(folder),
        RULE_SETS,
        AS_OF,
        render=jsonl_line,
        engine="dask",
        scheduler=client,
        partition=2,
    ):
        got.append(done.data)
        if len(got) == 4:
            for pid in pids.values():
                os.kill(pid, signal.SIGKILL)
    assert got == expected
    assert set(client.run(os.getpid).values()).isdisjoint(pids.values())
    client.wait_for_workers(2, timeout=60)


def test_a_cohort_folder_on_the_cluster_from_the_cli_and_an_unreachable_scheduler(
    tmp_path, cluster
):
    dask_cluster, _ = cluster
    out = tmp_path / "dask.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "check",
            str(EXAMPLES),
            "--as-of",
            "2026-11-20",
            "-f",
            "jsonl",
            "-o",
            str(out),
            "--engine",
            "dask",
            "--scheduler",
            dask_cluster.scheduler_address,
        ],
    )
    local_out = tmp_path / "local.jsonl"
    local_run = CliRunner().invoke(
        app, ["check", str(EXAMPLES), "--as-of", "2026-11-20", "-f", "jsonl", "-o", str(local_out)]
    )
    assert result.exit_code == local_run.exit_code
    assert out.read_bytes() == local_out.read_bytes()
    # a port nothing listens on, on this machine: a clear message, exit 2, no output file
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        gone = CliRunner().invoke(
            app,
            [
                "check",
                str(EXAMPLES),
                "-f",
                "jsonl",
                "-o",
                str(tmp_path / "none.jsonl"),
                "--engine",
                "dask",
                "--scheduler",
                "tcp://127.0.0.1:9",
            ],
        )
    assert gone.exit_code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in gone.output
    assert not (tmp_path / "none.jsonl").exists()
