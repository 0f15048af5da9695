"""Writing output files atomically: a reader sees the old file or the whole new one.

The output goes to a temporary file beside the target and is renamed over it only after
everything was written and flushed; an error or Ctrl-C removes the temporary file and
leaves any existing target untouched.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
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
