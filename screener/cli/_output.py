"""Writing output files atomically: a reader sees the old file or the whole new one.

The output goes to a temporary file beside the target and is renamed over it only after
everything was written and flushed; an error, Ctrl-C or a termination signal removes the
temporary file and leaves any existing target untouched.

What the destination is gets decided once, before anything is screened, so a bad `-o`
fails at once instead of after the whole batch:

* `-` is standard output.
* An output that is one of the inputs is refused: it would replace what is being read.
* A symbolic link is followed: the temporary file is made in the directory of the file
  the link points to, so the rename stays on one file system and the link keeps pointing
  at the (new) file instead of being replaced by a regular file.
* A FIFO, a terminal or a device (/dev/null) is written through: renaming over it would
  replace the node with a regular file.
* The temporary file is created before screening, which checks the directory can be
  written. The new file keeps the old one's permissions, else follows the umask.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from screener.reading._files import shown


class OutputError(OSError):
    """The output cannot be written where asked; the message says why, in one line.

    `usage` marks a request that is wrong in itself (the output is an input), as opposed
    to a file system that refuses it (a missing or read-only directory, a full disk).
    """

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return self.message


def _identity(name: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        info = os.stat(name)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def refuse_the_log(target: Path | str | None, log: Path | str | None) -> None:
    """Refuse an output that names the screening log (an OutputError, usage).

    The log is an input that a run also appends to, so an output over it would destroy
    every run it holds. It may not exist yet (check creates it), so besides the file's
    identity (a hard link) the path is compared once links are resolved.
    """
    if target is None or log is None or str(target) == "-":
        return
    same = os.path.realpath(target) == os.path.realpath(log)
    if not same:
        mine = _identity(target)
        same = mine is not None and mine == _identity(log)
    if same:
        raise OutputError(
            f"--output {shown(os.fspath(target))} is the screening log (--log); writing it "
            "would replace every run the log holds",
            usage=True,
        )


@contextlib.contextmanager
def atomic_output(
    target: Path | str | None, inputs: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[TextIO]:
    """Yield a text stream: standard output, or a file replaced only on success.

    `inputs` are the files the run reads; an output that is one of them is refused with
    an OutputError (usage), as is a destination that cannot be written (not usage).
    """
    descriptor = None if target is None else _descriptor(os.fspath(target))
    if target is None or str(target) == "-" or descriptor == 1:
        if sys.stdout is None:  # started with standard output closed (`>&-`)
            raise OutputError("standard output is closed: there is nowhere to write")
        yield sys.stdout
        sys.stdout.flush()
        return
    name = os.fspath(target)
    if descriptor is not None:
        yield from _write_to_descriptor(name, descriptor)
        return
    try:
        info: os.stat_result | None = os.stat(name)  # through every symbolic link
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(f"cannot write {shown(name)}: {exc.strerror or exc}") from None
    if info is not None:
        mine = (info.st_dev, info.st_ino)
        if any(_identity(i) == mine for i in inputs):
            raise OutputError(
                f"--output {shown(name)} is one of the inputs; writing it "
                "would replace what is being read",
                usage=True,
            )
        if stat.S_ISDIR(info.st_mode):
            raise OutputError(f"cannot write {shown(name)}: it is a directory")
        if not stat.S_ISREG(info.st_mode):
            # A FIFO, a terminal or a device: opened by the name given and written through.
            yield from _write_through(name)
            return
    real = os.path.realpath(name)  # the file a link points to, even one not there yet
    folder = os.path.dirname(real) or "."
    temporary: str | None = None
    try:
        # A signal handled as an exception (Ctrl-C, SIGTERM) arriving between the creation
        # of the temporary file and the note of its name would leave it behind: signals
        # wait while it is made, and arrive (when released) with the name known.
        with signals_held():
            try:
                handle, temporary = tempfile.mkstemp(
                    prefix=f".{os.path.basename(real)}.", suffix=".partial", dir=folder
                )
            except OSError as exc:
                raise OutputError(
                    f"cannot write {shown(name)}: {exc.strerror or exc} ({shown(folder)})"
                ) from None
        # mkstemp makes the file private (0600); a replaced file keeps its permissions,
        # a new one gets what the umask gives any new file.
        mode = stat.S_IMODE(info.st_mode) if info is not None else 0o666 & ~_umask()
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, real)
    except BaseException:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise


# The signals the command line turns into a clean stop (cli: Terminated). They are held
# while a temporary file is made and while a worker is forked (batch.Pool.submit).
STOP_SIGNALS = frozenset(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold the stop signals for the block; one that arrives meanwhile is delivered after.

    A Python signal handler runs wherever the main thread is: between making a temporary
    file and noting its name (which would leave the file behind), or inside the callbacks
    that run at fork, where an exception is printed and dropped (so SIGTERM would be lost
    and the run would finish as if never told to stop). Held, it arrives at a safe point."""
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    except (AttributeError, OSError, ValueError):  # no signal masks here
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


# /dev/stdout, /dev/fd/N, /proc/self/fd/N name a descriptor this process was given, not a
# file: `-o /dev/stdout >> app.log` must append to what the shell opened, where opening the
# name anew (truncating) or renaming over the file it resolves to would lose app.log.
_DESCRIPTOR = re.compile(r"^/(?:dev/fd|proc/self/fd|proc/(\d+)/fd)/(\d+)$")
_STANDARD = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def _descriptor(name: str) -> int | None:
    """The descriptor a name stands for, through any links to it (None: a file's name)."""
    path = name
    for _ in range(40):  # as many links as the kernel follows
        path = os.path.normpath(path)
        if path in _STANDARD:
            return _STANDARD[path]
        match = _DESCRIPTOR.match(path)
        if match and (match.group(1) is None or int(match.group(1)) == os.getpid()):
            return int(match.group(2))
        try:
            link = os.readlink(path)
        except (OSError, ValueError):
            return None
        path = os.path.join(os.path.dirname(path), link)
    return None


def _write_to_descriptor(name: str, number: int) -> Iterator[TextIO]:
    """Write to a descriptor the run was given, as it was opened (appending, at its
    offset), on a copy of it that is closed after: never reopened, never replaced."""
    try:
        copy = os.dup(number)
    except OSError as exc:
        raise OutputError(f"cannot write {shown(name)}: {exc.strerror or exc}") from None
    with open(copy, "w", encoding="utf-8", newline="") as stream:
        yield stream
        stream.flush()


def _write_through(name: str) -> Iterator[TextIO]:
    """A FIFO or device is written to as it is: there is no old content to protect."""
    try:
        stream = open(name, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise OutputError(f"cannot write {shown(name)}: {exc.strerror or exc}") from None
    with stream:
        yield stream
        stream.flush()


def utf8_writer(stream: TextIO) -> Callable[[bytes], object]:
    """A writer of UTF-8 text already encoded, for text rendered in worker processes.

    When the stream encodes as UTF-8 anyway, the bytes go straight to its buffer (after
    what it holds), sparing a decode and an encode of every record; otherwise they are
    written as text, in the stream's own encoding, as before.
    """
    buffer = getattr(stream, "buffer", None)
    try:
        utf8 = codecs.lookup(stream.encoding).name == "utf-8"
    except (AttributeError, LookupError, TypeError):
        utf8 = False
    if buffer is None or not utf8:
        return lambda data: stream.write(data.decode("utf-8"))
    stream.flush()
    return buffer.write
