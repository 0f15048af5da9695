"""What every layer shares: errors with positions, units, reference data, the vocabulary
of patient fields, and the model (patient records, results, file errors).

Imports nothing else of screener's; everything else may import it.
"""
