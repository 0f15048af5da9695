"""The `screener` command line: a thin layer over the library.

Exit statuses (also in the README):

    0  every input was screened, whatever the verdicts
    1  at least one input could not be read or screened (the others were reported)
    2  usage error: an unknown option, a bad --as-of date, an unknown --trial, an --output
       that is one of the inputs or the --log, a --log that is not a screening log or comes
       from a newer screener
    3  a rule set is broken: nothing was screened
    4  internal error (a bug): rerun with SCREENER_DEBUG=1 (or check --debug) for the traceback
    5  the output cannot be written (a missing or read-only directory, a full disk, a closed
       standard output or a broken pipe, for every command); an --output file is left as
       it was
  130  interrupted (Ctrl-C); an --output file is left as it was
  143  terminated (SIGTERM), 129 hung up (SIGHUP), for every command: as for Ctrl-C

A closed standard error changes no status: only the messages are lost.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import Enum, IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO, TypeVar

import typer
import typer.core

from screener.reading._files import shown

if TYPE_CHECKING:  # imported lazily at run time: --help and single checks load only what they use
    import sqlite3

    from rich.console import Console
    from rich.progress import Progress

    from screener.core._errors import Diagnostic
    from screener.core._model import Patient, Record, Render
    from screener.core._units import Measure
    from screener.core._vocabulary import Vocabulary
    from screener.criteria._conditions import Node
    from screener.criteria._rules import RuleSet
    from screener.reports._log import Recorder


class _Commands(typer.core.TyperGroup):
    """The command group: what every command shares, whatever it does.

    While a command runs, SIGTERM and SIGHUP stop it as Ctrl-C does (see Terminated); an
    interruption, a broken pipe or a closed standard output that the command did not
    answer itself ends it with the status the README's table gives, in one line."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click.Context
        with _signals_as_interrupts():
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt as exc:
                _fail(_stopped(exc), _interrupted(exc))
            except OSError as exc:
                from screener.cli._output import OutputError

                # What the output could not take; any other I/O error is main()'s to say.
                if not isinstance(exc, (BrokenPipeError, OutputError)):
                    raise
                _io_failure(exc, None)


# The site's screening log, so that no run goes unlogged for want of --log: check appends
# to it (unless --no-log), changes and log read it.
LOG_ENV = "SCREENER_LOG"

app = typer.Typer(
    name="screener",
    help="Pre-screen patients for clinical trials in relapsed/refractory B-ALL.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    cls=_Commands,
)


def _show_version(value: bool) -> None:
    if value:
        from screener._version import __version__

        if sys.stdout is None:
            _fail("standard output is closed: there is nowhere to write", Exit.OUTPUT)
        print(f"screener {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print screener's version and exit.",
        ),
    ] = False,
) -> None:
    """Pre-screen patients for clinical trials in relapsed/refractory B-ALL."""


class Exit(IntEnum):
    OK = 0
    INPUT_ERROR = 1
    USAGE = 2
    RULES = 3
    INTERNAL = 4
    OUTPUT = 5
    INTERRUPTED = 130  # 128 + SIGINT; SIGTERM and SIGHUP exit 128 + their number as well


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised wherever the program is, so it unwinds as Ctrl-C does:
    the temporary output file is removed, worker processes are stopped, the old output
    stays. A KeyboardInterrupt, so every path that handles Ctrl-C handles these too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated while the block runs (by default they kill the
    process at once, leaving a temporary file behind and workers without a parent); the
    handlers before are put back after it (a test driving the app keeps its own)."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    before: dict[int, Any] = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            try:
                before[number] = signal.signal(number, handler)
            except ValueError:  # not the main thread (a test driving the app): leave as is
                pass
    try:
        yield
    finally:
        for number, old in before.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(number, old)


def _interrupted(exc: KeyboardInterrupt) -> int:
    return 128 + exc.signum if isinstance(exc, Terminated) else int(Exit.INTERRUPTED)


def _stopped(exc: KeyboardInterrupt) -> str:
    """What stopped the run, in the words of the exit-status table."""
    import signal

    if not isinstance(exc, Terminated):
        return "interrupted"
    return "hung up" if exc.signum == getattr(signal, "SIGHUP", None) else "terminated"


def _quiet_stdout() -> None:
    """After a broken pipe, point standard output at /dev/null, so the interpreter's final
    flush does not print a second error about the same pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _io_failure(exc: OSError, output: object) -> NoReturn:
    """An ordinary I/O error is a one-line message and exit 5 (2 for an output that is an
    input), never "a bug in screener"."""
    from screener.cli._output import OutputError

    if isinstance(exc, OutputError):
        _fail(str(exc), Exit.USAGE if exc.usage else Exit.OUTPUT)
    kept = "; the output file was left as it was" if output else ""
    if isinstance(exc, BrokenPipeError):
        _broken_pipe(kept)
    where = f" ({shown(exc.filename)})" if isinstance(exc.filename, str) else ""
    _fail(f"cannot write output: {exc.strerror or exc}{where}{kept}", Exit.OUTPUT)


class Engine(str, Enum):
    local = "local"
    dask = "dask"


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    markdown = "markdown"
    html = "html"


def _as_of(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date such as 2026-11-20") from None


def _max_age(value: str | None) -> Measure | None:
    if value is None:
        return None
    from screener.core._units import DURATION, UnitError, parse_measure, whole_calendar_span

    try:
        span = parse_measure(value, DURATION)
        whole_calendar_span(span)
    except UnitError as exc:
        raise typer.BadParameter(f"{exc}; write it like 30d, 6 weeks or 3 months") from None
    if span.magnitude <= 0:
        raise typer.BadParameter(f"{value!r} is not a positive span", param_hint="--max-age")
    return span


def _console(
    stderr: bool = False,
    file: TextIO | None = None,
    no_color: bool | None = None,
    width: int | None = None,
) -> Console:
    """A rich console whose broken pipe is screener's documented exit 5.

    rich's own answer to a broken pipe is a silent exit 1, the status that means "some
    input failed"; `| head` is no such thing.
    """
    from rich.console import Console

    if not stderr and file is None and sys.stdout is None:
        # Started with standard output closed (`>&-`): rich would print into nothing and
        # the command would succeed with its output lost. Exit 5, as for any output.
        from screener.cli._output import OutputError

        raise OutputError("standard output is closed: there is nowhere to write")

    class Quiet(Console):
        def on_broken_pipe(self) -> None:
            if self.stderr:  # nowhere left to say anything: the caller exits with its status
                raise _StderrGone
            _broken_pipe()

    # rich's defaults for what is not given; `stderr` only where no file is named
    return Quiet(
        highlight=False,
        soft_wrap=stderr,
        stderr=stderr and file is None,
        file=file,
        no_color=no_color,
        width=width,
    )


class _StderrGone(Exception):
    """Standard error is a broken pipe too."""


def _broken_pipe(kept: str = "") -> NoReturn:
    _quiet_stdout()
    _fail("output closed before it was complete (broken pipe)" + kept, Exit.OUTPUT)


def _fail(message: str, code: int) -> NoReturn:
    try:
        _console(stderr=True).print(message, style="red", markup=False, highlight=False)
    except (OSError, ValueError, _StderrGone):  # standard error closed too: the status says it
        pass
    raise typer.Exit(int(code))


ExcelOption = Annotated[
    bool,
    typer.Option(
        "--excel",
        help="CSV for spreadsheets: start with a UTF-8 byte-order mark, so Excel "
        "reads ≤ and × as written.",
    ),
]


@app.command()
def check(
    context: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Patient files (YAML, or FHIR R4 bundles as .json), or directories of them.",
            show_default=False,
            metavar="PATH...",
        ),
    ],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to this file (atomically: never a half file) instead "
            "of standard output ('-'). A link is followed; a FIFO or "
            "device is written through; an input is refused.",
        ),
    ] = None,
    trial: Annotated[
        list[str] | None,
        typer.Option("--trial", "-t", help="Only this trial (NCT id or product name); repeatable."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Date to screen on when a file has no screening_date (ISO, e.g. 2026-11-20); "
            "default: today."
        ),
    ] = None,
    max_age: Annotated[
        str | None,
        typer.Option(
            help="Count dated labs, markers and tests older than this before the screening date "
            "as missing (e.g. 30d, 6 weeks)."
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Worker processes for a batch (at most the usable "
            "cores); output is the same whatever the number.",
        ),
    ] = os.cpu_count() or 1,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Add each criterion's source text and reading notes."),
    ] = False,
    everything: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Tables and Markdown: list passing criteria too, and what trials the "
            "patient is already ineligible for would still need.",
        ),
    ] = False,
    excel: ExcelOption = False,
    each: Annotated[
        bool,
        typer.Option(
            "--each",
            help="For a directory (table, Markdown): every patient's report before the "
            "cohort summary, and the summary in full. HTML: each patient's checklist "
            "beside the --output page, linked from its row.",
        ),
    ] = False,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            envvar=LOG_ENV,
            help="Append this run to a screening log (SQLite; created if missing): "
            "every patient, verdict and criterion, all or nothing.",
        ),
    ] = None,
    no_log: Annotated[
        bool,
        typer.Option(
            "--no-log", help=f"Do not log this run, though {LOG_ENV} names a screening log."
        ),
    ] = False,
    rules: Annotated[
        Path | None, typer.Option(help="Directory of rule sets to use instead of the bundled ones.")
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks of internal errors.")] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            help="Where to screen: local worker processes, or a Dask cluster (--scheduler); "
            "output is the same."
        ),
    ] = Engine.local,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address for --engine dask, e.g. tcp://10.0.0.5:8786."),
    ] = None,
) -> None:
    """Screen patient files (or FHIR bulk export folders) against the trials' criteria.

    Example: screener check examples/patients/ --format csv --output cohort.csv
    """
    if engine is Engine.dask and not scheduler:
        raise typer.BadParameter(
            "--engine dask needs --scheduler ADDRESS", param_hint="--scheduler"
        )
    if no_log:
        if log is not None and not _from_environment(context, "log"):
            raise typer.BadParameter("--log and --no-log contradict each other", param_hint="--log")
        log = None
    try:
        if excel and format is not Format.csv:
            raise typer.BadParameter("--excel is for --format csv", param_hint="--excel")
        code = _check(
            paths,
            format,
            output,
            _as_of(as_of),
            trial or [],
            rules,
            _max_age(max_age),
            jobs,
            verbose,
            each,
            excel,
            log,
            (as_of, max_age),
            everything,
            engine.value,
            scheduler,
        )
    except (typer.Exit, typer.BadParameter):
        raise
    except KeyboardInterrupt as exc:
        _fail(
            _stopped(exc)
            + ("; the output file was left as it was" if output else "")
            + ("; nothing was added to the log" if log else ""),
            _interrupted(exc),
        )
    except OSError as exc:
        _io_failure(exc, output)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if log is not None:
            from screener.reports._log import LogError

            if isinstance(exc, LogError):  # the run was screened, but the log refused it
                _fail(str(exc), Exit.INPUT_ERROR)
        from screener.cli._engines import EngineError

        if isinstance(exc, EngineError):  # no dask, or no scheduler there: not a bug
            _fail(f"{exc}\nno patient was screened", Exit.USAGE)
        if debug:
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in screener. Rerun with --debug for the traceback.",
            Exit.INTERNAL,
        )
    raise typer.Exit(int(code))


def _progress(total: int) -> Progress | None:
    """A progress bar on a terminal's standard error; nothing when piped or under CI."""
    # Standard error may be closed (cron, a daemon: `2>&-`), which Python gives as None.
    isatty = getattr(sys.stderr, "isatty", None)
    if total < 2 or isatty is None or not isatty() or os.environ.get("CI"):
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("screening"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        transient=True,
    )


def _check(
    paths: list[str],
    fmt: Format,
    output: Path | None,
    as_of: dt.date | None,
    trials: list[str],
    rules: Path | None,
    max_age: Measure | None,
    jobs: int,
    verbose: bool,
    each: bool = False,
    excel: bool = False,
    log: Path | None = None,
    given: tuple[str | None, ...] = (None, None),
    everything: bool = False,
    engine: str = "local",
    scheduler: str | None = None,
) -> Exit:
    from screener.cli._batch import Export, expand
    from screener.cli._engines import run_all
    from screener.cli._output import atomic_output, refuse_the_log, utf8_writer
    from screener.criteria._catalog import files_read, select, vocabulary_of
    from screener.reports._log import LogRender, file_digest, unpack
    from screener.reports._report import (
        asks_of,
        csv_header,
        csv_rows,
        indent_document,
        json_document,
        jsonl_line,
        markdown,
    )
    from screener.reports._report import render as render_record
    from screener.reports._summary import Cohort, entry
    from screener.reports._summary import markdown as cohort_markdown
    from screener.reports._summary import render as render_cohort

    rule_sets = _rule_sets(rules, "\nno patient was screened: fix the rule set first.")
    # Inputs too, which an output must not replace: rule and vocabulary files, and every
    # file of a bulk export (its NDJSON and manifest).
    rule_files = [str(f) for f in files_read(rules)]
    known = tuple(r.trial for r in rule_sets)
    try:
        rule_sets = select(rule_sets, trials)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--trial") from None
    entries = expand(paths, exports=True)
    if not entries:
        raise typer.BadParameter(
            "no patient files (*.yaml, *.yml, *.json) found", param_hint="PATH"
        )
    # A bulk export holds any number of patients: a batch, whose size is known only later.
    many = len(entries) > 1 or any(isinstance(e, Export) for e in entries)
    # HTML for one patient file is the chart checklist; for a cohort, the cohort page.
    checklist = fmt is Format.html and not many and not Path(paths[0]).is_dir()
    asks = asks_of(rule_sets)
    own_fields = vocabulary_of(rule_sets)  # the to-do list names a directory's fields too
    failed = False
    first_json = True  # no record written yet to a JSON array
    cohort = Cohort()
    cohort.describe(rule_sets)
    # A coordinator screening a directory reads the cohort summary first: 20 full reports
    # are thousands of lines. The workers then send only what the summary needs.
    summary_only = (fmt is Format.html and not checklist) or (
        fmt in (Format.table, Format.markdown) and not each and any(Path(p).is_dir() for p in paths)
    )
    renderers: dict[Format, Render] = {
        Format.json: json_document,
        Format.jsonl: jsonl_line,
        Format.csv: csv_rows,
    }
    render = renderers.get(fmt, entry if summary_only else None)
    # The cohort page with --each: each patient's checklist beside it, linked from its row.
    pages = fmt is Format.html and not checklist and each
    if pages:
        from screener.reports._htmlreport import WithChecklist, checklist_name, unpack_checklist

        beside = _beside(output)
        render = WithChecklist(dt.datetime.now(dt.UTC))
        taken = {beside.name.lower()}  # the page's own name is not a checklist's
        links: dict[str, str] = {}
    # Before the log is opened (and perhaps created): an output over it is refused.
    refuse_the_log(output, log)
    recorder = _recorder(log, rule_sets, given) if log is not None else None
    # With a log, a worker that renders a record also makes the log's rows of it, and sends
    # those instead of the whole record; an output made from records gets them whole.
    shipped = LogRender(render) if recorder is not None and render is not None else render
    # (no bar for an export: its number of patients is known only once it is indexed)
    progress = None if any(isinstance(e, Export) for e in entries) else _progress(len(entries))
    # The log is appended after the output file is in place, and not at all if the run
    # stops early: the recorder's exit commits or drops the run (log.Recorder).
    inputs = _inputs(entries) + rule_files + ([log] if log else [])
    with recorder or contextlib.nullcontext(), atomic_output(output, inputs) as stream:
        # Only tables need rich's console: JSON and the other formats start without it.
        out = _table_console(stream) if fmt is Format.table else None
        task = progress.add_task("screening", total=len(entries)) if progress else None
        if progress:
            progress.start()
        try:
            if fmt is Format.csv:
                # Excel takes a CSV without a byte-order mark for the local code page.
                stream.write(("\ufeff" if excel else "") + csv_header())
            write = utf8_writer(stream)
            for index, done in enumerate(
                run_all(
                    entries,
                    rule_sets,
                    as_of,
                    max_age,
                    jobs,
                    shipped,
                    known,
                    engine,
                    scheduler,
                )
            ):
                failed |= done.failed
                record, data = done.record, done.data
                if recorder is not None:
                    if record is None:  # rendered by LogRender, where it was screened
                        rows, data = unpack(data)
                        recorder.stage(rows, done.digest or file_digest(done.file))
                    else:
                        recorder.add(record, done.digest)
                if record is not None:
                    cohort.add(record)
                if pages:
                    data, text = unpack_checklist(data)
                    item = json.loads(data)
                    cohort.add_entry(item)
                    if text:  # each written whole, as any output; never over an input
                        name = checklist_name(item["patient"], taken)
                        with atomic_output(beside.parent / name, inputs) as page_stream:
                            page_stream.write(text)
                        links[item["file"]] = name
                elif summary_only:
                    cohort.add_entry(data)
                elif out is not None:
                    assert record is not None  # a table is made from the record, unrendered
                    if index:
                        out.rule()
                    render_record(out, record, verbose, everything, asks, own_fields)
                elif fmt is Format.markdown:
                    assert record is not None  # as is Markdown
                    stream.write(markdown(record, verbose, everything, asks, own_fields) + "\n")
                elif checklist:
                    assert record is not None  # and the checklist
                    stream.write(_html(record))
                elif fmt is Format.json:
                    # Streamed, not collected: a report is some 370 KB of indented JSON,
                    # and holding 5,000 of them took 1.86 GB. The bytes are the ones
                    # json_array would make of the whole list.
                    text = data.decode("utf-8")
                    if not many:
                        stream.write(text + "\n")
                    else:
                        stream.write(("[\n" if first_json else ",\n") + indent_document(text))
                        first_json = False
                else:
                    write(data)
                if progress and task is not None:
                    progress.advance(task)
        finally:
            if progress:
                progress.stop()
        if fmt is Format.json and many:
            stream.write("[]\n" if first_json else "\n]\n")
        elif fmt is Format.html and not checklist:  # the cohort page
            from screener.reports._htmlreport import page

            stream.write(page(cohort, links if pages else None))
        elif (summary_only or many) and out is not None:
            # after every report (--each): the whole summary; alone, one screen of it
            render_cohort(out, cohort, full=not summary_only)
        elif (summary_only or many) and fmt is Format.markdown:
            stream.write(cohort_markdown(cohort, full=not summary_only))
    return Exit.INPUT_ERROR if failed else Exit.OK


def _inputs(entries: Iterable[object]) -> list[str]:
    """The files a check reads: patient files as named, and every entry of an export."""
    from screener.cli._batch import Export

    found: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, Export):
            with contextlib.suppress(OSError):  # unreadable: its error record says so
                found += [e.path for e in os.scandir(entry.folder)]
    return found


def _beside(output: Path | None) -> Path:
    """The cohort page's --output, beside which --each writes the checklists; exit 2 if
    there is no such file (standard output, a FIFO or a device has no folder to share)."""
    if output is None or str(output) == "-" or (output.exists() and not output.is_file()):
        raise typer.BadParameter(
            "--each with --format html writes each patient's checklist beside the cohort "
            "page: give --output FILE (e.g. -o out/cohort.html)",
            param_hint="--each",
        )
    return output


def _html(record: Record) -> str:
    """The chart checklist of one screened patient; a file that could not be read gets its
    errors on a page of their own, so the output is still HTML."""
    from screener.cli._batch import FileError
    from screener.reports._checklist import checklist
    from screener.reports._report import html_text as escape

    if isinstance(record, FileError):
        errors = "".join(f"<pre>{escape(d.render())}</pre>" for d in record.diagnostics)
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Could not be screened</title></head><body><h1>{escape(record.file)}: "
            f"could not be screened</h1>{errors}</body></html>\n"
        )
    return checklist(record, dt.datetime.now(dt.UTC))


def _recorder(log: Path, rule_sets: list[RuleSet], given: tuple[str | None, ...]) -> Recorder:
    """A recorder for --log, or exit 2 with why the log cannot be used."""
    from screener import __version__
    from screener.criteria._rules import rules_digest
    from screener.reports._log import LogError, Recorder, RunInfo

    # The digests every JSON record of the run carries too: one name, one value.
    versions = tuple((r.trial, r.digest) for r in rule_sets)
    info = RunInfo(
        tool_version=__version__,
        rules_digest=rules_digest(versions),
        as_of=given[0],
        max_age=given[1],
        trials=tuple(r.trial for r in rule_sets),
        versions=versions,
    )
    try:
        return Recorder(log, info)
    except LogError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log") from None


def _table_console(stream: TextIO) -> Console:
    """Rich output to the terminal, or plain text (no colour codes) to a file or pipe."""
    if stream is sys.stdout:
        return _console()
    return _console(file=stream, no_color=True, width=120)


@app.command()
def trials(
    rules: Annotated[
        Path | None, typer.Option(help="Directory of rule sets to use instead of the bundled ones.")
    ] = None,
) -> None:
    """List the trials screened: id, product, criteria counts and caveats.

    Example: screener trials
    """
    from rich.table import Table

    from screener.core._model import Kind
    from screener.reports._report import safe

    table = Table("trial", "product", "inclusion", "exclusion", "caveats", title_justify="left")
    for r in _rule_sets(rules):
        inclusions = sum(c.kind is Kind.INCLUSION for c in r.criteria)
        # Rule files are input too: their text is printed as written, never as markup.
        table.add_row(
            r.trial,
            safe(r.product),
            str(inclusions),
            str(len(r.criteria) - inclusions),
            safe("\n".join(r.caveats)) or "—",
        )
    _console().print(table)


@app.command()
def show(
    trial: Annotated[
        str, typer.Argument(help="NCT id or product name, e.g. CNCT19.", show_default=False)
    ],
    rules: Annotated[
        Path | None, typer.Option(help="Directory of rule sets to use instead of the bundled ones.")
    ] = None,
) -> None:
    """Show a trial's criteria with their source text and reading notes.

    Example: screener show NCT06559644
    """
    from screener.criteria._catalog import select
    from screener.reports._report import safe as escape

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
        if c.check is not None:
            _print_check(out, c.check, "  ")
        for part in c.parts:
            out.print(
                f"  [bold]{part.id}[/] {escape(part.label)}"
                + (f": {escape(part.text)}" if part.text else ""),
                highlight=False,
            )
            _print_check(out, part.check, "    ")
        if c.parts:
            out.print(f"  [dim]met when {c.combine} of its parts are[/]")
        if c.note:
            out.print(f"  [italic]note:[/] {escape(c.note)}", highlight=False)


def _print_check(out: Console, check: Node, indent: str) -> None:
    """A criterion's check as an outline, one condition a line (conditions.outline)."""
    from screener.criteria._conditions import outline
    from screener.reports._report import safe as escape

    lines = outline(check)
    out.print(f"{indent}[cyan]check:[/] {escape(lines[0])}", highlight=False)
    for line in lines[1:]:
        out.print(f"{indent}       {escape(line)}", highlight=False)


@app.command()
def validate(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Patient files, rule files (rules/NCT….yaml, *.cases.yaml) or directories.",
            show_default=False,
            metavar="PATH...",
        ),
    ],
    rules: Annotated[
        Path | None,
        typer.Option(
            help="Directory of rule sets whose vocabulary files (vocabulary.yaml, "
            "*.vocabulary.yaml) add fields patient files may hold."
        ),
    ] = None,
) -> None:
    """Check patient and rule files without screening; errors as file:line:col with a caret.

    Example: screener validate examples/patients/ rules/
    """
    from screener.cli._batch import Export, FileError, expand, load_any
    from screener.cli._engines import run_export
    from screener.core._errors import Diagnostic, RuleSetError, ScreenerError
    from screener.criteria._catalog import is_vocabulary_file
    from screener.criteria._rules import from_document as rules_from
    from screener.reading._document import load
    from screener.reading._patient import from_document as patient_from
    from screener.screening._engine import attestation_problems
    from screener.testing._cases import SUFFIX, load_suite

    out = _console()
    bad = 0
    entries = expand(paths, exports=True)
    if not entries:
        raise typer.BadParameter("no files to validate found", param_hint="PATH")
    rule_sets: list[RuleSet] = []
    vocabulary = _vocabulary(rules)

    def attestations(patient: Patient) -> None:
        # As `check` warns: an attestation naming no trial or criterion settles nothing.
        if not patient.data.get("attestations"):
            return
        if not rule_sets:
            rule_sets.extend(_rule_sets(rules, "\nattestations were not checked"))
        doc = patient.document
        _warn(
            out,
            [
                doc.diagnostic(message, ("attestations", key), key=True)
                if doc is not None and doc.text
                else Diagnostic(message, patient.file)
                for key, message in attestation_problems(patient, rule_sets)
            ],
        )

    for entry in entries:
        if isinstance(entry, Export):
            # Read as `check` reads it (its manifest and NDJSON lines, each patient's
            # resources grouped), without screening: every error record is shown.
            read = failed = 0
            # Read with the fields `check --rules DIR` reads it with: those of the rule sets
            # (which carry the directory's vocabulary); no rule sets, the built-in fields.
            with_rules = tuple(_rule_sets(rules)) if rules is not None else ()
            for done in run_export(entry.folder, with_rules):
                if done.failed and isinstance(done.record, FileError):
                    failed += 1
                    for d in done.record.diagnostics:
                        out.print(d.render(), style="red", markup=False, soft_wrap=True)
                else:
                    read += 1
            bad += bool(failed)
            state = "ok " if not failed else "bad"
            out.print(
                f"{state} {shown(entry.folder)}: a bulk export, {read} patients read"
                + (f", {failed} errors" if failed else ""),
                markup=False,
                soft_wrap=True,
            )
            continue
        name = entry.file if isinstance(entry, FileError) else entry
        problems = list(entry.diagnostics) if isinstance(entry, FileError) else []
        if not problems:
            try:
                if name.endswith(SUFFIX):
                    load_suite(name)
                elif name.lower().endswith(".json"):
                    patient = load_any(name, vocabulary=vocabulary)
                    _warn(out, patient.warnings)
                    attestations(patient)
                elif is_vocabulary_file(Path(name)):
                    # A vocabulary file: checked as an extension of the built-in one.
                    from screener.core._vocabulary import BUILTIN

                    doc = load(Path(name), shown(name), RuleSetError)
                    from screener.reading._formulas import check as check_formulas

                    # checks it all, the formulas of its derived values too
                    check_formulas(BUILTIN.extend(doc.data, doc.file, doc.diagnostic))
                else:
                    doc = load(Path(name), shown(name))
                    # A rule set names its trial and lists criteria; anything else is a patient.
                    if isinstance(doc.data, dict) and {"trial", "criteria"} <= set(doc.data):
                        rules_from(doc, vocabulary)
                    else:
                        patient = patient_from(doc, vocabulary=vocabulary)
                        _warn(out, patient.warnings)
                        attestations(patient)
            except ScreenerError as exc:
                problems = list(exc.diagnostics)
        if problems:
            bad += 1
            for d in problems:
                out.print(d.render(), style="red", markup=False, soft_wrap=True)
        else:
            out.print(f"ok  {shown(name)}", markup=False)
    out.print(f"{len(entries) - bad} valid, {bad} with errors")
    raise typer.Exit(int(Exit.INPUT_ERROR if bad else Exit.OK))


def _warn(out: Console, warnings: Iterable[Diagnostic]) -> None:
    for warning in warnings:
        out.print(warning.render("warning"), style="yellow", markup=False, soft_wrap=True)


def _vocabulary(rules: Path | None) -> Vocabulary | None:
    """The vocabulary of a rules directory (None: the built-in one), or exit 3 at the
    broken or conflicting declaration."""
    from screener.core._errors import RuleSetError
    from screener.criteria._catalog import load_vocabulary

    if rules is None:
        return None
    try:
        return load_vocabulary(rules)
    except RuleSetError as exc:
        _fail("\n".join(d.render() for d in exc.diagnostics), Exit.RULES)


def _rule_sets(rules: Path | None, consequence: str = "") -> list[RuleSet]:
    """The rule sets, or exit 3 with every error of the broken one."""
    from screener.core._errors import RuleSetError
    from screener.criteria._catalog import load_rule_sets

    try:
        return load_rule_sets(rules)
    except RuleSetError as exc:
        _fail("\n".join(d.render() for d in exc.diagnostics) + consequence, Exit.RULES)


@app.command("test")
def test_cases(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Case files (*.cases.yaml) or directories holding them; default: here.",
            show_default=False,
            metavar="[PATH]...",
        ),
    ] = None,
    coverage: Annotated[
        bool,
        typer.Option(
            "--coverage",
            help="Also report, per trial, which statuses the cases drove each "
            "criterion to; fail if a computable criterion lacks a passing "
            "and a failing case.",
        ),
    ] = False,
    rules: Annotated[
        Path | None, typer.Option(help="Directory of rule sets to use instead of the bundled ones.")
    ] = None,
) -> None:
    """Run rule test cases without pytest, for rule authors.

    Example: screener test tests/cases --coverage
    """
    from screener.core._errors import printable
    from screener.testing._cases import CaseFileError, explain, find_suites, load_suite, run_case
    from screener.testing._cases import coverage as cover

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
            out.print(
                printable(f"{file}: no rule set for trial {suite.trial}"), style="red", markup=False
            )
            broken += 1
            continue
        for case in suite.cases:
            outcome = run_case(case, rule_set, suite)
            outcomes_by_trial.setdefault(suite.trial, []).append(outcome)
            if outcome.passed == (case.xfail is None):
                continue
            failed += 1
            if case.xfail is not None:
                out.print(
                    f"{case.file}:{case.line}: case {case.name} was expected to fail "
                    f"({case.xfail}) but passed",
                    style="red",
                    markup=False,
                )
            else:
                out.print(printable(explain(outcome)), markup=False, soft_wrap=True)
    total = sum(len(o) for o in outcomes_by_trial.values())
    gaps = 0
    if coverage:
        # The trials whose cases were run: a path of one trial's cases is that trial's
        # coverage, not every bundled trial's gaps.
        for trial in sorted(outcomes_by_trial):
            report = cover(rule_sets[trial], outcomes_by_trial.get(trial, []))
            out.print(f"\n[bold]{trial}[/] coverage (statuses the cases drove each criterion to)")
            for cid, seen in report.seen.items():
                missing = report.gaps().get(cid)
                mark = "[red]✘[/]" if missing else "[green]✔[/]" if report.computable[cid] else "·"
                lacking = " and a ".join(f"{status}ing" for status in missing or [])
                never = [
                    f"only an attestation can make it {status}"
                    for status in ("pass", "fail")
                    if status not in report.reachable.get(cid, {"pass", "fail"})
                ]
                note = (
                    f"  [red]lacks a {lacking} case[/]"
                    if missing
                    else "  (judgment only)"
                    if not report.computable[cid]
                    else f"  ({'; '.join(never)})"
                    if never
                    else ""
                )
                out.print(f"  {mark} {cid:<5} {', '.join(sorted(seen)) or '—'}{note}")
            gaps += len(report.gaps())
    out.print(
        f"{total - failed} passed, {failed} failed"
        + (f", {broken} broken case files" if broken else "")
    )
    if coverage and gaps:
        out.print(f"{gaps} computable criteria lack a passing or a failing case", style="red")
    raise typer.Exit(int(Exit.INPUT_ERROR if failed or broken or (coverage and gaps) else Exit.OK))


@app.command("import")
def import_bundle(
    bundle: Annotated[
        Path,
        typer.Argument(
            help="A FHIR R4 Bundle exported by the EHR (.json), or a FHIR bulk export folder.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the patient YAML to this file (atomically) instead of standard output.",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Take the latest value on or before this date (ISO); default: today."),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(
            help="Directory of rule sets to use instead of the bundled ones: their fields "
            "(and the codes their vocabulary files declare) are read and checklisted."
        ),
    ] = None,
) -> None:
    """Turn an EHR export into a patient YAML for the nurse to complete.

    What the bundle holds comes with a source comment for each value; then a commented
    checklist of what the trials still need.

    Example: screener import bundle.json --output patient.yaml
    """
    from screener.cli._output import atomic_output
    from screener.core._errors import ScreenerError
    from screener.criteria._catalog import files_read
    from screener.screening._importer import bundle_to_yaml

    rule_sets = _rule_sets(rules, "\nnothing was imported: fix the rule set first.")
    if bundle.is_dir():
        raise typer.Exit(int(_import_export(bundle, output, _as_of(as_of), rule_sets, rules)))
    try:
        # Entered before the bundle is read: a bad --output fails before any work.
        inputs = [str(bundle), *map(str, files_read(rules))]
        with atomic_output(output, inputs) as stream:
            try:
                text = bundle_to_yaml(bundle, as_of=_as_of(as_of), rule_sets=rule_sets)
            except ScreenerError as exc:
                _fail("\n".join(d.render() for d in exc.diagnostics), Exit.INPUT_ERROR)
            stream.write(text)
    except KeyboardInterrupt as exc:
        _fail(_stopped(exc), _interrupted(exc))
    except OSError as exc:
        _io_failure(exc, output)


def _from_environment(context: typer.Context, name: str) -> bool:
    """Whether the command's parameter `name` came from its environment variable."""
    source = context.get_parameter_source(name)
    return source is not None and source.name == "ENVIRONMENT"


class LogFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


LogOption = Annotated[
    Path,
    typer.Option(
        "--log",
        envvar=LOG_ENV,
        help="The screening log (SQLite) that check --log wrote.",
        show_default=False,
    ),
]
LogFormatOption = Annotated[LogFormat, typer.Option("--format", "-f", help="Output format.")]
LogOutput = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write to this file (atomically) instead of standard output."
    ),
]


T = TypeVar("T")


def _read_log(log: Path, read: Callable[[sqlite3.Connection], T]) -> T:
    """What `read(connection)` returns from the log, or exit 1 with why it cannot be read."""
    with _opened_log(log) as db:
        return read(db)


@contextlib.contextmanager
def _opened_log(log: Path) -> Iterator[sqlite3.Connection]:
    """The log, open to read while the block runs, or exit 1 with why it cannot be."""
    from screener.reports._log import LogError, open_log

    try:
        db = open_log(log, create=False)
    except LogError as exc:
        _fail(str(exc), Exit.INPUT_ERROR)
    try:
        yield db
    except LogError as exc:
        _fail(str(exc), Exit.INPUT_ERROR)
    finally:
        db.close()


@contextlib.contextmanager
def _log_report(output: Path | None, log: Path, excel: bool = False) -> Iterator[TextIO]:
    """Where `changes` and `log` write: standard output or an --output file (atomically),
    never the log they read (exit 2, as for an output that is an input); an I/O error is
    exit 5. `excel`: the CSV starts with a byte-order mark, as check's does."""
    from screener.cli._output import atomic_output

    try:
        with atomic_output(output, [log]) as stream:
            if excel:
                stream.write("\ufeff")
            yield stream
    except OSError as exc:
        _io_failure(exc, output)


def _refuse_log_options(output: Path | None, log: Path, excel: bool, fmt: LogFormat) -> None:
    """Exit 2 before anything is read if --output names the log, or --excel is asked for
    anything but CSV."""
    from screener.cli._output import OutputError, refuse_the_log

    if excel and fmt is not LogFormat.csv:
        raise typer.BadParameter("--excel is for --format csv", param_hint="--excel")
    try:
        refuse_the_log(output, log)
    except OutputError as exc:
        _fail(str(exc), Exit.USAGE)


@app.command()
def changes(
    log: LogOption,
    run: Annotated[
        int | None,
        typer.Option("--run", help="The run whose changes to show (default: the latest)."),
    ] = None,
    against: Annotated[
        int | None,
        typer.Option(
            "--against",
            help="Compare every patient with their screening in this run (default: each "
            "patient with their own latest earlier screening).",
        ),
    ] = None,
    format: LogFormatOption = LogFormat.table,
    output: LogOutput = None,
    excel: ExcelOption = False,
) -> None:
    """What changed since each patient was last screened, from a screening log.

    Per patient and trial: the verdict and each criterion that moved, with old and new
    status and reason.

    Example: screener changes --log screening.db
    """
    from screener.reports import _log as screening_log
    from screener.reports._logview import changes_csv, changes_json, render_changes

    _refuse_log_options(output, log, excel, format)
    data = _read_log(log, lambda db: screening_log.changes(db, run, against))
    with _log_report(output, log, excel) as stream:
        if format is LogFormat.table:
            render_changes(_table_console(stream), data)
        else:
            stream.write((changes_json if format is LogFormat.json else changes_csv)(data))


@app.command("log")
def log_history(
    log: LogOption,
    patient: Annotated[
        str | None,
        typer.Argument(help="A patient id; without it, the runs in the log.", show_default=False),
    ] = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every screening in the log, run by run: per patient and trial the verdict "
            "and why not enrolled (each failing criterion's reason; what is unknown or "
            "awaits review). CSV: one row per screening and trial.",
        ),
    ] = False,
    format: LogFormatOption = LogFormat.table,
    output: LogOutput = None,
    excel: ExcelOption = False,
) -> None:
    """A patient's screening history from a screening log, run by run.

    Every run that screened them, with the file's digest, the rules' digest and each
    trial's verdict. Without PATIENT, the runs; with --all, every screening, for an auditor.

    Example: screener log --log screening.db PT-0006
    """
    from screener.reports import _log as screening_log
    from screener.reports._logview import (
        every_csv,
        every_json,
        history_csv,
        history_json,
        render_every,
        render_history,
        render_runs,
        runs_csv,
    )
    from screener.reports._report import dumps

    _refuse_log_options(output, log, excel, format)
    if every:
        if patient is not None:
            raise typer.BadParameter(
                "--all lists every patient: give no PATIENT", param_hint="--all"
            )
        with _opened_log(log) as db, _log_report(output, log, excel) as stream:
            rows = screening_log.every_screening(db)
            if format is LogFormat.table:
                render_every(_table_console(stream), rows)
            else:
                for text in (every_json if format is LogFormat.json else every_csv)(rows):
                    stream.write(text)
        return
    if patient is None:
        runs = _read_log(log, screening_log.runs)
        with _log_report(output, log, excel) as stream:
            if format is LogFormat.table:
                render_runs(_table_console(stream), runs)
            else:
                stream.write(dumps(runs) + "\n" if format is LogFormat.json else runs_csv(runs))
        return
    screenings = _read_log(log, lambda db: screening_log.history(db, patient))
    if not screenings:
        _fail(f"no screening of patient {patient!r} in {log}", Exit.INPUT_ERROR)
    with _log_report(output, log, excel) as stream:
        if format is LogFormat.table:
            render_history(_table_console(stream), patient, screenings)
        elif format is LogFormat.json:
            stream.write(history_json(patient, screenings))
        else:
            stream.write(history_csv(screenings))


def _import_export(
    folder: Path,
    output: Path | None,
    as_of: dt.date | None,
    rule_sets: list[RuleSet] | None = None,
    rules: Path | None = None,
) -> Exit:
    """`import` of a FHIR bulk export: one patient YAML per patient, in the --output folder."""
    import re

    from screener.cli._batch import Export
    from screener.cli._output import atomic_output
    from screener.core._errors import ScreenerError
    from screener.criteria._catalog import files_read
    from screener.screening._importer import export_to_yaml

    if output is None:
        raise typer.BadParameter(
            "a bulk export imports to a folder: give --output DIR", param_hint="--output"
        )
    output.mkdir(parents=True, exist_ok=True)
    # A patient file named like one the run reads (the export's, a rule file) is refused.
    inputs = _inputs([Export(str(folder))]) + [str(f) for f in files_read(rules)]
    err = _console(stderr=True)
    failed = written = 0
    names: set[str] = set()
    try:
        for name, text, problems in export_to_yaml(folder, as_of=as_of, rule_sets=rule_sets):
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
            with atomic_output(output / f"{stem}.yaml", inputs) as stream:
                stream.write(text)
            written += 1
    except ScreenerError as exc:
        _fail("\n".join(d.render() for d in exc.diagnostics), Exit.INPUT_ERROR)
    err.print(
        f"{written} patient file(s) written to {output}"
        + (f"; {failed} could not be imported" if failed else ""),
        markup=False,
    )
    return Exit.INPUT_ERROR if failed else Exit.OK


class SchemaKind(str, Enum):
    patient = "patient"
    rules = "rules"


@app.command()
def schema(
    kind: Annotated[SchemaKind, typer.Argument(help="Which file format: patient or rules.")],
    rules: Annotated[
        Path | None,
        typer.Option(
            help="Directory of rule sets: the patient schema then has the fields its "
            "vocabulary files add."
        ),
    ] = None,
) -> None:
    """Print the JSON Schema of patient files or rule files, for editor completion.

    Example: screener schema patient > patient.schema.json
    """
    from screener.cli._output import atomic_output
    from screener.criteria._schema import patient_schema, rules_schema
    from screener.reports._report import dumps

    vocabulary = _vocabulary(rules)
    data = patient_schema(vocabulary) if kind is SchemaKind.patient else rules_schema()
    with atomic_output(None) as stream:  # a closed standard output: exit 5, not "a bug"
        stream.write(dumps(data) + "\n")


@app.command()
def docs(
    rules: Annotated[
        Path | None,
        typer.Option(help="Directory of rule sets: describe the fields its vocabulary files add."),
    ] = None,
) -> None:
    """Print the field reference of docs/patient-format.md (Markdown), from the vocabulary.

    Example: screener docs --rules my-rules/ > my-fields.md
    """
    from screener.cli._output import atomic_output
    from screener.core._vocabulary import chosen
    from screener.reports._fields import reference

    text = reference(chosen(_vocabulary(rules)))
    with atomic_output(None) as stream:
        stream.write(text + "\n")


def _say(text: str) -> None:
    """A last message on standard error, if there is one (print to a closed standard error
    would write to standard output instead)."""
    if sys.stderr is not None:
        with contextlib.suppress(Exception):
            print(text, file=sys.stderr)


def main() -> None:
    """The console script: any command's unexpected failure is a short message, not a traceback."""
    try:
        app()
    except OSError as exc:  # an I/O error outside check and import: not a bug either
        if os.environ.get("SCREENER_DEBUG"):
            raise
        if isinstance(exc, BrokenPipeError):
            _quiet_stdout()
        _say(f"screener: {exc.strerror or exc}")
        sys.exit(int(Exit.OUTPUT))
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if os.environ.get("SCREENER_DEBUG"):
            raise
        _say(
            f"screener: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in screener. Rerun with SCREENER_DEBUG=1 for the traceback."
        )
        sys.exit(int(Exit.INTERNAL))
