"""Reading: patient files (YAML with positions and a fast path), FHIR bundles and bulk
exports, into `Patient` records; and the facts a record states or implies.

Imports only `screener.core`.
"""
