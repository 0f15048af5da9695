"""Reading input files safely, and naming them safely.

Every input (patient files, FHIR bundles, rule files, case files) is read here, so one
mechanism decides what may be opened: only a regular file. A FIFO would block `open` or
`read` forever, and a device such as /dev/zero never ends; both are refused before the open
(by `stat`) and again after it (by `fstat` on what was opened, since the path can be
swapped in between). The open itself is non-blocking, so even a FIFO that appears in that
window cannot hang the run. The size limit applies to what is read, not to what `stat`
says: a file that grows while it is read is still cut off one byte past the limit.

File names come from the file system as bytes; Python hands over the ones that are not
UTF-8 with "surrogate escapes", which no UTF-8 encoder accepts. `shown` turns any name into
printable text that says exactly which bytes it had, for every output format.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path


class NotRegular(OSError):
    """The path names something other than a regular file (a FIFO, a device, a socket)."""


class TooLarge(OSError):
    """More bytes than the limit were read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over the limit of {limit:,} bytes")
        self.limit = limit


def kind(mode: int) -> str:
    """What a file's mode says it is, in words ("a named pipe (FIFO)", "a device")."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | Path) -> tuple[int, os.stat_result]:
    """A descriptor open for reading on a regular file, and its status; else NotRegular.

    The caller closes it, and bounds what it reads (read_regular does both)."""
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotRegular(f"{kind(before.st_mode)}, not a regular file")
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        after = os.fstat(fd)
        if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            raise NotRegular(
                f"{kind(after.st_mode)}, not a regular file (it changed while being opened)"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, after


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file, at most `limit` of them; else NotRegular or TooLarge.

    Any other problem is the OSError the system gives (missing file, permission denied,
    a name too long), for the caller to turn into an error record.
    """
    fd, info = open_regular(path)
    try:
        chunks: list[bytes] = []
        total = 0
        # Ask for what stat says plus one byte: a small file costs one small read, and a
        # file that grew is still caught at the limit.
        want = min(info.st_size, limit) + 1
        while True:
            chunk = os.read(fd, want - total if total < want else 65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise TooLarge(limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def head(path: str | Path, size: int) -> bytes:
    """The first bytes of a regular file (fewer if it is shorter); NotRegular otherwise."""
    fd, _ = open_regular(path)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def is_dir(path: str | Path) -> bool:
    """Whether the path is a directory; False for anything that cannot be looked at.

    Path.is_dir raises for some errors (a name too long, a permission problem); here the
    caller then treats the name as a file, and reading it reports the error in its place.
    """
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


# Lone surrogates (bytes that were not UTF-8), C0 and C1 controls, DEL, and the backslash
# that introduces an escape (so the escaped form is never ambiguous).
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode escaped it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(name: str) -> str:
    """A file name as printable text: undecodable bytes and control characters escaped.

    Lossless (`\\xff` is the byte 0xFF, `\\\\` a backslash), encodable as UTF-8, and
    harmless on a terminal. An ordinary name is returned unchanged.
    """
    return _UNSAFE.sub(_escape, name) if _UNSAFE.search(name) else name
