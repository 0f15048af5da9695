"""The version of screener, in one place: pyproject.toml reads it from here (hatch), the CLI
prints it (`screener --version`) and every JSON record carries it."""

__version__ = "0.1.0"
