"""Reference data (screener/data/reference.yaml): molar masses, TKI generations and names.

Kept as data with a source per table, so a reviewer can check a number against its source
without reading code.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

_FILE = Path(__file__).resolve().parent.parent / "data" / "reference.yaml"


@lru_cache(maxsize=1)
def tables() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(_FILE.read_text(encoding="utf-8"))


def values(table: str) -> dict[Any, Any]:
    return dict(tables()[table]["values"])


def source(table: str) -> str:
    return str(tables()[table]["source"]).strip()
