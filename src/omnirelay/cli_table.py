"""Plain-text tables and amounts for the command line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(value.ljust(w) for value, w in zip(row, widths, strict=True)))


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


def usd(nano: int | None) -> str | None:
    return None if nano is None else f"{nano / 1e9:.6f}"
