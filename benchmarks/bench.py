"""Benchmark: does screening a cohort run at the speed of merely reading it?

Generates a synthetic cohort of contract-format patients (varied units, missing fields),
then measures, each in a fresh process so start-up counts the same way for all:

  (a) `screener check DIR --format jsonl` end to end, wall time;
  (b) parsing the same files with yaml.CSafeLoader in one process, wall time
      ((a) and (b) are run --repeats times, interleaved, and the best of each kept);
  (c) one-patient `screener check` against `python -c "import pint"` (best of several);
  (d) peak memory (max RSS of any one process) at 1,000 and at N patients;
  (e) the cohort summary of the same directory, `--format table` and `--format markdown`
      (what a coordinator reads; run with (a), interleaved, best of each).

and prints the ratios a/b, c/(import pint) and e/a, patients per second and the memory ratio.
Targets (2-core machine): a/b <= 1.5, c <= 2.0 x import pint, memory(N)/memory(1000) <= 1.2,
summary/jsonl <= 1.5.

    python benchmarks/bench.py            # N = 10,000
    python benchmarks/bench.py -n 2000 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UNITS = {
    "creatinine": [("mg/dL", 1.0), ("umol/L", 88.42), ("µmol/L", 88.42)],
    "total_bilirubin": [("mg/dL", 1.0), ("umol/L", 17.104), ("μmol/L", 17.104)],
}


def patient(i: int, rng: random.Random) -> str:
    """One synthetic patient file: realistic ranges, random units, some facts missing."""
    lines = [
        f"id: BENCH-{i:06d}",
        "screening_date: 2026-11-20",
        f"birth_date: {rng.randint(1950, 2008)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        f"sex: {rng.choice(['female', 'male'])}",
    ]
    kg = rng.uniform(40, 110)
    lines.append(f"weight: {kg:.1f} kg" if rng.random() < 0.7 else f"weight: {kg * 2.2046:.0f} lb")
    optional = {
        "informed_consent": str(rng.random() < 0.9).lower(),
        "childbearing_potential": str(rng.random() < 0.5).lower(),
        "pregnant": "false",
        "lactating": "false",
        "contraception_agreed": "true",
        "ecog": str(rng.randint(0, 3)),
        "life_expectancy": rng.choice(["6 months", "16 weeks", "10 weeks", "120 days"]),
        "lvef": f"{rng.randint(35, 70)} %",
        "nyha_class": rng.choice(["1", "2", "III", "IV"]),
        "dyspnea_grade": str(rng.randint(0, 2)),
        "spo2": f"{rng.randint(88, 100)} %",
        "supplemental_oxygen": "false",
    }
    lines += [f"{k}: {v}" for k, v in optional.items() if rng.random() < 0.9]
    lines += [
        "diagnosis:",
        f"  disease: {rng.choice(['B-ALL', 'B-ALL', 'B-ALL', 'AML', 'T-ALL'])}",
        "  who_2022: true",
        f"  status: {rng.choice(['relapsed', 'refractory'])}",
        "  isolated_extramedullary: false",
        "  cns_involvement: none",
        f"  bone_marrow_blasts: {rng.randint(1, 90)} %",
        f"  ph_positive: {str(rng.random() < 0.25).lower()}",
        "  abl1_mutations: []",
        "  markers:",
        "    CD19: {result: positive, specimen: bone marrow, date: 2026-10-30}",
        "    CD22: {result: positive, specimen: peripheral blood, date: 2026-10-30}",
        "labs:",
    ]
    for lab, choices in UNITS.items():
        unit, factor = rng.choice(choices)
        value = rng.uniform(0.3, 3.0) * factor
        uln_unit, uln_factor = rng.choice(choices)
        lines.append(
            f"  {lab}: {{value: {value:.1f} {unit}, uln: {1.2 * uln_factor:.1f} {uln_unit}, "
            "date: 2026-11-18}"
        )
    for lab in ("ast", "alt"):
        if rng.random() < 0.9:
            lines.append(
                f"  {lab}: {{value: {rng.randint(10, 300)} {rng.choice(['U/L', 'IU/L'])}, "
                "uln: 40 U/L}"
            )
    lines += ["  inr: {value: 1.1, uln: 1.2}", "  aptt: {value: 33 s, uln: 40 s}", "serology:"]
    lines += [
        f"  {k}: {'positive' if rng.random() < 0.03 else 'negative'}"
        for k in ("hbsag", "anti_hcv", "hbv_dna", "hcv_rna", "hiv", "syphilis")
    ]
    lines += ["therapies:", "  - {type: chemotherapy, regimen: hyper-CVAD, cycles: 4}"]
    if rng.random() < 0.2:
        lines.append(
            "  - {type: car-t, target: CD19, date: 2025-03-01, "
            f"response: {rng.choice(['NR', 'relapse', 'CR'])}}}"
        )
    return "\n".join(lines) + "\n"


def make_cohort(folder: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"p{i:06d}.yaml").write_text(patient(i, rng), encoding="utf-8")


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def best(cmd: list[str], runs: int) -> float:
    return min(timed(cmd) for _ in range(runs))


def peak_rss_mb(cmd: list[str]) -> float:
    """Max resident set size of the command (or any process it waited for), in MB."""
    probe = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip()) / 1024


PARSE_ONLY = """
import sys, pathlib, yaml
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
    yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="cohort size (default 10,000)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=5, help="repeats for the single-check timing")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repeats of (a) and (b), interleaved; the best of each is kept, "
        "since a shared machine's speed varies from minute to minute",
    )
    args = parser.parse_args()
    screener = [sys.executable, "-m", "screener"]
    work = Path(tempfile.mkdtemp(prefix="screener-bench-"))
    try:
        big, small = work / "cohort", work / "cohort-1000"
        make_cohort(big, args.n)
        make_cohort(small, min(1000, args.n))
        one = small / "p000000.yaml"
        check = [*screener, "check", "--format", "jsonl", "--jobs", str(args.jobs)]

        timed([*check, str(one)])  # warm caches (pint's, the OS's) before measuring
        a = b = table = markdown = float("inf")
        summary = [*screener, "check", "--jobs", str(args.jobs), str(big), "--format"]
        for _ in range(max(1, args.repeats)):
            a = min(a, timed([*check, str(big)]))
            b = min(b, timed([sys.executable, "-c", PARSE_ONLY, str(big)]))
            table = min(table, timed([*summary, "table"]))
            markdown = min(markdown, timed([*summary, "markdown"]))
        c = best([*screener, "check", "--format", "json", str(one)], args.runs)
        pint = best([sys.executable, "-c", "import pint"], args.runs)
        mem_small = peak_rss_mb([*check, str(small)])
        mem_big = peak_rss_mb([*check, str(big)])

        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, jobs={args.jobs}"
        )
        print(
            f"(a) screener check, {args.n:,} patients, jsonl: {a:8.2f} s "
            f"({args.n / a:,.0f} patients/s)"
        )
        print(f"(b) parse only, yaml.CSafeLoader:          {b:8.2f} s")
        print(f"    a/b = {a / b:.2f}   (target <= 1.5, stretch <= 1.0)")
        print(f"(c) one-patient check: {c * 1000:6.0f} ms; import pint: {pint * 1000:6.0f} ms")
        print(f"    c/(import pint) = {c / pint:.2f}   (target <= 2.0)")
        print(
            f"(d) peak memory: {mem_small:.0f} MB at 1,000 patients, {mem_big:.0f} MB at {args.n:,}"
        )
        print(f"    memory ratio = {mem_big / mem_small:.2f}   (target <= 1.2)")
        print(
            f"(e) cohort summary, {args.n:,} patients: table {table:.2f} s, "
            f"Markdown {markdown:.2f} s"
        )
        print(f"    table/a = {table / a:.2f}, Markdown/a = {markdown / a:.2f}   (target <= 1.5)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
