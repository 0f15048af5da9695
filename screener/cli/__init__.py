"""The command line (`screener`), the batch runner that screens many files on worker
processes, the engines for bulk exports and Dask, and atomic outputs.

The top layer: nothing else of screener's imports it.
"""

from screener.cli._commands import app, main

__all__ = ["app", "main"]
