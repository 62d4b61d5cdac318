"""Reading an upstream's task fields as data, whatever it sent: a progress as a percentage
from 0 to 100 (a number, or text such as ``"42%"``), and text cut to a limit."""

from __future__ import annotations

import re
from typing import Any

PERCENT = re.compile(r"\s*(\d{1,3})(?:\.\d+)?\s*%?\s*")


def progress(value: Any) -> int:
    """0 to 100; 0 for anything that is not a percentage."""
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 0), 100)
    if isinstance(value, str) and (match := PERCENT.fullmatch(value)):
        return min(int(match.group(1)), 100)
    return 0


def text(value: Any, limit: int) -> str:
    """A string cut to ``limit`` characters; empty for anything else."""
    return value[:limit] if isinstance(value, str) else ""
