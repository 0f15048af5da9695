"""Criteria: the rule language's nodes, the rule-set compiler, the bundled catalog and
the JSON Schemas.

Imports `screener.core` and `screener.reading`.
"""
