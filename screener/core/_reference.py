"""Reference data (screener/data/reference.yaml): molar masses, TKI generations and names.

Kept as data with a source per table, so a reviewer can check a number against its source
without reading code.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

_FILE = Path(__file__).resolve().parent.parent / "data" / "reference.yaml"


@lru_cache(maxsize=1)
def tables() -> dict[str, dict[str, Any]]:
    # libyaml's safe loader where PyYAML has it: the same data as yaml.safe_load, read at
    # every start-up in a twentieth of the time (tests/test_reference.py holds them equal)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(_FILE.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader


def values(table: str) -> dict[Any, Any]:
    return dict(tables()[table]["values"])


def source(table: str) -> str:
    return str(tables()[table]["source"]).strip()


# ------------------------------------------------------------------ trial registries


@lru_cache(maxsize=1)
def trial_id_pattern() -> str:
    """One regular expression (no anchors) for a trial id of any registry in the table."""
    return "|".join(f"(?:{r['pattern']})" for r in values("trial_registries").values())


def registry_of(trial: str) -> str | None:
    """The registry a trial id belongs to ("ChiCTR"), or None for no known format."""
    for name, registry in values("trial_registries").items():
        if re.fullmatch(registry["pattern"], trial, re.ASCII):
            return str(name)
    return None


def trial_file_stem(trial: str) -> str:
    """The rule file's name for a trial id, without .yaml: the id, with "/" written "-"
    (CTRI/2020/03/023958 is CTRI-2020-03-023958.yaml)."""
    return trial.replace("/", "-")


def trial_id_examples() -> str:
    """The registries and an example id of each, for an error's hint."""
    return ", ".join(f"{r['example']} ({name})" for name, r in values("trial_registries").items())
