"""Screening: a patient against rule sets (the engine), and the FHIR importer's view of
what the rule sets need.
"""
