#!/usr/bin/env python3
"""Mutation testing for the trial rule sets: do the tests notice a changed threshold?

Reads every rules/*.yaml as text (with YAML positions), finds what a rule author can get
wrong, and makes one small change at a time:

* a number in a comparison (`le: 1.6 mg/dL`, `ge: 2` in a count) or a ULN multiple
  (`le: 3 x ULN`): ±1 for a whole number, ±10 % otherwise;
* a comparison loosened, tightened or reversed: le→lt, le→ge, ge→gt, ge→le, lt→le, lt→gt,
  gt→ge, gt→lt;
* a date span (`within: 6 months`, `at_least: 2 years`): ±1;
* a yes/no value: `is: true` ↔ `is: false`;
* a list of accepted words: one item dropped from `in: [...]`.

A sample of the mutants (`--count`, `--seed`) is applied one at a time to a copy of the
project (never the real files); each mutant's rule file must still load (the loader's
rejections are counted apart, since a broken rule set stops every run anyway), and then the
tests run in the copy with `-x`. A mutant is caught when a test fails, and survives when all
pass: some criterion's threshold then has no test on that side.

    python tools/mutate.py                    # 40 mutants, seed 1
    python tools/mutate.py --seed 2 -n 60 -j 4
    python tools/mutate.py --list             # every mutant, without running anything
    python tools/mutate.py --all              # run every mutant
    python tools/mutate.py --all --only "in: drop"   # every mutant of one kind (or file, line)

The copy imports its own `screener` (checked before any mutant runs), so its tests load
the copy's rules/ whatever is installed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/cases", "tests/test_acceptance.py", "tests/test_nct06559644.py"]
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "*.egg-info",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
)
COMPARISONS = {"lt": ("le", "gt"), "le": ("lt", "ge"), "gt": ("ge", "lt"), "ge": ("gt", "le")}
NUMBER = re.compile(r"^(\d+(?:\.\d+)?)(.*)$", re.DOTALL)

# The child: put the copy first on sys.path, prove it is the copy's screener, run pytest.
RUNNER = """\
import sys
root = sys.argv[1]
sys.path.insert(0, root)
import screener, screener.criteria._catalog
if not screener.__file__.startswith(root) or not str(screener.rules_dir()).startswith(root):
    print("screener imported from", screener.__file__, "rules", screener.rules_dir())
    sys.exit(97)
import pytest
sys.exit(pytest.main(sys.argv[2:]))
"""


@dataclass(frozen=True)
class Mutant:
    file: str  # relative to the project, e.g. rules/NCT06559644.yaml
    line: int  # 1-based
    start: int  # offsets into the file's text
    end: int
    new: str
    what: str  # kind of mutation

    def apply(self, text: str) -> str:
        return text[: self.start] + self.new + text[self.end :]

    def describe(self, text: str) -> str:
        first = text.rfind("\n", 0, self.start) + 1
        last = text.find("\n", self.end)
        last = len(text) if last < 0 else last
        old_line = text[first:last].strip()
        new_line = self.apply(text)[first : last + len(self.new) - (self.end - self.start)].strip()
        return f"{self.file}:{self.line}: {old_line}  →  {new_line}  [{self.what}]"


def _nudged(text: str) -> list[tuple[str, str]]:
    """The number at the start of a scalar, nudged: (new text, label)."""
    match = NUMBER.match(text)
    if not match:
        return []
    digits, rest = match.groups()
    if "." not in digits:
        value = int(digits)
        out = [(f"{value + 1}{rest}", "+1")]
        if value - 1 >= 0:
            out.append((f"{value - 1}{rest}", "-1"))
        return out
    value = float(digits)
    decimals = max(len(digits.split(".")[1]), 1)
    out = []
    for factor, label in ((1.1, "+10%"), (0.9, "-10%")):
        new = round(value * factor, decimals + 1)
        text_new = f"{new:.{decimals + 1}f}".rstrip("0")
        text_new = text_new + "0" if text_new.endswith(".") else text_new
        out.append((f"{text_new}{rest}", label))
    return out


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def mutants_of(path: Path, relative: str) -> list[Mutant]:
    text = path.read_text(encoding="utf-8")
    root = yaml.compose(text)
    found: list[Mutant] = []

    def add(node: yaml.Node, new: str, what: str) -> None:
        start, end = node.start_mark.index, node.end_mark.index
        found.append(Mutant(relative, node.start_mark.line + 1, start, end, new, what))

    def walk(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            keys = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name in COMPARISONS and isinstance(value, yaml.ScalarNode):
                    for other in COMPARISONS[name]:
                        if other not in keys:
                            add(key, other, f"{name}→{other}")
                    for new, label in _nudged(value.value):
                        add(value, new, f"threshold {label}")
                elif (
                    name in ("within", "at_least")
                    and isinstance(value, yaml.ScalarNode)
                    and "before" in keys
                ):
                    for new, label in _nudged(value.value):
                        add(value, new, f"span {label}")
                elif (
                    name == "is"
                    and isinstance(value, yaml.ScalarNode)
                    and value.tag.endswith(":bool")
                ):
                    flipped = "false" if value.value.lower() in ("true", "yes", "on") else "true"
                    add(value, flipped, f"is: {value.value}→{flipped}")
                elif name == "in" and isinstance(value, yaml.SequenceNode) and len(value.value) > 1:
                    items = [i for i in value.value if isinstance(i, yaml.ScalarNode)]
                    for drop in items:
                        kept = ", ".join(
                            text[i.start_mark.index : i.end_mark.index]
                            for i in items
                            if i is not drop
                        )
                        add(value, f"[{kept}]", f"in: drop {drop.value}")
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    if root is not None:
        walk(root)
    return found


def all_mutants(root: Path) -> list[Mutant]:
    out: list[Mutant] = []
    for path in sorted((root / "rules").glob("*.yaml")):
        out.extend(mutants_of(path, f"rules/{path.name}"))
    return out


def loads(copy: Path, mutant: Mutant, text: str) -> str | None:
    """None if the mutated rule set loads in the copy's screener, else the loader's message."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import screener\n"
        "try:\n    screener.load_rule_set(sys.argv[2])\n"
        "except screener.RuleSetError as e:\n    print(str(e).splitlines()[0]); sys.exit(3)\n"
    )
    target = copy / mutant.file
    target.write_text(mutant.apply(text), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", code, str(copy), str(target)],
        capture_output=True,
        text=True,
        cwd=copy,
        env=_env(copy),
    )
    if done.returncode == 0:
        return None
    return (
        (done.stdout or done.stderr).strip().splitlines()[-1]
        if (done.stdout or done.stderr)
        else f"exit {done.returncode}"
    )


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[int, str]:
    args = [
        sys.executable,
        "-c",
        RUNNER,
        str(copy),
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "--no-header",
        "-W",
        "ignore",
        *tests,
    ]
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, cwd=copy, env=_env(copy), timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    return done.returncode, done.stdout + done.stderr


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("FAILED") or line.startswith("ERROR"):
            return line[:160]
    return output.strip().splitlines()[-1][:160] if output.strip() else ""


def make_copy(where: Path) -> Path:
    copy = where / "project"
    shutil.copytree(ROOT, copy, ignore=IGNORE, symlinks=True)
    return copy


def check_copy(copy: Path, tests: list[str], timeout: float) -> None:
    code, output = run_tests(copy, tests, timeout)
    if code == 97:
        sys.exit(f"the copy does not import its own screener:\n{output}")
    if code != 0:
        sys.exit(f"the tests fail before any mutation (exit {code}):\n{output[-3000:]}")


def worker(copy: Path, mutant: Mutant, tests: list[str], timeout: float) -> tuple[str, str]:
    """Apply one mutant in a copy, run the tests, restore; (outcome, detail)."""
    target = copy / mutant.file
    original = target.read_text(encoding="utf-8")
    try:
        rejected = loads(copy, mutant, original)
        if rejected is not None:
            return "rejected", rejected
        code, output = run_tests(copy, tests, timeout)
        if code == 0:
            return "survived", ""
        if code == -1:
            return "caught", "timeout"
        if code == 97:
            raise SystemExit(output)
        return "caught", _first_failure(output)
    finally:
        target.write_text(original, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--count", type=int, default=40, help="mutants to sample (40)")
    parser.add_argument("--seed", type=int, default=1, help="sampling seed (1)")
    parser.add_argument("--all", action="store_true", help="run every mutant")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="project copies tested in parallel",
    )
    parser.add_argument("--timeout", type=float, default=180, help="seconds per test run")
    parser.add_argument("--tests", nargs="+", default=TESTS, help="test paths, in the copy")
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="keep mutants whose description contains TEXT (before sampling)",
    )
    args = parser.parse_args(argv)

    every = all_mutants(ROOT)
    texts = {m.file: (ROOT / m.file).read_text(encoding="utf-8") for m in every}
    if args.only:
        every = [m for m in every if args.only in m.describe(texts[m.file])]
    if args.list:
        for m in every:
            print(m.describe(texts[m.file]))
        print(f"{len(every)} mutants")
        return 0
    chosen = (
        every if args.all else random.Random(args.seed).sample(every, min(args.count, len(every)))
    )
    print(
        f"{len(every)} mutants in {ROOT / 'rules'}; running {len(chosen)} "
        f"(seed {args.seed}) with {args.jobs} job(s): {' '.join(args.tests)}",
        flush=True,
    )

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="screener-mutants-") as tmp:
        copies = [make_copy(Path(tmp) / str(i)) for i in range(max(1, args.jobs))]
        check_copy(copies[0], args.tests, args.timeout)
        results: dict[int, tuple[str, str]] = {}
        free = list(copies)
        with futures.ThreadPoolExecutor(max_workers=len(copies)) as pool:
            pending: dict[futures.Future, tuple[int, Path]] = {}
            queue = list(enumerate(chosen))
            while queue or pending:
                while queue and free:
                    i, m = queue.pop(0)
                    copy = free.pop()
                    pending[pool.submit(worker, copy, m, args.tests, args.timeout)] = (i, copy)
                done, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                for fut in done:
                    i, copy = pending.pop(fut)
                    free.append(copy)
                    results[i] = fut.result()
                    outcome, detail = results[i]
                    m = chosen[i]
                    print(
                        f"{outcome:<9} {m.describe(texts[m.file])}"
                        + (f"\n          {detail}" if detail and outcome != "caught" else ""),
                        flush=True,
                    )

    caught = sum(r[0] == "caught" for r in results.values())
    rejected = sum(r[0] == "rejected" for r in results.values())
    survivors = [chosen[i] for i, r in sorted(results.items()) if r[0] == "survived"]
    tested = caught + len(survivors)
    share = 100.0 * caught / tested if tested else 100.0
    if survivors:
        print("\nsurvivors:")
        for m in survivors:
            print("  " + m.describe(texts[m.file]))
    print(
        f"\ncaught {caught}/{tested} ({share:.1f} %), {rejected} rejected by the loader "
        f"[{time.monotonic() - started:.0f} s]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
