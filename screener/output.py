"""Writing output files atomically: a reader sees the old file or the whole new one.

The output goes to a temporary file beside the target and is renamed over it only after
everything was written and flushed; an error or Ctrl-C removes the temporary file and
leaves any existing target untouched.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def atomic_output(target: Path | None) -> Iterator[TextIO]:
    """Yield a text stream: standard output, or a file replaced only on success."""
    if target is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    folder = target.resolve().parent
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial",
                                         dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


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
