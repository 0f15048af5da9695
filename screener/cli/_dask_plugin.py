"""The Dask worker plugin that hands a run's settings to every worker (engines._on_dask).

Its own module because it imports distributed, which only the dask extra installs: the
engines import it when a Dask run starts, and workers import it to unpickle the plugin.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from screener.cli import _engines as engines


class SettingsPlugin(WorkerPlugin):
    """Puts one run's settings in the worker's table on set-up; takes them out on teardown."""

    def __init__(self, run: str, settings: engines.Settings) -> None:
        self.run = run
        self.settings = settings

    def setup(self, worker: Any) -> None:
        engines._local[self.run] = self.settings

    def teardown(self, worker: Any) -> None:
        engines._local.pop(self.run, None)
