"""The reference data's fast reader (libyaml) and its plain twin (PyYAML) read the same."""

from __future__ import annotations

import yaml

from screener.core import _reference as reference


def test_the_reference_tables_are_what_the_plain_safe_loader_reads():
    plain = yaml.safe_load(reference._FILE.read_text(encoding="utf-8"))
    assert reference.tables() == plain
    assert "trial_registries" in plain and "molar_mass" in plain
