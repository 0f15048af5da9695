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
    if target is None or str(target) == "-":
        if sys.stdout is None:  # started with standard output closed (`>&-`)
            raise OutputError("standard output is closed: there is nowhere to write")
        yield sys.stdout
        sys.stdout.flush()
        return
    name = os.fspath(target)
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
            # Opened by the name given: /dev/stdout resolves only through the kernel.
            yield from _write_through(name)
            return
    real = os.path.realpath(name)  # the file a link points to, even one not there yet
    folder = os.path.dirname(real) or "."
    temporary: str | None = None
    try:
        # A signal handled as an exception (Ctrl-C, SIGTERM) arriving between the creation
        # of the temporary file and the note of its name would leave it behind: signals
        # wait while it is made, and arrive (when released) with the name known.
        with _signals_held():
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


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    import signal

    held = {signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)}
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):  # no signal masks here
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


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
