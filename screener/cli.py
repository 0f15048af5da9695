"""The `screener` command line: a thin layer over the library.

Exit statuses (also in the README):

    0  every input was screened, whatever the verdicts
    1  at least one input could not be read or screened (the others were reported)
    2  usage error: an unknown option, a bad --as-of date, an unknown --trial
    3  a rule set is broken: nothing was screened
    4  internal error (a bug): rerun with SCREENER_DEBUG=1 (or check --debug) for the traceback
  130  interrupted (Ctrl-C); an --output file is left as it was
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from enum import Enum, IntEnum
from pathlib import Path
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional, TextIO

import typer

if TYPE_CHECKING:  # imported lazily at run time: --help and single checks load only what they use
    from rich.console import Console
    from rich.progress import Progress

    from .errors import Diagnostic
    from .rules import RuleSet
    from .units import Measure

app = typer.Typer(
    name="screener",
    help="Pre-screen patients for clinical trials in relapsed/refractory B-ALL.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


class Exit(IntEnum):
    OK = 0
    INPUT_ERROR = 1
    USAGE = 2
    RULES = 3
    INTERNAL = 4
    INTERRUPTED = 130


class Engine(str, Enum):
    local = "local"
    dask = "dask"


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    markdown = "markdown"


def _as_of(value: Optional[str]) -> Optional[dt.date]:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date such as 2026-11-20") from None


def _max_age(value: Optional[str]) -> Optional[Measure]:
    if value is None:
        return None
    from .units import DURATION, UnitError, parse_measure, whole_calendar_span

    try:
        span = parse_measure(value, DURATION)
        whole_calendar_span(span)
    except UnitError as exc:
        raise typer.BadParameter(f"{exc}; write it like 30d, 6 weeks or 3 months") from None
    if span.magnitude <= 0:
        raise typer.BadParameter(f"{value!r} is not a positive span", param_hint="--max-age")
    return span


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=stderr)


def _fail(message: str, code: Exit) -> NoReturn:
    _console(stderr=True).print(message, style="red", markup=False, highlight=False)
    raise typer.Exit(int(code))


@app.command()
def check(
    paths: Annotated[list[str], typer.Argument(
        help="Patient files (YAML, or FHIR R4 bundles as .json), or directories of them.",
        show_default=False, metavar="PATH...")],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] =
    Format.table,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write to this file (atomically: never a half file) instead "
                               "of standard output.")] = None,
    trial: Annotated[Optional[list[str]], typer.Option(
        "--trial", "-t", help="Only this trial (NCT id or product name); repeatable.")] = None,
    as_of: Annotated[Optional[str], typer.Option(
        help="Date to screen on when a file has no screening_date (ISO, e.g. 2026-11-20); "
             "default: today.")] = None,
    max_age: Annotated[Optional[str], typer.Option(
        help="Count dated labs, markers and tests older than this before the screening date "
             "as missing (e.g. 30d, 6 weeks).")] = None,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", min=1, help="Worker processes for a batch; output is the same "
                                    "whatever the number.")] = os.cpu_count() or 1,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Add each criterion's source text and reading notes.")] = False,
    rules: Annotated[Optional[Path], typer.Option(
        help="Directory of rule sets to use instead of the bundled ones.")] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks of internal errors.")] = False,
    engine: Annotated[Engine, typer.Option(
        help="Where to screen: local worker processes, or a Dask cluster (--scheduler); "
             "output is the same.")] = Engine.local,
    scheduler: Annotated[Optional[str], typer.Option(
        help="Dask scheduler address for --engine dask, e.g. tcp://10.0.0.5:8786.")] = None,
) -> None:
    """Screen patient files (or FHIR bulk export folders) against the trials' criteria.

    Example: screener check examples/patients/ --format csv --output cohort.csv
    """
    if engine is Engine.dask and not scheduler:
        raise typer.BadParameter("--engine dask needs --scheduler ADDRESS",
                                 param_hint="--scheduler")
    try:
        code = _check(paths, format, output, _as_of(as_of), trial or [], rules,
                      _max_age(max_age), jobs, verbose, engine.value, scheduler)
    except (typer.Exit, typer.BadParameter):
        raise
    except KeyboardInterrupt:
        _fail("interrupted" + ("; no output file was written" if output else ""),
              Exit.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        from .engines import EngineError

        if isinstance(exc, EngineError):  # no dask, or no scheduler there: not a bug
            _fail(f"{exc}\nno patient was screened", Exit.USAGE)
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc}\n"
              "This is a bug in screener. Rerun with --debug for the traceback.", Exit.INTERNAL)
    raise typer.Exit(int(code))


def _progress(total: int) -> Optional[Progress]:
    """A progress bar on a terminal's standard error; nothing when piped or under CI."""
    if total < 2 or not sys.stderr.isatty() or os.environ.get("CI"):
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeRemainingColumn

    return Progress(TextColumn("screening"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=_console(stderr=True), transient=True)


def _check(paths: list[str], fmt: Format, output: Optional[Path], as_of: Optional[dt.date],
           trials: list[str], rules: Optional[Path], max_age: object, jobs: int,
           verbose: bool, engine: str = "local", scheduler: Optional[str] = None) -> Exit:
    from .batch import Export, expand
    from .engines import run_all
    from .catalog import select
    from .output import atomic_output, utf8_writer
    from .report import (csv_header, csv_rows, json_array, json_document, jsonl_line, markdown,
                         render as render_record)
    from .summary import Cohort, markdown as cohort_markdown, render as render_cohort

    rule_sets = _rule_sets(rules, "\nno patient was screened: fix the rule set first.")
    known = tuple(r.trial for r in rule_sets)
    try:
        rule_sets = select(rule_sets, trials)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--trial") from None
    entries = expand(paths, exports=True)
    if not entries:
        raise typer.BadParameter("no patient files (*.yaml, *.yml, *.json) found",
                                 param_hint="PATH")
    # A bulk export holds any number of patients: a batch, whose size is known only later.
    many = len(entries) > 1 or any(isinstance(e, Export) for e in entries)
    failed = False
    cohort = Cohort()
    documents: list[str] = []
    render = {Format.json: json_document, Format.jsonl: jsonl_line,
              Format.csv: csv_rows}.get(fmt)
    # (no bar for an export: its number of patients is known only once it is indexed)
    progress = None if any(isinstance(e, Export) for e in entries) else _progress(len(entries))
    with atomic_output(output) as stream:
        # Only tables need rich's console: JSON and the other formats start without it.
        out = _table_console(stream) if fmt is Format.table else None
        task = progress.add_task("screening", total=len(entries)) if progress else None
        if progress:
            progress.start()
        try:
            if fmt is Format.csv:
                stream.write(csv_header())
            write = utf8_writer(stream)
            for index, done in enumerate(run_all(entries, rule_sets, as_of, max_age, jobs,
                                                 render, known, engine, scheduler)):
                failed |= done.failed
                if done.record is not None:
                    cohort.add(done.record)
                if out is not None:
                    if index:
                        out.rule()
                    render_record(out, done.record, verbose)
                elif fmt is Format.markdown:
                    stream.write(markdown(done.record, verbose) + "\n")
                elif fmt is Format.json:
                    documents.append(done.text)
                else:
                    write(done.data)
                if progress:
                    progress.advance(task)
        finally:
            if progress:
                progress.stop()
        if fmt is Format.json:
            stream.write((json_array(documents) if many else documents[0]) + "\n")
        elif many and out is not None:
            render_cohort(out, cohort)
        elif many and fmt is Format.markdown:
            stream.write(cohort_markdown(cohort))
    return Exit.INPUT_ERROR if failed else Exit.OK


def _table_console(stream: TextIO) -> Console:
    """Rich output to the terminal, or plain text (no colour codes) to a file or pipe."""
    from rich.console import Console

    if stream is sys.stdout:
        return Console(highlight=False)
    return Console(file=stream, highlight=False, no_color=True, width=120)


@app.command()
def trials(
    rules: Annotated[Optional[Path], typer.Option(
        help="Directory of rule sets to use instead of the bundled ones.")] = None,
) -> None:
    """List the trials screened: id, product, criteria counts and caveats.

    Example: screener trials
    """
    from rich.table import Table

    from .model import Kind

    table = Table("trial", "product", "inclusion", "exclusion", "caveats", title_justify="left")
    for r in _rule_sets(rules):
        inclusions = sum(c.kind is Kind.INCLUSION for c in r.criteria)
        table.add_row(r.trial, r.product, str(inclusions), str(len(r.criteria) - inclusions),
                      "\n".join(r.caveats) or "—")
    _console().print(table)


@app.command()
def show(
    trial: Annotated[str, typer.Argument(help="NCT id or product name, e.g. CNCT19.",
                                         show_default=False)],
    rules: Annotated[Optional[Path], typer.Option(
        help="Directory of rule sets to use instead of the bundled ones.")] = None,
) -> None:
    """Show a trial's criteria with their source text and reading notes.

    Example: screener show NCT06559644
    """
    from rich.markup import escape

    from .catalog import select

    try:
        (rule_set,) = select(_rule_sets(rules), [trial])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="TRIAL") from None
    out = _console()
    out.print(f"[bold]{rule_set.trial}[/] · {escape(rule_set.product)}: {escape(rule_set.title)}")
    for source in rule_set.sources:
        out.print(f"  source: {escape(source)}")
    for caveat in rule_set.caveats:
        out.print(f"  [bold yellow]caveat:[/] {escape(caveat)}")
    for c in rule_set.criteria:
        out.print()
        kind = "inclusion" if c.id.startswith("I") else "exclusion"
        judged = " [magenta](investigator judgment)[/]" if c.judged else ""
        out.print(f"[bold]{c.id}[/] {kind}: {escape(c.label)}{judged}")
        out.print(f"  {escape(c.text)}", highlight=False)
        for part in c.parts:
            out.print(f"  [bold]{part.id}[/] {escape(part.label)}"
                      + (f": {escape(part.text)}" if part.text else ""), highlight=False)
        if c.note:
            out.print(f"  [italic]note:[/] {escape(c.note)}", highlight=False)


@app.command()
def validate(
    paths: Annotated[list[str], typer.Argument(
        help="Patient files, rule files (rules/NCT….yaml, *.cases.yaml) or directories.",
        show_default=False, metavar="PATH...")],
) -> None:
    """Check patient and rule files without screening; errors as file:line:col with a caret.

    Example: screener validate examples/patients/ rules/
    """
    from .batch import FileError, expand, load_any
    from .cases import SUFFIX, load_suite
    from .document import load
    from .errors import ScreenerError
    from .patient import from_document as patient_from
    from .rules import from_document as rules_from

    out = _console()
    bad = 0
    entries = expand(paths)
    if not entries:
        raise typer.BadParameter("no files to validate found", param_hint="PATH")
    for entry in entries:
        name = entry.file if isinstance(entry, FileError) else entry
        problems = list(entry.diagnostics) if isinstance(entry, FileError) else []
        if not problems:
            try:
                if name.endswith(SUFFIX):
                    load_suite(name)
                elif name.lower().endswith(".json"):
                    _warn(out, load_any(name).warnings)
                else:
                    doc = load(Path(name), name)
                    # A rule set names its trial and lists criteria; anything else is a patient.
                    if isinstance(doc.data, dict) and {"trial", "criteria"} <= set(doc.data):
                        rules_from(doc)
                    else:
                        _warn(out, patient_from(doc).warnings)
            except ScreenerError as exc:
                problems = list(exc.diagnostics)
        if problems:
            bad += 1
            for d in problems:
                out.print(d.render(), style="red", markup=False, soft_wrap=True)
        else:
            out.print(f"ok  {name}", markup=False)
    out.print(f"{len(entries) - bad} valid, {bad} with errors")
    raise typer.Exit(int(Exit.INPUT_ERROR if bad else Exit.OK))


def _warn(out: Console, warnings: Iterable[Diagnostic]) -> None:
    for warning in warnings:
        out.print(warning.render("warning"), style="yellow", markup=False, soft_wrap=True)


def _rule_sets(rules: Optional[Path], consequence: str = "") -> list[RuleSet]:
    """The rule sets, or exit 3 with every error of the broken one."""
    from .catalog import load_rule_sets
    from .errors import RuleSetError

    try:
        return load_rule_sets(rules)
    except RuleSetError as exc:
        _fail("\n".join(d.render() for d in exc.diagnostics) + consequence, Exit.RULES)


@app.command("test")
def test_cases(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="Case files (*.cases.yaml) or directories holding them; default: here.",
        show_default=False, metavar="[PATH]...")] = None,
    coverage: Annotated[bool, typer.Option(
        "--coverage", help="Also report, per trial, which statuses the cases drove each "
                           "criterion to; fail if a computable criterion lacks a passing "
                           "and a failing case.")] = False,
    rules: Annotated[Optional[Path], typer.Option(
        help="Directory of rule sets to use instead of the bundled ones.")] = None,
) -> None:
    """Run rule test cases without pytest, for rule authors.

    Example: screener test tests/cases --coverage
    """
    from .cases import CaseFileError, coverage as cover, explain, find_suites, load_suite, run_case

    rule_sets = {r.trial: r for r in _rule_sets(rules)}
    files = find_suites(paths or [Path(".")])
    if not files:
        raise typer.BadParameter("no case files (*.cases.yaml) found", param_hint="PATH")
    out = _console()
    failed = broken = 0
    outcomes_by_trial: dict[str, list] = {}
    for file in files:
        try:
            suite = load_suite(file)
        except CaseFileError as exc:
            out.print(str(exc), style="red", markup=False, soft_wrap=True)
            broken += 1
            continue
        rule_set = rule_sets.get(suite.trial)
        if rule_set is None:
            out.print(f"{file}: no rule set for trial {suite.trial}", style="red", markup=False)
            broken += 1
            continue
        for case in suite.cases:
            outcome = run_case(case, rule_set)
            outcomes_by_trial.setdefault(suite.trial, []).append(outcome)
            if outcome.passed == (case.xfail is None):
                continue
            failed += 1
            if case.xfail is not None:
                out.print(f"{case.file}:{case.line}: case {case.name} was expected to fail "
                          f"({case.xfail}) but passed", style="red", markup=False)
            else:
                out.print(explain(outcome), markup=False, soft_wrap=True)
    total = sum(len(o) for o in outcomes_by_trial.values())
    gaps = 0
    if coverage:
        # Every bundled trial is reported: one with no case file shows its gaps too.
        for trial in sorted(rule_sets):
            report = cover(rule_sets[trial], outcomes_by_trial.get(trial, []))
            out.print(f"\n[bold]{trial}[/] coverage (statuses the cases drove each criterion to)")
            for cid, seen in report.seen.items():
                missing = report.gaps().get(cid)
                mark = "[red]✘[/]" if missing else "[green]✔[/]" if report.computable[cid] else "·"
                lacking = " and a ".join(f"{status}ing" for status in missing or [])
                note = f"  [red]lacks a {lacking} case[/]" if missing else \
                    ("" if report.computable[cid] else "  (judgment only)")
                out.print(f"  {mark} {cid:<5} {', '.join(sorted(seen)) or '—'}{note}")
            gaps += len(report.gaps())
    out.print(f"{total - failed} passed, {failed} failed" + (f", {broken} broken case files"
                                                            if broken else ""))
    if coverage and gaps:
        out.print(f"{gaps} computable criteria lack a passing or a failing case", style="red")
    raise typer.Exit(int(Exit.INPUT_ERROR if failed or broken or (coverage and gaps) else Exit.OK))


@app.command("import")
def import_bundle(
    bundle: Annotated[Path, typer.Argument(help="A FHIR R4 Bundle exported by the EHR (.json), "
                                           "or a FHIR bulk export folder.",
                                           show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write the patient YAML to this file (atomically) instead of "
                               "standard output.")] = None,
    as_of: Annotated[Optional[str], typer.Option(
        help="Take the latest value on or before this date (ISO); default: today.")] = None,
) -> None:
    """Turn an EHR export into a patient YAML for the nurse to complete.

    What the bundle holds comes with a source comment for each value; then a commented
    checklist of what the trials still need.

    Example: screener import bundle.json --output patient.yaml
    """
    from .errors import ScreenerError
    from .importer import bundle_to_yaml
    from .output import atomic_output

    if bundle.is_dir():
        raise typer.Exit(int(_import_export(bundle, output, _as_of(as_of))))
    try:
        text = bundle_to_yaml(bundle, as_of=_as_of(as_of))
    except ScreenerError as exc:
        _fail("\n".join(d.render() for d in exc.diagnostics), Exit.INPUT_ERROR)
    with atomic_output(output) as stream:
        stream.write(text)


def _import_export(folder: Path, output: Optional[Path], as_of: Optional[dt.date]) -> Exit:
    """`import` of a FHIR bulk export: one patient YAML per patient, in the --output folder."""
    import re

    from .errors import ScreenerError
    from .importer import export_to_yaml
    from .output import atomic_output

    if output is None:
        raise typer.BadParameter("a bulk export imports to a folder: give --output DIR",
                                 param_hint="--output")
    output.mkdir(parents=True, exist_ok=True)
    err = _console(stderr=True)
    failed = written = 0
    names: set[str] = set()
    try:
        for name, text, problems in export_to_yaml(folder, as_of=as_of):
            if text is None:
                failed += 1
                for d in problems:
                    err.print(d.render(), style="red", markup=False, soft_wrap=True)
                continue
            # a FHIR id is [A-Za-z0-9.-]; anything else is kept out of the file name
            stem = re.sub(r"[^A-Za-z0-9.\-]", "_", name).lstrip(".") or "patient"
            base, n = stem, 1
            while stem.lower() in names:
                n += 1
                stem = f"{base}-{n}"
            names.add(stem.lower())
            with atomic_output(output / f"{stem}.yaml") as stream:
                stream.write(text)
            written += 1
    except ScreenerError as exc:
        _fail("\n".join(d.render() for d in exc.diagnostics), Exit.INPUT_ERROR)
    err.print(f"{written} patient file(s) written to {output}"
              + (f"; {failed} could not be imported" if failed else ""), markup=False)
    return Exit.INPUT_ERROR if failed else Exit.OK


class SchemaKind(str, Enum):
    patient = "patient"
    rules = "rules"


@app.command()
def schema(
    kind: Annotated[SchemaKind, typer.Argument(help="Which file format: patient or rules.")],
) -> None:
    """Print the JSON Schema of patient files or rule files, for editor completion.

    Example: screener schema patient > patient.schema.json
    """
    from .report import dumps
    from .schema import patient_schema, rules_schema

    data = patient_schema() if kind is SchemaKind.patient else rules_schema()
    sys.stdout.write(dumps(data) + "\n")


def main() -> None:
    """The console script: any command's unexpected failure is a short message, not a traceback."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if os.environ.get("SCREENER_DEBUG"):
            raise
        print(f"screener: internal error: {type(exc).__name__}: {exc}\n"
              "This is a bug in screener. Rerun with SCREENER_DEBUG=1 for the traceback.",
              file=sys.stderr)
        sys.exit(int(Exit.INTERNAL))
