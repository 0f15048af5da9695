"""Benchmark: screening a FHIR bulk export, on this machine and on a two-worker LocalCluster.

For each size N (default 10,000 and 100,000 patients) it writes a synthetic export with
benchmarks/bulk_export.py and measures, each in a fresh process:

  (a) `screener check EXPORT -f jsonl --jobs J` (the local engine, DuckDB group-by);
  (b) the same with `--engine dask` on a local cluster of two worker processes (one thread
      each) and a scheduler process, started before the clock starts; its output must be
      the same bytes as (a);
  (c) merely reading every line of every NDJSON file of the export with `json.loads` in
      one process (no grouping, no screening);

and prints patients per second, peak memory (the largest resident set of any one process:
the one holding DuckDB for (a), the client (holding DuckDB) and the largest worker for
(b); the scheduler's is shown apart), the ratio (a)/(c) and the ratio of peak memory at the
largest N to the smallest.

    python benchmarks/bench_bulk.py                  # N = 10,000 and 100,000
    python benchmarks/bench_bulk.py -n 2000 -n 20000 --no-dask
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk_export import write_export  # noqa: E402

PEAK = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)

READ_ONLY = (
    "import json, sys, pathlib\n"
    "n = 0\n"
    "for path in sorted(pathlib.Path(sys.argv[1]).glob('*.ndjson')):\n"
    "    with open(path, 'rb') as f:\n"
    "        for line in f:\n"
    "            json.loads(line)\n"
    "            n += 1\n"
    "print(n)\n"
)

# The scheduler and the two workers each in a process of their own, as on a real cluster
# (a LocalCluster would run the scheduler inside the client, and the scheduler's own
# bookkeeping, some 200 MB at 30,000 patients, would count as the client's).
ON_DASK = """
import resource, sys, time
from distributed import Client
from distributed.deploy.subprocess import SubprocessCluster
from screener.cli import app
from typer.testing import CliRunner

def peak():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

with SubprocessCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                       silence_logs=40) as cluster, Client(cluster) as c:
    start = time.perf_counter()
    r = CliRunner().invoke(app, ["check", sys.argv[1], "-f", "jsonl", "-o", sys.argv[2],
                                 "--as-of", "2026-11-20", "--engine", "dask",
                                 "--scheduler", cluster.scheduler_address])
    wall = time.perf_counter() - start
    workers = max(c.run(peak).values())
    scheduler = c.run_on_scheduler(peak)
# tagged: Dask may print its own lines to standard output when the cluster shuts down
print("RESULT", wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, workers, scheduler,
      r.exit_code)
if r.exit_code not in (0, 1):
    print(r.output[-3000:], file=sys.stderr)
"""


def timed(args: list[str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (kB) of the largest child process, and standard output."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK, sys.executable, *args], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr[-2000:]}")
    return wall, int(done.stderr.strip().splitlines()[-1]), done.stdout


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, action="append", help="patients (repeatable)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where to write the exports (default: a temporary folder)",
    )
    args = parser.parse_args()
    sizes = args.n or [10_000, 100_000]
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"--jobs {args.jobs}"
    )
    top = Path(tempfile.mkdtemp(prefix="bench-bulk-", dir=args.workdir))
    peaks: dict[int, tuple[int, int]] = {}
    try:
        for n in sizes:
            folder = top / f"export-{n}"
            start = time.perf_counter()
            size = write_export(folder, n)
            lines = sum(1 for p in folder.glob("*.ndjson") for _ in p.open("rb"))
            print(
                f"\n== {n:,} patients: {lines:,} NDJSON lines, {size / 1e6:,.0f} MB on disk "
                f"(written in {time.perf_counter() - start:.0f} s)"
            )
            out = top / f"local-{n}.jsonl"
            wall, rss, _ = timed(
                [
                    "-m",
                    "screener",
                    "check",
                    str(folder),
                    "-f",
                    "jsonl",
                    "-o",
                    str(out),
                    "--as-of",
                    "2026-11-20",
                    "--jobs",
                    str(args.jobs),
                ]
            )
            print(
                f"(a) local engine:  {wall:7.1f} s  {n / wall:8,.0f} patients/s  "
                f"peak {rss / 1024:6.0f} MB"
            )
            read, read_rss, _ = timed(["-c", READ_ONLY, str(folder)])
            print(f"(c) json.loads of every line: {read:7.1f} s  peak {read_rss / 1024:.0f} MB")
            print(f"    (a)/(c) = {wall / read:.2f}")
            dask_rss = 0
            if not args.no_dask:
                dask_out = top / f"dask-{n}.jsonl"
                done = subprocess.run(
                    [sys.executable, "-c", ON_DASK, str(folder), str(dask_out)],
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise SystemExit(done.stderr[-3000:])
                result = next(
                    line for line in reversed(done.stdout.splitlines()) if line.startswith("RESULT")
                )
                dwall, client_rss, worker_rss, sched_rss, _ = result.split()[1:]
                dask_rss = max(int(client_rss), int(worker_rss))
                same = digest(dask_out) == digest(out)
                print(
                    f"(b) dask, 2 workers: {float(dwall):5.1f} s  "
                    f"{n / float(dwall):8,.0f} patients/s  client peak "
                    f"{int(client_rss) / 1024:.0f} MB, worker peak "
                    f"{int(worker_rss) / 1024:.0f} MB, scheduler peak "
                    f"{int(sched_rss) / 1024:.0f} MB; same bytes as (a): {same}"
                )
                dask_out.unlink()
            out.unlink()
            peaks[n] = (rss, dask_rss)
            shutil.rmtree(folder)
        if len(peaks) > 1:
            small, large = min(peaks), max(peaks)
            print(
                f"\npeak memory {large:,} / {small:,} patients: local "
                f"{peaks[large][0] / peaks[small][0]:.2f}"
                + (f", dask {peaks[large][1] / peaks[small][1]:.2f}" if not args.no_dask else "")
                + " (target <= 1.5)"
            )
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
