"""Reports: one module per output format (JSON, JSON Lines, CSV, table, Markdown; the
nurse's to-do list and chart checklist; the cohort summary and HTML page), and the
coordinator's screening log.

Never imported by reading, criteria or screening.
"""
