"""Write docs/rule-language.md, the rule language's reference, from the compiler's declarations.

Run after adding or changing a node kind, an operator or a modifier
(criteria/_compile_nodes.py, criteria/_compile_fields.py):

    python tools/rule_docs.py

tests/test_rule_language.py fails while the committed page differs from what this writes.
"""

from __future__ import annotations

from pathlib import Path

from screener.criteria._docs import PAGE, rule_language_page

TARGET = Path(__file__).resolve().parent.parent / PAGE

if __name__ == "__main__":
    TARGET.write_text(rule_language_page(), encoding="utf-8")
    print(f"wrote {TARGET}")
