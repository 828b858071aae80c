"""CSV that is safe to open in a spreadsheet: a cell that would run as a formula is written as text.

A file name such as `=HYPERLINK(...)` or an audit detail starting with `+`, `-`, `@`, a tab or a carriage
return would otherwise be evaluated by Excel or LibreOffice (CSV injection, OWASP).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: Any) -> Any:
    """The value, with a leading apostrophe when a spreadsheet would read it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(rows: Iterable[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: safe_cell(row.get(key)) for key in columns})
    return buffer.getvalue()
